//! Streamed chat answers: server-sent events (or Bedrock's event-stream
//! messages, read as events) in, server-sent events out.
//!
//! Each upstream event is read into neutral [`Piece`]s (text, tool call
//! start and argument fragments, finish, usage). Text pieces pass the
//! route's chunk guard. Then the pieces are written in the client's format;
//! when client and provider speak the same format the provider's event goes
//! out byte for byte unless a guard changed its text.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use super::api::{Flavor, Wire, anthropic_type};
use super::chat::{finish_from_anthropic, id_for, stop_from_openai, usage_of};
use super::responses_chat::{ResponsesEvents, Written};
use crate::backend::sse::SseEvent;
use crate::policy::bindings::TokenUsage;

/// A stream event in neither format.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Start {
        id: String,
        model: String,
    },
    Text(String),
    /// The model's thinking (not shown to plugins, as in whole answers).
    Thinking(String),
    /// The signature that ends a thinking block.
    ThinkingSignature(String),
    /// A thinking block the provider sends encrypted, whole.
    RedactedThinking(String),
    /// A tool call begins; `index` is the provider's block or call index.
    ToolStart {
        index: u64,
        id: String,
        name: String,
    },
    ToolArgs {
        index: u64,
        json: String,
    },
    Finish(String),
    /// A content block ended (Anthropic `content_block_stop`).
    BlockEnd {
        index: u64,
    },
    Error {
        kind: Option<String>,
        message: String,
    },
    Done,
}

/// What a chunk guard says about a piece of streamed text.
pub enum TextVerdict {
    Keep,
    Replace(String),
    /// End the stream with an error event carrying this message.
    Stop(String),
}

/// The route's plugins on the stream (see the LLM chunk hook).
pub trait ChunkGuard {
    fn text(&mut self, text: &str) -> TextVerdict;
    /// The answer's text ended (its block closed, a tool call or the finish
    /// came): a `Replace` is text the plugins held back, to send now.
    fn text_end(&mut self) -> TextVerdict;
    /// The stream ended; a `Some` is an error to end it with instead.
    fn done(&mut self, usage: Option<TokenUsage>) -> Option<String>;
}

impl Piece {
    /// Whether the answer's text is over when this comes.
    fn ends_text(&self) -> bool {
        matches!(
            self,
            Piece::BlockEnd { .. }
                | Piece::ToolStart { .. }
                | Piece::Thinking(_)
                | Piece::RedactedThinking(_)
                | Piece::Finish(_)
                | Piece::Done
        )
    }
}

/// One streamed answer being relayed.
pub struct StreamRelay {
    from: Wire,
    to: Flavor,
    /// The client asked for `stream_options.include_usage` itself.
    client_wants_usage: bool,
    created: u64,
    id: String,
    model: String,
    /// Tool names Bedrock was given in place of the client's.
    tool_names: super::converse::ToolNames,
    usage: Option<TokenUsage>,
    finish: Option<String>,
    started: bool,
    finished: bool,
    /// Finished with an error event of ours (a plugin stopped the answer,
    /// or the provider broke off), not at the provider's end marker.
    failed: bool,
    // Writing OpenAI chunks: provider block index → tool_calls index.
    tool_slots: Vec<u64>,
    /// The open thinking block's text, repeated with its signature.
    thinking: String,
    // Writing Anthropic events: the open block and the next index.
    open_block: Option<(BlockKind, u64)>,
    next_block: u64,
    block_of_call: Vec<(u64, u64)>,
    /// The client reads OpenAI's Responses API: its events are written
    /// here instead of chat chunks.
    responses: Option<Box<ResponsesEvents>>,
    gemini: super::gemini::StreamState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Tool,
    Thinking,
    Redacted,
}

impl StreamRelay {
    pub fn new(from: Wire, to: Flavor, client_wants_usage: bool, created: u64) -> Self {
        StreamRelay {
            from,
            to,
            client_wants_usage,
            created,
            id: String::new(),
            model: String::new(),
            tool_names: Default::default(),
            usage: None,
            finish: None,
            started: false,
            finished: false,
            failed: false,
            tool_slots: Vec::new(),
            thinking: String::new(),
            open_block: None,
            next_block: 0,
            block_of_call: Vec::new(),
            responses: None,
            gemini: Default::default(),
        }
    }

    /// Write the answer as the Responses API's events.
    pub fn into_responses(mut self, events: ResponsesEvents) -> Self {
        self.responses = Some(Box::new(events));
        self
    }

    /// The answer's id and model, for a provider whose stream names
    /// neither (Bedrock's), and the client's names of its tools.
    pub fn named(mut self, id: &str, model: &str, tools: super::converse::ToolNames) -> Self {
        match self.from {
            Wire::Converse => {
                self.id = id.to_string();
                self.model = model.to_string();
                self.tool_names = tools;
            }
            // Gemini names the model version only if it likes.
            Wire::Gemini => self.model = model.to_string(),
            Wire::Chat(_) => {}
        }
        self
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The provider's end marker came and the client's stream ended with
    /// it: what is left of the provider's body is only its terminator.
    pub fn provider_done(&self) -> bool {
        self.finished && !self.failed
    }

    /// Relay one upstream event, appending what goes to the client to `out`.
    pub fn relay(&mut self, ev: &SseEvent, guard: &mut dyn ChunkGuard, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let parsed: Option<Value> = serde_json::from_str(&ev.data).ok();
        let mut pieces = match self.from {
            Wire::Chat(Flavor::OpenAi) => self.read_openai(&ev.data, parsed.as_ref()),
            Wire::Chat(Flavor::Anthropic) => self.read_anthropic(ev, parsed.as_ref()),
            Wire::Converse => match &parsed {
                Some(v) => {
                    let event = ev.event.as_deref().unwrap_or_default();
                    super::converse::read_event(
                        event,
                        v,
                        (&self.id, &self.model),
                        &self.tool_names,
                        &mut self.usage,
                    )
                }
                None => Vec::new(),
            },
            Wire::Gemini => match &parsed {
                Some(v) => {
                    let pieces = super::gemini::read_event(
                        v,
                        &self.model,
                        &mut self.gemini,
                        &mut self.usage,
                    );
                    if let Some(Piece::Start { id, model }) = pieces.first() {
                        self.id.clone_from(id);
                        self.model.clone_from(model);
                    }
                    pieces
                }
                None => Vec::new(),
            },
        };
        let mut edited = false;
        let mut held_back: Option<(usize, String, u64)> = None;
        for (i, piece) in pieces.iter_mut().enumerate() {
            if piece.ends_text() {
                match guard.text_end() {
                    TextVerdict::Replace(t) if !t.is_empty() && held_back.is_none() => {
                        let block = match piece {
                            Piece::BlockEnd { index } => *index,
                            _ => 0,
                        };
                        held_back = Some((i, t, block));
                    }
                    TextVerdict::Stop(message) => {
                        self.fail(out, None, &message);
                        return;
                    }
                    _ => {}
                }
            }
            match piece {
                Piece::Text(t) => match guard.text(t) {
                    TextVerdict::Keep => {}
                    TextVerdict::Replace(new) => {
                        *t = new;
                        edited = true;
                    }
                    TextVerdict::Stop(message) => {
                        self.fail(out, None, &message);
                        return;
                    }
                },
                Piece::Done => {
                    if let Some(message) = guard.done(self.usage) {
                        self.fail(out, None, &message);
                        return;
                    }
                }
                _ => {}
            }
        }
        if self.responses.is_none() && self.from == Wire::Chat(self.to) {
            // Held-back text leaves as its own event, before the one that
            // ended the text.
            if let Some((_, text, block)) = held_back {
                self.text_event(&text, block, out);
            }
            self.pass(ev, parsed, &pieces, edited, out);
        } else {
            if let Some((i, text, _)) = held_back {
                pieces.insert(i, Piece::Text(text));
            }
            for piece in pieces {
                if let Some(events) = &mut self.responses {
                    match events.write(piece, self.usage, out) {
                        Written::Open => {}
                        Written::Done => self.finished = true,
                        Written::Failed => {
                            self.finished = true;
                            self.failed = true;
                        }
                    }
                    if self.finished {
                        return;
                    }
                    continue;
                }
                match self.to {
                    Flavor::OpenAi => self.write_openai(piece, out),
                    Flavor::Anthropic => self.write_anthropic(piece, out),
                }
            }
        }
    }

    /// One text delta in the source's own format (pass-through streams).
    fn text_event(&mut self, text: &str, block: u64, out: &mut BytesMut) {
        match self.to {
            Flavor::OpenAi => data_frame(
                out,
                &self
                    .openai_chunk(json!({"content": text}), None)
                    .to_string(),
            ),
            Flavor::Anthropic => {
                let ev = json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "text_delta", "text": text}});
                event_frame(out, "content_block_delta", &ev.to_string());
            }
        }
    }

    /// The upstream ended. Ends the client's stream properly if the
    /// provider's end marker never came.
    pub fn end(&mut self, guard: &mut dyn ChunkGuard, out: &mut BytesMut) {
        if !self.finished {
            let message = match guard.done(self.usage) {
                Some(m) => m,
                None => "the provider's stream ended early".to_string(),
            };
            self.fail(out, Some("api_error"), &message);
        }
    }

    /// End the client's stream with an error event in its format.
    pub fn fail(&mut self, out: &mut BytesMut, kind: Option<&str>, message: &str) {
        self.finished = true;
        self.failed = true;
        if let Some(events) = &mut self.responses {
            return events.fail(out, kind, message);
        }
        match self.to {
            Flavor::OpenAi => {
                let err = json!({"error": {"message": message,
                    "type": kind.unwrap_or("invalid_request_error"), "param": null, "code": null}});
                data_frame(out, &err.to_string());
            }
            Flavor::Anthropic => {
                let err = json!({"type": "error", "error": {
                    "type": kind.unwrap_or(anthropic_type(400)), "message": message}});
                event_frame(out, "error", &err.to_string());
            }
        }
    }

    // ---- reading ----------------------------------------------------------

    fn read_openai(&mut self, data: &str, v: Option<&Value>) -> Vec<Piece> {
        if data.trim() == "[DONE]" {
            return vec![Piece::Done];
        }
        let Some(v) = v else { return Vec::new() };
        if let Some(err) = v.get("error") {
            return vec![Piece::Error {
                kind: err.get("type").and_then(Value::as_str).map(str::to_string),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("provider error")
                    .to_string(),
            }];
        }
        let mut pieces = Vec::new();
        if !self.started {
            self.started = true;
            let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
            let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
            self.id = id.to_string();
            self.model = model.to_string();
            pieces.push(Piece::Start {
                id: id.to_string(),
                model: model.to_string(),
            });
        }
        if let Some(choice) = v.pointer("/choices/0") {
            let delta = choice.get("delta");
            // OpenAI-compatible servers' spellings of the model's thinking.
            let thinking =
                delta.and_then(|d| d.get("reasoning_content").or_else(|| d.get("reasoning")));
            if let Some(Value::String(t)) = thinking
                && !t.is_empty()
            {
                pieces.push(Piece::Thinking(t.clone()));
            }
            if let Some(Value::String(t)) = delta.and_then(|d| d.get("content"))
                && !t.is_empty()
            {
                pieces.push(Piece::Text(t.clone()));
            }
            for call in delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    pieces.push(Piece::ToolStart {
                        index,
                        id: id.to_string(),
                        name: call
                            .pointer("/function/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                if let Some(Value::String(args)) = call.pointer("/function/arguments")
                    && !args.is_empty()
                {
                    pieces.push(Piece::ToolArgs {
                        index,
                        json: args.clone(),
                    });
                }
            }
            if let Some(Value::String(reason)) = choice.get("finish_reason") {
                pieces.push(Piece::Finish(reason.clone()));
            }
        }
        if let Some(u) = v.get("usage").and_then(|u| usage_of(Flavor::OpenAi, u)) {
            self.usage = Some(u);
        }
        pieces
    }

    fn read_anthropic(&mut self, ev: &SseEvent, v: Option<&Value>) -> Vec<Piece> {
        let Some(v) = v else { return Vec::new() };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let msg = v.get("message");
                let field = |k: &str| {
                    msg.and_then(|m| m.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                self.id = field("id");
                self.model = field("model");
                self.started = true;
                self.usage = msg
                    .and_then(|m| m.get("usage"))
                    .and_then(|u| usage_of(Flavor::Anthropic, u));
                vec![Piece::Start {
                    id: self.id.clone(),
                    model: self.model.clone(),
                }]
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = v.get("content_block");
                match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
                    Some("tool_use") => vec![Piece::ToolStart {
                        index,
                        id: block
                            .and_then(|b| b.get("id"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        name: block
                            .and_then(|b| b.get("name"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    }],
                    Some("text") => match block.and_then(|b| b.get("text")) {
                        Some(Value::String(t)) if !t.is_empty() => vec![Piece::Text(t.clone())],
                        _ => Vec::new(),
                    },
                    Some("thinking") => match block.and_then(|b| b.get("thinking")) {
                        Some(Value::String(t)) if !t.is_empty() => {
                            vec![Piece::Thinking(t.clone())]
                        }
                        _ => Vec::new(),
                    },
                    Some("redacted_thinking") => vec![Piece::RedactedThinking(
                        block
                            .and_then(|b| b.get("data"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )],
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = v.get("delta");
                let field = |k: &str| {
                    delta
                        .and_then(|d| d.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => vec![Piece::Text(field("text"))],
                    Some("thinking_delta") => vec![Piece::Thinking(field("thinking"))],
                    Some("signature_delta") => vec![Piece::ThinkingSignature(field("signature"))],
                    Some("input_json_delta") => vec![Piece::ToolArgs {
                        index,
                        json: field("partial_json"),
                    }],
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(out) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    let u = self.usage.get_or_insert(TokenUsage {
                        input: 0,
                        output: 0,
                        cached_input: 0,
                    });
                    u.output = out;
                    // Newer streams repeat the input counts here.
                    if let Some(later) = v.get("usage").and_then(|u| usage_of(Flavor::Anthropic, u))
                        && later.input > 0
                    {
                        u.input = later.input;
                        u.cached_input = later.cached_input;
                    }
                }
                match v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(reason) => vec![Piece::Finish(finish_from_anthropic(reason).into())],
                    None => Vec::new(),
                }
            }
            "content_block_stop" => vec![Piece::BlockEnd {
                index: v.get("index").and_then(Value::as_u64).unwrap_or(0),
            }],
            "message_stop" => vec![Piece::Done],
            "error" => vec![Piece::Error {
                kind: v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                message: v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("provider error")
                    .to_string(),
            }],
            _ => Vec::new(),
        }
    }

    // ---- writing, same format ---------------------------------------------

    fn pass(
        &mut self,
        ev: &SseEvent,
        parsed: Option<Value>,
        pieces: &[Piece],
        edited: bool,
        out: &mut BytesMut,
    ) {
        if pieces.iter().any(|p| matches!(p, Piece::Done)) {
            self.finished = true;
        }
        if let Some(Piece::Error { .. }) = pieces.first() {
            self.finished = true;
        }
        // The usage-only chunk the gateway asked for on the client's behalf.
        if self.to == Flavor::OpenAi
            && !self.client_wants_usage
            && let Some(v) = &parsed
            && v.get("choices")
                .and_then(Value::as_array)
                .is_some_and(|c| c.is_empty())
            && v.get("usage").is_some_and(|u| !u.is_null())
        {
            return;
        }
        let data = match (edited, parsed) {
            (true, Some(mut v)) => {
                let text: String = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                match self.to {
                    Flavor::OpenAi => {
                        if let Some(d) = v.pointer_mut("/choices/0/delta") {
                            d["content"] = text.into();
                        }
                    }
                    Flavor::Anthropic => {
                        if let Some(d) = v.pointer_mut("/delta") {
                            d["text"] = text.into();
                        } else if let Some(b) = v.pointer_mut("/content_block") {
                            b["text"] = text.into();
                        }
                    }
                }
                v.to_string()
            }
            _ => ev.data.clone(),
        };
        match &ev.event {
            Some(name) => event_frame(out, name, &data),
            None => data_frame(out, &data),
        }
    }

    // ---- writing OpenAI chunks ---------------------------------------------

    fn openai_chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": id_for(Flavor::OpenAi, &self.id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn write_openai(&mut self, piece: Piece, out: &mut BytesMut) {
        let chunk = match piece {
            Piece::Start { .. } => {
                self.openai_chunk(json!({"role": "assistant", "content": ""}), None)
            }
            Piece::Text(t) => self.openai_chunk(json!({"content": t}), None),
            Piece::Thinking(t) => {
                self.thinking.push_str(&t);
                self.openai_chunk(json!({"reasoning_content": t}), None)
            }
            // The whole block, to send back on the next turn.
            Piece::ThinkingSignature(signature) => {
                let thinking = std::mem::take(&mut self.thinking);
                self.openai_chunk(
                    json!({"thinking_blocks": [{"type": "thinking", "thinking": thinking,
                        "signature": signature}]}),
                    None,
                )
            }
            Piece::RedactedThinking(data) => self.openai_chunk(
                json!({"thinking_blocks": [{"type": "redacted_thinking", "data": data}]}),
                None,
            ),
            // OpenAI chunks have no blocks.
            Piece::BlockEnd { .. } => return,
            Piece::ToolStart { index, id, name } => {
                let slot = self.tool_slots.len();
                self.tool_slots.push(index);
                self.openai_chunk(
                    json!({"tool_calls": [{"index": slot, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                )
            }
            Piece::ToolArgs { index, json } => {
                let slot = self
                    .tool_slots
                    .iter()
                    .position(|i| *i == index)
                    .unwrap_or(0);
                self.openai_chunk(
                    json!({"tool_calls": [{"index": slot, "function": {"arguments": json}}]}),
                    None,
                )
            }
            Piece::Finish(reason) => {
                self.finish = Some(reason.clone());
                self.openai_chunk(json!({}), Some(&reason))
            }
            Piece::Error { kind, message } => {
                self.fail(out, kind.as_deref(), &message);
                return;
            }
            Piece::Done => {
                if self.client_wants_usage {
                    let u = self.usage.unwrap_or(TokenUsage {
                        input: 0,
                        output: 0,
                        cached_input: 0,
                    });
                    let mut chunk = self.openai_chunk(json!({}), None);
                    chunk["choices"] = json!([]);
                    chunk["usage"] = json!({
                        "prompt_tokens": u.input,
                        "completion_tokens": u.output,
                        "total_tokens": u.input + u.output,
                        "prompt_tokens_details": {"cached_tokens": u.cached_input},
                    });
                    data_frame(out, &chunk.to_string());
                }
                data_frame(out, "[DONE]");
                self.finished = true;
                return;
            }
        };
        data_frame(out, &chunk.to_string());
    }

    // ---- writing Anthropic events ------------------------------------------

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((_, index)) = self.open_block.take() {
            event_frame(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}).to_string(),
            );
        }
    }

    fn open(&mut self, kind: BlockKind, block: Value, out: &mut BytesMut) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open_block = Some((kind, index));
        event_frame(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block})
                .to_string(),
        );
        index
    }

    /// The open thinking block, or a new one.
    fn thinking_block(&mut self, out: &mut BytesMut) -> u64 {
        match self.open_block {
            Some((BlockKind::Thinking, i)) => i,
            _ => self.open(
                BlockKind::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            ),
        }
    }

    fn write_anthropic(&mut self, piece: Piece, out: &mut BytesMut) {
        match piece {
            Piece::Start { id, model } => {
                let msg = json!({"type": "message_start", "message": {
                    "id": id_for(Flavor::Anthropic, &id), "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}});
                event_frame(out, "message_start", &msg.to_string());
            }
            Piece::Text(t) => {
                let index = match self.open_block {
                    Some((BlockKind::Text, i)) => i,
                    _ => self.open(BlockKind::Text, json!({"type": "text", "text": ""}), out),
                };
                let ev = json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": t}});
                event_frame(out, "content_block_delta", &ev.to_string());
            }
            Piece::Thinking(t) => {
                let index = self.thinking_block(out);
                let ev = json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "thinking_delta", "thinking": t}});
                event_frame(out, "content_block_delta", &ev.to_string());
            }
            // A signature without thinking before it (Gemini signs its
            // calls) is a block of its own, so the client returns it.
            Piece::ThinkingSignature(signature) => {
                let index = self.thinking_block(out);
                let ev = json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "signature_delta", "signature": signature}});
                event_frame(out, "content_block_delta", &ev.to_string());
            }
            Piece::RedactedThinking(data) => {
                self.open(
                    BlockKind::Redacted,
                    json!({"type": "redacted_thinking", "data": data}),
                    out,
                );
            }
            Piece::ToolStart {
                index: call,
                id,
                name,
            } => {
                let block = self.open(
                    BlockKind::Tool,
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
                self.block_of_call.push((call, block));
            }
            Piece::ToolArgs { index: call, json } => {
                let Some(&(_, block)) = self.block_of_call.iter().find(|(c, _)| *c == call) else {
                    return;
                };
                let ev = json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": json}});
                event_frame(out, "content_block_delta", &ev.to_string());
            }
            Piece::Finish(reason) => self.finish = Some(reason),
            // Blocks are closed here as the written stream needs.
            Piece::BlockEnd { .. } => {}
            Piece::Error { kind, message } => {
                let kind = kind.filter(|k| k.ends_with("_error"));
                self.fail(out, Some(kind.as_deref().unwrap_or("api_error")), &message);
            }
            Piece::Done => {
                self.close_block(out);
                let u = self.usage.unwrap_or(TokenUsage {
                    input: 0,
                    output: 0,
                    cached_input: 0,
                });
                let ev = json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_from_openai(self.finish.as_deref().unwrap_or("stop")), "stop_sequence": null},
                    "usage": {"input_tokens": u.input.saturating_sub(u.cached_input),
                              "cache_read_input_tokens": u.cached_input, "output_tokens": u.output}});
                event_frame(out, "message_delta", &ev.to_string());
                event_frame(out, "message_stop", r#"{"type":"message_stop"}"#);
                self.finished = true;
            }
        }
    }
}

fn data_frame(out: &mut BytesMut, data: &str) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

pub(super) fn event_frame(out: &mut BytesMut, name: &str, data: &str) {
    out.reserve(name.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.as_bytes());
    out.put_slice(b"\n\n");
}

/// Frames for tests and callers that want them as one buffer.
pub fn frames(out: BytesMut) -> Bytes {
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sse::SseDecoder;

    struct Pass;
    impl ChunkGuard for Pass {
        fn text(&mut self, _: &str) -> TextVerdict {
            TextVerdict::Keep
        }
        fn text_end(&mut self) -> TextVerdict {
            TextVerdict::Keep
        }
        fn done(&mut self, _: Option<TokenUsage>) -> Option<String> {
            None
        }
    }

    fn run(from: Flavor, to: Flavor, wants_usage: bool, input: &str) -> (String, StreamRelay) {
        run_guarded(from, to, wants_usage, input, &mut Pass)
    }

    fn run_guarded(
        from: Flavor,
        to: Flavor,
        wants_usage: bool,
        input: &str,
        guard: &mut dyn ChunkGuard,
    ) -> (String, StreamRelay) {
        let mut dec = SseDecoder::default();
        let mut relay = StreamRelay::new(Wire::Chat(from), to, wants_usage, 7);
        let mut out = BytesMut::new();
        // Feed in small slices so events split across reads.
        for piece in input.as_bytes().chunks(7) {
            let mut evs = Vec::new();
            dec.push(piece, &mut evs);
            for ev in &evs {
                relay.relay(ev, guard, &mut out);
            }
        }
        if !relay.finished() {
            relay.end(guard, &mut out);
        }
        (String::from_utf8(out.to_vec()).unwrap(), relay)
    }

    /// Holds every piece of text back until the text ends, then sends it
    /// upper-cased: what a masking plugin does with values split across chunks.
    #[derive(Default)]
    struct HoldBack(String);

    impl ChunkGuard for HoldBack {
        fn text(&mut self, text: &str) -> TextVerdict {
            self.0.push_str(text);
            TextVerdict::Replace(String::new())
        }
        fn text_end(&mut self) -> TextVerdict {
            TextVerdict::Replace(std::mem::take(&mut self.0).to_uppercase())
        }
        fn done(&mut self, _: Option<TokenUsage>) -> Option<String> {
            None
        }
    }

    /// The text a client reads from a stream in either format.
    fn client_text(out: &str) -> String {
        out.split("\n\n")
            .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/choices/0/delta/content")
                    .or(v.pointer("/delta/text"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }

    #[test]
    fn text_held_back_by_plugins_leaves_before_the_text_ends_in_every_direction() {
        let openai = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking \"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"now\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        for (from, to, input, want) in [
            (Flavor::OpenAi, Flavor::OpenAi, openai, "CHECKING NOW"),
            (Flavor::OpenAi, Flavor::Anthropic, openai, "CHECKING NOW"),
            (
                Flavor::Anthropic,
                Flavor::Anthropic,
                ANTHROPIC_TOOL_STREAM,
                "CHECKING",
            ),
            (
                Flavor::Anthropic,
                Flavor::OpenAi,
                ANTHROPIC_TOOL_STREAM,
                "CHECKING",
            ),
        ] {
            let (out, relay) = run_guarded(from, to, false, input, &mut HoldBack::default());
            assert!(relay.finished(), "{out}");
            assert!(
                relay.provider_done(),
                "ended at the provider's marker: {out}"
            );
            assert_eq!(client_text(&out), want, "{from:?} -> {to:?}: {out}");
            // The held text comes before the text's end in the written stream.
            let text_at = out.find(want).unwrap();
            let end_at = match to {
                Flavor::OpenAi => out.find("finish_reason\":\"").unwrap(),
                Flavor::Anthropic => out.find("content_block_stop").unwrap(),
            };
            assert!(text_at < end_at, "{from:?} -> {to:?}: {out}");
        }
    }

    const ANTHROPIC_TOOL_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Oslo\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    const ANTHROPIC_THINKING_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"see.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig-1\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"ENC\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\",\"text\":\"Four.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn data_of(out: &str) -> Vec<Value> {
        out.split("\n\n")
            .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .collect()
    }

    #[test]
    fn thinking_streams_as_reasoning_content_and_back_as_thinking_blocks() {
        let (out, relay) = run(
            Flavor::Anthropic,
            Flavor::OpenAi,
            false,
            ANTHROPIC_THINKING_STREAM,
        );
        assert!(relay.provider_done(), "{out}");
        let chunks = data_of(&out);
        let reasoning: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/reasoning_content"))
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(reasoning, "Let me see.");
        let blocks: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/thinking_blocks/0"))
            .collect();
        assert_eq!(
            blocks,
            [
                &json!({"type": "thinking", "thinking": "Let me see.", "signature": "sig-1"}),
                &json!({"type": "redacted_thinking", "data": "ENC"}),
            ]
        );
        assert_eq!(client_text(&out), "Four.");

        // An OpenAI-compatible server's reasoning_content: a thinking block
        // ahead of the text for Anthropic clients.
        let openai = concat!(
            "data: {\"id\":\"c1\",\"model\":\"r1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"Hm\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"r1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Yes\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"r1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let (out, relay) = run(Flavor::OpenAi, Flavor::Anthropic, false, openai);
        assert!(relay.provider_done(), "{out}");
        let events = data_of(&out);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                let t = e["type"].as_str().unwrap_or_default();
                match e
                    .pointer("/content_block/type")
                    .or(e.pointer("/delta/type"))
                {
                    Some(Value::String(k)) => format!("{t}:{k}"),
                    _ => t.to_string(),
                }
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start:thinking",
                "content_block_delta:thinking_delta",
                "content_block_stop",
                "content_block_start:text",
                "content_block_delta:text_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn anthropic_events_become_openai_chunks_with_usage() {
        let (out, relay) = run(
            Flavor::Anthropic,
            Flavor::OpenAi,
            true,
            ANTHROPIC_TOOL_STREAM,
        );
        let chunks: Vec<Value> = out
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Checking");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        let args: String = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args, "{\"city\": \"Oslo\"}");
        let finish = chunks.iter().find_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
        });
        assert_eq!(finish, Some("tool_calls"));
        let last = chunks.last().unwrap();
        assert_eq!(last["usage"]["prompt_tokens"], 12);
        assert_eq!(last["usage"]["completion_tokens"], 30);
        assert_eq!(relay.usage().unwrap().output, 30);
    }

    #[test]
    fn openai_chunks_become_anthropic_events_in_order() {
        let input = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n",
        );
        let (out, _) = run(Flavor::OpenAi, Flavor::Anthropic, false, input);
        let names: Vec<&str> = out
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("event: "))
            .map(|f| f.split('\n').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(out.contains("\"stop_reason\":\"tool_use\""));
        assert!(out.contains("\"output_tokens\":4"));
        assert!(out.contains("\"partial_json\":\"{}\""));
    }

    #[test]
    fn same_format_passes_bytes_and_drops_only_the_forced_usage_chunk() {
        let input = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"system_fingerprint\":\"fp\"}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        );
        let (out, relay) = run(Flavor::OpenAi, Flavor::OpenAi, false, input);
        assert!(out.contains("\"system_fingerprint\":\"fp\""));
        assert!(!out.contains("prompt_tokens"));
        assert_eq!(relay.usage().unwrap().output, 2);
        let (out, _) = run(Flavor::OpenAi, Flavor::OpenAi, true, input);
        assert!(out.contains("prompt_tokens"));
        let (out, _) = run(
            Flavor::Anthropic,
            Flavor::Anthropic,
            false,
            ANTHROPIC_TOOL_STREAM,
        );
        // Byte for byte, pings included.
        assert_eq!(out, ANTHROPIC_TOOL_STREAM);
    }

    #[test]
    fn a_stream_cut_short_ends_with_an_error_event() {
        let (out, relay) = run(
            Flavor::Anthropic,
            Flavor::OpenAi,
            false,
            &ANTHROPIC_TOOL_STREAM[..600],
        );
        assert!(out.contains("ended early"), "{out}");
        assert!(!relay.provider_done());
    }

    /// Stops the answer at its first text.
    struct StopAtText;

    impl ChunkGuard for StopAtText {
        fn text(&mut self, _: &str) -> TextVerdict {
            TextVerdict::Stop("no".into())
        }
        fn text_end(&mut self) -> TextVerdict {
            TextVerdict::Keep
        }
        fn done(&mut self, _: Option<TokenUsage>) -> Option<String> {
            None
        }
    }

    #[test]
    fn an_answer_stopped_by_a_plugin_is_finished_but_not_done_by_the_provider() {
        // Not done: the gateway drops the provider's body to cancel the call
        // rather than reading the rest of the answer.
        let (out, relay) = run_guarded(
            Flavor::Anthropic,
            Flavor::OpenAi,
            false,
            ANTHROPIC_TOOL_STREAM,
            &mut StopAtText,
        );
        assert!(relay.finished(), "{out}");
        assert!(!relay.provider_done(), "{out}");
    }
}
