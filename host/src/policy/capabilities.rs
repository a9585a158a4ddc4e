//! What a plugin instance can reach: the per-store state and the host side of
//! the `log`, `clock`, `counters` and `metrics` interfaces (and of `route`,
//! which every plugin may import).
//!
//! A capability is an import of the component. At load, the host compares the
//! component's imports with the chain entry's `grants` and refuses a plugin
//! that imports anything it was not granted, so no per-call check is needed.
//! WASI is linked for components built for WASI targets, but empty: no
//! preopens, no environment, every socket address denied, and frozen clocks
//! unless `clock` is granted.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::wardgate::policy::{clock, counters, log, metrics, route, types};
use super::counters::{BucketSpec, CounterStore};
use super::metrics::PluginMetrics;

/// A host capability a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Capability {
    Log,
    Clock,
    Counters,
    Metrics,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Log,
        Capability::Clock,
        Capability::Counters,
        Capability::Metrics,
    ];

    /// Granted to plugins whose chain entry says nothing: observability only.
    pub const DEFAULT: [Capability; 2] = [Capability::Log, Capability::Metrics];

    /// The WIT interface (without version) that carries this capability.
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "wardgate:policy/log",
            Capability::Clock => "wardgate:policy/clock",
            Capability::Counters => "wardgate:policy/counters",
            Capability::Metrics => "wardgate:policy/metrics",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Counters => "counters",
            Capability::Metrics => "metrics",
        }
    }
}

/// Services shared by every plugin instance of one engine.
pub struct HostServices {
    pub counters: Arc<dyn CounterStore>,
    pub metrics: PluginMetrics,
    pub hook_stats: super::hook_stats::HookStatsRegistry,
    started: Instant,
}

impl HostServices {
    pub fn new(counters: Arc<dyn CounterStore>) -> Self {
        HostServices {
            counters,
            metrics: PluginMetrics::default(),
            hook_stats: Default::default(),
            started: Instant::now(),
        }
    }
}

/// Who an instance is, for logs, metrics and errors.
#[derive(Debug)]
pub struct PluginLabel {
    pub plugin: String,
    pub route: String,
    /// What the route's backend speaks, as `route.protocol` tells the plugin.
    pub protocol: route::BackendProtocol,
    pub clock_granted: bool,
    pub memory_limit: usize,
}

/// The data of one plugin instance's `Store`.
pub struct StoreState {
    pub label: Arc<PluginLabel>,
    services: Arc<HostServices>,
    pub limiter: MemoryLimiter,
    /// The last panic message the SDK reported, to explain the trap that follows.
    pub last_panic: Option<String>,
    // Only created if the component imports WASI and calls it.
    wasi: Option<Box<EmptyWasi>>,
}

impl StoreState {
    pub fn new(label: Arc<PluginLabel>, services: Arc<HostServices>) -> Self {
        StoreState {
            limiter: MemoryLimiter {
                limit: label.memory_limit,
                exceeded: None,
            },
            label,
            services,
            last_panic: None,
            wasi: None,
        }
    }
}

/// Caps linear memory and records that the cap was hit, so the failure is
/// reported as "memory limit" rather than as a generic trap.
pub struct MemoryLimiter {
    limit: usize,
    pub exceeded: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB exceeded (asked for {} MiB)",
                self.limit >> 20,
                desired >> 20
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct EmptyWasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let clock_granted = self.label.clock_granted;
        let wasi = self.wasi.get_or_insert_with(|| {
            let mut builder = WasiCtx::builder();
            if !clock_granted {
                builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
            }
            Box::new(EmptyWasi {
                ctx: builder.build(),
                table: ResourceTable::new(),
            })
        });
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

// === impl host interfaces ===

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let label = &self.label;
        // The SDK's panic hook reports the message here before the trap.
        if fields.iter().any(|(k, v)| k == "panic" && v == "true") {
            self.last_panic = Some(message.clone());
        }
        let fields = if fields.is_empty() {
            String::new()
        } else {
            serde_json::to_string(
                &fields
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default()
        };
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(target: "wardgate::plugin", plugin = %label.plugin, route = %label.route, fields = %fields, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(trace),
            log::Level::Debug => emit!(debug),
            log::Level::Info => emit!(info),
            log::Level::Warn => emit!(warn),
            log::Level::Error => emit!(error),
        }
    }
}

impl clock::Host for StoreState {
    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_ns(&mut self) -> u64 {
        self.services.started.elapsed().as_nanos() as u64
    }
}

fn bucket_spec(b: counters::Bucket) -> BucketSpec {
    BucketSpec {
        capacity: b.capacity,
        refill_tokens: b.refill_tokens,
        refill_ms: b.refill_ms,
    }
}

fn bucket_state(s: super::counters::BucketState) -> counters::BucketState {
    counters::BucketState {
        allowed: s.allowed,
        remaining: s.remaining,
        reset_ms: s.reset_ms,
        retry_after_ms: s.retry_after_ms,
    }
}

impl counters::Host for StoreState {
    fn increment(&mut self, key: String, delta: u64, window_ms: u64) -> counters::WindowCount {
        let c = self.services.counters.increment(&key, delta, window_ms);
        counters::WindowCount {
            value: c.value,
            reset_ms: c.reset_ms,
        }
    }

    fn take(&mut self, key: String, spec: counters::Bucket, cost: u64) -> counters::BucketState {
        bucket_state(
            self.services
                .counters
                .take(&key, bucket_spec(spec), cost, false),
        )
    }

    fn debit(&mut self, key: String, spec: counters::Bucket, cost: u64) -> counters::BucketState {
        bucket_state(
            self.services
                .counters
                .take(&key, bucket_spec(spec), cost, true),
        )
    }
}

impl route::Host for StoreState {
    fn protocol(&mut self) -> route::BackendProtocol {
        self.label.protocol
    }
}

impl metrics::Host for StoreState {
    fn counter_add(&mut self, name: String, labels: Vec<(String, String)>, value: u64) {
        let l = &self.label;
        self.services
            .metrics
            .counter_add(&l.plugin, &l.route, &name, labels, value);
    }

    fn histogram_observe(&mut self, name: String, labels: Vec<(String, String)>, value: f64) {
        let l = &self.label;
        self.services
            .metrics
            .histogram_observe(&l.plugin, &l.route, &name, labels, value);
    }
}
