//! An answer told as events in the vocabulary OpenAI's Responses API and its
//! Realtime sessions share: text deltas (`response.output_text.delta`), each
//! part's end (`.done`), then events that repeat the part's text
//! (`response.content_part.done`, `response.output_item.done`) and the
//! answer's last event (`response.completed`, `response.done`, ...), which
//! carries the usage.
//!
//! Text deltas go through the route's chunk hook as a streamed chat answer's
//! do (lookbehind, held-back text released at the part's `.done`), and
//! every event that repeats a part's text carries what the client was sent.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::StreamGuard;
use super::stream::{ChunkGuard, TextVerdict};
use crate::policy::bindings::TokenUsage;

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
/// The events that end an answer, with its usage: Realtime's, then the
/// Responses API's three outcomes.
const ANSWER_ENDS: [&str; 4] = [
    "response.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The guard of one stream of answer events.
pub struct AnswerEvents {
    pub(super) guard: StreamGuard,
    /// Text parts of the answer being streamed, by (item id, content index).
    parts: HashMap<(String, u64), Part>,
    /// The last answer's usage and model, from its last event.
    usage: Option<TokenUsage>,
    model: String,
}

#[derive(Default)]
struct Part {
    original: String,
    sent: String,
}

/// What to do with an event of the answer.
pub enum Outbound {
    /// Send it as it came.
    Pass,
    /// Send nothing (its text is held back).
    Drop,
    /// Send `held` (a delta with text the plugins held back), then `event`.
    Send { held: Option<Value>, event: Value },
    /// Stop the answer: the plugins' reason.
    End(String),
}

impl AnswerEvents {
    pub(super) fn new(guard: StreamGuard) -> AnswerEvents {
        AnswerEvents {
            guard,
            parts: HashMap::new(),
            usage: None,
            model: String::new(),
        }
    }

    /// The usage the last answer's final event reported.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The model the last answer's final event named.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One event (`text`, whose `type` is `kind`) through the guard.
    pub fn event(&mut self, kind: &str, text: &str) -> Outbound {
        // Read whole only the events the guard acts on: an answer's end (for
        // its usage), and with a chunk hook the text deltas and ends, and
        // while a part's text was changed, the events that may repeat it
        // (never another delta, such as an audio chunk).
        let ends = ANSWER_ENDS.contains(&kind);
        let reads = ends
            || (self.guard.active
                && (TEXT_DELTAS.contains(&kind)
                    || TEXT_DONE.contains(&kind)
                    || (!self.parts.is_empty() && !kind.ends_with(".delta"))));
        if !reads {
            return Outbound::Pass;
        }
        let Ok(mut event) = serde_json::from_str::<Value>(text) else {
            return Outbound::Pass;
        };
        let key = part_key(&event);
        if let Some(key) = key.clone().filter(|_| TEXT_DELTAS.contains(&kind)) {
            let delta = event
                .get("delta")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let kept = match self.guard.text(&delta) {
                TextVerdict::Keep => delta.clone(),
                TextVerdict::Replace(t) => t,
                TextVerdict::Stop(reason) => return Outbound::End(reason),
            };
            let part = self.parts.entry(key).or_default();
            part.original.push_str(&delta);
            part.sent.push_str(&kept);
            if kept.is_empty() {
                return Outbound::Drop;
            }
            if kept == delta {
                return Outbound::Pass;
            }
            event["delta"] = kept.into();
            return Outbound::Send { held: None, event };
        }
        let mut held = None;
        let mut changed = false;
        if let Some(i) = TEXT_DONE.iter().position(|d| *d == kind)
            && let Some(key) = key.clone()
        {
            match self.guard.text_end() {
                TextVerdict::Keep => {}
                TextVerdict::Replace(text) if text.is_empty() => {}
                TextVerdict::Replace(text) => {
                    // Text the plugins held back leaves as one more delta.
                    let mut delta = event.clone();
                    delta["type"] = TEXT_DELTAS[i].into();
                    delta["delta"] = text.clone().into();
                    if let Some(o) = delta.as_object_mut() {
                        o.remove("text");
                        o.remove("transcript");
                        o.remove("logprobs");
                    }
                    held = Some(delta);
                    self.parts
                        .entry(key.clone())
                        .or_default()
                        .sent
                        .push_str(&text);
                }
                TextVerdict::Stop(reason) => return Outbound::End(reason),
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
        } else if ends {
            self.usage = usage_of(&event);
            if let Some(model) = event.pointer("/response/model").and_then(Value::as_str) {
                self.model = model.to_string();
            }
            if let Some(reason) = self.guard.done(self.usage) {
                return Outbound::End(reason);
            }
            self.guard.next_answer();
        }
        if !self.parts.is_empty() {
            changed |= self.rewrite_repeats(&mut event, key);
            if ends {
                // The last event to repeat the answer's text.
                self.parts.clear();
            }
        }
        if !changed && held.is_none() {
            return Outbound::Pass;
        }
        Outbound::Send { held, event }
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
}

/// An event's `type`, read without building the event: audio events carry
/// large base64 payloads the guard has no use for.
pub fn kind_of(text: &str) -> Option<Cow<'_, str>> {
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

/// A response's usage, in the hooks' terms: the Responses API's
/// (`input_tokens_details`) or Realtime's (`input_token_details`).
pub fn usage_of(event: &Value) -> Option<TokenUsage> {
    let usage = event.pointer("/response/usage").or(event.get("usage"))?;
    if !usage.is_object() {
        return None;
    }
    let n = |k: &str| usage.pointer(k).and_then(Value::as_u64).unwrap_or(0);
    Some(TokenUsage {
        input: n("/input_tokens"),
        output: n("/output_tokens"),
        cached_input: n("/input_tokens_details/cached_tokens")
            .max(n("/input_token_details/cached_tokens")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn usage_reads_both_apis_spelling_of_cached_tokens() {
        let responses = serde_json::json!({"type": "response.completed", "response": {"usage": {
            "input_tokens": 12, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 4}}}});
        let u = usage_of(&responses).unwrap();
        assert_eq!((u.input, u.output, u.cached_input), (12, 5, 4));
        let realtime = serde_json::json!({"type": "response.done", "response": {"usage": {
            "input_tokens": 3, "output_tokens": 2, "input_token_details": {"cached_tokens": 1}}}});
        let u = usage_of(&realtime).unwrap();
        assert_eq!((u.input, u.output, u.cached_input), (3, 2, 1));
        // A whole (non-streamed) response carries it at the top.
        let whole = serde_json::json!({"object": "response", "usage": {"input_tokens": 7, "output_tokens": 1}});
        assert_eq!(usage_of(&whole).unwrap().input, 7);
        assert!(usage_of(&serde_json::json!({"response": {"usage": null}})).is_none());
    }
}
