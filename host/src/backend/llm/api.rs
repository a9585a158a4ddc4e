//! Which LLM API a request speaks, and each API's error shape.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::backend::http::Body;

/// The two chat wire formats Wardgate speaks and translates between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic messages (`/v1/messages`).
    Anthropic,
}

/// What a provider speaks for a chat call: a client format, or an API the
/// gateway writes but no client speaks to it: Bedrock's Converse, and
/// Gemini's `generateContent` (Vertex AI's Gemini models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Chat(Flavor),
    Converse,
    Gemini,
}

/// What the client asked for, from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// A chat request in the given wire format.
    Chat(Flavor),
    /// `/v1/responses` (through the hooks, see [`super::responses`]),
    /// `/v1/embeddings`, `/v1/models`, `/v1/messages/count_tokens`,
    /// `/v1/realtime`: forwarded to a provider that serves it, with
    /// credentials injected.
    Native(&'static str),
    /// Anything else: forwarded as is.
    Other,
}

impl Api {
    /// OpenAI's Realtime API: a WebSocket session (see [`super::realtime`]).
    pub const REALTIME: Api = Api::Native("realtime");
    /// OpenAI's Responses API (see [`super::responses`]).
    pub const RESPONSES: Api = Api::Native("responses");

    pub fn classify(path: &str) -> Api {
        let path = path.trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Api::Chat(Flavor::OpenAi)
        } else if path.ends_with("/messages/count_tokens") {
            Api::Native("messages/count_tokens")
        } else if path.ends_with("/messages") {
            Api::Chat(Flavor::Anthropic)
        } else if path.ends_with("/responses") {
            Api::RESPONSES
        } else if path.ends_with("/embeddings") {
            Api::Native("embeddings")
        } else if path.ends_with("/models") {
            Api::Native("models")
        } else if path.ends_with("/realtime") {
            Api::REALTIME
        } else {
            Api::Other
        }
    }

    /// The error shape the client's SDK understands.
    pub fn flavor(self) -> Flavor {
        match self {
            Api::Chat(f) => f,
            Api::Native("messages/count_tokens") => Flavor::Anthropic,
            _ => Flavor::OpenAi,
        }
    }
}

/// OpenAI's error `type` for a status.
fn openai_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// Anthropic's error `type` for a status.
pub fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error body in `flavor`'s shape.
pub fn error_json(
    flavor: Flavor,
    status: u16,
    kind: Option<&str>,
    message: &str,
) -> serde_json::Value {
    match flavor {
        Flavor::OpenAi => serde_json::json!({"error": {
            "message": message,
            "type": kind.unwrap_or(openai_type(status)),
            "param": null,
            "code": null,
        }}),
        Flavor::Anthropic => serde_json::json!({"type": "error", "error": {
            "type": kind.unwrap_or(anthropic_type(status)),
            "message": message,
        }}),
    }
}

pub fn error_response(
    flavor: Flavor,
    status: StatusCode,
    kind: Option<&str>,
    message: &str,
) -> Response<Body> {
    json_response(status, &error_json(flavor, status.as_u16(), kind, message))
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(crate::proxy::full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Re-shape a provider's error body for a client that speaks `to`.
/// The status stays; the message and, where they map, the type carry over.
pub fn translate_error(from: Flavor, to: Flavor, status: u16, body: &[u8]) -> serde_json::Value {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        // Bedrock's errors carry their message at the top.
        .or_else(|| parsed.as_ref().and_then(|v| v.get("message")))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let kind = error.and_then(|e| e.get("type")).and_then(|t| t.as_str());
    let kind = match (from, to) {
        (a, b) if a == b => kind.map(str::to_string),
        // Each side's own vocabulary from the status; the provider's type
        // word means little to the other SDK.
        _ => None,
    };
    error_json(to, status, kind.as_deref(), &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths_after_rewrites_and_prefixes() {
        assert_eq!(
            Api::classify("/v1/chat/completions"),
            Api::Chat(Flavor::OpenAi)
        );
        assert_eq!(
            Api::classify("/openai/v1/chat/completions/"),
            Api::Chat(Flavor::OpenAi)
        );
        assert_eq!(Api::classify("/v1/messages"), Api::Chat(Flavor::Anthropic));
        assert_eq!(
            Api::classify("/v1/messages/count_tokens"),
            Api::Native("messages/count_tokens")
        );
        assert_eq!(Api::classify("/v1/embeddings"), Api::Native("embeddings"));
        assert_eq!(Api::classify("/v1/realtime"), Api::REALTIME);
        assert_eq!(Api::classify("/v1/realtime/calls"), Api::Other);
        assert_eq!(Api::classify("/v1/files"), Api::Other);
    }

    #[test]
    fn provider_errors_take_the_clients_shape() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let v = translate_error(Flavor::Anthropic, Flavor::OpenAi, 529, anthropic);
        assert_eq!(v["error"]["message"], "Overloaded");
        assert_eq!(v["error"]["type"], "api_error");
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        let v = translate_error(Flavor::OpenAi, Flavor::Anthropic, 429, openai);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "Rate limit reached");
        let bedrock = br#"{"message":"The provided model identifier is invalid."}"#;
        let v = translate_error(Flavor::OpenAi, Flavor::Anthropic, 400, bedrock);
        assert_eq!(
            v["error"]["message"],
            "The provided model identifier is invalid."
        );
        let v = translate_error(Flavor::OpenAi, Flavor::OpenAi, 502, b"bad gateway");
        assert_eq!(v["error"]["message"], "bad gateway");
    }
}
