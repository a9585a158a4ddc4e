//! Request metrics by route and status, rendered for `/metrics`, and the
//! histogram type the plugin metrics share.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::listener::workers::PerThread;

/// Upper bounds of the buckets every histogram here uses (seconds for latencies).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus histogram with the fixed [`BUCKETS`].
#[derive(Default, Clone)]
pub struct Histogram {
    // Per bucket, not cumulative: an observation increments one counter;
    // `render` sums them into Prometheus' cumulative `le` lines.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| value <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// Add `other`'s observations to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` is `k="v",...` (may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let cumulative = BUCKETS
            .iter()
            .zip(self.counts)
            .scan(0, |below, (bound, n)| {
                *below += n;
                Some((*bound, *below))
            });
        render_histogram(out, name, labels, cumulative, self.count, self.sum);
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

#[derive(Default, Clone)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    durations: Histogram,
}

type ByRoute = BTreeMap<String, RouteStats>;

/// Gateway-level request metrics, kept per worker: a request updates only
/// its own worker's shard, a lock no other worker takes on memory no other
/// core writes (one shared lock had every request on every core take turns
/// at it, its cache lines moving between cores each time). `/metrics` sums
/// the shards.
pub struct RequestMetrics {
    shards: PerThread<Mutex<ByRoute>>,
}

impl RequestMetrics {
    /// Metrics for `workers` worker threads (and any other thread).
    pub fn new(workers: usize) -> Self {
        RequestMetrics {
            shards: PerThread::new(workers, Mutex::default),
        }
    }

    pub fn record(&self, route: &str, status: u16, duration: Duration) {
        let mut routes = self.shards.mine().lock().unwrap_or_else(|p| p.into_inner());
        // A route's name is copied only the first time the shard sees it.
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_string()).or_default(),
        };
        *stats.statuses.entry(status).or_default() += 1;
        stats.durations.observe(duration.as_secs_f64());
    }

    /// Every shard's counts, summed.
    fn total(&self) -> ByRoute {
        let mut total = ByRoute::new();
        for shard in self.shards.iter() {
            let routes = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (route, stats) in routes.iter() {
                let Some(sum) = total.get_mut(route) else {
                    total.insert(route.clone(), stats.clone());
                    continue;
                };
                for (status, n) in &stats.statuses {
                    *sum.statuses.entry(*status).or_default() += n;
                }
                sum.durations.merge(&stats.durations);
            }
        }
        total
    }

    pub fn render(&self, out: &mut String) {
        let routes = self.total();
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
        let labels = |(route, provider, model): &(String, String, String)| {
            format!(
                "route=\"{}\",provider=\"{}\",model=\"{}\"",
                escape(route),
                escape(provider),
                escape(model)
            )
        };
        let _ = writeln!(
            out,
            "# HELP wardgate_llm_requests_total LLM requests answered, by route, provider and model."
        );
        let _ = writeln!(out, "# TYPE wardgate_llm_requests_total counter");
        for (key, s) in series.iter() {
            let _ = writeln!(
                out,
                "wardgate_llm_requests_total{{{}}} {}",
                labels(key),
                s.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_llm_tokens_total Tokens used, by route, provider, model and type (input includes cached)."
        );
        let _ = writeln!(out, "# TYPE wardgate_llm_tokens_total counter");
        for (key, s) in series.iter() {
            let labels = labels(key);
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

/// Upgraded connections (WebSocket tunnels) by route: how many are open,
/// how many were opened, and the bytes they carried each way. Tunnels are
/// few and long, so one lock serves every worker.
#[derive(Default)]
pub struct TunnelMetrics {
    routes: Mutex<BTreeMap<String, TunnelStats>>,
}

#[derive(Default)]
struct TunnelStats {
    open: u64,
    opened: u64,
    to_upstream: u64,
    to_client: u64,
}

/// An open tunnel, counted until [`OpenTunnel::close`] (or its drop, when
/// the worker goes away with the tunnel still open).
pub struct OpenTunnel {
    metrics: Arc<TunnelMetrics>,
    route: Arc<str>,
    bytes: Option<(u64, u64)>,
}

impl TunnelMetrics {
    pub fn open(self: &Arc<Self>, route: &Arc<str>) -> OpenTunnel {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let stats = routes.entry(route.to_string()).or_default();
        stats.open += 1;
        stats.opened += 1;
        OpenTunnel {
            metrics: self.clone(),
            route: route.clone(),
            bytes: None,
        }
    }

    pub fn render(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if routes.is_empty() {
            return;
        }
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let name = "wardgate_tunnels_open";
        family(
            out,
            name,
            "gauge",
            "Upgraded connections (WebSocket) open now, by route.",
        );
        for (route, s) in routes.iter() {
            let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(route), s.open);
        }
        let name = "wardgate_tunnels_total";
        family(
            out,
            name,
            "counter",
            "Upgraded connections (WebSocket) opened, by route.",
        );
        for (route, s) in routes.iter() {
            let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", escape(route), s.opened);
        }
        let name = "wardgate_tunnel_bytes_total";
        family(
            out,
            name,
            "counter",
            "Bytes carried by closed upgraded connections, by route and direction.",
        );
        for (route, s) in routes.iter() {
            let route = escape(route);
            for (direction, n) in [("to_upstream", s.to_upstream), ("to_client", s.to_client)] {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{route}\",direction=\"{direction}\"}} {n}"
                );
            }
        }
    }
}

impl OpenTunnel {
    /// The tunnel ended having carried `to_upstream` and `to_client` bytes.
    pub fn close(mut self, to_upstream: u64, to_client: u64) {
        self.bytes = Some((to_upstream, to_client));
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        let mut routes = self
            .metrics
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(stats) = routes.get_mut(&*self.route) {
            stats.open -= 1;
            if let Some((up, down)) = self.bytes {
                stats.to_upstream += up;
                stats.to_client += down;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_lines_are_cumulative() {
        let mut h = Histogram::default();
        for v in [0.0001, 0.0007, 0.0007, 0.3, 60.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "t", "");
        for line in [
            "t_bucket{le=\"0.0005\"} 1",
            "t_bucket{le=\"0.001\"} 3",
            "t_bucket{le=\"0.25\"} 3",
            "t_bucket{le=\"0.5\"} 4",
            "t_bucket{le=\"10\"} 4",
            "t_bucket{le=\"+Inf\"} 5",
            "t_count{} 5",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
    }

    #[test]
    fn requests_recorded_on_different_workers_are_summed() {
        // Shards for two workers and other threads; a third worker's
        // requests go to worker 0's shard.
        let metrics = RequestMetrics::new(2);
        let ms = Duration::from_millis;
        std::thread::scope(|s| {
            for worker in [Some(0), Some(1), Some(2), None] {
                let metrics = &metrics;
                s.spawn(move || {
                    if let Some(i) = worker {
                        crate::listener::workers::become_worker(i);
                    }
                    metrics.record("a", 200, ms(2));
                    metrics.record("b", 503, ms(40));
                });
            }
        });
        metrics.record("a", 404, ms(2));
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "wardgate_requests_total{route=\"a\",status=\"200\"} 4",
            "wardgate_requests_total{route=\"a\",status=\"404\"} 1",
            "wardgate_requests_total{route=\"b\",status=\"503\"} 4",
            "wardgate_request_duration_seconds_bucket{route=\"a\",le=\"0.0025\"} 5",
            "wardgate_request_duration_seconds_bucket{route=\"b\",le=\"0.025\"} 0",
            "wardgate_request_duration_seconds_bucket{route=\"b\",le=\"0.05\"} 4",
            "wardgate_request_duration_seconds_count{route=\"b\"} 4",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
        // One series per route, not one per shard.
        let a_counts = out
            .lines()
            .filter(|l| l.starts_with("wardgate_request_duration_seconds_count{route=\"a\"}"))
            .count();
        assert_eq!(a_counts, 1, "{out}");
    }
}
