//! The route's `policies.ai`: which API a request path speaks (`routes`),
//! and on a request body model aliases, defaults and overrides, the route's
//! prompts around the client's messages, and cache breakpoints on what goes
//! to Anthropic.
//!
//! Prompts are added to the body in the client's own API shape, before the
//! hooks read it, so plugins see (and translation carries) what the
//! provider will get.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::api::{Api, Flavor};
use crate::config::schema::{self, AiRouteType, PromptCaching, PromptMessage, PromptRole};

/// The shape of a request body, by the client's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// OpenAI chat completions: `messages` with roles.
    OpenAiChat,
    /// Anthropic messages: `system` apart, `messages` of user and assistant.
    AnthropicMessages,
    /// OpenAI's Responses API: `input` (a string or items).
    Responses,
}

#[derive(Default)]
pub struct AiPolicy {
    pub aliases: BTreeMap<String, String>,
    defaults: Map<String, Value>,
    overrides: Map<String, Value>,
    prepend: Vec<PromptMessage>,
    append: Vec<PromptMessage>,
    caching: Option<PromptCaching>,
    /// `routes`: path suffixes, longest first, and the API each speaks.
    routes: Vec<(String, Api)>,
    /// `routes["*"]`: the API of every other path.
    other_paths: Option<Api>,
}

/// Anthropic allows four cache breakpoints per request.
const MAX_BREAKPOINTS: usize = 4;

impl AiPolicy {
    pub fn build(ai: Option<&schema::AiPolicy>) -> AiPolicy {
        let Some(ai) = ai else {
            return AiPolicy::default();
        };
        let prompts = ai.prompts.clone().unwrap_or_default();
        let mut routes: Vec<(String, Api)> = ai
            .routes
            .iter()
            .flatten()
            .filter(|(suffix, _)| suffix.as_str() != "*")
            .map(|(suffix, kind)| (suffix.trim_end_matches('/').to_string(), api_of(*kind)))
            .collect();
        routes.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        let other_paths = ai
            .routes
            .as_ref()
            .and_then(|r| r.get("*"))
            .map(|kind| api_of(*kind));
        AiPolicy {
            aliases: ai.model_aliases.clone().unwrap_or_default(),
            defaults: ai
                .defaults
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            overrides: ai
                .overrides
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            prepend: prompts.prepend,
            append: prompts.append,
            caching: ai.prompt_caching.clone(),
            routes,
            other_paths,
        }
    }

    /// The API a request path speaks: the route's `routes` first (the
    /// longest suffix the path ends with, else `*`), then the built-in table.
    pub fn classify(&self, path: &str) -> Api {
        let trimmed = path.trim_end_matches('/');
        self.routes
            .iter()
            .find(|(suffix, _)| trimmed.ends_with(suffix.as_str()))
            .map(|(_, api)| *api)
            .or(self.other_paths)
            .unwrap_or_else(|| Api::classify(path))
    }

    /// The client's body as the route wants it sent.
    pub fn apply(&self, shape: BodyShape, body: &mut Map<String, Value>) {
        if let Some(Value::String(m)) = body.get("model")
            && let Some(real) = self.aliases.get(m)
        {
            body.insert("model".into(), real.clone().into());
        }
        for (k, v) in &self.defaults {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &self.overrides {
            body.insert(k.clone(), v.clone());
        }
        if !self.prepend.is_empty() || !self.append.is_empty() {
            self.enrich(shape, body);
        }
    }

    fn enrich(&self, shape: BodyShape, body: &mut Map<String, Value>) {
        match shape {
            BodyShape::OpenAiChat => {
                let item =
                    |m: &PromptMessage| json!({"role": m.role.as_str(), "content": m.content});
                surround(body, "messages", &self.prepend, &self.append, item);
            }
            BodyShape::Responses => {
                if let Some(Value::String(text)) = body.get("input") {
                    let text = text.clone();
                    body.insert("input".into(), json!([{"role": "user", "content": text}]));
                }
                let item = |m: &PromptMessage| json!({"type": "message", "role": m.role.as_str(), "content": m.content});
                surround(body, "input", &self.prepend, &self.append, item);
            }
            BodyShape::AnthropicMessages => {
                // Anthropic has no system role among messages: system and
                // developer prompts join the `system` blocks, in order.
                let is_system = |m: &&PromptMessage| {
                    matches!(m.role, PromptRole::System | PromptRole::Developer)
                };
                let block = |m: &PromptMessage| json!({"type": "text", "text": m.content});
                let before: Vec<Value> = self.prepend.iter().filter(is_system).map(block).collect();
                let after: Vec<Value> = self.append.iter().filter(is_system).map(block).collect();
                if !before.is_empty() || !after.is_empty() {
                    let mut system = before;
                    system.extend(system_blocks(body.remove("system")));
                    system.extend(after);
                    body.insert("system".into(), Value::Array(system));
                }
                // A turn next to one of the same role joins it, so roles
                // still alternate.
                let messages = body
                    .entry("messages")
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(messages) = messages else {
                    return;
                };
                for m in self.prepend.iter().rev().filter(|m| !is_system(m)) {
                    match messages.first_mut() {
                        Some(first) if first["role"] == m.role.as_str() => {
                            content_blocks(first).insert(0, block(m));
                        }
                        _ => messages.insert(0, turn(m)),
                    }
                }
                for m in self.append.iter().filter(|m| !is_system(m)) {
                    match messages.last_mut() {
                        Some(last) if last["role"] == m.role.as_str() => {
                            content_blocks(last).push(block(m));
                        }
                        _ => messages.push(turn(m)),
                    }
                }
            }
        }
    }

    /// Set cache breakpoints on a body about to go to Anthropic: the last
    /// tool, the last system block, the last block of the last message
    /// (each as configured), within Anthropic's limit of four counting the
    /// client's own.
    pub fn cache(&self, body: &mut Map<String, Value>) {
        let Some(caching) = self.caching_for(body) else {
            return;
        };
        let mut free =
            MAX_BREAKPOINTS.saturating_sub(body.values().map(count_breakpoints).sum::<usize>());
        let mut mark = |block: Option<&mut Value>| {
            if let Some(Value::Object(block)) = block
                && free > 0
                && !block.contains_key("cache_control")
            {
                block.insert("cache_control".into(), json!({"type": "ephemeral"}));
                free -= 1;
            }
        };
        if caching.cache_tools
            && let Some(Value::Array(tools)) = body.get_mut("tools")
        {
            mark(tools.last_mut());
        }
        if caching.cache_system && body.contains_key("system") {
            let blocks = system_blocks(body.remove("system"));
            body.insert("system".into(), Value::Array(blocks));
            if let Some(Value::Array(blocks)) = body.get_mut("system") {
                mark(blocks.last_mut());
            }
        }
        if caching.cache_messages
            && let Some(Value::Array(messages)) = body.get_mut("messages")
            && let Some(last) = messages.last_mut()
        {
            mark(content_blocks(last).last_mut());
        }
    }

    /// The caching settings, if the route caches and `body`'s prompt is
    /// long enough to be worth it.
    fn caching_for(&self, body: &Map<String, Value>) -> Option<&PromptCaching> {
        let caching = self.caching.as_ref()?;
        let short = caching
            .min_tokens
            .is_some_and(|min| estimated_tokens(body) < min);
        (!short).then_some(caching)
    }

    /// The same breakpoints on a Converse body (Bedrock), as Converse
    /// writes them: a `cachePoint` block after the tools, after the system
    /// blocks and after the last message's blocks (three of Bedrock's four).
    pub fn cache_converse(&self, body: &mut Map<String, Value>) {
        let Some(caching) = self.caching_for(body) else {
            return;
        };
        let append = |list: Option<&mut Value>| {
            if let Some(Value::Array(list)) = list
                && !list.is_empty()
            {
                list.push(json!({"cachePoint": {"type": "default"}}));
            }
        };
        if caching.cache_tools {
            append(body.get_mut("toolConfig").and_then(|c| c.get_mut("tools")));
        }
        if caching.cache_system {
            append(body.get_mut("system"));
        }
        if caching.cache_messages {
            let last = body
                .get_mut("messages")
                .and_then(Value::as_array_mut)
                .and_then(|m| m.last_mut());
            append(last.and_then(|m| m.get_mut("content")));
        }
    }
}

fn api_of(kind: AiRouteType) -> Api {
    match kind {
        AiRouteType::Completions => Api::Chat(Flavor::OpenAi),
        AiRouteType::Messages => Api::Chat(Flavor::Anthropic),
        AiRouteType::Responses => Api::RESPONSES,
        AiRouteType::Embeddings => Api::Native("embeddings"),
        AiRouteType::Models => Api::Native("models"),
        AiRouteType::AnthropicTokenCount => Api::Native("messages/count_tokens"),
        AiRouteType::Realtime => Api::REALTIME,
        AiRouteType::Rerank | AiRouteType::Detect | AiRouteType::Passthrough => Api::Other,
    }
}

/// Put `before` items first and `after` items last in the list at `key`.
fn surround(
    body: &mut Map<String, Value>,
    key: &str,
    before: &[PromptMessage],
    after: &[PromptMessage],
    item: impl Fn(&PromptMessage) -> Value,
) {
    let list = body.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.splice(0..0, before.iter().map(&item));
        list.extend(after.iter().map(&item));
    }
}

fn turn(m: &PromptMessage) -> Value {
    json!({"role": m.role.as_str(), "content": m.content})
}

/// A message's content as a list of blocks (it may be a string), to add to.
fn content_blocks(message: &mut Value) -> &mut Vec<Value> {
    if !message["content"].is_array() {
        let blocks = system_blocks(message.get_mut("content").map(Value::take));
        message["content"] = Value::Array(blocks);
    }
    match &mut message["content"] {
        Value::Array(blocks) => blocks,
        _ => unreachable!("just made a list"),
    }
}

/// Anthropic's `system` as a list of text blocks (it may be a string).
fn system_blocks(system: Option<Value>) -> Vec<Value> {
    match system {
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    }
}

fn count_breakpoints(v: &Value) -> usize {
    match v {
        Value::Object(map) => {
            usize::from(map.contains_key("cache_control"))
                + map.values().map(count_breakpoints).sum::<usize>()
        }
        Value::Array(list) => list.iter().map(count_breakpoints).sum(),
        _ => 0,
    }
}

/// About four characters a token: enough to tell a short prompt from a long one.
fn estimated_tokens(body: &Map<String, Value>) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len(),
            Value::Array(list) => list.iter().map(chars).sum(),
            Value::Object(map) => map.values().map(chars).sum(),
            _ => 0,
        }
    }
    let text: usize = ["system", "messages", "tools", "toolConfig"]
        .iter()
        .filter_map(|k| body.get(*k))
        .map(chars)
        .sum();
    (text / 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_ai: Value) -> AiPolicy {
        let ai: schema::AiPolicy = serde_json::from_value(yaml_ai).unwrap();
        AiPolicy::build(Some(&ai))
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn enrichment() -> AiPolicy {
        policy(json!({"prompts": {
            "prepend": [{"role": "system", "content": "Be polite."}, {"role": "user", "content": "Context: acme"}],
            "append": [{"role": "developer", "content": "Answer in English."}]}}))
    }

    #[test]
    fn prompts_go_around_the_messages_in_each_shape() {
        let p = enrichment();
        let mut b = body(json!({"messages": [{"role": "user", "content": "hi"}]}));
        p.apply(BodyShape::OpenAiChat, &mut b);
        let roles: Vec<_> = b["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "user", "developer"]);
        assert_eq!(b["messages"][2]["content"], "hi");

        let mut b = body(
            json!({"system": "Client system.", "messages": [{"role": "user", "content": "hi"}]}),
        );
        p.apply(BodyShape::AnthropicMessages, &mut b);
        let system: Vec<_> = b["system"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            system,
            ["Be polite.", "Client system.", "Answer in English."]
        );
        // The user prompt joins the client's first user turn: roles alternate.
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][0]["content"][0]["text"], "Context: acme");
        assert_eq!(b["messages"][0]["content"][1]["text"], "hi");
        let prefill =
            policy(json!({"prompts": {"append": [{"role": "assistant", "content": "Sure:"}]}}));
        let mut b = body(json!({"messages": [{"role": "user", "content": "hi"}]}));
        prefill.apply(BodyShape::AnthropicMessages, &mut b);
        assert_eq!(
            b["messages"][1],
            json!({"role": "assistant", "content": "Sure:"})
        );

        let mut b = body(json!({"input": "hi", "instructions": "terse"}));
        p.apply(BodyShape::Responses, &mut b);
        let input = b["input"].as_array().unwrap();
        assert_eq!(input.len(), 4);
        assert_eq!(
            input[0],
            json!({"type": "message", "role": "system", "content": "Be polite."})
        );
        assert_eq!(input[2], json!({"role": "user", "content": "hi"}));
        assert_eq!(input[3]["role"], "developer");
        assert_eq!(b["instructions"], "terse");
    }

    #[test]
    fn route_types_by_path_suffix_then_star_then_the_built_in_table() {
        let p = policy(
            json!({"routes": {"/v1/messages": "Messages", "/v1/models": "Passthrough",
            "/custom/chat": "completions", "*": "Passthrough"}}),
        );
        assert_eq!(p.classify("/v1/messages"), Api::Chat(Flavor::Anthropic));
        assert_eq!(
            p.classify("/anthropic/v1/messages/"),
            Api::Chat(Flavor::Anthropic)
        );
        assert_eq!(p.classify("/custom/chat"), Api::Chat(Flavor::OpenAi));
        assert_eq!(p.classify("/v1/models"), Api::Other);
        assert_eq!(p.classify("/v1/chat/completions"), Api::Other, "the star");
        let p = policy(json!({"routes": {"/v1/chat/completions": "completions"}}));
        assert_eq!(p.classify("/v1/embeddings"), Api::Native("embeddings"));
        assert_eq!(
            AiPolicy::default().classify("/v1/responses"),
            Api::RESPONSES
        );
    }

    #[test]
    fn aliases_defaults_and_overrides_still_apply() {
        let p = policy(
            json!({"modelAliases": {"fast": "real"}, "defaults": {"temperature": 0.5},
            "overrides": {"max_tokens": 7}}),
        );
        let mut b = body(json!({"model": "fast", "temperature": 1.0, "max_tokens": 100}));
        p.apply(BodyShape::OpenAiChat, &mut b);
        assert_eq!(b["model"], "real");
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["max_tokens"], 7);
        assert!(b.get("messages").is_none(), "no prompts, no messages added");
    }

    #[test]
    fn cache_breakpoints_mark_tools_system_and_the_last_turn_within_four() {
        let p = policy(json!({"promptCaching": {}}));
        let mut b = body(json!({"system": "Long instructions.",
            "tools": [{"name": "a"}, {"name": "b"}],
            "messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                         {"role": "user", "content": "three"}]}));
        p.cache(&mut b);
        let ephemeral = json!({"type": "ephemeral"});
        assert_eq!(b["tools"][1]["cache_control"], ephemeral);
        assert!(b["tools"][0].get("cache_control").is_none());
        assert_eq!(b["system"][0]["text"], "Long instructions.");
        assert_eq!(b["system"][0]["cache_control"], ephemeral);
        assert_eq!(b["messages"][2]["content"][0]["text"], "three");
        assert_eq!(b["messages"][2]["content"][0]["cache_control"], ephemeral);
        assert!(b["messages"][0]["content"].is_string());

        // The client's own breakpoints count against the four.
        let mut b = body(json!({"system": [
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "a"}], "messages": [{"role": "user", "content": "x"}]}));
        p.cache(&mut b);
        assert_eq!(count_breakpoints(&Value::Object(b.clone())), 4, "{b:?}");
        assert_eq!(b["tools"][0]["cache_control"], ephemeral);
        assert!(
            b["messages"][0]["content"][0]
                .get("cache_control")
                .is_none()
        );

        // Below minTokens nothing is marked; switched-off parts are left alone.
        let p = policy(json!({"promptCaching": {"minTokens": 1000, "cacheTools": false}}));
        let mut b =
            body(json!({"system": "short", "messages": [{"role": "user", "content": "x"}]}));
        p.cache(&mut b);
        assert_eq!(count_breakpoints(&Value::Object(b.clone())), 0);
        assert_eq!(b["system"], "short");
    }

    #[test]
    fn converse_bodies_get_cache_points_after_tools_system_and_the_last_turn() {
        let p = policy(json!({"promptCaching": {}}));
        let point = json!({"cachePoint": {"type": "default"}});
        let mut b = body(json!({"system": [{"text": "Long instructions."}],
            "toolConfig": {"tools": [{"toolSpec": {"name": "a"}}]},
            "messages": [{"role": "user", "content": [{"text": "one"}]},
                         {"role": "assistant", "content": [{"text": "two"}]},
                         {"role": "user", "content": [{"text": "three"}]}]}));
        p.cache_converse(&mut b);
        assert_eq!(b["toolConfig"]["tools"][1], point);
        assert_eq!(b["system"], json!([{"text": "Long instructions."}, point]));
        assert_eq!(b["messages"][2]["content"][1], point);
        assert_eq!(b["messages"][0]["content"].as_array().unwrap().len(), 1);

        // Below minTokens, or switched off, nothing is added.
        let p = policy(json!({"promptCaching": {"minTokens": 1000}}));
        let before = body(json!({"system": [{"text": "short"}],
            "messages": [{"role": "user", "content": [{"text": "x"}]}]}));
        let mut b = before.clone();
        p.cache_converse(&mut b);
        assert_eq!(b, before);
        let p = policy(json!({"promptCaching": {"cacheSystem": false, "cacheMessages": false}}));
        let mut b = before.clone();
        p.cache_converse(&mut b);
        assert_eq!(b, before, "no tools to mark, the rest switched off");
    }
}
