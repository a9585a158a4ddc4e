//! Thread per core: each worker is one OS thread running a single-threaded
//! tokio runtime that accepts on every bound socket and serves the
//! connections it accepts from start to end. A request and the upstream
//! connection it borrows (see [`crate::backend::http`], one pool per worker)
//! live on the same thread, so forwarding never wakes another thread; with
//! tokio's work-stealing runtime those cross-thread wake-ups cost more than
//! the second core gave back (27k req/s with two workers, 30k with one).
//!
//! The process's other work (admin, reloads, signals) runs on the main
//! runtime. Background tasks a request starts (an MCP target's supervisor,
//! a streamed LLM answer) stay on the worker that started them.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{Barrier, watch};

use crate::proxy::Shared;

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker this thread is, if it is one.
pub fn index() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// How many workers to run: `config.workerThreads`, else one per core.
pub fn count(configured: Option<NonZeroUsize>) -> usize {
    configured
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// The running workers; [`Workers::join`] waits until every one has drained.
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start `n` workers serving `sockets` (index = bind) until `shutdown` flips.
    pub fn start(
        n: usize,
        shared: Arc<Shared>,
        sockets: &[std::net::TcpListener],
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Workers> {
        // A worker that has drained its own connections keeps running its
        // runtime until all have: a request on another worker may still be
        // waiting on a task (an MCP target's supervisor) that lives on it.
        let drained = Arc::new(Barrier::new(n));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let sockets = sockets
                .iter()
                .map(|s| s.try_clone())
                .collect::<std::io::Result<Vec<_>>>()?;
            let (shared, shutdown, drained) = (shared.clone(), shutdown.clone(), drained.clone());
            let thread = std::thread::Builder::new()
                .name(format!("wardgate-worker-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(Some(i)));
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("worker runtime");
                    runtime.block_on(async move {
                        let mut serving = Vec::new();
                        for (bind, socket) in sockets.into_iter().enumerate() {
                            match super::to_tokio(socket) {
                                Ok(l) => serving.push(tokio::spawn(super::serve(
                                    shared.clone(),
                                    l,
                                    bind,
                                    shutdown.clone(),
                                ))),
                                Err(e) => tracing::error!(worker = i, bind, "cannot accept: {e}"),
                            }
                        }
                        for s in serving {
                            let _ = s.await;
                        }
                        drained.wait().await;
                    });
                })?;
            threads.push(thread);
        }
        Ok(Workers { threads })
    }

    /// Wait for every worker to finish draining.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}
