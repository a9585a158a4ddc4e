//! Thinking and structured output between the chat formats.
//!
//! Requests: OpenAI's `reasoning_effort` and `response_format`, Anthropic's
//! `thinking` and `output_config` (`effort`, `format`), and Converse's
//! `outputConfig` plus Claude's `thinking` in `additionalModelRequestFields`
//! are written in the provider's words when a request is translated.
//!
//! Answers: the model's thinking travels as Anthropic-shaped blocks
//! (`thinking` with its `signature`, or `redacted_thinking` with its
//! `data`), the one form that loses nothing a later turn must send back.
//! OpenAI clients get them as `reasoning_content` (the text) and
//! `thinking_blocks` (the blocks, to return on the next turn), as LiteLLM
//! and OpenAI-compatible servers spell them; Converse's `reasoningContent`
//! and OpenAI-compatible servers' `reasoning_content` read into them.
//! Thinking is not shown to plugins: the contract's views carry the
//! answer's visible text.

use serde_json::{Map, Value, json};

use super::api::{Flavor, Wire};

/// Anthropic's smallest thinking budget.
const MIN_BUDGET: u64 = 1024;

/// The thinking budget an OpenAI effort buys on models that take a budget
/// (the steps LiteLLM and agentgateway use, and one more for `xhigh`).
fn budget_for(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(2048),
        "high" => Some(4096),
        "xhigh" | "max" => Some(8192),
        _ => None,
    }
}

/// An OpenAI effort in Anthropic's and Converse's scale.
fn effort_for_anthropic(effort: &str) -> Option<&'static str> {
    match effort {
        "minimal" | "low" => Some("low"),
        "medium" => Some("medium"),
        "high" => Some("high"),
        "xhigh" => Some("xhigh"),
        "max" => Some("max"),
        _ => None,
    }
}

/// An Anthropic thinking budget or effort in OpenAI's scale.
fn effort_for_openai(thinking: Option<&Value>, effort: Option<&str>) -> Option<&'static str> {
    if let Some(e) = effort {
        return match e {
            "low" => Some("low"),
            "medium" => Some("medium"),
            "high" => Some("high"),
            "xhigh" | "max" => Some("xhigh"),
            _ => None,
        };
    }
    let thinking = thinking?;
    match thinking.get("type").and_then(Value::as_str)? {
        "enabled" => match thinking.get("budget_tokens").and_then(Value::as_u64)? {
            b if b < 2048 => Some("low"),
            b if b < 4096 => Some("medium"),
            _ => Some("high"),
        },
        // The model decides how much: OpenAI's default effort.
        "adaptive" => Some("medium"),
        _ => None,
    }
}

/// Claude models before 4.6 think only on a budget (`type: enabled`);
/// later ones take `adaptive` with an effort. Matched on the model id as
/// Anthropic, Bedrock (`us.anthropic.claude-…-v1:0`) and Vertex spell it.
fn budget_only_claude(model: &str) -> bool {
    let Some(rest) = model.split("claude-").nth(1) else {
        return false;
    };
    // claude-3-7-sonnet, claude-3-5-haiku: the version first.
    if rest.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    let mut parts = rest.split(['-', '@', ':']).skip(1);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    // A minor version is one or two digits; eight are a date.
    let minor = parts
        .next()
        .filter(|p| p.len() <= 2)
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    match major {
        Some(m) => m < 4 || (m == 4 && minor < 6),
        None => false,
    }
}

fn is_claude(model: &str) -> bool {
    model.contains("claude")
}

/// What an OpenAI request asks of the model's thinking, as Anthropic's
/// `thinking` and `output_config.effort` for `model`. A `thinking` object
/// the client sent in Anthropic's shape (as LiteLLM takes it) goes as it is.
fn anthropic_thinking(
    src: &Map<String, Value>,
    model: &str,
) -> (Option<Value>, Option<&'static str>) {
    if let Some(t) = src.get("thinking").filter(|t| t.is_object()) {
        return (Some(t.clone()), None);
    }
    let Some(effort) = src.get("reasoning_effort").and_then(Value::as_str) else {
        return (None, None);
    };
    if effort == "none" {
        return (Some(json!({"type": "disabled"})), None);
    }
    if budget_only_claude(model) {
        let budget = budget_for(effort).unwrap_or(MIN_BUDGET);
        (
            Some(json!({"type": "enabled", "budget_tokens": budget})),
            None,
        )
    } else {
        (
            Some(json!({"type": "adaptive"})),
            effort_for_anthropic(effort),
        )
    }
}

/// A budget must stay below the token limit: a limit at or under it is
/// raised by the budget (thinking counts toward the limit).
fn fit_budget(thinking: &Value, max_tokens: &mut Value) {
    let Some(budget) = thinking.get("budget_tokens").and_then(Value::as_u64) else {
        return;
    };
    if let Some(max) = max_tokens.as_u64()
        && max <= budget
    {
        *max_tokens = (max + budget).into();
    }
}

/// OpenAI's `response_format` with a schema, as the schema alone.
fn openai_schema(src: &Map<String, Value>) -> Option<&Value> {
    let format = src.get("response_format")?;
    if format.get("type").and_then(Value::as_str)? != "json_schema" {
        return None;
    }
    format.pointer("/json_schema/schema")
}

/// The request field a provider speaking `wire` cannot take, and why.
/// Only OpenAI's JSON mode has no counterpart: Anthropic and Converse
/// constrain output to a schema, not to "some JSON".
pub fn untranslatable(from: Flavor, wire: Wire, body: &Value) -> Option<(&'static str, String)> {
    if from != Flavor::OpenAi || matches!(wire, Wire::Chat(Flavor::OpenAi) | Wire::Gemini) {
        return None;
    }
    let kind = body
        .pointer("/response_format/type")
        .and_then(Value::as_str);
    (kind == Some("json_object")).then(|| {
        (
            "response_format",
            "JSON mode (`json_object`) has no counterpart there; send `json_schema` with a schema"
                .to_string(),
        )
    })
}

/// Write the client's thinking and output settings into `out`, the
/// request translated for a provider speaking `wire` about `model`.
pub fn carry(from: Flavor, wire: Wire, body: &Value, model: &str, out: &mut Map<String, Value>) {
    let Some(src) = body.as_object() else { return };
    match (from, wire) {
        (Flavor::OpenAi, Wire::Chat(Flavor::Anthropic)) => {
            let (thinking, effort) = anthropic_thinking(src, model);
            let mut config = Map::new();
            if let Some(e) = effort {
                config.insert("effort".into(), e.into());
            }
            if let Some(schema) = openai_schema(src) {
                config.insert(
                    "format".into(),
                    json!({"type": "json_schema", "schema": schema}),
                );
            }
            if !config.is_empty() {
                out.insert("output_config".into(), Value::Object(config));
            }
            if let Some(t) = thinking {
                if let Some(max) = out.get_mut("max_tokens") {
                    fit_budget(&t, max);
                }
                out.insert("thinking".into(), t);
            }
        }
        (Flavor::Anthropic, Wire::Chat(Flavor::OpenAi)) => {
            let config = src.get("output_config");
            let effort = config.and_then(|c| c.get("effort")).and_then(Value::as_str);
            if let Some(e) = effort_for_openai(src.get("thinking"), effort) {
                out.insert("reasoning_effort".into(), e.into());
            }
            if let Some(schema) = config.and_then(|c| c.pointer("/format/schema")) {
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema",
                        "json_schema": {"name": "output", "schema": schema, "strict": true}}),
                );
            }
        }
        (_, Wire::Converse) => converse(from, src, model, out),
        (_, Wire::Gemini) => gemini(from, src, out),
        _ => {}
    }
}

/// Gemini: a JSON answer (held to a schema or not) and its thinking
/// budget in `generationConfig`; thoughts shown when thinking is asked for.
fn gemini(from: Flavor, src: &Map<String, Value>, out: &mut Map<String, Value>) {
    let (json_mode, schema, thinking) = match from {
        Flavor::OpenAi => {
            let kind = src
                .get("response_format")
                .and_then(|f| f.get("type"))
                .and_then(Value::as_str);
            let thinking = match src.get("thinking").filter(|t| t.is_object()) {
                Some(t) => gemini_thinking(Some(t), None),
                None => match src.get("reasoning_effort").and_then(Value::as_str) {
                    Some("none") => Some(json!({"thinkingBudget": 0})),
                    Some(e) => {
                        budget_for(e).map(|b| json!({"includeThoughts": true, "thinkingBudget": b}))
                    }
                    None => None,
                },
            };
            (
                matches!(kind, Some("json_object" | "json_schema")),
                openai_schema(src),
                thinking,
            )
        }
        Flavor::Anthropic => {
            let config = src.get("output_config");
            let schema = config.and_then(|c| c.pointer("/format/schema"));
            let effort = config.and_then(|c| c.get("effort")).and_then(Value::as_str);
            (
                schema.is_some(),
                schema,
                gemini_thinking(src.get("thinking"), effort),
            )
        }
    };
    let generation = out
        .entry("generationConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if json_mode {
        generation["responseMimeType"] = "application/json".into();
    }
    if let Some(schema) = schema {
        generation["responseJsonSchema"] = schema.clone();
    }
    if let Some(t) = thinking {
        generation["thinkingConfig"] = t;
    }
}

/// Anthropic's thinking switch (or effort) as Gemini's `thinkingConfig`;
/// adaptive thinking is Gemini's dynamic budget (-1).
fn gemini_thinking(thinking: Option<&Value>, effort: Option<&str>) -> Option<Value> {
    let budget = match thinking.and_then(|t| t.get("type")).and_then(Value::as_str) {
        Some("enabled") => thinking?.get("budget_tokens").and_then(Value::as_i64)?,
        Some("adaptive") => effort.and_then(budget_for).map_or(-1, |b| b as i64),
        Some("disabled") => return Some(json!({"thinkingBudget": 0})),
        _ => budget_for(effort?)? as i64,
    };
    Some(json!({"includeThoughts": true, "thinkingBudget": budget}))
}

/// Converse: the effort and the schema in its own `outputConfig`; Claude's
/// thinking switch in the fields Bedrock hands the model.
fn converse(from: Flavor, src: &Map<String, Value>, model: &str, out: &mut Map<String, Value>) {
    let (thinking, effort, schema) = match from {
        Flavor::OpenAi => {
            let (thinking, effort) = anthropic_thinking(src, model);
            // Models other than Claude have no thinking switch: the effort
            // alone says how much to reason.
            let effort = effort.or_else(|| {
                src.get("reasoning_effort")
                    .and_then(Value::as_str)
                    .filter(|_| !is_claude(model))
                    .and_then(effort_for_anthropic)
            });
            let schema = openai_schema(src).map(|s| {
                let named = |k: &str| {
                    src.get("response_format")
                        .and_then(|f| f.get("json_schema"))
                        .and_then(|j| j.get(k))
                        .and_then(Value::as_str)
                };
                let (name, description) = (named("name"), named("description"));
                (s, name, description)
            });
            (thinking, effort.map(str::to_string), schema)
        }
        Flavor::Anthropic => {
            let config = src.get("output_config");
            let asked = config.and_then(|c| c.get("effort")).and_then(Value::as_str);
            // A model other than Claude reads a thinking budget as an effort.
            let effort = match asked {
                Some(e) => Some(e.to_string()),
                None if !is_claude(model) => {
                    effort_for_openai(src.get("thinking"), None).map(str::to_string)
                }
                None => None,
            };
            let schema = config
                .and_then(|c| c.pointer("/format/schema"))
                .map(|s| (s, None, None));
            (src.get("thinking").cloned(), effort, schema)
        }
    };
    let mut config = Map::new();
    if let Some(e) = effort {
        config.insert("effort".into(), e.into());
    }
    if let Some((schema, name, description)) = schema {
        let mut definition = json!({"schema": schema.to_string()});
        definition["name"] = name.unwrap_or("output").into();
        if let Some(d) = description {
            definition["description"] = d.into();
        }
        config.insert(
            "textFormat".into(),
            json!({"type": "json_schema", "structure": {"jsonSchema": definition}}),
        );
    }
    if !config.is_empty() {
        out.insert("outputConfig".into(), Value::Object(config));
    }
    if let Some(t) = thinking.filter(|_| is_claude(model)) {
        if let Some(max) = out
            .get_mut("inferenceConfig")
            .and_then(|c| c.get_mut("maxTokens"))
        {
            fit_budget(&t, max);
        }
        let fields = out
            .entry("additionalModelRequestFields")
            .or_insert_with(|| Value::Object(Map::new()));
        fields["thinking"] = t;
    }
}

// ---- answers ----------------------------------------------------------------

/// Whether a content part's JSON is a thinking block.
pub fn is_block(v: &Value) -> bool {
    matches!(
        v.get("type").and_then(Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

/// The thinking blocks of a whole answer from a provider speaking `wire`.
pub fn of_answer(wire: Wire, answer: &Value) -> Vec<Value> {
    match wire {
        Wire::Chat(Flavor::Anthropic) => answer
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| is_block(b))
            .cloned()
            .collect(),
        Wire::Chat(Flavor::OpenAi) => answer
            .pointer("/choices/0/message")
            .map(of_openai_message)
            .unwrap_or_default(),
        Wire::Converse => answer
            .pointer("/output/message/content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("reasoningContent"))
            .filter_map(from_converse)
            .collect(),
        Wire::Gemini => super::gemini::thinking_of(answer),
    }
}

/// An OpenAI message's thinking: its `thinking_blocks` when it kept them,
/// else its `reasoning_content` (or `reasoning`) as an unsigned block.
pub fn of_openai_message(m: &Value) -> Vec<Value> {
    if let Some(blocks) = m.get("thinking_blocks").and_then(Value::as_array) {
        return blocks.iter().filter(|b| is_block(b)).cloned().collect();
    }
    let text = m
        .get("reasoning_content")
        .or_else(|| m.get("reasoning"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    text.map(|t| vec![json!({"type": "thinking", "thinking": t, "signature": ""})])
        .unwrap_or_default()
}

/// A Converse `reasoningContent` as a block.
fn from_converse(r: &Value) -> Option<Value> {
    if let Some(t) = r.get("reasoningText") {
        let text = t.get("text").and_then(Value::as_str).unwrap_or_default();
        let signature = t
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Some(json!({"type": "thinking", "thinking": text, "signature": signature}));
    }
    let data = r.get("redactedContent").and_then(Value::as_str)?;
    Some(json!({"type": "redacted_thinking", "data": data}))
}

/// A block as Converse's `reasoningContent`, for an assistant turn sent
/// back; an unsigned one (no provider can check it) is left out.
pub fn to_converse(block: &Value) -> Option<Value> {
    match block.get("type").and_then(Value::as_str)? {
        "thinking" => {
            let signature = block.get("signature").and_then(Value::as_str)?;
            if signature.is_empty() {
                return None;
            }
            Some(json!({"reasoningContent": {"reasoningText": {
                "text": block.get("thinking").and_then(Value::as_str).unwrap_or_default(),
                "signature": signature}}}))
        }
        "redacted_thinking" => Some(json!({"reasoningContent": {
            "redactedContent": block.get("data")?}})),
        _ => None,
    }
}

/// Whether Anthropic can take the block back: signed, or redacted.
pub fn is_signed(block: &Value) -> bool {
    match block.get("type").and_then(Value::as_str) {
        Some("thinking") => block
            .get("signature")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        Some("redacted_thinking") => true,
        _ => false,
    }
}

/// The thinking text of some blocks, joined.
pub fn text_of(blocks: &[Value]) -> String {
    blocks
        .iter()
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Put the blocks on an OpenAI chat message.
pub fn onto_openai_message(blocks: &[Value], message: &mut Value) {
    if blocks.is_empty() {
        return;
    }
    let text = text_of(blocks);
    if !text.is_empty() {
        message["reasoning_content"] = text.into();
    }
    message["thinking_blocks"] = Value::Array(blocks.to_vec());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(from: Flavor, wire: Wire, body: Value, model: &str, out: Value) -> Value {
        let mut out = out.as_object().cloned().unwrap();
        carry(from, wire, &body, model, &mut out);
        Value::Object(out)
    }

    #[test]
    fn claude_models_before_4_6_think_on_a_budget() {
        for m in [
            "claude-3-7-sonnet-latest",
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-20250514",
            "claude-opus-4-1",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "claude-sonnet-4@20250514",
        ] {
            assert!(budget_only_claude(m), "{m}");
        }
        for m in [
            "claude-opus-4-6",
            "claude-sonnet-4-6",
            "claude-opus-4-7",
            "claude-sonnet-5",
            "claude-mythos-5-1",
            "global.anthropic.claude-opus-4-8-v1:0",
            "gpt-5",
        ] {
            assert!(!budget_only_claude(m), "{m}");
        }
    }

    #[test]
    fn openai_effort_and_schema_become_anthropic_thinking_and_output_config() {
        let body = json!({"reasoning_effort": "high", "response_format": {"type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}}});
        let old = carried(
            Flavor::OpenAi,
            Wire::Chat(Flavor::Anthropic),
            body.clone(),
            "claude-sonnet-4-5",
            json!({"max_tokens": 1000}),
        );
        assert_eq!(
            old["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        assert_eq!(
            old["max_tokens"], 5096,
            "the limit makes room for the budget"
        );
        assert_eq!(
            old["output_config"],
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}})
        );
        let new = carried(
            Flavor::OpenAi,
            Wire::Chat(Flavor::Anthropic),
            body,
            "claude-opus-4-7",
            json!({"max_tokens": 1000}),
        );
        assert_eq!(new["thinking"], json!({"type": "adaptive"}));
        assert_eq!(new["output_config"]["effort"], "high");
        assert_eq!(new["max_tokens"], 1000);
        // The client's own Anthropic-shaped switch wins.
        let own = carried(
            Flavor::OpenAi,
            Wire::Chat(Flavor::Anthropic),
            json!({"reasoning_effort": "low", "thinking": {"type": "enabled", "budget_tokens": 3000}}),
            "claude-opus-4-7",
            json!({"max_tokens": 8000}),
        );
        assert_eq!(own["thinking"]["budget_tokens"], 3000);
        assert!(own.get("output_config").is_none());
    }

    #[test]
    fn anthropic_thinking_and_format_become_openai_effort_and_response_format() {
        let out = carried(
            Flavor::Anthropic,
            Wire::Chat(Flavor::OpenAi),
            json!({"thinking": {"type": "enabled", "budget_tokens": 2500},
                   "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
            "gpt-5",
            json!({}),
        );
        assert_eq!(out["reasoning_effort"], "medium");
        assert_eq!(
            out["response_format"]["json_schema"]["schema"]["type"],
            "object"
        );
        let adaptive = carried(
            Flavor::Anthropic,
            Wire::Chat(Flavor::OpenAi),
            json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}),
            "gpt-5",
            json!({}),
        );
        assert_eq!(adaptive["reasoning_effort"], "xhigh");
    }

    #[test]
    fn converse_takes_effort_and_schema_natively_and_claude_thinking_apart() {
        let body = json!({"reasoning_effort": "medium", "response_format": {"type": "json_schema",
            "json_schema": {"name": "w", "description": "d", "schema": {"type": "object"}}}});
        let claude = carried(
            Flavor::OpenAi,
            Wire::Converse,
            body.clone(),
            "us.anthropic.claude-sonnet-4-5-v1:0",
            json!({"inferenceConfig": {"maxTokens": 2048}}),
        );
        assert_eq!(
            claude["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(claude["inferenceConfig"]["maxTokens"], 4096);
        let format = &claude["outputConfig"]["textFormat"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(
            format["structure"]["jsonSchema"]["schema"],
            r#"{"type":"object"}"#
        );
        assert_eq!(format["structure"]["jsonSchema"]["name"], "w");
        assert!(claude["outputConfig"].get("effort").is_none());
        let nova = carried(
            Flavor::OpenAi,
            Wire::Converse,
            body,
            "amazon.nova-2-lite-v1:0",
            json!({"inferenceConfig": {"maxTokens": 2048}}),
        );
        assert_eq!(nova["outputConfig"]["effort"], "medium");
        assert!(nova.get("additionalModelRequestFields").is_none());
        // Anthropic's budget: Claude's own field, another model's effort.
        let budget = json!({"thinking": {"type": "enabled", "budget_tokens": 5000}});
        let nova = carried(
            Flavor::Anthropic,
            Wire::Converse,
            budget.clone(),
            "amazon.nova-2-lite-v1:0",
            json!({"inferenceConfig": {"maxTokens": 8000}}),
        );
        assert_eq!(nova["outputConfig"]["effort"], "high");
        let claude = carried(
            Flavor::Anthropic,
            Wire::Converse,
            budget,
            "anthropic.claude-sonnet-4-5-v1:0",
            json!({"inferenceConfig": {"maxTokens": 8000}}),
        );
        assert_eq!(
            claude["additionalModelRequestFields"]["thinking"]["budget_tokens"],
            5000
        );
        assert!(claude.get("outputConfig").is_none());
    }

    #[test]
    fn json_mode_is_refused_only_where_it_cannot_go() {
        let body = json!({"response_format": {"type": "json_object"}});
        assert!(untranslatable(Flavor::OpenAi, Wire::Chat(Flavor::OpenAi), &body).is_none());
        for wire in [Wire::Chat(Flavor::Anthropic), Wire::Converse] {
            let (field, _) = untranslatable(Flavor::OpenAi, wire, &body).unwrap();
            assert_eq!(field, "response_format");
        }
    }

    #[test]
    fn thinking_reads_from_every_answer_shape() {
        let anthropic = json!({"content": [
            {"type": "thinking", "thinking": "hm", "signature": "s1"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "hi"}]});
        assert_eq!(
            of_answer(Wire::Chat(Flavor::Anthropic), &anthropic).len(),
            2
        );
        let converse = json!({"output": {"message": {"content": [
            {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "s1"}}},
            {"text": "hi"}]}}});
        let blocks = of_answer(Wire::Converse, &converse);
        assert_eq!(
            blocks,
            vec![json!({"type": "thinking", "thinking": "hm", "signature": "s1"})]
        );
        assert_eq!(
            to_converse(&blocks[0]).unwrap(),
            json!({"reasoningContent": {"reasoningText": {"text": "hm", "signature": "s1"}}})
        );
        let openai =
            json!({"choices": [{"message": {"content": "hi", "reasoning_content": "hm"}}]});
        let blocks = of_answer(Wire::Chat(Flavor::OpenAi), &openai);
        assert_eq!(blocks[0]["thinking"], "hm");
        assert!(
            !is_signed(&blocks[0]),
            "an unsigned block cannot go back to Claude"
        );
        assert!(to_converse(&blocks[0]).is_none());
        let mut message = json!({"role": "assistant"});
        onto_openai_message(
            &of_answer(Wire::Chat(Flavor::Anthropic), &anthropic),
            &mut message,
        );
        assert_eq!(message["reasoning_content"], "hm");
        assert_eq!(message["thinking_blocks"][1]["type"], "redacted_thinking");
    }
}
