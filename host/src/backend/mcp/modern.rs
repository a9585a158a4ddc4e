//! The stateless revision (2026-07-28), served next to the session-based
//! ones on the same endpoint: no initialize and no session; each request
//! carries its revision and client capabilities in `params._meta`, and the
//! `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers mirror the
//! body so intermediaries can route without parsing it. A gateway that does
//! parse the body must check that both agree.
//!
//! Upstreams keep their own era: the gateway's sessions with them are
//! unchanged, and the per-request envelope is taken off before a request
//! goes on.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::jsonrpc::{self, INVALID_PARAMS, INVALID_REQUEST, Incoming, RpcError};
use super::{McpBackend, McpTrace, json_response, respond_to, rpc_failure};
use crate::backend::http::Body;
use crate::policy::ChainRun;

pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];
pub const HEADER_MISMATCH: i64 = -32020;
pub const UNSUPPORTED_VERSION: i64 = -32022;
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const ENVELOPE_PREFIX: &str = "io.modelcontextprotocol/";

/// A request speaks the stateless revision when it carries the envelope
/// or names a stateless revision in its header.
pub fn is_modern(msg: &Value, headers: &HeaderMap) -> bool {
    msg.pointer("/params/_meta")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(VERSION_KEY))
        || headers
            .get(super::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v > super::SUPPORTED_VERSIONS[0])
}

pub async fn serve(
    mcp: Arc<McpBackend>,
    headers: &HeaderMap,
    msg: Value,
    incoming: Incoming,
    run: ChainRun,
    trace: &mut McpTrace,
) -> Response<Body> {
    let (id, method, mut params) = match incoming {
        Incoming::Request { id, method, params } => (id, method, params),
        Incoming::Notification { .. } => {
            let mut r = Response::new(crate::proxy::full(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            return r;
        }
        Incoming::Response { id } => {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                id,
                RpcError::new(INVALID_REQUEST, "stateless clients do not send responses"),
            );
        }
    };
    if let Err(e) = check(headers, &msg) {
        trace.summary = Some(format!("mcp {method} (stateless)"));
        trace.error = Some(format!("{}: {}", e.code, e.message));
        return rpc_failure(StatusCode::BAD_REQUEST, id, e);
    }
    if method == "server/discover" {
        trace.summary = Some("mcp server/discover (stateless)".into());
        let mut result = json!({
            "supportedVersions": MODERN_VERSIONS,
            "capabilities": mcp.federation.capabilities().await,
            "instructions": super::instructions(&mcp),
            "_meta": {"serverInfo": {"name": "wardgate", "version": env!("CARGO_PKG_VERSION")}},
        });
        decorate(&method, &mut result);
        return json_response(StatusCode::OK, &jsonrpc::result(&id, result));
    }
    // The envelope is this hop's business; upstream sessions have their own.
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with(ENVELOPE_PREFIX));
        if meta.is_empty() {
            params.as_object_mut().map(|p| p.remove("_meta"));
        }
    }
    respond_to(mcp, String::new(), id, method, params, run, trace).await
}

/// The revision's validation ladder: envelope present, headers agree with
/// the body, revision supported.
fn check(headers: &HeaderMap, msg: &Value) -> Result<(), RpcError> {
    let meta = msg
        .pointer("/params/_meta")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            RpcError::new(
                INVALID_PARAMS,
                format!("params._meta must carry {VERSION_KEY} and {CAPABILITIES_KEY}"),
            )
        })?;
    let missing: Vec<&str> = [VERSION_KEY, CAPABILITIES_KEY]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("params._meta is missing {}", missing.join(", ")),
        ));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let version = &meta[VERSION_KEY];
    if header(super::VERSION_HEADER) != version.as_str() || version.is_null() {
        return Err(mismatch(
            "MCP-Protocol-Version header does not match params._meta's protocol version",
        ));
    }
    let method = msg.get("method").and_then(Value::as_str);
    if header("mcp-method") != method {
        return Err(mismatch(
            "Mcp-Method header does not match the body's method",
        ));
    }
    let name_key = match method {
        Some("tools/call" | "prompts/get") => Some("name"),
        Some("resources/read") => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key
        && let Some(body_name) = msg
            .pointer(&format!("/params/{key}"))
            .and_then(Value::as_str)
        && header("mcp-name").and_then(decode_header_value).as_deref() != Some(body_name)
    {
        return Err(mismatch(&format!(
            "Mcp-Name header does not match the body's params.{key}"
        )));
    }
    let version = version
        .as_str()
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, "the protocol version must be a string"))?;
    if !MODERN_VERSIONS.contains(&version) {
        let mut e = RpcError::new(
            UNSUPPORTED_VERSION,
            format!("unsupported protocol version {version}"),
        );
        e.data = Some(json!({"supported": MODERN_VERSIONS, "requested": version}));
        return Err(e);
    }
    Ok(())
}

fn mismatch(message: &str) -> RpcError {
    RpcError::new(HEADER_MISMATCH, message)
}

/// Header values outside plain ASCII travel as `=?base64?…?=`.
fn decode_header_value(v: &str) -> Option<String> {
    let Some(payload) = v
        .strip_prefix("=?base64?")
        .and_then(|p| p.strip_suffix("?="))
    else {
        return Some(v.to_string());
    };
    String::from_utf8(STANDARD.decode(payload).ok()?).ok()
}

/// Fields the revision requires on results: `resultType` on all, caching
/// hints on lists and discovery (never shared: answers depend on policy).
pub fn decorate(method: &str, result: &mut Value) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    obj.entry("resultType").or_insert(json!("complete"));
    if method.ends_with("/list") || method == "server/discover" {
        obj.entry("ttlMs").or_insert(json!(0));
        obj.entry("cacheScope").or_insert(json!("private"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    fn call(version: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "héllo", "arguments": {},
            "_meta": {VERSION_KEY: version, CAPABILITIES_KEY: {}}}})
    }

    #[test]
    fn the_ladder_checks_envelope_headers_and_version_in_order() {
        let good = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?aMOpbGxv?="),
        ]);
        assert!(check(&good, &call("2026-07-28")).is_ok());
        let no_meta = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}});
        assert_eq!(check(&good, &no_meta).unwrap_err().code, INVALID_PARAMS);
        let wrong_name = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "hello"),
        ]);
        assert_eq!(
            check(&wrong_name, &call("2026-07-28")).unwrap_err().code,
            HEADER_MISMATCH
        );
        let wrong_method = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        assert_eq!(
            check(&wrong_method, &call("2026-07-28")).unwrap_err().code,
            HEADER_MISMATCH
        );
        let future = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?aMOpbGxv?="),
        ]);
        let e = check(&future, &call("2099-01-01")).unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_VERSION);
        assert_eq!(e.data.unwrap()["supported"], json!(["2026-07-28"]));
    }
}
