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
//!   The answer side is [`super::super::answer_events`], shared with the
//!   Responses API's streams.
//!
//! Audio passes as it came; only its transcript is seen.

use std::io;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::super::StreamGuard;
use super::super::answer_events::{self, AnswerEvents, kind_of};
use super::super::chat;
use super::super::responses::write_texts;
use crate::backend::upgrade::{Relay, Side};
use crate::policy::Verdict;
use crate::policy::bindings::{ChatMessage, ContentPart, Hooks, LlmRequest, Role as ChatRole};
use crate::policy::hooks::OnLlmRequest;

/// A session's guard: the chain's run, inside the guard of the answers.
pub struct SessionGuard {
    answer: AnswerEvents,
    provider: String,
    model: String,
    request_hook: bool,
    /// Events the gateway made itself, numbered for their `event_id`.
    made: u64,
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

impl SessionGuard {
    pub(super) fn new(guard: StreamGuard, provider: &str, model: &str) -> SessionGuard {
        SessionGuard {
            request_hook: guard.run.wants(Hooks::LLM_REQUEST),
            answer: AnswerEvents::new(guard),
            provider: provider.to_string(),
            model: model.to_string(),
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
        let run = &mut self.answer.guard.run;
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
        let Some(kind) = kind_of(text) else {
            return Outbound::Pass;
        };
        match self.answer.event(&kind, text) {
            answer_events::Outbound::Pass => Outbound::Pass,
            answer_events::Outbound::Drop => Outbound::Send(Vec::new()),
            answer_events::Outbound::Send { held, event } => {
                let mut out = Vec::new();
                if let Some(mut held) = held {
                    held["event_id"] = self.next_event_id().into();
                    out.push(held.to_string());
                }
                out.push(event.to_string());
                Outbound::Send(out)
            }
            answer_events::Outbound::End(reason) => {
                Outbound::End(self.error_event("policy_denied", &reason, None))
            }
        }
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
        let (pointer, parts) = match self {
            Place::Field(pointer) => (*pointer, None),
            Place::Content(indices) => ("/item/content", Some(indices.as_slice())),
        };
        if let Some(at) = event.pointer_mut(pointer) {
            write_texts(at, parts, texts);
        }
    }
}

/// The message a client event gives the request hook, if it gives one.
fn message_of(event: &Value) -> Option<(ChatMessage, Place)> {
    let message = |role, texts: Vec<String>| {
        chat::message(role, texts.into_iter().map(ContentPart::Text).collect())
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

    use crate::backend::llm::responses::texts;

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
}
