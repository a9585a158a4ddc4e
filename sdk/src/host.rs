//! Host capabilities. Each is granted per plugin by the route config; a
//! plugin that uses one it was not granted is refused at load. [`route`]
//! is not a capability: it only says where the plugin runs.
//!
//! Off wasm32 (native unit tests) they run locally: logs go to stderr, the
//! clock is the system's, counters live in this process, metrics are dropped.

/// The route the plugin is loaded on. Every plugin may ask (it is not a
/// capability); the answer is fixed for the plugin's life, so `configure`
/// may depend on it.
pub mod route {
    pub use crate::wit::wardgate::policy::route::BackendProtocol as Protocol;

    /// What the route's backend speaks. `Mcp` and `Llm` routes call the
    /// MCP or LLM hooks with each parsed message, besides the HTTP hooks
    /// with the raw bytes. Off wasm32, `Http` unless a test says otherwise
    /// ([`crate::testing::configure_on`]).
    pub fn protocol() -> Protocol {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::route::protocol();
        #[cfg(not(target_arch = "wasm32"))]
        return native::PROTOCOL.with(|p| p.get());
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) mod native {
        use super::Protocol;
        use std::cell::Cell;

        thread_local! {
            pub static PROTOCOL: Cell<Protocol> = const { Cell::new(Protocol::Http) };
        }
    }
}

/// Structured logging into the gateway's log, tagged with plugin and route.
pub mod log {
    pub use crate::wit::wardgate::policy::log::Level;

    /// Log `message` with key/value `fields`.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        #[cfg(target_arch = "wasm32")]
        {
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::wit::wardgate::policy::log::log(level, message, &fields);
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message} {fields:?}");
    }

    /// Log at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message, &[]);
    }
    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message, &[]);
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message, &[]);
    }
    /// Log at error level.
    pub fn error(message: &str) {
        log(Level::Error, message, &[]);
    }
}

/// Wall-clock and monotonic time.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::clock::now_ms();
        #[cfg(not(target_arch = "wasm32"))]
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
    }

    /// Monotonic nanoseconds.
    pub fn monotonic_ns() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::clock::monotonic_ns();
        #[cfg(not(target_arch = "wasm32"))]
        {
            use std::sync::OnceLock;
            use std::time::Instant;
            static START: OnceLock<Instant> = OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_nanos() as u64
        }
    }
}

/// Counters and token buckets held by the host and shared by all instances.
pub mod counters {
    pub use crate::wit::wardgate::policy::counters::{Bucket, BucketState, WindowCount};

    /// Add `delta` to `key` in a fixed window of `window_ms`; returns the new value.
    pub fn increment(key: &str, delta: u64, window_ms: u64) -> WindowCount {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::counters::increment(key, delta, window_ms);
        #[cfg(not(target_arch = "wasm32"))]
        return native::increment(key, delta, window_ms);
    }

    /// Take `cost` tokens from the bucket `key` if it has them.
    pub fn take(key: &str, spec: Bucket, cost: u64) -> BucketState {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::counters::take(key, spec, cost);
        #[cfg(not(target_arch = "wasm32"))]
        return native::bucket(key, spec, cost, false);
    }

    /// Take `cost` tokens even if the bucket goes negative.
    pub fn debit(key: &str, spec: Bucket, cost: u64) -> BucketState {
        #[cfg(target_arch = "wasm32")]
        return crate::wit::wardgate::policy::counters::debit(key, spec, cost);
        #[cfg(not(target_arch = "wasm32"))]
        return native::bucket(key, spec, cost, true);
    }

    // A small single-process stand-in so plugin logic can be tested natively.
    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        use super::{Bucket, BucketState, WindowCount};
        use std::collections::HashMap;
        use std::sync::Mutex;

        static WINDOWS: Mutex<Option<HashMap<String, (u64, u64)>>> = Mutex::new(None);
        static BUCKETS: Mutex<Option<HashMap<String, (f64, u64)>>> = Mutex::new(None);

        fn now() -> u64 {
            crate::host::clock::now_ms()
        }

        pub fn increment(key: &str, delta: u64, window_ms: u64) -> WindowCount {
            let now = now();
            let window_ms = window_ms.max(1);
            let start = now - now % window_ms;
            let mut map = WINDOWS.lock().unwrap();
            let entry = map
                .get_or_insert_with(HashMap::new)
                .entry(key.to_string())
                .or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 += delta;
            WindowCount {
                value: entry.1,
                reset_ms: start + window_ms - now,
            }
        }

        pub fn bucket(key: &str, spec: Bucket, cost: u64, force: bool) -> BucketState {
            let now = now();
            let rate = spec.refill_tokens as f64 / spec.refill_ms.max(1) as f64;
            let mut map = BUCKETS.lock().unwrap();
            let (tokens, at) = map
                .get_or_insert_with(HashMap::new)
                .entry(key.to_string())
                .or_insert((spec.capacity as f64, now));
            *tokens = (*tokens + (now - *at) as f64 * rate).min(spec.capacity as f64);
            *at = now;
            let allowed = force || *tokens >= cost as f64;
            if allowed {
                *tokens -= cost as f64;
            }
            let missing = |want: f64| {
                if rate > 0.0 {
                    ((want - *tokens).max(0.0) / rate).ceil() as u64
                } else {
                    0
                }
            };
            BucketState {
                allowed,
                remaining: tokens.floor() as i64,
                reset_ms: missing(spec.capacity as f64),
                retry_after_ms: if allowed { 0 } else { missing(cost as f64) },
            }
        }
    }
}

/// Metrics exported on `/metrics` as `wardgate_plugin_<name>`.
pub mod metrics {
    /// Add `value` to a counter.
    pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
        #[cfg(target_arch = "wasm32")]
        crate::wit::wardgate::policy::metrics::counter_add(name, &owned(labels), value);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (name, labels, value);
    }

    /// Record one observation in a histogram.
    pub fn histogram_observe(name: &str, labels: &[(&str, &str)], value: f64) {
        #[cfg(target_arch = "wasm32")]
        crate::wit::wardgate::policy::metrics::histogram_observe(name, &owned(labels), value);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (name, labels, value);
    }

    #[cfg(target_arch = "wasm32")]
    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
