//! Request ids: 24 hex digits, this process's prefix then a counter, made
//! for every request that does not bring its own `x-request-id`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Numbers a thread takes from the shared counter at a time: one shared
/// increment per block rather than per request, whose cache line would
/// otherwise move between the workers' cores on every request.
const BLOCK: u64 = 256;

/// Tells apart the `RequestIds` in a process, for the threads' blocks.
static INSTANCES: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's block: (the instance it is from, next number, end).
    static BLOCK_LEFT: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
}

pub struct RequestIds {
    /// Distinct per process, so ids from two replicas do not collide.
    prefix: u64,
    next: AtomicU64,
    instance: u64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            prefix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ std::process::id() as u64,
            next: AtomicU64::new(0),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl RequestIds {
    /// A new id, unique among this instance's (in no order across threads).
    pub fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next_number();
        let mut id = [0u8; 24];
        for (i, b) in id[..16].iter_mut().enumerate() {
            *b = HEX[(self.prefix >> (60 - 4 * i) & 0xf) as usize];
        }
        for (i, b) in id[16..].iter_mut().enumerate() {
            *b = HEX[(n >> (28 - 4 * i) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }

    fn next_number(&self) -> u64 {
        BLOCK_LEFT.with(|left| {
            let (instance, mut next, mut end) = left.get();
            if instance != self.instance || next == end {
                next = self.next.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            left.set((self.instance, next + 1, end));
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_across_threads_and_instances() {
        let (a, b) = (RequestIds::default(), RequestIds::default());
        // Each thread alternates between the two instances, so a block
        // taken from one must not be spent on the other.
        let per_thread = 3 * BLOCK as usize + 7;
        let ids: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
                        for _ in 0..per_thread {
                            from_a.push(a.next().to_str().unwrap().to_string());
                            from_b.push(b.next().to_str().unwrap().to_string());
                        }
                        (from_a, from_b)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let from_a = ids.iter().flat_map(|(a, _)| a.clone()).collect::<Vec<_>>();
        let from_b = ids.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<_>>();
        for all in [from_a, from_b] {
            let distinct: HashSet<&String> = all.iter().collect();
            assert_eq!(distinct.len(), 3 * per_thread, "duplicate ids");
            assert!(
                all.iter().all(|id| id.len() == 24
                    && id.bytes().all(|c| c.is_ascii_hexdigit())
                    && id[..16] == all[0][..16]),
                "24 hex digits with one prefix: {:?}",
                &all[..3]
            );
        }
    }
}
