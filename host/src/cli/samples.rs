//! Sample requests for `wardgate plugin test`, as JSON: one object, an
//! array, or one object per line. Each names its kind by its only key:
//!
//! ```json
//! {"http": {"method": "POST", "path": "/chat", "headers": {"x-team": "a"}, "body": "hi"}}
//! {"llm": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}}
//! {"mcp": {"method": "tools/call", "name": "echo", "target": "everything", "arguments": {"text": "hi"}}}
//! {"mcpList": {"kind": "tools", "items": [{"name": "echo", "description": "Echo"}]}}
//! ```

use serde_json::{Value, json};

use crate::policy::bindings::{
    ChatMessage, ContentPart, Header, HttpRequest, LlmRequest, McpItem, McpList, McpListKind,
    McpRequest, Role, ToolDefinition,
};

pub enum Sample {
    Http(HttpRequest),
    Llm(LlmRequest),
    Mcp(McpRequest),
    McpList(McpList),
}

pub fn parse_all(text: &str) -> Result<Vec<Sample>, String> {
    let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("line {}: not JSON: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?,
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|e| format!("sample {}: {e}", i + 1)))
        .collect()
}

fn parse(v: &Value) -> Result<Sample, String> {
    let obj = v.as_object().ok_or("a sample is an object")?;
    let (kind, body) = match obj.iter().collect::<Vec<_>>().as_slice() {
        [(k, b)] => (k.as_str(), *b),
        _ => return Err("a sample has exactly one key: http, llm, mcp or mcpList".into()),
    };
    let s = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match kind {
        "http" => Ok(Sample::Http(HttpRequest {
            method: s("method").unwrap_or_else(|| "GET".into()),
            path: s("path").unwrap_or_else(|| "/".into()),
            headers: headers(body.get("headers"))?,
            body: body.get("body").map(|b| match b {
                Value::String(t) => t.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            }),
        })),
        "llm" => Ok(Sample::Llm(LlmRequest {
            provider: s("provider").unwrap_or_else(|| "openai".into()),
            model: s("model").unwrap_or_else(|| "gpt-4o".into()),
            messages: body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("llm.messages: expected a list")?
                .iter()
                .enumerate()
                .map(|(i, m)| message(m).map_err(|e| format!("llm.messages[{i}]: {e}")))
                .collect::<Result<_, _>>()?,
            tools: body
                .get("tools")
                .and_then(Value::as_array)
                .map(|tools| {
                    tools
                        .iter()
                        .map(|t| ToolDefinition {
                            name: t["name"].as_str().unwrap_or_default().to_string(),
                            description: t["description"].as_str().map(str::to_string),
                            parameters: t.get("parameters").unwrap_or(&json!({})).to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        })),
        "mcp" => Ok(Sample::Mcp(McpRequest {
            method: s("method").unwrap_or_else(|| "tools/call".into()),
            target: s("target"),
            name: s("name"),
            arguments: body.get("arguments").map(Value::to_string),
            session: s("session"),
        })),
        "mcpList" => Ok(Sample::McpList(McpList {
            kind: match s("kind").as_deref().unwrap_or("tools") {
                "tools" => McpListKind::Tools,
                "prompts" => McpListKind::Prompts,
                "resources" => McpListKind::Resources,
                "resourceTemplates" => McpListKind::ResourceTemplates,
                other => return Err(format!("mcpList.kind: unknown kind '{other}'")),
            },
            items: body
                .get("items")
                .and_then(Value::as_array)
                .ok_or("mcpList.items: expected a list")?
                .iter()
                .map(|item| McpItem {
                    name: item["name"].as_str().unwrap_or_default().to_string(),
                    target: item["target"].as_str().map(str::to_string),
                    description: item["description"].as_str().map(str::to_string),
                    definition: item.to_string(),
                })
                .collect(),
        })),
        other => Err(format!(
            "unknown sample kind '{other}' (use http, llm, mcp or mcpList)"
        )),
    }
}

fn headers(v: Option<&Value>) -> Result<Vec<Header>, String> {
    let Some(v) = v else { return Ok(vec![]) };
    let obj = v.as_object().ok_or("headers: expected an object")?;
    Ok(obj
        .iter()
        .map(|(k, v)| Header {
            name: k.to_ascii_lowercase(),
            value: v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        })
        .collect())
}

fn message(m: &Value) -> Result<ChatMessage, String> {
    let role = match m["role"].as_str().unwrap_or("user") {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => return Err(format!("unknown role '{other}'")),
    };
    let content = match &m["content"] {
        Value::String(t) => vec![ContentPart::Text(t.clone())],
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p["type"].as_str() {
                Some("text") => ContentPart::Text(p["text"].as_str().unwrap_or_default().into()),
                _ => ContentPart::Other(p.to_string()),
            })
            .collect(),
        Value::Null => vec![],
        other => return Err(format!("content: expected text or parts, got {other}")),
    };
    Ok(ChatMessage {
        role,
        content,
        name: m["name"].as_str().map(str::to_string),
        tool_call_id: m["tool_call_id"].as_str().map(str::to_string),
        tool_calls: vec![],
    })
}

impl Sample {
    /// One line naming the sample, for the report.
    pub fn label(&self) -> String {
        match self {
            Sample::Http(r) => format!("http {} {}", r.method, r.path),
            Sample::Llm(r) => format!("llm {} ({} messages)", r.model, r.messages.len()),
            Sample::Mcp(r) => format!("mcp {} {}", r.method, r.name.as_deref().unwrap_or("")),
            Sample::McpList(l) => format!("mcp list ({} items)", l.items.len()),
        }
    }

    /// The request as a plugin left it, to show what a `modify` changed.
    pub fn to_json(&self) -> Value {
        match self {
            Sample::Http(r) => json!({
                "method": r.method, "path": r.path,
                "headers": r.headers.iter().map(|h| (h.name.clone(), Value::String(h.value.clone()))).collect::<serde_json::Map<_, _>>(),
                "body": r.body.as_deref().map(String::from_utf8_lossy),
            }),
            Sample::Llm(r) => json!({
                "model": r.model,
                "messages": r.messages.iter().map(|m| json!({
                    "role": format!("{:?}", m.role).to_lowercase(),
                    "content": m.content.iter().map(|p| match p {
                        ContentPart::Text(t) => t.clone(),
                        ContentPart::Other(o) => o.clone(),
                    }).collect::<Vec<_>>().join(""),
                })).collect::<Vec<_>>(),
            }),
            Sample::Mcp(r) => json!({
                "method": r.method, "name": r.name, "target": r.target,
                "arguments": r.arguments.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()),
            }),
            Sample::McpList(l) => json!({
                "items": l.items.iter().map(|i| &i.name).collect::<Vec<_>>(),
            }),
        }
    }
}
