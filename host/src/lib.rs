//! Wardgate: a gateway for AI-agent traffic whose every policy is a sandboxed
//! WebAssembly component.
//!
//! The module tree follows a request:
//! [`listener`] (accept, HTTP/1 and HTTP/2) → [`proxy`] (the pipeline) →
//! [`route`] (matching, filters) → [`policy`] (the WebAssembly plugin chain) →
//! [`backend`] (upstreams). [`config`] reads YAML and [`gateway`] turns it
//! into the running snapshot; [`admin`] and [`telemetry`] serve operators;
//! [`distribution`] fetches plugins from OCI registries.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod config;
pub mod distribution;
pub mod gateway;
pub mod listener;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod telemetry;
pub mod toolchain;
