//! Helpers for unit-testing a plugin natively (`cargo test`), without a host.

use crate::{Plugin, RequestContext};

/// Build a plugin from a JSON config, exactly as the host's `configure` would.
pub fn configure<P: Plugin>(json: &str) -> Result<P, crate::ConfigError> {
    crate::__private::configure::<P>(json)
}

/// [`configure`] as on a route whose backend speaks `protocol`: what
/// [`crate::host::route::protocol`] answers meanwhile.
#[cfg(not(target_arch = "wasm32"))]
pub fn configure_on<P: Plugin>(
    json: &str,
    protocol: crate::host::route::Protocol,
) -> Result<P, crate::ConfigError> {
    use crate::host::route::native::PROTOCOL;
    let before = PROTOCOL.with(|p| p.replace(protocol));
    let plugin = configure::<P>(json);
    PROTOCOL.with(|p| p.set(before));
    plugin
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
