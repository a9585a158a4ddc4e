//! Amazon Bedrock's Converse API: chat requests of either client format
//! written as Converse requests, and Converse answers (whole, or streamed
//! as AWS event-stream messages) read into the neutral view.
//!
//! Converse takes the model in the path, the system prompt apart, and
//! user and assistant turns alternating, with tool results in user turns;
//! it rejects fields it does not know, so only mapped fields are sent.

use serde_json::{Map, Value, json};

use super::api::Flavor;
use super::chat::{Turns, max_tokens, stop_sequences, str_field, texts};
use super::stream::Piece;
use crate::policy::bindings::{
    ChatMessage, ContentPart, LlmRequest, LlmResponse, Role, TokenUsage,
};

/// Converse requires a token limit only for some models; a translated
/// request without one gets what Anthropic's API would need.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A Bedrock guardrail every call of a provider is checked by.
#[derive(Debug, Clone)]
pub struct Guardrail {
    pub identifier: String,
    pub version: String,
}

/// Converse takes tool names of `[a-zA-Z0-9_-]{1,64}`; Anthropic's API
/// takes up to 128 characters, and clients send other characters too.
const MAX_TOOL_NAME: usize = 64;

/// The name Bedrock is given for a tool the client calls `name`: the same
/// when Converse takes it, else a deterministic stand-in (its characters
/// made safe, cut short, and a hash of the whole name to keep it apart
/// from others), so history and tool choice name what the tools name.
fn sent_tool_name(name: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !name.is_empty() && name.len() <= MAX_TOOL_NAME && name.chars().all(allowed) {
        return name.into();
    }
    let digest = crate::distribution::store::sha256_digest(name.as_bytes());
    let safe: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_TOOL_NAME - 9)
        .collect();
    format!("{safe}_{}", &digest[7..15]).into()
}

/// The client's names of the request's tools that Bedrock knows by
/// another, for the answer's tool calls; empty (no allocation) when every
/// name goes as it is.
#[derive(Debug, Default, Clone)]
pub struct ToolNames(Vec<(String, String)>);

impl ToolNames {
    pub fn of(view: &LlmRequest) -> ToolNames {
        ToolNames(
            view.tools
                .iter()
                .filter_map(|t| match sent_tool_name(&t.name) {
                    std::borrow::Cow::Owned(sent) => Some((sent, t.name.clone())),
                    std::borrow::Cow::Borrowed(_) => None,
                })
                .collect(),
        )
    }

    /// The client's name for a tool Bedrock called `sent`.
    fn client(&self, sent: String) -> String {
        match self.0.iter().find(|(s, _)| *s == sent) {
            Some((_, client)) => client.clone(),
            None => sent,
        }
    }
}

/// The Converse request for a chat request of `from`'s format: the view's
/// (maybe plugin-edited) messages and tools, and the client's settings.
pub fn request(
    from: Flavor,
    body: &Value,
    view: &LlmRequest,
    guardrail: Option<&Guardrail>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let (system, turns) = turns(&view.messages);
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));

    let mut inference = Map::new();
    inference.insert(
        "maxTokens".into(),
        max_tokens(from, body).unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    for (from_key, to_key) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = body.get(from_key).filter(|v| v.is_number()) {
            inference.insert(to_key.into(), v.clone());
        }
    }
    if let Some(stop) = stop_sequences(from, body) {
        inference.insert("stopSequences".into(), stop);
    }
    out.insert("inferenceConfig".into(), Value::Object(inference));

    if let Some(config) = tool_config(from, body, view) {
        out.insert("toolConfig".into(), config);
    }
    if let Some(top_k) = body.get("top_k").filter(|v| v.is_u64()) {
        // Claude's and others' own field; Converse passes it through.
        out.insert(
            "additionalModelRequestFields".into(),
            json!({"top_k": top_k}),
        );
    }
    if let Some(g) = guardrail {
        out.insert(
            "guardrailConfig".into(),
            json!({"guardrailIdentifier": g.identifier, "guardrailVersion": g.version}),
        );
    }
    out
}

/// Tools and the client's choice among them; none when the client said
/// `none` (Converse has no such choice: the tools are left out).
fn tool_config(from: Flavor, body: &Value, view: &LlmRequest) -> Option<Value> {
    if view.tools.is_empty() {
        return None;
    }
    let choice = body.get("tool_choice");
    let choice = match (from, choice) {
        (_, None) => None,
        (Flavor::OpenAi, Some(Value::String(s))) => match s.as_str() {
            "none" => return None,
            "required" => Some(json!({"any": {}})),
            _ => Some(json!({"auto": {}})),
        },
        (Flavor::OpenAi, Some(c)) => c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| json!({"tool": {"name": sent_tool_name(name)}})),
        (Flavor::Anthropic, Some(c)) => match c.get("type").and_then(Value::as_str) {
            Some("none") => return None,
            Some("any") => Some(json!({"any": {}})),
            Some("tool") => c
                .get("name")
                .and_then(Value::as_str)
                .map(|name| json!({"tool": {"name": sent_tool_name(name)}})),
            _ => Some(json!({"auto": {}})),
        },
    };
    let tools: Vec<Value> = view
        .tools
        .iter()
        .map(|t| {
            let schema = serde_json::from_str::<Value>(&t.parameters)
                .unwrap_or_else(|_| json!({"type": "object"}));
            let mut spec =
                json!({"name": sent_tool_name(&t.name), "inputSchema": {"json": schema}});
            if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
                spec["description"] = d.into();
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let mut config = json!({"tools": tools});
    if let Some(c) = choice {
        config["toolChoice"] = c;
    }
    Some(config)
}

/// The system blocks, and the turns: roles alternating, tool results in
/// user turns, no empty text (Converse refuses blank text blocks).
fn turns(messages: &[ChatMessage]) -> (Vec<Value>, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.extend(texts(&m.content).map(|t| json!({"text": t})));
                continue;
            }
            Role::Tool => {
                let text: String = texts(&m.content).collect();
                let block = json!({"toolResult": {
                    "toolUseId": m.tool_call_id.clone().unwrap_or_default(),
                    "content": [{"text": text}],
                }});
                ("user", vec![block])
            }
            Role::User => ("user", m.content.iter().filter_map(part).collect()),
            Role::Assistant => {
                let mut blocks: Vec<Value> = m.content.iter().filter_map(part).collect();
                for c in &m.tool_calls {
                    let input: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({"toolUse": {"toolUseId": c.id, "name": sent_tool_name(&c.name), "input": input}}),
                    );
                }
                ("assistant", blocks)
            }
        };
        if !blocks.is_empty() {
            turns.push(role, blocks);
        }
    }
    (system, turns.into_json())
}

/// A content part as a Converse block: text, an inline image (an OpenAI
/// `data:` URL or an Anthropic base64 source), or signed thinking sent
/// back. Converse takes no image URLs; such parts, and parts of other
/// kinds, are left out.
fn part(p: &ContentPart) -> Option<Value> {
    let raw = match p {
        ContentPart::Text(t) if t.trim().is_empty() => return None,
        ContentPart::Text(t) => return Some(json!({"text": t})),
        ContentPart::Other(raw) => raw,
    };
    let v: Value = serde_json::from_str(raw).ok()?;
    if super::reasoning::is_block(&v) {
        return super::reasoning::to_converse(&v);
    }
    let (media, data) = match v.get("type").and_then(Value::as_str)? {
        "image_url" => {
            let url = v.pointer("/image_url/url")?.as_str()?;
            let (media, data) = url.strip_prefix("data:")?.split_once(";base64,")?;
            (media.to_string(), data.to_string())
        }
        "image" if v.pointer("/source/type")? == "base64" => (
            v.pointer("/source/media_type")?.as_str()?.to_string(),
            v.pointer("/source/data")?.as_str()?.to_string(),
        ),
        _ => return None,
    };
    let format = media.strip_prefix("image/")?;
    Some(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

// ---- answers --------------------------------------------------------------

/// Converse stop reasons in OpenAI's words (the view uses OpenAI's).
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Token usage; the neutral input count includes cache reads and writes.
pub fn usage(u: &Value) -> Option<TokenUsage> {
    if !u.is_object() {
        return None;
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(TokenUsage {
        input: n("inputTokens") + n("cacheReadInputTokens") + n("cacheWriteInputTokens"),
        output: n("outputTokens"),
        cached_input: n("cacheReadInputTokens"),
    })
}

/// The neutral view of a Converse answer, with the client's tool names.
/// Converse names neither the answer nor the model: `model` is the one
/// asked for.
pub fn response_view(body: &Value, provider: &str, model: &str, names: &ToolNames) -> LlmResponse {
    let blocks = body
        .pointer("/output/message/content")
        .and_then(Value::as_array);
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks.into_iter().flatten() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(call) = block.get("toolUse") {
            tool_calls.push(crate::policy::bindings::ToolCall {
                id: str_field(call, "toolUseId").unwrap_or_default(),
                name: names.client(str_field(call, "name").unwrap_or_default()),
                arguments: call
                    .get("input")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        }
    }
    LlmResponse {
        provider: provider.to_string(),
        model: model.to_string(),
        text,
        tool_calls,
        usage: body.get("usage").and_then(usage),
        finish_reason: body
            .get("stopReason")
            .and_then(Value::as_str)
            .map(|s| finish_reason(s).to_string()),
    }
}

/// The pieces of one streamed event (`event` is the message's
/// `:event-type`, or `exception`); the usage it reports goes to `usage`.
pub fn read_event(
    event: &str,
    v: &Value,
    (id, model): (&str, &str),
    names: &ToolNames,
    usage_out: &mut Option<TokenUsage>,
) -> Vec<Piece> {
    let index = v
        .get("contentBlockIndex")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match event {
        "messageStart" => vec![Piece::Start {
            id: id.to_string(),
            model: model.to_string(),
        }],
        "contentBlockStart" => match v.pointer("/start/toolUse") {
            Some(call) => vec![Piece::ToolStart {
                index,
                id: str_field(call, "toolUseId").unwrap_or_default(),
                name: names.client(str_field(call, "name").unwrap_or_default()),
            }],
            None => Vec::new(),
        },
        "contentBlockDelta" => {
            let delta = v.get("delta");
            if let Some(t) = delta.and_then(|d| d.get("text")).and_then(Value::as_str) {
                vec![Piece::Text(t.to_string())]
            } else if let Some(input) = delta
                .and_then(|d| d.pointer("/toolUse/input"))
                .and_then(Value::as_str)
            {
                vec![Piece::ToolArgs {
                    index,
                    json: input.to_string(),
                }]
            } else if let Some(r) = delta.and_then(|d| d.get("reasoningContent")) {
                let field = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
                if let Some(t) = field("text") {
                    vec![Piece::Thinking(t)]
                } else if let Some(s) = field("signature") {
                    vec![Piece::ThinkingSignature(s)]
                } else if let Some(d) = field("redactedContent") {
                    vec![Piece::RedactedThinking(d)]
                } else {
                    Vec::new()
                }
            } else {
                Vec::new()
            }
        }
        "contentBlockStop" => vec![Piece::BlockEnd { index }],
        "messageStop" => vec![Piece::Finish(
            finish_reason(v.get("stopReason").and_then(Value::as_str).unwrap_or("")).to_string(),
        )],
        // The last event: usage after the stop.
        "metadata" => {
            if let Some(u) = v.get("usage").and_then(usage) {
                *usage_out = Some(u);
            }
            vec![Piece::Done]
        }
        "exception" => vec![Piece::Error {
            kind: None,
            message: format!(
                "{}: {}",
                v.get("type").and_then(Value::as_str).unwrap_or("exception"),
                v.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider broke off")
            ),
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::llm::chat::request_view;

    #[test]
    fn openai_requests_become_converse_requests() {
        let body = json!({
            "model": "anthropic.claude-3-5-haiku-20241022-v1:0",
            "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required"
        });
        let view = request_view(Flavor::OpenAi, &body, "bedrock");
        let guardrail = Guardrail {
            identifier: "gr-1".into(),
            version: "2".into(),
        };
        let out = Value::Object(request(Flavor::OpenAi, &body, &view, Some(&guardrail)));
        assert_eq!(
            out,
            json!({
                "system": [{"text": "Be brief."}],
                "messages": [
                    {"role": "user", "content": [
                        {"text": "What is in this picture, and the weather?"},
                        {"image": {"format": "png", "source": {"bytes": "iVBOR"}}}]},
                    {"role": "assistant", "content": [{"toolUse":
                        {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}}]},
                    // The tool result and the next user message share a turn.
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}},
                        {"text": "Thanks"}]}
                ],
                "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9,
                    "stopSequences": ["END"]},
                "toolConfig": {"tools": [{"toolSpec": {"name": "weather",
                    "description": "Weather by city",
                    "inputSchema": {"json": {"type": "object",
                        "properties": {"city": {"type": "string"}}}}}}],
                    "toolChoice": {"any": {}}},
                "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "2"}
            })
        );
    }

    #[test]
    fn anthropic_requests_become_converse_requests() {
        let body = json!({
            "model": "claude", "max_tokens": 50, "top_k": 5, "stop_sequences": ["x"],
            "system": [{"type": "text", "text": "S"}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": ""},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "ok"}]}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "none"}
        });
        let view = request_view(Flavor::Anthropic, &body, "bedrock");
        let out = Value::Object(request(Flavor::Anthropic, &body, &view, None));
        assert_eq!(out["system"], json!([{"text": "S"}]));
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [{"toolUse":
                {"toolUseId": "t1", "name": "f", "input": {}}}]})
        );
        assert_eq!(
            out["messages"][2]["content"][0]["toolResult"]["content"],
            json!([{"text": "ok"}])
        );
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 50, "stopSequences": ["x"]})
        );
        assert_eq!(out["additionalModelRequestFields"], json!({"top_k": 5}));
        // tool_choice none: Converse gets no tools at all.
        assert!(out.get("toolConfig").is_none());
        assert!(out.get("model").is_none());
    }

    #[test]
    fn converse_answers_read_into_the_view() {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Oslo"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15,
                "cacheReadInputTokens": 4},
            "metrics": {"latencyMs": 120}
        });
        let view = response_view(&answer, "bedrock", "m", &ToolNames::default());
        assert_eq!(view.text, "Let me check.");
        assert_eq!(view.tool_calls[0].id, "tooluse_1");
        assert_eq!(view.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(view.finish_reason.as_deref(), Some("tool_calls"));
        let u = view.usage.unwrap();
        assert_eq!((u.input, u.output, u.cached_input), (14, 5, 4));
        assert_eq!(finish_reason("guardrail_intervened"), "content_filter");
        assert_eq!(finish_reason("max_tokens"), "length");
    }

    /// Names Converse refuses (longer than 64, or with other characters)
    /// go as stand-ins everywhere the request names them, and the answer's
    /// calls, whole or streamed, come back under the client's names.
    #[test]
    fn tool_names_bedrock_refuses_are_stood_in_for_and_restored() {
        let long = format!("mcp_server_{}", "very_long_tool_name_".repeat(5));
        let dotted = "files.read";
        let body = json!({
            "model": "claude", "max_tokens": 50,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": long, "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                    "content": "ok"}]}
            ],
            "tools": [{"name": long, "input_schema": {"type": "object"}},
                {"name": dotted, "input_schema": {"type": "object"}},
                {"name": "plain", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": long}
        });
        let view = request_view(Flavor::Anthropic, &body, "bedrock");
        let out = Value::Object(request(Flavor::Anthropic, &body, &view, None));
        let specs: Vec<&str> = out["toolConfig"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["toolSpec"]["name"].as_str().unwrap())
            .collect();
        let stand_in = specs[0];
        assert!(stand_in.len() <= 64 && stand_in.starts_with("mcp_server_very_long"));
        assert!(specs[1].starts_with("files_read_") && specs[1].len() == 19);
        assert_eq!(specs[2], "plain");
        assert_eq!(
            out["toolConfig"]["toolChoice"],
            json!({"tool": {"name": stand_in}})
        );
        assert_eq!(
            out["messages"][1]["content"][0]["toolUse"]["name"],
            stand_in
        );
        // Deterministic: the same name gets the same stand-in each request.
        assert_eq!(sent_tool_name(&long), stand_in);

        let names = ToolNames::of(&view);
        let answer = json!({"output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "a", "name": stand_in, "input": {}}},
            {"toolUse": {"toolUseId": "b", "name": specs[1], "input": {}}},
            {"toolUse": {"toolUseId": "c", "name": "plain", "input": {}}}]}},
            "stopReason": "tool_use"});
        let calls = response_view(&answer, "bedrock", "m", &names).tool_calls;
        let called: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(called, [long.as_str(), dotted, "plain"]);
        let pieces = read_event(
            "contentBlockStart",
            &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "a", "name": stand_in}}}),
            ("id", "m"),
            &names,
            &mut None,
        );
        assert!(
            matches!(&pieces[..], [Piece::ToolStart { name, .. }] if *name == long),
            "{pieces:?}"
        );
    }
}
