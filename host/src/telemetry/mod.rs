//! What the gateway tells operators: one access log line per request and
//! Prometheus metrics.

pub mod access_log;
pub mod metrics;
