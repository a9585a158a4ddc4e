//! Accepting connections: HTTP/1.1 and HTTP/2 (h2c prior knowledge too, or
//! ALPN over TLS) on each bind, handing every request to
//! [`crate::proxy::handle`]. Shutdown stops accepting and lets in-flight
//! requests finish.

pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::proxy::{self, Shared};

/// Limits that protect the listener from slow or oversized clients.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BYTES: usize = 64 << 10;

/// Bind every address first, so a port conflict fails start-up with its
/// address. The sockets are std's so that each worker can register a clone
/// with its own runtime.
pub fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::new();
    for addr in addrs {
        let bound = (|| {
            let socket = match addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            socket.listen(1024)?.into_std()
        })();
        out.push(bound.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?);
    }
    Ok(out)
}

/// A std socket registered with the current runtime.
pub fn to_tokio(socket: std::net::TcpListener) -> std::io::Result<TcpListener> {
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

/// Serve one bound socket until `shutdown` flips, then drain its connections.
/// `bind` is the index of this socket's entry in `binds`.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    bind: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%local, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = {
                    let shared = shared.clone();
                    service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(proxy::handle(shared, bind, peer, req).await) }
                    })
                };
                // The acceptor of the config current at accept time, so a
                // reload that changes certificates applies to new connections.
                let acceptor = shared.gateway.load().binds.get(bind).and_then(|b| b.tls.clone());
                let Some(acceptor) = acceptor else {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    });
                    continue;
                };
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                    let stream = match handshake.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
