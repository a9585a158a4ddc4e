//! Metrics that plugins record through the `metrics` capability, rendered in
//! Prometheus text as `wardgate_plugin_<name>{plugin="...",route="...",...}`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::telemetry::metrics::{Histogram, escape};

type Key = (String, Vec<(String, String)>);

/// Counters and histograms from every plugin.
#[derive(Default)]
pub struct PluginMetrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
}

/// Metric names are the plugin's to choose, but only Prometheus-safe characters pass.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn key(name: &str, plugin: &str, route: &str, labels: Vec<(String, String)>) -> Key {
    let mut all = vec![
        ("plugin".to_string(), plugin.to_string()),
        ("route".to_string(), route.to_string()),
    ];
    all.extend(
        labels
            .into_iter()
            .filter(|(k, _)| k != "plugin" && k != "route")
            .map(|(k, v)| (sanitize(&k), v)),
    );
    all.sort();
    (format!("wardgate_plugin_{}", sanitize(name)), all)
}

fn render_labels(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl PluginMetrics {
    pub fn counter_add(
        &self,
        plugin: &str,
        route: &str,
        name: &str,
        labels: Vec<(String, String)>,
        value: u64,
    ) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters
            .entry(key(name, plugin, route, labels))
            .or_default() += value;
    }

    pub fn histogram_observe(
        &self,
        plugin: &str,
        route: &str,
        name: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) {
        if !value.is_finite() {
            return;
        }
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        histograms
            .entry(key(name, plugin, route, labels))
            .or_default()
            .observe(value);
    }

    /// Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{}}} {value}", render_labels(labels));
        }
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((name, labels), h) in histograms.iter() {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name;
            }
            h.render(&mut out, name, &render_labels(labels));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_with_plugin_labels() {
        let m = PluginMetrics::default();
        m.counter_add(
            "guard",
            "r1",
            "hits",
            vec![("kind".into(), "email".into())],
            2,
        );
        m.counter_add(
            "guard",
            "r1",
            "hits",
            vec![("kind".into(), "email".into())],
            3,
        );
        m.histogram_observe("guard", "r1", "scan-seconds", vec![], 0.003);
        let text = m.render();
        assert!(
            text.contains("wardgate_plugin_hits{kind=\"email\",plugin=\"guard\",route=\"r1\"} 5"),
            "{text}"
        );
        assert!(
            text.contains(
                "wardgate_plugin_scan_seconds_bucket{plugin=\"guard\",route=\"r1\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("wardgate_plugin_scan_seconds_count{plugin=\"guard\",route=\"r1\"} 1"),
            "{text}"
        );
    }
}
