//! JSON-RPC 2.0 as MCP uses it: messages, error codes, replies.

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn internal(message: String) -> Self {
        RpcError::new(INTERNAL_ERROR, message)
    }

    pub fn from_value(v: &Value) -> Self {
        RpcError {
            code: v
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(INTERNAL_ERROR),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string(),
            data: v.get("data").cloned(),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

/// What kind of message a client sent.
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// A response (to a server-initiated request).
    Response {
        id: Value,
    },
}

/// Classify one message; the error is the reply to send (id may be null).
pub fn classify(v: &Value) -> Result<Incoming, (Value, RpcError)> {
    let id = v.get("id").cloned();
    let null_or_id = id.clone().unwrap_or(Value::Null);
    let bad = |m: &str| (null_or_id.clone(), RpcError::new(INVALID_REQUEST, m));
    let Some(obj) = v.as_object() else {
        return Err(bad("a JSON-RPC message must be an object"));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(bad("\"jsonrpc\" must be \"2.0\""));
    }
    match (obj.get("method"), id) {
        (Some(Value::String(m)), Some(id)) => {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return Err(bad("\"id\" must be a string or an integer"));
            }
            Ok(Incoming::Request {
                id,
                method: m.clone(),
                params: obj.get("params").cloned().unwrap_or(json!({})),
            })
        }
        (Some(Value::String(m)), None) => Ok(Incoming::Notification {
            method: m.clone(),
            params: obj.get("params").cloned().unwrap_or(json!({})),
        }),
        (Some(_), _) => Err(bad("\"method\" must be a string")),
        (None, Some(id)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Incoming::Response { id })
        }
        (None, _) => Err(bad("a request needs \"method\"")),
    }
}

pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error(id: &Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": e.to_value()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_rejects_with_the_spec_codes() {
        assert!(matches!(
            classify(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
            Ok(Incoming::Request { .. })
        ));
        assert!(matches!(
            classify(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Ok(Incoming::Notification { .. })
        ));
        assert!(matches!(
            classify(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
            Ok(Incoming::Response { .. })
        ));
        for bad in [
            json!({"id": 1, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 3}),
            json!("hi"),
        ] {
            let Err((_, e)) = classify(&bad) else {
                panic!("accepted {bad}")
            };
            assert_eq!(e.code, INVALID_REQUEST);
        }
    }
}
