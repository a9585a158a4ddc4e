//! Wardgate: a gateway for AI-agent traffic whose every policy is a sandboxed
//! WebAssembly component.
//!
//! The module tree follows a request: listener → route → policy chain →
//! backend. This build contains the policy layer and the plugin toolchain.

pub mod policy;
pub mod toolchain;
