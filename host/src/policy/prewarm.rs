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

use wasmtime::component::InstancePre;

use super::capabilities::StoreState;
use super::instance::{InstanceSource, Live, PreparedPlugin};

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

/// A snapshot plugin's never-used instances, and the used ones waiting to
/// be dropped. [`PreparedPlugin`] makes and tidies them.
pub(crate) struct FreshInstances {
    pub(crate) pre: InstancePre<StoreState>,
    ready: Mutex<Vec<Live>>,
    retired: Mutex<Vec<Live>>,
    /// A tidy task is on its way.
    tidy_queued: AtomicBool,
    /// Counts every instance in `ready` and `retired`.
    budget: Arc<SlotBudget>,
}

impl FreshInstances {
    pub(crate) fn new(pre: InstancePre<StoreState>, budget: Arc<SlotBudget>) -> Self {
        FreshInstances {
            pre,
            ready: Mutex::new(Vec::with_capacity(READY)),
            retired: Mutex::new(Vec::with_capacity(MAX_RETIRED)),
            tidy_queued: AtomicBool::new(false),
            budget,
        }
    }

    /// A ready instance, if there is one.
    pub(crate) fn take(&self) -> Option<Live> {
        let live = self.ready.lock().unwrap().pop()?;
        self.budget.release(1);
        Some(live)
    }

    /// Keep a used instance to drop later; `Some` back when full.
    fn keep_retired(&self, live: Live) -> Option<Live> {
        let mut retired = self.retired.lock().unwrap();
        if retired.len() < MAX_RETIRED && self.budget.try_hold() {
            retired.push(live);
            None
        } else {
            Some(live)
        }
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

impl PreparedPlugin {
    /// Leave a used snapshot instance to be dropped later, and have the
    /// worker tidy once the request's task yields.
    pub(crate) fn retire(self: &Arc<Self>, fresh: &FreshInstances, live: Live) {
        // Dropped outside the lock when full: dropping resets the slot.
        drop(fresh.keep_retired(live));
        if fresh.tidy_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let plugin = self.clone();
                runtime.spawn(async move { plugin.tidy() });
            }
            // No runtime (tools, tests): now.
            Err(_) => self.tidy(),
        }
    }

    /// Drop the retired instances and make ready ones up to [`READY`].
    pub(crate) fn tidy(&self) {
        let InstanceSource::Snapshot(fresh) = &self.instances else {
            return;
        };
        // Cleared first: a request that retires an instance while this runs
        // (on another worker) queues the next tidy.
        fresh.tidy_queued.store(false, Ordering::Release);
        let retired = std::mem::take(&mut *fresh.retired.lock().unwrap());
        let dropped = retired.len();
        drop(retired);
        fresh.budget.release(dropped);
        // Instantiating runs start functions: plugin code, under the CPU limit.
        let _ticking = self.clock.running();
        while fresh.ready.lock().unwrap().len() < READY && fresh.budget.try_hold() {
            match self.instantiate(&fresh.pre) {
                Ok(live) => fresh.ready.lock().unwrap().push(live),
                Err(e) => {
                    fresh.budget.release(1);
                    // The next request finds no ready instance, makes its
                    // own and reports the failure where it belongs.
                    tracing::debug!(plugin = %self.label.plugin, route = %self.label.route,
                        "could not make an instance ahead of time: {e}");
                    return;
                }
            }
        }
    }
}
