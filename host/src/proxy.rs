//! One request's path through the gateway, in order:
//!
//! listener (by Host) → route (most specific match) → CORS preflight →
//! authentication → plugin chain on the request → redirect / direct response
//! → header edits and rewrites → backend → plugin chain on the response →
//! CORS and response header edits (on every answer of the route).
//!
//! Every step can end the request; each ending is a response with a status
//! that says who failed (client 4xx, plugin 5xx naming it, upstream 502/504).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, SEC_WEBSOCKET_EXTENSIONS,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::auth::{Outcome, jwt};
use crate::backend::http::{
    Body, BoxError, HttpBackends, UpstreamBody, UpstreamError, forward_upgrade,
};
use crate::backend::llm::{self, LlmRequestIn, LlmTrace};
use crate::backend::mcp::{self, McpRequestIn, McpTrace};
use crate::backend::upgrade;
use crate::gateway::{Gateway, RouteRuntime};
use crate::listener::idle::Activity;
use crate::listener::workers::{Load, PerWorker, WorkerCopy};
use crate::policy::bindings::{self, Denial, Hooks, RequestContext};
use crate::policy::hooks::{OnHttpRequest, OnHttpResponse};
use crate::policy::{ChainRun, Decision, PluginFailure, PolicyEngine, Verdict};
use crate::route::cors::{self, CorsCheck};
use crate::route::{Matcher, filters};
use crate::telemetry::access_log::{self, AccessRecord};
use crate::telemetry::metrics::{LlmMetrics, RequestMetrics, TunnelMetrics};
use crate::telemetry::request_id::RequestIds;

/// State shared by every connection: the current config and the services
/// that outlive reloads.
pub struct Shared {
    /// The config, one copy per worker (see [`PerWorker`]).
    gateway: PerWorker<Gateway>,
    pub engine: Arc<PolicyEngine>,
    pub backends: Arc<HttpBackends>,
    pub metrics: RequestMetrics,
    pub llm_metrics: LlmMetrics,
    pub tunnels: Arc<TunnelMetrics>,
    pub ready: AtomicBool,
    /// `SIGTERM` came: `/readyz` says so, so load balancers send elsewhere.
    pub draining: AtomicBool,
    /// The file `run -c` was given, for reloads.
    pub config_path: Option<std::path::PathBuf>,
    pub reload_lock: tokio::sync::Mutex<()>,
    request_ids: RequestIds,
}

impl Shared {
    /// `workers`: how many worker threads will serve requests.
    pub fn new(
        gateway: Gateway,
        engine: Arc<PolicyEngine>,
        backends: Arc<HttpBackends>,
        config_path: Option<std::path::PathBuf>,
        workers: usize,
    ) -> Self {
        Shared {
            gateway: PerWorker::new(Arc::new(gateway), workers),
            engine,
            backends,
            metrics: RequestMetrics::new(workers),
            llm_metrics: LlmMetrics::default(),
            tunnels: Arc::default(),
            ready: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            config_path,
            reload_lock: tokio::sync::Mutex::new(()),
            request_ids: RequestIds::default(),
        }
    }

    /// The current config, for work done less often than per request.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.value()
    }

    /// Make `gateway` the config new requests run on; requests in flight
    /// finish on the one they started with.
    pub fn publish(&self, gateway: Arc<Gateway>) {
        self.gateway.publish(gateway);
    }

    /// The current config for a request on this thread: its worker's copy.
    fn snapshot(&self) -> Arc<WorkerCopy<Gateway>> {
        self.gateway.get()
    }
}

/// A worker's own handle on [`Shared`], for the same reason as
/// [`PerWorker`]: every request takes one, and the count it increments
/// should be one that only this worker's core writes. Made once per worker;
/// aligned like [`WorkerCopy`].
#[repr(align(128))]
pub struct WorkerShared(Arc<Shared>);

impl WorkerShared {
    pub fn new(shared: Arc<Shared>) -> Self {
        WorkerShared(shared)
    }
}

impl std::ops::Deref for WorkerShared {
    type Target = Arc<Shared>;
    fn deref(&self) -> &Arc<Shared> {
        &self.0
    }
}

/// The client end of a connection, with the text every request from it
/// needs made once.
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection came in over TLS (the scheme of its requests).
    pub tls: bool,
    /// The client's IP, as `X-Forwarded-For` carries it.
    forwarded_for: HeaderValue,
    /// Counts the connection against its worker for as long as anything
    /// serves it: its requests, or the tunnel it became.
    _load: Load,
    /// Its requests in flight, as the idle check sees them.
    activity: Arc<Activity>,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool, load: Load, activity: Arc<Activity>) -> Self {
        let forwarded_for = HeaderValue::from_str(&addr.ip().to_string())
            .expect("an IP address is a valid header value");
        Peer {
            addr,
            tls,
            forwarded_for,
            _load: load,
            activity,
        }
    }

    /// The two ends of the tunnel a request from this client became, for
    /// `route` to `upstream`. An HTTP/2 client's tunnel is a stream that
    /// outlives its answer: it counts as a request in flight, or the
    /// connection would look idle.
    fn tunnel_ends(
        self: Arc<Self>,
        http2: bool,
        route: &str,
        upstream: &str,
        request_id: &str,
    ) -> upgrade::Ends {
        let http2 = http2
            .then(|| self.activity.begin(http::Version::HTTP_2))
            .flatten()
            .map(|request| Box::new(request) as Box<dyn Send + Sync>);
        upgrade::Ends {
            route: route.into(),
            upstream: upstream.into(),
            request_id: request_id.to_string(),
            connection: self,
            http2,
        }
    }
}

/// What the access log needs to know, filled in as the request goes. The
/// names are mostly borrowed from the config snapshot `'g` the request runs
/// on (copies were an allocation and two shared counts per request).
#[derive(Default)]
struct Trace<'g> {
    route: Cow<'g, str>,
    upstream: Option<Cow<'g, str>>,
    decisions: Vec<Decision>,
    error: Option<String>,
}

/// Response bodies up to this size with a Content-Length are sent with the head.
const SMALL_BODY: usize = 16 << 10;

/// Largest non-streamed LLM answer read for the response hooks.
const LLM_ANSWER_LIMIT: usize = 32 << 20;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

// Each step on the request path is a plain fn returning an async block
// rather than an `async fn`: an `async fn` keeps its arguments twice in its
// future (rust-lang/rust#62958), each step's future embeds the next one's, and
// hyper moves the whole per request (4,880 bytes as `async fn`s, 3,400 now).
#[allow(clippy::manual_async_fn)]
pub fn handle(
    shared: Arc<WorkerShared>,
    bind: usize,
    peer: Arc<Peer>,
    req: Request<Incoming>,
) -> impl Future<Output = Response<Body>> {
    async move {
        let started = Instant::now();
        let gateway = shared.snapshot();
        let request_id = req
            .headers()
            .get(&X_REQUEST_ID)
            .filter(|v| v.to_str().is_ok_and(|v| !v.is_empty() && v.len() <= 128))
            .cloned()
            .unwrap_or_else(|| shared.request_ids.next());
        let client = peer.addr;
        // Cheap clones (shared bytes), for the access log.
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut trace = Trace::default();

        let mut response = serve(
            &shared,
            &gateway,
            bind,
            peer,
            req,
            request_id.clone(),
            &mut trace,
        )
        .await;
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id.clone());
        let request_id = request_id.to_str().unwrap_or_default();
        let status = response.status().as_u16();
        let duration = started.elapsed();
        shared.metrics.record(&trace.route, status, duration);
        access_log::log(&AccessRecord {
            request_id,
            client,
            method: method.as_str(),
            path: uri.path(),
            route: &trace.route,
            status,
            duration,
            upstream: trace.upstream.as_deref(),
            decisions: &trace.decisions,
            error: trace.error.as_deref(),
        });
        response
    }
}

// The listener, route and matcher are borrowed from `gateway` (which
// `handle`'s future holds) for the whole request; so are the names the
// trace takes from them.
#[allow(clippy::manual_async_fn)] // a plain fn: see `handle`
fn serve<'g>(
    shared: &Arc<Shared>,
    gateway: &'g Gateway,
    bind: usize,
    peer: Arc<Peer>,
    req: Request<Incoming>,
    request_id_header: HeaderValue,
    trace: &mut Trace<'g>,
) -> impl Future<Output = Response<Body>> {
    async move {
        // Checked visible ASCII when made or taken from the client.
        let request_id = request_id_header.to_str().unwrap_or_default();
        if !shared.ready.load(Ordering::Acquire) {
            trace.error = Some("not ready".into());
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the gateway is not ready: a plugin could not be loaded yet",
                request_id,
                &[],
            );
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .map(str::to_string);
        let Some(listener) = gateway.listener(bind, host.as_deref()) else {
            trace.error = Some("no listener".into());
            return error_response(
                StatusCode::NOT_FOUND,
                "no_listener",
                "no listener answers for this host",
                request_id,
                &[],
            );
        };
        if let Some(resource) = req.uri().path().strip_prefix(PROTECTED_RESOURCE_PATH)
            && let Some(metadata) =
                protected_resource(listener, &peer, &req, host.as_deref(), resource)
        {
            trace.route = format!("{}/-", listener.name).into();
            return metadata;
        }
        let found = listener.routes.find(
            req.method(),
            host.as_deref(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        // `route` and `matched` stay borrowed from `gateway` for the whole
        // request (a copy of the matcher was an allocation per request).
        let Some((route, matched)) = found else {
            trace.route = format!("{}/-", listener.name).into();
            trace.error = Some("no route".into());
            return error_response(
                StatusCode::NOT_FOUND,
                "no_route",
                "no route matches this request",
                request_id,
                &[],
            );
        };
        trace.route = route.name.as_str().into();

        let cors = match &route.cors {
            Some(policy) => policy.check(req.method(), req.headers()),
            None => CorsCheck::Pass,
        };
        let mut response = match cors {
            CorsCheck::Preflight(headers) => preflight_answer(headers),
            check => {
                let cors_allowed = matches!(check, CorsCheck::Allow(_));
                let mut resp = serve_route(
                    shared,
                    gateway,
                    route,
                    matched,
                    peer,
                    req,
                    host,
                    request_id_header,
                    cors_allowed,
                    trace,
                )
                .await;
                if let CorsCheck::Allow(headers) = check {
                    cors::decorate(resp.headers_mut(), headers);
                }
                resp
            }
        };
        if let Some(edits) = &route.response_headers {
            edits.apply(response.headers_mut());
        }
        response
    }
}

/// A request on its route, from authentication to the upstream's answer.
#[allow(clippy::too_many_arguments)]
fn serve_route<'g>(
    shared: &Arc<Shared>,
    gateway: &'g Gateway,
    route: &'g Arc<RouteRuntime>,
    matched: &Matcher,
    peer: Arc<Peer>,
    req: Request<Incoming>,
    host: Option<String>,
    request_id_header: HeaderValue,
    // The route's `cors` allows the request's `Origin`.
    cors_allowed: bool,
    trace: &mut Trace<'g>,
) -> impl Future<Output = Response<Body>> {
    // Split before the future is made, so it holds the parts alone, not the
    // request they came from as well.
    let (mut parts, body) = req.into_parts();
    async move {
        let request_id = request_id_header.to_str().unwrap_or_default();
        let client = peer.addr;
        // A WebSocket (or other) upgrade: the protocol asked for, and the
        // client's side of the tunnel once it is agreed. hyper marks the
        // requests that may upgrade, so every other request pays one check.
        let client_side = parts.extensions.remove::<OnUpgrade>();
        let upgrade = client_side.as_ref().and_then(|_| {
            upgrade::requested(parts.version, &parts.headers)
                .or_else(|| upgrade::extended_connect(&mut parts))
        });
        let client_h2 = parts.version == http::Version::HTTP_2;
        // Boxed (a large future), so only where there is something to check.
        let authenticates = route.jwt.is_some() || route.basic.is_some() || route.api_key.is_some();
        let identity = if !authenticates {
            None
        } else {
            let checked =
                authenticate(route, &peer, &mut parts, host.as_deref(), request_id, trace);
            match Box::pin(checked).await {
                Ok(identity) => identity,
                Err(refusal) => return refusal,
            }
        };
        if let Some(csrf) = &route.csrf {
            let own = || {
                origin(
                    &peer,
                    parts.uri.scheme_str(),
                    &parts.headers,
                    host.as_deref(),
                )
            };
            if let Err(reason) = csrf.check(&parts.method, &parts.headers, own, cors_allowed) {
                trace.error = Some(format!("csrf: {reason}"));
                return error_response(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    reason,
                    request_id,
                    &[("route", &route.name), ("policy", "csrf")],
                );
            }
        }
        let mut run = route.chain.start_with(|| RequestContext {
            route: route.name.clone(),
            client_address: client.to_string(),
            identity,
            request_id: request_id.to_string(),
        });
        let mut body: Body = body.map_err(box_err).boxed();

        if route.buffer_request {
            let bytes = match read_body(body, gateway.max_body).await {
                Ok(b) => b,
                Err(response) => return response(request_id),
            };
            body = if run.wants(Hooks::HTTP_REQUEST) {
                match request_hook(&mut run, &mut parts, bytes, route, request_id, trace) {
                    Ok(body) => body,
                    Err(stop) => return stop,
                }
            } else {
                // Buffered for the MCP or LLM handling only: no plugin looks at
                // the raw request, so no copy of it is made.
                replace_body(&mut parts.headers, bytes)
            };
        }

        if let Some(redirect) = &route.redirect {
            let (status, location) =
                filters::redirect(redirect, matched, &parts.uri, &parts.headers);
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(filters::LOCATION_HEADER, location);
            return resp;
        }
        if let Some(direct) = &route.direct {
            let mut resp = Response::new(full(Bytes::from(direct.body.clone())));
            *resp.status_mut() = StatusCode::from_u16(direct.status).unwrap_or(StatusCode::OK);
            return resp;
        }

        if let Some(edits) = &route.request_headers {
            edits.apply(&mut parts.headers);
        }
        if let Some(rewrite) = &route.rewrite
            && let Err(e) =
                filters::apply_rewrite(rewrite, matched, &mut parts.uri, &mut parts.headers)
        {
            trace.error = Some(e.clone());
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rewrite_failed",
                &e,
                request_id,
                &[("route", &route.name)],
            );
        }
        parts
            .headers
            .insert(X_REQUEST_ID, request_id_header.clone());
        append_forwarded_for(&mut parts.headers, &peer);

        if let Some(llm) = route.llm.clone() {
            if let Some(protocol) = upgrade {
                let session = realtime_session(
                    shared,
                    gateway,
                    route,
                    llm,
                    (parts, run),
                    protocol,
                    (peer, client_side),
                    request_id,
                    trace,
                );
                return Box::pin(session).await;
            }
            let body = match read_body(body, gateway.max_body).await {
                Ok(b) => b,
                Err(response) => return response(request_id),
            };
            let input = LlmRequestIn {
                parts,
                body,
                run,
                request_id: request_id.to_string(),
                route: route.name.clone(),
                head_timeout: route.backend_timeout.or(route.request_timeout),
                max_body: gateway.max_body.max(LLM_ANSWER_LIMIT),
            };
            let mut llm_trace = LlmTrace::default();
            // Boxed: inline, these large futures would make every request's
            // future (moved into hyper's dispatcher per request) as large.
            let response = Box::pin(llm::serve(shared.clone(), llm, input, &mut llm_trace)).await;
            trace.upstream = llm_trace.upstream.map(Cow::Owned);
            trace.error = llm_trace
                .error
                .or(llm_trace.denied_by.map(|p| format!("denied by {p}")));
            trace.decisions = llm_trace.decisions;
            return response;
        }
        if let Some(mcp) = route.mcp.clone() {
            let body = match read_body(body, gateway.max_body).await {
                Ok(b) => b,
                Err(response) => return response(request_id),
            };
            let mut mcp_trace = McpTrace::default();
            let input = McpRequestIn {
                parts,
                body,
                run,
                origin_trusted: cors_allowed,
            };
            let response = Box::pin(mcp::serve(mcp, input, &mut mcp_trace)).await;
            trace.upstream = mcp_trace.summary.map(Cow::Owned);
            trace.error = mcp_trace.error;
            trace.decisions = mcp_trace.decisions;
            return response;
        }
        if route.backends.is_empty() {
            trace.error = Some("route has no backend".into());
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_backend",
                "route has no backend",
                request_id,
                &[("route", &route.name)],
            );
        }
        run.request_phase_done();
        let sent = match upgrade.clone() {
            Some(protocol) => Box::pin(send_upgrade(shared, route, parts, body, protocol)).await,
            None => send_upstream(shared, route, parts, body, gateway.max_body).await,
        };
        let (response, upstream) = match sent {
            Ok(ok) => ok,
            Err(Failed::Upstream(e, upstream)) => {
                trace.upstream = Some(upstream.into());
                trace.error = Some(e.to_string());
                let kind = if e.status() == StatusCode::GATEWAY_TIMEOUT {
                    "upstream_timeout"
                } else {
                    "upstream_unavailable"
                };
                return error_response(
                    e.status(),
                    kind,
                    &e.to_string(),
                    request_id,
                    &[("route", &route.name), ("backend", upstream)],
                );
            }
            Err(Failed::Body(respond)) => return respond(request_id),
        };
        trace.upstream = Some(upstream.into());
        let (mut parts, body) = response.into_parts();
        // Taken before the hop-by-hop headers go: they name the protocol.
        let switched = upgrade.and_then(|asked| upgrade::agreed(asked, &mut parts));
        crate::backend::http::strip_hop_by_hop(&mut parts.headers);
        let mut body: Body = body.boxed();

        if route.buffer_response {
            let bytes = match read_body(body, gateway.max_body).await {
                Ok(b) => b,
                Err(_) => {
                    trace.error =
                        Some("upstream response too large for the response plugins".into());
                    return error_response(
                        StatusCode::BAD_GATEWAY,
                        "upstream_response_too_large",
                        "response exceeds the body limit for response plugins",
                        request_id,
                        &[("route", &route.name), ("backend", upstream)],
                    );
                }
            };
            let mut view = bindings::HttpResponse {
                status: parts.status.as_u16(),
                headers: to_wit_headers(&parts.headers),
                body: Some(bytes.to_vec()),
            };
            let verdict = run.run::<OnHttpResponse>(&mut view);
            if let Some(stop) = settle(verdict, &run.decisions, request_id, trace) {
                return stop;
            }
            if run.modified::<OnHttpResponse>() {
                parts.status = StatusCode::from_u16(view.status).unwrap_or(parts.status);
                parts.headers = from_wit_headers(&view.headers);
                body = replace_body(
                    &mut parts.headers,
                    view.body.map(Bytes::from).unwrap_or_default(),
                );
            } else {
                body = replace_body(&mut parts.headers, bytes);
            }
        }
        // A small body with a known length usually arrived with the head: read it
        // now so head and body leave in one write instead of two.
        let small = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n <= SMALL_BODY);
        if small && !route.buffer_response {
            match read_body(body, SMALL_BODY).await {
                Ok(bytes) => body = full(bytes),
                Err(_) => {
                    trace.error = Some("upstream body ended early".into());
                    return error_response(
                        StatusCode::BAD_GATEWAY,
                        "upstream_body",
                        "the upstream response body was cut short",
                        request_id,
                        &[("route", &route.name), ("backend", upstream)],
                    );
                }
            }
        }
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            let ends = peer.tunnel_ends(client_h2, &route.name, upstream, request_id);
            let tunnel = (switched, client_side, None);
            if let Err(refusal) = join_tunnel(shared, gateway, &mut parts, tunnel, ends, trace) {
                return refusal;
            }
        }
        Response::from_parts(parts, body)
    }
}

/// A Realtime session on an LLM route: the handshake goes to a provider
/// ([`llm::realtime`]) and its 101 starts the tunnel.
#[allow(clippy::too_many_arguments)]
async fn realtime_session<'g>(
    shared: &Shared,
    gateway: &Gateway,
    route: &'g RouteRuntime,
    llm: Arc<llm::LlmBackend>,
    (mut parts, run): (http::request::Parts, ChainRun),
    protocol: HeaderValue,
    (peer, client_side): (Arc<Peer>, Option<OnUpgrade>),
    request_id: &str,
    trace: &mut Trace<'g>,
) -> Response<Body> {
    let client_h2 = parts.version == http::Version::HTTP_2;
    let guarded = llm::realtime::guarded(&run);
    if guarded {
        parts.headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    }
    let mut llm_trace = LlmTrace::default();
    let timeout = head_timeout(route);
    let sent =
        llm::realtime::handshake(&llm, parts, protocol.clone(), timeout, &mut llm_trace).await;
    trace.upstream = llm_trace.upstream.map(Cow::Owned);
    trace.error = llm_trace.error;
    let (response, provider, model) = match sent {
        Ok(sent) => sent,
        Err(refusal) => return refusal,
    };
    shared
        .llm_metrics
        .record(&route.name, &provider.name, &model, None);
    let (mut parts, body) = response.into_parts();
    let switched = upgrade::agreed(protocol, &mut parts);
    crate::backend::http::strip_hop_by_hop(&mut parts.headers);
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let ends = peer.tunnel_ends(client_h2, &route.name, &provider.name, request_id);
        let relay = guarded.then(|| llm::realtime::session_guard(run, &provider, &model).relay());
        let tunnel = (switched, client_side, relay);
        if let Err(refusal) = join_tunnel(shared, gateway, &mut parts, tunnel, ends, trace) {
            return refusal;
        }
    }
    let mut response = Response::from_parts(parts, body.boxed());
    if let Ok(name) = HeaderValue::from_str(&provider.name) {
        response.headers_mut().insert("x-wardgate-provider", name);
    }
    response
}

/// Complete a 101: put its upgrade headers back and join the client's and
/// the upstream's connections into a tunnel. A 101 with nothing to join
/// (the request asked for no upgrade) would leave the client waiting: 502.
fn join_tunnel(
    shared: &Shared,
    gateway: &Gateway,
    parts: &mut http::response::Parts,
    (switched, client_side, relay): (
        Option<upgrade::Switch>,
        Option<OnUpgrade>,
        Option<upgrade::Relay>,
    ),
    ends: upgrade::Ends,
    trace: &mut Trace<'_>,
) -> Result<(), Response<Body>> {
    let (Some(switched), Some(client_side)) = (switched, client_side) else {
        trace.error = Some("101 without an upgrade to carry it".into());
        return Err(error_response(
            StatusCode::BAD_GATEWAY,
            "upstream_switched_protocols",
            "the upstream switched protocols on a request that did not ask to",
            &ends.request_id,
            &[("route", &ends.route), ("backend", &ends.upstream)],
        ));
    };
    let idle = gateway.client_limits.idle_timeout;
    let metrics = shared.tunnels.clone();
    match relay {
        None => upgrade::join(parts, switched, client_side, idle, ends, metrics),
        Some(relay) => upgrade::join_with(parts, switched, client_side, idle, ends, metrics, relay),
    }
    Ok(())
}

/// The longest wait for an upstream's answer head: the shorter of the
/// route's request and backend timeouts.
fn head_timeout(route: &RouteRuntime) -> Option<std::time::Duration> {
    match (route.request_timeout, route.backend_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Send an upgrade request to one of the route's backends. Not retried: a
/// WebSocket client reconnects on its own terms.
async fn send_upgrade<'r>(
    shared: &Shared,
    route: &'r RouteRuntime,
    parts: http::request::Parts,
    body: Body,
    protocol: HeaderValue,
) -> Result<(Response<UpstreamBody>, &'r str), Failed<'r>> {
    let backend = shared
        .backends
        .pick(&route.backends)
        .expect("route has backends");
    let upstream = &*backend.name;
    let req = Request::from_parts(parts, body);
    match forward_upgrade(backend, req, protocol, head_timeout(route)).await {
        Ok(r) => Ok((r, upstream)),
        Err(e) => Err(Failed::Upstream(e, upstream)),
    }
}

type Deferred = Box<dyn FnOnce(&str) -> Response<Body> + Send>;

enum Failed<'r> {
    /// The error, and the backend's name (borrowed from the route).
    Upstream(UpstreamError, &'r str),
    Body(Deferred),
}

fn idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

/// Send the request to one of the route's backends, retrying as its policy
/// says: a failed connection always (nothing was sent), a timeout, a broken
/// exchange or a listed status only for idempotent methods. Retries need a
/// replayable body, so a retrying route buffers it (up to the body limit).
#[allow(clippy::manual_async_fn)] // a plain fn: see `handle`
fn send_upstream<'r>(
    shared: &Shared,
    route: &'r RouteRuntime,
    parts: http::request::Parts,
    body: Body,
    max_body: usize,
) -> impl Future<Output = Result<(Response<UpstreamBody>, &'r str), Failed<'r>>> {
    async move {
        let timeout = head_timeout(route);
        let Some(retry) = route.retry.as_ref().filter(|r| r.attempts > 1) else {
            let backend = shared
                .backends
                .pick(&route.backends)
                .expect("route has backends");
            let upstream = &*backend.name;
            return match shared
                .backends
                .forward(backend, Request::from_parts(parts, body), timeout)
                .await
            {
                Ok(r) => Ok((r, upstream)),
                Err(e) => Err(Failed::Upstream(e, upstream)),
            };
        };
        // Boxed for the same reason as the LLM and MCP paths: size.
        let retry = retry.clone();
        Box::pin(send_with_retries(
            shared, route, retry, parts, body, max_body, timeout,
        ))
        .await
    }
}

async fn send_with_retries<'r>(
    shared: &Shared,
    route: &'r RouteRuntime,
    retry: crate::config::schema::Retry,
    parts: http::request::Parts,
    body: Body,
    max_body: usize,
    timeout: Option<std::time::Duration>,
) -> Result<(Response<UpstreamBody>, &'r str), Failed<'r>> {
    let bytes = read_body(body, max_body).await.map_err(Failed::Body)?;
    let safe = idempotent(&parts.method);
    let mut delay = retry
        .backoff
        .map(|d| d.0)
        .unwrap_or(std::time::Duration::from_millis(25));
    let mut attempt = 1;
    loop {
        let backend = shared
            .backends
            .pick(&route.backends)
            .expect("route has backends");
        let upstream = &*backend.name;
        let mut req = Request::new(full(bytes.clone()));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = parts.headers.clone();
        let result = shared.backends.forward(backend, req, timeout).await;
        let again = match &result {
            // Nothing was sent: any method may go again.
            Err(UpstreamError::Connect(..) | UpstreamError::ConnectTimeout(_)) => true,
            Err(_) => safe,
            Ok(r) => safe && retry.codes.contains(&r.status().as_u16()),
        };
        if !again || attempt >= retry.attempts {
            return match result {
                Ok(r) => Ok((r, upstream)),
                Err(e) => Err(Failed::Upstream(e, upstream)),
            };
        }
        tracing::debug!(route = %route.name, %upstream, attempt, "retrying after {delay:?}");
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
        attempt += 1;
    }
}

/// Buffer a body up to `limit` bytes; too large is 413, a broken stream 400.
// Not `Limited` + `collect` from http-body-util: that trips rustc's Send
// inference for the connection future, and boxing it costs an allocation.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, Deferred> {
    // Most bodies come in one frame: keep it as is and copy only from the second.
    let mut first: Option<Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let message = format!("could not read body: {e}");
                return Err(Box::new(move |id: &str| {
                    error_response(StatusCode::BAD_REQUEST, "bad_body", &message, id, &[])
                }));
            }
        };
        if let Ok(data) = frame.into_data() {
            let held = first.as_ref().map_or(0, Bytes::len);
            if held + buf.len() + data.len() > limit {
                return Err(Box::new(move |id: &str| {
                    error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        &format!("body exceeds {limit} bytes"),
                        id,
                        &[],
                    )
                }));
            }
            if first.is_none() && buf.is_empty() {
                first = Some(data);
                continue;
            }
            if let Some(f) = first.take() {
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(match first {
        Some(f) => f,
        None => buf.freeze(),
    })
}

fn box_err(e: hyper::Error) -> BoxError {
    Box::new(e)
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn to_wit_headers(headers: &HeaderMap) -> Vec<bindings::Header> {
    headers
        .iter()
        .map(|(k, v)| bindings::Header {
            name: k.as_str().to_string(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect()
}

fn from_wit_headers(headers: &[bindings::Header]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            map.append(k, v);
        }
    }
    map
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: &Peer) {
    const NAME: HeaderName = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&NAME).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", peer.addr.ip())),
        None => Ok(peer.forwarded_for.clone()),
    };
    if let Ok(v) = value {
        headers.insert(NAME, v);
    }
}

/// Where RFC 9728 protected-resource metadata lives; the resource's path follows.
const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";

/// `scheme://host` as the client addressed the gateway.
fn origin(
    peer: &Peer,
    scheme: Option<&str>,
    headers: &http::HeaderMap,
    host: Option<&str>,
) -> String {
    let scheme = scheme
        .or_else(|| {
            headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or(if peer.tls { "https" } else { "http" });
    format!("{scheme}://{}", host.unwrap_or("localhost"))
}

/// The route's authentication policies in agentgateway's order: `jwtAuth`,
/// `basicAuth`, `apiKey`. Each takes its own credential out of the request
/// once verified; the first verified gives the identity (as JSON) that
/// plugins see. A refusal is the 401 to send.
async fn authenticate(
    route: &RouteRuntime,
    peer: &Peer,
    parts: &mut http::request::Parts,
    host: Option<&str>,
    request_id: &str,
    trace: &mut Trace<'_>,
) -> Result<Option<String>, Response<Body>> {
    let mut identity = None;
    let mut refuse = |policy: &str, reason: String, challenge: Option<String>| {
        trace.error = Some(format!("{policy}: {reason}"));
        let mut resp = error_response(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            &format!("authentication failed: {reason}"),
            request_id,
            &[("route", &route.name), ("policy", policy)],
        );
        if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    };
    if let Some(auth) = &route.jwt {
        match auth.check(parts, route.forward_token).await {
            Outcome::Verified(claims) => identity = Some(claims),
            Outcome::Anonymous => {}
            Outcome::Rejected(reason) => {
                // MCP clients find the authorization server from here (RFC 9728).
                let metadata = route.mcp.as_ref().map(|_| {
                    format!(
                        "{}{PROTECTED_RESOURCE_PATH}{}",
                        origin(peer, parts.uri.scheme_str(), &parts.headers, host),
                        parts.uri.path()
                    )
                });
                let challenge = jwt::challenge(&reason, metadata.as_deref());
                return Err(refuse("jwtAuth", reason, Some(challenge)));
            }
        }
    }
    if let Some(auth) = &route.basic {
        match auth.check(parts).await {
            Outcome::Verified(user) => identity = identity.or(Some(user)),
            Outcome::Anonymous => {}
            Outcome::Rejected(reason) => {
                return Err(refuse("basicAuth", reason, Some(auth.challenge())));
            }
        }
    }
    if let Some(auth) = &route.api_key {
        match auth.check(parts).await {
            Outcome::Verified(metadata) => identity = identity.or(Some(metadata)),
            Outcome::Anonymous => {}
            Outcome::Rejected(reason) => {
                return Err(refuse("apiKey", reason, auth.challenge()));
            }
        }
    }
    Ok(identity.map(|v| v.to_string()))
}

/// RFC 9728 metadata for an MCP route that authenticates with `jwtAuth`:
/// the resource (`/.well-known/oauth-protected-resource/mcp` describes
/// `/mcp`) and the issuers that may grant tokens for it. `None` when no
/// such route serves that path.
fn protected_resource<B>(
    listener: &crate::gateway::ListenerRuntime,
    peer: &Peer,
    req: &Request<B>,
    host: Option<&str>,
    resource: &str,
) -> Option<Response<Body>> {
    let path = if resource.is_empty() { "/" } else { resource };
    let (route, _) = listener
        .routes
        .find(&http::Method::POST, host, path, None, req.headers())?;
    let jwt = route.jwt.as_ref().filter(|_| route.mcp.is_some())?;
    let mut body = serde_json::json!({
        "resource": format!("{}{path}", origin(peer, req.uri().scheme_str(), req.headers(), host)),
        "authorization_servers": jwt.issuers(),
        "bearer_methods_supported": ["header"],
        "resource_name": route.name,
    });
    // What `mcpAuthentication.resourceMetadata` says wins.
    if let (Some(configured), Some(served)) = (&route.resource_metadata, body.as_object_mut()) {
        served.extend(configured.clone());
    }
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Browser clients discover the authorization server from here too.
    match route
        .cors
        .as_ref()
        .map(|c| c.check(req.method(), req.headers()))
    {
        Some(CorsCheck::Preflight(headers)) => return Some(preflight_answer(headers)),
        Some(CorsCheck::Allow(headers)) => cors::decorate(resp.headers_mut(), headers),
        Some(CorsCheck::Pass) | None => {}
    }
    Some(resp)
}

/// The gateway's answer to a CORS preflight: 200, no body.
fn preflight_answer(headers: HeaderMap) -> Response<Body> {
    let mut answer = Response::new(full(Bytes::new()));
    *answer.headers_mut() = headers;
    answer
}

/// Record what the chain decided; `Some` is the response that ends the request.
fn settle(
    verdict: Result<Verdict, PluginFailure>,
    decisions: &[Decision],
    request_id: &str,
    trace: &mut Trace<'_>,
) -> Option<Response<Body>> {
    trace.decisions = decisions.to_vec();
    match verdict {
        Ok(Verdict::Continue) => None,
        Ok(Verdict::Deny { plugin, denial }) => {
            trace.error = Some(format!("denied by {plugin}"));
            Some(denial_response(denial))
        }
        Err(failure) => Some(plugin_failure(failure, request_id, trace)),
    }
}

/// The chain's HTTP request hook over the buffered request: the body to
/// send on (with whatever the chain modified taken back), or the response
/// that ends the request (a denial, a failure, an invalid path).
fn request_hook(
    run: &mut ChainRun,
    parts: &mut http::request::Parts,
    bytes: Bytes,
    route: &RouteRuntime,
    request_id: &str,
    trace: &mut Trace<'_>,
) -> Result<Body, Response<Body>> {
    let path_and_query = |parts: &http::request::Parts| {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string()
    };
    let mut view = bindings::HttpRequest {
        method: parts.method.to_string(),
        path: path_and_query(parts),
        headers: to_wit_headers(&parts.headers),
        body: Some(bytes.to_vec()),
    };
    let verdict = run.run::<OnHttpRequest>(&mut view);
    if route.mcp.is_some()
        && let Ok(Verdict::Deny { plugin, denial }) = &verdict
    {
        // MCP clients read errors as JSON-RPC, not as HTTP statuses.
        trace.decisions = run.decisions.clone();
        trace.error = Some(format!("denied by {plugin}"));
        return Err(mcp::denied_before_dispatch(&bytes, denial));
    }
    if let Some(stop) = settle(verdict, &run.decisions, request_id, trace) {
        return Err(stop);
    }
    if !run.modified::<OnHttpRequest>() {
        // Nothing changed: the original headers go on, not their copies.
        return Ok(replace_body(&mut parts.headers, bytes));
    }
    if view.path != path_and_query(parts) {
        match view.path.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => {
                trace.error = Some(format!("plugin set invalid path '{}'", view.path));
                return Err(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "plugin_error",
                    "a plugin set an invalid path",
                    request_id,
                    &[("route", &route.name)],
                ));
            }
        }
    }
    parts.headers = from_wit_headers(&view.headers);
    Ok(replace_body(
        &mut parts.headers,
        view.body.map(Bytes::from).unwrap_or_default(),
    ))
}

/// The body a plugin saw (maybe rewritten), with a Content-Length to match.
fn replace_body(headers: &mut HeaderMap, body: Bytes) -> Body {
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    full(body)
}

pub(crate) fn denial_response(denial: Denial) -> Response<Body> {
    let status = StatusCode::from_u16(denial.status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::FORBIDDEN);
    let looks_json = denial.body.trim_start().starts_with('{');
    let mut resp = Response::new(full(Bytes::from(denial.body)));
    *resp.status_mut() = status;
    for h in &denial.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    if !resp.headers().contains_key(CONTENT_TYPE) {
        let ct = if looks_json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}

fn plugin_failure(
    failure: PluginFailure,
    request_id: &str,
    trace: &mut Trace<'_>,
) -> Response<Body> {
    tracing::error!(request_id, route = %failure.route, plugin = %failure.plugin, hook = failure.hook, "{failure}");
    trace.error = Some(failure.to_string());
    let status =
        StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_response(
        status,
        "plugin_failed",
        &failure.to_string(),
        request_id,
        &[("route", &failure.route), ("plugin", &failure.plugin)],
    )
}

/// The gateway's own error bodies: `{"error": {"type", "message", "requestId", ...}}`.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
    extra: &[(&str, &str)],
) -> Response<Body> {
    let mut error =
        serde_json::json!({ "type": kind, "message": message, "requestId": request_id });
    for (k, v) in extra {
        error[*k] = serde_json::Value::String(v.to_string());
    }
    let body = serde_json::json!({ "error": error }).to_string();
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper moves each request's future into its connection's slot, so its
    /// size is copied per request: the rare, heavy paths (LLM, MCP, JWT,
    /// retries) are boxed to keep the plain proxy path small (8 KiB before),
    /// and the steps on the path are plain fns returning async blocks.
    #[test]
    fn a_request_future_stays_small() {
        fn size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(Arc<WorkerShared>, usize, Arc<Peer>, Request<Incoming>) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let bytes = size(handle);
        // 3,400 bytes now; 4,880 as `async fn`s, 8 KiB with those paths inline.
        assert!(bytes <= 3584, "proxy::handle's future is {bytes} bytes");
    }
}
