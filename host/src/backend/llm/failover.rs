//! Provider choice and failover: priority groups tried in order, providers
//! within a group in turn; a provider that answers 429 or 5xx, or cannot be
//! reached, is set aside for a cooldown and the request moves on. Nothing
//! has reached the client yet when this happens, so moving on is safe.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backend::http::UpstreamBody;
use http::{Request, Response};

use super::SendFailure;
use super::api::Api;
use super::provider::Provider;
use crate::backend::http::{Body, HttpBackends};

const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

pub struct Failover {
    /// Priority groups of (index, provider); the index keys `cooling_until`.
    groups: Vec<Vec<(usize, Arc<Provider>)>>,
    /// Per provider: milliseconds since `epoch` until which it is set aside.
    cooling_until: Vec<AtomicU64>,
    epoch: Instant,
    next: AtomicUsize,
    cooldown: Duration,
    /// Total tries per request (first try included) the route's `retry`
    /// asks for; there is always one per candidate provider.
    attempts: usize,
    backoff: Duration,
    budget: RetryBudget,
}

impl Failover {
    pub fn new(groups: Vec<Vec<Arc<Provider>>>, cooldown: Option<Duration>) -> Self {
        let mut n = 0;
        let groups: Vec<Vec<(usize, Arc<Provider>)>> = groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|p| {
                        n += 1;
                        (n - 1, p)
                    })
                    .collect()
            })
            .collect();
        Failover {
            groups,
            cooling_until: (0..n).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            next: AtomicUsize::new(0),
            cooldown: cooldown.unwrap_or(DEFAULT_COOLDOWN),
            attempts: 1,
            backoff: Duration::from_millis(100),
            budget: RetryBudget::default(),
        }
    }

    /// Take the route's `retry` policy: more tries than providers retry the
    /// same ones after a growing pause.
    pub fn with_retry(mut self, attempts: Option<u32>, backoff: Option<Duration>) -> Self {
        if let Some(a) = attempts {
            self.attempts = a as usize;
        }
        if let Some(b) = backoff {
            self.backoff = b;
        }
        self
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.groups.iter().flatten().map(|(_, p)| p)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn cooling(&self, index: usize) -> bool {
        self.cooling_until[index].load(Ordering::Relaxed) > self.now_ms()
    }

    /// Set a provider aside for `for_` (or the default cooldown).
    pub fn cool(&self, index: usize, for_: Option<Duration>) {
        let d = for_.unwrap_or(self.cooldown).min(MAX_RETRY_AFTER);
        self.cooling_until[index].store(self.now_ms() + d.as_millis() as u64, Ordering::Relaxed);
    }

    /// The providers to try for `api`, best first: healthy ones by group
    /// (rotating within a group), then the cooling ones, since an answer
    /// from a recovering provider beats none.
    pub fn candidates(&self, api: Api) -> Vec<(usize, Arc<Provider>)> {
        self.candidates_for(|p| p.serves(api))
    }

    /// As [`Self::candidates`], for the providers `serves` picks.
    pub fn candidates_for(
        &self,
        serves: impl Fn(&Provider) -> bool,
    ) -> Vec<(usize, Arc<Provider>)> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let mut healthy = Vec::new();
        let mut cooling = Vec::new();
        for group in &self.groups {
            let n = group.len();
            for k in 0..n {
                let (i, p) = &group[(turn + k) % n];
                if !serves(p) {
                    continue;
                }
                if self.cooling(*i) {
                    cooling.push((*i, p.clone()));
                } else {
                    healthy.push((*i, p.clone()));
                }
            }
        }
        healthy.extend(cooling);
        healthy
    }

    /// Send to the candidates in turn until one gives an answer that is
    /// not 429/5xx. `build` makes the request for a given provider.
    pub async fn send(
        &self,
        clients: &HttpBackends,
        candidates: &[(usize, Arc<Provider>)],
        timeout: Option<Duration>,
        build: impl Fn(&Provider) -> Request<Body>,
    ) -> Result<(Arc<Provider>, Response<UpstreamBody>), SendFailure> {
        self.budget.request();
        // One try per candidate: a provider that does not serve this API
        // adds none, so a lone candidate is asked twice only if `retry` says so.
        let attempts = self.attempts.max(candidates.len()).max(1);
        let mut pause = self.backoff;
        let mut last = None;
        for n in 0..attempts {
            let (index, provider) = &candidates[n % candidates.len()];
            if n > 0 {
                if !self.budget.retry() {
                    tracing::warn!(provider = %provider.name, "retry budget spent; not retrying");
                    break;
                }
                if n >= candidates.len() {
                    // Back to a provider already tried: give it a moment.
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                }
            }
            let mut req = build(provider);
            if let Err(e) = provider.sign(&mut req).await {
                tracing::warn!(provider = %provider.name, "no credentials for the provider: {e}");
                self.cool(*index, None);
                let e = crate::backend::http::UpstreamError::Credentials(provider.name.clone(), e);
                last = Some(SendFailure::Upstream(e, provider.name.clone()));
                continue;
            }
            match clients.forward(&provider.upstream, req, timeout).await {
                Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => {
                    let wait = retry_after(resp.headers());
                    tracing::warn!(provider = %provider.name, status = %resp.status(), "provider failed; set aside for {:?}", wait.unwrap_or(self.cooldown));
                    self.cool(*index, wait);
                    last = Some(SendFailure::Status(provider.clone(), resp));
                }
                Ok(resp) => return Ok((provider.clone(), resp)),
                Err(e) => {
                    tracing::warn!(provider = %provider.name, "provider unreachable: {e}");
                    self.cool(*index, None);
                    last = Some(SendFailure::Upstream(e, provider.name.clone()));
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// `retry-after` (seconds or HTTP date is not parsed: seconds only) or
/// `retry-after-ms`, as providers send on 429.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
    };
    get("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| get("retry-after").map(Duration::from_secs_f64))
}

/// Retries may add at most a fifth to the requests of the last ten seconds
/// (plus a few), so a failing provider cannot multiply the load.
#[derive(Default)]
struct RetryBudget {
    window: Mutex<BudgetWindow>,
}

#[derive(Default)]
struct BudgetWindow {
    started: Option<Instant>,
    requests: u64,
    retries: u64,
}

const BUDGET_WINDOW: Duration = Duration::from_secs(10);
const BUDGET_RATIO: f64 = 0.2;
const BUDGET_MIN: u64 = 10;

impl RetryBudget {
    fn roll(w: &mut BudgetWindow) {
        if w.started.is_none_or(|s| s.elapsed() > BUDGET_WINDOW) {
            *w = BudgetWindow {
                started: Some(Instant::now()),
                requests: 0,
                retries: 0,
            };
        }
    }

    fn request(&self) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        Self::roll(&mut w);
        w.requests += 1;
    }

    fn retry(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        Self::roll(&mut w);
        let allowed = BUDGET_MIN + (w.requests as f64 * BUDGET_RATIO) as u64;
        if w.retries >= allowed {
            return false;
        }
        w.retries += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
    }

    #[test]
    fn budget_allows_a_fifth_of_requests_beyond_the_minimum() {
        let b = RetryBudget::default();
        for _ in 0..100 {
            b.request();
        }
        let allowed = (0..100).filter(|_| b.retry()).count();
        assert_eq!(allowed, 30);
    }
}
