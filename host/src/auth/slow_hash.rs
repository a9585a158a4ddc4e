//! Checking a credential against a deliberately slow hash (bcrypt, the
//! crypt family) costs milliseconds to hundreds of them: too much to pay on
//! every request, and too long to block a worker thread that serves other
//! connections. So the check runs on tokio's blocking pool, once per
//! distinct credential, and its verdict is remembered for a while under a
//! keyed digest (HMAC with a key made at start, so the remembered digests
//! are worth nothing outside this process). Requests that bring the same
//! credential while it is being checked wait for that one check.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use ring::hmac;
use ring::rand::SystemRandom;
use tokio::sync::OnceCell;

/// How long a verdict stands; a changed password file takes effect on
/// reload anyway (a reload builds a new cache).
const REMEMBER_FOR: Duration = Duration::from_secs(600);
/// Distinct credentials remembered at once.
const CAPACITY: u64 = 10_000;

pub struct SlowHashChecks {
    key: hmac::Key,
    /// Credential digest → the index of the entry it matched, `None` when
    /// it matched none; empty while its check runs.
    verdicts: Cache<[u8; 32], Arc<OnceCell<Option<u32>>>>,
}

impl SlowHashChecks {
    pub fn new() -> SlowHashChecks {
        SlowHashChecks {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .expect("the system's random source works"),
            verdicts: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(REMEMBER_FOR)
                .build(),
        }
    }

    /// The remembered verdict for `credential`, or `check`'s, run on the
    /// blocking pool.
    pub async fn verdict(
        &self,
        credential: &[u8],
        check: impl FnOnce() -> Option<u32> + Send + 'static,
    ) -> Option<u32> {
        let tag = hmac::sign(&self.key, credential);
        let digest: [u8; 32] = tag.as_ref().try_into().expect("SHA-256 tags are 32 bytes");
        // Inserting an empty cell is all `get_with` waits on, never a check.
        let cell = self.verdicts.get_with(digest, Default::default);
        // A panic in the check (none is expected) refuses the credential.
        *cell
            .get_or_init(|| async { tokio::task::spawn_blocking(check).await.unwrap_or(None) })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn each_credential_is_checked_once() {
        let checks = SlowHashChecks::new();
        let runs = Arc::new(AtomicUsize::new(0));
        for credential in ["a", "b", "a", "a", "b"] {
            let runs = runs.clone();
            let expected = (credential == "a").then_some(7);
            let got = checks
                .verdict(credential.as_bytes(), move || {
                    runs.fetch_add(1, Ordering::Relaxed);
                    (credential == "a").then_some(7)
                })
                .await;
            assert_eq!(got, expected);
        }
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_with_a_credential_under_check_wait_for_that_check() {
        let checks = Arc::new(SlowHashChecks::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let (checks, runs) = (checks.clone(), runs.clone());
                tokio::spawn(async move {
                    checks
                        .verdict(b"same", move || {
                            runs.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(100));
                            Some(3)
                        })
                        .await
                })
            })
            .collect();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Some(3));
        }
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }
}
