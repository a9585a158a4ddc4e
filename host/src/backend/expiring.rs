//! A credential the gateway fetches and keeps until shortly before it
//! expires (Google ID tokens, AWS keys, Entra ID tokens): one fetch at a
//! time, the other requests waiting for its result.

use std::future::Future;
use std::time::{Duration, Instant};

use http::HeaderValue;

/// A fetch that takes longer fails: the request waiting on it has its own
/// deadline, and a token endpoint that slow is down.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Expiring<T> {
    /// Replaced this long before it expires.
    margin: Duration,
    slot: tokio::sync::Mutex<Option<(T, Instant)>>,
}

impl<T: Clone> Expiring<T> {
    pub fn new(margin: Duration) -> Self {
        Expiring {
            margin,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The kept value, or a new one from `fetch` (the value and how long
    /// it lives); `what` names it when the fetch times out.
    pub async fn get<Fut>(
        &self,
        what: impl std::fmt::Display,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<T, String>
    where
        Fut: Future<Output = Result<(T, Duration), String>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((value, refresh_at)) = slot.as_ref()
            && *refresh_at > Instant::now()
        {
            return Ok(value.clone());
        }
        let (value, life) = tokio::time::timeout(FETCH_TIMEOUT, fetch())
            .await
            .map_err(|_| format!("no {what} within {FETCH_TIMEOUT:?}"))??;
        *slot = Some((
            value.clone(),
            Instant::now() + life.saturating_sub(self.margin),
        ));
        Ok(value)
    }
}

/// `Bearer <token>` as a header value, marked sensitive.
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token has characters a header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}
