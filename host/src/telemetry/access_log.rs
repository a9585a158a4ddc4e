//! One line per request: route, status, duration, upstream, request id and
//! what each plugin decided. Emitted as a tracing event on target `access`,
//! so `RUST_LOG=access=off` silences it and the subscriber picks text or JSON.

use std::time::Duration;

use crate::policy::{Decision, Outcome};

pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub client: std::net::SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub upstream: Option<&'a str>,
    pub decisions: &'a [Decision],
    pub error: Option<&'a str>,
}

fn decisions(list: &[Decision]) -> String {
    list.iter()
        .map(|d| {
            let outcome = match &d.outcome {
                Outcome::FailedOpen(k) | Outcome::Failed(k) => format!("{}({k})", d.outcome.name()),
                other => other.name().to_string(),
            };
            format!("{}:{}={outcome}", d.plugin, d.hook)
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn log(r: &AccessRecord<'_>) {
    tracing::info!(
        target: "access",
        request_id = r.request_id,
        client = %r.client,
        method = r.method,
        path = r.path,
        route = r.route,
        status = r.status,
        duration_ms = format!("{:.3}", r.duration.as_secs_f64() * 1e3),
        upstream = r.upstream.unwrap_or("-"),
        plugins = decisions(r.decisions),
        error = r.error.unwrap_or(""),
    );
}
