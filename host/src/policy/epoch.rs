//! The epoch clock that bounds each hook call's CPU time.
//!
//! wasmtime interrupts a call once the engine's epoch passes its store's
//! deadline, so something must advance the epoch: a thread does, every
//! [`EPOCH_TICK`], but only while plugin code may run. Every place that
//! runs plugin code (a hook call with its instance, loading a plugin) holds
//! [`EpochClock::running`] meanwhile; with none held for a while
//! ([`LINGER_CHECKS`]) the thread parks, so an idle gateway takes no
//! wake-ups for it (a thread ticking always took 1,000 a second, each one
//! preempting a request's work on a busy machine).
//! Counting per hook call rather than per entry into wasm (wasmtime's call
//! hook) keeps the cost to two atomic operations per call: the call hook
//! fires for every `realloc` and `post-return` too and cost ~0.7 µs per
//! no-op call here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances while plugin code runs; CPU limits are
/// counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// With no call running the thread looks again every [`IDLE_CHECK`], and
/// parks only after [`LINGER_CHECKS`] looks found nothing. Under steady
/// traffic it then never parks, so no request pays for waking it (a futex
/// wake, and the thread preempting the request on its core: ~15 µs of a
/// sequential request's CPU time), and between calls it wakes 100 times a
/// second rather than 1,000 (ticking on while idle slowed plugin-free
/// routes next to busy plugin routes). A call that starts during a look's
/// sleep is noticed at its end: its CPU limit may then run up to
/// [`IDLE_CHECK`] late.
const IDLE_CHECK: Duration = Duration::from_millis(10);
const LINGER_CHECKS: u32 = 10;

/// The ticks that make a CPU budget of `cpu_ms`.
pub fn deadline_ticks(cpu_ms: u64) -> u64 {
    // +1: the tick in progress when the call starts is partly spent already.
    (cpu_ms * 1000 / EPOCH_TICK.as_micros() as u64).max(1) + 1
}

/// What stores and the ticking thread share.
#[derive(Default)]
pub struct EpochClock {
    /// Calls into wasm in progress, on every thread.
    running: AtomicUsize,
    /// The thread is asleep (or about to be) and must be woken.
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl EpochClock {
    /// Tick until the guard drops: plugin code is about to run.
    pub fn running(&self) -> Running<'_> {
        self.enter();
        Running(self)
    }

    fn enter(&self) {
        // SeqCst pairs with the thread's store-then-check of `parked` and
        // `running`: one of the two sides always sees the other, so no call
        // runs while the thread sleeps.
        if self.running.fetch_add(1, SeqCst) == 0
            && self.parked.load(SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    fn tick(&self, engine: &Engine) {
        let mut idle_checks = 0;
        while !self.stop.load(SeqCst) {
            if self.running.load(SeqCst) > 0 {
                idle_checks = 0;
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                continue;
            }
            if idle_checks < LINGER_CHECKS {
                // Look again soon instead of parking: a call that starts
                // meanwhile is noticed at the next look.
                idle_checks += 1;
                std::thread::sleep(IDLE_CHECK);
                engine.increment_epoch();
                continue;
            }
            idle_checks = 0;
            self.parked.store(true, SeqCst);
            // An unpark between the check and park() is not lost:
            // park() returns at once on a pending unpark.
            if self.running.load(SeqCst) == 0 && !self.stop.load(SeqCst) {
                std::thread::park();
            }
            self.parked.store(false, SeqCst);
        }
    }

    #[cfg(test)]
    fn asleep(&self) -> bool {
        self.parked.load(SeqCst)
    }
}

/// Keeps the clock ticking while held.
pub struct Running<'a>(&'a EpochClock);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

/// The ticking thread; stopped on drop.
pub struct EpochTicker {
    clock: Arc<EpochClock>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Self {
        let clock = Arc::new(EpochClock::default());
        let shared = clock.clone();
        let handle = std::thread::Builder::new()
            .name("wardgate-epoch".into())
            .spawn(move || shared.tick(&engine))
            .expect("spawn epoch thread");
        let _ = clock.thread.set(handle.thread().clone());
        EpochTicker {
            clock,
            handle: Some(handle),
        }
    }

    pub fn clock(&self) -> &Arc<EpochClock> {
        &self.clock
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.clock.stop.store(true, SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn sleeps_with_no_call_running_and_wakes_for_one() {
        let ticker = EpochTicker::start(Engine::default());
        let clock = ticker.clock();
        wait_until("asleep with nothing running", || clock.asleep());
        // Each round waits out the linger (~100 ms) before the thread parks.
        for _ in 0..30 {
            let running = clock.running();
            wait_until("awake while a call runs", || !clock.asleep());
            let nested = clock.running();
            drop(running);
            std::thread::sleep(EPOCH_TICK * 3);
            assert!(!clock.asleep(), "asleep while a call still runs");
            drop(nested);
            wait_until("asleep again", || clock.asleep());
        }
        drop(ticker); // joins: the thread heard the stop while asleep
    }
}
