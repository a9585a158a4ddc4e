//! MCP backends: a route whose backend is `mcp: {targets: [...]}` is one
//! MCP server (Streamable HTTP) that federates many.
//!
//! A message's path here: the transport checks (method, Accept,
//! Content-Type, session, protocol version) → JSON-RPC parsing
//! ([`jsonrpc`]) → lists merged from every target, calls routed to one
//! ([`federation`]) through the route's MCP hooks → the target's session
//! ([`upstream`]: stdio or Streamable HTTP, kept alive and reused).

pub mod federation;
pub mod jsonrpc;
pub mod session;
pub mod upstream;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use self::federation::{Federation, Kind, PrefixMode};
use self::jsonrpc::{
    INVALID_PARAMS, INVALID_REQUEST, Incoming, METHOD_NOT_FOUND, PARSE_ERROR, RpcError,
};
use self::session::{Sealer, SessionState};
use self::upstream::{Reach, Target};
use crate::backend::http::{Body, HttpBackends};
use crate::config::schema::{HostPort, HttpVersion, McpBackend as McpConfig};
use crate::gateway::WeightedBackend;
use crate::policy::bindings::{Hooks, McpItem, McpList, McpListKind, McpRequest, McpResponse};
use crate::policy::hooks::{OnMcpList, OnMcpRequest, OnMcpResponse};
use crate::policy::{ChainRun, Verdict};

/// Revisions served downstream, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

pub struct McpBackend {
    pub federation: Federation,
    route: String,
    sealer: Arc<Sealer>,
    /// Sessions this replica saw deleted (the ids themselves stay valid
    /// elsewhere: there is no shared table).
    ended: Mutex<HashSet<String>>,
}

pub type BuildError = (String, String);

impl McpBackend {
    pub fn build(
        config: &McpConfig,
        clients: &HttpBackends,
        sealer: Arc<Sealer>,
        route: &str,
    ) -> Result<McpBackend, BuildError> {
        let mode = match config.prefix_mode.as_deref() {
            None | Some("conditional") => PrefixMode::Conditional,
            Some("always") => PrefixMode::Always,
            Some("never") => PrefixMode::Never,
            Some(other) => {
                return Err((
                    "prefixMode".into(),
                    format!("'{other}' is not one of always, conditional, never"),
                ));
            }
        };
        if config.targets.is_empty() {
            return Err((
                "targets".into(),
                "an mcp backend needs at least one target".into(),
            ));
        }
        let mut targets = Vec::new();
        for (i, t) in config.targets.iter().enumerate() {
            let at = format!("targets[{i}]");
            if t.name.is_empty() || t.name.contains('_') || t.name.contains('+') {
                return Err((
                    format!("{at}.name"),
                    format!(
                        "'{}': target names must be non-empty, without '_' or '+' (they prefix tool names)",
                        t.name
                    ),
                ));
            }
            if targets.iter().any(|x: &Arc<Target>| x.name == t.name) {
                return Err((format!("{at}.name"), format!("'{}' is used twice", t.name)));
            }
            let reach = match (&t.stdio, &t.mcp, &t.sse) {
                (Some(s), None, None) => Reach::Stdio {
                    cmd: s.cmd.clone(),
                    args: s.args.clone(),
                    env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                },
                (None, Some(h), None) => {
                    let (target, path, tls) =
                        http_target(h).map_err(|e| (format!("{at}.mcp"), e))?;
                    let transport = clients
                        .transport(tls.then(Default::default).as_ref(), HttpVersion::default())
                        .map_err(|e| (format!("{at}.mcp"), e))?;
                    Reach::Http {
                        backend: WeightedBackend {
                            target,
                            weight: 1,
                            transport,
                        },
                        path,
                    }
                }
                (None, None, Some(_)) => {
                    return Err((
                        format!("{at}.sse"),
                        "legacy SSE targets are not served by this build yet".into(),
                    ));
                }
                _ => {
                    return Err((
                        at,
                        "a target needs exactly one of `stdio`, `mcp` or `sse`".into(),
                    ));
                }
            };
            targets.push(Target::new(t.name.clone(), reach));
        }
        Ok(McpBackend {
            federation: Federation::new(targets, mode),
            route: route.to_string(),
            sealer,
            ended: Mutex::new(HashSet::new()),
        })
    }
}

/// `host` is a name (with `port`, `path`) or a whole URL.
fn http_target(h: &crate::config::schema::HttpTarget) -> Result<(HostPort, String, bool), String> {
    if h.host.contains("://") {
        let uri: http::Uri = h.host.parse().map_err(|e| format!("'{}': {e}", h.host))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = h.path.clone().unwrap_or_else(|| match uri.path() {
            "" | "/" => "/mcp".into(),
            p => p.into(),
        });
        return Ok((HostPort { host, port }, path, tls));
    }
    Ok((
        HostPort {
            host: h.host.clone(),
            port: h.port.unwrap_or(80),
        },
        h.path.clone().unwrap_or_else(|| "/mcp".into()),
        false,
    ))
}

pub struct McpRequestIn {
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub run: ChainRun,
}

/// What the access log learns: method, target, tool, session.
#[derive(Default)]
pub struct McpTrace {
    pub summary: Option<String>,
    pub error: Option<String>,
    pub decisions: Vec<crate::policy::Decision>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(crate::proxy::full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn rpc_failure(status: StatusCode, id: Value, e: RpcError) -> Response<Body> {
    json_response(status, &jsonrpc::error(&id, &e))
}

pub async fn serve(
    mcp: Arc<McpBackend>,
    input: McpRequestIn,
    trace: &mut McpTrace,
) -> Response<Body> {
    let McpRequestIn {
        parts,
        body,
        mut run,
    } = input;
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match parts.method {
        Method::POST => {}
        Method::DELETE => {
            let Some(id) = session else {
                return rpc_failure(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    RpcError::new(INVALID_REQUEST, "Mcp-Session-Id header is required"),
                );
            };
            let removed =
                mcp.session(&id).is_some() && mcp.ended.lock().unwrap().insert(id.clone());
            trace.summary = Some(format!("mcp DELETE session={id}"));
            let mut r = Response::new(crate::proxy::full(Bytes::new()));
            *r.status_mut() = if removed {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            return r;
        }
        _ => {
            // No server-initiated stream yet: the spec lets a server refuse GET.
            let mut r = Response::new(crate::proxy::full(Bytes::new()));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("POST, DELETE"),
            );
            return r;
        }
    }
    let accept = parts
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(accept.contains("application/json") || accept.contains("*/*"))
        || !(accept.contains("text/event-stream") || accept.contains("*/*"))
    {
        return rpc_failure(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            RpcError::new(
                INVALID_REQUEST,
                "Accept must list application/json and text/event-stream",
            ),
        );
    }
    let ct = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return rpc_failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "Content-Type must be application/json"),
        );
    }
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(PARSE_ERROR, format!("Parse error: {e}")),
            );
        }
    };
    if msg.is_array() {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "JSON-RPC batches are not supported"),
        );
    }
    let incoming = match jsonrpc::classify(&msg) {
        Ok(m) => m,
        Err((id, e)) => return rpc_failure(StatusCode::BAD_REQUEST, id, e),
    };

    if let Incoming::Request { id, method, params } = &incoming
        && method == "initialize"
    {
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if SUPPORTED_VERSIONS.contains(&asked) {
            asked
        } else {
            SUPPORTED_VERSIONS[0]
        };
        let sid = mcp.sealer.seal(&SessionState {
            version: version.to_string(),
            route: mcp.route.clone(),
            opened: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        let result = json!({
            "protocolVersion": version,
            "capabilities": mcp.federation.capabilities().await,
            "serverInfo": {"name": "wardgate", "version": env!("CARGO_PKG_VERSION")},
            "instructions": format!("Tools of {} federated by Wardgate.",
                mcp.federation.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")),
        });
        trace.summary = Some(format!("mcp initialize session={sid}"));
        let mut r = json_response(StatusCode::OK, &jsonrpc::result(id, result));
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert(SESSION_HEADER, v);
        }
        return r;
    }

    let id_of = |m: &Incoming| match m {
        Incoming::Request { id, .. } => id.clone(),
        _ => Value::Null,
    };
    let Some(sid) = session else {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            id_of(&incoming),
            RpcError::new(INVALID_REQUEST, "Mcp-Session-Id header is required"),
        );
    };
    if mcp.session(&sid).is_none() {
        // 404 tells the client to initialize again.
        return rpc_failure(
            StatusCode::NOT_FOUND,
            id_of(&incoming),
            RpcError::new(INVALID_REQUEST, "unknown session"),
        );
    }
    if let Some(v) = parts
        .headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            id_of(&incoming),
            RpcError::new(
                INVALID_REQUEST,
                format!(
                    "unsupported MCP-Protocol-Version {v}; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ),
        );
    }

    let Incoming::Request { id, method, params } = incoming else {
        // Notifications and responses are accepted without a body.
        let mut r = Response::new(crate::proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    };
    let outcome = dispatch(&mcp, &mut run, &sid, &method, params, trace).await;
    trace.decisions = run.decisions.clone();
    match outcome {
        Ok(result) => json_response(StatusCode::OK, &jsonrpc::result(&id, result)),
        Err(e) => {
            trace.error = Some(format!("{}: {}", e.code, e.message));
            json_response(StatusCode::OK, &jsonrpc::error(&id, &e))
        }
    }
}

impl McpBackend {
    /// The state of a session id sealed for this route, unless it ended here.
    fn session(&self, id: &str) -> Option<SessionState> {
        let state = self.sealer.open(id).filter(|s| s.route == self.route)?;
        (!self.ended.lock().unwrap().contains(id)).then_some(state)
    }
}

fn list_kind(kind: Kind) -> McpListKind {
    match kind {
        Kind::Tools => McpListKind::Tools,
        Kind::Prompts => McpListKind::Prompts,
        Kind::Resources => McpListKind::Resources,
        Kind::ResourceTemplates => McpListKind::ResourceTemplates,
    }
}

async fn dispatch(
    mcp: &McpBackend,
    run: &mut ChainRun,
    session: &str,
    method: &str,
    params: Value,
    trace: &mut McpTrace,
) -> Result<Value, RpcError> {
    let fed = &mcp.federation;
    trace.summary = Some(format!("mcp {method} session={session}"));
    if method == "ping" {
        return Ok(json!({}));
    }
    if let Some(kind) = Kind::from_list_method(method) {
        let items = fed.list(kind).await;
        let mut entries: Vec<Value> = items.iter().map(|i| i.entry.clone()).collect();
        if run.wants(Hooks::MCP_LIST) {
            let mut view = McpList {
                kind: list_kind(kind),
                items: items
                    .iter()
                    .map(|i| McpItem {
                        name: i.name.clone(),
                        target: Some(fed.targets[i.target].name.clone()),
                        description: i
                            .entry
                            .get("description")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        definition: i.entry.to_string(),
                    })
                    .collect(),
            };
            match run.run::<OnMcpList>(&mut view) {
                Ok(Verdict::Continue) => {}
                Ok(Verdict::Deny { denial, .. }) => {
                    return Err(RpcError::new(
                        denial
                            .jsonrpc_code
                            .map(i64::from)
                            .unwrap_or(INVALID_REQUEST),
                        denial.body,
                    ));
                }
                Err(failure) => return Err(RpcError::internal(failure.to_string())),
            }
            entries = view
                .items
                .iter()
                .filter_map(|i| serde_json::from_str(&i.definition).ok())
                .collect();
        }
        return Ok(json!({ kind.field(): entries }));
    }
    let (kind, key) = match method {
        "tools/call" => (Kind::Tools, "name"),
        "prompts/get" => (Kind::Prompts, "name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (Kind::Resources, "uri")
        }
        "logging/setLevel" => {
            for t in &fed.targets {
                let _ = t.call(method, params.clone()).await;
            }
            return Ok(json!({}));
        }
        _ => {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            ));
        }
    };
    let Some(name) = params.get(key).and_then(Value::as_str).map(str::to_string) else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("params.{key} is required"),
        ));
    };
    let (index, upstream_name) = fed.route(kind, &name).await?;
    let target = &fed.targets[index];
    trace.summary = Some(format!(
        "mcp {method} target={} name={name} session={session}",
        target.name
    ));
    let mut params = params;
    if run.wants(Hooks::MCP_REQUEST) {
        let mut view = McpRequest {
            method: method.to_string(),
            target: Some(target.name.clone()),
            name: Some(name.clone()),
            arguments: params.get("arguments").map(Value::to_string),
            session: Some(session.to_string()),
        };
        match run.run::<OnMcpRequest>(&mut view) {
            Ok(Verdict::Continue) => {}
            Ok(Verdict::Deny { denial, plugin }) => {
                trace.error = Some(format!("denied by {plugin}"));
                let code = denial.jsonrpc_code.map(i64::from).unwrap_or(INVALID_PARAMS);
                // The default hides the item: it looks like one that does not exist.
                let message = if code == INVALID_PARAMS {
                    let what = match kind {
                        Kind::Tools => "tool",
                        Kind::Prompts => "prompt",
                        _ => "resource",
                    };
                    format!("Unknown {what}: {name}")
                } else {
                    denial.body
                };
                return Err(RpcError::new(code, message));
            }
            Err(failure) => return Err(RpcError::internal(failure.to_string())),
        }
        if run.modified::<OnMcpRequest>()
            && let Some(args) = view
                .arguments
                .as_deref()
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
        {
            params["arguments"] = args;
        }
    }
    params[key] = Value::String(upstream_name);
    if target
        .ready(std::time::Duration::from_secs(10))
        .await
        .is_err()
    {
        return Err(RpcError::internal(format!(
            "target {} is unavailable",
            target.name
        )));
    }
    let mut result = target.call(method, params).await?;
    if kind == Kind::Resources
        && let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut)
    {
        // Resource URIs in answers carry the target, as in lists.
        for c in contents {
            if let Some(uri) = c.get("uri").and_then(Value::as_str) {
                c["uri"] = Value::String(
                    name.split_once('+')
                        .map(|(t, _)| format!("{t}+{uri}"))
                        .unwrap_or(uri.to_string()),
                );
            }
        }
    }
    if run.wants(Hooks::MCP_RESPONSE) {
        let mut view = McpResponse {
            method: method.to_string(),
            target: Some(target.name.clone()),
            name: Some(name.clone()),
            result: result.to_string(),
            is_error: result
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        match run.run::<OnMcpResponse>(&mut view) {
            Ok(Verdict::Continue) => {}
            Ok(Verdict::Deny { denial, .. }) => {
                return Err(RpcError::new(
                    denial
                        .jsonrpc_code
                        .map(i64::from)
                        .unwrap_or(INVALID_REQUEST),
                    denial.body,
                ));
            }
            Err(failure) => return Err(RpcError::internal(failure.to_string())),
        }
        if run.modified::<OnMcpResponse>()
            && let Ok(v) = serde_json::from_str(&view.result)
        {
            result = v;
        }
    }
    Ok(result)
}
