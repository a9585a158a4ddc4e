//! Fresh instances made ahead of the requests that take them.
//!
//! In snapshot isolation every request needs an instance no request used
//! before. Making one (a pool slot mapped to the snapshot's copy-on-write
//! image) and retiring it (resetting the pages it wrote) cost more than the
//! hook call of a small plugin, so a request takes an instance made earlier
//! and leaves its used one behind; both chores run later as a task on the
//! same worker thread, once the request's task yields (its response
//! written, or while it waits on the upstream). The same thread, not a
//! helper thread: on these VMs waking another thread costs a request more
//! than the chores it would move (measured: a helper thread made the
//! isolated no-op request 2x slower).
//!
//! When requests come faster than the worker finds idle moments, a request
//! makes (and drops) its own instance as before; nothing ever waits for a
//! chore. Isolation is unchanged: every request gets an instance that ran
//! no code since it was made from the snapshot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::capabilities::{HostServices, PluginLabel, StoreState};
use super::engine::new_store;
use super::epoch::EpochClock;
use super::error::FailureKind;
use super::instance::Live;

/// Ready instances kept per loaded plugin: enough for a worker's request
/// and the next one; each holds a pool slot.
const READY: usize = 2;

/// Used instances waiting to be dropped, at most; past this a request drops
/// its own.
const MAX_RETIRED: usize = 8;

/// Pool slots that ready and retired instances may hold across all plugins
/// of an engine, so that many snapshot plugins never starve requests of
/// slots: past it, requests make and drop their own instances.
pub(crate) struct SlotBudget {
    held: AtomicUsize,
    limit: usize,
}

impl SlotBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(SlotBudget {
            held: AtomicUsize::new(0),
            limit,
        })
    }

    fn try_hold(&self) -> bool {
        let held = self.held.fetch_add(1, Ordering::AcqRel);
        if held >= self.limit {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A snapshot plugin's source of never-used instances.
pub(crate) struct FreshInstances {
    pre: InstancePre<StoreState>,
    engine: Engine,
    label: Arc<PluginLabel>,
    services: Arc<HostServices>,
    cpu_ms: u64,
    clock: Arc<EpochClock>,
    ready: Mutex<Vec<Live>>,
    retired: Mutex<Vec<Live>>,
    /// A tidy task is on its way.
    tidy_queued: AtomicBool,
    /// Counts every instance in `ready` and `retired`.
    budget: Arc<SlotBudget>,
}

impl FreshInstances {
    /// The first instances are made at once: loading is off the request path.
    pub(crate) fn new(
        pre: InstancePre<StoreState>,
        engine: Engine,
        label: Arc<PluginLabel>,
        services: Arc<HostServices>,
        cpu_ms: u64,
        clock: Arc<EpochClock>,
        budget: Arc<SlotBudget>,
    ) -> Arc<Self> {
        let fresh = Arc::new(FreshInstances {
            pre,
            engine,
            label,
            services,
            cpu_ms,
            clock,
            ready: Mutex::new(Vec::with_capacity(READY)),
            retired: Mutex::new(Vec::with_capacity(MAX_RETIRED)),
            tidy_queued: AtomicBool::new(false),
            budget,
        });
        fresh.tidy();
        fresh
    }

    /// A never-used instance: a ready one if there is, else made now.
    pub(crate) fn take(self: &Arc<Self>) -> Result<Live, FailureKind> {
        let ready = self.ready.lock().unwrap().pop();
        match ready {
            Some(live) => {
                self.budget.release(1);
                Ok(live)
            }
            None => self.make(),
        }
    }

    /// Leave a used instance to be dropped later.
    pub(crate) fn retire(self: &Arc<Self>, live: Live) {
        let full = {
            let mut retired = self.retired.lock().unwrap();
            if retired.len() < MAX_RETIRED && self.budget.try_hold() {
                retired.push(live);
                None
            } else {
                Some(live)
            }
        };
        drop(full); // outside the lock: dropping resets the slot
        self.schedule_tidy();
    }

    /// Run [`FreshInstances::tidy`] once this thread's runtime gets to it;
    /// with no runtime (tools, tests), now.
    fn schedule_tidy(self: &Arc<Self>) {
        if self.tidy_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let fresh = self.clone();
                runtime.spawn(async move { fresh.tidy() });
            }
            Err(_) => self.tidy(),
        }
    }

    /// Drop the retired instances and make ready ones up to [`READY`].
    pub(crate) fn tidy(&self) {
        // Cleared first: a request that retires an instance while this runs
        // (on another worker) queues the next tidy.
        self.tidy_queued.store(false, Ordering::Release);
        // Dropping a store resets its pool slot for the next instance.
        let retired = std::mem::take(&mut *self.retired.lock().unwrap());
        let dropped = retired.len();
        drop(retired);
        self.budget.release(dropped);
        // Instantiating runs start functions: plugin code, under the CPU limit.
        let _ticking = self.clock.running();
        while self.ready.lock().unwrap().len() < READY && self.budget.try_hold() {
            match self.make() {
                Ok(live) => self.ready.lock().unwrap().push(live),
                Err(e) => {
                    self.budget.release(1);
                    // The next request finds no ready instance, makes its
                    // own and reports the failure where it belongs.
                    tracing::debug!(plugin = %self.label.plugin, route = %self.label.route,
                        "could not make an instance ahead of time: {e}");
                    return;
                }
            }
        }
    }

    fn make(&self) -> Result<Live, FailureKind> {
        let mut store = new_store(&self.engine, &self.label, &self.services, self.cpu_ms);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| FailureKind::Instantiate(format!("{e:#}")))?;
        Ok(Live { store, instance })
    }
}

impl Drop for FreshInstances {
    fn drop(&mut self) {
        // Instances still held go with this plugin (a reload replaced it).
        let held = self.ready.get_mut().map_or(0, |r| r.len())
            + self.retired.get_mut().map_or(0, |r| r.len());
        self.budget.release(held);
    }
}
