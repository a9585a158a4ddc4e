//! Google's Gemini API (`generateContent`, `streamGenerateContent`) as
//! Vertex AI serves its Gemini models: chat requests of either client
//! format written as Gemini requests, and Gemini answers (whole, or
//! streamed as server-sent events of partial answers) read into the
//! neutral view.
//!
//! Gemini takes the model in the path, the system prompt apart
//! (`systemInstruction`), turns of `user` and `model` parts, tool calls as
//! `functionCall` parts and their results as `functionResponse` parts named
//! after the function. Its thinking comes as `thought` parts, and its
//! thought signatures (which Gemini 3 wants back on the function calls of
//! a tool round) ride on the parts they sign: both travel as the neutral
//! thinking blocks of [`super::reasoning`], so a client that returns its
//! thinking returns the signatures.

use serde_json::{Map, Value, json};

use super::api::Flavor;
use super::chat::{Turns, max_tokens, stop_sequences, str_field, texts};
use super::stream::Piece;
use crate::policy::bindings::{
    ChatMessage, ContentPart, LlmRequest, LlmResponse, Role, TokenUsage, ToolCall,
};

/// The Gemini request for a chat request of `from`'s format: the view's
/// (maybe plugin-edited) messages and tools, and the client's settings.
pub fn request(from: Flavor, body: &Value, view: &LlmRequest) -> Map<String, Value> {
    let mut out = Map::new();
    let (system, contents) = contents(&view.messages);
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    out.insert("contents".into(), Value::Array(contents));
    if !view.tools.is_empty() {
        let declarations: Vec<Value> = view
            .tools
            .iter()
            .map(|t| {
                let schema = serde_json::from_str::<Value>(&t.parameters)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                let mut d = json!({"name": t.name, "parametersJsonSchema": schema});
                if let Some(desc) = t.description.as_deref().filter(|d| !d.is_empty()) {
                    d["description"] = desc.into();
                }
                d
            })
            .collect();
        out.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
        if let Some(config) = tool_config(from, body) {
            out.insert("toolConfig".into(), config);
        }
    }
    let mut generation = Map::new();
    if let Some(max) = max_tokens(from, body) {
        generation.insert("maxOutputTokens".into(), max.into());
    }
    for (key, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = body.get(key).filter(|v| v.is_number()) {
            generation.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = stop_sequences(from, body) {
        generation.insert("stopSequences".into(), stop);
    }
    out.insert("generationConfig".into(), Value::Object(generation));
    out
}

/// The client's choice among the tools as Gemini's calling mode.
fn tool_config(from: Flavor, body: &Value) -> Option<Value> {
    let choice = body.get("tool_choice")?;
    let (mode, only) = match (from, choice) {
        (Flavor::OpenAi, Value::String(s)) => match s.as_str() {
            "none" => ("NONE", None),
            "required" => ("ANY", None),
            _ => ("AUTO", None),
        },
        (Flavor::OpenAi, c) => ("ANY", c.pointer("/function/name")),
        (Flavor::Anthropic, c) => match c.get("type").and_then(Value::as_str) {
            Some("none") => ("NONE", None),
            Some("any") => ("ANY", None),
            Some("tool") => ("ANY", c.get("name")),
            _ => ("AUTO", None),
        },
    };
    let mut config = json!({"mode": mode});
    if let Some(name) = only {
        config["allowedFunctionNames"] = json!([name]);
    }
    Some(json!({"functionCallingConfig": config}))
}

/// The system texts, and the turns: `user` and `model` alternating, tool
/// results as `functionResponse` parts named after the call they answer.
fn contents(messages: &[ChatMessage]) -> (Vec<String>, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    let mut names: Vec<(&str, &str)> = Vec::new();
    for m in messages {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                system.extend(texts(&m.content).map(str::to_string));
                continue;
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                // The latest call of that id: ids may repeat across turns.
                let name = names
                    .iter()
                    .rev()
                    .find(|(call, _)| *call == id)
                    .map(|(_, name)| *name)
                    .or(m.name.as_deref())
                    .unwrap_or_default();
                let text: String = texts(&m.content).collect();
                let mut response = json!({"name": name, "response": {"content": text}});
                if !id.is_empty() {
                    response["id"] = id.into();
                }
                ("user", vec![json!({"functionResponse": response})])
            }
            Role::User => ("user", m.content.iter().filter_map(part).collect()),
            Role::Assistant => {
                let mut signatures = signatures(&m.content);
                let mut parts: Vec<Value> = m.content.iter().filter_map(part).collect();
                for c in &m.tool_calls {
                    names.push((&c.id, &c.name));
                    let args: Value =
                        serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                    let mut call = json!({"name": c.name, "args": args});
                    if !c.id.is_empty() {
                        call["id"] = c.id.clone().into();
                    }
                    let mut p = json!({"functionCall": call});
                    // Gemini 3 checks the signature on each step's first call.
                    if let Some(s) = signatures.next() {
                        p["thoughtSignature"] = s.into();
                    }
                    parts.push(p);
                }
                if let (Some(s), Some(first)) = (signatures.next(), parts.first_mut()) {
                    first["thoughtSignature"] = s.into();
                }
                ("model", parts)
            }
        };
        if !parts.is_empty() {
            turns.push(role, parts);
        }
    }
    let contents = turns
        .into_json()
        .into_iter()
        .map(|mut turn| {
            // Turns name their content `parts` here.
            if let Some(o) = turn.as_object_mut()
                && let Some(parts) = o.remove("content")
            {
                o.insert("parts".into(), parts);
            }
            turn
        })
        .collect();
    (system, contents)
}

/// The thought signatures an assistant message brought back, in order.
fn signatures(content: &[ContentPart]) -> impl Iterator<Item = String> + '_ {
    content.iter().filter_map(|p| match p {
        ContentPart::Other(raw) if raw.contains("signature") => {
            let v: Value = serde_json::from_str(raw).ok()?;
            if v.get("type").and_then(Value::as_str) != Some("thinking") {
                return None;
            }
            str_field(&v, "signature").filter(|s| !s.is_empty())
        }
        _ => None,
    })
}

/// A content part as a Gemini part: text, inline data (an OpenAI `data:`
/// URL or an Anthropic base64 source) or a Cloud Storage file. Gemini
/// fetches no web URLs; such parts, thinking and other kinds are left out.
fn part(p: &ContentPart) -> Option<Value> {
    let raw = match p {
        ContentPart::Text(t) if t.is_empty() => return None,
        ContentPart::Text(t) => return Some(json!({"text": t})),
        ContentPart::Other(raw) => raw,
    };
    let v: Value = serde_json::from_str(raw).ok()?;
    match v.get("type").and_then(Value::as_str)? {
        "image_url" => {
            let url = v.pointer("/image_url/url")?.as_str()?;
            if let Some((media, data)) = url
                .strip_prefix("data:")
                .and_then(|r| r.split_once(";base64,"))
            {
                return Some(json!({"inlineData": {"mimeType": media, "data": data}}));
            }
            let ext = url.rsplit('.').next().unwrap_or_default();
            let media = match ext.to_ascii_lowercase().as_str() {
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                "webp" => "image/webp",
                "gif" => "image/gif",
                "pdf" => "application/pdf",
                _ => return None,
            };
            url.starts_with("gs://")
                .then(|| json!({"fileData": {"mimeType": media, "fileUri": url}}))
        }
        "image" if v.pointer("/source/type")? == "base64" => Some(json!({"inlineData": {
            "mimeType": v.pointer("/source/media_type")?,
            "data": v.pointer("/source/data")?}})),
        _ => None,
    }
}

// ---- answers --------------------------------------------------------------

/// Gemini finish reasons in OpenAI's words (the view uses OpenAI's); an
/// answer with function calls finished to have them run.
fn finish_reason(reason: &str, called: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// Token usage: thoughts count as output, as OpenAI's reasoning tokens do.
fn usage(u: &Value) -> Option<TokenUsage> {
    if !u.is_object() {
        return None;
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(TokenUsage {
        input: n("promptTokenCount"),
        output: n("candidatesTokenCount") + n("thoughtsTokenCount"),
        cached_input: n("cachedContentTokenCount"),
    })
}

fn parts_of(answer: &Value) -> &[Value] {
    answer
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn is_thought(p: &Value) -> bool {
    p.get("thought").and_then(Value::as_bool) == Some(true)
}

/// A call's id: Gemini's when it gave one, else one from the answer's id
/// and the call's place (unique in a conversation, as clients expect).
fn call_id(call: &Value, n: u64, response: &str) -> String {
    str_field(call, "id")
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| {
            let response: String = response
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            format!("call_{response}_{n}")
        })
}

/// The neutral view of a Gemini answer; `model` is the one asked for
/// when the answer names none.
pub fn response_view(body: &Value, provider: &str, model: &str) -> LlmResponse {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let response = str_field(body, "responseId").unwrap_or_default();
    for p in parts_of(body) {
        if let Some(call) = p.get("functionCall") {
            tool_calls.push(ToolCall {
                id: call_id(call, tool_calls.len() as u64, &response),
                name: str_field(call, "name").unwrap_or_default(),
                arguments: call
                    .get("args")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        } else if !is_thought(p)
            && let Some(t) = p.get("text").and_then(Value::as_str)
        {
            text.push_str(t);
        }
    }
    let reason = body
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)
        // A prompt Gemini blocked has no candidates, only the reason.
        .or_else(|| {
            body.pointer("/promptFeedback/blockReason")
                .map(|_| "SAFETY")
        });
    LlmResponse {
        provider: provider.to_string(),
        model: str_field(body, "modelVersion").unwrap_or_else(|| model.to_string()),
        text,
        usage: body.get("usageMetadata").and_then(usage),
        finish_reason: reason.map(|r| finish_reason(r, !tool_calls.is_empty()).to_string()),
        tool_calls,
    }
}

/// A Gemini answer's thinking as blocks: its thought text with the first
/// signature, then the other signatures alone (see [`super::reasoning`]).
pub fn thinking_of(answer: &Value) -> Vec<Value> {
    let parts = parts_of(answer);
    let thought: String = parts
        .iter()
        .filter(|p| is_thought(p))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let mut signatures = parts
        .iter()
        .filter_map(|p| p.get("thoughtSignature").and_then(Value::as_str));
    let mut blocks = Vec::new();
    let first = signatures.next();
    if !thought.is_empty() || first.is_some() {
        blocks.push(json!({"type": "thinking", "thinking": thought,
            "signature": first.unwrap_or_default()}));
    }
    blocks.extend(signatures.map(|s| json!({"type": "thinking", "thinking": "", "signature": s})));
    blocks
}

/// What reading a streamed Gemini answer keeps between its events.
#[derive(Default)]
pub struct StreamState {
    started: bool,
    response: String,
    calls: u64,
    /// Thought parts came that no answer part has closed yet.
    thinking: bool,
}

/// The pieces of one streamed partial answer; the usage it reports goes
/// to `usage`. Gemini's stream has no end marker: the finish reason ends
/// the answer.
pub fn read_event(
    v: &Value,
    model: &str,
    state: &mut StreamState,
    usage_out: &mut Option<TokenUsage>,
) -> Vec<Piece> {
    let mut pieces = Vec::new();
    if let Some(err) = v.get("error") {
        return vec![Piece::Error {
            kind: None,
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the provider broke off")
                .to_string(),
        }];
    }
    if !state.started {
        state.started = true;
        state.response = str_field(v, "responseId").unwrap_or_default();
        pieces.push(Piece::Start {
            id: state.response.clone(),
            model: str_field(v, "modelVersion").unwrap_or_else(|| model.to_string()),
        });
    }
    for p in parts_of(v) {
        let signature = p.get("thoughtSignature").and_then(Value::as_str);
        let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
        if is_thought(p) {
            state.thinking = true;
            if !text.is_empty() {
                pieces.push(Piece::Thinking(text.to_string()));
            }
            pieces.extend(signature.map(|s| Piece::ThinkingSignature(s.to_string())));
            continue;
        }
        // The signature closes the thinking before this part.
        pieces.extend(signature.map(|s| Piece::ThinkingSignature(s.to_string())));
        let call = p.get("functionCall");
        if state.thinking && (call.is_some() || !text.is_empty()) {
            state.thinking = false;
            pieces.push(Piece::BlockEnd { index: 0 });
        }
        if let Some(call) = call {
            let index = state.calls;
            state.calls += 1;
            pieces.push(Piece::ToolStart {
                index,
                id: call_id(call, index, &state.response),
                name: str_field(call, "name").unwrap_or_default(),
            });
            pieces.push(Piece::ToolArgs {
                index,
                json: call
                    .get("args")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".into()),
            });
        } else if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
    }
    if let Some(u) = v.get("usageMetadata").and_then(usage) {
        *usage_out = Some(u);
    }
    if let Some(reason) = v
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)
    {
        pieces.push(Piece::Finish(
            finish_reason(reason, state.calls > 0).to_string(),
        ));
        pieces.push(Piece::Done);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::llm::chat::request_view;

    #[test]
    fn openai_requests_become_gemini_requests() {
        let body = json!({
            "model": "gemini-3-pro",
            "max_completion_tokens": 300,
            "temperature": 0.2,
            "stop": "END",
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "Weather", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "content": null,
                 "thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "sig-a"}],
                 "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            ],
        });
        let view = request_view(Flavor::OpenAi, &body, "vertex");
        let out = Value::Object(request(Flavor::OpenAi, &body, &view));
        assert_eq!(out["systemInstruction"]["parts"][0]["text"], "Be brief.");
        let contents = out["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "{out}");
        assert_eq!(contents[0]["role"], "user");
        assert_eq!(
            contents[0]["parts"][1]["inlineData"]["mimeType"],
            "image/png"
        );
        assert_eq!(contents[1]["role"], "model");
        let call = &contents[1]["parts"][0];
        assert_eq!(call["functionCall"]["args"]["city"], "Paris");
        assert_eq!(
            call["thoughtSignature"], "sig-a",
            "the signature rides on the call"
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"],
            json!({"name": "get_weather", "id": "call_1", "response": {"content": "18 C"}})
        );
        let decl = &out["tools"][0]["functionDeclarations"][0];
        assert_eq!(decl["parametersJsonSchema"], json!({"type": "object"}));
        assert_eq!(
            out["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
        let generation = &out["generationConfig"];
        assert_eq!(generation["maxOutputTokens"], 300);
        assert_eq!(generation["temperature"], 0.2);
        assert_eq!(generation["stopSequences"], json!(["END"]));
    }

    #[test]
    fn gemini_answers_read_into_the_view_with_their_thinking() {
        let answer = json!({
            "responseId": "r1", "modelVersion": "gemini-3-pro-001",
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Let me look.", "thought": true},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "sig-b"},
            ]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                "thoughtsTokenCount": 7, "cachedContentTokenCount": 2},
        });
        let view = response_view(&answer, "vertex", "asked");
        assert_eq!(view.model, "gemini-3-pro-001");
        assert_eq!(view.text, "", "thought text is not the answer");
        assert_eq!(view.tool_calls[0].name, "get_weather");
        assert_eq!(view.tool_calls[0].id, "call_r1_0");
        assert_eq!(view.finish_reason.as_deref(), Some("tool_calls"));
        let u = view.usage.unwrap();
        assert_eq!((u.input, u.output, u.cached_input), (10, 12, 2));
        assert_eq!(
            thinking_of(&answer),
            vec![json!({"type": "thinking", "thinking": "Let me look.", "signature": "sig-b"})]
        );
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert_eq!(
            response_view(&blocked, "vertex", "m")
                .finish_reason
                .as_deref(),
            Some("content_filter")
        );
    }

    #[test]
    fn streamed_partial_answers_become_pieces_ending_at_the_finish() {
        let mut state = StreamState::default();
        let mut usage = None;
        let mut pieces = Vec::new();
        for v in [
            json!({"responseId": "r2", "candidates": [{"content": {"parts": [{"text": "Hm", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "Sun", "thoughtSignature": "sig-c"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "ny"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}),
        ] {
            pieces.extend(read_event(&v, "gemini-3-pro", &mut state, &mut usage));
        }
        assert_eq!(
            pieces,
            vec![
                Piece::Start {
                    id: "r2".into(),
                    model: "gemini-3-pro".into()
                },
                Piece::Thinking("Hm".into()),
                Piece::ThinkingSignature("sig-c".into()),
                Piece::BlockEnd { index: 0 },
                Piece::Text("Sun".into()),
                Piece::Text("ny".into()),
                Piece::Finish("stop".into()),
                Piece::Done,
            ]
        );
        assert_eq!(usage.unwrap().output, 2);
    }
}
