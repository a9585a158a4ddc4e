//! Built-in policy keys are sugar for built-in plugin entries, so every
//! policy runs through the same chain. A route's chain is, in order:
//!
//! 1. `mcpAuthorization` / `authorization` → `cel-authz` (`{rules: [...]}`)
//! 2. `localRateLimit` → `rate-limit` (`{limits: [...]}`)
//! 3. `ai.promptGuard` → `prompt-guard` (the promptGuard object as config)
//! 4. the route's `plugins:` (or, if it has none, its listener's `plugins:`)

use super::schema::{Listener, Route};
use crate::policy::PluginSpec;

/// The route's chain, each entry with the config path it came from
/// (`policies.mcpAuthorization`, `plugins[0]`, ...) for error messages.
pub fn expand_located(listener: &Listener, route: &Route) -> Vec<(PluginSpec, String)> {
    let p = &route.policies;
    let mut origins = Vec::new();
    if p.mcp_authorization.is_some() {
        origins.push("policies.mcpAuthorization".to_string());
    }
    if p.authorization.is_some() {
        origins.push("policies.authorization".to_string());
    }
    if p.local_rate_limit.is_some() {
        origins.push("policies.localRateLimit".to_string());
    }
    if p.ai.as_ref().is_some_and(|ai| ai.prompt_guard.is_some()) {
        origins.push("policies.ai.promptGuard".to_string());
    }
    let own = if route.plugins.is_some() {
        "plugins"
    } else {
        "listener.plugins"
    };
    let chain = expand(listener, route);
    let sugar = origins.len();
    chain
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let origin = origins
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("{own}[{}]", i - sugar));
            (spec, origin)
        })
        .collect()
}

pub fn expand(listener: &Listener, route: &Route) -> Vec<PluginSpec> {
    let entry = |name: &str, config: serde_json::Value| PluginSpec {
        name: name.to_string(),
        source: None,
        config,
        failure_mode: Default::default(),
        // Built-ins default to reusing instances (see PluginSpec::isolation).
        isolation: None,
        limits: Default::default(),
        grants: None,
        insecure: false,
    };
    let p = &route.policies;
    let mut chain = Vec::new();
    // agentgateway's `mcpAuthorization` judges MCP operations (and filters
    // lists); `authorization` judges HTTP requests.
    for (authz, scope) in [(&p.mcp_authorization, "mcp"), (&p.authorization, "http")] {
        if let Some(authz) = authz {
            chain.push(entry(
                "cel-authz",
                serde_json::json!({ "scope": scope, "rules": authz.rules }),
            ));
        }
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
