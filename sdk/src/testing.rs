//! Helpers for unit-testing a plugin natively (`cargo test`), without a host.

use crate::{Plugin, RequestContext};

/// Build a plugin from a JSON config, exactly as the host's `configure` would.
pub fn configure<P: Plugin>(json: &str) -> Result<P, crate::ConfigError> {
    crate::__private::configure::<P>(json)
}

/// A request context for tests.
pub fn context() -> RequestContext {
    RequestContext {
        route: "test".into(),
        client_address: "127.0.0.1:40000".into(),
        identity: None,
        request_id: "test-request".into(),
    }
}
