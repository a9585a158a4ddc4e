//! The counter store behind the `counters` capability: fixed windows and token
//! buckets, shared by every plugin instance and thread.
//!
//! [`CounterStore`] is the seam for a shared store (Redis) later; the
//! in-process [`LocalCounters`] is the default.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Value of a windowed counter after an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub value: u64,
    pub reset_ms: u64,
}

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub capacity: u64,
    pub refill_tokens: u64,
    pub refill_ms: u64,
}

/// Outcome of taking tokens from a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    pub allowed: bool,
    pub remaining: i64,
    pub reset_ms: u64,
    pub retry_after_ms: u64,
}

/// Atomic counters; every method is one atomic step per key.
pub trait CounterStore: Send + Sync + 'static {
    fn increment(&self, key: &str, delta: u64, window_ms: u64) -> WindowCount;
    /// Take `cost` tokens; with `force`, take them even into the negative.
    fn take(&self, key: &str, spec: BucketSpec, cost: u64, force: bool) -> BucketState;
}

const SHARDS: usize = 16;

enum Entry {
    Window {
        start_ms: u64,
        value: u64,
        expires_ms: u64,
    },
    // Tokens are kept in thousandths so slow refill rates do not round to zero.
    Bucket {
        milli_tokens: i128,
        at_ms: u64,
        expires_ms: u64,
    },
}

impl Entry {
    fn expires_ms(&self) -> u64 {
        match self {
            Entry::Window { expires_ms, .. } | Entry::Bucket { expires_ms, .. } => *expires_ms,
        }
    }
}

struct Shard {
    map: HashMap<String, Entry>,
    // Expired entries are swept when the map doubles since the last sweep.
    sweep_at: usize,
}

/// In-process counters, sharded to keep lock contention low.
pub struct LocalCounters {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Default for LocalCounters {
    fn default() -> Self {
        LocalCounters {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        sweep_at: 1024,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LocalCounters {
    fn with_entry<R>(&self, key: &str, now: u64, f: impl FnOnce(&mut Shard) -> R) -> R {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.map.len() >= shard.sweep_at {
            shard.map.retain(|_, e| e.expires_ms() > now);
            shard.sweep_at = (shard.map.len() * 2).max(1024);
        }
        f(&mut shard)
    }

    pub(crate) fn increment_at(
        &self,
        key: &str,
        delta: u64,
        window_ms: u64,
        now: u64,
    ) -> WindowCount {
        let window_ms = window_ms.max(1);
        let start_ms = now - now % window_ms;
        self.with_entry(key, now, |shard| {
            let entry = shard.map.entry(key.to_string()).or_insert(Entry::Window {
                start_ms,
                value: 0,
                expires_ms: start_ms + window_ms,
            });
            match entry {
                Entry::Window {
                    start_ms: s,
                    value,
                    expires_ms,
                } if *s == start_ms => {
                    *value = value.saturating_add(delta);
                    let _ = expires_ms;
                    WindowCount {
                        value: *value,
                        reset_ms: start_ms + window_ms - now,
                    }
                }
                // A new window, or the key was used as a bucket before: start over.
                other => {
                    *other = Entry::Window {
                        start_ms,
                        value: delta,
                        expires_ms: start_ms + window_ms,
                    };
                    WindowCount {
                        value: delta,
                        reset_ms: start_ms + window_ms - now,
                    }
                }
            }
        })
    }

    pub(crate) fn take_at(
        &self,
        key: &str,
        spec: BucketSpec,
        cost: u64,
        force: bool,
        now: u64,
    ) -> BucketState {
        let capacity = spec.capacity as i128 * 1000;
        let refill_ms = spec.refill_ms.max(1) as i128;
        let refill = spec.refill_tokens as i128 * 1000;
        // Time to refill from `tokens` to `want` (both in milli-tokens), rounded up.
        let time_to = |tokens: i128, want: i128| -> u64 {
            if want <= tokens || refill == 0 {
                return 0;
            }
            ((want - tokens) * refill_ms + refill - 1).div_euclid(refill) as u64
        };
        self.with_entry(key, now, |shard| {
            let entry = shard.map.entry(key.to_string()).or_insert(Entry::Bucket {
                milli_tokens: capacity,
                at_ms: now,
                expires_ms: now,
            });
            if !matches!(entry, Entry::Bucket { .. }) {
                *entry = Entry::Bucket {
                    milli_tokens: capacity,
                    at_ms: now,
                    expires_ms: now,
                };
            }
            let Entry::Bucket {
                milli_tokens,
                at_ms,
                expires_ms,
            } = entry
            else {
                unreachable!()
            };
            let elapsed = now.saturating_sub(*at_ms) as i128;
            *milli_tokens = (*milli_tokens + elapsed * refill / refill_ms).min(capacity);
            *at_ms = now;
            let cost_milli = cost as i128 * 1000;
            let allowed = force || *milli_tokens >= cost_milli;
            if allowed {
                *milli_tokens -= cost_milli;
            }
            let reset_ms = time_to(*milli_tokens, capacity);
            // Once full again the entry carries no information and may be swept.
            *expires_ms = now + reset_ms + 1;
            BucketState {
                allowed,
                remaining: (*milli_tokens).div_euclid(1000) as i64,
                reset_ms,
                retry_after_ms: if allowed {
                    0
                } else {
                    time_to(*milli_tokens, cost_milli)
                },
            }
        })
    }
}

impl CounterStore for LocalCounters {
    fn increment(&self, key: &str, delta: u64, window_ms: u64) -> WindowCount {
        self.increment_at(key, delta, window_ms, now_ms())
    }

    fn take(&self, key: &str, spec: BucketSpec, cost: u64, force: bool) -> BucketState {
        self.take_at(key, spec, cost, force, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_resets() {
        let c = LocalCounters::default();
        assert_eq!(
            c.increment_at("k", 1, 1000, 10_000),
            WindowCount {
                value: 1,
                reset_ms: 1000
            }
        );
        assert_eq!(
            c.increment_at("k", 2, 1000, 10_400),
            WindowCount {
                value: 3,
                reset_ms: 600
            }
        );
        assert_eq!(c.increment_at("other", 5, 1000, 10_400).value, 5);
        assert_eq!(
            c.increment_at("k", 1, 1000, 11_000),
            WindowCount {
                value: 1,
                reset_ms: 1000
            }
        );
    }

    #[test]
    fn bucket_takes_refills_and_debits() {
        let c = LocalCounters::default();
        let spec = BucketSpec {
            capacity: 2,
            refill_tokens: 1,
            refill_ms: 1000,
        };
        assert!(c.take_at("b", spec, 1, false, 0).allowed);
        let s = c.take_at("b", spec, 1, false, 0);
        assert_eq!((s.allowed, s.remaining, s.reset_ms), (true, 0, 2000));
        let s = c.take_at("b", spec, 1, false, 500);
        assert_eq!((s.allowed, s.remaining, s.retry_after_ms), (false, 0, 500));
        assert!(c.take_at("b", spec, 1, false, 1000).allowed);
        // A forced debit of actual usage can drive the bucket negative.
        let s = c.take_at("b", spec, 5, true, 1000);
        assert_eq!((s.allowed, s.remaining), (true, -5));
        assert!(!c.take_at("b", spec, 1, false, 3000).allowed);
    }

    #[test]
    fn concurrent_increments_are_atomic() {
        let c = std::sync::Arc::new(LocalCounters::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.increment("shared", 1, 1 << 60);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.increment("shared", 0, 1 << 60).value, 4000);
    }
}
