//! `config.idleTimeout`: closing client connections that carry no request.
//!
//! HTTP/1.1 needs nothing here: between requests hyper's head timer
//! (`headerReadTimeout`) closes a connection that sends nothing. An HTTP/2
//! connection has no such timer, so without this a client could hold any
//! number of idle connections open. A connection counts as HTTP/2 from its
//! first HTTP/2 request; its requests are in flight until their answers'
//! bodies end (a long stream is not idle). One that sends no request at all
//! is closed after the timeout whatever its protocol.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use crate::backend::http::{Body, BoxError};

/// One client connection's requests, as the idle check sees them.
pub struct Activity {
    opened: Instant,
    started: AtomicBool,
    http2: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last request ended, in microseconds after `opened`.
    quiet_since_us: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            started: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            quiet_since_us: AtomicU64::new(0),
        })
    }

    /// A request arrived. HTTP/2 ones are tracked until their answer ends:
    /// wrap the answer's body with [`track`].
    pub fn begin(self: &Arc<Self>, version: http::Version) -> Option<InFlight> {
        // A load on the HTTP/1.1 path rather than a write per request.
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Relaxed);
        }
        if version != http::Version::HTTP_2 {
            return None;
        }
        self.http2.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight(self.clone()))
    }

    /// Resolves once the connection has been idle for `timeout`; never for
    /// an HTTP/1.1 connection that has sent a request.
    pub async fn idle_for(&self, timeout: Duration) {
        let mut deadline = self.opened + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if !self.http2.load(Ordering::Relaxed) {
                if !self.started.load(Ordering::Relaxed) {
                    return;
                }
                // HTTP/1.1: hyper's head timer does this job.
                return std::future::pending().await;
            }
            if self.in_flight.load(Ordering::Acquire) == 0 {
                let quiet_since = self.opened
                    + Duration::from_micros(self.quiet_since_us.load(Ordering::Relaxed));
                if quiet_since + timeout <= Instant::now() {
                    return;
                }
                deadline = quiet_since + timeout;
            } else {
                deadline = Instant::now() + timeout;
            }
        }
    }
}

/// An HTTP/2 request whose answer is still going.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let quiet = self.0.opened.elapsed().as_micros() as u64;
        self.0.quiet_since_us.fetch_max(quiet, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer's body, holding its request in flight until it ends or the
/// client resets the stream (either drops it).
pub fn track(body: Body, request: InFlight) -> Body {
    Body::new(Tracked {
        body,
        _request: request,
    })
}

struct Tracked {
    body: Body,
    _request: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn an_http2_connection_is_idle_only_with_no_request_open() {
        let activity = Activity::new();
        let request = activity.begin(http::Version::HTTP_2).unwrap();
        let idle = activity.idle_for(TIMEOUT);
        tokio::pin!(idle);
        // A request open for three timeouts keeps the connection.
        assert!(tokio::time::timeout(TIMEOUT * 3, &mut idle).await.is_err());
        drop(request);
        let ended = Instant::now();
        idle.await;
        let waited = ended.elapsed();
        assert!(
            waited >= TIMEOUT && waited < TIMEOUT * 10,
            "closed {waited:?} after the last request ended"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_idle_and_an_http1_one_is_left_to_hyper() {
        let silent = Activity::new();
        silent.idle_for(TIMEOUT).await;
        assert!(silent.opened.elapsed() >= TIMEOUT);

        let http1 = Activity::new();
        assert!(http1.begin(http::Version::HTTP_11).is_none());
        let idle = http1.idle_for(TIMEOUT);
        assert!(tokio::time::timeout(TIMEOUT * 4, idle).await.is_err());
    }
}
