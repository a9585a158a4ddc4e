//! The policy layer: every policy is a sandboxed WebAssembly component.
//!
//! - [`engine`]: the shared wasmtime engine and loading a chain entry
//!   (compile once, check contract and grants, configure, snapshot).
//! - [`instance`]: instances per request (snapshot isolation or reuse).
//! - [`prewarm`]: fresh instances made off the request path.
//! - [`chain`]: running a route's chain through one hook for one request.
//! - [`epoch`]: the clock behind each call's CPU limit (ticks only while
//!   plugin code runs).
//! - [`hooks`]: the contract's hooks and how each "modify" applies.
//! - [`capabilities`]: what a plugin can reach (log, clock, counters,
//!   metrics; WASI linked but empty).

pub mod bindings;
pub mod builtin;
pub mod capabilities;
pub mod chain;
pub mod counters;
pub mod engine;
pub mod epoch;
pub mod error;
pub mod hook_stats;
pub mod hooks;
pub mod instance;
pub mod metrics;
pub mod prewarm;
pub mod spec;

pub use chain::{Chain, ChainRun, Decision, Outcome, Verdict};
pub use engine::{EngineOptions, PolicyEngine};
pub use error::{FailureKind, LoadError, LoadErrorKind, PluginFailure};
pub use instance::PreparedPlugin;
pub use spec::{FailureMode, Isolation, Limits, PluginSource, PluginSpec};
