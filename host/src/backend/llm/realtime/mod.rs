//! Realtime sessions (OpenAI's `/v1/realtime`): a WebSocket handshake on an
//! LLM route goes to a provider that serves the API, with the gateway's
//! credentials and the route's model aliases; once the provider answers 101
//! the session's events flow through the tunnel ([`crate::backend::upgrade`]),
//! read by the route's LLM hooks when its chain has any ([`guard`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Response, StatusCode};

pub mod guard;

use super::api::{self, Api, Flavor};
use super::provider::Provider;
use super::{LlmBackend, LlmTrace};
use crate::backend::http::{Body, UpstreamBody, UpstreamError, forward_upgrade};
use crate::policy::ChainRun;
use crate::policy::bindings::Hooks;

/// Send the handshake in `parts` to the first provider that serves Realtime
/// and can be reached (one that cannot be connected to is passed over:
/// nothing was sent to it). The answer comes back with its provider and the
/// model asked of it; a failure as the error answer in OpenAI's shape.
pub async fn handshake(
    llm: &LlmBackend,
    parts: http::request::Parts,
    protocol: HeaderValue,
    timeout: Option<Duration>,
    trace: &mut LlmTrace,
) -> Result<(Response<UpstreamBody>, Arc<Provider>, String), Response<Body>> {
    let refuse = |trace: &mut LlmTrace, status, message: String| {
        trace.error = Some(message.clone());
        Err(api::error_response(Flavor::OpenAi, status, None, &message))
    };
    let api = llm.ai.classify(parts.uri.path());
    if api != Api::REALTIME {
        let message = format!(
            "{} cannot be upgraded: on an LLM route only Realtime sessions (…/realtime) are WebSockets",
            parts.uri.path()
        );
        return refuse(trace, StatusCode::BAD_REQUEST, message);
    }
    let candidates = llm.failover.candidates(api);
    if candidates.is_empty() {
        let message = "no provider of this route serves the Realtime API".to_string();
        return refuse(trace, StatusCode::NOT_FOUND, message);
    }
    let mut unreachable = Vec::new();
    for (_, provider) in candidates {
        let aliases = &llm.ai.aliases;
        let (query, model) = query_for(parts.uri.query(), aliases, provider.model.as_deref());
        let target = provider.uri_for(api, parts.uri.path(), query.as_deref());
        let passthrough = llm.passthrough_auth;
        let req = super::provider_request(&parts, &provider, &target, Bytes::new(), passthrough);
        match forward_upgrade(&provider.upstream, req, protocol.clone(), timeout).await {
            Ok(resp) => {
                trace.upstream = Some(provider.name.clone());
                return Ok((resp, provider, model));
            }
            Err(e @ (UpstreamError::Connect(..) | UpstreamError::ConnectTimeout(_))) => {
                unreachable.push(format!("{}: {e}", provider.name));
            }
            Err(e) => {
                trace.upstream = Some(provider.name.clone());
                let message = format!("provider {}: {e}", provider.name);
                return refuse(trace, e.status(), message);
            }
        }
    }
    let message = format!("no provider could be reached: {}", unreachable.join("; "));
    refuse(trace, StatusCode::BAD_GATEWAY, message)
}

/// The query sent upstream, and the model in it: the client's query with
/// its `model` resolved through the route's aliases, or replaced by the
/// provider's own model.
fn query_for(
    query: Option<&str>,
    aliases: &BTreeMap<String, String>,
    provider_model: Option<&str>,
) -> (Option<String>, String) {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let resolve = |asked: &str| match provider_model {
        Some(m) => m.to_string(),
        None => aliases
            .get(asked)
            .cloned()
            .unwrap_or_else(|| asked.to_string()),
    };
    let mut model = None;
    for (_, v) in pairs.iter_mut().filter(|(k, _)| k == "model") {
        *v = resolve(v);
        model.get_or_insert_with(|| v.clone());
    }
    if model.is_none()
        && let Some(m) = provider_model
    {
        pairs.push(("model".into(), m.to_string()));
        model = Some(m.to_string());
    }
    if pairs.is_empty() {
        return (None, String::new());
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    (Some(query), model.unwrap_or_default())
}

/// The guard of a session through `provider` for `model`: the route's
/// chain (`run`), when [`guarded`] says it has hooks for the session.
pub fn session_guard(run: ChainRun, provider: &Provider, model: &str) -> guard::SessionGuard {
    guard::SessionGuard::new(
        super::StreamGuard::new(run, provider, model),
        &provider.name,
        model,
    )
}

/// Whether a session on a route with this chain is read by its hooks
/// (otherwise it is copied unread): then the handshake offers no extension
/// (compressed frames could not be read).
pub fn guarded(run: &ChainRun) -> bool {
    run.wants(Hooks::LLM_REQUEST) || run.wants(Hooks::LLM_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_goes_through_the_aliases_unless_the_provider_fixes_one() {
        let aliases = BTreeMap::from([("voice".to_string(), "gpt-realtime".to_string())]);
        let (query, model) = query_for(Some("model=voice&x=a%20b"), &aliases, None);
        assert_eq!(query.as_deref(), Some("model=gpt-realtime&x=a+b"));
        assert_eq!(model, "gpt-realtime");
        // Not an alias: as the client asked.
        let (query, _) = query_for(Some("model=other"), &aliases, None);
        assert_eq!(query.as_deref(), Some("model=other"));
        // The provider's own model wins, and is added when the client named none.
        let fixed = Some("gpt-realtime-mini");
        let (query, model) = query_for(Some("model=voice"), &aliases, fixed);
        assert_eq!(query.as_deref(), Some("model=gpt-realtime-mini"));
        assert_eq!(model, "gpt-realtime-mini");
        let (query, _) = query_for(None, &aliases, fixed);
        assert_eq!(query.as_deref(), Some("model=gpt-realtime-mini"));
        assert_eq!(query_for(None, &aliases, None), (None, String::new()));
    }
}
