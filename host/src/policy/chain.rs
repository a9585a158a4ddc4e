//! A route's plugin chain, and running it for one request.
//!
//! [`Chain`] is built at config load and shared; [`ChainRun`] lives for one
//! request and keeps each plugin's instance across that request's hooks
//! (request, then response), so per-request plugin state works while nothing
//! crosses into another request.

use std::sync::Arc;
use std::time::Instant;

use super::bindings::{Denial, RequestContext};
use super::error::{FailureKind, PluginFailure};
use super::hooks::{Action, Hook, answer_hooks};
use super::instance::{Live, PreparedPlugin, classify};
use super::spec::FailureMode;

/// The ordered plugins of a route.
#[derive(Clone, Default)]
pub struct Chain {
    // Shared so a request's run can own it and outlive the handler (streams).
    plugins: Arc<[Arc<PreparedPlugin>]>,
}

impl Chain {
    pub fn new(plugins: Vec<Arc<PreparedPlugin>>) -> Self {
        Chain {
            plugins: plugins.into(),
        }
    }

    pub fn plugins(&self) -> &[Arc<PreparedPlugin>] {
        &self.plugins
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Start running this chain for one request.
    pub fn start(&self, ctx: RequestContext) -> ChainRun {
        self.start_with(|| ctx)
    }

    /// [`Chain::start`], making the context only if some plugin will read
    /// it: a request on a route without plugins spares its copies.
    pub fn start_with(&self, ctx: impl FnOnce() -> RequestContext) -> ChainRun {
        let ctx = if self.plugins.is_empty() {
            RequestContext {
                route: String::new(),
                client_address: String::new(),
                identity: None,
                request_id: String::new(),
            }
        } else {
            ctx()
        };
        ChainRun {
            plugins: self.plugins.clone(),
            ctx,
            live: (0..self.plugins.len()).map(|_| None).collect(),
            decisions: Vec::new(),
        }
    }
}

/// Where a hook left the request.
#[derive(Debug)]
pub enum Verdict {
    /// Go on (the input may have been modified in place).
    Continue,
    /// A plugin denied the request.
    Deny { plugin: String, denial: Denial },
}

/// What each plugin decided, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub plugin: String,
    pub hook: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Modify,
    Deny,
    /// Failed and skipped because the entry fails open.
    FailedOpen(FailureKind),
    /// Failed and stopped the request.
    Failed(FailureKind),
}

impl Outcome {
    /// Every outcome's name, in [`Outcome::index`] order.
    pub const NAMES: [&'static str; 5] = ["continue", "modify", "deny", "failed-open", "failed"];

    pub fn index(&self) -> usize {
        match self {
            Outcome::Continue => 0,
            Outcome::Modify => 1,
            Outcome::Deny => 2,
            Outcome::FailedOpen(_) => 3,
            Outcome::Failed(_) => 4,
        }
    }

    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }
}

/// One request's pass through a chain.
pub struct ChainRun {
    plugins: Arc<[Arc<PreparedPlugin>]>,
    ctx: RequestContext,
    live: Vec<Option<Live>>,
    pub decisions: Vec<Decision>,
}

impl ChainRun {
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// Whether some plugin modified the input in the last `run::<H>`: the
    /// chain records it, so callers need not copy the input to compare.
    pub fn modified<H: Hook>(&self) -> bool {
        self.decisions
            .iter()
            .rev()
            .take_while(|d| d.hook == H::NAME)
            .any(|d| d.outcome == Outcome::Modify)
    }

    /// Whether any plugin of the chain implements `hook`.
    pub fn wants(&self, hook: super::bindings::Hooks) -> bool {
        self.plugins.iter().any(|p| p.implements(hook))
    }

    /// The request's own hooks are over (the upstream is next): hand back
    /// the instances of plugins that have nothing to do with the answer, so
    /// a request waiting on a slow upstream holds only the instances it
    /// still needs (under load that is the difference between one instance
    /// per worker and one per request in flight, and the instance pool
    /// running dry). A request hook called after this (a batch's next call)
    /// takes an instance again.
    pub fn request_phase_done(&mut self) {
        let answer = answer_hooks();
        for (plugin, slot) in self.plugins.iter().zip(self.live.iter_mut()) {
            if !plugin.info.hooks.intersects(answer)
                && let Some(live) = slot.take()
            {
                plugin.release(live);
            }
        }
    }

    /// Run hook `H` through every plugin that implements it, in order.
    /// Modifications apply to `input` before the next plugin sees it.
    pub fn run<H: Hook>(&mut self, input: &mut H::Input) -> Result<Verdict, PluginFailure> {
        for (i, plugin) in self.plugins.iter().enumerate() {
            if !plugin.implements(H::FLAG) {
                continue;
            }
            let started = Instant::now();
            let result = call::<H>(plugin, &mut self.live[i], &self.ctx, input);
            let took = started.elapsed();
            let outcome = match result {
                Ok(Action::Continue) => Outcome::Continue,
                Ok(Action::Modify(edit)) => {
                    H::apply(input, edit);
                    Outcome::Modify
                }
                Ok(Action::Deny(denial)) => {
                    record::<H>(&mut self.decisions, plugin, Outcome::Deny, took);
                    return Ok(Verdict::Deny {
                        plugin: plugin.name().to_string(),
                        denial,
                    });
                }
                Err(kind) => {
                    if plugin.failure_mode == FailureMode::Open {
                        tracing::warn!(plugin = plugin.name(), route = %self.ctx.route, hook = H::NAME,
                            request_id = %self.ctx.request_id, "plugin failed and is skipped (failureMode: open): {kind}");
                        Outcome::FailedOpen(kind)
                    } else {
                        record::<H>(
                            &mut self.decisions,
                            plugin,
                            Outcome::Failed(kind.clone()),
                            took,
                        );
                        return Err(PluginFailure {
                            route: self.ctx.route.clone(),
                            plugin: plugin.name().to_string(),
                            hook: H::NAME,
                            kind,
                        });
                    }
                }
            };
            record::<H>(&mut self.decisions, plugin, outcome, took);
        }
        Ok(Verdict::Continue)
    }
}

/// For the access log (this request's decisions) and `/metrics` (all of them).
fn record<H: Hook>(
    decisions: &mut Vec<Decision>,
    plugin: &PreparedPlugin,
    outcome: Outcome,
    took: std::time::Duration,
) {
    plugin.stats.record(H::INDEX, &outcome, took);
    decisions.push(Decision {
        plugin: plugin.name().to_string(),
        hook: H::NAME,
        outcome,
    });
}

/// Call one plugin, making its instance on first use. A failed instance is dropped.
fn call<H: Hook>(
    plugin: &PreparedPlugin,
    slot: &mut Option<Live>,
    ctx: &RequestContext,
    input: &H::Input,
) -> Result<Action<H::Edit>, FailureKind> {
    // Instantiating (start functions, configure in reuse mode) and the hook
    // itself run plugin code: the CPU limit needs the clock ticking.
    let _ticking = plugin.clock.running();
    let live = match slot {
        Some(live) => live,
        None => slot.insert(plugin.acquire()?),
    };
    // Every call gets the full CPU budget, whether the instance is new,
    // reused from an earlier request, or already used by this one.
    plugin.arm(live);
    let index = plugin.exports[H::INDEX]
        .as_ref()
        .expect("declared hooks have export indices");
    let func = live.func(H::INDEX, index);
    // SAFETY: `exports[H::INDEX]` was type-checked with `H::typecheck` at load.
    match unsafe { H::call(func, &mut live.store, ctx, input) } {
        Ok(action) => Ok(action),
        Err(e) => {
            let kind = classify(&e, &live.store, &plugin.limits);
            *slot = None;
            Err(kind)
        }
    }
}

impl Drop for ChainRun {
    fn drop(&mut self) {
        for (plugin, live) in self.plugins.iter().zip(self.live.drain(..)) {
            if let Some(live) = live {
                plugin.release(live);
            }
        }
    }
}
