//! Built-in policy `cel-authz`: authorization rules in CEL.
//!
//! ```yaml
//! config:
//!   scope: mcp            # where the rules apply: http (default), mcp or llm
//!   rules:
//!   - allow: 'mcp.tool.name in ["add", "multiply"]'
//!   - deny: 'jwt.org != "acme"'
//!   - require: 'source.address.startsWith("10.")'
//!   - 'request.method == "GET"'          # a bare string is an allow rule
//! ```
//!
//! A request is denied when a `deny` rule holds or a `require` rule does
//! not; if there are `allow` rules, one of them must hold. A rule that
//! fails to evaluate (a missing claim, a type error) denies. In the `mcp`
//! scope, lists (tools, prompts, resources) keep only the items the rules
//! allow, so `mcp.tool.name in [...]` also hides the other tools, and
//! `mcp.tool.name == ""` lists none. This is agentgateway's
//! `mcpAuthorization` / `authorization`, which expand to this plugin.
//!
//! Variables, by scope:
//! - always: `source` (`address`, `port`), `jwt` (the verified claims, `{}` without a token)
//! - http: `request` (`method`, `path`, `headers` with lower-case names)
//! - mcp: `mcp` (`method`, `target`, `tool.name`, `prompt.name`, `resource.name`)
//! - llm: `llm` (`model`, `provider`)

use std::collections::HashMap;
use std::sync::Mutex;

use cel::{Context, Program, Value};
use serde_json::json;
use wardgate_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    scope: Scope,
    rules: Vec<RuleConfig>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Scope {
    #[default]
    Http,
    Mcp,
    Llm,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RuleConfig {
    Bare(String),
    Tagged(Tagged),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Tagged {
    Allow(String),
    Deny(String),
    Require(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Effect {
    Allow,
    Deny,
    Require,
}

struct Rule {
    effect: Effect,
    source: String,
    program: Program,
}

struct CelAuthz {
    scope: Scope,
    rules: Vec<Rule>,
    has_allow: bool,
    /// The standard functions, registered once at configure: building
    /// them is most of what a fresh context costs.
    root: Context<'static, 'static>,
    /// Which of [`IDENTITY_NAMES`] the rules read, and whether any reads
    /// `source`: unread ones are not built.
    identity_names: Vec<&'static str>,
    uses_source: bool,
    /// Decisions already made in the `mcp` and `llm` scopes, keyed by all a
    /// rule can read there (see [`CelAuthz::decide_once`]). CEL has no
    /// clock or other hidden input, so a decision never goes stale; an
    /// instance reused across requests (the built-ins' default) answers a
    /// repeated tool call with a lookup instead of an evaluation (~15 µs).
    memo: Mutex<HashMap<String, Result<(), String>>>,
}

/// Memo entries kept before it starts over, and the longest key kept: a
/// client picks the model name and its token's claims, so these bound what
/// a stream of distinct or oversized keys can take of the instance's memory
/// (~1 MiB); longer keys are decided without the memo.
const MEMO_ENTRIES: usize = 1024;
const MEMO_KEY_BYTES: usize = 1024;

/// Names of the caller's verified identity, one per authentication policy
/// (JWT claims, an API key's metadata, `{username}`), as agentgateway's CEL
/// spells them. A request has one identity, so a rule may read whichever
/// name fits its route.
const IDENTITY_NAMES: [&str; 3] = ["jwt", "apiKey", "basicAuth"];

const SCOPE_VARS: [(&str, Scope); 3] = [
    ("request", Scope::Http),
    ("mcp", Scope::Mcp),
    ("llm", Scope::Llm),
];

impl Plugin for CelAuthz {
    type Config = Config;
    const HOOKS: Hooks = Hooks::HTTP_REQUEST
        .union(Hooks::MCP_REQUEST)
        .union(Hooks::MCP_LIST)
        .union(Hooks::LLM_REQUEST);

    fn active_hooks(&self) -> Hooks {
        match self.scope {
            Scope::Http => Hooks::HTTP_REQUEST,
            Scope::Mcp => Hooks::MCP_REQUEST.union(Hooks::MCP_LIST),
            Scope::Llm => Hooks::LLM_REQUEST,
        }
    }

    fn configure(c: Config) -> Result<Self, ConfigError> {
        if c.rules.is_empty() {
            return Err(ConfigError::new("rules", "needs at least one rule"));
        }
        let mut rules = Vec::new();
        for (i, rule) in c.rules.into_iter().enumerate() {
            let (effect, source, field) = match rule {
                RuleConfig::Bare(s) => (Effect::Allow, s, format!("rules[{i}]")),
                RuleConfig::Tagged(Tagged::Allow(s)) => {
                    (Effect::Allow, s, format!("rules[{i}].allow"))
                }
                RuleConfig::Tagged(Tagged::Deny(s)) => {
                    (Effect::Deny, s, format!("rules[{i}].deny"))
                }
                RuleConfig::Tagged(Tagged::Require(s)) => {
                    (Effect::Require, s, format!("rules[{i}].require"))
                }
            };
            let program = Program::compile(&source).map_err(|errors| {
                let detail = errors
                    .errors
                    .first()
                    .map(|e| format!("column {}: {}", e.pos.1 + 1, e.msg))
                    .unwrap_or_else(|| errors.to_string());
                ConfigError::new(field.clone(), format!("CEL does not compile at {detail}"))
            })?;
            let refs = program.references();
            for (var, scope) in SCOPE_VARS {
                if refs.has_variable(var) && scope != c.scope {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "uses `{var}`, which exists only in scope {scope:?}; this entry's scope is {:?}",
                            c.scope
                        )
                        .to_lowercase(),
                    ));
                }
            }
            rules.push(Rule {
                effect,
                source,
                program,
            });
        }
        let uses = |var: &str| {
            rules
                .iter()
                .any(|r: &Rule| r.program.references().has_variable(var))
        };
        Ok(CelAuthz {
            scope: c.scope,
            identity_names: IDENTITY_NAMES
                .into_iter()
                .filter(|name| uses(name))
                .collect(),
            uses_source: uses("source"),
            has_allow: rules.iter().any(|r| r.effect == Effect::Allow),
            rules,
            root: Context::default(),
            memo: Mutex::default(),
        })
    }

    fn on_http_request(&self, ctx: &RequestContext, req: HttpRequest) -> HttpRequestAction {
        if self.scope != Scope::Http {
            return HttpRequestAction::Continue;
        }
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), json!(h.value)))
            .collect();
        let path = req.path.split('?').next().unwrap_or("").to_string();
        let request = json!({"method": req.method, "path": path, "headers": headers});
        match self.decide(ctx, "request", request) {
            Ok(()) => HttpRequestAction::Continue,
            Err(reason) => HttpRequestAction::Deny(forbidden(&reason)),
        }
    }

    fn on_mcp_request(&self, ctx: &RequestContext, req: McpRequest) -> McpRequestAction {
        if self.scope != Scope::Mcp {
            return McpRequestAction::Continue;
        }
        let name = req.name.as_deref().unwrap_or_default();
        let target = req.target.as_deref().unwrap_or_default();
        let item = |kind: &str| {
            if req.method.starts_with(kind) {
                name
            } else {
                ""
            }
        };
        let decision = self.decide_once(ctx, "mcp", [&req.method, target, name], || {
            json!({
                "method": req.method,
                "target": target,
                "tool": {"name": item("tools/")},
                "prompt": {"name": item("prompts/")},
                "resource": {"name": item("resources/")},
            })
        });
        match decision {
            Ok(()) => McpRequestAction::Continue,
            // No JSON-RPC code: the host hides a denied tool behind the
            // error an unknown one gets.
            Err(reason) => {
                McpRequestAction::Deny(Denial::new(403, format!("not allowed: {reason}")))
            }
        }
    }

    fn on_mcp_list(&self, ctx: &RequestContext, list: McpList) -> McpListAction {
        if self.scope != Scope::Mcp {
            return McpListAction::Continue;
        }
        let (kind, method) = match list.kind {
            McpListKind::Tools => ("tool", "tools/list"),
            McpListKind::Prompts => ("prompt", "prompts/list"),
            McpListKind::Resources => ("resource", "resources/list"),
            McpListKind::ResourceTemplates => ("resource", "resources/templates/list"),
        };
        let before = list.items.len();
        let kept: Vec<McpItem> = list
            .items
            .into_iter()
            .filter(|item| {
                let target = item.target.as_deref().unwrap_or_default();
                self.decide_once(ctx, "mcp", [method, target, &item.name], || {
                    let mut mcp = json!({
                        "method": method,
                        "target": target,
                        "tool": {"name": ""}, "prompt": {"name": ""}, "resource": {"name": ""},
                    });
                    mcp[kind]["name"] = json!(item.name);
                    mcp
                })
                .is_ok()
            })
            .collect();
        if kept.len() == before {
            McpListAction::Continue
        } else {
            McpListAction::Modify(kept)
        }
    }

    fn on_llm_request(&self, ctx: &RequestContext, req: LlmRequest) -> LlmRequestAction {
        if self.scope != Scope::Llm {
            return LlmRequestAction::Continue;
        }
        let decision = self.decide_once(
            ctx,
            "llm",
            [&req.model, &req.provider, ""],
            || json!({"model": req.model, "provider": req.provider}),
        );
        match decision {
            Ok(()) => LlmRequestAction::Continue,
            Err(reason) => LlmRequestAction::Deny(forbidden(&reason)),
        }
    }
}

fn forbidden(reason: &str) -> Denial {
    let body = json!({"error": {"type": "forbidden", "message": format!("not allowed: {reason}")}});
    Denial::new(403, body.to_string()).with_header("content-type", "application/json")
}

/// `ip:port` (or `[v6]:port`) → `{address, port}`.
fn source(address: &str) -> serde_json::Value {
    match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => json!({
            "address": host.trim_start_matches('[').trim_end_matches(']'),
            "port": port.parse::<u64>().unwrap_or(0),
        }),
        _ => json!({"address": address, "port": 0}),
    }
}

impl CelAuthz {
    /// [`Self::decide`], remembered: `parts` must determine the value
    /// `make` builds (with `name`, the method tells an MCP list from a
    /// call). The caller's claims join the key when a rule reads `jwt`;
    /// rules reading `source` are evaluated every time, since the client's
    /// port differs per connection and the keys would never repeat.
    fn decide_once(
        &self,
        ctx: &RequestContext,
        name: &str,
        parts: [&str; 3],
        make: impl FnOnce() -> serde_json::Value,
    ) -> Result<(), String> {
        if self.uses_source {
            return self.decide(ctx, name, make());
        }
        // JSON, so no part's text can pass for a boundary between two.
        let claims = ctx
            .identity
            .as_deref()
            .filter(|_| !self.identity_names.is_empty());
        let key = serde_json::to_string(&(parts, claims)).expect("strings serialize");
        if key.len() > MEMO_KEY_BYTES {
            return self.decide(ctx, name, make());
        }
        if let Some(known) = self.memo.lock().unwrap().get(&key) {
            return known.clone();
        }
        let decision = self.decide(ctx, name, make());
        let mut memo = self.memo.lock().unwrap();
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(key, decision.clone());
        decision
    }

    /// Evaluate every rule with `name` bound to `value`; `Err` says why not.
    fn decide(
        &self,
        ctx: &RequestContext,
        name: &str,
        value: serde_json::Value,
    ) -> Result<(), String> {
        let mut context = self.root.new_inner_scope();
        let bind = |context: &mut Context, var: &str, v: serde_json::Value| {
            context
                .add_variable(var, v)
                .map_err(|e| format!("cannot bind `{var}`: {e}"))
        };
        if !self.identity_names.is_empty() {
            let identity = ctx
                .identity
                .as_deref()
                .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                .unwrap_or_else(|| json!({}));
            for name in &self.identity_names {
                bind(&mut context, name, identity.clone())?;
            }
        }
        if self.uses_source {
            bind(&mut context, "source", source(&ctx.client_address))?;
        }
        bind(&mut context, name, value)?;

        let mut allowed = !self.has_allow;
        for rule in &self.rules {
            let holds = match rule.program.execute(&context) {
                Ok(Value::Bool(b)) => b,
                Ok(other) => {
                    return Err(format!("rule `{}` gave {other:?}, not a bool", rule.source));
                }
                Err(e) => return Err(format!("rule `{}` failed: {e}", rule.source)),
            };
            match rule.effect {
                Effect::Deny if holds => return Err(format!("denied by `{}`", rule.source)),
                Effect::Require if !holds => {
                    return Err(format!("requirement `{}` not met", rule.source));
                }
                Effect::Allow if holds => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Ok(())
        } else {
            Err("no allow rule matched".into())
        }
    }
}

export_plugin!(CelAuthz);

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_sdk::testing;

    fn authz(json: &str) -> CelAuthz {
        testing::configure::<CelAuthz>(json).unwrap()
    }

    fn ctx(identity: Option<&str>) -> RequestContext {
        let mut c = testing::context();
        c.identity = identity.map(str::to_string);
        c
    }

    fn tools(names: &[&str]) -> McpList {
        McpList {
            kind: McpListKind::Tools,
            items: names
                .iter()
                .map(|n| McpItem {
                    name: n.to_string(),
                    target: None,
                    description: None,
                    definition: "{}".into(),
                })
                .collect(),
        }
    }

    fn listed(action: McpListAction, all: &[&str]) -> Vec<String> {
        match action {
            McpListAction::Continue => all.iter().map(|s| s.to_string()).collect(),
            McpListAction::Modify(items) => items.into_iter().map(|i| i.name).collect(),
            McpListAction::Deny(d) => panic!("list denied: {d:?}"),
        }
    }

    fn call(tool: &str) -> McpRequest {
        McpRequest {
            method: "tools/call".into(),
            target: None,
            name: Some(tool.into()),
            arguments: Some("{}".into()),
            session: None,
        }
    }

    #[test]
    fn tool_name_list_filters_lists_and_calls() {
        let a = authz(
            r#"{"scope": "mcp", "rules": [{"allow": "mcp.tool.name in [\"add\", \"multiply\"]"}]}"#,
        );
        let all = ["add", "multiply", "delete"];
        assert_eq!(
            listed(a.on_mcp_list(&ctx(None), tools(&all)), &all),
            ["add", "multiply"]
        );
        assert!(matches!(
            a.on_mcp_request(&ctx(None), call("add")),
            McpRequestAction::Continue
        ));
        match a.on_mcp_request(&ctx(None), call("delete")) {
            McpRequestAction::Deny(d) => assert_eq!(d.jsonrpc_code, None),
            other => panic!("expected deny, got {other:?}"),
        }
        let none = authz(r#"{"scope": "mcp", "rules": [{"allow": "mcp.tool.name == \"\""}]}"#);
        assert!(listed(none.on_mcp_list(&ctx(None), tools(&all)), &all).is_empty());
    }

    #[test]
    fn remembered_decisions_keep_callers_and_items_apart() {
        // One instance serves many requests (isolation: reuse), so a
        // decision remembered for one caller or tool must not answer another.
        let a = authz(
            r#"{"scope": "mcp", "rules": [{"allow": "jwt.org == \"acme\" && mcp.tool.name in [\"add\"]"}]}"#,
        );
        let (acme, evil) = (
            ctx(Some(r#"{"org": "acme"}"#)),
            ctx(Some(r#"{"org": "evil"}"#)),
        );
        let allowed = |c: &RequestContext, tool: &str| {
            matches!(a.on_mcp_request(c, call(tool)), McpRequestAction::Continue)
        };
        for _ in 0..2 {
            assert!(allowed(&acme, "add"));
            assert!(!allowed(&evil, "add"));
            assert!(!allowed(&acme, "delete"));
            assert!(!allowed(&ctx(None), "add"));
        }
        let all = ["add", "delete"];
        assert_eq!(listed(a.on_mcp_list(&acme, tools(&all)), &all), ["add"]);
        assert!(listed(a.on_mcp_list(&evil, tools(&all)), &all).is_empty());
        // Many distinct callers: the memo starts over instead of growing.
        for i in 0..(2 * MEMO_ENTRIES) {
            allowed(&ctx(Some(&format!(r#"{{"org": "o{i}"}}"#))), "add");
        }
        assert!(a.memo.lock().unwrap().len() <= MEMO_ENTRIES);
        assert!(allowed(&acme, "add") && !allowed(&evil, "add"));
        // An oversized key is decided without being kept.
        let big = ctx(Some(&format!(
            r#"{{"org": "acme", "pad": "{}"}}"#,
            "x".repeat(2000)
        )));
        a.memo.lock().unwrap().clear();
        assert!(allowed(&big, "add") && allowed(&big, "add"));
        assert!(a.memo.lock().unwrap().is_empty());

        // Rules that read `source` are evaluated for every request.
        let s =
            authz(r#"{"scope": "mcp", "rules": [{"allow": "source.address == \"127.0.0.1\""}]}"#);
        let mut remote = ctx(None);
        remote.client_address = "10.0.0.1:1234".into();
        let from = |c: &RequestContext| {
            matches!(s.on_mcp_request(c, call("add")), McpRequestAction::Continue)
        };
        assert!(from(&ctx(None)) && !from(&remote) && from(&ctx(None)));
        assert!(s.memo.lock().unwrap().is_empty());
    }

    #[test]
    fn jwt_claims_admit_only_one_org() {
        let a = authz(r#"{"rules": [{"allow": "jwt.org == \"acme\""}]}"#);
        let req = || HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            headers: vec![],
            body: None,
        };
        assert!(matches!(
            a.on_http_request(&ctx(Some(r#"{"org": "acme"}"#)), req()),
            HttpRequestAction::Continue
        ));
        assert!(matches!(
            a.on_http_request(&ctx(Some(r#"{"org": "evil"}"#)), req()),
            HttpRequestAction::Deny(d) if d.status == 403
        ));
        // No token: `jwt.org` does not exist, the rule fails, the request is denied.
        assert!(matches!(
            a.on_http_request(&ctx(None), req()),
            HttpRequestAction::Deny(_)
        ));
    }

    #[test]
    fn api_key_and_basic_auth_callers_are_read_under_their_own_names() {
        let a = authz(
            r#"{"rules": [{"allow": "apiKey.group == \"sales\" || basicAuth.username == \"ann\""}]}"#,
        );
        let req = || HttpRequest {
            method: "GET".into(),
            path: "/x".into(),
            headers: vec![],
            body: None,
        };
        for (identity, allowed) in [
            (Some(r#"{"group": "sales"}"#), true),
            (Some(r#"{"username": "ann"}"#), true),
            (Some(r#"{"group": "ops"}"#), false),
            (Some(r#"{"username": "ben"}"#), false),
            (None, false),
        ] {
            let got = a.on_http_request(&ctx(identity), req());
            assert_eq!(
                matches!(got, HttpRequestAction::Continue),
                allowed,
                "{identity:?}"
            );
        }
    }

    #[test]
    fn deny_and_require_rules_over_request_and_source() {
        let a = authz(
            r#"{"rules": [
                {"deny": "request.path.startsWith(\"/admin\")"},
                {"require": "source.address == \"127.0.0.1\""},
                "request.method == \"GET\" || request.headers[\"x-team\"] == \"ml\""
            ]}"#,
        );
        let req = |method: &str, path: &str, team: Option<&str>| HttpRequest {
            method: method.into(),
            path: path.into(),
            headers: team
                .map(|t| {
                    vec![Header {
                        name: "X-Team".into(),
                        value: t.into(),
                    }]
                })
                .unwrap_or_default(),
            body: None,
        };
        let c = ctx(None); // testing::context() is 127.0.0.1
        assert!(matches!(
            a.on_http_request(&c, req("GET", "/ok?x=1", None)),
            HttpRequestAction::Continue
        ));
        assert!(matches!(
            a.on_http_request(&c, req("GET", "/admin", None)),
            HttpRequestAction::Deny(_)
        ));
        assert!(matches!(
            a.on_http_request(&c, req("POST", "/ok", Some("ml"))),
            HttpRequestAction::Continue
        ));
        // The header is absent: evaluating the rule fails, so it denies.
        assert!(matches!(
            a.on_http_request(&c, req("POST", "/ok", None)),
            HttpRequestAction::Deny(_)
        ));
        let mut remote = ctx(None);
        remote.client_address = "10.1.2.3:4444".into();
        assert!(matches!(
            a.on_http_request(&remote, req("GET", "/ok", None)),
            HttpRequestAction::Deny(_)
        ));
    }

    #[test]
    fn bad_expressions_and_scopes_are_config_errors_with_position() {
        let err = testing::configure::<CelAuthz>(r#"{"rules": [{"allow": "request.method == "}]}"#)
            .err()
            .unwrap();
        assert_eq!(err.field, "rules[0].allow");
        assert!(err.message.contains("column"), "{}", err.message);
        let err = testing::configure::<CelAuthz>(r#"{"rules": ["mcp.tool.name == \"x\""]}"#)
            .err()
            .unwrap();
        assert_eq!(err.field, "rules[0]");
        assert!(err.message.contains("scope"), "{}", err.message);
    }
}
