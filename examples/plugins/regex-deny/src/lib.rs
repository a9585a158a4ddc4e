//! A complete Wardgate plugin: deny prompts and tool calls that match a regex.
use regex::Regex;
use wardgate_sdk::prelude::*;

#[derive(Deserialize)]
struct Config {
    pattern: String,
    #[serde(default = "forbidden")]
    status: u16,
}

fn forbidden() -> u16 {
    403
}

struct RegexDeny(Regex, u16);

impl Plugin for RegexDeny {
    type Config = Config;
    const HOOKS: Hooks = Hooks::LLM_REQUEST.union(Hooks::MCP_REQUEST);

    fn configure(c: Config) -> Result<Self, ConfigError> {
        let re = Regex::new(&c.pattern).map_err(|e| ConfigError::new("pattern", e))?;
        Ok(RegexDeny(re, c.status))
    }

    fn on_llm_request(&self, _: &RequestContext, req: LlmRequest) -> LlmRequestAction {
        match req.texts().any(|t| self.0.is_match(t)) {
            true => deny(self.1, "prompt matches a forbidden pattern"),
            false => LlmRequestAction::Continue,
        }
    }

    fn on_mcp_request(&self, _: &RequestContext, req: McpRequest) -> McpRequestAction {
        match req.arguments.is_some_and(|a| self.0.is_match(&a)) {
            true => deny(self.1, "tool arguments match a forbidden pattern"),
            false => McpRequestAction::Continue,
        }
    }
}

export_plugin!(RegexDeny);
