//! HTTP/1.1 upstream connections, kept per upstream host and per worker.
//!
//! hyper-util's pooled client costs, per request, a hashed lookup of the
//! pool key, a connect future built and dropped unused, and (for any
//! response with a body) a spawned task that waits for the connection to be
//! free again. Here a backend holds its host's idle lists directly (looked
//! up once, when the config is built), and the response body hands its
//! connection back as it ends. HTTP/2 and TLS that may negotiate it stay on
//! hyper-util's client, which multiplexes.
//!
//! Bodiless GETs and HEADs skip hyper's client altogether: they are written
//! and their answers read in the request's own task ([`super::h1wire`]), on
//! connections of their own.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use tower_service::Service;

use super::h1wire::{self, Framing};
use super::http::{Body, BoxError};
use crate::listener::workers::PerThread;

/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host and worker; more are closed.
const MAX_IDLE: usize = 256;
/// Pooled connections tried for one request before a new one is opened
/// (each failed only because its upstream had closed it while idle).
const STALE_TRIES: usize = 4;

/// A connection's byte stream, whatever the connector (TCP, TLS) made.
/// `Sync` because an [`h1wire`] answer's body holds its connection and
/// bodies are boxed as `Sync`.
pub trait Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + Sync {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + Sync> Io for T {}

type Connecting = Pin<Box<dyn Future<Output = Result<Box<dyn Io>, BoxError>> + Send>>;
type Connect = Arc<dyn Fn(Uri) -> Connecting + Send + Sync>;

/// Opens connections for one transport (plain TCP, or TLS offering only
/// HTTP/1.1) and interns the per-host idle lists, so that a reloaded config
/// finds its hosts' warm connections.
pub struct H1Connector {
    connect: Connect,
    scheme: Scheme,
    workers: usize,
    idle_timeout: Duration,
    hosts: Mutex<HashMap<Authority, Arc<HostConns>>>,
}

impl H1Connector {
    /// `workers`: how many request-serving threads get idle lists of their own.
    pub fn new<C>(connector: C, scheme: Scheme, workers: usize) -> Self
    where
        C: Service<Uri> + Clone + Send + Sync + 'static,
        C::Response: Io + 'static,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
    {
        let connect: Connect = Arc::new(move |uri| {
            let mut connector = connector.clone();
            Box::pin(async move {
                let io = connector.call(uri).await.map_err(Into::into)?;
                Ok(Box::new(io) as Box<dyn Io>)
            })
        });
        H1Connector {
            connect,
            scheme,
            workers,
            idle_timeout: IDLE_TIMEOUT,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Close idle connections past [`IDLE_TIMEOUT`], and forget hosts no
    /// config uses any more (with their idle connections). Give-backs expire
    /// their own list; this reaches the lists nobody touches again.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.retain(|_, conns| Arc::strong_count(conns) > 1);
        for conns in hosts.values() {
            for slot in conns.slots.iter() {
                slot.expire(now);
            }
        }
    }

    /// The connections of `authority`, made on first use.
    pub fn host(&self, authority: &Authority) -> Arc<HostConns> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(authority.clone())
            .or_insert_with(|| Arc::new(HostConns::new(self, authority)))
            .clone()
    }
}

/// Connections to one `host:port`.
pub struct HostConns {
    connect: Connect,
    address: Uri,
    /// Sent when a request carries no Host (an HTTP/2 client's request).
    host_header: Option<HeaderValue>,
    slots: PerThread<Arc<Slot>>,
}

/// A worker's idle connections to one host. Each slot is an allocation of
/// its own, 128-byte aligned like [`PerThread`]'s entries, since a response
/// body holds its slot (not the host) and counts on it: taking and giving
/// back connections writes only memory that no other worker's core writes.
#[repr(align(128))]
struct Slot {
    /// Connections hyper's client drives.
    idle: Mutex<VecDeque<Idle<SendRequest<Body>>>>,
    /// Connections for [`h1wire`] exchanges.
    wire_idle: Mutex<VecDeque<Idle<h1wire::Conn>>>,
    idle_timeout: Duration,
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Why a request got no response.
pub enum SendError {
    /// No connection could be opened; nothing was sent.
    Connect(BoxError),
    /// The exchange failed once the request was on its way.
    Exchange(BoxError),
}

impl HostConns {
    fn new(connector: &H1Connector, authority: &Authority) -> Self {
        let address = Uri::builder()
            .scheme(connector.scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .expect("scheme and authority make a URI");
        let default_port = if connector.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => authority.as_str(),
            _ => authority.host(),
        };
        HostConns {
            connect: connector.connect.clone(),
            address,
            host_header: HeaderValue::from_str(host).ok(),
            slots: PerThread::new(connector.workers, || {
                Arc::new(Slot {
                    idle: Mutex::new(VecDeque::new()),
                    wire_idle: Mutex::new(VecDeque::new()),
                    idle_timeout: connector.idle_timeout,
                })
            }),
        }
    }

    /// Send `req` on an idle connection of this worker, else a new one.
    /// Its hop-by-hop headers must be stripped already.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<UpstreamBody>, SendError> {
        self.prepare(&mut req);
        let slot = self.slots.mine();
        if h1wire::suits(&req) {
            return self.send_on_wire(&req, slot).await;
        }
        let mut stale = 0;
        loop {
            let idle = if stale < STALE_TRIES {
                slot.take_idle()
            } else {
                None
            };
            let (mut sender, fresh) = match idle {
                Some(sender) => (sender, false),
                // Boxed: rare, and it would make every request's future larger.
                _ => (
                    Box::pin(self.open()).await.map_err(SendError::Connect)?,
                    true,
                ),
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(SendError::Exchange(e.into()));
                }
                stale += 1;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(returning(resp, sender, slot)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the upstream had closed this idle
                    // connection. The next one gets the request.
                    Some(back) if !fresh => {
                        req = back;
                        stale += 1;
                    }
                    _ => return Err(SendError::Exchange(e.into_error().into())),
                },
            }
        }
    }

    /// Send a request that asks to upgrade (WebSocket) on a connection of
    /// its own: after a 101 the connection belongs to the tunnel, so it is
    /// neither taken from nor given back to the idle lists. The answer's
    /// [`hyper::upgrade::OnUpgrade`] hands the connection over.
    pub async fn send_upgrade(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        self.prepare(&mut req);
        let mut sender = self.open().await.map_err(SendError::Connect)?;
        sender
            .send_request(req)
            .await
            .map_err(|e| SendError::Exchange(e.into()))
    }

    /// A bodiless GET or HEAD, written and answered in this task. A pooled
    /// connection found closed before any answer gets the request again on
    /// the next one (these methods are safe to repeat).
    async fn send_on_wire(
        &self,
        req: &Request<Body>,
        slot: &Arc<Slot>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let head = h1wire::encode_head(req);
        let head_request = req.method() == Method::HEAD;
        let mut stale = 0;
        loop {
            let idle = if stale < STALE_TRIES {
                slot.take_wire_idle()
            } else {
                None
            };
            let (mut conn, fresh) = match idle {
                Some(conn) => (conn, false),
                None => {
                    let io = self.connect().await.map_err(SendError::Connect)?;
                    (h1wire::Conn::new(io), true)
                }
            };
            match conn.exchange(&head, head_request).await {
                Ok(answer) => {
                    let mut body = UpstreamBody(Kind::Wire {
                        conn: Some(conn),
                        framing: answer.framing,
                        reusable: answer.reusable,
                        slot: slot.clone(),
                    });
                    body.home_if_done();
                    return Ok(Response::from_parts(answer.head, body));
                }
                Err(h1wire::Failure::Closed(_)) if !fresh => stale += 1,
                Err(h1wire::Failure::Closed(e) | h1wire::Failure::Broken(e)) => {
                    return Err(SendError::Exchange(e));
                }
            }
        }
    }

    /// What hyper-util's client does to a request for an HTTP/1.1 upstream:
    /// origin-form target, and a Host when the client sent none.
    fn prepare(&self, req: &mut Request<Body>) {
        if req.method() == Method::CONNECT {
            if let Some(authority) = self.address.authority() {
                *req.uri_mut() = Uri::from(authority.clone());
            }
        } else if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let target = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(target);
        }
        *req.version_mut() = http::Version::HTTP_11;
        if let Some(host) = &self.host_header {
            req.headers_mut()
                .entry(HOST)
                .or_insert_with(|| host.clone());
        }
    }

    fn connect(&self) -> Connecting {
        (self.connect)(self.address.clone())
    }

    async fn open(&self) -> Result<SendRequest<Body>, BoxError> {
        let io = self.connect().await?;
        let (sender, conn) = http1::Builder::new().handshake(io).await?;
        // On the caller's runtime: a worker's connections are driven by that
        // worker, which is the one that reuses them. Any of them can carry
        // an upgrade (see `send_upgrade`); pooled ones are never asked to.
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// The answer, with a body that hands `sender` back to `slot` once read.
fn returning(
    resp: Response<Incoming>,
    sender: SendRequest<Body>,
    slot: &Arc<Slot>,
) -> Response<UpstreamBody> {
    resp.map(|body| {
        let mut body = UpstreamBody(Kind::Hyper {
            body,
            home: Some(Home {
                slot: slot.clone(),
                sender,
            }),
        });
        body.home_if_done();
        body
    })
}

impl Slot {
    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(idle) = idle.pop_back() {
            if !idle.conn.is_closed() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn take_wire_idle(&self) -> Option<h1wire::Conn> {
        let mut idle = self.wire_idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut idle) = idle.pop_back() {
            if idle.conn.is_open() {
                return Some(idle.conn);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        put_back(&self.idle, sender, self.idle_timeout);
    }

    fn give_back_wire(&self, conn: h1wire::Conn) {
        put_back(&self.wire_idle, conn, self.idle_timeout);
    }

    fn expire(&self, now: Instant) {
        expire(
            &mut self.idle.lock().unwrap_or_else(|p| p.into_inner()),
            now,
            self.idle_timeout,
        );
        expire(
            &mut self.wire_idle.lock().unwrap_or_else(|p| p.into_inner()),
            now,
            self.idle_timeout,
        );
    }
}

/// Return a connection to its idle list, first dropping what sat there
/// past `timeout`.
fn put_back<C>(list: &Mutex<VecDeque<Idle<C>>>, conn: C, timeout: Duration) {
    let now = Instant::now();
    let mut idle = list.lock().unwrap_or_else(|p| p.into_inner());
    expire(&mut idle, now, timeout);
    if idle.len() < MAX_IDLE {
        idle.push_back(Idle { conn, since: now });
    }
}

/// Drop, oldest first, what sat unused too long (the upstream is likely to
/// close it soon anyway).
fn expire<C>(idle: &mut VecDeque<Idle<C>>, now: Instant, timeout: Duration) {
    while idle
        .front()
        .is_some_and(|c| now.duration_since(c.since) > timeout)
    {
        idle.pop_front();
    }
}

/// Where a connection goes back to once its response has been read.
struct Home {
    slot: Arc<Slot>,
    sender: SendRequest<Body>,
}

/// An upstream response body. Read to its end, it returns its connection
/// to the idle list; dropped earlier, the connection is closed (it cannot
/// be reused with unread response bytes).
pub struct UpstreamBody(Kind);

enum Kind {
    /// Read by hyper's client; `home` is where its connection goes back.
    Hyper { body: Incoming, home: Option<Home> },
    /// Read here, off the connection itself (an [`h1wire`] exchange).
    Wire {
        conn: Option<h1wire::Conn>,
        framing: Framing,
        reusable: bool,
        slot: Arc<Slot>,
    },
}

impl From<Incoming> for UpstreamBody {
    /// A body whose connection some other pool looks after.
    fn from(body: Incoming) -> Self {
        UpstreamBody(Kind::Hyper { body, home: None })
    }
}

impl UpstreamBody {
    fn go_home(&mut self) {
        match &mut self.0 {
            Kind::Hyper { home, .. } => {
                if let Some(home) = home.take() {
                    home.slot.give_back(home.sender);
                }
            }
            Kind::Wire {
                conn,
                reusable,
                slot,
                ..
            } => {
                if let Some(conn) = conn.take().filter(|c| *reusable && c.is_clean()) {
                    slot.give_back_wire(conn);
                }
            }
        }
    }

    fn home_if_done(&mut self) {
        if hyper::body::Body::is_end_stream(self) {
            self.go_home();
        }
    }

    /// A broken exchange: its connection is not reused.
    fn disown(&mut self) {
        match &mut self.0 {
            Kind::Hyper { home, .. } => *home = None,
            Kind::Wire { conn, .. } => *conn = None,
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.0 {
            Kind::Hyper { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BoxError::from))),
            Kind::Wire {
                conn: Some(conn),
                framing,
                ..
            } => conn.poll_body(framing, cx),
            Kind::Wire { conn: None, .. } => Poll::Ready(None),
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.home_if_done(),
            Poll::Ready(None) => self.go_home(),
            Poll::Ready(Some(Err(_))) => self.disown(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Hyper { body, .. } => body.is_end_stream(),
            Kind::Wire { framing, .. } => *framing == Framing::Done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Hyper { body, .. } => body.size_hint(),
            Kind::Wire { framing, .. } => match framing {
                Framing::Length(n) => SizeHint::with_exact(*n),
                Framing::Done => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A reader that stops at `is_end_stream` (hyper's server does) never
        // polls for the end itself.
        self.home_if_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers every request on a connection with `ok`
    /// and reports when a connection ends.
    async fn upstream() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let ended = ended.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                    let _ = ended.send(());
                });
            }
        });
        (addr, ends)
    }

    fn connector(idle_timeout: Duration) -> H1Connector {
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        tcp.enforce_http(false);
        let mut c = H1Connector::new(tcp, Scheme::HTTP, 1);
        c.idle_timeout = idle_timeout;
        c
    }

    async fn get(conns: &Arc<HostConns>) {
        let req = Request::get("/")
            .body(crate::proxy::full(Bytes::new()))
            .unwrap();
        let resp = conns.send(req).await.ok().expect("upstream answers");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    /// Idle connections of both kinds (the test's GETs use wire ones).
    fn idle(conns: &HostConns) -> usize {
        let slot = conns.slots.mine();
        slot.idle.lock().unwrap().len() + slot.wire_idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn idle_connections_expire_and_unused_hosts_are_forgotten() {
        let (addr, mut ends) = upstream().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let pool = connector(Duration::from_millis(50));
        let conns = pool.host(&authority);
        get(&conns).await;
        get(&conns).await;
        assert_eq!(idle(&conns), 1, "one connection, back in the list");

        // Within the timeout a sweep keeps it; past it the sweep closes it.
        pool.sweep();
        assert_eq!(idle(&conns), 1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.sweep();
        assert_eq!(idle(&conns), 0);
        tokio::time::timeout(Duration::from_secs(5), ends.recv())
            .await
            .expect("the upstream sees the connection end");

        // A host the config no longer names goes, with its connections.
        let pool = connector(Duration::from_secs(60));
        let conns = pool.host(&authority);
        get(&conns).await;
        pool.sweep();
        assert_eq!(idle(&conns), 1, "a host in use keeps its connections");
        drop(conns);
        pool.sweep();
        assert!(pool.hosts.lock().unwrap().is_empty());
        tokio::time::timeout(Duration::from_secs(5), ends.recv())
            .await
            .expect("the forgotten host's connection ends");
    }
}
