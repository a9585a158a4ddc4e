//! Forwarding to `host:port` upstreams over pooled clients: one plain
//! HTTP/1.1 transport shared by every route, and one per distinct upstream
//! TLS / HTTP-version setting, kept across reloads so their pools survive a
//! config change. Each transport holds a pool per worker thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use super::h1pool::UpstreamBody;
use super::h1pool::{H1Connector, HostConns, SendError};
use super::{tls, upgrade};
use crate::config::schema::{BackendTls, HttpVersion};
use crate::gateway::WeightedBackend;
use crate::listener::workers::PerThread;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// Why an upstream call failed; each maps to one status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection to {0} failed: {1}")]
    Connect(String, String),
    #[error(
        "connection to {0} was not established within the connect timeout (policy tcp.connectTimeout, default 10s)"
    )]
    ConnectTimeout(String),
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0} failed: {1}")]
    Protocol(String, String),
    /// `backendAuth` could not be met (a Google token was refused).
    #[error("the gateway has no credentials for {0}: {1}")]
    Credentials(String, String),
}

impl UpstreamError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::Timeout(..) | UpstreamError::ConnectTimeout(_) => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// How to reach a backend: its connections and scheme.
pub enum Transport {
    /// HTTP/1.1 (plain, or TLS offering only it): this crate's own pool.
    Http1(H1Connector),
    /// HTTP/2, or TLS that may negotiate it: hyper-util's multiplexing
    /// client, one per worker and a last one for every other thread, so a
    /// worker's requests reuse connections whose tasks run on its own
    /// runtime (see [`crate::listener::workers`]).
    Multiplexed(Arc<PerThread<Pool>>),
}

/// How one backend reaches its `host:port`, settled when the config is built.
#[derive(Clone)]
pub enum Upstream {
    /// HTTP/1.1: the host's own idle connections.
    Http1(Arc<HostConns>),
    /// hyper-util's clients, which find the host from the request's URI.
    Multiplexed {
        pools: Arc<PerThread<Pool>>,
        authority: Authority,
    },
}

pub enum Pool {
    Plain(Client<HttpConnector, Body>),
    Tls(Client<HttpsConnector<HttpConnector>, Body>),
}

impl Transport {
    fn multiplexed(workers: usize, make: impl Fn() -> Pool) -> Transport {
        Transport::Multiplexed(Arc::new(PerThread::new(workers, make)))
    }

    /// How a backend at `authority` is reached over this transport.
    pub fn upstream(&self, authority: Authority) -> Upstream {
        match self {
            Transport::Http1(c) => Upstream::Http1(c.host(&authority)),
            Transport::Multiplexed(pools) => Upstream::Multiplexed {
                pools: pools.clone(),
                authority,
            },
        }
    }

    fn scheme(pools: &PerThread<Pool>) -> Scheme {
        match pools.mine() {
            Pool::Plain(_) => Scheme::HTTP,
            Pool::Tls(_) => Scheme::HTTPS,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TransportKey {
    tls: Option<BackendTls>,
    version: HttpVersion,
    connect_timeout: Duration,
}

/// The pooled clients every route shares.
pub struct HttpBackends {
    connect_timeout: Duration,
    workers: usize,
    plain: Arc<Transport>,
    others: Mutex<HashMap<TransportKey, Arc<Transport>>>,
}

thread_local! {
    /// This thread's round-robin position, for [`HttpBackends::pick`].
    static PICKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // One pass over the names finds which are present; most messages carry
    // none, or only `Connection: keep-alive`, and each removal hashes.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::TRANSFER_ENCODING {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    // Headers named in Connection are hop-by-hop too (keep-alive and close
    // are options, not names).
    let named: Vec<HeaderName> = connection_options(headers)
        .filter(|n| !n.eq_ignore_ascii_case("keep-alive") && !n.eq_ignore_ascii_case("close"))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::TRANSFER_ENCODING);
    }
}

/// The options of a message's `Connection` header lines, trimmed.
pub fn connection_options(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// HTTP/1.1 over TCP with the gateway's own pool: one per worker, and one
/// for the threads outside them.
fn plain_http1(tcp: HttpConnector, workers: usize) -> Transport {
    Transport::Http1(H1Connector::new(tcp, Scheme::HTTP, workers))
}

fn client_builder(version: HttpVersion) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256);
    if version == HttpVersion::Http2 {
        // Over plain TCP this is h2c with prior knowledge.
        builder.http2_only(true);
    }
    builder
}

impl HttpBackends {
    /// `workers`: how many request-serving threads get a pool of their own.
    pub fn new(connect_timeout: Duration, workers: usize) -> Self {
        let plain = plain_http1(tcp_connector(connect_timeout), workers);
        HttpBackends {
            connect_timeout,
            workers,
            plain: Arc::new(plain),
            others: Mutex::new(HashMap::new()),
        }
    }

    /// Where upgrades (WebSocket) to backends reached with these settings
    /// go: an HTTP/1.1 transport (one that offers only HTTP/1.1 where TLS
    /// might negotiate HTTP/2), or none when the route speaks HTTP/2 only.
    pub fn upgrade_transport(
        &self,
        tls: Option<&BackendTls>,
        version: HttpVersion,
        connect_timeout: Option<Duration>,
    ) -> Result<Option<Arc<Transport>>, String> {
        if version == HttpVersion::Http2 {
            return Ok(None);
        }
        self.transport(tls, HttpVersion::Http1, connect_timeout)
            .map(Some)
    }

    /// The client for backends reached with these settings; built once
    /// (reading CA files then, so a bad file fails the config load).
    /// `connect_timeout`: the route's `tcp.connectTimeout`, if it sets one.
    pub fn transport(
        &self,
        tls: Option<&BackendTls>,
        version: HttpVersion,
        connect_timeout: Option<Duration>,
    ) -> Result<Arc<Transport>, String> {
        let connect_timeout = connect_timeout.unwrap_or(self.connect_timeout);
        let plain = tls.is_none() && version != HttpVersion::Http2;
        if plain && connect_timeout == self.connect_timeout {
            return Ok(self.plain.clone());
        }
        // Without TLS, `Auto` is HTTP/1.1 (nothing negotiates): one transport.
        let version = if plain { HttpVersion::Http1 } else { version };
        let key = TransportKey {
            tls: tls.cloned(),
            version,
            connect_timeout,
        };
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = others.get(&key) {
            return Ok(t.clone());
        }
        let tcp = tcp_connector(connect_timeout);
        let transport = match tls {
            None if plain => plain_http1(tcp, self.workers),
            None => Transport::multiplexed(self.workers, || {
                Pool::Plain(client_builder(version).build(tcp.clone()))
            }),
            Some(settings) => {
                let connector = tls::connector(settings, version, tcp)?;
                if version == HttpVersion::Http1 {
                    Transport::Http1(H1Connector::new(connector, Scheme::HTTPS, self.workers))
                } else {
                    Transport::multiplexed(self.workers, || {
                        Pool::Tls(client_builder(version).build(connector.clone()))
                    })
                }
            }
        };
        let transport = Arc::new(transport);
        others.insert(key, transport.clone());
        Ok(transport)
    }

    /// Expire idle HTTP/1.1 connections every `every`, for as long as these
    /// clients exist.
    pub fn sweep_idle(self: &Arc<Self>, every: Duration) {
        let clients = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(clients) = clients.upgrade() else {
                    return;
                };
                let others: Vec<_> = clients
                    .others
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for transport in std::iter::once(&clients.plain).chain(&others) {
                    if let Transport::Http1(connector) = &**transport {
                        connector.sweep();
                    }
                }
            }
        });
    }

    /// Weighted round robin over the route's backends, counted per thread:
    /// a counter all workers shared would move between their cores with
    /// every request.
    pub fn pick<'a>(&self, backends: &'a [WeightedBackend]) -> Option<&'a WeightedBackend> {
        let total: u64 = backends.iter().map(|b| b.weight as u64).sum();
        if backends.len() == 1 || total == 0 {
            return backends.first();
        }
        let mut n = PICKS.with(|picks| {
            let n = picks.get();
            picks.set(n.wrapping_add(1));
            n
        }) % total;
        backends.iter().find(|b| {
            if n < b.weight as u64 {
                true
            } else {
                n -= b.weight as u64;
                false
            }
        })
    }

    /// Send `req` to `target` and wait for the response head.
    pub fn forward<'a>(
        &self,
        target: &'a WeightedBackend,
        req: Request<Body>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + use<'a> {
        forward_to(target, req, timeout)
    }
}

/// Send `req` to `target` over its pooled transport.
// A plain fn returning an async block, not an `async fn`: that would keep the
// request twice in its future (argument and local), and every caller's future
// embeds this one and is moved per request.
#[allow(clippy::manual_async_fn)]
pub fn forward_to(
    target: &WeightedBackend,
    mut req: Request<Body>,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> {
    async move {
        let name = || target.name.to_string();
        let Some(upstream) = &target.upstream else {
            return Err(UpstreamError::Protocol(
                name(),
                "not a valid host:port".into(),
            ));
        };
        if let Some(credential) = &target.credential {
            credential.authorize(req.headers_mut());
            // Boxed: only routes with fetched credentials pay for its size.
            Box::pin(credential.sign(&mut req, &target.target))
                .await
                .map_err(|e| UpstreamError::Credentials(name(), e))?;
        }
        strip_hop_by_hop(req.headers_mut());
        let call = async {
            match upstream {
                // Boxed, as hyper-util boxes its own: a smaller future for every request to move.
                Upstream::Http1(conns) => Box::pin(conns.send(req))
                    .await
                    .map_err(|e| send_error(name(), e)),
                Upstream::Multiplexed { pools, authority } => {
                    let mut uri = http::uri::Parts::default();
                    uri.scheme = Some(Transport::scheme(pools));
                    uri.authority = Some(authority.clone());
                    uri.path_and_query = Some(
                        req.uri()
                            .path_and_query()
                            .cloned()
                            .unwrap_or_else(|| PathAndQuery::from_static("/")),
                    );
                    *req.uri_mut() = Uri::from_parts(uri)
                        .map_err(|e| UpstreamError::Protocol(name(), e.to_string()))?;
                    *req.version_mut() = http::Version::HTTP_11;
                    let sent = match pools.mine() {
                        Pool::Plain(c) => c.request(req).await,
                        Pool::Tls(c) => c.request(req).await,
                    };
                    sent.map(|r| r.map(UpstreamBody::from)).map_err(|e| {
                        if e.is_connect() {
                            connect_error(name(), &e)
                        } else {
                            UpstreamError::Protocol(name(), root_cause(&e))
                        }
                    })
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| UpstreamError::Timeout(name(), t))?,
            None => call.await,
        }
    }
}

/// Send `req`, which asks to switch to `protocol` (WebSocket), to `target`
/// on an HTTP/1.1 connection of its own, and wait for the answer's head. A
/// 101 carries the upstream's side of the tunnel (see [`super::upgrade`]).
pub async fn forward_upgrade(
    target: &WeightedBackend,
    mut req: Request<Body>,
    protocol: HeaderValue,
    timeout: Option<Duration>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let name = || target.name.to_string();
    let Some(conns) = &target.upgrades else {
        let why = if target.upstream.is_none() {
            "not a valid host:port"
        } else {
            "the route speaks HTTP/2 to it (policies.http.version) and an upgrade needs HTTP/1.1"
        };
        return Err(UpstreamError::Protocol(name(), why.into()));
    };
    if let Some(credential) = &target.credential {
        credential.authorize(req.headers_mut());
        Box::pin(credential.sign(&mut req, &target.target))
            .await
            .map_err(|e| UpstreamError::Credentials(name(), e))?;
    }
    strip_hop_by_hop(req.headers_mut());
    upgrade::mark(req.headers_mut(), protocol);
    let call = async {
        conns
            .send_upgrade(req)
            .await
            .map(|r| r.map(UpstreamBody::from))
            .map_err(|e| send_error(name(), e))
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, call)
            .await
            .map_err(|_| UpstreamError::Timeout(name(), t))?,
        None => call.await,
    }
}

fn send_error(name: String, e: SendError) -> UpstreamError {
    match e {
        SendError::Connect(e) => connect_error(name, &*e),
        SendError::Exchange(e) => UpstreamError::Protocol(name, root_cause(&*e)),
    }
}

/// Read what is left of an upstream body whose useful part was already
/// read (a stream's last event, a JSON-RPC response), so that the
/// connection goes back to the pool: dropped unread, it is closed and the
/// next call pays a new connection. Bounded in time and bytes: an upstream
/// still talking is not waited for.
pub async fn finish_reading(mut body: UpstreamBody, within: Duration) {
    const MAX_BYTES: usize = 64 << 10;
    let drain = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(within, drain).await;
}

/// A failed connection; one that timed out (an `io::Error` of kind
/// `TimedOut` somewhere in the chain) is told apart, as it answers 504.
fn connect_error(name: String, e: &(dyn std::error::Error + 'static)) -> UpstreamError {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return UpstreamError::ConnectTimeout(name);
        }
        cur = err.source();
    }
    UpstreamError::Connect(name, root_cause(e))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    // The TLS connector wraps this one and needs it to pass https through.
    connector.enforce_http(false);
    connector
}
