//! The wasmtime engine all plugins share, and loading a chain entry into a
//! [`PreparedPlugin`]: resolve the source, compile once per process, check the
//! contract version and the grants, configure, snapshot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker, types::ComponentItem};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use super::bindings::{self, BackendProtocol, HOOKS_EXPORT, Plugin};
use super::builtin;
use super::capabilities::{Capability, HostServices, PluginLabel, StoreState};
use super::counters::{CounterStore, LocalCounters};
use super::epoch::{EpochTicker, deadline_ticks};
use super::error::{LoadError, LoadErrorKind};
use super::hooks;
use super::instance::{InstanceSource, Live, PreparedPlugin};
use super::prewarm::{FreshInstances, SlotBudget};
use super::spec::{Isolation, PluginSource, PluginSpec};

/// Linear memory kept mapped per slot between instances (see the pool config).
const KEEP_RESIDENT: usize = 8 << 20;

/// CPU budget for load-time calls (`describe`, `configure`): they run once.
const LOAD_CPU_MS: u64 = 10_000;

/// Engine-wide sizing. Per-plugin limits are set in each chain entry.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances alive at once, across all requests and plugins.
    pub max_instances: u32,
    /// Largest memory any plugin may be granted, in MiB.
    pub max_memory_mib: u64,
    /// Folder for compiled code, so a restart does not compile again. Only
    /// files this engine wrote are read back (see [`PolicyEngine::cached`]).
    pub code_cache: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 1000,
            max_memory_mib: 1024,
            code_cache: None,
        }
    }
}

/// Bumped when what a cached file holds changes meaning.
const CODE_CACHE_FORMAT: &[u8] = b"wardgate-code-cache-1";

/// (component digest, config digest, route protocol): what `configure` sees.
type SnapshotKey = ([u8; 32], [u8; 32], &'static [u8]);

/// The plugin runtime: one per process (tests make their own).
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    services: Arc<HostServices>,
    options: EngineOptions,
    // Compiled once per process: originals by content digest, snapshots by
    // (digest, config), so routes sharing a plugin and config share the code.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    snapshots: Mutex<HashMap<SnapshotKey, Component>>,
    ticker: EpochTicker,
    /// Pool slots fresh-instance queues may hold (a quarter of the pool).
    prewarm_budget: Arc<SlotBudget>,
}

impl PolicyEngine {
    pub fn new(options: EngineOptions) -> anyhow::Result<Self> {
        Self::with_counters(options, Arc::new(LocalCounters::default()))
    }

    pub fn with_counters(
        options: EngineOptions,
        counters: Arc<dyn CounterStore>,
    ) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let n = options.max_instances;
        // A component instance of a Rust plugin holds a few core instances
        // (the module and the adapter shims) but one memory.
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n)
            .total_tables(n * 2)
            .max_memory_size((options.max_memory_mib as usize) << 20)
            .max_unused_warm_slots(n / 4)
            // Reset a slot by copying back only the pages the last request
            // wrote (PAGEMAP_SCAN, Linux >= 6.7) and keep the rest mapped:
            // the next instance of the same snapshot then takes no page
            // faults and no madvise/TLB shootdown. Without the ioctl this
            // falls back to madvise.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

        Ok(PolicyEngine {
            ticker: EpochTicker::start(engine.clone()),
            prewarm_budget: SlotBudget::new(options.max_instances as usize / 4),
            engine,
            linker,
            services: Arc::new(HostServices::new(counters)),
            options,
            compiled: Mutex::default(),
            snapshots: Mutex::default(),
        })
    }

    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    /// Load one chain entry for `route`, whose backend speaks `protocol`:
    /// everything that can fail, fails here.
    pub fn load(
        &self,
        spec: &PluginSpec,
        route: &str,
        protocol: BackendProtocol,
    ) -> Result<PreparedPlugin, LoadError> {
        // Configure and snapshot run plugin code.
        let _ticking = self.ticker.clock().running();
        let err = |kind| LoadError {
            route: route.to_string(),
            plugin: spec.name.clone(),
            kind,
        };
        let source = spec.source();
        let (bytes, builtin, source_digest) = read_source(&source, spec.insecure).map_err(err)?;
        if spec.limits.memory_mib > self.options.max_memory_mib {
            return Err(err(LoadErrorKind::Trapped {
                stage: "limits",
                error: format!(
                    "limits.memoryMib {} is above the engine's maximum of {}",
                    spec.limits.memory_mib, self.options.max_memory_mib
                ),
            }));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let component = self.compile(digest, &bytes).map_err(err)?;

        let granted: Vec<Capability> = match &spec.grants {
            // Logging is always allowed: it is how a plugin explains itself,
            // and how the SDK reports a panic before the trap.
            Some(g) if !g.contains(&Capability::Log) => [&[Capability::Log], g.as_slice()].concat(),
            Some(g) => g.clone(),
            // Built-ins ship with the gateway and are trusted with what they import.
            None if builtin => Capability::ALL.to_vec(),
            None => Capability::DEFAULT.to_vec(),
        };
        self.check_interface(&component, &granted).map_err(err)?;

        let label = Arc::new(PluginLabel {
            plugin: spec.name.clone(),
            route: route.to_string(),
            protocol,
            clock_granted: granted.contains(&Capability::Clock),
            memory_limit: (spec.limits.memory_mib as usize) << 20,
        });
        // No `config:` at all means an empty object, so plugins see `{}` rather than null.
        let config_json = match &spec.config {
            serde_json::Value::Null => "{}".to_string(),
            v => v.to_string(),
        };
        let config_digest: [u8; 32] = Sha256::digest(config_json.as_bytes()).into();

        // Both isolations start instances from the configured snapshot:
        // configure can take milliseconds (prompt-guard minimizes DFAs), and
        // a reuse plugin makes a new instance whenever more requests hold
        // one at once than ever before, on the request's worker. If a plugin
        // cannot be snapshotted, reuse falls back to configuring each new
        // instance (`seed`), which also reports a bad config precisely.
        let key = (digest, config_digest, protocol_tag(protocol));
        let snapshot = || -> Result<Component, LoadErrorKind> {
            if let Some(snapshot) = self.snapshots.lock().unwrap().get(&key) {
                return Ok(snapshot.clone());
            }
            let snapshot = self.cached(
                &[
                    b"snapshot",
                    &digest[..],
                    &config_digest[..],
                    protocol_tag(protocol),
                ],
                || self.snapshot(&bytes, &config_json, &label),
            )?;
            self.snapshots.lock().unwrap().insert(key, snapshot.clone());
            Ok(snapshot)
        };
        let isolation = spec.isolation();
        let (pre, seed) = match (isolation, snapshot()) {
            (_, Ok(snapshot)) => (self.pre(&snapshot).map_err(err)?, None),
            (Isolation::Snapshot, Err(e)) => return Err(err(e)),
            (Isolation::Reuse, Err(e)) => {
                tracing::debug!(route, plugin = %spec.name, "no snapshot ({e}); each new instance is configured");
                (self.pre(&component).map_err(err)?, Some(config_json))
            }
        };

        // One instance to learn the hooks and check their signatures; in
        // reuse mode it is configured and becomes the first idle instance.
        let mut store = self.store(&label, LOAD_CPU_MS);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| err(trapped("instantiate", e)))?;
        let plugin =
            Plugin::new(&mut store, &instance).map_err(|e| err(trapped("bind exports", e)))?;
        let info = match &seed {
            Some(config_json) => describe_and_configure(&plugin, &mut store, config_json),
            None => plugin
                .wardgate_policy_hooks()
                .call_describe(&mut store)
                .map_err(|e| trapped("describe", e)),
        }
        .map_err(err)?;
        let exports = hooks::resolve_exports(info.hooks, &instance, &mut store).map_err(|e| {
            err(LoadErrorKind::Trapped {
                stage: "hook exports",
                error: e,
            })
        })?;
        let instances = match isolation {
            Isolation::Snapshot => {
                InstanceSource::Snapshot(FreshInstances::new(pre, self.prewarm_budget.clone()))
            }
            Isolation::Reuse => InstanceSource::Reuse {
                pre,
                config_json: seed,
                idle: Mutex::new(vec![Live::new(store, instance)]),
            },
        };

        let plugin = PreparedPlugin {
            label,
            source: source.to_string(),
            digest: source_digest
                .unwrap_or_else(|| crate::distribution::store::sha256_digest(&bytes)),
            info,
            failure_mode: spec.failure_mode,
            limits: spec.limits,
            instances,
            exports,
            services: self.services.clone(),
            engine: self.engine.clone(),
            clock: self.ticker.clock().clone(),
            stats: self.services.hook_stats.get(route, &spec.name),
        };
        // Snapshot plugins make their first fresh instances now, off the
        // request path.
        plugin.tidy();
        Ok(plugin)
    }

    fn compile(&self, digest: [u8; 32], bytes: &[u8]) -> Result<Component, LoadErrorKind> {
        if let Some(c) = self.compiled.lock().unwrap().get(&digest) {
            return Ok(c.clone());
        }
        if !crate::toolchain::is_component(bytes) {
            let what = if bytes.starts_with(b"\0asm") {
                "it is a core module"
            } else {
                "no wasm header"
            };
            return Err(LoadErrorKind::NotComponent(what.into()));
        }
        let component = self.cached(&[b"component", &digest[..]], || {
            Component::new(&self.engine, bytes)
                .map_err(|e| LoadErrorKind::Compile(format!("{e:#}")))
        })?;
        self.compiled
            .lock()
            .unwrap()
            .insert(digest, component.clone());
        Ok(component)
    }

    /// What a component says about itself (`describe`), without configuring
    /// it: for `wardgate plugin build` and `inspect`.
    pub fn describe(&self, bytes: &[u8]) -> Result<bindings::PluginInfo, LoadErrorKind> {
        let _ticking = self.ticker.clock().running();
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let component = self.compile(digest, bytes)?;
        self.check_interface(&component, &Capability::ALL)?;
        let label = Arc::new(PluginLabel {
            plugin: "inspect".into(),
            route: "-".into(),
            protocol: BackendProtocol::Http,
            clock_granted: true,
            memory_limit: 64 << 20,
        });
        let pre = self.pre(&component)?;
        let mut store = self.store(&label, LOAD_CPU_MS);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| trapped("instantiate", e))?;
        let plugin = Plugin::new(&mut store, &instance).map_err(|e| trapped("bind exports", e))?;
        plugin
            .wardgate_policy_hooks()
            .call_describe(&mut store)
            .map_err(|e| trapped("describe", e))
    }

    /// Compiled code from the disk cache, or `build` it and store it there.
    /// The file name hashes `key` with this engine's compatibility hash
    /// (wasmtime version, target, settings), so a file is only ever read by
    /// an engine that could have written it.
    fn cached(
        &self,
        key: &[&[u8]],
        build: impl FnOnce() -> Result<Component, LoadErrorKind>,
    ) -> Result<Component, LoadErrorKind> {
        let Some(dir) = &self.options.code_cache else {
            return build();
        };
        let mut hasher = Sha256::new();
        hasher.update(CODE_CACHE_FORMAT);
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut ShaHasher(&mut hasher),
        );
        for part in key {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let name = hex::encode(hasher.finalize());
        let path = dir.join(format!("{name}.cwasm"));
        if path.exists() {
            // SAFETY: deserializing runs native code from the file. Only this
            // cache folder is read, files land there by atomic rename after
            // `Component::serialize` of this same engine configuration, and
            // the name includes the engine's compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unusable cached code: {e:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = build()?;
        let stored = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|_| component.serialize().map_err(|e| e.to_string()))
            .and_then(|bytes| crate::distribution::store::write_atomic(&path, &bytes));
        if let Err(e) = stored {
            tracing::warn!(dir = %dir.display(), "cannot store compiled code: {e}");
        }
        Ok(component)
    }

    /// The contract version and the grants, from the component's own type.
    fn check_interface(
        &self,
        component: &Component,
        granted: &[Capability],
    ) -> Result<(), LoadErrorKind> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.iter().any(|e| e == HOOKS_EXPORT) {
            if let Some(other) = exports
                .iter()
                .find(|e| e.starts_with("wardgate:policy/hooks"))
            {
                let version = other.split('@').nth(1).unwrap_or("an unversioned contract");
                return Err(LoadErrorKind::WrongContract {
                    found: format!("wardgate:policy@{version}"),
                });
            }
            return Err(LoadErrorKind::NoHooks {
                expected: HOOKS_EXPORT,
                found: if exports.is_empty() {
                    "none".into()
                } else {
                    exports.join(", ")
                },
            });
        }
        for (name, item) in ty.imports(&self.engine) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(LoadErrorKind::UnknownImport(name.to_string()));
            }
            let (interface, version) = name.split_once('@').unwrap_or((name, ""));
            let capability = Capability::ALL.iter().find(|c| c.interface() == interface);
            let free = FREE_INTERFACES.contains(&interface);
            if (capability.is_some() || free) && version != "0.1.0" {
                return Err(LoadErrorKind::WrongContract {
                    found: format!("wardgate:policy@{version}"),
                });
            }
            match capability {
                Some(cap) if !granted.contains(cap) => {
                    return Err(LoadErrorKind::NotGranted {
                        capability: cap.name(),
                        interface: name.to_string(),
                        granted: granted
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                Some(_) => {}
                None if free || interface.starts_with("wasi:") => {}
                // No other wardgate interface exists, and nothing else is ours to give.
                None => return Err(LoadErrorKind::UnknownImport(name.to_string())),
            }
        }
        Ok(())
    }

    fn pre(&self, component: &Component) -> Result<InstancePre<StoreState>, LoadErrorKind> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| LoadErrorKind::UnknownImport(format!("{e:#}")))
    }

    pub(crate) fn store(&self, label: &Arc<PluginLabel>, cpu_ms: u64) -> Store<StoreState> {
        new_store(&self.engine, label, &self.services, cpu_ms)
    }

    /// Configure an instance and capture its memory: the snapshot component
    /// starts every later instance already configured.
    fn snapshot(
        &self,
        bytes: &[u8],
        config_json: &str,
        label: &Arc<PluginLabel>,
    ) -> Result<Component, LoadErrorKind> {
        let wizer = wasmtime_wizer::Wizer::new();
        let (cx, instrumented) = wizer
            .instrument_component(bytes)
            .map_err(|e| trapped("snapshot instrumentation", e))?;
        let component = Component::new(&self.engine, &instrumented)
            .map_err(|e| LoadErrorKind::Compile(format!("{e:#}")))?;
        let pre = self.pre(&component)?;
        let mut store = self.store(label, LOAD_CPU_MS);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| trapped("instantiate", e))?;
        let plugin = Plugin::new(&mut store, &instance).map_err(|e| trapped("bind exports", e))?;
        describe_and_configure(&plugin, &mut store, config_json)?;
        let snapshot = block_on(wizer.snapshot_component(
            &cx,
            &mut wasmtime_wizer::WasmtimeWizerComponent {
                store: &mut store,
                instance,
            },
        ))
        .map_err(|e| trapped("snapshot", e))?;
        Component::new(&self.engine, &snapshot)
            .map_err(|e| LoadErrorKind::Compile(format!("{e:#}")))
    }
}

/// Contract interfaces every plugin may import: they grant nothing.
const FREE_INTERFACES: [&str; 2] = ["wardgate:policy/types", "wardgate:policy/route"];

fn protocol_tag(protocol: BackendProtocol) -> &'static [u8] {
    match protocol {
        BackendProtocol::Http => b"http",
        BackendProtocol::Mcp => b"mcp",
        BackendProtocol::Llm => b"llm",
    }
}

pub(crate) fn new_store(
    engine: &Engine,
    label: &Arc<PluginLabel>,
    services: &Arc<HostServices>,
    cpu_ms: u64,
) -> Store<StoreState> {
    let mut store = Store::new(engine, StoreState::new(label.clone(), services.clone()));
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(cpu_ms));
    store
}

fn describe_and_configure(
    plugin: &Plugin,
    store: &mut Store<StoreState>,
    config_json: &str,
) -> Result<bindings::PluginInfo, LoadErrorKind> {
    let hooks = plugin.wardgate_policy_hooks();
    match hooks.call_configure(&mut *store, config_json) {
        // Asked after configure: the hooks this config uses.
        Ok(Ok(())) => hooks
            .call_describe(&mut *store)
            .map_err(|e| trapped("describe", e)),
        Ok(Err(e)) => Err(LoadErrorKind::Config {
            field: if e.field.is_empty() {
                "config".into()
            } else {
                e.field
            },
            message: e.message,
        }),
        Err(e) => {
            let panic = store.data().last_panic.clone();
            Err(LoadErrorKind::Trapped {
                stage: "configure",
                error: panic.unwrap_or_else(|| format!("{e:#}")),
            })
        }
    }
}

fn trapped(stage: &'static str, e: impl std::fmt::Display) -> LoadErrorKind {
    LoadErrorKind::Trapped {
        stage,
        error: format!("{e:#}"),
    }
}

/// The component's bytes, whether it is a built-in, and for OCI sources the
/// manifest digest it was fetched at.
fn read_source(
    source: &PluginSource,
    insecure: bool,
) -> Result<(Vec<u8>, bool, Option<String>), LoadErrorKind> {
    match source {
        PluginSource::Builtin(name) => builtin::get(name)
            .map(|b| (b.to_vec(), true, None))
            .ok_or_else(|| LoadErrorKind::UnknownBuiltin {
                name: name.clone(),
                available: builtin::names().join(", "),
            }),
        PluginSource::File(path) => {
            std::fs::read(path)
                .map(|b| (b, false, None))
                .map_err(|e| LoadErrorKind::Unreadable {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })
        }
        PluginSource::Oci(r) => crate::distribution::fetch(r, insecure)
            .map(|f| (f.bytes, false, Some(f.manifest_digest)))
            .map_err(|error| LoadErrorKind::Fetch {
                reference: r.to_string(),
                error,
            }),
    }
}

// Wizer's snapshot API is async but never waits on I/O here: poll it to completion.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Feeds `Hash` output into a SHA-256, for a hash that is stable across runs.
struct ShaHasher<'a>(&'a mut Sha256);

impl std::hash::Hasher for ShaHasher<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
