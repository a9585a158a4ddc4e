//! Anthropic's token count (`POST …/messages/count_tokens`) on Amazon
//! Bedrock, whose CountTokens API (`POST /model/{model}/count-tokens`)
//! counts a Converse request: the client's messages, system prompt and
//! tools are written as the chat call would write them (tool-name stand-ins
//! included), so the count is the one the call will cost, and Bedrock's
//! `{"inputTokens": n}` comes back as Anthropic's `{"input_tokens": n}`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::api::{self, Flavor};
use super::provider::Provider;
use super::{Exchange, LlmBackend, LlmRequestIn, LlmTrace, chat, converse};
use crate::backend::http::Body;
use crate::proxy::Shared;

/// What CountTokens takes of a Converse request.
const COUNTED: [&str; 4] = [
    "messages",
    "system",
    "toolConfig",
    "additionalModelRequestFields",
];

/// The CountTokens body for an Anthropic count request.
fn count_body(body: &Value, family: &str) -> Value {
    let view = chat::request_view(Flavor::Anthropic, body, family);
    let converse = converse::request(Flavor::Anthropic, body, &view, None);
    let counted: Map<String, Value> = converse
        .into_iter()
        .filter(|(k, _)| COUNTED.contains(&k.as_str()))
        .collect();
    json!({"input": {"converse": counted}})
}

/// Serve `POST …/messages/count_tokens` with the route's Bedrock providers.
pub async fn serve(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    candidates: Vec<(usize, Arc<Provider>)>,
    trace: &mut LlmTrace,
) -> Response<Body> {
    const CLIENT: Flavor = Flavor::Anthropic;
    let body = match super::json_object(&input.body, CLIENT, trace) {
        Ok(body) => Value::Object(body),
        Err(refusal) => return refusal,
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let bytes = Bytes::from(count_body(&body, candidates[0].1.family).to_string());
    let exchange = Exchange {
        shared: &shared,
        llm: &llm,
        candidates: &candidates,
        head_timeout: input.head_timeout,
        max_body: input.max_body,
        client: CLIENT,
    };
    let attempt =
        |p: &Provider| super::bedrock_call(&input.parts, p, (&model, "count-tokens"), &bytes, &llm);
    let (provider, resp) = match exchange.send(attempt, trace).await {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    let counted = super::read_idle(resp.into_body(), input.max_body, llm.idle_timeout)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("inputTokens").and_then(Value::as_u64));
    let Some(tokens) = counted else {
        let message = format!(
            "provider {} answered CountTokens without inputTokens",
            provider.name
        );
        trace.error = Some(message.clone());
        return api::error_response(CLIENT, StatusCode::BAD_GATEWAY, Some("api_error"), &message);
    };
    let out = json!({"input_tokens": tokens});
    super::with_provider(api::json_response(StatusCode::OK, &out), &provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_covers_what_the_call_would_send_and_nothing_else() {
        let body = json!({"model": "anthropic.claude-sonnet-4", "system": "Be brief.",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}]});
        let out = count_body(&body, "bedrock");
        let converse = &out["input"]["converse"];
        assert_eq!(converse["system"][0]["text"], "Be brief.");
        assert_eq!(
            converse["messages"][0]["content"][0]["text"],
            "Weather in Paris?"
        );
        assert_eq!(
            converse["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "weather"
        );
        // Converse's inference settings are no part of a count.
        let keys: Vec<&String> = converse.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| COUNTED.contains(&k.as_str())),
            "{keys:?}"
        );
    }
}
