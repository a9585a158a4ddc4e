//! Request metrics by route and status, rendered for `/metrics`, and the
//! histogram type the plugin metrics share.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the buckets every histogram here uses (seconds for latencies).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram with the fixed [`BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` is `k="v",...` (may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        render_histogram(
            out,
            name,
            labels,
            BUCKETS.iter().copied().zip(self.counts),
            self.count,
            self.sum,
        );
    }
}

/// A histogram's lines from its `(upper bound, calls at or below it)` pairs.
pub fn render_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    cumulative: impl IntoIterator<Item = (f64, u64)>,
    count: u64,
    sum: f64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in cumulative {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// Escape a Prometheus label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Default)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    durations: Histogram,
}

/// Gateway-level request metrics.
#[derive(Default)]
pub struct RequestMetrics {
    // One lock and one lookup per request; a route's name is copied only
    // the first time it is seen, not on every request.
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl RequestMetrics {
    pub fn record(&self, route: &str, status: u16, duration: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_string()).or_default(),
        };
        *stats.statuses.entry(status).or_default() += 1;
        stats.durations.observe(duration.as_secs_f64());
    }

    pub fn render(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP wardgate_requests_total Requests handled, by route and status."
        );
        let _ = writeln!(out, "# TYPE wardgate_requests_total counter");
        for (route, stats) in routes.iter() {
            let route = escape(route);
            for (status, n) in &stats.statuses {
                let _ = writeln!(
                    out,
                    "wardgate_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let name = "wardgate_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request head to response head, by route."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (route, stats) in routes.iter() {
            stats
                .durations
                .render(out, name, &format!("route=\"{}\"", escape(route)));
        }
    }
}

/// LLM traffic: requests and tokens by route, provider and model.
#[derive(Default)]
pub struct LlmMetrics {
    series: Mutex<BTreeMap<(String, String, String), LlmStats>>,
}

#[derive(Default)]
struct LlmStats {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
}

impl LlmMetrics {
    pub fn record(
        &self,
        route: &str,
        provider: &str,
        model: &str,
        tokens: Option<(u64, u64, u64)>,
    ) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let stats = series
            .entry((route.to_string(), provider.to_string(), model.to_string()))
            .or_default();
        stats.requests += 1;
        if let Some((input, output, cached)) = tokens {
            stats.input += input;
            stats.output += output;
            stats.cached += cached;
        }
    }

    pub fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_llm_requests_total LLM requests answered, by route, provider and model."
        );
        let _ = writeln!(out, "# TYPE wardgate_llm_requests_total counter");
        for ((route, provider, model), s) in series.iter() {
            let labels = format!(
                "route=\"{}\",provider=\"{}\",model=\"{}\"",
                escape(route),
                escape(provider),
                escape(model)
            );
            let _ = writeln!(
                out,
                "wardgate_llm_requests_total{{{labels}}} {}",
                s.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_llm_tokens_total Tokens used, by route, provider, model and type (input includes cached)."
        );
        let _ = writeln!(out, "# TYPE wardgate_llm_tokens_total counter");
        for ((route, provider, model), s) in series.iter() {
            let labels = format!(
                "route=\"{}\",provider=\"{}\",model=\"{}\"",
                escape(route),
                escape(provider),
                escape(model)
            );
            for (kind, n) in [
                ("input", s.input),
                ("output", s.output),
                ("cached_input", s.cached),
            ] {
                let _ = writeln!(
                    out,
                    "wardgate_llm_tokens_total{{{labels},type=\"{kind}\"}} {n}"
                );
            }
        }
    }
}
