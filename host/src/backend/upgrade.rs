//! HTTP/1.1 upgrades (WebSocket, and any protocol but `h2c`): the request
//! goes upstream with its `Upgrade` on a connection of its own, and when the
//! upstream answers 101 the two connections are joined into a tunnel that
//! carries bytes both ways until either side closes it or it goes quiet.
//!
//! The route's policies (authentication, plugin chains, header edits) run
//! on the upgrade request and its 101 as on any exchange; what flows in the
//! tunnel afterwards is not HTTP: it is copied unread, unless a relay of
//! the protocol's own reads it (a Realtime session's guard, see
//! [`crate::backend::llm::realtime`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::http::connection_options;
use crate::telemetry::metrics::TunnelMetrics;

/// The protocol an HTTP/1.1 request asks to switch to, if it asks: an
/// `Upgrade` header, and `upgrade` among its `Connection` options. `h2c`
/// is the client's offer to this hop alone (RFC 9113 §3.1 drops it, and
/// HTTP/2 is spoken to upstreams by config), so it is not forwarded.
pub fn requested(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let protocol = headers.get(UPGRADE)?;
    let asks = connection_options(headers).any(|o| o.eq_ignore_ascii_case("upgrade"));
    let only_h2c = protocol
        .to_str()
        .map(|p| p.split(',').all(|p| p.trim().eq_ignore_ascii_case("h2c")))
        .unwrap_or(false);
    (asks && !only_h2c).then(|| protocol.clone())
}

/// An HTTP/2 client's WebSocket (RFC 8441: `CONNECT` with `:protocol
/// websocket`, offered by the listeners' SETTINGS), made into the HTTP/1.1
/// handshake upstreams know: a `GET` with a key of the gateway's own (the
/// client sends none; `Upgrade` and `Connection` are added on the way out).
/// The client gets a 200 for the upstream's 101 (see [`answer_h2`]).
pub fn extended_connect(parts: &mut http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_2 || parts.method != http::Method::CONNECT {
        return None;
    }
    let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return None;
    }
    parts.extensions.remove::<hyper::ext::Protocol>();
    parts.method = http::Method::GET;
    let mut key = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).ok()?;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    parts.headers.insert(
        http::header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).ok()?,
    );
    parts
        .headers
        .entry(http::header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
    Some(HeaderValue::from_static("websocket"))
}

/// The answer an HTTP/2 client gets for the upstream's 101: a 200 without
/// the HTTP/1.1 handshake's own headers (RFC 8441 §5).
pub fn answer_h2(answer: &mut http::response::Parts) {
    answer.status = http::StatusCode::OK;
    for name in [CONNECTION, UPGRADE, http::header::SEC_WEBSOCKET_ACCEPT] {
        answer.headers.remove(name);
    }
}

/// Put back the two headers that ask for (or agree to) `protocol`, after
/// the hop-by-hop ones were stripped.
pub fn mark(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// An upstream's agreement to switch: its side of the tunnel and the
/// protocol it named.
pub struct Switch {
    upstream: OnUpgrade,
    protocol: HeaderValue,
}

/// The switch an upstream's answer to a request that `asked` for a protocol
/// agrees to, if it is a 101. Call before the answer's hop-by-hop headers
/// are stripped: `Upgrade` is one.
pub fn agreed(asked: HeaderValue, answer: &mut http::response::Parts) -> Option<Switch> {
    if answer.status != http::StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let upstream = answer.extensions.remove::<OnUpgrade>()?;
    let protocol = answer.headers.get(UPGRADE).cloned().unwrap_or(asked);
    Some(Switch { upstream, protocol })
}

/// Complete a 101 whose head is `answer`: the upgrade headers back on it
/// (or, for an HTTP/2 client, made a 200), and the tunnel started (see
/// [`splice`]), its bytes copied unread.
pub fn join(
    answer: &mut http::response::Parts,
    switch: Switch,
    client: OnUpgrade,
    idle: Duration,
    ends: Ends,
    metrics: Arc<TunnelMetrics>,
) {
    let copy: Relay = Box::new(|mut client, mut upstream| {
        Box::pin(async move {
            tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .map(|_| ())
        })
    });
    join_with(answer, switch, client, idle, ends, metrics, copy);
}

/// [`join`], with `relay` carrying what passes (a relay that reads the
/// protocol's messages, as a Realtime session's guard does).
pub fn join_with(
    answer: &mut http::response::Parts,
    switch: Switch,
    client: OnUpgrade,
    idle: Duration,
    ends: Ends,
    metrics: Arc<TunnelMetrics>,
    relay: Relay,
) {
    if ends.http2.is_some() {
        answer_h2(answer);
    } else {
        mark(&mut answer.headers, switch.protocol);
    }
    splice(client, switch.upstream, idle, ends, metrics, relay);
}

/// Carries a tunnel from its client's side to its upstream's and back,
/// until either ends; the tunnel's idle time and byte counts are kept by
/// the sides it is given.
pub type Relay = Box<dyn FnOnce(Side, Side) -> RelayFuture + Send>;
pub type RelayFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// Who a tunnel joins, for its log line and metrics.
pub struct Ends {
    pub route: Arc<str>,
    pub upstream: Arc<str>,
    pub request_id: String,
    /// The client connection's state, kept while the tunnel lives: its
    /// worker counts it as open until then.
    pub connection: Arc<dyn Send + Sync>,
    /// Set when the client asked over HTTP/2 (RFC 8441), which gets a 200:
    /// the tunnel's hold on that connection, whose idle check would
    /// otherwise see no request once the answer is out.
    pub http2: Option<Box<dyn Send + Sync>>,
}

/// Join the client's connection and the upstream's once both have handed
/// over (the 101 written to the client, read from the upstream) and relay
/// between them on this worker. The tunnel closes when the relay ends (both
/// sides finished, or either failed), or after `idle` with no byte either way.
fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    ends: Ends,
    metrics: Arc<TunnelMetrics>,
    relay: Relay,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(request_id = %ends.request_id, "upgrade not completed: {e}");
                return;
            }
        };
        let open = metrics.open(&ends.route);
        let started = Instant::now();
        let traffic = Arc::new(Traffic::default());
        let client = Side::new(client, started, traffic.clone(), Direction::ToUpstream);
        let upstream = Side::new(upstream, started, traffic.clone(), Direction::ToClient);
        let ended = until_quiet(relay(client, upstream), started, &traffic.last, idle).await;
        // Counted as they passed, so a failed tunnel reports them too.
        let sent = traffic.to_upstream.load(Ordering::Relaxed);
        let received = traffic.to_client.load(Ordering::Relaxed);
        open.close(sent, received);
        let outcome = match &ended {
            Ok(_) => "closed".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(
            request_id = %ends.request_id,
            route = %ends.route,
            upstream = %ends.upstream,
            sent, received,
            duration_ms = started.elapsed().as_millis() as u64,
            "tunnel ended: {outcome}"
        );
        // Named, so the task holds the connection's state to here: an
        // async block captures only the fields it uses.
        drop((ends.connection, ends.http2));
    });
}

/// Run `relay` until it ends, or until no byte has passed for `idle`.
async fn until_quiet<F>(
    relay: F,
    started: Instant,
    last: &AtomicU64,
    idle: Duration,
) -> io::Result<()>
where
    F: Future<Output = io::Result<()>>,
{
    tokio::pin!(relay);
    let mut deadline = started + idle;
    loop {
        tokio::select! {
            ended = &mut relay => return ended,
            () = tokio::time::sleep_until(deadline) => {
                let active = started + Duration::from_micros(last.load(Ordering::Relaxed));
                if active + idle <= Instant::now() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("idle for {idle:?} (config.idleTimeout)"),
                    ));
                }
                deadline = active + idle;
            }
        }
    }
}

/// What went through a tunnel: when anything last did (in microseconds
/// after it started) and how many bytes each way.
#[derive(Default)]
struct Traffic {
    last: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

#[derive(Clone, Copy)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// One side of a tunnel: its upgraded connection, noting in the tunnel's
/// [`Traffic`] what it reads (what goes the way of `reads`).
pub struct Side {
    io: TokioIo<Upgraded>,
    started: Instant,
    traffic: Arc<Traffic>,
    reads: Direction,
}

impl Side {
    fn new(io: Upgraded, started: Instant, traffic: Arc<Traffic>, reads: Direction) -> Self {
        Side {
            io: TokioIo::new(io),
            started,
            traffic,
            reads,
        }
    }
}

impl AsyncRead for Side {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let count = match self.reads {
                Direction::ToUpstream => &self.traffic.to_upstream,
                Direction::ToClient => &self.traffic.to_client,
            };
            count.fetch_add(n, Ordering::Relaxed);
            let now = self.started.elapsed().as_micros() as u64;
            self.traffic.last.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Side {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn an_upgrade_needs_both_headers_on_http_1_1() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(requested(Version::HTTP_11, &ws).unwrap(), "websocket");
        // Connection given twice: any line may carry the option.
        let split = headers(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(requested(Version::HTTP_11, &split).is_some());
        assert!(requested(Version::HTTP_10, &ws).is_none());
        assert!(requested(Version::HTTP_2, &ws).is_none());
        let no_option = headers(&[("connection", "keep-alive"), ("upgrade", "websocket")]);
        assert!(requested(Version::HTTP_11, &no_option).is_none());
        let no_protocol = headers(&[("connection", "upgrade")]);
        assert!(requested(Version::HTTP_11, &no_protocol).is_none());
    }

    #[test]
    fn h2c_is_this_hops_offer_and_not_forwarded() {
        let h2c = headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(requested(Version::HTTP_11, &h2c).is_none());
        let both = headers(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        assert!(requested(Version::HTTP_11, &both).is_some());
    }

    #[tokio::test]
    async fn a_quiet_tunnel_ends_after_the_idle_time_and_not_before() {
        let started = Instant::now();
        let last = AtomicU64::new(0);
        let idle = Duration::from_millis(300);
        // Activity at 200 ms moves the end from 300 ms to 500 ms.
        let copy = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            last.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            std::future::pending::<io::Result<()>>().await
        };
        let err = until_quiet(copy, started, &last, idle).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let ended = started.elapsed();
        assert!(ended >= Duration::from_millis(500), "{ended:?}");
        assert!(ended < Duration::from_secs(3), "{ended:?}");
    }
}
