//! Shared helpers for Wardgate's integration tests.

use std::path::PathBuf;

pub mod python;

use wardgate::policy::bindings::{BackendProtocol, HttpRequest, RequestContext};
use wardgate::policy::{EngineOptions, PluginSpec, PolicyEngine, PreparedPlugin};

/// Path of a test or example plugin component built by this crate's build script.
pub fn plugin_path(name: &str) -> PathBuf {
    PathBuf::from(env!("WARDGATE_TEST_PLUGINS")).join(format!("{name}.wasm"))
}

/// A small engine for tests.
/// The engine tests and benches share. `WARDGATE_CODE_CACHE=DIR` keeps
/// compiled plugins between runs (a bench run otherwise spends its first
/// minute compiling).
pub fn engine() -> PolicyEngine {
    engine_with_slots(64)
}

/// [`engine`] with a pool of `max_instances` slots, for tests that run it dry.
pub fn engine_with_slots(max_instances: u32) -> PolicyEngine {
    PolicyEngine::new(EngineOptions {
        max_instances,
        max_memory_mib: 256,
        code_cache: std::env::var_os("WARDGATE_CODE_CACHE").map(Into::into),
    })
    .expect("engine")
}

/// Parse one chain entry from YAML, as a route's `plugins:` list holds it.
/// `{plugins}` in the text is replaced by the test plugins' directory.
pub fn spec(yaml: &str) -> PluginSpec {
    let yaml = yaml.replace("{plugins}", env!("WARDGATE_TEST_PLUGINS"));
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("bad test YAML: {e}\n{yaml}"))
}

pub fn load(engine: &PolicyEngine, yaml: &str) -> PreparedPlugin {
    load_on(engine, yaml, BackendProtocol::Http)
}

/// [`load`] on a route whose backend speaks `protocol`.
pub fn load_on(engine: &PolicyEngine, yaml: &str, protocol: BackendProtocol) -> PreparedPlugin {
    engine
        .load(&spec(yaml), "test-route", protocol)
        .unwrap_or_else(|e| panic!("load failed: {e}"))
}

pub fn context(request_id: &str) -> RequestContext {
    RequestContext {
        route: "test-route".into(),
        client_address: "127.0.0.1:50000".into(),
        identity: None,
        request_id: request_id.into(),
    }
}

pub fn http_request(path: &str, body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: path.into(),
        headers: vec![],
        body: Some(body.as_bytes().to_vec()),
    }
}
