//! MCP backends: a route whose backend is `mcp: {targets: [...]}` is one
//! MCP server (Streamable HTTP) that federates many.
//!
//! A message's path here: the transport checks (method, Accept,
//! Content-Type, session, protocol version) → JSON-RPC parsing
//! ([`jsonrpc`]) → lists merged from every target, calls routed to one
//! ([`federation`]) through the route's MCP hooks → the target's session
//! ([`upstream`]: stdio or Streamable HTTP, kept alive and reused).

pub mod cancel;
pub mod federation;
pub mod jsonrpc;
pub mod legacy;
pub mod modern;
pub mod session;
pub mod upstream;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use self::federation::{Federation, Kind, PrefixMode};
use self::jsonrpc::{
    INVALID_PARAMS, INVALID_REQUEST, Incoming, METHOD_NOT_FOUND, PARSE_ERROR, RpcError,
};
use self::session::{RELAY_AAD, Sealer, SessionState};
use self::upstream::{Reach, ServerMessage, Sink, Target};
use crate::backend::credentials::Credential;
use crate::backend::http::{Body, HttpBackends};
use crate::backend::sse;
use crate::config::schema::{HostPort, HttpVersion, McpBackend as McpConfig};
use crate::gateway::WeightedBackend;
use crate::policy::bindings::{Hooks, McpItem, McpList, McpListKind, McpRequest, McpResponse};
use crate::policy::hooks::{OnMcpList, OnMcpRequest, OnMcpResponse};
use crate::policy::{ChainRun, Verdict};

/// Revisions served downstream, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The route's MCP server. A request is served by [`McpBackend::for_caller`]'s
/// view of it: the same backend, with the caller's own upstream sessions
/// where the route passes the client's token through.
#[derive(Clone)]
pub struct McpBackend {
    pub federation: Arc<Federation>,
    route: Arc<str>,
    sealer: Arc<Sealer>,
    /// Sessions this replica saw deleted (the ids themselves stay valid
    /// elsewhere: there is no shared table).
    ended: Arc<Mutex<HashSet<String>>>,
    /// Browser origins allowed besides loopback ones (DNS-rebinding
    /// protection); `*` allows any.
    allowed_origins: Arc<[String]>,
    legacy: Arc<legacy::LegacyStreams>,
    /// Calls in flight here, for the clients' cancellations.
    in_flight: Arc<cancel::Cancellable>,
    /// `backendAuth: passthrough`: a federation per client token.
    callers: Option<Callers>,
}

/// With `backendAuth: passthrough` each client token gets its own sessions
/// with the HTTP targets (servers bind a session to the credential that
/// opened it, and what one user may list or call is not another's);
/// processes are shared. A federation unused for a while is dropped, and
/// its upstream sessions with it.
type Callers = moka::sync::Cache<Vec<u8>, Arc<Federation>>;
const MAX_CALLERS: u64 = 4096;
const CALLER_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

pub type BuildError = (String, String);

impl McpBackend {
    pub fn build(
        config: &McpConfig,
        clients: &HttpBackends,
        sealer: Arc<Sealer>,
        // The route's `backendAuth`, for targets reached over HTTP.
        credential: Option<&Arc<Credential>>,
        // `backendAuth: passthrough`: HTTP targets get the client's token.
        passthrough: bool,
        route: &str,
        // The route's `tcp.connectTimeout`, for targets reached over HTTP.
        connect_timeout: Option<std::time::Duration>,
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
                (None, Some(h), None) | (None, None, Some(h)) => {
                    let legacy = t.sse.is_some();
                    let field = if legacy { "sse" } else { "mcp" };
                    let default_path = if legacy { "/sse" } else { "/mcp" };
                    let (target, path, tls) =
                        http_target(h, default_path).map_err(|e| (format!("{at}.{field}"), e))?;
                    let transport = clients
                        .transport(
                            tls.then(Default::default).as_ref(),
                            HttpVersion::default(),
                            connect_timeout,
                        )
                        .map_err(|e| (format!("{at}.{field}"), e))?;
                    let backend =
                        WeightedBackend::new(target, 1, &transport).authenticated(credential);
                    if legacy {
                        Reach::Sse { backend, path }
                    } else {
                        Reach::Http { backend, path }
                    }
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
            federation: Arc::new(Federation::new(targets, mode)),
            route: route.into(),
            sealer,
            ended: Default::default(),
            allowed_origins: config.allowed_origins.clone().into(),
            legacy: Default::default(),
            in_flight: Default::default(),
            callers: passthrough.then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(MAX_CALLERS)
                    .time_to_idle(CALLER_IDLE)
                    .build()
            }),
        })
    }

    /// The backend as `headers`' caller sees it: with the route's shared
    /// upstream sessions, or, where the client's token is passed through,
    /// with sessions opened (lazily) under that token.
    pub fn for_caller(self: &Arc<Self>, headers: &http::HeaderMap) -> Arc<McpBackend> {
        let (Some(callers), Some(token)) = (&self.callers, headers.get(AUTHORIZATION)) else {
            return self.clone();
        };
        let federation = callers.get_with_by_ref(token.as_bytes(), || {
            let mut token = token.clone();
            token.set_sensitive(true);
            let credential = Arc::new(Credential::Header(AUTHORIZATION, token));
            let targets = self
                .federation
                .targets
                .iter()
                .map(|t| t.with_credential(&credential).unwrap_or_else(|| t.clone()))
                .collect();
            Arc::new(self.federation.with_targets(targets))
        });
        Arc::new(McpBackend {
            federation,
            ..(**self).clone()
        })
    }
}

/// `host` is a name (with `port`, `path`) or a whole URL.
fn http_target(
    h: &crate::config::schema::HttpTarget,
    default_path: &str,
) -> Result<(HostPort, String, bool), String> {
    if h.host.contains("://") {
        let uri: http::Uri = h.host.parse().map_err(|e| format!("'{}': {e}", h.host))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or("the URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = h.path.clone().unwrap_or_else(|| match uri.path() {
            "" | "/" => default_path.into(),
            p => p.into(),
        });
        return Ok((HostPort { host, port }, path, tls));
    }
    Ok((
        HostPort {
            host: h.host.clone(),
            port: h.port.unwrap_or(80),
        },
        h.path.clone().unwrap_or_else(|| default_path.into()),
        false,
    ))
}

pub struct McpRequestIn {
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub run: ChainRun,
    /// The route's `cors` allows the request's `Origin`: as good as listed
    /// in `allowedOrigins`.
    pub origin_trusted: bool,
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
        run,
        origin_trusted,
    } = input;
    let mcp = mcp.for_caller(&parts.headers);
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !origin_trusted && !mcp.origin_allowed(&parts.headers) {
        // A browser page from elsewhere (DNS rebinding): refuse before anything runs.
        trace.error = Some("origin not allowed".into());
        return rpc_failure(
            StatusCode::FORBIDDEN,
            Value::Null,
            RpcError::new(
                INVALID_REQUEST,
                "Origin not allowed (add it to the mcp backend's allowedOrigins or the route's cors)",
            ),
        );
    }
    if parts.method == Method::POST
        && let Some(sid) = legacy::session_param(parts.uri.query())
    {
        return legacy::post(mcp, sid, body, run, trace).await;
    }
    if parts.method == Method::GET && session.is_none() && legacy::is_legacy_get(parts.uri.path()) {
        return legacy::open(mcp, parts.uri.path(), trace);
    }
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
        Method::GET => return listen(mcp, &parts.headers, session, trace),
        _ => {
            let mut r = Response::new(crate::proxy::full(Bytes::new()));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("GET, POST, DELETE"),
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
    let (msg, incoming) = match parse_message(&body) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    if modern::is_modern(&msg, &parts.headers) {
        return modern::serve(mcp, &parts.headers, msg, incoming, run, trace).await;
    }
    if let Incoming::Request { id, method, params } = &incoming
        && method == "initialize"
    {
        let (version, result) = initialize_result(&mcp, params).await;
        let sid = mcp.new_session(&version);
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
        match &incoming {
            Incoming::Response { id } => mcp.answer_relayed(&sid, id, msg).await,
            Incoming::Notification { method, params } => mcp.notified(&sid, method, params),
            Incoming::Request { .. } => {}
        }
        // Notifications and responses are accepted without a body.
        let mut r = Response::new(crate::proxy::full(Bytes::new()));
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    };
    respond_to(mcp, sid, id, method, params, run, trace).await
}

/// Answer one request: plain JSON when the targets say nothing else
/// meanwhile; once they do (sampling, progress, logs), an SSE stream that
/// carries those first and the answer last. `sid` is empty for stateless
/// (2026-07-28) requests.
async fn respond_to(
    mcp: Arc<McpBackend>,
    sid: String,
    id: Value,
    method: String,
    params: Value,
    run: ChainRun,
    trace: &mut McpTrace,
) -> Response<Body> {
    trace.summary = Some(format!("mcp {method} session={sid}"));
    if !reaches_one_target(&method) {
        // Lists, ping and the like are answered here: nothing to relay,
        // so no channel and no boxed future.
        let (reply, done) = answer(mcp, run, sid.clone(), id, method, params, None).await;
        *trace = done;
        return json_reply(&sid, &reply);
    }
    let (mut answer, mut from_targets) = start_answer(&mcp, run, &sid, id, method, params);
    let first = tokio::select! {
        biased;
        (reply, done) = &mut answer => match from_targets.try_recv() {
            Err(_) => {
                *trace = done;
                return json_reply(&sid, &reply);
            }
            Ok(first) => {
                *trace = done;
                let (tx, rx) = tokio::sync::mpsc::channel(16);
                let done = Box::pin(async move { (reply, McpTrace::default()) });
                tokio::spawn(relay_answer(mcp, sid, done, from_targets, Some(first), tx));
                return sse_response(rx);
            }
        },
        Some(first) = from_targets.recv() => first,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(relay_answer(
        mcp,
        sid,
        answer,
        from_targets,
        Some(first),
        tx,
    ));
    sse_response(rx)
}

/// Methods routed to one target, whose answer may come with the target's
/// own messages (progress, logs, sampling) ahead of it.
fn reaches_one_target(method: &str) -> bool {
    Kind::of_call(method).is_some()
}

/// A finished answer as plain JSON. The stateless revision answers an
/// unknown method with 404.
fn json_reply(sid: &str, reply: &Value) -> Response<Body> {
    let unknown_method = sid.is_empty()
        && reply.pointer("/error/code").and_then(Value::as_i64) == Some(METHOD_NOT_FOUND);
    let status = if unknown_method {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    json_response(status, reply)
}

/// The answer to a request that may outlive this handler, with the
/// channel on which the targets' messages about it arrive meanwhile.
fn start_answer(
    mcp: &Arc<McpBackend>,
    run: ChainRun,
    sid: &str,
    id: Value,
    method: String,
    params: Value,
) -> (Answer, tokio::sync::mpsc::UnboundedReceiver<ServerMessage>) {
    let (sink, from_targets) = tokio::sync::mpsc::unbounded_channel();
    let answer = Box::pin(answer(
        mcp.clone(),
        run,
        sid.to_string(),
        id,
        method,
        params,
        Some(sink),
    ));
    (answer, from_targets)
}

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = (Value, McpTrace)> + Send>>;

/// Stream what the targets say about a call, then its answer, as SSE
/// events into `out`. A client that leaves drops the call with it.
async fn relay_answer(
    mcp: Arc<McpBackend>,
    sid: String,
    mut answer: Answer,
    mut from_targets: tokio::sync::mpsc::UnboundedReceiver<ServerMessage>,
    mut next: Option<ServerMessage>,
    out: tokio::sync::mpsc::Sender<Bytes>,
) {
    loop {
        if let Some(m) = next.take() {
            if sid.is_empty() && m.msg.get("id").is_some() {
                // Stateless requests carry no server requests back (the
                // revision has InputRequiredResult for that): refuse it.
                mcp.refuse(&m).await;
                continue;
            }
            let event = sse::message_event(&mcp.outgoing(&sid, m).to_string());
            if out.send(event).await.is_err() {
                return;
            }
        }
        tokio::select! {
            biased;
            Some(m) = from_targets.recv() => next = Some(m),
            (reply, done) = &mut answer => {
                while let Ok(m) = from_targets.try_recv() {
                    let _ = out.send(sse::message_event(&mcp.outgoing(&sid, m).to_string())).await;
                }
                let _ = out.send(sse::message_event(&reply.to_string())).await;
                if done.summary.is_some() {
                    log_streamed(&done);
                }
                return;
            }
        }
    }
}

/// A plugin refused the request at the HTTP stage: answer it as JSON-RPC
/// (the request's id, the plugin's code or -32603, its message), which is
/// what MCP clients read.
pub fn denied_before_dispatch(
    body: &[u8],
    denial: &crate::policy::bindings::Denial,
) -> Response<Body> {
    let msg = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let item = Kind::of_call(method).and_then(|(kind, key)| {
        msg.pointer(&format!("/params/{key}"))
            .and_then(Value::as_str)
            .map(|name| (kind, name))
    });
    json_response(
        StatusCode::OK,
        &jsonrpc::error(&id, &denial_error(denial, item)),
    )
}

/// The JSON-RPC error for a plugin's denial. A denial that names no code
/// is an access decision: on a call it hides the item behind the error a
/// missing one gets (`-32602 Unknown tool: NAME`), elsewhere it is
/// `-32600` with the plugin's message. A denial that names its code (a
/// content refusal, a rate limit) keeps its code and message.
fn denial_error(denial: &crate::policy::bindings::Denial, item: Option<(Kind, &str)>) -> RpcError {
    match (denial.jsonrpc_code, item) {
        (Some(code), _) => RpcError::new(i64::from(code), denial.body.clone()),
        (None, Some((kind, name))) => {
            RpcError::new(INVALID_PARAMS, format!("Unknown {}: {name}", kind.noun()))
        }
        (None, None) => RpcError::new(INVALID_REQUEST, denial.body.clone()),
    }
}

/// One JSON-RPC message from a POST body, or the refusal to send.
fn parse_message(body: &[u8]) -> Result<(Value, Incoming), Response<Body>> {
    let msg: Value = serde_json::from_slice(body).map_err(|e| {
        rpc_failure(
            StatusCode::BAD_REQUEST,
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("Parse error: {e}")),
        )
    })?;
    if msg.is_array() {
        return Err(rpc_failure(
            StatusCode::BAD_REQUEST,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "JSON-RPC batches are not supported"),
        ));
    }
    match jsonrpc::classify(&msg) {
        Ok(incoming) => Ok((msg, incoming)),
        Err((id, e)) => Err(rpc_failure(StatusCode::BAD_REQUEST, id, e)),
    }
}

/// The answer to `initialize`: the revision both sides speak, and the
/// federation's merged capabilities.
async fn initialize_result(mcp: &McpBackend, params: &Value) -> (String, Value) {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = if SUPPORTED_VERSIONS.contains(&asked) {
        asked
    } else {
        SUPPORTED_VERSIONS[0]
    };
    let result = json!({
        "protocolVersion": version,
        "capabilities": mcp.federation.capabilities().await,
        "serverInfo": {"name": "wardgate", "version": env!("CARGO_PKG_VERSION")},
        "instructions": instructions(mcp),
    });
    (version.to_string(), result)
}

fn instructions(mcp: &McpBackend) -> String {
    let names: Vec<&str> = mcp
        .federation
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    format!("Tools of {} federated by Wardgate.", names.join(", "))
}

/// The outcome of one request, as the JSON-RPC reply and what the access log learns.
async fn answer(
    mcp: Arc<McpBackend>,
    mut run: ChainRun,
    sid: String,
    id: Value,
    method: String,
    params: Value,
    sink: Option<Sink>,
) -> (Value, McpTrace) {
    let mut trace = McpTrace::default();
    let call = dispatch(
        &mcp,
        &mut run,
        &sid,
        &method,
        params,
        &mut trace,
        sink.as_ref(),
    );
    // Only calls that wait on a target are worth cancelling (lists and ping
    // are answered here at once), and only session-bound ones can be named.
    let outcome = if sid.is_empty() || !reaches_one_target(&method) {
        call.await
    } else {
        let mut registration = mcp.in_flight.register(&sid, &id);
        tokio::select! {
            outcome = call => outcome,
            Ok(reason) = &mut registration.cancelled => {
                // Dropping the call tells its target (upstream::Target::call).
                tracing::info!(route = %mcp.route, session = %sid, %id, %reason, "MCP request cancelled by the client");
                Err(cancel::cancelled_error())
            }
        }
    };
    trace.decisions = std::mem::take(&mut run.decisions);
    let reply = match outcome {
        Ok(mut result) if sid.is_empty() => {
            modern::decorate(&method, &mut result);
            jsonrpc::result(&id, result)
        }
        Ok(result) => jsonrpc::result(&id, result),
        Err(e) => {
            trace.error = Some(format!("{}: {}", e.code, e.message));
            jsonrpc::error(&id, &e)
        }
    };
    (reply, trace)
}

/// A streamed answer is logged when it ends, after its access-log line.
fn log_streamed(done: &McpTrace) {
    tracing::info!(
        mcp = done.summary.as_deref().unwrap_or(""),
        error = done.error.as_deref().unwrap_or(""),
        "streamed MCP answer ended"
    );
}

fn sse_response(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(sse::channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}

/// GET: the session's stream of what targets say about no call in
/// particular (list_changed, resource updates, their own requests).
fn listen(
    mcp: Arc<McpBackend>,
    headers: &http::HeaderMap,
    session: Option<String>,
    trace: &mut McpTrace,
) -> Response<Body> {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
        return rpc_failure(
            StatusCode::NOT_ACCEPTABLE,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "Accept must list text/event-stream"),
        );
    }
    let Some(sid) = session else {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "Mcp-Session-Id header is required"),
        );
    };
    if mcp.session(&sid).is_none() {
        return rpc_failure(
            StatusCode::NOT_FOUND,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "unknown session"),
        );
    }
    trace.summary = Some(format!("mcp GET session={sid}"));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    forward_unrelated(mcp, sid, tx);
    sse_response(rx)
}

/// Stream to `out` what every target says about no call in particular,
/// with keep-alive comments, until the client goes.
fn forward_unrelated(mcp: Arc<McpBackend>, sid: String, out: tokio::sync::mpsc::Sender<Bytes>) {
    let (merged_tx, mut merged) = tokio::sync::mpsc::channel::<ServerMessage>(64);
    for target in mcp.federation.targets.iter() {
        target.ensure_started();
        let mut rx = target.subscribe();
        let tx = merged_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(m) => if tx.send(m).await.is_err() { return },
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("a slow MCP GET stream missed {n} messages");
                        }
                        Err(_) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
    }
    drop(merged_tx);
    tokio::spawn(async move {
        // Comments keep idle proxies and clients from closing the stream.
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(15));
        keepalive.tick().await;
        loop {
            let bytes = tokio::select! {
                m = merged.recv() => match m {
                    Some(m) => sse::message_event(&mcp.outgoing(&sid, m).to_string()),
                    None => return,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                _ = out.closed() => return,
            };
            if out.send(bytes).await.is_err() {
                return;
            }
        }
    });
}

impl McpBackend {
    fn new_session(&self, version: &str) -> String {
        self.sealer.seal(&SessionState {
            version: version.to_string(),
            route: self.route.to_string(),
            opened: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }

    /// Browsers send `Origin`; a page from a non-loopback origin the
    /// config does not list is a DNS-rebinding attempt. Clients that are
    /// not browsers send none and pass.
    fn origin_allowed(&self, headers: &http::HeaderMap) -> bool {
        let Some(origin) = headers.get(http::header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let host = origin
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase));
        matches!(
            host.as_deref(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        )
    }

    /// A target's message as this client sees it: its own requests get
    /// ids that say, sealed, which target asked, under which id, of which
    /// session; so the answer finds its way back on any replica.
    fn outgoing(&self, sid: &str, m: ServerMessage) -> Value {
        let mut msg = m.msg;
        if msg.get("method").is_some()
            && let Some(id) = msg.get("id").cloned()
        {
            let token = self.sealer.seal_value(
                RELAY_AAD,
                &json!({"t": &*m.target, "i": id, "s": session_tag(sid)}),
            );
            msg["id"] = Value::String(format!("wg-{token}"));
        }
        msg
    }

    /// Answer a target's request with an error, when no client can take it.
    async fn refuse(&self, m: &ServerMessage) {
        let method = m.msg.get("method").and_then(Value::as_str).unwrap_or("");
        let reply = json!({"jsonrpc": "2.0", "id": m.msg.get("id"), "error": {"code": jsonrpc::INTERNAL_ERROR,
            "message": format!("{method} cannot reach a stateless (2026-07-28) client")}});
        if let Some(t) = self
            .federation
            .targets
            .iter()
            .find(|t| *t.name == *m.target)
        {
            let _ = t.respond(reply).await;
        }
    }

    /// A client's answer to a relayed request goes back to the target that
    /// asked, under the id it used.
    async fn answer_relayed(&self, sid: &str, id: &Value, mut msg: Value) {
        let relayed = id
            .as_str()
            .and_then(|id| id.strip_prefix("wg-"))
            .and_then(|token| self.sealer.open_value(RELAY_AAD, token))
            .filter(|v| v.get("s").and_then(Value::as_str) == Some(&session_tag(sid)));
        let Some(relayed) = relayed else {
            tracing::debug!(route = %self.route, "a response to no relayed request: dropped");
            return;
        };
        let target = self
            .federation
            .targets
            .iter()
            .find(|t| Some(t.name.as_str()) == relayed.get("t").and_then(Value::as_str));
        let Some(target) = target else { return };
        msg["id"] = relayed.get("i").cloned().unwrap_or(Value::Null);
        if let Err(e) = target.respond(msg).await {
            tracing::warn!(route = %self.route, target = %target.name, "could not pass a client's answer on: {e}");
        }
    }

    /// A client's notification: a cancellation stops the call it names;
    /// the rest concern only the gateway's own session and end here.
    fn notified(&self, sid: &str, method: &str, params: &Value) {
        if method == "notifications/cancelled" && !self.in_flight.cancel(sid, params) {
            tracing::debug!(route = %self.route, "a cancellation of no request in flight here: ignored");
        }
    }

    /// The state of a session id sealed for this route, unless it ended here.
    fn session(&self, id: &str) -> Option<SessionState> {
        let state = self.sealer.open(id).filter(|s| *s.route == *self.route)?;
        (!self.ended.lock().unwrap().contains(id)).then_some(state)
    }
}

/// Binds relayed ids to a session without repeating its (long) id.
fn session_tag(sid: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, sid.as_bytes());
    hex::encode(&digest.as_ref()[..12])
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
    sink: Option<&Sink>,
) -> Result<Value, RpcError> {
    let fed = &mcp.federation;
    // Stateless (2026-07-28) requests have no session.
    let session = if session.is_empty() { "none" } else { session };
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
                Ok(Verdict::Deny { denial, .. }) => return Err(denial_error(&denial, None)),
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
    let (kind, key) = match (Kind::of_call(method), method) {
        (Some(call), _) => call,
        (None, "logging/setLevel") => {
            for t in &fed.targets {
                let _ = t.call(method, params.clone(), None).await;
            }
            return Ok(json!({}));
        }
        (None, _) => {
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
                return Err(denial_error(&denial, Some((kind, &name))));
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
    run.request_phase_done();
    params[key] = Value::String(upstream_name);
    if let Err(why) = target.ready(std::time::Duration::from_secs(10)).await {
        return Err(RpcError::internal(format!(
            "target {} is unavailable: {why}",
            target.name
        )));
    }
    let mut result = target.call(method, params, sink).await?;
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
            Ok(Verdict::Deny { denial, .. }) => return Err(denial_error(&denial, None)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bindings::Denial;

    fn denial(code: Option<i32>) -> Denial {
        Denial {
            status: 403,
            body: "card number in arguments".into(),
            headers: Vec::new(),
            jsonrpc_code: code,
        }
    }

    #[test]
    fn access_denials_hide_the_item_and_content_refusals_keep_their_words() {
        let hidden = denial_error(&denial(None), Some((Kind::Prompts, "calc_greet")));
        assert_eq!(
            (hidden.code, hidden.message.as_str()),
            (INVALID_PARAMS, "Unknown prompt: calc_greet")
        );
        let refused = denial_error(&denial(Some(-32602)), Some((Kind::Tools, "calc_echo")));
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (INVALID_PARAMS, "card number in arguments")
        );
        let listed = denial_error(&denial(None), None);
        assert_eq!(
            (listed.code, listed.message.as_str()),
            (INVALID_REQUEST, "card number in arguments")
        );
    }
}
