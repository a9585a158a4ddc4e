//! Thread per core: each worker is one OS thread running a single-threaded
//! tokio runtime that serves the connections handed to it from start to
//! end. A request and the upstream connection it borrows (see
//! [`crate::backend::http`], one pool per worker) live on the same thread,
//! so forwarding never wakes another thread; with tokio's work-stealing
//! runtime those cross-thread wake-ups cost more than the second core gave.
//!
//! Connections go to the worker serving the fewest, so a burst of new
//! connections (a load tool's, a client pool's) is spread evenly; two
//! workers accepting on one socket would let whichever woke first take the
//! whole burst.
//!
//! The process's other work (accepting, admin, reloads, signals) runs on the
//! main runtime. Background tasks a request starts (an MCP target's
//! supervisor, a streamed LLM answer) stay on the worker that started them.

use std::cell::Cell;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use tokio::sync::{Barrier, mpsc};

use super::drain::DrainSignal;
use crate::proxy::Shared;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker this thread is, if it is one.
pub fn index() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// One `T` per worker and a last one for every other thread, each on cache
/// lines of its own (128 bytes: the CPU fetches lines in pairs), so what a
/// worker writes in its own never moves a line another core writes. For
/// state every request touches: metrics shards, config copies, upstream
/// pools. Workers beyond the count share.
pub struct PerThread<T>(Box<[CacheLines<T>]>);

#[repr(align(128))]
struct CacheLines<T>(T);

impl<T> PerThread<T> {
    pub fn new(workers: usize, mut make: impl FnMut() -> T) -> Self {
        PerThread(
            (0..workers.max(1) + 1)
                .map(|_| CacheLines(make()))
                .collect(),
        )
    }

    /// This thread's own.
    pub fn mine(&self) -> &T {
        // `new` makes at least one worker entry before the others' one.
        let others = self.0.len() - 1;
        &self.0[index().map_or(others, |w| w % others)].0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|c| &c.0)
    }
}

/// A value every request reads, such as the config, kept as one copy of
/// its `Arc` per worker (and one for other threads), each an allocation of
/// its own. A request takes and drops a reference on its worker's copy, so
/// the count it writes stays in that core's cache. With one `Arc` for all,
/// or copies allocated side by side (measured: 32 bytes apart, 25–58 ns per
/// take and drop on two threads, against 9 ns 256 bytes apart), that count's
/// cache line moved between the cores with every request.
pub struct PerWorker<T> {
    copies: PerThread<ArcSwap<WorkerCopy<T>>>,
    /// One publisher at a time, so that every copy ends on the same value.
    publishing: Mutex<()>,
}

/// One worker's copy; 128-byte aligned (the CPU fetches cache lines in
/// pairs), so no two copies' counts share a line.
#[repr(align(128))]
pub struct WorkerCopy<T>(Arc<T>);

impl<T> std::ops::Deref for WorkerCopy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> PerWorker<T> {
    pub fn new(value: Arc<T>, workers: usize) -> Self {
        PerWorker {
            copies: PerThread::new(workers, || ArcSwap::from_pointee(WorkerCopy(value.clone()))),
            publishing: Mutex::new(()),
        }
    }

    /// This thread's copy, for a request to hold.
    pub fn get(&self) -> Arc<WorkerCopy<T>> {
        self.copies.mine().load_full()
    }

    /// The value itself, whose count all threads share: not for every request.
    pub fn value(&self) -> Arc<T> {
        self.get().0.clone()
    }

    /// Replace every copy with `value`.
    pub fn publish(&self, value: Arc<T>) {
        let _one = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        for copy in self.copies.iter() {
            copy.store(Arc::new(WorkerCopy(value.clone())));
        }
    }
}

/// Make this thread worker `i` (what [`index`] answers on it from now on).
pub(crate) fn become_worker(i: usize) {
    INDEX.with(|c| c.set(Some(i)));
}

/// How many workers to run: `config.workerThreads`, else one per core.
pub fn count(configured: Option<NonZeroUsize>) -> usize {
    configured
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// A connection on its way to a worker.
pub struct Accepted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub bind: usize,
    /// Counts the connection against its worker until dropped.
    pub load: Load,
}

/// One open connection on a worker.
pub struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where acceptors send connections. Dropping every handle (the acceptors
/// end at shutdown) tells the workers to drain.
pub struct Dispatch {
    workers: Vec<(mpsc::UnboundedSender<Accepted>, Arc<AtomicUsize>)>,
}

impl Dispatch {
    /// Give the connection to the worker with the fewest open connections.
    pub fn hand_over(&self, stream: std::net::TcpStream, peer: SocketAddr, bind: usize) {
        let Some((to, open)) = self
            .workers
            .iter()
            .min_by_key(|(_, open)| open.load(Ordering::Relaxed))
        else {
            return;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let load = Load(open.clone());
        if to
            .send(Accepted {
                stream,
                peer,
                bind,
                load,
            })
            .is_err()
        {
            tracing::warn!(%peer, "no worker to serve the connection");
        }
    }
}

/// The running workers; [`Workers::join`] waits until every one has drained.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start `n` workers; connections reach them through the returned [`Dispatch`].
    /// `drain` tells them when shutdown begins (see [`super::drain`]).
    pub fn start(
        n: usize,
        shared: Arc<Shared>,
        drain: DrainSignal,
    ) -> anyhow::Result<(Workers, Dispatch)> {
        // A worker that has drained its own connections keeps running its
        // runtime until all have: a request on another worker may still be
        // waiting on a task (an MCP target's supervisor) that lives on it.
        let drained = Arc::new(Barrier::new(n));
        // Start returns once every worker runs, so the listening line the
        // gateway prints next is true of all of them.
        let started = Arc::new(std::sync::Barrier::new(n + 1));
        let mut threads = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            workers.push((tx, open.clone()));
            // Built here so a failure is a start-up error, not a dead thread.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("worker {i}: cannot build its runtime: {e}"))?;
            let (shared, drained, started) = (shared.clone(), drained.clone(), started.clone());
            let drain = drain.clone();
            let thread = std::thread::Builder::new()
                .name(format!("wardgate-worker-{i}"))
                .spawn(move || {
                    become_worker(i);
                    started.wait();
                    runtime.block_on(async move {
                        tokio::spawn(keep_timer_wheel_busy());
                        super::serve_connections(shared, rx, open, drain).await;
                        drained.wait().await;
                    });
                })?;
            threads.push(thread);
        }
        started.wait();
        Ok((Workers { threads }, Dispatch { workers }))
    }

    /// Wait for every worker to finish draining.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Keep a timer due within the next second on the worker's wheel. tokio
/// wakes its driver through an eventfd whenever a timer is armed that is
/// due before every timer the driver last went to sleep with, and an empty
/// wheel counts as "later than anything": so when the wheel was empty, the
/// header-read timer hyper arms for each request cost a `write` system
/// call (0.24 per proxied request under load). With this tick pending, a
/// timer due later than it (hyper's 10 s default and up) arms silently;
/// the worker wakes once a second for it.
async fn keep_timer_wheel_busy() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_finds_its_own_entry_on_lines_of_its_own() {
        let mut next = 0usize;
        let per = PerThread::new(2, || {
            next += 1;
            next - 1
        });
        let at: Vec<usize> = per.iter().map(|v| v as *const usize as usize).collect();
        assert_eq!(at.len(), 3);
        for w in at.windows(2) {
            assert!(w[1] - w[0] >= 128, "entries {} bytes apart", w[1] - w[0]);
        }
        // Workers 0 and 1 their own, a third worker shares worker 0's, and
        // a thread that is no worker the last.
        std::thread::scope(|s| {
            for (worker, expected) in [(Some(0), 0), (Some(1), 1), (Some(2), 0), (None, 2)] {
                let per = &per;
                s.spawn(move || {
                    if let Some(i) = worker {
                        become_worker(i);
                    }
                    assert_eq!(*per.mine(), expected, "worker {worker:?}");
                });
            }
        });
    }

    #[test]
    fn each_workers_copy_has_cache_lines_of_its_own() {
        let shared = PerWorker::new(Arc::new(1u32), 2);
        let copies: Vec<Arc<WorkerCopy<u32>>> =
            shared.copies.iter().map(|c| c.load_full()).collect();
        for (i, a) in copies.iter().enumerate() {
            for b in &copies[i + 1..] {
                let apart = (Arc::as_ptr(a) as usize).abs_diff(Arc::as_ptr(b) as usize);
                assert!(apart >= 128, "two workers' copies {apart} bytes apart");
            }
        }
    }

    #[test]
    fn a_published_value_reaches_every_thread() {
        let shared = PerWorker::new(Arc::new("old"), 2);
        shared.publish(Arc::new("new"));
        // Workers 0 and 1, a worker beyond the count, and a thread that is
        // no worker.
        std::thread::scope(|s| {
            for worker in [Some(0), Some(1), Some(2), None] {
                let shared = &shared;
                s.spawn(move || {
                    if let Some(i) = worker {
                        become_worker(i);
                    }
                    assert_eq!(**shared.get(), "new", "worker {worker:?}");
                    assert_eq!(*shared.value(), "new", "worker {worker:?}");
                });
            }
        });
    }
}
