//! Built-in policy `tool-filter`: glob allow/deny lists on MCP tool, prompt
//! and resource names.
//!
//! ```yaml
//! config:
//!   tools: {allow: ["time_*", "calc_add"], deny: ["*delete*"]}   # federated names
//!   resources: {deny: ["*+file:///etc/*"]}
//!   targets:                       # per target, on the target's own names
//!     github:
//!       tools: {allow: ["search_*", "get_*"]}
//!       prompts: {deny: ["*"]}
//! ```
//!
//! Patterns are globs (`*` any run, `?` one character). The top-level
//! lists match the names clients see (`{target}_{tool}`, `{target}+{uri}`);
//! `targets.NAME` lists match that target's own names. An item passes when
//! no list denies it and every list with an `allow` admits it: deny wins,
//! and a kind with no lists passes everything. Lists (tools, prompts,
//! resources and their templates) keep only what passes; a call to
//! anything else gets the hidden-item JSON-RPC error (`-32602 Unknown
//! tool: NAME`), as if it did not exist.

use std::collections::BTreeMap;

use wardgate_sdk::prelude::*;
use wildmatch::WildMatch;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KindsConfig {
    #[serde(default)]
    tools: Option<ListsConfig>,
    #[serde(default)]
    prompts: Option<ListsConfig>,
    #[serde(default)]
    resources: Option<ListsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(flatten)]
    kinds: KindsConfig,
    #[serde(default)]
    targets: BTreeMap<String, KindsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListsConfig {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Tools,
    Prompts,
    Resources,
}

impl Kind {
    fn of_method(method: &str) -> Option<Kind> {
        match method {
            "tools/call" => Some(Kind::Tools),
            "prompts/get" => Some(Kind::Prompts),
            m if m.starts_with("resources/") => Some(Kind::Resources),
            _ => None,
        }
    }

    fn of_list(kind: McpListKind) -> Kind {
        match kind {
            McpListKind::Tools => Kind::Tools,
            McpListKind::Prompts => Kind::Prompts,
            McpListKind::Resources | McpListKind::ResourceTemplates => Kind::Resources,
        }
    }

    /// How a federated name joins the target to the item's own name.
    fn separator(self) -> char {
        if self == Kind::Resources { '+' } else { '_' }
    }
}

/// One kind's allow and deny globs.
struct Lists {
    allow: Option<Vec<WildMatch>>,
    deny: Vec<WildMatch>,
}

impl Lists {
    fn admits(&self, name: &str) -> bool {
        !self.deny.iter().any(|g| g.matches(name))
            && self
                .allow
                .as_ref()
                .is_none_or(|allow| allow.iter().any(|g| g.matches(name)))
    }
}

#[derive(Default)]
struct Kinds {
    tools: Option<Lists>,
    prompts: Option<Lists>,
    resources: Option<Lists>,
}

impl Kinds {
    fn build(c: KindsConfig, at: &str) -> Result<Kinds, ConfigError> {
        let lists = |l: Option<ListsConfig>, field: &str| -> Result<Option<Lists>, ConfigError> {
            let Some(l) = l else { return Ok(None) };
            let globs = |patterns: Vec<String>, which: &str| {
                patterns
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        if p.is_empty() {
                            Err(ConfigError::new(
                                format!("{at}{field}.{which}[{i}]"),
                                "an empty pattern matches nothing; use \"*\" for everything",
                            ))
                        } else {
                            Ok(WildMatch::new(&p))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok(Some(Lists {
                allow: l.allow.map(|a| globs(a, "allow")).transpose()?,
                deny: globs(l.deny, "deny")?,
            }))
        };
        Ok(Kinds {
            tools: lists(c.tools, "tools")?,
            prompts: lists(c.prompts, "prompts")?,
            resources: lists(c.resources, "resources")?,
        })
    }

    fn get(&self, kind: Kind) -> Option<&Lists> {
        match kind {
            Kind::Tools => self.tools.as_ref(),
            Kind::Prompts => self.prompts.as_ref(),
            Kind::Resources => self.resources.as_ref(),
        }
    }
}

struct ToolFilter {
    federated: Kinds,
    targets: BTreeMap<String, Kinds>,
}

impl ToolFilter {
    /// Whether `name` (as clients see it) of `target` passes.
    fn admits(&self, kind: Kind, name: &str, target: Option<&str>) -> bool {
        if let Some(lists) = self.federated.get(kind)
            && !lists.admits(name)
        {
            return false;
        }
        let Some(target) = target else { return true };
        let Some(lists) = self.targets.get(target).and_then(|k| k.get(kind)) else {
            return true;
        };
        // The target's own name: without the `{target}_` / `{target}+`
        // prefix when the federation added one.
        let own = name
            .strip_prefix(target)
            .and_then(|rest| rest.strip_prefix(kind.separator()))
            .unwrap_or(name);
        lists.admits(own)
    }
}

impl Plugin for ToolFilter {
    type Config = Config;
    const HOOKS: Hooks = Hooks::MCP_REQUEST.union(Hooks::MCP_LIST);

    fn configure(c: Config) -> Result<Self, ConfigError> {
        let federated = Kinds::build(c.kinds, "")?;
        let mut targets = BTreeMap::new();
        for (name, kinds) in c.targets {
            let lists = Kinds::build(kinds, &format!("targets.{name}."))?;
            targets.insert(name, lists);
        }
        let configured =
            |k: &Kinds| k.tools.is_some() || k.prompts.is_some() || k.resources.is_some();
        if !configured(&federated) && !targets.values().any(configured) {
            return Err(ConfigError::new(
                "tools",
                "no lists: give `tools`, `prompts` or `resources` (or per target under `targets`)",
            ));
        }
        Ok(ToolFilter { federated, targets })
    }

    fn on_mcp_request(&self, _ctx: &RequestContext, req: McpRequest) -> McpRequestAction {
        let (Some(kind), Some(name)) = (Kind::of_method(&req.method), req.name.as_deref()) else {
            return McpRequestAction::Continue;
        };
        if self.admits(kind, name, req.target.as_deref()) {
            McpRequestAction::Continue
        } else {
            // No JSON-RPC code: an access decision, which the host answers
            // as "-32602 Unknown tool: NAME", hiding the tool.
            McpRequestAction::Deny(Denial::new(403, format!("{name} is filtered")))
        }
    }

    fn on_mcp_list(&self, _ctx: &RequestContext, list: McpList) -> McpListAction {
        let kind = Kind::of_list(list.kind);
        let before = list.items.len();
        let kept: Vec<McpItem> = list
            .items
            .into_iter()
            .filter(|i| self.admits(kind, &i.name, i.target.as_deref()))
            .collect();
        if kept.len() == before {
            McpListAction::Continue
        } else {
            McpListAction::Modify(kept)
        }
    }
}

export_plugin!(ToolFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_sdk::testing;

    fn filter(json: &str) -> ToolFilter {
        testing::configure::<ToolFilter>(json).unwrap()
    }

    fn call(name: &str, target: &str) -> McpRequest {
        McpRequest {
            method: "tools/call".into(),
            target: Some(target.into()),
            name: Some(name.into()),
            arguments: Some("{}".into()),
            session: None,
        }
    }

    fn list(names: &[(&str, &str)]) -> McpList {
        McpList {
            kind: McpListKind::Tools,
            items: names
                .iter()
                .map(|(n, t)| McpItem {
                    name: n.to_string(),
                    target: Some(t.to_string()),
                    description: None,
                    definition: "{}".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn deny_wins_over_allow_and_no_allow_admits_the_rest() {
        let f = filter(r#"{"tools": {"allow": ["calc_*", "time_get_*"], "deny": ["*_delete*"]}}"#);
        let ctx = testing::context();
        assert!(matches!(
            f.on_mcp_request(&ctx, call("calc_add", "calc")),
            McpRequestAction::Continue
        ));
        let McpRequestAction::Deny(d) = f.on_mcp_request(&ctx, call("calc_delete_all", "calc"))
        else {
            panic!("a denied tool passed")
        };
        assert_eq!(d.jsonrpc_code, None);
        assert!(matches!(
            f.on_mcp_request(&ctx, call("time_convert", "time")),
            McpRequestAction::Deny(_)
        ));
        // Prompts are not configured: they all pass.
        let prompt = McpRequest {
            method: "prompts/get".into(),
            ..call("anything", "calc")
        };
        assert!(matches!(
            f.on_mcp_request(&ctx, prompt),
            McpRequestAction::Continue
        ));
        let only_deny = filter(r#"{"tools": {"deny": ["*secret*"]}}"#);
        assert!(only_deny.admits(Kind::Tools, "calc_add", Some("calc")));
        assert!(!only_deny.admits(Kind::Tools, "calc_read_secret", Some("calc")));
    }

    #[test]
    fn per_target_lists_match_the_targets_own_names() {
        let f = filter(
            r#"{"targets": {"github": {"tools": {"allow": ["search_*"]}, "resources": {"deny": ["file:///etc/*"]}}}}"#,
        );
        assert!(f.admits(Kind::Tools, "github_search_code", Some("github")));
        assert!(!f.admits(Kind::Tools, "github_delete_repo", Some("github")));
        // Unprefixed (a single target in conditional mode): the name is its own.
        assert!(f.admits(Kind::Tools, "search_code", Some("github")));
        // Other targets are untouched.
        assert!(f.admits(Kind::Tools, "time_get_current_time", Some("time")));
        assert!(!f.admits(Kind::Resources, "github+file:///etc/passwd", Some("github")));
        assert!(f.admits(
            Kind::Resources,
            "github+file:///home/readme",
            Some("github")
        ));
    }

    #[test]
    fn lists_keep_only_what_passes() {
        let f = filter(r#"{"tools": {"deny": ["*_delete*"]}}"#);
        let McpListAction::Modify(kept) = f.on_mcp_list(
            &testing::context(),
            list(&[
                ("calc_add", "calc"),
                ("calc_delete", "calc"),
                ("time_now", "time"),
            ]),
        ) else {
            panic!("nothing filtered")
        };
        let names: Vec<&str> = kept.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["calc_add", "time_now"]);
        assert!(matches!(
            f.on_mcp_list(&testing::context(), list(&[("calc_add", "calc")])),
            McpListAction::Continue
        ));
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = testing::configure::<ToolFilter>(r#"{"tools": {"allow": ["a", ""]}}"#)
            .err()
            .unwrap();
        assert_eq!(e.field, "tools.allow[1]");
        let e =
            testing::configure::<ToolFilter>(r#"{"targets": {"gh": {"tools": {"deny": [""]}}}}"#)
                .err()
                .unwrap();
        assert_eq!(e.field, "targets.gh.tools.deny[0]");
        assert!(testing::configure::<ToolFilter>("{}").is_err());
        let e = testing::configure::<ToolFilter>(
            r#"{"tool": {"deny": ["x"]}, "tools": {"deny": ["y"]}}"#,
        )
        .err()
        .unwrap();
        assert!(e.message.contains("tool"), "{e:?}");
    }
}
