//! A plugin whose `mode` picks a behaviour for the runtime's containment and
//! isolation tests:
//! - `noop`: continue on every hook (benchmarks measure this).
//! - `trap`: panic while handling a request.
//! - `loop`: spin forever.
//! - `memory`: allocate until the host says no.
//! - `remember`: deny if it still holds a previous request's body.
//! - `counter`: count requests in the host's counter store (needs `counters`),
//!   and each `configure` under `testbed-configures`.
//! - `modify`: rewrite the prompt and the MCP arguments.
//! - `configure-panic`: panic in `configure`.

use std::sync::Mutex;
use wardgate_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: String,
}

struct Testbed {
    mode: String,
}

// Deliberately global: the isolation test checks that it does not leak.
static REMEMBERED: Mutex<Option<Vec<u8>>> = Mutex::new(None);

impl Plugin for Testbed {
    type Config = Config;
    const HOOKS: Hooks = Hooks::HTTP_REQUEST
        .union(Hooks::LLM_REQUEST)
        .union(Hooks::MCP_REQUEST);

    fn configure(c: Config) -> Result<Self, ConfigError> {
        const MODES: [&str; 8] = [
            "noop",
            "trap",
            "loop",
            "memory",
            "remember",
            "counter",
            "modify",
            "configure-panic",
        ];
        if !MODES.contains(&c.mode.as_str()) {
            return Err(ConfigError::new(
                "mode",
                format!("unknown mode '{}', expected one of {MODES:?}", c.mode),
            ));
        }
        if c.mode == "configure-panic" {
            panic!("configure exploded");
        }
        if c.mode == "counter" {
            counters::increment("testbed-configures", 1, 60_000);
        }
        Ok(Testbed { mode: c.mode })
    }

    fn on_http_request(&self, _: &RequestContext, req: HttpRequest) -> HttpRequestAction {
        match self.mode.as_str() {
            "trap" => panic!("testbed trap on {}", req.path),
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "remember" => {
                let mut last = REMEMBERED.lock().unwrap();
                let previous = last.replace(req.body.unwrap_or_default());
                match previous {
                    Some(prev) => deny(
                        409,
                        format!("saw previous body: {}", String::from_utf8_lossy(&prev)),
                    ),
                    None => HttpRequestAction::Continue,
                }
            }
            "counter" => {
                let c = counters::increment("testbed-requests", 1, 60_000);
                deny(200, c.value.to_string())
            }
            _ => HttpRequestAction::Continue,
        }
    }

    fn on_llm_request(&self, _: &RequestContext, mut req: LlmRequest) -> LlmRequestAction {
        if self.mode != "modify" {
            return LlmRequestAction::Continue;
        }
        for m in &mut req.messages {
            m.map_texts(|t| Some(t.replace("secret", "[masked]")));
        }
        LlmRequestAction::Modify(LlmRequestEdit {
            model: Some("rewritten-model".into()),
            messages: Some(req.messages),
        })
    }

    fn on_mcp_request(&self, _: &RequestContext, _req: McpRequest) -> McpRequestAction {
        match self.mode.as_str() {
            "modify" => McpRequestAction::Modify(r#"{"rewritten":true}"#.into()),
            _ => McpRequestAction::Continue,
        }
    }
}

export_plugin!(Testbed);
