//! Many MCP servers as one: lists merged with names that say which target
//! serves an item (`{target}_{tool}`, resources `{target}+{uri}`), calls
//! routed back by those names, capabilities merged. A target that is down
//! is left out of lists and logged; the others keep working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::jsonrpc::{INVALID_PARAMS, RpcError};
use super::upstream::{Health, Target};

/// Names longer than this break some clients; they get a short form.
const MAX_NAME: usize = 64;
const MAX_PAGES: usize = 20;
/// How long a list waits for a target that is still starting.
const START_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMode {
    Always,
    /// Prefix only when the route has more than one target (default).
    Conditional,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl Kind {
    pub fn from_list_method(m: &str) -> Option<Kind> {
        Some(match m {
            "tools/list" => Kind::Tools,
            "prompts/list" => Kind::Prompts,
            "resources/list" => Kind::Resources,
            "resources/templates/list" => Kind::ResourceTemplates,
            _ => return None,
        })
    }

    /// A call on one item: its kind and the params field naming it.
    pub fn of_call(m: &str) -> Option<(Kind, &'static str)> {
        Some(match m {
            "tools/call" => (Kind::Tools, "name"),
            "prompts/get" => (Kind::Prompts, "name"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                (Kind::Resources, "uri")
            }
            _ => return None,
        })
    }

    /// What one item is called in error messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tools => "tool",
            Kind::Prompts => "prompt",
            Kind::Resources | Kind::ResourceTemplates => "resource",
        }
    }

    pub fn list_method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Prompts => "prompts/list",
            Kind::Resources => "resources/list",
            Kind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The result field holding the list.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The field naming one item.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Tools | Kind::Prompts => "name",
            Kind::Resources => "uri",
            Kind::ResourceTemplates => "uriTemplate",
        }
    }

    fn capability(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources | Kind::ResourceTemplates => "resources",
        }
    }
}

pub struct Federation {
    pub targets: Vec<Arc<Target>>,
    prefix: bool,
    /// Client-visible name → (target index, upstream name), learnt from lists.
    names: Mutex<HashMap<(Kind, String), (usize, String)>>,
}

/// One merged list entry.
pub struct Item {
    pub target: usize,
    /// The entry with its client-visible name.
    pub entry: Value,
    pub name: String,
}

impl Federation {
    pub fn new(targets: Vec<Arc<Target>>, mode: PrefixMode) -> Self {
        let prefix = match mode {
            PrefixMode::Always => true,
            PrefixMode::Never => false,
            PrefixMode::Conditional => targets.len() > 1,
        };
        Federation {
            targets,
            prefix,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The same federation over other sessions with the same servers.
    pub fn with_targets(&self, targets: Vec<Arc<Target>>) -> Federation {
        Federation {
            targets,
            prefix: self.prefix,
            names: Mutex::new(HashMap::new()),
        }
    }

    fn visible(&self, kind: Kind, target: &str, name: &str) -> String {
        if !self.prefix {
            return name.to_string();
        }
        match kind {
            Kind::Tools | Kind::Prompts => {
                let full = format!("{target}_{name}");
                if full.len() <= MAX_NAME {
                    return full;
                }
                // Deterministic: the same long name always gets the same short one.
                let digest = crate::distribution::store::sha256_digest(full.as_bytes());
                let mut cut = MAX_NAME - 9;
                while !full.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}_{}", &full[..cut], &digest[7..15])
            }
            Kind::Resources | Kind::ResourceTemplates => format!("{target}+{name}"),
        }
    }

    /// The merged list of `kind`, each target asked in parallel.
    pub async fn list(&self, kind: Kind) -> Vec<Item> {
        let asks = self.targets.iter().enumerate().map(|(i, t)| async move {
            let info = match t.ready(START_WAIT).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::warn!(mcp_target = %t.name, "left out of {}: {e}", kind.list_method());
                    return (i, Vec::new());
                }
            };
            if info.capabilities.get(kind.capability()).is_none() {
                return (i, Vec::new());
            }
            let mut all = Vec::new();
            let mut cursor: Option<Value> = None;
            for _ in 0..MAX_PAGES {
                let params = match &cursor {
                    Some(c) => json!({"cursor": c}),
                    None => json!({}),
                };
                match t.call(kind.list_method(), params, None).await {
                    Ok(page) => {
                        if let Some(items) = page.get(kind.field()).and_then(Value::as_array) {
                            all.extend(items.iter().cloned());
                        }
                        cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
                        if cursor.is_none() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(mcp_target = %t.name, "{} failed: {}", kind.list_method(), e.message);
                        break;
                    }
                }
            }
            (i, all)
        });
        let mut out = Vec::new();
        let mut names = HashMap::new();
        for (i, items) in join_all(asks).await {
            let target = &self.targets[i].name;
            for mut entry in items {
                let Some(upstream) = entry
                    .get(kind.key())
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    continue;
                };
                let name = self.visible(kind, target, &upstream);
                entry[kind.key()] = Value::String(name.clone());
                names.insert((kind, name.clone()), (i, upstream));
                out.push(Item {
                    target: i,
                    entry,
                    name,
                });
            }
        }
        // With unprefixed names, a name two targets serve cannot be routed: drop it.
        if !self.prefix {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for item in &out {
                *seen.entry(item.name.clone()).or_default() += 1;
            }
            out.retain(|item| {
                let unique = seen[&item.name] == 1;
                if !unique {
                    tracing::warn!(
                        "{} '{}' is served by several targets; left out",
                        kind.field(),
                        item.name
                    );
                }
                unique
            });
        }
        self.names.lock().unwrap().extend(names);
        out
    }

    /// Which target serves the client-visible `name`, and its name there.
    pub async fn route(&self, kind: Kind, name: &str) -> Result<(usize, String), RpcError> {
        let unknown = || {
            let what = match kind {
                Kind::Tools => "tool",
                Kind::Prompts => "prompt",
                _ => "resource",
            };
            RpcError::new(INVALID_PARAMS, format!("Unknown {what}: {name}"))
        };
        if let Some(found) = self.names.lock().unwrap().get(&(kind, name.to_string())) {
            return Ok(found.clone());
        }
        if self.prefix {
            let sep = match kind {
                Kind::Tools | Kind::Prompts => '_',
                _ => '+',
            };
            if let Some((target, rest)) = name.split_once(sep)
                && let Some(i) = self.targets.iter().position(|t| t.name == target)
            {
                return Ok((i, rest.to_string()));
            }
        } else if self.targets.len() == 1 {
            return Ok((0, name.to_string()));
        }
        // Not seen yet (a short form, or an unprefixed name): list and look again.
        self.list(kind).await;
        self.names
            .lock()
            .unwrap()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(unknown)
    }

    /// The capabilities to announce: the union of the targets' that are up.
    pub async fn capabilities(&self) -> Value {
        let infos = join_all(self.targets.iter().map(|t| t.ready(START_WAIT))).await;
        let mut caps = json!({});
        for info in infos.into_iter().flatten() {
            for key in ["tools", "prompts", "resources", "logging", "completions"] {
                if info.capabilities.get(key).is_some() {
                    caps[key] = json!({});
                }
            }
        }
        for key in ["tools", "prompts", "resources"] {
            if caps.get(key).is_some() {
                caps[key]["listChanged"] = json!(true);
            }
        }
        if caps.get("tools").is_none() {
            caps["tools"] = json!({"listChanged": true});
        }
        caps
    }

    pub fn status(&self) -> Vec<(String, String)> {
        self.targets
            .iter()
            .map(|t| {
                let h = match t.health() {
                    Health::Starting => "starting".to_string(),
                    Health::Ready(_) => "ready".to_string(),
                    Health::Down(e) => format!("down: {e}"),
                };
                (t.name.clone(), h)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mcp::upstream::Reach;

    fn fed(names: &[&str], mode: PrefixMode) -> Federation {
        let targets = names
            .iter()
            .map(|n| {
                Target::new(
                    n.to_string(),
                    Reach::Stdio {
                        cmd: "true".into(),
                        args: vec![],
                        env: vec![],
                    },
                )
            })
            .collect();
        Federation::new(targets, mode)
    }

    #[test]
    fn names_are_prefixed_by_mode_and_long_ones_shortened_deterministically() {
        let one = fed(&["time"], PrefixMode::Conditional);
        assert_eq!(one.visible(Kind::Tools, "time", "now"), "now");
        let one = fed(&["time"], PrefixMode::Always);
        assert_eq!(one.visible(Kind::Tools, "time", "now"), "time_now");
        let two = fed(&["time", "everything"], PrefixMode::Conditional);
        assert_eq!(
            two.visible(Kind::Tools, "everything", "echo"),
            "everything_echo"
        );
        assert_eq!(
            two.visible(Kind::Resources, "everything", "test://static/1"),
            "everything+test://static/1"
        );
        let long = "a_really_long_tool_name_that_goes_on_and_on_beyond_any_limit";
        let short = two.visible(Kind::Tools, "everything", long);
        assert_eq!(short.len(), 64);
        assert_eq!(short, two.visible(Kind::Tools, "everything", long));
        assert_ne!(
            short,
            two.visible(Kind::Tools, "everything", &format!("{long}2"))
        );
    }

    #[tokio::test]
    async fn prefixed_names_route_to_their_target() {
        let two = fed(&["time", "everything"], PrefixMode::Conditional);
        assert_eq!(
            two.route(Kind::Tools, "everything_get_sum").await.unwrap(),
            (1, "get_sum".to_string())
        );
        assert_eq!(
            two.route(Kind::Resources, "time+file:///a").await.unwrap(),
            (0, "file:///a".to_string())
        );
    }
}
