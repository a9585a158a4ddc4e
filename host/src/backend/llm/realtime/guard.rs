//! The route's LLM hooks on a Realtime session, when its chain has any: the
//! tunnel then speaks WebSocket on both sides and reads the events.
//!
//! - Client to provider: a message item (`conversation.item.create`, its
//!   text parts; a tool's output as a `tool` message) and instructions
//!   (`session.update`, `response.create`, as a `system` message) go
//!   through the request hook first. A denial drops the event and answers
//!   the client with an `error` event naming the plugin's reason; an edit
//!   is written back into the event.
//! - Provider to client: text and transcript deltas go through the chunk
//!   hook as a streamed answer's do (lookbehind, held-back text released
//!   at the part's `.done`); every later event that repeats a part's text
//!   (`.done`, `content_part.done`, `output_item.done`, `response.done`)
//!   carries what the client was sent instead. A denial ends the session:
//!   an `error` event, then close code 1008 (policy violation) both ways.
//!
//! Audio passes as it came; only its transcript is seen.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::super::StreamGuard;
use super::super::stream::{ChunkGuard, TextVerdict};
use crate::backend::upgrade::{Relay, Side};
use crate::policy::Verdict;
use crate::policy::bindings::{
    ChatMessage, ContentPart, Hooks, LlmRequest, Role as ChatRole, TokenUsage,
};
use crate::policy::hooks::OnLlmRequest;

/// A session's guard: the chain's run (inside the chunk guard), and the
/// parts whose text the client got changed.
pub struct SessionGuard {
    guard: StreamGuard,
    provider: String,
    model: String,
    request_hook: bool,
    /// Text parts of the answer being streamed, by (item id, content index).
    parts: HashMap<(String, u64), Part>,
    /// Events the gateway made itself, numbered for their `event_id`.
    made: u64,
}

#[derive(Default)]
struct Part {
    original: String,
    sent: String,
}

/// What to do with an event the client sent.
enum Inbound {
    Forward(Option<String>),
    Refuse(String),
}

/// What to do with an event the provider sent.
enum Outbound {
    /// Send it as it came.
    Pass,
    /// Send these instead.
    Send(Vec<String>),
    /// Send this error event and end the session.
    End(String),
}

const TEXT_DELTAS: [&str; 4] = [
    "response.output_text.delta",
    "response.text.delta",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
];
const TEXT_DONE: [&str; 4] = [
    "response.output_text.done",
    "response.text.done",
    "response.output_audio_transcript.done",
    "response.audio_transcript.done",
];

impl SessionGuard {
    pub(super) fn new(guard: StreamGuard, provider: &str, model: &str) -> SessionGuard {
        SessionGuard {
            request_hook: guard.run.wants(Hooks::LLM_REQUEST),
            guard,
            provider: provider.to_string(),
            model: model.to_string(),
            parts: HashMap::new(),
            made: 0,
        }
    }

    /// The relay that carries the session through this guard.
    pub fn relay(self) -> Relay {
        Box::new(|client, upstream| Box::pin(self.carry(client, upstream)))
    }

    async fn carry(mut self, client: Side, upstream: Side) -> io::Result<()> {
        let mut client = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
        let mut upstream = WebSocketStream::from_raw_socket(upstream, Role::Client, None).await;
        loop {
            tokio::select! {
                from_client = client.next() => match from_client {
                    Some(Ok(Message::Text(text))) => match self.inbound(&text) {
                        Inbound::Forward(None) => upstream.send(Message::Text(text)).await.map_err(io::Error::other)?,
                        Inbound::Forward(Some(edited)) => upstream.send(Message::text(edited)).await.map_err(io::Error::other)?,
                        Inbound::Refuse(error) => client.send(Message::text(error)).await.map_err(io::Error::other)?,
                    },
                    Some(Ok(Message::Binary(data))) => upstream.send(Message::Binary(data)).await.map_err(io::Error::other)?,
                    // Each hop answers its own pings (tungstenite does).
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => return close_both(client, upstream, frame).await,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    None => return close_both(client, upstream, None).await,
                },
                from_upstream = upstream.next() => match from_upstream {
                    Some(Ok(Message::Text(text))) => match self.outbound(&text) {
                        Outbound::Pass => client.send(Message::Text(text)).await.map_err(io::Error::other)?,
                        Outbound::Send(events) => {
                            for event in events {
                                client.feed(Message::text(event)).await.map_err(io::Error::other)?;
                            }
                            client.flush().await.map_err(io::Error::other)?;
                        }
                        Outbound::End(error) => {
                            let _ = client.send(Message::text(error)).await;
                            let frame = CloseFrame {
                                code: CloseCode::Policy,
                                reason: "stopped by the gateway's policy".into(),
                            };
                            let _ = client.close(Some(frame.clone())).await;
                            return close_both(client, upstream, Some(frame)).await;
                        }
                    },
                    Some(Ok(Message::Binary(data))) => client.send(Message::Binary(data)).await.map_err(io::Error::other)?,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => return close_both(upstream, client, frame).await,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    None => return close_both(upstream, client, None).await,
                },
            }
        }
    }

    /// A client event through the request hook, when it carries text.
    fn inbound(&mut self, text: &str) -> Inbound {
        if !self.request_hook {
            return Inbound::Forward(None);
        }
        // Most of what a client sends is audio, which no hook reads.
        let kind = kind_of(text);
        let checked = [
            "session.update",
            "response.create",
            "conversation.item.create",
        ];
        if !kind.is_some_and(|k| checked.contains(&&*k)) {
            return Inbound::Forward(None);
        }
        let Ok(mut event) = serde_json::from_str::<Value>(text) else {
            return Inbound::Forward(None);
        };
        let Some((message, place)) = message_of(&event) else {
            return Inbound::Forward(None);
        };
        let mut request = LlmRequest {
            provider: self.provider.clone(),
            model: self.model.clone(),
            messages: vec![message],
            tools: Vec::new(),
            stream: true,
        };
        let run = &mut self.guard.run;
        let verdict = run.run::<OnLlmRequest>(&mut request);
        let edited = run.modified::<OnLlmRequest>();
        run.request_phase_done();
        let request_id = run.context().request_id.clone();
        match verdict {
            Ok(Verdict::Continue) if edited => {
                let texts = request
                    .messages
                    .iter()
                    .flat_map(|m| &m.content)
                    .filter_map(|p| match p {
                        ContentPart::Text(t) => Some(t.as_str()),
                        ContentPart::Other(_) => None,
                    })
                    .collect::<Vec<_>>();
                place.write(&mut event, &texts);
                Inbound::Forward(Some(event.to_string()))
            }
            Ok(Verdict::Continue) => Inbound::Forward(None),
            Ok(Verdict::Deny { plugin, denial }) => {
                tracing::info!(%request_id, %plugin, provider = %self.provider, "Realtime event refused by a plugin");
                Inbound::Refuse(self.error_event(
                    "policy_denied",
                    &denial.body,
                    event.get("event_id"),
                ))
            }
            Err(failure) => {
                tracing::error!(%request_id, "{failure}");
                Inbound::Refuse(self.error_event(
                    "policy_failed",
                    &failure.to_string(),
                    event.get("event_id"),
                ))
            }
        }
    }

    /// A provider event through the chunk hook, and the texts it repeats
    /// set to what the client was sent.
    fn outbound(&mut self, text: &str) -> Outbound {
        if !self.guard.active {
            return Outbound::Pass;
        }
        // Read whole only the events the guard acts on: the text deltas and
        // ends, and while a part's text was changed, the events that may
        // repeat it (never another delta, such as an audio chunk).
        let Some(kind) = kind_of(text) else {
            return Outbound::Pass;
        };
        let reads = TEXT_DELTAS.contains(&&*kind)
            || TEXT_DONE.contains(&&*kind)
            || kind == "response.done"
            || (!self.parts.is_empty() && !kind.ends_with(".delta"));
        if !reads {
            return Outbound::Pass;
        }
        let Ok(mut event) = serde_json::from_str::<Value>(text) else {
            return Outbound::Pass;
        };
        let key = part_key(&event);
        if TEXT_DELTAS.contains(&&*kind)
            && let Some(key) = key
        {
            let delta = event
                .get("delta")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let kept = match self.guard.text(&delta) {
                TextVerdict::Keep => delta.clone(),
                TextVerdict::Replace(t) => t,
                TextVerdict::Stop(reason) => {
                    return Outbound::End(self.error_event("policy_denied", &reason, None));
                }
            };
            let part = self.parts.entry(key).or_default();
            part.original.push_str(&delta);
            part.sent.push_str(&kept);
            if kept.is_empty() {
                return Outbound::Send(Vec::new());
            }
            if kept == delta {
                return Outbound::Pass;
            }
            event["delta"] = kept.into();
            return Outbound::Send(vec![event.to_string()]);
        }
        let mut out = Vec::new();
        let mut changed = false;
        if let Some(i) = TEXT_DONE.iter().position(|d| *d == kind)
            && let Some(key) = key.clone()
        {
            match self.guard.text_end() {
                TextVerdict::Keep => {}
                TextVerdict::Replace(held) if held.is_empty() => {}
                TextVerdict::Replace(held) => {
                    // Text the plugins held back leaves as one more delta.
                    let mut delta = event.clone();
                    delta["type"] = TEXT_DELTAS[i].into();
                    delta["delta"] = held.clone().into();
                    delta["event_id"] = self.next_event_id().into();
                    if let Some(o) = delta.as_object_mut() {
                        o.remove("text");
                        o.remove("transcript");
                    }
                    out.push(delta.to_string());
                    self.parts
                        .entry(key.clone())
                        .or_default()
                        .sent
                        .push_str(&held);
                }
                TextVerdict::Stop(reason) => {
                    return Outbound::End(self.error_event("policy_denied", &reason, None));
                }
            }
            if let Some(part) = self.parts.get(&key) {
                if part.sent == part.original {
                    self.parts.remove(&key);
                } else {
                    for field in ["text", "transcript"] {
                        if event.get(field).is_some() {
                            event[field] = part.sent.clone().into();
                            changed = true;
                        }
                    }
                }
            }
        } else if kind == "response.done" {
            let usage = usage_of(&event);
            if let Some(reason) = self.guard.done(usage) {
                return Outbound::End(self.error_event("policy_denied", &reason, None));
            }
            self.guard.next_answer();
        }
        if !self.parts.is_empty() {
            changed |= self.rewrite_repeats(&mut event, key);
            if kind == "response.done" {
                // The last event to repeat the answer's text.
                self.parts.clear();
            }
        }
        if !changed && out.is_empty() {
            return Outbound::Pass;
        }
        out.push(event.to_string());
        Outbound::Send(out)
    }

    /// Set the text of every part this event repeats (an item's content, a
    /// content part, a response's output) to what the client was sent;
    /// whether it repeated any.
    fn rewrite_repeats(&self, event: &mut Value, key: Option<(String, u64)>) -> bool {
        let mut changed = false;
        let mut set = |part: &mut Value, sent: &str| {
            for field in ["text", "transcript"] {
                if part.get(field).is_some() {
                    part[field] = sent.into();
                    changed = true;
                }
            }
        };
        if let (Some(key), Some(part)) = (key, event.get_mut("part"))
            && let Some(p) = self.parts.get(&key)
        {
            set(part, &p.sent);
        }
        let Some(event) = event.as_object_mut() else {
            return changed;
        };
        let mut items: Vec<&mut Value> = Vec::new();
        for (field, value) in event.iter_mut() {
            match (field.as_str(), value) {
                ("item", item) => items.push(item),
                ("response", response) => {
                    if let Some(Value::Array(output)) = response.get_mut("output") {
                        items.extend(output.iter_mut());
                    }
                }
                _ => {}
            }
        }
        for item in items {
            let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            if let Some(Value::Array(content)) = item.get_mut("content") {
                for (i, part) in content.iter_mut().enumerate() {
                    if let Some(p) = self.parts.get(&(id.clone(), i as u64)) {
                        set(part, &p.sent);
                    }
                }
            }
        }
        changed
    }

    /// A Realtime `error` event, as the provider would send one; `about`
    /// is the client event it answers.
    fn error_event(&mut self, code: &str, message: &str, about: Option<&Value>) -> String {
        json!({
            "type": "error",
            "event_id": self.next_event_id(),
            "error": {
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": null,
                "event_id": about.cloned().unwrap_or(Value::Null),
            }
        })
        .to_string()
    }

    fn next_event_id(&mut self) -> String {
        self.made += 1;
        format!("event_wardgate_{}", self.made)
    }
}

/// Where a checked message's text lives in its event, to write an edit back.
enum Place {
    /// `item.content[i].text` for each of these indices.
    Content(Vec<usize>),
    /// A string at this JSON pointer.
    Field(&'static str),
}

impl Place {
    fn write(&self, event: &mut Value, texts: &[&str]) {
        match self {
            Place::Field(pointer) => {
                if let Some(v) = event.pointer_mut(pointer) {
                    *v = texts.concat().into();
                }
            }
            Place::Content(indices) => {
                let Some(Value::Array(content)) = event.pointer_mut("/item/content") else {
                    return;
                };
                // As many texts as parts: one each; otherwise all in the first.
                for (n, &i) in indices.iter().enumerate() {
                    let text = if texts.len() == indices.len() {
                        texts[n].to_string()
                    } else if n == 0 {
                        texts.concat()
                    } else {
                        String::new()
                    };
                    content[i]["text"] = text.into();
                }
            }
        }
    }
}

/// The message a client event gives the request hook, if it gives one.
fn message_of(event: &Value) -> Option<(ChatMessage, Place)> {
    let message = |role, texts: Vec<String>| ChatMessage {
        role,
        content: texts.into_iter().map(ContentPart::Text).collect(),
        name: None,
        tool_call_id: None,
        tool_calls: Vec::new(),
    };
    let instructions = |pointer: &'static str| {
        let text = event.pointer(pointer)?.as_str()?;
        Some((
            message(ChatRole::System, vec![text.to_string()]),
            Place::Field(pointer),
        ))
    };
    match event.get("type")?.as_str()? {
        "session.update" => instructions("/session/instructions"),
        "response.create" => instructions("/response/instructions"),
        "conversation.item.create" => {
            let item = event.get("item")?;
            match item.get("type").and_then(Value::as_str) {
                Some("function_call_output") => {
                    let output = item.get("output")?.as_str()?;
                    let mut m = message(ChatRole::Tool, vec![output.to_string()]);
                    m.tool_call_id = item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    Some((m, Place::Field("/item/output")))
                }
                Some("message") | None => {
                    let role = match item.get("role").and_then(Value::as_str) {
                        Some("system") => ChatRole::System,
                        Some("assistant") => ChatRole::Assistant,
                        _ => ChatRole::User,
                    };
                    let (indices, texts): (Vec<usize>, Vec<String>) = item
                        .get("content")?
                        .as_array()?
                        .iter()
                        .enumerate()
                        .filter_map(|(i, part)| Some((i, part.get("text")?.as_str()?.to_string())))
                        .unzip();
                    if texts.is_empty() {
                        return None;
                    }
                    Some((message(role, texts), Place::Content(indices)))
                }
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// An event's `type`, read without building the event: audio events carry
/// large base64 payloads the guard has no use for.
fn kind_of(text: &str) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
    }
    serde_json::from_str::<Kind>(text).ok().map(|k| k.kind)
}

/// The (item id, content index) an event is about.
fn part_key(event: &Value) -> Option<(String, u64)> {
    let item = event.get("item_id")?.as_str()?;
    let index = event
        .get("content_index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((item.to_string(), index))
}

/// A `response.done`'s usage, in the hooks' terms.
fn usage_of(event: &Value) -> Option<TokenUsage> {
    let usage = event.pointer("/response/usage")?;
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(TokenUsage {
        input: n("input_tokens"),
        output: n("output_tokens"),
        cached_input: usage
            .pointer("/input_token_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// `from` ended the session (with `frame`, or by going away): pass the
/// close on, answer it, and let both connections go.
async fn close_both(
    mut from: WebSocketStream<Side>,
    mut to: WebSocketStream<Side>,
    frame: Option<CloseFrame>,
) -> io::Result<()> {
    let _ = to.close(frame).await;
    // The close handshake's answer (tungstenite queued it on reading the close).
    let _ = from.flush().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(_)) = to.next().await {}
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(m: &ChatMessage) -> Vec<&str> {
        m.content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                ContentPart::Other(_) => None,
            })
            .collect()
    }

    #[test]
    fn message_items_give_their_text_parts_and_take_edits_back() {
        let mut event = json!({"type": "conversation.item.create", "event_id": "e1", "item": {
            "type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "one"},
                {"type": "input_audio", "audio": "AAAA"},
                {"type": "input_text", "text": "two"}]}});
        let (message, place) = message_of(&event).unwrap();
        assert_eq!(message.role, ChatRole::User);
        assert_eq!(texts(&message), ["one", "two"]);
        // One text per part: each goes back to its own.
        place.write(&mut event, &["ONE", "TWO"]);
        assert_eq!(event.pointer("/item/content/0/text").unwrap(), "ONE");
        assert_eq!(event.pointer("/item/content/1/audio").unwrap(), "AAAA");
        assert_eq!(event.pointer("/item/content/2/text").unwrap(), "TWO");
        // Another count: all of it in the first part.
        place.write(&mut event, &["merged"]);
        assert_eq!(event.pointer("/item/content/0/text").unwrap(), "merged");
        assert_eq!(event.pointer("/item/content/2/text").unwrap(), "");
    }

    #[test]
    fn instructions_and_tool_output_are_messages_too() {
        let mut event = json!({"type": "session.update", "session": {"instructions": "be terse"}});
        let (message, place) = message_of(&event).unwrap();
        assert_eq!(
            (message.role, texts(&message)),
            (ChatRole::System, vec!["be terse"])
        );
        place.write(&mut event, &["be kind"]);
        assert_eq!(event.pointer("/session/instructions").unwrap(), "be kind");

        let event = json!({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_1", "output": "{\"ok\":true}"}});
        let (message, _) = message_of(&event).unwrap();
        assert_eq!(message.role, ChatRole::Tool);
        assert_eq!(message.tool_call_id.as_deref(), Some("call_1"));

        // Nothing to check: audio alone, or an event without text.
        let audio = json!({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "AAAA"}]}});
        assert!(message_of(&audio).is_none());
        assert!(message_of(&json!({"type": "input_audio_buffer.commit"})).is_none());
    }

    #[test]
    fn an_events_type_is_read_without_the_rest() {
        let audio = r#"{"event_id":"e","audio":"AAAA","type":"input_audio_buffer.append"}"#;
        assert_eq!(kind_of(audio).as_deref(), Some("input_audio_buffer.append"));
        // Escaped text still reads (as an owned copy); no type, or no JSON: none.
        assert_eq!(
            kind_of(r#"{"type":"response.done\u0021"}"#).as_deref(),
            Some("response.done!")
        );
        assert_eq!(kind_of(r#"{"delta":"x"}"#), None);
        assert_eq!(kind_of("not json"), None);
    }
}
