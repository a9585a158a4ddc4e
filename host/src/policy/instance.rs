//! A loaded plugin and the instances it hands to requests.
//!
//! In `snapshot` isolation every request gets a fresh instance of the
//! post-`configure` snapshot (pooled slot, copy-on-write memory image), so no
//! state crosses requests; [`super::prewarm`] makes them ahead of time. In
//! `reuse` isolation configured instances go back to an idle list after the
//! request. An instance that failed is never reused.

use std::sync::{Arc, Mutex};

use wasmtime::component::{ComponentExportIndex, Func, Instance, InstancePre};
use wasmtime::{Engine, Store, Trap};

use super::bindings::{Hooks, Plugin, PluginInfo};
use super::capabilities::{HostServices, PluginLabel, StoreState};
use super::engine::new_store;
use super::epoch::{EpochClock, deadline_ticks};
use super::error::FailureKind;
use super::hooks::ALL_EXPORTS;
use super::prewarm::FreshInstances;
use super::spec::{FailureMode, Limits};

pub(crate) enum InstanceSource {
    Snapshot(FreshInstances),
    Reuse {
        /// The configured snapshot's; or, for a plugin that could not be
        /// snapshotted, the original's, with the config for each new one.
        pre: InstancePre<StoreState>,
        config_json: Option<String>,
        idle: Mutex<Vec<Live>>,
    },
}

/// One chain entry, loaded and ready to serve requests.
pub struct PreparedPlugin {
    pub(crate) label: Arc<PluginLabel>,
    /// Where the component came from and the digest it was loaded at (for
    /// OCI sources the manifest digest a tag resolved to).
    pub source: String,
    pub digest: String,
    pub info: PluginInfo,
    pub failure_mode: FailureMode,
    pub limits: Limits,
    pub(crate) instances: InstanceSource,
    /// Export index of each hook the plugin declares (type-checked at load).
    pub(crate) exports: [Option<ComponentExportIndex>; ALL_EXPORTS.len()],
    pub(crate) services: Arc<HostServices>,
    pub(crate) engine: Engine,
    /// Ticks while this plugin's code runs (see [`super::epoch`]).
    pub(crate) clock: Arc<EpochClock>,
    /// Its hooks' outcomes and durations on `/metrics`.
    pub(crate) stats: Arc<super::hook_stats::HookStats>,
}

/// An instance serving one request.
pub(crate) struct Live {
    pub store: Store<StoreState>,
    pub instance: Instance,
    /// Each hook's function once looked up: a lookup walks the instance's
    /// tables, cold memory between requests on a reused instance.
    funcs: [Option<Func>; ALL_EXPORTS.len()],
}

impl Live {
    pub(crate) fn new(store: Store<StoreState>, instance: Instance) -> Self {
        Live {
            store,
            instance,
            funcs: [None; ALL_EXPORTS.len()],
        }
    }

    /// The function of hook number `hook`, exported at `index`.
    pub(crate) fn func(&mut self, hook: usize, index: &ComponentExportIndex) -> Func {
        *self.funcs[hook].get_or_insert_with(|| {
            self.instance
                .get_func(&mut self.store, index)
                .expect("export index resolved at load")
        })
    }
}

impl PreparedPlugin {
    pub fn name(&self) -> &str {
        &self.label.plugin
    }

    pub fn implements(&self, hook: Hooks) -> bool {
        self.info.hooks.contains(hook)
    }

    fn new_store(&self) -> Store<StoreState> {
        new_store(
            &self.engine,
            &self.label,
            &self.services,
            self.limits.cpu_ms,
        )
    }

    /// A new instance in a new store.
    pub(crate) fn instantiate(&self, pre: &InstancePre<StoreState>) -> Result<Live, FailureKind> {
        let mut store = self.new_store();
        let instance = pre.instantiate(&mut store).map_err(instantiate_failed)?;
        Ok(Live::new(store, instance))
    }

    pub(crate) fn acquire(&self) -> Result<Live, FailureKind> {
        match &self.instances {
            InstanceSource::Snapshot(fresh) => match fresh.take() {
                Some(live) => Ok(live),
                None => self.instantiate(&fresh.pre),
            },
            InstanceSource::Reuse {
                pre,
                config_json,
                idle,
            } => {
                if let Some(live) = idle.lock().unwrap().pop() {
                    return Ok(live);
                }
                let Some(config_json) = config_json else {
                    return self.instantiate(pre);
                };
                let Live {
                    mut store,
                    instance,
                    ..
                } = self.instantiate(pre)?;
                let plugin = Plugin::new(&mut store, &instance).map_err(instantiate_failed)?;
                // The config was validated at load; a failure now is a fault.
                match plugin
                    .wardgate_policy_hooks()
                    .call_configure(&mut store, config_json)
                {
                    Ok(Ok(())) => Ok(Live::new(store, instance)),
                    Ok(Err(e)) => Err(FailureKind::Instantiate(format!(
                        "configure: {}: {}",
                        e.field, e.message
                    ))),
                    Err(e) => Err(classify(&e, &store, &self.limits)),
                }
            }
        }
    }

    /// Hand a healthy instance back after the request.
    pub(crate) fn release(self: &Arc<Self>, live: Live) {
        match &self.instances {
            InstanceSource::Snapshot(fresh) => self.retire(fresh, live),
            InstanceSource::Reuse { idle, .. } => idle.lock().unwrap().push(live),
        }
    }

    /// Give the next call a full CPU budget.
    pub(crate) fn arm(&self, live: &mut Live) {
        live.store
            .set_epoch_deadline(deadline_ticks(self.limits.cpu_ms));
    }
}

fn instantiate_failed(e: wasmtime::Error) -> FailureKind {
    FailureKind::Instantiate(format!("{e:#}"))
}

/// Name what went wrong from the error and what the store recorded.
pub(crate) fn classify(
    err: &wasmtime::Error,
    store: &Store<StoreState>,
    limits: &Limits,
) -> FailureKind {
    if store.data().limiter.exceeded.is_some() {
        return FailureKind::Memory {
            limit_mib: limits.memory_mib,
        };
    }
    if let Some(Trap::Interrupt) = err.downcast_ref::<Trap>() {
        return FailureKind::Timeout {
            cpu_ms: limits.cpu_ms,
        };
    }
    match &store.data().last_panic {
        Some(panic) => FailureKind::Trap(format!("panicked: {panic}")),
        None => FailureKind::Trap(err.root_cause().to_string()),
    }
}
