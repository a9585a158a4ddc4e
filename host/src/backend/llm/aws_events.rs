//! AWS event streams (`application/vnd.amazon.eventstream`, Bedrock's
//! streamed answers): binary frames, each checked by its CRCs, read into
//! the same events server-sent events give, so one relay serves both.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use serde_json::{Value, json};

use crate::backend::sse::{SseDecoder, SseEvent};

pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// A streamed answer's events, in whichever framing the provider sends.
pub enum EventDecoder {
    Sse(SseDecoder),
    Aws {
        buf: BytesMut,
        frames: MessageFrameDecoder,
    },
}

impl EventDecoder {
    /// The decoder for a response of this content type.
    pub fn for_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(t) if t.starts_with(CONTENT_TYPE) => EventDecoder::Aws {
                buf: BytesMut::new(),
                frames: MessageFrameDecoder::new(),
            },
            _ => EventDecoder::Sse(SseDecoder::default()),
        }
    }

    /// Decode what `bytes` completes; an error is a corrupt frame, after
    /// which nothing more can be read.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        match self {
            EventDecoder::Sse(sse) => {
                sse.push(bytes, out);
                Ok(())
            }
            EventDecoder::Aws { buf, frames } => {
                buf.extend_from_slice(bytes);
                loop {
                    match frames.decode_frame(&mut *buf) {
                        Ok(DecodedFrame::Complete(message)) => out.push(event_of(&message)),
                        Ok(DecodedFrame::Incomplete) => return Ok(()),
                        Err(e) => return Err(format!("a corrupt event-stream frame: {e}")),
                    }
                }
            }
        }
    }

    /// What is left when the body ends (an SSE event without its blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        match self {
            EventDecoder::Sse(sse) => sse.finish(),
            EventDecoder::Aws { .. } => None,
        }
    }
}

/// One message as an event: its `:event-type` and JSON payload, or, for
/// an exception or error message, an `exception` event carrying the
/// exception's type and message.
fn event_of(message: &Message) -> SseEvent {
    let header = |name: &str| {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_string())
    };
    let payload = String::from_utf8_lossy(message.payload());
    let (kind, text) = match header(":message-type").as_deref() {
        Some("exception") => {
            let text = serde_json::from_str::<Value>(&payload)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| payload.to_string());
            (header(":exception-type"), text)
        }
        Some("error") => (
            header(":error-code"),
            header(":error-message").unwrap_or_default(),
        ),
        _ => {
            return SseEvent {
                event: header(":event-type"),
                data: payload.into_owned(),
            };
        }
    };
    SseEvent {
        event: Some("exception".into()),
        data: json!({"type": kind, "message": text}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue};

    fn frame(headers: &[(&'static str, &'static str)], payload: &'static str) -> Vec<u8> {
        let message = Message::new_from_parts(
            headers
                .iter()
                .map(|(k, v)| Header::new(*k, HeaderValue::String((*v).into())))
                .collect(),
            payload,
        );
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    #[test]
    fn frames_split_anywhere_decode_to_events() {
        let mut bytes = frame(
            &[
                (":message-type", "event"),
                (":event-type", "contentBlockDelta"),
            ],
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}"#,
        );
        bytes.extend(frame(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            r#"{"message":"Too many requests"}"#,
        ));
        let mut decoder = EventDecoder::for_content_type(Some(CONTENT_TYPE));
        let mut events = Vec::new();
        for chunk in bytes.chunks(7) {
            decoder.push(chunk, &mut events).unwrap();
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("contentBlockDelta"));
        assert!(events[0].data.contains(r#""text":"Hi""#));
        assert_eq!(events[1].event.as_deref(), Some("exception"));
        let v: Value = serde_json::from_str(&events[1].data).unwrap();
        assert_eq!(
            v,
            json!({"type": "throttlingException", "message": "Too many requests"})
        );

        // A flipped payload byte fails the message's CRC.
        let mut bad = frame(
            &[(":event-type", "messageStop")],
            r#"{"stopReason":"end_turn"}"#,
        );
        let n = bad.len();
        bad[n - 8] ^= 1;
        let mut decoder = EventDecoder::for_content_type(Some(CONTENT_TYPE));
        assert!(decoder.push(&bad, &mut events).is_err());
    }
}
