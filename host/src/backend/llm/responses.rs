//! OpenAI's Responses API (`POST .../responses`) through the route's LLM
//! hooks, as chat requests go: the body's `instructions` and `input` items
//! are the request hook's messages (an edit is written back into the items
//! it came from), a whole answer's `output` is the response hook's text and
//! tool calls, and a streamed answer's text deltas pass the chunk hook (see
//! [`super::answer_events`]). Usage is recorded either way.
//!
//! Providers with the API get the body as it is (with the hooks' edits);
//! the others get it as a chat request, and their answer back in this API's
//! shape ([`super::responses_chat`]). A conversation kept by the provider
//! (`previous_response_id`, `conversation`) is not seen: the hooks see what
//! this request sends.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::ai_policy::BodyShape;
use super::answer_events::{self, AnswerEvents};
use super::api::{Api, Flavor};
use super::chat::{self, message, str_field, tool_definition};
use super::provider::Provider;
use super::responses_chat;
use super::stream::ChunkGuard;
use super::{
    ChatAnswer, ChatCall, EventRelay, LlmBackend, LlmRequestIn, LlmTrace, Reader, StreamGuard,
};
use crate::backend::http::Body;
use crate::backend::sse::SseEvent;
use crate::policy::bindings::{
    ChatMessage, ContentPart, Hooks, LlmRequest, LlmResponse, Role, TokenUsage, ToolCall,
};
use crate::policy::hooks::{OnLlmRequest, OnLlmResponse};
use crate::proxy::Shared;

/// Serve a `POST .../responses` on an LLM route.
pub async fn serve(
    shared: Arc<Shared>,
    llm: Arc<LlmBackend>,
    input: LlmRequestIn,
    candidates: Vec<(usize, Arc<Provider>)>,
    trace: &mut LlmTrace,
) -> Response<Body> {
    const CLIENT: Flavor = Flavor::OpenAi;
    let LlmRequestIn {
        parts,
        body,
        mut run,
        route,
        head_timeout,
        max_body,
        ..
    } = input;
    let mut body = match super::json_object(&body, CLIENT, trace) {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    llm.ai.apply(BodyShape::Responses, &mut body);
    let family = candidates[0].1.family;
    let (mut view, shape) = request_view(&body, family);
    let requested_model = view.model.clone();
    if run.wants(Hooks::LLM_REQUEST) {
        let verdict = run.run::<OnLlmRequest>(&mut view);
        if let Some(stop) = super::settle(verdict, &run, CLIENT, trace) {
            return stop;
        }
        if run.modified::<OnLlmRequest>() {
            shape.write_back(&mut body, &view.messages);
            body.insert("model".into(), view.model.clone().into());
        }
    }
    run.request_phase_done();

    // Providers without the API get it as chat, when it can be put so.
    let mut candidates = candidates;
    let stream = view.stream;
    let chat_body = match candidates.iter().find(|(_, p)| !p.serves(Api::RESPONSES)) {
        None => None,
        Some((_, foreign)) => match responses_chat::to_chat(&body) {
            Ok(chat) => Some(chat),
            Err((field, why)) => {
                let message = format!(
                    "provider {} has no Responses API, and `{field}` cannot be sent to it as chat: {why}",
                    foreign.name
                );
                candidates.retain(|(_, p)| p.serves(Api::RESPONSES));
                if candidates.is_empty() {
                    trace.error = Some(message.clone());
                    return super::api::error_response(
                        CLIENT,
                        StatusCode::BAD_REQUEST,
                        None,
                        &message,
                    );
                }
                None
            }
        },
    };
    if let Some(chat) = &chat_body {
        // Only providers without the API get the chat form.
        let foreign = |p: &Provider| !p.serves(Api::RESPONSES);
        if let Err(message) =
            super::keep_translatable(CLIENT, chat, &view.model, &mut candidates, foreign)
        {
            trace.error = Some(message.clone());
            return super::api::error_response(CLIENT, StatusCode::BAD_REQUEST, None, &message);
        }
    }
    let chat_view = chat_body
        .as_ref()
        .map(|b| chat::request_view(CLIENT, b, family));
    let call = chat_body
        .as_ref()
        .zip(chat_view.as_ref())
        .map(|(original, view)| ChatCall {
            parts: &parts,
            original,
            view,
            from: CLIENT,
            edited: false,
            stream,
        });

    let attempt = |p: &Provider| {
        if let Some(call) = call.as_ref().filter(|_| !p.serves(Api::RESPONSES)) {
            return call.request_for(p, &llm);
        }
        let mut out = body.clone();
        if let Some(model) = &p.model {
            out.insert("model".into(), model.clone().into());
        }
        let bytes = Bytes::from(Value::Object(out).to_string());
        let path = p.uri_for(Api::RESPONSES, parts.uri.path(), parts.uri.query());
        super::json_post(p, super::forwarded_headers(&parts), &path, bytes, &llm)
    };
    let exchange = super::Exchange {
        shared: &shared,
        llm: &llm,
        candidates: &candidates,
        head_timeout,
        max_body,
        client: CLIENT,
    };
    let (provider, resp) = match exchange.send(attempt, trace).await {
        Ok(ok) => ok,
        Err(answer) => return answer,
    };
    if let Some(call) = call.as_ref().filter(|_| !provider.serves(Api::RESPONSES)) {
        let answer = ChatAnswer {
            run,
            route,
            max_body,
            requested_model,
            reader: Reader::Responses(responses_chat::Echo::of(&body)),
        };
        return answer.read(shared, &llm, provider, resp, call, trace).await;
    }
    if super::is_event_stream(&resp) {
        let relay = ResponsesStream::new(StreamGuard::new(run, &provider, &requested_model));
        return super::stream_response(shared, resp, relay, &llm, route, provider);
    }

    let bytes = match super::read_idle(resp.into_body(), max_body, llm.idle_timeout).await {
        Ok(b) => b,
        Err(e) => {
            trace.error = Some(e.clone());
            return super::api::error_response(
                CLIENT,
                StatusCode::BAD_GATEWAY,
                Some("api_error"),
                &e,
            );
        }
    };
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        trace.error = Some("provider answer is not JSON".into());
        return super::api::error_response(
            CLIENT,
            StatusCode::BAD_GATEWAY,
            Some("api_error"),
            &format!("provider {} sent an answer that is not JSON", provider.name),
        );
    };
    let mut view = response_view(&answer, provider.family);
    let mut edited = false;
    if run.wants(Hooks::LLM_RESPONSE) {
        let verdict = run.run::<OnLlmResponse>(&mut view);
        if let Some(stop) = super::settle(verdict, &run, CLIENT, trace) {
            return stop;
        }
        edited = run.modified::<OnLlmResponse>();
    }
    let model = if view.model.is_empty() {
        &requested_model
    } else {
        &view.model
    };
    shared.llm_metrics.record(
        &route,
        &provider.name,
        model,
        view.usage.map(|u| (u.input, u.output, u.cached_input)),
    );
    let out = if edited {
        apply_response_edit(&mut answer, &view);
        Bytes::from(answer.to_string())
    } else {
        bytes
    };
    let mut resp = Response::new(crate::proxy::full(out));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    super::with_provider(resp, &provider)
}

// ---- the request ----------------------------------------------------------

/// Where each message of the view came from in the body, to write an edit
/// back into the same places (and so keep every item the view does not
/// show: reasoning, item references, built-in tool calls).
#[derive(Debug)]
pub struct RequestShape {
    sources: Vec<Source>,
    roles: Vec<Role>,
}

#[derive(Debug)]
enum Source {
    /// A string or a list of content parts at this JSON pointer; for a
    /// list, the indices of its text parts.
    Text {
        pointer: String,
        parts: Option<Vec<usize>>,
    },
    /// A `function_call` item: `input[item]`.
    Call { item: usize },
}

/// The view of a content value (a string, or a list of parts), and the
/// indices of its text parts when it is a list.
fn content_of(v: &Value) -> (Vec<ContentPart>, Option<Vec<usize>>) {
    match v {
        Value::String(s) => (vec![ContentPart::Text(s.clone())], None),
        Value::Array(parts) => {
            let mut indices = Vec::new();
            let content = parts
                .iter()
                .enumerate()
                .map(|(i, p)| match p.get("text") {
                    Some(Value::String(t))
                        if p.get("type")
                            .and_then(Value::as_str)
                            .is_none_or(|k| k.ends_with("text")) =>
                    {
                        indices.push(i);
                        ContentPart::Text(t.clone())
                    }
                    _ => ContentPart::Other(p.to_string()),
                })
                .collect();
            (content, Some(indices))
        }
        _ => (Vec::new(), Some(Vec::new())),
    }
}

/// The neutral view of a Responses request, and where its messages came from.
pub fn request_view(body: &Map<String, Value>, provider: &str) -> (LlmRequest, RequestShape) {
    let mut messages = Vec::new();
    let mut sources = Vec::new();
    let text_at = |messages: &mut Vec<ChatMessage>, role, pointer: String, v: &Value| {
        let (content, parts) = content_of(v);
        messages.push(message(role, content));
        Source::Text { pointer, parts }
    };
    if let Some(v @ Value::String(_)) = body.get("instructions") {
        sources.push(text_at(
            &mut messages,
            Role::System,
            "/instructions".into(),
            v,
        ));
    }
    match body.get("input") {
        Some(v @ Value::String(_)) => {
            sources.push(text_at(&mut messages, Role::User, "/input".into(), v));
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let kind = item.get("type").and_then(Value::as_str);
                match kind {
                    Some("message") | None if item.get("role").is_some() => {
                        let role = match item.get("role").and_then(Value::as_str) {
                            Some("system") => Role::System,
                            Some("developer") => Role::Developer,
                            Some("assistant") => Role::Assistant,
                            _ => Role::User,
                        };
                        let content = item.get("content").unwrap_or(&Value::Null);
                        let at = format!("/input/{i}/content");
                        sources.push(text_at(&mut messages, role, at, content));
                    }
                    Some("function_call_output") => {
                        let output = item.get("output").unwrap_or(&Value::Null);
                        let at = format!("/input/{i}/output");
                        sources.push(text_at(&mut messages, Role::Tool, at, output));
                        if let Some(m) = messages.last_mut() {
                            m.tool_call_id = str_field(item, "call_id");
                        }
                    }
                    Some("function_call") => {
                        let mut m = message(Role::Assistant, Vec::new());
                        m.tool_calls.push(ToolCall {
                            id: str_field(item, "call_id").unwrap_or_default(),
                            name: str_field(item, "name").unwrap_or_default(),
                            arguments: str_field(item, "arguments").unwrap_or_else(|| "{}".into()),
                        });
                        messages.push(m);
                        sources.push(Source::Call { item: i });
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .map(|f| tool_definition(f, "parameters"))
        .collect();
    let roles = messages.iter().map(|m| m.role).collect();
    let view = LlmRequest {
        provider: provider.to_string(),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        messages,
        tools,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    };
    (view, RequestShape { sources, roles })
}

/// A message's text parts.
pub(super) fn texts(m: &ChatMessage) -> Vec<&str> {
    m.content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Other(_) => None,
        })
        .collect()
}

impl RequestShape {
    /// Put the plugins' messages into the body: into the places they came
    /// from when they are the same messages (same count and roles), else as
    /// a new `input` list (with `instructions` folded into it).
    pub fn write_back(&self, body: &mut Map<String, Value>, messages: &[ChatMessage]) {
        let same = messages.len() == self.sources.len()
            && messages.iter().zip(&self.roles).all(|(m, r)| m.role == *r);
        if !same {
            body.remove("instructions");
            body.insert("input".into(), Value::Array(items_of(messages)));
            return;
        }
        let mut whole = Value::Object(std::mem::take(body));
        for (source, m) in self.sources.iter().zip(messages) {
            match source {
                Source::Text { pointer, parts } => {
                    let Some(at) = whole.pointer_mut(pointer) else {
                        continue;
                    };
                    write_texts(at, parts.as_deref(), &texts(m));
                }
                Source::Call { item } => {
                    let (Some(at), Some(call)) = (
                        whole.pointer_mut(&format!("/input/{item}")),
                        m.tool_calls.first(),
                    ) else {
                        continue;
                    };
                    at["name"] = call.name.clone().into();
                    at["arguments"] = call.arguments.clone().into();
                }
            }
        }
        if let Value::Object(map) = whole {
            *body = map;
        }
    }
}

/// Texts into a content value: a string takes them all; a list's text
/// parts take one each when the counts agree, else all go to the first.
pub(super) fn write_texts(at: &mut Value, parts: Option<&[usize]>, texts: &[&str]) {
    let Some(indices) = parts else {
        *at = texts.concat().into();
        return;
    };
    for (n, &i) in indices.iter().enumerate() {
        let text = if texts.len() == indices.len() {
            texts[n].to_string()
        } else if n == 0 {
            texts.concat()
        } else {
            String::new()
        };
        if let Some(part) = at.get_mut(i) {
            part["text"] = text.into();
        }
    }
}

/// Input items that say what these messages say.
fn items_of(messages: &[ChatMessage]) -> Vec<Value> {
    let mut items = Vec::new();
    for m in messages {
        let role = match m.role {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => {
                items.push(json!({"type": "function_call_output",
                    "call_id": m.tool_call_id.clone().unwrap_or_default(),
                    "output": texts(m).concat()}));
                continue;
            }
        };
        let text_type = if m.role == Role::Assistant {
            "output_text"
        } else {
            "input_text"
        };
        if !m.content.is_empty() {
            let content: Vec<Value> = m
                .content
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => json!({"type": text_type, "text": t}),
                    ContentPart::Other(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
                })
                .collect();
            items.push(json!({"type": "message", "role": role, "content": content}));
        }
        for call in &m.tool_calls {
            items.push(json!({"type": "function_call", "call_id": call.id,
                "name": call.name, "arguments": call.arguments}));
        }
    }
    items
}

// ---- a whole answer ---------------------------------------------------------

fn output_items(body: &Value) -> impl Iterator<Item = &Value> {
    body.get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn is_output_text(part: &Value) -> bool {
    part.get("type").and_then(Value::as_str) == Some("output_text")
}

/// The neutral view of a (non-streamed) Responses answer.
pub fn response_view(body: &Value, provider: &str) -> LlmResponse {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for item in output_items(body) {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| is_output_text(p))
                {
                    text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                }
            }
            Some("function_call") => tool_calls.push(ToolCall {
                id: str_field(item, "call_id").unwrap_or_default(),
                name: str_field(item, "name").unwrap_or_default(),
                arguments: str_field(item, "arguments").unwrap_or_else(|| "{}".into()),
            }),
            _ => {}
        }
    }
    let incomplete = body
        .pointer("/incomplete_details/reason")
        .and_then(Value::as_str);
    let finish = match (incomplete, tool_calls.is_empty()) {
        (Some("max_output_tokens"), _) => "length",
        (Some("content_filter"), _) => "content_filter",
        (_, false) => "tool_calls",
        _ => "stop",
    };
    LlmResponse {
        provider: provider.to_string(),
        model: str_field(body, "model").unwrap_or_default(),
        text,
        tool_calls,
        usage: answer_events::usage_of(body),
        finish_reason: Some(finish.into()),
    }
}

/// Put a plugin's edit of the view back into the answer: the text into its
/// first text part (the others emptied), the tool calls into the
/// `function_call` items in order; every other field as the provider sent it.
pub fn apply_response_edit(body: &mut Value, view: &LlmResponse) {
    let Some(Value::Array(output)) = body.get_mut("output") else {
        return;
    };
    let mut text = Some(view.text.clone());
    let mut calls = view.tool_calls.iter();
    output.retain_mut(|item| match item.get("type").and_then(Value::as_str) {
        Some("message") => {
            if let Some(Value::Array(content)) = item.get_mut("content") {
                for part in content.iter_mut().filter(|p| is_output_text(p)) {
                    part["text"] = text.take().unwrap_or_default().into();
                }
            }
            true
        }
        Some("function_call") => match calls.next() {
            Some(call) => {
                item["call_id"] = call.id.clone().into();
                item["name"] = call.name.clone().into();
                item["arguments"] = call.arguments.clone().into();
                true
            }
            None => false,
        },
        _ => true,
    });
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        output.push(json!({"type": "message", "id": "msg_wardgate", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}));
    }
    for (n, call) in calls.enumerate() {
        output.push(json!({"type": "function_call", "id": format!("fc_wardgate_{n}"),
            "status": "completed", "call_id": call.id, "name": call.name, "arguments": call.arguments}));
    }
}

// ---- a streamed answer ------------------------------------------------------

/// The events of a streamed answer on their way to the client. When the
/// guard holds a delta back or adds one, the later events' sequence
/// numbers shift so the client still sees 0, 1, 2, ...
struct ResponsesStream {
    answer: AnswerEvents,
    shift: i64,
    next_seq: u64,
    /// The provider's last event came.
    ended: bool,
    /// Ended with an error event of ours.
    failed: bool,
}

impl ResponsesStream {
    fn new(guard: StreamGuard) -> ResponsesStream {
        ResponsesStream {
            answer: AnswerEvents::new(guard),
            shift: 0,
            next_seq: 0,
            ended: false,
            failed: false,
        }
    }

    /// Write `event` with its sequence number moved by the shift so far.
    fn write(&mut self, out: &mut BytesMut, mut event: Value) {
        if let Some(seq) = event.get("sequence_number").and_then(Value::as_u64) {
            let seq = seq.saturating_add_signed(self.shift);
            event["sequence_number"] = seq.into();
            self.next_seq = seq + 1;
        }
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_string();
        frame(out, Some(&kind), &event.to_string());
    }
}

fn frame(out: &mut BytesMut, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
}

impl EventRelay for ResponsesStream {
    fn relay(&mut self, ev: &SseEvent, out: &mut BytesMut) {
        if self.ended || self.failed {
            return;
        }
        let Some((kind, seq)) = head_of(&ev.data) else {
            return frame(out, ev.event.as_deref(), &ev.data);
        };
        self.ended = matches!(
            &*kind,
            "response.completed" | "response.incomplete" | "response.failed" | "error"
        );
        match self.answer.event(&kind, &ev.data) {
            answer_events::Outbound::Pass if self.shift == 0 => {
                if let Some(seq) = seq {
                    self.next_seq = seq + 1;
                }
                frame(out, ev.event.as_deref(), &ev.data);
            }
            answer_events::Outbound::Pass => match serde_json::from_str(&ev.data) {
                Ok(event) => self.write(out, event),
                Err(_) => frame(out, ev.event.as_deref(), &ev.data),
            },
            answer_events::Outbound::Drop => self.shift -= 1,
            answer_events::Outbound::Send { held, event } => {
                if let Some(mut held) = held {
                    // Numbered as the event it comes before; that one moves on.
                    held["sequence_number"] = event["sequence_number"].clone();
                    self.write(out, held);
                    self.shift += 1;
                }
                self.write(out, event);
            }
            answer_events::Outbound::End(reason) => {
                self.ended = false;
                self.fail_with(out, "policy_denied", &reason);
            }
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        if !self.ended && !self.failed {
            let reason = self
                .answer
                .guard
                .done(self.answer.usage())
                .unwrap_or_else(|| "the provider's stream ended early".into());
            self.fail_with(out, "server_error", &reason);
        }
    }

    fn fail(&mut self, out: &mut BytesMut, message: &str) {
        self.fail_with(out, "server_error", message);
    }

    fn finished(&self) -> bool {
        self.ended || self.failed
    }

    fn provider_done(&self) -> bool {
        self.ended && !self.failed
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.answer.usage()
    }

    fn model(&self) -> &str {
        self.answer.model()
    }
}

impl ResponsesStream {
    /// End the client's stream with a Responses `error` event.
    fn fail_with(&mut self, out: &mut BytesMut, code: &str, message: &str) {
        self.failed = true;
        let event = json!({"type": "error", "code": code, "message": message,
            "param": null, "sequence_number": self.next_seq});
        frame(out, Some("error"), &event.to_string());
    }
}

/// An event's `type` and `sequence_number`, read without building the event.
fn head_of(data: &str) -> Option<(Cow<'_, str>, Option<u64>)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
        sequence_number: Option<u64>,
    }
    serde_json::from_str::<Head>(data)
        .ok()
        .map(|h| (h.kind, h.sequence_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn text(s: &str) -> Vec<ContentPart> {
        vec![ContentPart::Text(s.into())]
    }

    #[test]
    fn instructions_and_input_items_are_messages_and_take_edits_back_in_place() {
        let mut b = body(json!({"model": "m", "instructions": "be brief", "input": [
            {"role": "user", "content": "plain string"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "one"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                {"type": "input_text", "text": "two"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "result"}],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                      {"type": "web_search"}]}));
        let (mut view, shape) = request_view(&b, "p");
        let roles: Vec<Role> = view.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::User,
                Role::Assistant,
                Role::Tool
            ]
        );
        assert_eq!(texts(&view.messages[2]), ["one", "two"]);
        assert!(matches!(view.messages[2].content[1], ContentPart::Other(_)));
        assert_eq!(view.messages[3].tool_calls[0].id, "c1");
        assert_eq!(view.messages[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(view.tools.len(), 1, "only function tools have a schema");

        view.messages[0].content = text("be kind");
        view.messages[1].content = text("PLAIN");
        view.messages[2].content = vec![
            ContentPart::Text("ONE".into()),
            ContentPart::Text("TWO".into()),
        ];
        view.messages[3].tool_calls[0].arguments = r#"{"x":1}"#.into();
        view.messages[4].content = text("RESULT");
        shape.write_back(&mut b, &view.messages);
        let b = Value::Object(b);
        assert_eq!(b["instructions"], "be kind");
        assert_eq!(b["input"][0]["content"], "PLAIN");
        assert_eq!(b["input"][1]["content"][0]["text"], "ONE");
        assert_eq!(b["input"][1]["content"][1]["type"], "input_image");
        assert_eq!(b["input"][1]["content"][2]["text"], "TWO");
        assert_eq!(b["input"][2]["id"], "rs_1", "items the view skips stay");
        assert_eq!(b["input"][3]["arguments"], r#"{"x":1}"#);
        assert_eq!(b["input"][4]["output"], "RESULT");
    }

    #[test]
    fn other_messages_become_a_new_input_list() {
        let mut b = body(json!({"model": "m", "instructions": "be brief", "input": "hi"}));
        let (mut view, shape) = request_view(&b, "p");
        assert_eq!(texts(&view.messages[1]), ["hi"]);
        view.messages
            .insert(1, message(Role::Developer, text("added")));
        let mut call = message(Role::Assistant, Vec::new());
        call.tool_calls.push(ToolCall {
            id: "c9".into(),
            name: "f".into(),
            arguments: "{}".into(),
        });
        view.messages.push(call);
        shape.write_back(&mut b, &view.messages);
        let b = Value::Object(b);
        assert!(b.get("instructions").is_none(), "{b}");
        let input = b["input"].as_array().unwrap();
        assert_eq!(input.len(), 4, "{b}");
        assert_eq!(input[0]["role"], "system");
        assert_eq!(input[0]["content"][0]["text"], "be brief");
        assert_eq!(input[1]["role"], "developer");
        assert_eq!(
            input[2]["content"][0],
            json!({"type": "input_text", "text": "hi"})
        );
        assert_eq!(input[3]["type"], "function_call");
        assert_eq!(input[3]["call_id"], "c9");
    }

    #[test]
    fn an_answers_text_tool_calls_and_usage_are_read_and_edited_back() {
        let mut answer = json!({"id": "resp_1", "object": "response", "model": "gpt-x",
            "status": "completed", "incomplete_details": null, "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "id": "msg_1", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Hello ", "annotations": []},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "world", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "g", "arguments": "{}"}],
            "usage": {"input_tokens": 9, "output_tokens": 4,
                      "input_tokens_details": {"cached_tokens": 2}, "total_tokens": 13}});
        let mut view = response_view(&answer, "p");
        assert_eq!(view.text, "Hello world");
        assert_eq!(view.model, "gpt-x");
        assert_eq!(view.tool_calls.len(), 2);
        assert_eq!(view.finish_reason.as_deref(), Some("tool_calls"));
        let u = view.usage.unwrap();
        assert_eq!((u.input, u.output, u.cached_input), (9, 4, 2));

        view.text = "Hello <MASKED>".into();
        view.tool_calls.truncate(1);
        view.tool_calls[0].arguments = r#"{"safe":true}"#.into();
        apply_response_edit(&mut answer, &view);
        let output = answer["output"].as_array().unwrap();
        assert_eq!(output.len(), 3, "{answer}");
        assert_eq!(output[0]["id"], "rs_1");
        assert_eq!(output[1]["content"][0]["text"], "Hello <MASKED>");
        assert_eq!(output[1]["content"][1]["refusal"], "no");
        assert_eq!(output[1]["content"][2]["text"], "");
        assert_eq!(output[2]["arguments"], r#"{"safe":true}"#);

        let cut = json!({"status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
        assert_eq!(
            response_view(&cut, "p").finish_reason.as_deref(),
            Some("length")
        );
    }

    #[test]
    fn an_events_head_is_read_without_the_rest() {
        let (kind, seq) =
            head_of(r#"{"type":"response.output_text.delta","delta":"x","sequence_number":7}"#)
                .unwrap();
        assert_eq!((&*kind, seq), ("response.output_text.delta", Some(7)));
        assert_eq!(head_of(r#"{"type":"x"}"#).unwrap().1, None);
        assert!(head_of("[DONE]").is_none());
    }
}
