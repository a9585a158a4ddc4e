//! What each plugin's hooks did and how long they took, per route:
//! `wardgate_hook_calls_total{route,plugin,hook,outcome}` and
//! `wardgate_hook_duration_seconds{route,plugin,hook}`. Recorded on the
//! request path by every worker, so lock-free; kept per (route, plugin) across
//! reloads, so counters do not restart when the config changes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::chain::Outcome;
use super::hooks::ALL_EXPORTS;
use crate::telemetry::metrics::{escape, render_histogram};

/// Upper bounds in seconds: hook calls take microseconds, so these start far
/// below the request histogram's.
const BUCKETS: [f64; 14] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

const CALLS: &str = "wardgate_hook_calls_total";
const DURATION: &str = "wardgate_hook_duration_seconds";

#[derive(Default)]
struct HookCounters {
    outcomes: [AtomicU64; Outcome::NAMES.len()],
    /// Calls per bucket (not cumulative, so a call touches one; summed when
    /// rendered), the last slot for calls above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    nanos: AtomicU64,
}

/// One plugin entry of one route.
#[derive(Default)]
pub struct HookStats {
    hooks: [HookCounters; ALL_EXPORTS.len()],
}

impl HookStats {
    pub fn record(&self, hook: usize, outcome: &Outcome, took: Duration) {
        let h = &self.hooks[hook];
        h.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        h.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        h.nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Every (route, plugin)'s stats.
#[derive(Default)]
pub struct HookStatsRegistry {
    entries: Mutex<BTreeMap<(String, String), Arc<HookStats>>>,
}

impl HookStatsRegistry {
    /// The stats of `plugin` on `route`: the same ones a previous config's
    /// entry of that name had.
    pub fn get(&self, route: &str, plugin: &str) -> Arc<HookStats> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .entry((route.to_string(), plugin.to_string()))
            .or_default()
            .clone()
    }

    /// Both families in one pass over the hooks that were called.
    pub fn render(&self, out: &mut String) {
        let mut calls = format!(
            "# HELP {CALLS} Plugin hook calls, by route, plugin, hook and outcome.\n\
             # TYPE {CALLS} counter\n"
        );
        let mut durations = format!(
            "# HELP {DURATION} Time in one plugin hook call (instance, call, result), by route, plugin and hook.\n\
             # TYPE {DURATION} histogram\n"
        );
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, plugin), stats) in entries.iter() {
            for (hook, h) in ALL_EXPORTS.iter().zip(&stats.hooks) {
                let counts = h.buckets.each_ref().map(|b| b.load(Ordering::Relaxed));
                let total: u64 = counts.iter().sum();
                if total == 0 {
                    continue;
                }
                // `on-mcp-request` is `mcp-request`, as the config and logs name hooks.
                let hook = hook.strip_prefix("on-").unwrap_or(hook);
                let labels = format!(
                    "route=\"{}\",plugin=\"{}\",hook=\"{hook}\"",
                    escape(route),
                    escape(plugin)
                );
                for (outcome, n) in Outcome::NAMES.iter().zip(&h.outcomes) {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(calls, "{CALLS}{{{labels},outcome=\"{outcome}\"}} {n}");
                    }
                }
                let cumulative = BUCKETS.iter().zip(&counts).scan(0, |below, (bound, n)| {
                    *below += n;
                    Some((*bound, *below))
                });
                let sum = h.nanos.load(Ordering::Relaxed) as f64 / 1e9;
                render_histogram(&mut durations, DURATION, &labels, cumulative, total, sum);
            }
        }
        out.push_str(&calls);
        out.push_str(&durations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::error::FailureKind;

    #[test]
    fn calls_are_counted_by_outcome_and_timed_in_cumulative_buckets() {
        let registry = HookStatsRegistry::default();
        let stats = registry.get("r1", "guard");
        let mcp_request = ALL_EXPORTS
            .iter()
            .position(|e| *e == "on-mcp-request")
            .unwrap();
        stats.record(mcp_request, &Outcome::Continue, Duration::from_micros(3));
        stats.record(mcp_request, &Outcome::Continue, Duration::from_micros(40));
        stats.record(mcp_request, &Outcome::Deny, Duration::from_millis(1));
        stats.record(
            mcp_request,
            &Outcome::Failed(FailureKind::Timeout { cpu_ms: 100 }),
            Duration::from_secs(1),
        );
        // A reloaded config's entry of the same name counts on.
        registry.get("r1", "guard").record(
            mcp_request,
            &Outcome::Continue,
            Duration::from_micros(3),
        );

        let mut text = String::new();
        registry.render(&mut text);
        let line = |l: &str| assert!(text.lines().any(|x| x == l), "{l} missing in:\n{text}");
        let labels = r#"route="r1",plugin="guard",hook="mcp-request""#;
        line(&format!(
            "wardgate_hook_calls_total{{{labels},outcome=\"continue\"}} 3"
        ));
        line(&format!(
            "wardgate_hook_calls_total{{{labels},outcome=\"deny\"}} 1"
        ));
        line(&format!(
            "wardgate_hook_calls_total{{{labels},outcome=\"failed\"}} 1"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_bucket{{{labels},le=\"0.000005\"}} 2"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_bucket{{{labels},le=\"0.00005\"}} 3"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_bucket{{{labels},le=\"0.001\"}} 4"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_bucket{{{labels},le=\"0.1\"}} 4"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 5"
        ));
        line(&format!(
            "wardgate_hook_duration_seconds_count{{{labels}}} 5"
        ));
        // Hooks never called print nothing.
        assert!(!text.contains("http-request"), "{text}");
        assert!(!text.contains("outcome=\"modify\""), "{text}");
    }
}
