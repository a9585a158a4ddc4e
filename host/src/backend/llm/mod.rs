//! LLM backends: a route whose backend is `ai:` speaks to model providers.
//!
//! A request's path here: classify the API from the path ([`api`]) → parse
//! the chat body into the neutral view and run the LLM request hooks
//! ([`chat`]) → pick a provider, translating the body if it speaks the
//! other format (or Bedrock's Converse API, [`converse`]), failing over on
//! 429/5xx/connect errors ([`failover`]) → the answer back in the client's
//! format, whole or streamed ([`stream`]; Bedrock's frames: [`aws_events`]),
//! through the response or chunk hooks, with token usage recorded.
//! The Responses API takes the same hooks on its own shapes ([`responses`],
//! its streamed events in [`answer_events`]); for providers without it, it
//! is translated to chat and back ([`responses_chat`]). Realtime sessions are
//! WebSocket handshakes sent on to a provider ([`realtime`]). A provider
//! adds its credentials ([`crate::backend::credentials`]).

pub mod ai_policy;
pub mod answer_events;
pub mod api;
pub mod aws_events;
pub mod bedrock_count_tokens;
pub mod bedrock_embeddings;
pub mod chat;
pub mod converse;
pub mod failover;
pub mod gemini;
pub mod provider;
pub mod realtime;
pub mod reasoning;
pub mod responses;
pub mod responses_chat;
pub mod stream;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::http::UpstreamBody;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use self::ai_policy::{AiPolicy, BodyShape};
use self::api::{Api, Flavor, Wire};
use self::aws_events::EventDecoder;
use self::failover::Failover;
use self::provider::Provider;
use self::stream::{ChunkGuard, StreamRelay, TextVerdict};
use crate::backend::http::{Body, UpstreamError};
use crate::backend::sse::SseEvent;
use crate::config::schema::{AiBackend, BackendAuth, NamedAiProvider, Policies};
use crate::policy::bindings::{Hooks, LlmChunk, LlmRequest, TokenUsage};
use crate::policy::hooks::{OnLlmChunk, OnLlmRequest, OnLlmResponse};
use crate::policy::{ChainRun, Verdict};
use crate::proxy::Shared;

/// How much already-sent text a chunk hook sees before the new text.
const LOOKBEHIND_CHARS: usize = 256;
const DEFAULT_IDLE: Duration = Duration::from_secs(120);

/// The runtime of one route's `ai:` backend.
pub struct LlmBackend {
    pub failover: Failover,
    pub idle_timeout: Duration,
    /// `policies.ai`: route types, model aliases, defaults, overrides,
    /// prompts, caching.
    ai: AiPolicy,
    passthrough_auth: bool,
}

/// A build error: the config path under the backend (or, starting with
/// [`ROUTE_PREFIX`], under the route), and the message.
pub type BuildError = (String, String);
pub const ROUTE_PREFIX: &str = "@route.";

impl LlmBackend {
    pub fn build(
        config: &AiBackend,
        // The route's policies: backendAuth, backendTLS and tcp as the
        // providers' defaults, ai, retry.
        route: &Policies,
        clients: &crate::backend::http::HttpBackends,
        base_dir: Option<&std::path::Path>,
    ) -> Result<LlmBackend, BuildError> {
        let route_auth = route.backend_auth.as_ref();
        let route_tls = route.backend_tls.as_ref();
        let (ai, retry) = (route.ai.as_ref(), route.retry.as_ref());
        let single = config.provider.as_ref().map(|provider| NamedAiProvider {
            name: config
                .name
                .clone()
                .unwrap_or_else(|| provider::default_name(provider).into()),
            provider: provider.clone(),
            host_override: config.host_override.clone(),
            path_override: config.path_override.clone(),
            path_prefix: config.path_prefix.clone(),
            policies: config.policies.clone(),
        });
        let groups: Vec<(String, Vec<NamedAiProvider>)> = match (single, config.groups.is_empty()) {
            (Some(p), true) => vec![(String::new(), vec![p])],
            (None, false) => config
                .groups
                .iter()
                .enumerate()
                .map(|(g, group)| (format!("groups[{g}]."), group.providers.clone()))
                .collect(),
            (Some(_), false) => {
                return Err((
                    "groups".into(),
                    "give either `provider` or `groups`, not both".into(),
                ));
            }
            (None, true) => {
                return Err((
                    "provider".into(),
                    "an ai backend needs `provider` (e.g. {openAI: {}}) or `groups`".into(),
                ));
            }
        };
        let mut built = Vec::new();
        for (at, providers) in &groups {
            if providers.is_empty() {
                return Err((
                    format!("{at}providers"),
                    "a group needs at least one provider".into(),
                ));
            }
            let mut group = Vec::new();
            for (i, named) in providers.iter().enumerate() {
                let own = named.policies.as_ref();
                let auth = own.and_then(|p| p.backend_auth.as_ref()).or(route_auth);
                let tls = own.and_then(|p| p.backend_tls.as_ref()).or(route_tls);
                let connect = route.connect_timeout();
                let provider = Provider::build(named, auth, tls, connect, clients, base_dir)
                    .map_err(|(field, message)| {
                        // A key inherited from the route is the route's mistake.
                        let inherited = own.and_then(|p| p.backend_auth.as_ref()).is_none();
                        if inherited && field.starts_with("policies.backendAuth") {
                            return (format!("{ROUTE_PREFIX}{field}"), message);
                        }
                        let here = if at.is_empty() {
                            String::new()
                        } else {
                            format!("{at}providers[{i}].")
                        };
                        (format!("{here}{field}"), message)
                    })?;
                group.push(Arc::new(provider));
            }
            built.push(group);
        }
        Ok(LlmBackend {
            failover: Failover::new(built, config.cooldown.as_ref().map(|d| d.0)).with_retry(
                retry.map(|r| r.attempts),
                retry.and_then(|r| r.backoff.map(|b| b.0)),
            ),
            idle_timeout: config
                .idle_timeout
                .as_ref()
                .map(|d| d.0)
                .unwrap_or(DEFAULT_IDLE),
            ai: AiPolicy::build(ai),
            passthrough_auth: matches!(route_auth, Some(BackendAuth::Passthrough(_))),
        })
    }
}

/// What the proxy hands over once the request reached the backend step.
pub struct LlmRequestIn {
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub run: ChainRun,
    pub request_id: String,
    pub route: String,
    pub head_timeout: Option<Duration>,
    pub max_body: usize,
}

/// What the access log learns about the exchange.
#[derive(Default)]
pub struct LlmTrace {
    pub upstream: Option<String>,
    pub error: Option<String>,
    pub denied_by: Option<String>,
    pub decisions: Vec<crate::policy::Decision>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serve one request on an LLM route.
pub async fn serve(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    trace: &mut LlmTrace,
) -> Response<Body> {
    let api = llm.ai.classify(input.parts.uri.path());
    let client = api.flavor();
    let post = input.parts.method == http::Method::POST;
    let mut candidates = match api {
        // Providers without the Responses API get it as chat.
        Api::RESPONSES if post => llm.failover.candidates_for(|_| true),
        _ => llm.failover.candidates(api),
    };
    // Bedrock embeds and counts tokens through its own APIs: such a call
    // goes to Bedrock providers or to the others, as the first candidate is.
    let bedrock_native = matches!(api, Api::Native("embeddings" | "messages/count_tokens"));
    let to_bedrock = bedrock_native && candidates.first().is_some_and(|(_, p)| p.is_bedrock());
    if bedrock_native {
        candidates.retain(|(_, p)| p.is_bedrock() == to_bedrock);
    }
    if candidates.is_empty() {
        trace.error = Some("no provider serves this API".into());
        return api::error_response(
            client,
            StatusCode::NOT_FOUND,
            None,
            &format!(
                "no provider of route '{}' serves {}",
                input.route,
                input.parts.uri.path()
            ),
        );
    }
    match api {
        Api::Chat(from) => chat(shared, llm, input, from, candidates, trace).await,
        Api::RESPONSES if post => responses::serve(shared, llm, input, candidates, trace).await,
        Api::Native("embeddings") if to_bedrock && post => {
            bedrock_embeddings::serve(shared, llm, input, candidates, trace).await
        }
        Api::Native("messages/count_tokens") if to_bedrock && post => {
            bedrock_count_tokens::serve(shared, llm, input, candidates, trace).await
        }
        _ => passthrough(shared, llm, input, api, candidates, trace).await,
    }
}

/// Forward another API call (embeddings, models, ...) with
/// the gateway's credentials, failing over like chat calls.
async fn passthrough(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    api: Api,
    candidates: Vec<(usize, Arc<Provider>)>,
    trace: &mut LlmTrace,
) -> Response<Body> {
    let client = api.flavor();
    let path_and_query = input
        .parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let attempt = |p: &Provider| {
        let path = match api {
            Api::Other => path_and_query.clone(),
            _ => p.uri_for(api, input.parts.uri.path(), input.parts.uri.query()),
        };
        provider_request(
            &input.parts,
            p,
            &path,
            p.native_body(api, &input.body),
            llm.passthrough_auth,
        )
    };
    match llm
        .failover
        .send(&shared.backends, &candidates, input.head_timeout, attempt)
        .await
    {
        Ok((provider, resp)) => {
            trace.upstream = Some(provider.name.clone());
            let (mut parts, body) = resp.into_parts();
            crate::backend::http::strip_hop_by_hop(&mut parts.headers);
            let mut resp = Response::from_parts(parts, body.boxed());
            resp.headers_mut().insert(
                "x-wardgate-provider",
                HeaderValue::from_str(&provider.name).unwrap_or(HeaderValue::from_static("-")),
            );
            resp
        }
        Err(failed) => failed.into_response(client, trace).await,
    }
}

/// A call to one of Bedrock's model APIs (`action`: `invoke`,
/// `count-tokens`) for `p`: the client's headers with the provider's
/// credentials, signed as its chat calls are.
fn bedrock_call(
    client: &http::request::Parts,
    p: &Provider,
    (model, action): (&str, &str),
    body: &Bytes,
    llm: &LlmBackend,
) -> Request<Body> {
    let mut headers = forwarded_headers(client);
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    json_post(p, headers, &p.model_uri(model, action), body.clone(), llm)
}

/// The client's headers as a provider gets them: less Host, and less
/// Accept-Encoding (the gateway reads the answer, so it must come
/// uncompressed).
fn forwarded_headers(client: &http::request::Parts) -> http::HeaderMap {
    let mut headers = client.headers.clone();
    headers.remove(http::header::HOST);
    headers.remove(http::header::ACCEPT_ENCODING);
    headers
}

/// A POST of the JSON `body` to `uri` for `p`: `headers` with the body's
/// type and length and the provider's credentials; an AWS signature
/// covers the body.
fn json_post(
    p: &Provider,
    mut headers: http::HeaderMap,
    uri: &str,
    body: Bytes,
    llm: &LlmBackend,
) -> Request<Body> {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    p.authorize(&mut headers, llm.passthrough_auth);
    let mut req = Request::new(crate::proxy::full(body.clone()));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.headers_mut() = headers;
    p.digest_body(&mut req, &body);
    req
}

/// The client's request as `provider` gets it at `path`: its method and
/// headers, less Host and Accept-Encoding (the gateway reads the answer),
/// with the gateway's credentials.
fn provider_request(
    client: &http::request::Parts,
    provider: &Provider,
    path: &str,
    body: Bytes,
    passthrough_auth: bool,
) -> Request<Body> {
    let mut headers = forwarded_headers(client);
    // The provider may have changed the body (see `Provider::native_body`).
    if headers.contains_key(CONTENT_LENGTH) || !body.is_empty() {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    provider.authorize(&mut headers, passthrough_auth);
    let mut req = Request::new(crate::proxy::full(body.clone()));
    *req.method_mut() = client.method.clone();
    *req.uri_mut() = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    *req.headers_mut() = headers;
    provider.digest_body(&mut req, &body);
    req
}

async fn chat(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    from: Flavor,
    candidates: Vec<(usize, Arc<Provider>)>,
    trace: &mut LlmTrace,
) -> Response<Body> {
    let LlmRequestIn {
        parts,
        body,
        mut run,
        route,
        head_timeout,
        max_body,
        ..
    } = input;
    let mut body = match json_object(&body, from, trace) {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let shape = match from {
        Flavor::OpenAi => BodyShape::OpenAiChat,
        Flavor::Anthropic => BodyShape::AnthropicMessages,
    };
    llm.ai.apply(shape, &mut body);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_wants_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let original = Value::Object(body);
    let primary = &candidates[0].1;
    let mut view = chat::request_view(from, &original, primary.family);
    let requested_model = view.model.clone();
    let mut edited = false;
    if run.wants(Hooks::LLM_REQUEST) {
        let verdict = run.run::<OnLlmRequest>(&mut view);
        if let Some(stop) = settle(verdict, &run, from, trace) {
            return stop;
        }
        edited = run.modified::<OnLlmRequest>();
    }
    run.request_phase_done();
    let mut candidates = candidates;
    if let Err(message) = keep_translatable(from, &original, &view.model, &mut candidates, |_| true)
    {
        trace.error = Some(message.clone());
        return api::error_response(from, StatusCode::BAD_REQUEST, None, &message);
    }

    let call = ChatCall {
        parts: &parts,
        original: &original,
        view: &view,
        from,
        edited,
        stream,
    };
    let exchange = Exchange {
        shared: &shared,
        llm: &llm,
        candidates: &candidates,
        head_timeout,
        max_body,
        client: from,
    };
    let (provider, resp) = match exchange.send(|p| call.request_for(p, &llm), trace).await {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    let answer = ChatAnswer {
        run,
        route,
        max_body,
        requested_model,
        reader: Reader::Chat {
            flavor: from,
            wants_usage: client_wants_usage,
        },
    };
    answer
        .read(shared, &llm, provider, resp, &call, trace)
        .await
}

/// Leave out the providers (of those `checked` picks) a chat request
/// `body` of `from`'s format cannot be translated for; none left is the
/// reason for the first.
pub(super) fn keep_translatable(
    from: Flavor,
    body: &Value,
    model: &str,
    candidates: &mut Vec<(usize, Arc<Provider>)>,
    checked: impl Fn(&Provider) -> bool,
) -> Result<(), String> {
    let mut first = None;
    candidates.retain(|(_, p)| {
        if !checked(p) {
            return true;
        }
        let wire = p.wire_for(p.model.as_deref().unwrap_or(model));
        let Some((field, why)) = reasoning::untranslatable(from, wire, body) else {
            return true;
        };
        first.get_or_insert_with(|| format!("provider {} cannot take `{field}`: {why}", p.name));
        false
    });
    match first {
        Some(message) if candidates.is_empty() => Err(message),
        _ => Ok(()),
    }
}

/// A chat request on its way to the providers: the client's body in
/// `from`'s format and its view, which holds the plugins' edits.
pub(super) struct ChatCall<'a> {
    pub parts: &'a http::request::Parts,
    pub original: &'a Value,
    pub view: &'a LlmRequest,
    pub from: Flavor,
    /// The plugins changed the view: a same-format body takes the edit.
    pub edited: bool,
    pub stream: bool,
}

impl ChatCall<'_> {
    /// The request `p` gets: the body in the format `p` speaks for the
    /// model, with its credentials, at its chat path.
    pub(super) fn request_for(&self, p: &Provider, llm: &LlmBackend) -> Request<Body> {
        let (from, view, stream) = (self.from, self.view, self.stream);
        let model = p.model.as_deref().unwrap_or(&view.model);
        let wire = p.wire_for(model);
        let mut out = match wire {
            Wire::Chat(to) if to == from => {
                let mut body = self.original.as_object().cloned().unwrap_or_default();
                if self.edited {
                    chat::set_messages(from, &mut body, &view.messages);
                    body.insert("model".into(), view.model.clone().into());
                }
                body
            }
            Wire::Chat(to) => match chat::translate_request(from, to, self.original, view) {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            // The model goes in the path.
            Wire::Converse => converse::request(from, self.original, view, p.guardrail()),
            Wire::Gemini => gemini::request(from, self.original, view),
        };
        if wire != Wire::Chat(from) {
            reasoning::carry(from, wire, self.original, model, &mut out);
        }
        if let (Some(model), Wire::Chat(_)) = (&p.model, wire) {
            out.insert("model".into(), model.clone().into());
        }
        match wire {
            Wire::Chat(Flavor::Anthropic) => llm.ai.cache(&mut out),
            Wire::Converse => llm.ai.cache_converse(&mut out),
            Wire::Chat(Flavor::OpenAi) | Wire::Gemini => {}
        }
        p.finish_body(model, &mut out);
        if stream && wire == Wire::Chat(Flavor::OpenAi) {
            // Usage comes only when asked for; the gateway always wants it.
            let opts = out
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".into(), true.into());
            }
        }
        let bytes = Bytes::from(Value::Object(out).to_string());
        let mut headers = forwarded_headers(self.parts);
        if wire != Wire::Chat(from) {
            let foreign: &[&str] = match wire {
                Wire::Chat(Flavor::OpenAi) => &["anthropic-"],
                Wire::Chat(Flavor::Anthropic) => &["openai-"],
                Wire::Converse | Wire::Gemini => &["anthropic-", "openai-"],
            };
            let drop: Vec<_> = headers
                .keys()
                .filter(|k| foreign.iter().any(|f| k.as_str().starts_with(f)))
                .cloned()
                .collect();
            for k in drop {
                headers.remove(k);
            }
        }
        if wire == Wire::Converse {
            let accept = if stream {
                aws_events::CONTENT_TYPE
            } else {
                "application/json"
            };
            headers.insert(http::header::ACCEPT, HeaderValue::from_static(accept));
        }
        json_post(p, headers, &p.chat_uri(model, stream), bytes, llm)
    }
}

/// The API the client reads a chat provider's answer in.
pub(super) enum Reader {
    /// A chat format; `wants_usage`: the client asked for
    /// `stream_options.include_usage` itself.
    Chat { flavor: Flavor, wants_usage: bool },
    /// OpenAI's Responses API, with the request's settings to repeat.
    Responses(responses_chat::Echo),
}

impl Reader {
    /// The shape of errors the client understands.
    fn flavor(&self) -> Flavor {
        match self {
            Reader::Chat { flavor, .. } => *flavor,
            Reader::Responses(_) => Flavor::OpenAi,
        }
    }
}

/// What turning a chat provider's answer into the client's needs.
pub(super) struct ChatAnswer {
    pub run: ChainRun,
    pub route: String,
    pub max_body: usize,
    pub requested_model: String,
    pub reader: Reader,
}

impl ChatAnswer {
    /// The client's answer, whole or streamed, through the response or
    /// chunk hooks, with the usage recorded.
    pub(super) async fn read(
        self,
        shared: Arc<Shared>,
        llm: &LlmBackend,
        provider: Arc<Provider>,
        resp: Response<UpstreamBody>,
        call: &ChatCall<'_>,
        trace: &mut LlmTrace,
    ) -> Response<Body> {
        let ChatAnswer {
            mut run,
            route,
            max_body,
            requested_model,
            reader,
        } = self;
        let client = reader.flavor();
        let created = now_secs();
        let sent_model = provider.model.as_deref().unwrap_or(&call.view.model);
        let wire = provider.wire_for(sent_model);
        // Only Bedrock may have been given stand-ins for the tools' names.
        let tool_names = match wire {
            Wire::Converse => converse::ToolNames::of(call.view),
            Wire::Chat(_) | Wire::Gemini => converse::ToolNames::default(),
        };
        // Converse names no answer: AWS's request id stands in.
        let request_id = match wire {
            Wire::Converse => resp
                .headers()
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            Wire::Chat(_) | Wire::Gemini => String::new(),
        };

        if is_event_stream(&resp) {
            let relay = match reader {
                Reader::Chat {
                    flavor,
                    wants_usage,
                } => StreamRelay::new(wire, flavor, wants_usage, created),
                Reader::Responses(echo) => StreamRelay::new(wire, Flavor::OpenAi, false, created)
                    .into_responses(echo.events(created)),
            };
            let relay = ChatStream {
                guard: StreamGuard::new(run, &provider, &requested_model),
                relay: relay.named(&request_id, sent_model, tool_names),
            };
            return stream_response(shared, resp, relay, llm, route, provider);
        }

        let bytes = match read_idle(resp.into_body(), max_body, llm.idle_timeout).await {
            Ok(b) => b,
            Err(e) => {
                trace.error = Some(e.clone());
                return api::error_response(client, StatusCode::BAD_GATEWAY, Some("api_error"), &e);
            }
        };
        let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
            trace.error = Some("provider answer is not JSON".into());
            return api::error_response(
                client,
                StatusCode::BAD_GATEWAY,
                Some("api_error"),
                &format!("provider {} sent an answer that is not JSON", provider.name),
            );
        };
        let (mut view, id) = match wire {
            Wire::Chat(to) => chat::response_view(to, &answer, provider.family),
            Wire::Converse => (
                converse::response_view(&answer, provider.family, sent_model, &tool_names),
                request_id,
            ),
            Wire::Gemini => {
                let view = gemini::response_view(&answer, provider.family, sent_model);
                (
                    view,
                    chat::str_field(&answer, "responseId").unwrap_or_default(),
                )
            }
        };
        let thinking = match reader {
            Reader::Chat { flavor, .. } if wire == Wire::Chat(flavor) => Vec::new(),
            _ => reasoning::of_answer(wire, &answer),
        };
        let mut edited = false;
        if run.wants(Hooks::LLM_RESPONSE) {
            let verdict = run.run::<OnLlmResponse>(&mut view);
            if let Some(stop) = settle(verdict, &run, client, trace) {
                return stop;
            }
            edited = run.modified::<OnLlmResponse>();
        }
        let model = if view.model.is_empty() {
            requested_model
        } else {
            view.model.clone()
        };
        shared.llm_metrics.record(
            &route,
            &provider.name,
            &model,
            view.usage.map(|u| (u.input, u.output, u.cached_input)),
        );
        let out = match reader {
            Reader::Chat { flavor, .. } if wire == Wire::Chat(flavor) => {
                if !edited {
                    let mut resp = Response::new(crate::proxy::full(bytes));
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    return with_provider(resp, &provider);
                }
                chat::apply_response_edit(flavor, &mut answer, &view);
                answer
            }
            Reader::Chat { flavor, .. } => {
                chat::encode_response(flavor, &view, &id, created, &thinking)
            }
            Reader::Responses(echo) => echo.answer(&view, &id, created, &thinking),
        };
        with_provider(api::json_response(StatusCode::OK, &out), &provider)
    }
}

/// What sending a request to the route's providers needs.
struct Exchange<'a> {
    shared: &'a Shared,
    llm: &'a LlmBackend,
    candidates: &'a [(usize, Arc<Provider>)],
    head_timeout: Option<Duration>,
    max_body: usize,
    /// The client's API, for the shape of errors.
    client: Flavor,
}

impl Exchange<'_> {
    /// Send the request `attempt` builds for each provider, failing over;
    /// a provider's success, or the client's answer (the last provider's
    /// error in the client's shape).
    async fn send(
        &self,
        attempt: impl Fn(&Provider) -> Request<Body>,
        trace: &mut LlmTrace,
    ) -> Result<(Arc<Provider>, Response<UpstreamBody>), Response<Body>> {
        let sent = self
            .llm
            .failover
            .send(
                &self.shared.backends,
                self.candidates,
                self.head_timeout,
                attempt,
            )
            .await;
        let (provider, resp) = match sent {
            Ok(ok) => ok,
            Err(failed) => return Err(failed.into_response(self.client, trace).await),
        };
        trace.upstream = Some(provider.name.clone());
        let status = resp.status();
        if status.is_success() {
            return Ok((provider, resp));
        }
        let bytes = read_idle(resp.into_body(), self.max_body, self.llm.idle_timeout)
            .await
            .unwrap_or_default();
        trace.error = Some(format!("provider {} answered {status}", provider.name));
        let body = api::translate_error(provider.flavor, self.client, status.as_u16(), &bytes);
        Err(with_provider(api::json_response(status, &body), &provider))
    }
}

/// A request body that must be a JSON object, or the client's 400.
fn json_object(
    body: &[u8],
    flavor: Flavor,
    trace: &mut LlmTrace,
) -> Result<Map<String, Value>, Response<Body>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => {
            trace.error = Some("body is not a JSON object".into());
            Err(api::error_response(
                flavor,
                StatusCode::BAD_REQUEST,
                None,
                "the request body must be a JSON object",
            ))
        }
        Err(e) => {
            trace.error = Some(format!("bad JSON: {e}"));
            Err(api::error_response(
                flavor,
                StatusCode::BAD_REQUEST,
                None,
                &format!("the request body is not valid JSON: {e}"),
            ))
        }
    }
}

fn is_event_stream<B>(resp: &Response<B>) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("text/event-stream") || v.starts_with(aws_events::CONTENT_TYPE)
        })
}

fn with_provider(mut resp: Response<Body>, provider: &Provider) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&provider.name) {
        resp.headers_mut().insert("x-wardgate-provider", v);
    }
    resp
}

/// Record the chain's decisions; `Some` is the answer that ends the request
/// (a denial, or a plugin that failed closed, in the client's error shape).
fn settle(
    verdict: Result<Verdict, crate::policy::PluginFailure>,
    run: &ChainRun,
    flavor: Flavor,
    trace: &mut LlmTrace,
) -> Option<Response<Body>> {
    trace.decisions = run.decisions.clone();
    match verdict {
        Ok(Verdict::Continue) => None,
        Ok(Verdict::Deny { plugin, denial }) => {
            trace.denied_by = Some(plugin);
            Some(crate::proxy::denial_response(denial))
        }
        Err(failure) => {
            tracing::error!(route = %failure.route, plugin = %failure.plugin, hook = failure.hook, "{failure}");
            trace.error = Some(failure.to_string());
            let status =
                StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(api::error_response(
                flavor,
                status,
                Some("api_error"),
                &failure.to_string(),
            ))
        }
    }
}

/// Read a whole body, allowing at most `idle` between two reads.
async fn read_idle(mut body: UpstreamBody, limit: usize, idle: Duration) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(format!("the provider went silent for {idle:?}")),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(format!("reading the provider's answer failed: {e}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(format!("the provider's answer exceeds {limit} bytes"));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The chunk hook of the route's chain, with the text already sent as
/// lookbehind so a pattern split across two chunks is still seen.
struct StreamGuard {
    run: ChainRun,
    active: bool,
    /// Text went by since the plugins last heard that the text ended.
    text_open: bool,
    index: u32,
    sent: String,
    provider: String,
}

impl StreamGuard {
    fn new(run: ChainRun, provider: &Provider, _model: &str) -> Self {
        StreamGuard {
            active: run.wants(Hooks::LLM_CHUNK),
            text_open: false,
            run,
            index: 0,
            sent: String::new(),
            provider: provider.name.clone(),
        }
    }

    /// The next answer of a session begins: its chunks count from 0, and
    /// the last one's text is no lookbehind for it.
    fn next_answer(&mut self) {
        self.index = 0;
        self.sent.clear();
        self.text_open = false;
    }

    fn call(&mut self, text: &str, usage: Option<TokenUsage>, done: bool) -> TextVerdict {
        if !self.active {
            return TextVerdict::Keep;
        }
        let mut chunk = LlmChunk {
            index: self.index,
            text: text.to_string(),
            lookbehind: self.sent.clone(),
            usage,
            done,
        };
        self.index += 1;
        let verdict = match self.run.run::<OnLlmChunk>(&mut chunk) {
            Ok(Verdict::Continue) if self.run.modified::<OnLlmChunk>() => {
                TextVerdict::Replace(chunk.text)
            }
            Ok(Verdict::Continue) => TextVerdict::Keep,
            Ok(Verdict::Deny { plugin, denial }) => {
                tracing::info!(request_id = %self.run.context().request_id, %plugin, provider = %self.provider, "stream stopped by a plugin");
                TextVerdict::Stop(denial.body)
            }
            Err(failure) => {
                tracing::error!(request_id = %self.run.context().request_id, "{failure}");
                TextVerdict::Stop(failure.to_string())
            }
        };
        let kept = match &verdict {
            TextVerdict::Keep => text,
            TextVerdict::Replace(t) => t.as_str(),
            TextVerdict::Stop(_) => "",
        };
        self.sent.push_str(kept);
        if self.sent.len() > LOOKBEHIND_CHARS * 2 {
            let mut cut = self.sent.len() - LOOKBEHIND_CHARS;
            while !self.sent.is_char_boundary(cut) {
                cut += 1;
            }
            self.sent.drain(..cut);
        }
        verdict
    }
}

impl ChunkGuard for StreamGuard {
    fn text(&mut self, text: &str) -> TextVerdict {
        self.text_open = true;
        self.call(text, None, false)
    }

    /// A `done` chunk without usage: plugins that hold text back (to mask
    /// values split across chunks) send it now. The last chunk, with the
    /// usage, comes later as another `done`.
    fn text_end(&mut self) -> TextVerdict {
        if !std::mem::take(&mut self.text_open) {
            return TextVerdict::Keep;
        }
        self.call("", None, true)
    }

    fn done(&mut self, usage: Option<TokenUsage>) -> Option<String> {
        match self.call("", usage, true) {
            TextVerdict::Stop(message) => Some(message),
            _ => None,
        }
    }
}

/// A streamed answer on its way to the client: the provider's events in,
/// the client's out, through the route's chunk hook.
trait EventRelay: Send + 'static {
    /// Relay one upstream event, appending what goes to the client to `out`.
    fn relay(&mut self, ev: &SseEvent, out: &mut BytesMut);
    /// The upstream ended: end the client's stream properly if the
    /// provider's end never came.
    fn end(&mut self, out: &mut BytesMut);
    /// The upstream failed: end the client's stream with this error.
    fn fail(&mut self, out: &mut BytesMut, message: &str);
    /// The client's stream is complete.
    fn finished(&self) -> bool;
    /// The provider's last event came and the client's stream ended with it:
    /// what is left of the provider's body is only its terminator.
    fn provider_done(&self) -> bool;
    fn usage(&self) -> Option<TokenUsage>;
    fn model(&self) -> &str;
}

/// A streamed chat answer: the format relay and the route's chunk guard.
struct ChatStream {
    relay: StreamRelay,
    guard: StreamGuard,
}

impl EventRelay for ChatStream {
    fn relay(&mut self, ev: &SseEvent, out: &mut BytesMut) {
        self.relay.relay(ev, &mut self.guard, out);
    }
    fn end(&mut self, out: &mut BytesMut) {
        self.relay.end(&mut self.guard, out);
    }
    fn fail(&mut self, out: &mut BytesMut, message: &str) {
        self.relay.fail(out, Some("api_error"), message);
    }
    fn finished(&self) -> bool {
        self.relay.finished()
    }
    fn provider_done(&self) -> bool {
        self.relay.provider_done()
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.relay.usage()
    }
    fn model(&self) -> &str {
        self.relay.model()
    }
}

/// The client's answer to a streamed provider answer.
fn stream_response(
    shared: Arc<Shared>,
    resp: Response<UpstreamBody>,
    relay: impl EventRelay,
    llm: &LlmBackend,
    route: String,
    provider: Arc<Provider>,
) -> Response<Body> {
    let decoder = EventDecoder::for_content_type(
        resp.headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let body = relay_body(
        shared,
        decoder,
        resp.into_body(),
        relay,
        llm.idle_timeout,
        route,
        provider.clone(),
    );
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    with_provider(response, &provider)
}

/// The client's body of a streamed answer: a task relays upstream events as
/// they come, so each chunk leaves as soon as it is read.
fn relay_body(
    shared: Arc<Shared>,
    mut decoder: EventDecoder,
    mut upstream: UpstreamBody,
    mut relay: impl EventRelay,
    idle: Duration,
    route: String,
    provider: Arc<Provider>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let mut events = Vec::new();
        let mut out = BytesMut::new();
        loop {
            let frame = match tokio::time::timeout(idle, upstream.frame()).await {
                Err(_) => {
                    relay.fail(&mut out, &format!("the provider went silent for {idle:?}"));
                    let _ = tx.send(out.split().freeze()).await;
                    break;
                }
                Ok(None) => {
                    if let Some(ev) = decoder.finish() {
                        relay.relay(&ev, &mut out);
                    }
                    relay.end(&mut out);
                    if !out.is_empty() {
                        let _ = tx.send(out.split().freeze()).await;
                    }
                    break;
                }
                Ok(Some(Err(e))) => {
                    relay.fail(&mut out, &format!("the provider's stream broke: {e}"));
                    let _ = tx.send(out.split().freeze()).await;
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let decoded = decoder.push(&data, &mut events);
            for ev in events.drain(..) {
                relay.relay(&ev, &mut out);
            }
            if let Err(e) = decoded {
                relay.fail(&mut out, &format!("the provider's stream broke: {e}"));
                let _ = tx.send(out.split().freeze()).await;
                break;
            }
            if !out.is_empty() && tx.send(out.split().freeze()).await.is_err() {
                // The client left; dropping `upstream` cancels the provider's call.
                break;
            }
            if relay.finished() {
                break;
            }
        }
        // The client's answer is complete: end it now.
        drop(tx);
        let model = if relay.model().is_empty() {
            "-"
        } else {
            relay.model()
        };
        let usage = relay.usage();
        shared.llm_metrics.record(
            &route,
            &provider.name,
            model,
            usage.map(|u| (u.input, u.output, u.cached_input)),
        );
        tracing::debug!(route = %route, provider = %provider.name, ?usage, "stream ended");
        if relay.provider_done() {
            // The terminator of the provider's last chunk comes after its
            // last event; without it the connection (with TLS, a
            // handshake) would be lost for the next call. An answer stopped
            // mid-way (a plugin's verdict, a broken stream) is dropped
            // unread instead, which cancels the provider's call.
            crate::backend::http::finish_reading(upstream, idle.min(Duration::from_secs(5))).await;
        }
    });
    crate::backend::sse::channel_body(rx)
}

/// Why no provider gave an answer.
pub enum SendFailure {
    /// The last attempt failed before an answer.
    Upstream(UpstreamError, String),
    /// The last provider answered with an error status (429/5xx).
    Status(Arc<Provider>, Response<UpstreamBody>),
}

impl SendFailure {
    async fn into_response(self, client: Flavor, trace: &mut LlmTrace) -> Response<Body> {
        match self {
            SendFailure::Upstream(e, name) => {
                trace.upstream = Some(name.clone());
                trace.error = Some(e.to_string());
                let status = e.status();
                api::error_response(
                    client,
                    status,
                    Some("api_error"),
                    &format!("provider {name} is unavailable: {e}"),
                )
            }
            SendFailure::Status(provider, resp) => {
                trace.upstream = Some(provider.name.clone());
                let status = resp.status();
                trace.error = Some(format!("provider {} answered {status}", provider.name));
                let mut headers = http::HeaderMap::new();
                for name in ["retry-after", "retry-after-ms"] {
                    if let Some(v) = resp.headers().get(name) {
                        headers.insert(name, v.clone());
                    }
                }
                let bytes = read_idle(resp.into_body(), 1 << 20, Duration::from_secs(10))
                    .await
                    .unwrap_or_default();
                let body = api::translate_error(provider.flavor, client, status.as_u16(), &bytes);
                let mut resp = with_provider(api::json_response(status, &body), &provider);
                resp.headers_mut().extend(headers);
                resp
            }
        }
    }
}
