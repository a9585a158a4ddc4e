//! pii-guard: Presidio-compatible PII detection and anonymization without
//! an ML model. Pattern recognizers with checksums and context scoring
//! (`recognizers`), per-entity thresholds and operators: MASK replaces a
//! finding with `<ENTITY_TYPE>`, REDACT removes it, HASH puts a keyed
//! HMAC-SHA256 in its place, BLOCK denies the request.
//!
//! `pre_call` acts on what clients send (LLM messages, MCP tool arguments);
//! `post_call` on what comes back (LLM answers, whole or streamed, and MCP
//! tool results). A streamed answer is held back by a short tail so a value
//! split across chunks is masked whole (`stream`).

mod checksums;
mod recognizers;
mod stream;

use std::collections::BTreeMap;
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use serde_json::Value;
use wardgate_sdk::prelude::*;

pub use recognizers::{Analyzer, Entity, Finding};

/// Presidio's operators, as LiteLLM's Presidio guardrail names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    MASK,
    REDACT,
    HASH,
    BLOCK,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    PreCall,
    PostCall,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Modes {
    One(Mode),
    Many(Vec<Mode>),
}

/// `config:` of a pii-guard chain entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Entities to look for; all of them when absent (PERSON only with `names`).
    #[serde(default)]
    entities: Option<Vec<Entity>>,
    /// Minimum score per entity, and `ALL` for the rest (default 0.4).
    #[serde(default)]
    score_thresholds: BTreeMap<String, f32>,
    /// Operator per entity; MASK for those not listed.
    #[serde(default)]
    entity_actions: BTreeMap<String, Action>,
    /// `pre_call`, `post_call` or both (the default).
    #[serde(default)]
    mode: Option<Modes>,
    /// PERSON names to recognize (case-insensitive, whole words).
    #[serde(default)]
    names: Vec<String>,
    /// Key of HASH's HMAC-SHA256, so equal values hash alike only under one key.
    #[serde(default)]
    hash_key: Option<String>,
    /// HTTP status of a BLOCK.
    #[serde(default = "default_block_status")]
    block_status: u16,
}

fn default_block_status() -> u16 {
    400
}

const DEFAULT_THRESHOLD: f32 = 0.4;

pub struct PiiGuard {
    analyzer: Analyzer,
    thresholds: [f32; 10],
    actions: [Action; 10],
    pre_call: bool,
    post_call: bool,
    hash_key: Vec<u8>,
    block_status: u16,
    stream: Mutex<wardgate_sdk::stream::HoldBack>,
}

/// What scanning one text found: the anonymized text, or the entity that blocks.
pub enum Scan {
    Clean,
    Changed(String),
    Blocked(Entity),
}

impl PiiGuard {
    /// Findings kept after thresholds and overlap resolution (the higher
    /// score wins, then the longer span), in text order.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let mut all: Vec<Finding> = self
            .analyzer
            .analyze(text)
            .into_iter()
            .filter(|f| f.score >= self.thresholds[f.entity.index()])
            .collect();
        if all.len() > 1 {
            // Overlaps are resolved within clusters of findings that overlap
            // one another; clusters are small, text is long.
            all.sort_by_key(|f| (f.start, f.end));
            let mut kept = Vec::with_capacity(all.len());
            let mut cluster: Vec<Finding> = Vec::new();
            let mut cluster_end = 0;
            for f in all {
                if !cluster.is_empty() && f.start >= cluster_end {
                    resolve(&mut cluster, &mut kept);
                }
                cluster_end = if cluster.is_empty() {
                    f.end
                } else {
                    cluster_end.max(f.end)
                };
                cluster.push(f);
            }
            resolve(&mut cluster, &mut kept);
            all = kept;
        }
        all
    }

    /// Scan and anonymize one text.
    pub fn scan(&self, text: &str) -> Scan {
        let found = self.findings(text);
        if found.is_empty() {
            return Scan::Clean;
        }
        if let Some(f) = found
            .iter()
            .find(|f| self.actions[f.entity.index()] == Action::BLOCK)
        {
            return Scan::Blocked(f.entity);
        }
        Scan::Changed(self.anonymize(text, &found, 0))
    }

    /// `text` with every finding at or after `from` replaced by its operator.
    fn anonymize(&self, text: &str, found: &[Finding], from: usize) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = from;
        for f in found.iter().filter(|f| f.start >= from) {
            out.push_str(&text[at..f.start]);
            match self.actions[f.entity.index()] {
                Action::MASK | Action::BLOCK => {
                    out.push('<');
                    out.push_str(f.entity.name());
                    out.push('>');
                }
                Action::REDACT => {}
                Action::HASH => out.push_str(&self.hash(&text[f.start..f.end])),
            }
            at = f.end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn hash(&self, value: &str) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.hash_key)
            .expect("HMAC takes keys of any length");
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn block<A: From<Denial>>(&self, entity: Entity, direction: &str) -> A {
        Denial::new(
            self.block_status,
            format!("{direction} blocked: it contains {}", entity.name()),
        )
        .with_jsonrpc_code(-32602)
        .into()
    }

    /// A JSON document anonymized: None when unchanged.
    fn scan_json_text(&self, json: &str) -> Result<Option<String>, Entity> {
        // Most documents hold nothing: find that out without building them.
        if !self.analyzer.needs_every_text()
            && wardgate_sdk::text::any_json_string(json, &mut |s| self.analyzer.may_match(s))
                == Some(false)
        {
            return Ok(None);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(json) else {
            return match self.scan(json) {
                Scan::Blocked(e) => Err(e),
                _ => Ok(None),
            };
        };
        let changed =
            wardgate_sdk::text::rewrite_json_strings(&mut v, &mut |s| match self.scan(s) {
                Scan::Clean => Ok(None),
                Scan::Changed(new) => Ok(Some(new)),
                Scan::Blocked(e) => Err(e),
            })?;
        Ok(changed.then(|| v.to_string()))
    }
}

/// Keep from overlapping findings the surest (then the longest), then
/// whatever does not overlap what is kept; in text order.
fn resolve(cluster: &mut Vec<Finding>, kept: &mut Vec<Finding>) {
    if cluster.len() == 1 {
        kept.push(cluster[0]);
    } else {
        cluster.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then((b.end - b.start).cmp(&(a.end - a.start)))
                .then(a.start.cmp(&b.start))
        });
        let from = kept.len();
        for f in cluster.iter() {
            if kept[from..]
                .iter()
                .all(|k| f.end <= k.start || f.start >= k.end)
            {
                kept.push(*f);
            }
        }
        kept[from..].sort_by_key(|f| f.start);
    }
    cluster.clear();
}

fn entity_key(name: &str, field: &str) -> Result<Entity, ConfigError> {
    serde_json::from_value(Value::String(name.to_string())).map_err(|_| {
        let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
        ConfigError::new(
            format!("{field}.{name}"),
            format!("unknown entity; expected one of {}", names.join(", ")),
        )
    })
}

impl Plugin for PiiGuard {
    type Config = Config;
    const HOOKS: Hooks = Hooks::LLM_REQUEST
        .union(Hooks::MCP_REQUEST)
        .union(Hooks::LLM_RESPONSE)
        .union(Hooks::LLM_CHUNK)
        .union(Hooks::MCP_RESPONSE);

    fn active_hooks(&self) -> Hooks {
        let mut hooks = Hooks::empty();
        if self.pre_call {
            hooks |= Hooks::LLM_REQUEST.union(Hooks::MCP_REQUEST);
        }
        if self.post_call {
            hooks |= Hooks::LLM_RESPONSE
                .union(Hooks::LLM_CHUNK)
                .union(Hooks::MCP_RESPONSE);
        }
        hooks
    }

    fn configure(config: Config) -> Result<Self, ConfigError> {
        let mut thresholds = [DEFAULT_THRESHOLD; 10];
        if let Some(all) = config.score_thresholds.get("ALL") {
            thresholds = [*all; 10];
        }
        for (name, score) in &config.score_thresholds {
            if !(0.0..=1.0).contains(score) {
                return Err(ConfigError::new(
                    format!("scoreThresholds.{name}"),
                    "must be a score from 0 to 1",
                ));
            }
            if name != "ALL" {
                thresholds[entity_key(name, "scoreThresholds")?.index()] = *score;
            }
        }
        let mut actions = [Action::MASK; 10];
        for (name, action) in &config.entity_actions {
            actions[entity_key(name, "entityActions")?.index()] = *action;
        }
        let entities = match &config.entities {
            Some(list) => list.clone(),
            None => Entity::ALL.to_vec(),
        };
        if entities.contains(&Entity::PERSON)
            && config.names.is_empty()
            && config.entities.is_some()
        {
            return Err(ConfigError::new(
                "names",
                "PERSON is found from a list of names: give `names`",
            ));
        }
        if actions.contains(&Action::HASH) && config.hash_key.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::new(
                "hashKey",
                "HASH needs a key (e.g. hashKey: ${PII_HASH_KEY})",
            ));
        }
        if !(100..=599).contains(&config.block_status) {
            return Err(ConfigError::new(
                "blockStatus",
                "must be an HTTP status (100-599)",
            ));
        }
        let (pre_call, post_call) = match config.mode {
            None => (true, true),
            Some(Modes::One(m)) => (m == Mode::PreCall, m == Mode::PostCall),
            Some(Modes::Many(ms)) => (ms.contains(&Mode::PreCall), ms.contains(&Mode::PostCall)),
        };
        let analyzer =
            Analyzer::new(&entities, &config.names).map_err(|e| ConfigError::new("names", e))?;
        let guard = PiiGuard {
            analyzer,
            thresholds,
            actions,
            pre_call,
            post_call,
            hash_key: config.hash_key.unwrap_or_default().into_bytes(),
            block_status: config.block_status,
            stream: Mutex::default(),
        };
        // Fill the regex engines' caches now, so the post-configure
        // snapshot carries them warm into every request.
        guard.findings(stream::WARM_UP);
        Ok(guard)
    }

    fn on_llm_request(&self, _: &RequestContext, mut req: LlmRequest) -> LlmRequestAction {
        let mut changed = false;
        for msg in &mut req.messages {
            for part in &mut msg.content {
                if let ContentPart::Text(t) = part {
                    match self.scan(t) {
                        Scan::Clean => {}
                        Scan::Changed(new) => {
                            *t = new;
                            changed = true;
                        }
                        Scan::Blocked(e) => return self.block(e, "request"),
                    }
                }
            }
            for call in &mut msg.tool_calls {
                match self.scan_json_text(&call.arguments) {
                    Ok(None) => {}
                    Ok(Some(new)) => {
                        call.arguments = new;
                        changed = true;
                    }
                    Err(e) => return self.block(e, "request"),
                }
            }
        }
        if changed {
            LlmRequestAction::Modify(LlmRequestEdit {
                model: None,
                messages: Some(req.messages),
            })
        } else {
            LlmRequestAction::Continue
        }
    }

    fn on_llm_response(&self, _: &RequestContext, mut resp: LlmResponse) -> LlmResponseAction {
        let text = match self.scan(&resp.text) {
            Scan::Clean => None,
            Scan::Changed(new) => Some(new),
            Scan::Blocked(e) => return self.block(e, "response"),
        };
        let mut calls_changed = false;
        for call in &mut resp.tool_calls {
            match self.scan_json_text(&call.arguments) {
                Ok(None) => {}
                Ok(Some(new)) => {
                    call.arguments = new;
                    calls_changed = true;
                }
                Err(e) => return self.block(e, "response"),
            }
        }
        if text.is_none() && !calls_changed {
            return LlmResponseAction::Continue;
        }
        LlmResponseAction::Modify(LlmResponseEdit {
            text,
            tool_calls: calls_changed.then_some(resp.tool_calls),
        })
    }

    fn on_llm_chunk(&self, _: &RequestContext, chunk: LlmChunk) -> LlmChunkAction {
        let mut held = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        match stream::next(self, &mut held, &chunk) {
            Ok(out) if out == chunk.text => LlmChunkAction::Continue,
            Ok(out) => LlmChunkAction::Modify(out),
            Err(e) => self.block(e, "response"),
        }
    }

    fn on_mcp_request(&self, _: &RequestContext, req: McpRequest) -> McpRequestAction {
        let Some(args) = req.arguments else {
            return McpRequestAction::Continue;
        };
        match self.scan_json_text(&args) {
            Ok(None) => McpRequestAction::Continue,
            Ok(Some(new)) => McpRequestAction::Modify(new),
            Err(e) => self.block(e, "request"),
        }
    }

    fn on_mcp_response(&self, _: &RequestContext, resp: McpResponse) -> McpResponseAction {
        match self.scan_json_text(&resp.result) {
            Ok(None) => McpResponseAction::Continue,
            Ok(Some(new)) => McpResponseAction::Modify(new),
            Err(e) => self.block(e, "response"),
        }
    }
}

export_plugin!(PiiGuard);

#[cfg(test)]
mod tests;
