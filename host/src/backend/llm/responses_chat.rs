//! OpenAI's Responses API for providers that do not serve it (Anthropic,
//! Bedrock, Gemini, Vertex): the request is rewritten as an OpenAI chat
//! request, which goes on as any chat request does (to the provider's
//! format, with its credentials), and the answer comes back in the
//! Responses API's shape: whole ([`Echo::answer`]) or as its streamed events
//! ([`ResponsesEvents`], fed the neutral pieces of [`super::stream`]).
//!
//! What only OpenAI keeps or runs cannot be translated and is refused with
//! the field named: a stored conversation (`previous_response_id`,
//! `conversation`), item references, OpenAI's own tools (web search, file
//! search, ...), background runs. Reasoning items are left out: their
//! content is OpenAI's to read.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::stream::{Piece, event_frame};
use crate::policy::bindings::{LlmResponse, TokenUsage};

/// Why a Responses request cannot be put as a chat request: the field,
/// and what is wrong with it.
pub type Untranslatable = (String, String);

// ---- the request ------------------------------------------------------------

/// The Responses request `body` as an OpenAI chat request.
pub fn to_chat(body: &Map<String, Value>) -> Result<Value, Untranslatable> {
    for (field, why) in [
        (
            "previous_response_id",
            "a stored response is only OpenAI's to continue; send the whole conversation as `input`",
        ),
        (
            "conversation",
            "a stored conversation is only OpenAI's to continue; send it as `input`",
        ),
    ] {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err((field.into(), why.into()));
        }
    }
    if body.get("background") == Some(&Value::Bool(true)) {
        return Err((
            "background".into(),
            "background responses are run and kept by OpenAI only".into(),
        ));
    }
    let mut messages = Vec::new();
    match body.get("instructions") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        _ => {}
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, &mut messages).map_err(|why| (format!("input[{i}]"), why))?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(("input".into(), "must be a string or a list of items".into())),
    }
    if messages.is_empty() {
        return Err(("input".into(), "there is nothing to answer".into()));
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    out.insert("messages".into(), Value::Array(messages));
    for key in [
        "temperature",
        "top_p",
        "stream",
        "parallel_tool_calls",
        "user",
        "top_logprobs",
    ] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(max) = body.get("max_output_tokens").filter(|v| !v.is_null()) {
        out.insert("max_completion_tokens".into(), max.clone());
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut schema = format.clone();
                if let Some(o) = schema.as_object_mut() {
                    o.remove("type");
                }
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            _ => {}
        }
    }
    let mut tools = Vec::new();
    for (i, tool) in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = Map::new();
                for key in ["name", "description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function.insert(key.into(), v.clone());
                    }
                }
                tools.push(json!({"type": "function", "function": function}));
            }
            other => {
                return Err((
                    format!("tools[{i}]"),
                    format!(
                        "'{}' is a tool OpenAI runs itself; only function tools are translated",
                        other.unwrap_or("(no type)")
                    ),
                ));
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    match body.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(v @ Value::String(_)) => {
            out.insert("tool_choice".into(), v.clone());
        }
        Some(choice) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": choice.get("name")}}),
            );
        }
        Some(_) => {
            return Err((
                "tool_choice".into(),
                "only \"auto\", \"none\", \"required\" or a function is translated".into(),
            ));
        }
    }
    Ok(Value::Object(out))
}

/// One `input` item as chat messages, appended to `messages`.
fn input_item(item: &Value, messages: &mut Vec<Value>) -> Result<(), String> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        Some("message") | None if item.get("role").is_some() => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(r @ ("system" | "developer" | "user" | "assistant")) => r,
                other => return Err(format!("unknown role {other:?}")),
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) if role == "assistant" => {
                    // An earlier answer: its text (a refusal counts as text).
                    let text: String = parts
                        .iter()
                        .filter_map(|p| p.get("text").or(p.get("refusal")))
                        .filter_map(Value::as_str)
                        .collect();
                    Value::String(text)
                }
                Some(Value::Array(parts)) => {
                    let mut out = Vec::new();
                    for (n, part) in parts.iter().enumerate() {
                        out.push(content_part(part).map_err(|why| format!("content[{n}]: {why}"))?);
                    }
                    Value::Array(out)
                }
                _ => return Err("a message needs `content`".into()),
            };
            match messages.last_mut() {
                // The answer's text joins the thinking before it.
                Some(last) if role == "assistant" && is_thinking_only(last) => {
                    last["content"] = content;
                }
                _ => messages.push(json!({"role": role, "content": content})),
            }
        }
        Some("function_call") => {
            let call = json!({
                "id": item.get("call_id").and_then(Value::as_str).unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": item.get("name").and_then(Value::as_str).unwrap_or_default(),
                    "arguments": item.get("arguments").and_then(Value::as_str).unwrap_or("{}"),
                },
            });
            // Calls of one answer belong to one assistant turn, with its text.
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    if let Some(calls) = last
                        .as_object_mut()
                        .map(|m| m.entry("tool_calls").or_insert_with(|| json!([])))
                        .and_then(Value::as_array_mut)
                    {
                        calls.push(call);
                    }
                }
                _ => messages.push(json!({"role": "assistant", "content": null,
                    "tool_calls": [call]})),
            }
        }
        Some("function_call_output") => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect(),
                _ => String::new(),
            };
            messages.push(json!({"role": "tool",
                "tool_call_id": item.get("call_id").and_then(Value::as_str).unwrap_or_default(),
                "content": output}));
        }
        // Thinking a translated answer gave (see `reasoning_item`) goes
        // back with its turn; OpenAI's own record is nothing another
        // model reads.
        Some("reasoning") => {
            let Some(block) = thinking_of_item(item) else {
                return Ok(());
            };
            match messages.last_mut() {
                Some(last) if is_thinking_only(last) => {
                    if let Some(blocks) = last["thinking_blocks"].as_array_mut() {
                        blocks.push(block);
                    }
                }
                _ => messages.push(json!({"role": "assistant", "content": null,
                    "thinking_blocks": [block]})),
            }
        }
        Some("item_reference") => {
            return Err("an item reference names an item only OpenAI keeps".into());
        }
        Some(other) => {
            return Err(format!(
                "'{other}' items are OpenAI's own; only messages, function calls and their outputs are translated"
            ));
        }
        None => return Err("an item needs `type` or `role`".into()),
    }
    Ok(())
}

/// Marks a redacted thinking block's data in a reasoning item's
/// `encrypted_content`.
const REDACTED: &str = "redacted_thinking:";

/// The reasoning item of a translated answer's thinking block: its text as
/// `reasoning_text` and its signature as `encrypted_content`, which is
/// what the client sends back (a redacted block: its data, marked).
fn reasoning_item(id: &str, status: &str, block: &Value) -> Value {
    let field = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or_default();
    let (content, encrypted) = match field("type") {
        "redacted_thinking" => (json!([]), format!("{REDACTED}{}", field("data"))),
        _ => (
            json!([{"type": "reasoning_text", "text": field("thinking")}]),
            field("signature").to_string(),
        ),
    };
    let encrypted = if encrypted.is_empty() {
        Value::Null
    } else {
        encrypted.into()
    };
    json!({"id": id, "type": "reasoning", "status": status, "summary": [],
        "content": content, "encrypted_content": encrypted})
}

/// The thinking block a reasoning item of ours carries back; none for
/// OpenAI's own items or unsigned thinking.
fn thinking_of_item(item: &Value) -> Option<Value> {
    let encrypted = item.get("encrypted_content").and_then(Value::as_str)?;
    if let Some(data) = encrypted.strip_prefix(REDACTED) {
        return Some(json!({"type": "redacted_thinking", "data": data}));
    }
    let text: String = item
        .get("content")?
        .as_array()?
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("reasoning_text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    (!encrypted.is_empty())
        .then(|| json!({"type": "thinking", "thinking": text, "signature": encrypted}))
}

/// An assistant message that so far holds only thinking.
fn is_thinking_only(m: &Value) -> bool {
    m["role"] == "assistant"
        && m["content"].is_null()
        && m.get("tool_calls").is_none()
        && m.get("thinking_blocks").is_some()
}

/// A message's content part as a chat content part.
fn content_part(part: &Value) -> Result<Value, String> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()}))
        }
        Some("input_image") => {
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(
                    "an image by `file_id` is a file only OpenAI keeps; send its `image_url`"
                        .into(),
                );
            };
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        other => Err(format!(
            "'{}' parts are not translated (text and images are)",
            other.unwrap_or("(no type)")
        )),
    }
}

// ---- the answer ---------------------------------------------------------------

/// The Responses answer's fields that repeat the request (its instructions,
/// tools, settings), shared by the whole answer and the streamed events.
pub struct Echo {
    base: Map<String, Value>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// An id of the client's API from the provider's answer id (or, where the
/// provider gave none, one of the gateway's).
fn id_with(prefix: &str, provider_id: &str) -> String {
    let bare = ["msg_", "chatcmpl-", "resp_", "toolu_", "tooluse_", "call_"]
        .iter()
        .find_map(|p| provider_id.strip_prefix(p))
        .unwrap_or(provider_id);
    let bare: String = bare.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if bare.is_empty() {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        return format!("{prefix}wardgate{:x}{n:x}", super::now_secs());
    }
    format!("{prefix}{bare}")
}

/// The Responses `usage` object.
fn usage_json(usage: Option<TokenUsage>) -> Value {
    let u = usage.unwrap_or(TokenUsage {
        input: 0,
        output: 0,
        cached_input: 0,
    });
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached_input},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input + u.output,
    })
}

/// The status and incomplete details for a chat finish reason.
fn outcome(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(text) => {
            json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
        }
        None => json!([]),
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

impl Echo {
    /// What the answer repeats of the Responses request `body`.
    pub fn of(body: &Map<String, Value>) -> Echo {
        let field = |k: &str, default: Value| body.get(k).cloned().unwrap_or(default);
        let mut base = Map::new();
        for (k, v) in [
            ("object", json!("response")),
            ("background", json!(false)),
            ("error", Value::Null),
            ("incomplete_details", Value::Null),
            ("instructions", field("instructions", Value::Null)),
            ("max_output_tokens", field("max_output_tokens", Value::Null)),
            ("output", json!([])),
            (
                "parallel_tool_calls",
                field("parallel_tool_calls", json!(true)),
            ),
            ("previous_response_id", Value::Null),
            (
                "reasoning",
                field("reasoning", json!({"effort": null, "summary": null})),
            ),
            // Nothing is kept: the provider keeps no responses.
            ("store", json!(false)),
            ("temperature", field("temperature", json!(1.0))),
            ("text", field("text", json!({"format": {"type": "text"}}))),
            ("tool_choice", field("tool_choice", json!("auto"))),
            ("tools", field("tools", json!([]))),
            ("top_p", field("top_p", json!(1.0))),
            ("truncation", json!("disabled")),
            ("usage", Value::Null),
            ("user", field("user", Value::Null)),
            ("metadata", field("metadata", json!({}))),
        ] {
            base.insert(k.into(), v);
        }
        Echo { base }
    }

    fn response(&self, id: &str, created: u64, model: &str, status: &str) -> Map<String, Value> {
        let mut r = Map::new();
        r.insert("id".into(), id.into());
        r.insert("created_at".into(), created.into());
        r.insert("model".into(), model.into());
        r.insert("status".into(), status.into());
        r.extend(self.base.clone());
        r
    }

    /// A whole answer, from the (maybe plugin-edited) view of the
    /// provider's and its thinking; `id` is the provider's answer id.
    pub fn answer(&self, view: &LlmResponse, id: &str, created: u64, thinking: &[Value]) -> Value {
        let (status, incomplete) = outcome(view.finish_reason.as_deref());
        let mut r = self.response(&id_with("resp_", id), created, &view.model, status);
        let mut output: Vec<Value> = thinking
            .iter()
            .enumerate()
            .map(|(n, block)| {
                reasoning_item(&id_with("rs_", &format!("{id}_{n}")), "completed", block)
            })
            .collect();
        if !view.text.is_empty() || view.tool_calls.is_empty() {
            output.push(message_item(
                &id_with("msg_", id),
                "completed",
                Some(&view.text),
            ));
        }
        for call in &view.tool_calls {
            output.push(call_item(
                &id_with("fc_", &call.id),
                "completed",
                &call.id,
                &call.name,
                &call.arguments,
            ));
        }
        r.insert("output".into(), Value::Array(output));
        r.insert("incomplete_details".into(), incomplete);
        r.insert("usage".into(), usage_json(view.usage));
        Value::Object(r)
    }

    /// The writer of a streamed answer's events.
    pub fn events(self, created: u64) -> ResponsesEvents {
        ResponsesEvents {
            echo: self,
            created,
            id: String::new(),
            model: String::new(),
            seq: 0,
            started: false,
            open: None,
            output: Vec::new(),
            finish: None,
        }
    }
}

/// What writing one piece left the stream as.
pub enum Written {
    Open,
    /// The answer's last event went.
    Done,
    /// An error event ended the stream.
    Failed,
}

/// A streamed chat answer written as the Responses API's events, numbered
/// from 0: `response.created`, `response.in_progress`, for each output item
/// its `added` event, deltas, `done` events, then `response.completed` (or
/// `response.incomplete`) with the whole answer and its usage.
pub struct ResponsesEvents {
    echo: Echo,
    created: u64,
    id: String,
    model: String,
    seq: u64,
    started: bool,
    /// The output item being streamed (the last of `output`).
    open: Option<Open>,
    /// The answer's items so far, as the final event repeats them.
    output: Vec<Value>,
    finish: Option<String>,
}

enum Open {
    /// A message: the text sent so far.
    Text(String),
    /// Thinking: its text so far.
    Reasoning(String),
    /// A function call: the provider's index for it, its arguments so far.
    Call { index: u64, arguments: String },
}

impl ResponsesEvents {
    fn send(&mut self, out: &mut BytesMut, mut event: Value) {
        event["sequence_number"] = self.seq.into();
        self.seq += 1;
        let kind = event["type"].as_str().unwrap_or("message").to_string();
        event_frame(out, &kind, &event.to_string());
    }

    fn response_now(&self, status: &str) -> Value {
        let mut r = self
            .echo
            .response(&self.id, self.created, &self.model, status);
        r.insert("output".into(), Value::Array(self.output.clone()));
        Value::Object(r)
    }

    fn start(&mut self, id: &str, model: &str, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = id_with("resp_", id);
        self.model = model.to_string();
        let response = self.response_now("in_progress");
        self.send(
            out,
            json!({"type": "response.created", "response": response.clone()}),
        );
        self.send(
            out,
            json!({"type": "response.in_progress", "response": response}),
        );
    }

    /// Open an item whose content streams into one `part`: its `added`
    /// events.
    fn open_item(&mut self, item: Value, open: Open, part: Value, out: &mut BytesMut) {
        self.close(out);
        let index = self.output.len();
        let item_id = item["id"].clone();
        self.output.push(item.clone());
        self.open = Some(open);
        self.send(
            out,
            json!({"type": "response.output_item.added", "output_index": index, "item": item}),
        );
        self.send(
            out,
            json!({"type": "response.content_part.added", "item_id": item_id,
                "output_index": index, "content_index": 0, "part": part}),
        );
    }

    /// Add `text` to the open item's part: its `kind` delta event.
    fn delta(&mut self, text: &str, kind: &str) -> Value {
        if let Some(Open::Text(sent) | Open::Reasoning(sent)) = &mut self.open {
            sent.push_str(text);
        }
        let index = self.output.len() - 1;
        json!({"type": kind, "item_id": self.output[index]["id"], "output_index": index,
            "content_index": 0, "delta": text})
    }

    /// End the open item with its `done` events.
    fn close(&mut self, out: &mut BytesMut) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.output.len() - 1;
        let item_id = self.output[index]["id"].clone();
        match open {
            Open::Reasoning(text) => {
                let at = json!({"item_id": item_id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["type"] = "response.reasoning_text.done".into();
                done["text"] = text.clone().into();
                self.send(out, done);
                let mut part = at;
                part["type"] = "response.content_part.done".into();
                part["part"] = json!({"type": "reasoning_text", "text": text});
                self.send(out, part);
                let item = &mut self.output[index];
                item["status"] = "completed".into();
                item["content"] = json!([{"type": "reasoning_text", "text": text}]);
            }
            Open::Text(text) => {
                let at = json!({"item_id": item_id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["type"] = "response.output_text.done".into();
                done["text"] = text.clone().into();
                done["logprobs"] = json!([]);
                self.send(out, done);
                let mut part = at;
                part["type"] = "response.content_part.done".into();
                part["part"] =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.send(out, part);
                self.output[index] = message_item(
                    item_id.as_str().unwrap_or_default(),
                    "completed",
                    Some(&text),
                );
            }
            Open::Call { arguments, .. } => {
                let item = &mut self.output[index];
                item["status"] = "completed".into();
                item["arguments"] = arguments.clone().into();
                let name = item["name"].clone();
                self.send(
                    out,
                    json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                        "output_index": index, "name": name, "arguments": arguments}),
                );
            }
        }
        let item = self.output[index].clone();
        self.send(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }

    /// Write one piece of the answer.
    pub fn write(
        &mut self,
        piece: Piece,
        usage: Option<TokenUsage>,
        out: &mut BytesMut,
    ) -> Written {
        if let Piece::Start { id, model } = &piece {
            self.start(id, model, out);
            return Written::Open;
        }
        // A provider that names nothing first still gets the opening events.
        self.start("", "", out);
        match piece {
            Piece::Start { .. } => {}
            Piece::Text(text) => {
                if text.is_empty() {
                    return Written::Open;
                }
                if !matches!(self.open, Some(Open::Text(_))) {
                    let item_id = id_with("msg_", &format!("{}_{}", self.id, self.output.len()));
                    self.open_item(
                        message_item(&item_id, "in_progress", None),
                        Open::Text(String::new()),
                        json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []}),
                        out,
                    );
                }
                let mut event = self.delta(&text, "response.output_text.delta");
                event["logprobs"] = json!([]);
                self.send(out, event);
            }
            Piece::Thinking(text) => {
                if !matches!(self.open, Some(Open::Reasoning(_))) {
                    let item_id = id_with("rs_", &format!("{}_{}", self.id, self.output.len()));
                    self.open_item(
                        json!({"id": item_id, "type": "reasoning", "status": "in_progress",
                            "summary": [], "content": [], "encrypted_content": null}),
                        Open::Reasoning(String::new()),
                        json!({"type": "reasoning_text", "text": ""}),
                        out,
                    );
                }
                let event = self.delta(&text, "response.reasoning_text.delta");
                self.send(out, event);
            }
            Piece::ThinkingSignature(signature)
                if matches!(self.open, Some(Open::Reasoning(_))) =>
            {
                let index = self.output.len() - 1;
                self.output[index]["encrypted_content"] = signature.into();
            }
            // A signature without thinking before it (Gemini signs its
            // calls) or a redacted block: an item of its own, whole.
            piece @ (Piece::ThinkingSignature(_) | Piece::RedactedThinking(_)) => {
                self.close(out);
                let index = self.output.len();
                let item_id = id_with("rs_", &format!("{}_{index}", self.id));
                let block = match piece {
                    Piece::RedactedThinking(data) => {
                        json!({"type": "redacted_thinking", "data": data})
                    }
                    Piece::ThinkingSignature(s) => {
                        json!({"type": "thinking", "thinking": "", "signature": s})
                    }
                    _ => Value::Null,
                };
                let item = reasoning_item(&item_id, "completed", &block);
                self.output.push(item.clone());
                self.send(
                    out,
                    json!({"type": "response.output_item.added", "output_index": index, "item": item}),
                );
                self.send(
                    out,
                    json!({"type": "response.output_item.done", "output_index": index, "item": item}),
                );
            }
            Piece::ToolStart { index, id, name } => {
                self.close(out);
                let item = call_item(&id_with("fc_", &id), "in_progress", &id, &name, "");
                let at = self.output.len();
                self.output.push(item.clone());
                self.open = Some(Open::Call {
                    index,
                    arguments: String::new(),
                });
                self.send(
                    out,
                    json!({"type": "response.output_item.added", "output_index": at, "item": item}),
                );
            }
            Piece::ToolArgs { index, json } => {
                let Some(Open::Call {
                    index: open,
                    arguments,
                }) = &mut self.open
                else {
                    return Written::Open;
                };
                if *open != index {
                    return Written::Open;
                }
                arguments.push_str(&json);
                let at = self.output.len() - 1;
                let item_id = self.output[at]["id"].clone();
                self.send(
                    out,
                    json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                        "output_index": at, "delta": json}),
                );
            }
            Piece::BlockEnd { .. } => self.close(out),
            Piece::Finish(reason) => {
                self.close(out);
                self.finish = Some(reason);
            }
            Piece::Error { kind, message } => {
                self.fail(out, kind.as_deref().or(Some("api_error")), &message);
                return Written::Failed;
            }
            Piece::Done => {
                self.close(out);
                let (status, incomplete) = outcome(self.finish.as_deref());
                let mut response = self.response_now(status);
                response["incomplete_details"] = incomplete;
                response["usage"] = usage_json(usage);
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                self.send(out, json!({"type": kind, "response": response}));
                return Written::Done;
            }
        }
        Written::Open
    }

    /// End the stream with an `error` event. A `kind` of `None` is the
    /// route's plugins stopping the answer.
    pub fn fail(&mut self, out: &mut BytesMut, kind: Option<&str>, message: &str) {
        let code = match kind {
            None => "policy_denied",
            Some("api_error") => "server_error",
            Some(other) => other,
        };
        self.send(
            out,
            json!({"type": "error", "code": code, "message": message, "param": null}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_of(body: Value) -> Result<Value, Untranslatable> {
        to_chat(body.as_object().unwrap())
    }

    #[test]
    fn a_tool_round_becomes_chat_messages() {
        let chat = chat_of(json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 300,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "21C"}]},
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        }))
        .unwrap();
        let m = &chat["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(m[1]["content"][1]["image_url"]["detail"], "low");
        // Both calls join the assistant's turn; each output is a tool message.
        assert_eq!(m[2]["content"], "Looking.");
        assert_eq!(m[2]["tool_calls"][1]["id"], "c2");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "18C"})
        );
        assert_eq!(m[4]["content"], "21C");
        assert_eq!(m.as_array().unwrap().len(), 5);
        assert_eq!(chat["max_completion_tokens"], 300);
        assert_eq!(chat["tools"][0]["function"]["name"], "weather");
        assert_eq!(chat["tools"][0]["function"]["strict"], true);
        assert_eq!(chat["tool_choice"]["function"]["name"], "weather");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
    }

    #[test]
    fn what_only_openai_keeps_is_refused_by_name() {
        let refused = |body: Value| chat_of(body).unwrap_err();
        assert_eq!(
            refused(json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"})).0,
            "previous_response_id"
        );
        let (at, why) = refused(json!({"model": "m", "input": "hi",
            "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}));
        assert_eq!(at, "tools[1]");
        assert!(why.contains("'web_search'"), "{why}");
        let (at, _) = refused(json!({"model": "m", "input": [
            {"role": "user", "content": "hi"}, {"type": "item_reference", "id": "msg_1"}]}));
        assert_eq!(at, "input[1]");
        let (at, why) = refused(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file-1"}]}]}));
        assert_eq!(at, "input[0]");
        assert!(why.starts_with("content[0]: "), "{why}");
        assert_eq!(refused(json!({"model": "m", "input": []})).0, "input");
    }

    fn written(pieces: Vec<Piece>, usage: Option<TokenUsage>) -> Vec<Value> {
        let echo = Echo::of(
            json!({"model": "m", "instructions": "Be brief."})
                .as_object()
                .unwrap(),
        );
        let mut events = echo.events(7);
        let mut out = BytesMut::new();
        for p in pieces {
            events.write(p, usage, &mut out);
        }
        String::from_utf8(out.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (name, data) = f.split_once('\n').unwrap();
                let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(name.strip_prefix("event: ").unwrap(), v["type"]);
                v
            })
            .collect()
    }

    #[test]
    fn streamed_pieces_become_numbered_events_with_a_whole_last_one() {
        let usage = TokenUsage {
            input: 12,
            output: 5,
            cached_input: 2,
        };
        let evs = written(
            vec![
                Piece::Start {
                    id: "msg_01abc".into(),
                    model: "claude".into(),
                },
                Piece::Text("Hello".into()),
                Piece::Text(" there".into()),
                Piece::BlockEnd { index: 0 },
                Piece::ToolStart {
                    index: 1,
                    id: "toolu_9".into(),
                    name: "weather".into(),
                },
                Piece::ToolArgs {
                    index: 1,
                    json: "{\"city\":".into(),
                },
                Piece::ToolArgs {
                    index: 1,
                    json: "\"Paris\"}".into(),
                },
                Piece::Finish("tool_calls".into()),
                Piece::Done,
            ],
            Some(usage),
        );
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..15).collect::<Vec<_>>());
        assert_eq!(evs[0]["response"]["id"], "resp_01abc");
        assert_eq!(evs[0]["response"]["instructions"], "Be brief.");
        assert_eq!(evs[6]["text"], "Hello there");
        let last = &evs[14]["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["output"][0]["content"][0]["text"], "Hello there");
        assert_eq!(last["output"][1]["call_id"], "toolu_9");
        assert_eq!(last["output"][1]["id"], "fc_9");
        assert_eq!(last["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(last["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(last["usage"]["total_tokens"], 17);
    }

    #[test]
    fn a_cut_answer_is_incomplete_and_an_error_ends_the_stream() {
        let evs = written(
            vec![
                Piece::Text("Half".into()),
                Piece::Finish("length".into()),
                Piece::Done,
            ],
            None,
        );
        let last = evs.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        // No Start piece (Bedrock names the answer later): the opening events still come.
        assert_eq!(evs[0]["type"], "response.created");
        let evs = written(
            vec![
                Piece::Text("Half".into()),
                Piece::Error {
                    kind: None,
                    message: "modelStreamErrorException: stop".into(),
                },
            ],
            None,
        );
        let last = evs.last().unwrap();
        assert_eq!(
            (last["type"].as_str(), last["code"].as_str()),
            (Some("error"), Some("server_error"))
        );
        assert_eq!(last["sequence_number"], evs.len() as u64 - 1);
    }

    #[test]
    fn a_whole_answer_repeats_the_request_and_counts_usage() {
        let echo = Echo::of(
            json!({"model": "m", "tools": [{"type": "function", "name": "f"}],
            "temperature": 0.2})
            .as_object()
            .unwrap(),
        );
        let view = LlmResponse {
            provider: "anthropic".into(),
            model: "claude".into(),
            text: String::new(),
            tool_calls: vec![crate::policy::bindings::ToolCall {
                id: "toolu_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            usage: None,
            finish_reason: Some("tool_calls".into()),
        };
        let r = echo.answer(&view, "msg_01", 9, &[]);
        assert_eq!(r["id"], "resp_01");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["temperature"], 0.2);
        assert_eq!(r["tools"][0]["name"], "f");
        assert_eq!(
            r["output"].as_array().unwrap().len(),
            1,
            "no empty message: {r}"
        );
        assert_eq!(r["output"][0]["type"], "function_call");
        assert_eq!(r["usage"]["total_tokens"], 0);
    }
}
