//! Chat requests and responses in either wire format, through one neutral
//! view: the WIT contract's `llm-request` / `llm-response`. Plugins see the
//! view; translation is "read one format into the view, write the other".
//!
//! Parsing is passthrough-minded: only fields that need mapping are touched;
//! a same-format request keeps every field the client sent.

use serde_json::{Map, Value, json};

use super::api::Flavor;
use super::reasoning;
use crate::policy::bindings::{
    ChatMessage, ContentPart, LlmRequest, LlmResponse, Role, TokenUsage, ToolCall, ToolDefinition,
};

/// Anthropic requires `max_tokens`; a translated request without one gets this.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

pub(super) fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The text parts of some content.
pub(super) fn texts(content: &[ContentPart]) -> impl Iterator<Item = &str> {
    content.iter().filter_map(|p| match p {
        ContentPart::Text(t) => Some(t.as_str()),
        ContentPart::Other(_) => None,
    })
}

/// The client's output token limit, in `from`'s spelling.
pub(super) fn max_tokens(from: Flavor, body: &Value) -> Option<u64> {
    let max = match from {
        Flavor::OpenAi => body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens")),
        Flavor::Anthropic => body.get("max_tokens"),
    };
    max.and_then(Value::as_u64)
}

/// The client's stop sequences as a list, in `from`'s spelling (OpenAI's
/// may be one string); none when there are none.
pub(super) fn stop_sequences(from: Flavor, body: &Value) -> Option<Value> {
    let stop = match from {
        Flavor::OpenAi => body.get("stop"),
        Flavor::Anthropic => body.get("stop_sequences"),
    };
    match stop {
        Some(Value::String(s)) => Some(json!([s])),
        Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a.clone())),
        _ => None,
    }
}

// ---- requests -----------------------------------------------------------

/// The neutral view of a chat request body.
pub fn request_view(flavor: Flavor, body: &Value, provider: &str) -> LlmRequest {
    let (messages, tools) = match flavor {
        Flavor::OpenAi => (openai_messages(body), openai_tools(body)),
        Flavor::Anthropic => (anthropic_messages(body), anthropic_tools(body)),
    };
    LlmRequest {
        provider: provider.to_string(),
        model: str_field(body, "model").unwrap_or_default(),
        messages,
        tools,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    }
}

fn openai_messages(body: &Value) -> Vec<ChatMessage> {
    let Some(list) = body.get("messages").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|m| {
            let role = match m.get("role").and_then(Value::as_str).unwrap_or("user") {
                "system" => Role::System,
                "developer" => Role::Developer,
                "assistant" => Role::Assistant,
                "tool" | "function" => Role::Tool,
                _ => Role::User,
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => vec![ContentPart::Text(s.clone())],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(
                        |p| match (p.get("type").and_then(Value::as_str), p.get("text")) {
                            (Some("text"), Some(Value::String(t))) => ContentPart::Text(t.clone()),
                            _ => ContentPart::Other(p.to_string()),
                        },
                    )
                    .collect(),
                _ => Vec::new(),
            };
            // Thinking a client kept from an earlier answer goes first, as
            // Anthropic and Converse want it back.
            let thinking = m
                .get("thinking_blocks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| reasoning::is_block(b))
                .map(|b| ContentPart::Other(b.to_string()));
            let content = thinking.chain(content).collect();
            let tool_calls = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| ToolCall {
                            id: str_field(c, "id").unwrap_or_default(),
                            name: c
                                .pointer("/function/name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            arguments: c
                                .pointer("/function/arguments")
                                .and_then(Value::as_str)
                                .unwrap_or("{}")
                                .to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            ChatMessage {
                role,
                content,
                name: str_field(m, "name"),
                tool_call_id: str_field(m, "tool_call_id"),
                tool_calls,
            }
        })
        .collect()
}

/// A function tool's definition: `name`, `description`, and its JSON
/// schema under `schema_key` (`parameters` in OpenAI's APIs, which chat
/// nests under `function`; `input_schema` in Anthropic's).
pub(super) fn tool_definition(f: &Value, schema_key: &str) -> ToolDefinition {
    ToolDefinition {
        name: str_field(f, "name").unwrap_or_default(),
        description: str_field(f, "description"),
        parameters: f
            .get(schema_key)
            .map(Value::to_string)
            .unwrap_or_else(|| r#"{"type":"object","properties":{}}"#.into()),
    }
}

fn openai_tools(body: &Value) -> Vec<ToolDefinition> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("function"))
                .map(|f| tool_definition(f, "parameters"))
                .collect()
        })
        .unwrap_or_default()
}

fn anthropic_messages(body: &Value) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    match body.get("system") {
        Some(Value::String(s)) => {
            out.push(message(Role::System, vec![ContentPart::Text(s.clone())]))
        }
        Some(Value::Array(blocks)) => out.push(message(
            Role::System,
            blocks.iter().map(anthropic_part).collect(),
        )),
        _ => {}
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        let blocks = match m.get("content") {
            Some(Value::String(s)) => {
                out.push(message(role, vec![ContentPart::Text(s.clone())]));
                continue;
            }
            Some(Value::Array(blocks)) => blocks,
            _ => continue,
        };
        // Tool results become `tool` messages; the rest stays with the turn.
        let mut current = message(role, Vec::new());
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => current.tool_calls.push(ToolCall {
                    id: str_field(block, "id").unwrap_or_default(),
                    name: str_field(block, "name").unwrap_or_default(),
                    arguments: block
                        .get("input")
                        .map(Value::to_string)
                        .unwrap_or_else(|| "{}".into()),
                }),
                Some("tool_result") => {
                    let content = match block.get("content") {
                        Some(Value::String(s)) => vec![ContentPart::Text(s.clone())],
                        Some(Value::Array(parts)) => parts.iter().map(anthropic_part).collect(),
                        _ => Vec::new(),
                    };
                    let mut result = message(Role::Tool, content);
                    result.tool_call_id = str_field(block, "tool_use_id");
                    out.push(result);
                }
                _ => current.content.push(anthropic_part(block)),
            }
        }
        if !current.content.is_empty() || !current.tool_calls.is_empty() {
            out.push(current);
        }
    }
    out
}

fn anthropic_part(block: &Value) -> ContentPart {
    match (block.get("type").and_then(Value::as_str), block.get("text")) {
        (Some("text"), Some(Value::String(t))) => ContentPart::Text(t.clone()),
        _ => ContentPart::Other(block.to_string()),
    }
}

fn anthropic_tools(body: &Value) -> Vec<ToolDefinition> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .map(|t| tool_definition(t, "input_schema"))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn message(role: Role, content: Vec<ContentPart>) -> ChatMessage {
    ChatMessage {
        role,
        content,
        name: None,
        tool_call_id: None,
        tool_calls: Vec::new(),
    }
}

/// Write the view's messages back into a body of `flavor` (after a plugin
/// rewrote them, or when translating).
pub fn set_messages(flavor: Flavor, body: &mut Map<String, Value>, messages: &[ChatMessage]) {
    match flavor {
        Flavor::OpenAi => {
            body.insert(
                "messages".into(),
                Value::Array(messages.iter().map(openai_message).collect()),
            );
        }
        Flavor::Anthropic => {
            let (system, turns) = anthropic_turns(messages);
            body.remove("system");
            if let Some(system) = system {
                body.insert("system".into(), system);
            }
            body.insert("messages".into(), Value::Array(turns));
        }
    }
}

fn openai_part(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text(t) => json!({"type": "text", "text": t}),
        ContentPart::Other(raw) => {
            let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
            // An Anthropic image block becomes an image_url part.
            match (v.get("type").and_then(Value::as_str), v.get("source")) {
                (Some("image"), Some(src)) => {
                    let url = match src.get("type").and_then(Value::as_str) {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            src.get("media_type")
                                .and_then(Value::as_str)
                                .unwrap_or("image/png"),
                            src.get("data").and_then(Value::as_str).unwrap_or_default()
                        ),
                        _ => src
                            .get("url")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    };
                    json!({"type": "image_url", "image_url": {"url": url}})
                }
                _ => v,
            }
        }
    }
}

fn openai_message(m: &ChatMessage) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut out = Map::new();
    out.insert("role".into(), role.into());
    // Thinking blocks ride beside the content, where OpenAI-format clients
    // keep them.
    let mut thinking = Vec::new();
    let mut content = Vec::with_capacity(m.content.len());
    for p in &m.content {
        match thinking_block(p) {
            Some(block) => thinking.push(block),
            None => content.push(p),
        }
    }
    if !thinking.is_empty() {
        out.insert("thinking_blocks".into(), Value::Array(thinking));
    }
    let all_text = content.iter().all(|p| matches!(p, ContentPart::Text(_)));
    let content = if content.is_empty() {
        if m.tool_calls.is_empty() {
            Value::String(String::new())
        } else {
            Value::Null
        }
    } else if all_text {
        Value::String(
            content
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => t.as_str(),
                    ContentPart::Other(_) => "",
                })
                .collect(),
        )
    } else {
        Value::Array(content.into_iter().map(openai_part).collect())
    };
    out.insert("content".into(), content);
    if let Some(name) = &m.name {
        out.insert("name".into(), name.clone().into());
    }
    if let Some(id) = &m.tool_call_id {
        out.insert("tool_call_id".into(), id.clone().into());
    }
    if !m.tool_calls.is_empty() {
        out.insert(
            "tool_calls".into(),
            m.tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect(),
        );
    }
    Value::Object(out)
}

/// A part that is a thinking block, as its JSON.
fn thinking_block(part: &ContentPart) -> Option<Value> {
    match part {
        ContentPart::Other(raw) if raw.contains("thinking") => {
            serde_json::from_str(raw).ok().filter(reasoning::is_block)
        }
        _ => None,
    }
}

fn anthropic_part_json(part: &ContentPart) -> Value {
    match part {
        ContentPart::Text(t) => json!({"type": "text", "text": t}),
        ContentPart::Other(raw) => {
            let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
            // An OpenAI image_url part becomes an image block.
            match (
                v.get("type").and_then(Value::as_str),
                v.pointer("/image_url/url"),
            ) {
                (Some("image_url"), Some(Value::String(url))) => {
                    match url
                        .strip_prefix("data:")
                        .and_then(|rest| rest.split_once(";base64,"))
                    {
                        Some((media, data)) => json!({"type": "image", "source":
                            {"type": "base64", "media_type": media, "data": data}}),
                        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
                    }
                }
                _ => v,
            }
        }
    }
}

/// Anthropic wants the system prompt apart and user/assistant turns
/// alternating; tool results ride in user turns.
fn anthropic_turns(messages: &[ChatMessage]) -> (Option<Value>, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.extend(texts(&m.content).map(str::to_string));
                continue;
            }
            Role::Tool => {
                let text: String = texts(&m.content).collect();
                let block = json!({"type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": text});
                ("user", vec![block])
            }
            Role::User => ("user", m.content.iter().map(anthropic_part_json).collect()),
            Role::Assistant => {
                // Claude takes back only thinking it signed.
                let mut blocks: Vec<Value> = m
                    .content
                    .iter()
                    .filter(|p| !matches!(p, ContentPart::Text(t) if t.is_empty()))
                    .map(anthropic_part_json)
                    .filter(|b| !reasoning::is_block(b) || reasoning::is_signed(b))
                    .collect();
                for c in &m.tool_calls {
                    let input: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                ("assistant", blocks)
            }
        };
        turns.push(role, blocks);
    }
    let system = (!system.is_empty()).then(|| Value::String(system.join("\n\n")));
    (system, turns.into_json())
}

/// User and assistant turns that alternate, as Anthropic's API and
/// Bedrock's Converse want them: a message of the last turn's role joins it.
#[derive(Default)]
pub(super) struct Turns(Vec<(&'static str, Vec<Value>)>);

impl Turns {
    pub(super) fn push(&mut self, role: &'static str, blocks: Vec<Value>) {
        match self.0.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => self.0.push((role, blocks)),
        }
    }

    /// `[{role, content: [blocks]}]`.
    pub(super) fn into_json(self) -> Vec<Value> {
        self.0
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect()
    }
}

/// A chat request of `from`'s format rewritten for a provider speaking `to`.
/// `view` holds the (maybe plugin-edited) messages.
pub fn translate_request(from: Flavor, to: Flavor, body: &Value, view: &LlmRequest) -> Value {
    let src = body.as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    out.insert("model".into(), view.model.clone().into());
    set_messages(to, &mut out, &view.messages);
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = src.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    match (from, to) {
        (Flavor::OpenAi, Flavor::Anthropic) => {
            let max = max_tokens(from, body).unwrap_or(DEFAULT_MAX_TOKENS);
            out.insert("max_tokens".into(), max.into());
            if let Some(stop) = stop_sequences(from, body) {
                out.insert("stop_sequences".into(), stop);
            }
            if !view.tools.is_empty() {
                let tools = view
                    .tools
                    .iter()
                    .map(|t| {
                        let mut tool = json!({"name": t.name, "input_schema":
                            serde_json::from_str::<Value>(&t.parameters).unwrap_or(json!({"type": "object"}))});
                        if let Some(d) = &t.description {
                            tool["description"] = d.clone().into();
                        }
                        tool
                    })
                    .collect();
                out.insert("tools".into(), Value::Array(tools));
            }
            let mut choice = match src.get("tool_choice") {
                Some(Value::String(s)) => match s.as_str() {
                    "none" => Some(json!({"type": "none"})),
                    "required" => Some(json!({"type": "any"})),
                    _ => Some(json!({"type": "auto"})),
                },
                Some(Value::Object(o)) => o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .map(|n| json!({"type": "tool", "name": n})),
                _ => None,
            };
            if src.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !view.tools.is_empty()
            {
                let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
                c["disable_parallel_tool_use"] = true.into();
            }
            if let Some(c) = choice {
                out.insert("tool_choice".into(), c);
            }
            if let Some(user) = src.get("user") {
                out.insert("metadata".into(), json!({"user_id": user}));
            }
        }
        (Flavor::Anthropic, Flavor::OpenAi) => {
            // OpenAI's models take no thinking back.
            if let Some(Value::Array(messages)) = out.get_mut("messages") {
                for m in messages.iter_mut().filter_map(Value::as_object_mut) {
                    m.remove("thinking_blocks");
                }
            }
            if let Some(max) = src.get("max_tokens") {
                out.insert("max_tokens".into(), max.clone());
            }
            if let Some(stop) = src.get("stop_sequences") {
                out.insert("stop".into(), stop.clone());
            }
            if !view.tools.is_empty() {
                let tools = view
                    .tools
                    .iter()
                    .map(|t| {
                        let mut f = json!({"name": t.name, "parameters":
                            serde_json::from_str::<Value>(&t.parameters).unwrap_or(json!({"type": "object"}))});
                        if let Some(d) = &t.description {
                            f["description"] = d.clone().into();
                        }
                        json!({"type": "function", "function": f})
                    })
                    .collect();
                out.insert("tools".into(), Value::Array(tools));
            }
            if let Some(choice) = src.get("tool_choice") {
                let mapped = match choice.get("type").and_then(Value::as_str) {
                    Some("any") => json!("required"),
                    Some("none") => json!("none"),
                    Some("tool") => {
                        json!({"type": "function", "function": {"name": choice.get("name")}})
                    }
                    _ => json!("auto"),
                };
                out.insert("tool_choice".into(), mapped);
                if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                    out.insert("parallel_tool_calls".into(), false.into());
                }
            }
            if let Some(user) = src.get("metadata").and_then(|m| m.get("user_id")) {
                out.insert("user".into(), user.clone());
            }
        }
        _ => return body.clone(),
    }
    Value::Object(out)
}

// ---- responses ----------------------------------------------------------

/// Anthropic stop reasons in OpenAI's words (the view uses OpenAI's).
pub fn finish_from_anthropic(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

pub fn stop_from_openai(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Token usage from a response (or stream event) body of either format.
pub fn usage_of(flavor: Flavor, usage: &Value) -> Option<TokenUsage> {
    let n = |k: &str| usage.pointer(k).and_then(Value::as_u64).unwrap_or(0);
    match flavor {
        Flavor::OpenAi if usage.is_object() => Some(TokenUsage {
            input: n("/prompt_tokens"),
            output: n("/completion_tokens"),
            cached_input: n("/prompt_tokens_details/cached_tokens"),
        }),
        // Anthropic's input_tokens excludes cache reads and writes; the
        // neutral count includes them, as OpenAI's prompt_tokens does.
        Flavor::Anthropic if usage.is_object() => Some(TokenUsage {
            input: n("/input_tokens")
                + n("/cache_read_input_tokens")
                + n("/cache_creation_input_tokens"),
            output: n("/output_tokens"),
            cached_input: n("/cache_read_input_tokens"),
        }),
        _ => None,
    }
}

/// An id for a translated response: the provider's, in the client's style.
pub fn id_for(to: Flavor, id: &str) -> String {
    match to {
        Flavor::OpenAi if id.starts_with("chatcmpl") => id.to_string(),
        Flavor::OpenAi => format!("chatcmpl-{}", id.trim_start_matches("msg_")),
        Flavor::Anthropic if id.starts_with("msg_") => id.to_string(),
        Flavor::Anthropic => format!("msg_{}", id.trim_start_matches("chatcmpl-")),
    }
}

/// The neutral view of a (non-streamed) chat response, and the response id.
pub fn response_view(flavor: Flavor, body: &Value, provider: &str) -> (LlmResponse, String) {
    let id = str_field(body, "id").unwrap_or_default();
    let model = str_field(body, "model").unwrap_or_default();
    let view = match flavor {
        Flavor::OpenAi => {
            let choice = body.pointer("/choices/0");
            let msg = choice.and_then(|c| c.get("message"));
            LlmResponse {
                provider: provider.to_string(),
                model,
                text: msg
                    .and_then(|m| m.get("content"))
                    .map(text_of)
                    .unwrap_or_default(),
                tool_calls: msg
                    .map(|m| openai_messages(&json!({"messages": [m]})))
                    .and_then(|mut v| v.pop())
                    .map(|m| m.tool_calls)
                    .unwrap_or_default(),
                usage: body.get("usage").and_then(|u| usage_of(flavor, u)),
                finish_reason: choice.and_then(|c| str_field(c, "finish_reason")),
            }
        }
        Flavor::Anthropic => {
            let blocks = body.get("content").and_then(Value::as_array);
            let text = blocks
                .into_iter()
                .flatten()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("");
            let tool_calls = blocks
                .into_iter()
                .flatten()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .map(|b| ToolCall {
                    id: str_field(b, "id").unwrap_or_default(),
                    name: str_field(b, "name").unwrap_or_default(),
                    arguments: b.get("input").map(Value::to_string).unwrap_or("{}".into()),
                })
                .collect();
            LlmResponse {
                provider: provider.to_string(),
                model,
                text,
                tool_calls,
                usage: body.get("usage").and_then(|u| usage_of(flavor, u)),
                finish_reason: body
                    .get("stop_reason")
                    .and_then(Value::as_str)
                    .map(|s| finish_from_anthropic(s).to_string()),
            }
        }
    };
    (view, id)
}

/// A complete response body in `to`'s format, from the view.
/// `thinking`: the answer's thinking blocks (see [`reasoning`]).
pub fn encode_response(
    to: Flavor,
    view: &LlmResponse,
    id: &str,
    created: u64,
    thinking: &[Value],
) -> Value {
    let usage = view.usage.unwrap_or(TokenUsage {
        input: 0,
        output: 0,
        cached_input: 0,
    });
    let finish = view.finish_reason.as_deref().unwrap_or("stop");
    match to {
        Flavor::OpenAi => {
            let mut message = json!({"role": "assistant",
                "content": if view.text.is_empty() && !view.tool_calls.is_empty() { Value::Null } else { view.text.clone().into() },
                "refusal": null});
            if !view.tool_calls.is_empty() {
                message["tool_calls"] = view
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            reasoning::onto_openai_message(thinking, &mut message);
            json!({
                "id": id_for(to, id),
                "object": "chat.completion",
                "created": created,
                "model": view.model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": usage.input,
                    "completion_tokens": usage.output,
                    "total_tokens": usage.input + usage.output,
                    "prompt_tokens_details": {"cached_tokens": usage.cached_input},
                },
            })
        }
        Flavor::Anthropic => {
            let mut content = thinking.to_vec();
            if !view.text.is_empty() || view.tool_calls.is_empty() {
                content.push(json!({"type": "text", "text": view.text}));
            }
            for c in &view.tool_calls {
                let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                content
                    .push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
            }
            json!({
                "id": id_for(to, id),
                "type": "message",
                "role": "assistant",
                "model": view.model,
                "content": content,
                "stop_reason": stop_from_openai(finish),
                "stop_sequence": null,
                "usage": {
                    "input_tokens": usage.input.saturating_sub(usage.cached_input),
                    "cache_read_input_tokens": usage.cached_input,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": usage.output,
                },
            })
        }
    }
}

/// Put a plugin's edit of the view back into a same-format response body,
/// leaving every other field as the provider sent it.
pub fn apply_response_edit(flavor: Flavor, body: &mut Value, view: &LlmResponse) {
    match flavor {
        Flavor::OpenAi => {
            if let Some(msg) = body.pointer_mut("/choices/0/message") {
                msg["content"] = view.text.clone().into();
                if view.tool_calls.is_empty() {
                    if let Some(o) = msg.as_object_mut() {
                        o.remove("tool_calls");
                    }
                } else {
                    msg["tool_calls"] = view
                        .tool_calls
                        .iter()
                        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                        .collect();
                }
            }
        }
        Flavor::Anthropic => {
            // The thinking stays as it came, ahead of the edited text.
            let mut content: Vec<Value> = body
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| reasoning::is_block(b))
                .cloned()
                .collect();
            content.push(json!({"type": "text", "text": view.text}));
            for c in &view.tool_calls {
                let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                content
                    .push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
            }
            body["content"] = Value::Array(content);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_tool_turns() -> Value {
        json!({
            "model": "gpt-4o",
            "max_completion_tokens": 300,
            "stop": "END",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
        })
    }

    #[test]
    fn openai_request_becomes_anthropic_messages() {
        let body = openai_tool_turns();
        let view = request_view(Flavor::OpenAi, &body, "anthropic");
        let out = translate_request(Flavor::OpenAi, Flavor::Anthropic, &body, &view);
        assert_eq!(out["system"], "Be brief.");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3, "{out:#}");
        assert_eq!(msgs[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        // Both tool results ride in one user turn, so roles alternate.
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][1]["tool_use_id"], "call_2");
        assert_eq!(
            out["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn anthropic_request_becomes_openai_chat() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "2C"}]},
            ],
            "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather"},
        });
        let view = request_view(Flavor::Anthropic, &body, "openai");
        let out = translate_request(Flavor::Anthropic, Flavor::OpenAi, &body, &view);
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            msgs[3],
            json!({"role": "tool", "content": "2C", "tool_call_id": "toolu_1"})
        );
        assert_eq!(out["tools"][0]["function"]["name"], "weather");
        assert_eq!(out["tool_choice"]["function"]["name"], "weather");
        assert_eq!(out["max_tokens"], 100);
    }

    #[test]
    fn responses_translate_both_ways_with_usage_and_stop_reasons() {
        let anthropic = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Rome"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7}});
        let (view, id) = response_view(Flavor::Anthropic, &anthropic, "anthropic");
        let openai = encode_response(Flavor::OpenAi, &view, &id, 1, &[]);
        assert_eq!(openai["id"], "chatcmpl-01");
        assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            openai["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Rome\"}"
        );
        assert_eq!(openai["usage"]["prompt_tokens"], 15);
        assert_eq!(openai["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
        let (back, id) = response_view(Flavor::OpenAi, &openai, "openai");
        let again = encode_response(Flavor::Anthropic, &back, &id, 1, &[]);
        assert_eq!(again["stop_reason"], "tool_use");
        assert_eq!(again["content"][1]["input"]["city"], "Rome");
        assert_eq!(again["usage"]["input_tokens"], 10);
        assert_eq!(again["id"], "msg_01");
    }
}
