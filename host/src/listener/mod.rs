//! Accepting connections: HTTP/1.1 and HTTP/2 (h2c prior knowledge too, or
//! ALPN over TLS) on each bind. One acceptor per bind hands each connection
//! to the least busy worker ([`workers`]), which serves it to the end,
//! passing every request to [`crate::proxy::handle`]. Shutdown drains
//! ([`drain`]): connections are asked to finish and given until a deadline.

pub mod drain;
pub mod idle;
pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::backend::http::BoxError;
use crate::gateway::ClientLimits;
use crate::proxy::{self, Shared, WorkerShared};
use drain::DrainSignal;
use idle::Activity;
use workers::{Accepted, Dispatch};

/// Bind every address first, so a port conflict fails start-up with its address.
pub async fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        out.push(listener);
    }
    Ok(out)
}

/// Accept on one bound socket until `shutdown` flips, handing each
/// connection to a worker. `bind` is the socket's index in `binds`.
pub async fn accept(
    listener: TcpListener,
    bind: usize,
    workers: Arc<Dispatch>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
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
                // Leave this runtime's reactor; the worker registers it with its own.
                match stream.into_std() {
                    Ok(stream) => workers.hand_over(stream, peer, bind),
                    Err(e) => tracing::warn!(%peer, "cannot hand the connection over: {e}"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// A worker's loop: serve every connection handed to it. When `drain`
/// says shutdown has begun, ask the open connections to finish and serve
/// new ones one request each; once the acceptors are gone, wait for every
/// connection (`open` counts this worker's) until the drain's deadline.
pub async fn serve_connections(
    shared: Arc<Shared>,
    mut handed: mpsc::UnboundedReceiver<Accepted>,
    open: Arc<AtomicUsize>,
    mut drain: DrainSignal,
) {
    // This worker's requests each take a handle on the shared state; see
    // `WorkerShared` for why it is not `shared` itself.
    let worker = Arc::new(WorkerShared::new(shared.clone()));
    let mut limits = shared.gateway().client_limits;
    let mut draining = false;
    let mut builder = connection_builder(limits, draining);
    let mut graceful = GracefulShutdown::new();
    let mut deadline = None;
    loop {
        let accepted = tokio::select! {
            biased;
            changed = drain.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    deadline = *drain.borrow_and_update();
                }
                // HTTP/1.1 connections close once their response is out
                // (idle ones at once), HTTP/2 ones get GOAWAY; the
                // connections still to come are watched by a fresh one.
                tokio::spawn(std::mem::take(&mut graceful).shutdown());
                builder = connection_builder(limits, draining);
                continue;
            }
            accepted = handed.recv() => accepted,
        };
        let Some(Accepted {
            stream,
            peer,
            bind,
            load,
        }) = accepted
        else {
            break;
        };
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, "cannot serve the connection: {e}");
                continue;
            }
        };
        // The acceptor and limits of the config current at accept time, so
        // a reload that changes them applies to new connections.
        let gateway = shared.gateway();
        let acceptor = gateway.binds.get(bind).and_then(|b| b.tls.clone());
        let activity = Activity::new();
        let service = {
            let shared = worker.clone();
            let client = Arc::new(proxy::Peer::new(
                peer,
                acceptor.is_some(),
                load,
                activity.clone(),
            ));
            let activity = activity.clone();
            service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                let client = client.clone();
                let in_flight = activity.begin(req.version());
                async move {
                    let response = proxy::handle(shared, bind, client, req).await;
                    Ok::<_, Infallible>(match in_flight {
                        None => response,
                        Some(request) => response.map(|body| idle::track(body, request)),
                    })
                }
            })
        };
        if gateway.client_limits != limits {
            limits = gateway.client_limits;
            builder = connection_builder(limits, draining);
        }
        drop(gateway);
        let Some(acceptor) = acceptor else {
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(until_idle(
                Box::pin(conn),
                activity,
                limits.idle_timeout,
                peer,
            ));
            continue;
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
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
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let conn = watcher.watch(conn);
            until_idle(Box::pin(conn), activity, limits.idle_timeout, peer).await;
        });
    }
    // The acceptors are gone: whatever came while draining is asked to
    // finish too, and the worker waits for its connections and tunnels.
    tokio::spawn(graceful.shutdown());
    if let Err(left) = drain::until_closed(&open, deadline).await {
        tracing::warn!(
            worker = ?workers::index(),
            "connectionTerminationDeadline passed: closing {left} connection(s) still open"
        );
    }
}

/// A served connection, its type erased where it is made: passed on
/// generically, hyper's connection futures trip rustc's `Send` inference.
type Served<'a> = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>;

/// Serve `conn` until it ends, or drop it (closing the socket) once it has
/// carried no request for `timeout`: nothing is in flight then.
async fn until_idle(
    conn: Served<'_>,
    activity: Arc<Activity>,
    timeout: Duration,
    peer: SocketAddr,
) {
    tokio::select! {
        ended = conn => if let Err(e) = ended {
            tracing::debug!(%peer, "connection ended: {e}");
        },
        () = activity.idle_for(timeout) => {
            tracing::debug!(%peer, "closing a connection idle for {timeout:?}");
        }
    }
}

/// How connections are served under `limits`: a head larger than
/// `max_header_bytes` gets 431 (HTTP/1.1 and HTTP/2), one not complete
/// within `header_read_timeout` a closed connection. `draining`: shutdown
/// has begun.
fn connection_builder(limits: ClientLimits, draining: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        // While draining, one request per connection (`Connection: close`).
        .keep_alive(!draining);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        // WebSockets over HTTP/2 (RFC 8441).
        .enable_connect_protocol();
    builder
}
