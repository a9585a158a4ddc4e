//! Built-in policy keys are sugar for built-in plugin entries, so every
//! policy runs through the same chain. A route's chain is, in order:
//!
//! 1. `mcpAuthorization` / `authorization` → `cel-authz` (`{rules: [...]}`)
//! 2. `localRateLimit` → `rate-limit` (`{limits: [...]}`)
//! 3. `ai.promptGuard` → `prompt-guard` (the promptGuard object as config)
//! 4. the route's `plugins:` (or, if it has none, its listener's `plugins:`)

use super::schema::{Listener, Route};
use crate::policy::PluginSpec;

pub fn expand(listener: &Listener, route: &Route) -> Vec<PluginSpec> {
    let entry = |name: &str, config: serde_json::Value| PluginSpec {
        name: name.to_string(),
        source: None,
        config,
        failure_mode: Default::default(),
        isolation: Default::default(),
        limits: Default::default(),
        grants: None,
        insecure: false,
    };
    let p = &route.policies;
    let mut chain = Vec::new();
    for authz in [&p.mcp_authorization, &p.authorization]
        .into_iter()
        .flatten()
    {
        chain.push(entry(
            "cel-authz",
            serde_json::json!({ "rules": authz.rules }),
        ));
    }
    if let Some(limits) = &p.local_rate_limit {
        chain.push(entry("rate-limit", serde_json::json!({ "limits": limits })));
    }
    if let Some(guard) = p.ai.as_ref().and_then(|ai| ai.prompt_guard.clone()) {
        chain.push(entry("prompt-guard", guard));
    }
    chain.extend(
        route
            .plugins
            .clone()
            .unwrap_or_else(|| listener.plugins.clone()),
    );
    chain
}
