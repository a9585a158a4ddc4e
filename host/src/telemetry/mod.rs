//! What the gateway tells operators: one access log line per request,
//! written off the request path, and Prometheus metrics.

pub mod access_log;
pub mod log_fields;
pub mod log_output;
pub mod metrics;
pub mod request_id;
