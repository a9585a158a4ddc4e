//! The one place the WIT contract becomes Rust: every other module uses these
//! types. Kept thin on purpose; conversions live next to their users.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
});

pub use self::wardgate::policy::route::BackendProtocol;
pub use self::wardgate::policy::types::*;

/// The export every plugin must have, with the contract version it speaks.
pub const HOOKS_EXPORT: &str = "wardgate:policy/hooks@0.1.0";
/// Package and version of the contract, for error messages.
pub const CONTRACT: &str = "wardgate:policy@0.1.0";
