//! Per-hook cost of the plugin runtime: `cargo bench -p wardgate-tests --bench policy`.
//!
//! - `call`: one hook call on an instance the request already holds.
//! - `request/snapshot`: what a request costs by default: a fresh instance
//!   from the post-configure snapshot, one hook call, teardown, with the
//!   making and teardown done at once (no runtime to defer them to).
//! - `request-path/snapshot`: the same as the gateway runs it, on a tokio
//!   worker: the request takes an instance made earlier and leaves its used
//!   one; making the next and dropping the old run after the timed part, in
//!   the idle moment that follows (`policy::prewarm`).
//! - `request/reuse`: the same with a configured instance taken from and
//!   returned to the idle list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wardgate::policy::bindings::{
    BackendProtocol, ChatMessage, ContentPart, Header, HttpRequest, LlmRequest, McpRequest,
    McpResponse, Role,
};
use wardgate::policy::hooks::{Hook, OnHttpRequest, OnLlmRequest, OnMcpRequest, OnMcpResponse};
use wardgate::policy::{Chain, PolicyEngine, Verdict};
use wardgate_tests::{context, engine, load, load_on};

fn prompt(bytes: usize) -> LlmRequest {
    let sentence =
        "The quarterly report shows steady growth across all regions, with costs held flat. ";
    let text: String = sentence.chars().cycle().take(bytes).collect();
    LlmRequest {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![ContentPart::Text(text)],
            name: None,
            tool_call_id: None,
            tool_calls: vec![],
        }],
        tools: vec![],
        stream: false,
    }
}

const GUARD: &str = r#"
name: prompt-guard
config:
  patterns:
    - '(?i)ignore (all )?(previous|prior) instructions'
    - '(?i)you are now (DAN|in developer mode)'
    - '\b\d{3}-\d{2}-\d{4}\b'
    - '(?i)BEGIN (RSA|EC|OPENSSH) PRIVATE KEY'
    - 'AKIA[0-9A-Z]{16}'
"#;

// Plain phrases (no Unicode classes), the commonest kind of guard list.
const GUARD_PHRASES: &str = r#"
name: prompt-guard
config:
  patterns:
    - '(?i)ignore previous instructions'
    - '(?i)reveal your system prompt'
    - 'BEGIN RSA PRIVATE KEY'
"#;

/// Bench one plugin entry on hook `H` with `input`, which it must let
/// through: per request in each isolation mode, and per call on a held
/// instance (`with_call`).
fn bench_plugin<H: Hook>(
    c: &mut Criterion,
    engine: &PolicyEngine,
    name: &str,
    yaml: &str,
    input: &H::Input,
    with_call: bool,
) where
    H::Input: Clone,
{
    let ctx = context("bench");
    let mut group = c.benchmark_group(name);
    for isolation in ["snapshot", "reuse"] {
        let plugin = load(engine, &format!("{yaml}\nisolation: {isolation}"));
        let chain = Chain::new(vec![Arc::new(plugin)]);
        group.bench_function(format!("request/{isolation}"), |b| {
            b.iter(|| {
                let mut req = input.clone();
                let mut run = chain.start(ctx.clone());
                assert!(matches!(run.run::<H>(&mut req), Ok(Verdict::Continue)));
            })
        });
        if isolation == "snapshot" {
            let worker = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            group.bench_function("request-path/snapshot", |b| {
                b.iter_custom(|iters| {
                    let mut path = Duration::ZERO;
                    for _ in 0..iters {
                        worker.block_on(async {
                            let start = Instant::now();
                            let mut req = input.clone();
                            let mut run = chain.start(ctx.clone());
                            assert!(matches!(run.run::<H>(&mut req), Ok(Verdict::Continue)));
                            drop(run);
                            path += start.elapsed();
                            // The worker's idle moment: the deferred chores run.
                            tokio::task::yield_now().await;
                        });
                    }
                    path
                })
            });
        }
        if with_call && isolation == "snapshot" {
            let mut run = chain.start(ctx.clone());
            group.bench_function("call", |b| {
                b.iter(|| {
                    let mut req = input.clone();
                    assert!(matches!(run.run::<H>(&mut req), Ok(Verdict::Continue)));
                })
            });
        }
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let unbounded = format!("{GUARD}    - 'password=.*@'\n");
    let cases = [
        (
            "noop",
            "name: noop\nsource: '{plugins}/testbed.wasm'\ngrants: [counters]\nconfig: {mode: noop}",
            64,
        ),
        ("prompt-guard-4k", GUARD, 4096),
        ("prompt-guard-phrases-4k", GUARD_PHRASES, 4096),
        // GUARD plus a rule with no longest match: the whole list goes to
        // the plugin's lazy-DFA `RegexSet`, not to its split scan.
        ("prompt-guard-unbounded-4k", unbounded.as_str(), 4096),
    ];
    for (name, yaml, size) in cases {
        bench_plugin::<OnLlmRequest>(c, &engine, name, yaml, &prompt(size), true);
    }
}

/// The same kind of check (an MCP tool call allowed by a deny list) in a
/// Rust plugin and in the Python one built with componentize-py.
fn bench_languages(c: &mut Criterion) {
    let engine = engine();
    let python = wardgate_tests::python::path_guard();
    let cases = [
        (
            "mcp-rust-regex-deny",
            "name: regex-deny\nsource: '{plugins}/regex-deny.wasm'\nconfig: {pattern: 'delete_'}"
                .to_string(),
        ),
        (
            "mcp-python-path-guard",
            format!(
                "name: path-guard\nsource: '{}'\ngrants: [clock, counters, metrics]\nconfig: {{deny: ['delete_*']}}",
                python.display()
            ),
        ),
        // The built-ins of the MCP tools/call bench's chain, one by one.
        (
            "mcp-cel-authz",
            "name: cel-authz\nconfig: {scope: mcp, rules: [{allow: 'mcp.tool.name in [\"search_code\", \"add\"]'}]}"
                .to_string(),
        ),
        (
            "mcp-tool-filter",
            "name: tool-filter\nconfig: {tools: {allow: ['search_*', 'get_*'], deny: ['*delete*']}, targets: {github: {tools: {deny: ['*_admin_*']}}}}"
                .to_string(),
        ),
        (
            "mcp-prompt-guard",
            "name: prompt-guard\nconfig: {patterns: ['(?i)ignore previous instructions']}".to_string(),
        ),
        ("mcp-pii-guard", "name: pii-guard\nconfig: {}".to_string()),
    ];
    let req = McpRequest {
        method: "tools/call".into(),
        target: Some("github".into()),
        name: Some("search_code".into()),
        arguments: Some(r#"{"query": "fn main", "per_page": 10}"#.into()),
        session: None,
    };
    for (name, yaml) in cases {
        bench_plugin::<OnMcpRequest>(c, &engine, name, &yaml, &req, true);
    }
}

/// The rate-limit plugin on an HTTP request: one bucket take per request.
fn bench_rate_limit(c: &mut Criterion) {
    let engine = engine();
    let req = HttpRequest {
        method: "GET".into(),
        path: "/v1/models".into(),
        headers: vec![Header {
            name: "x-api-key".into(),
            value: "team-a".into(),
        }],
        body: Some(Vec::new()),
    };
    bench_plugin::<OnHttpRequest>(
        c,
        &engine,
        "rate-limit-http",
        "name: rate-limit\nconfig: {limits: [{requests: 1000000000, per: second, key: {header: x-api-key}}]}",
        &req,
        false,
    );
}

/// All five built-ins on one MCP tools/call (its request and its result),
/// against the same request with no chain: what a route with the whole
/// chain adds per call.
fn bench_all_five(c: &mut Criterion) {
    let engine = engine();
    let five = [
        "name: cel-authz\nconfig: {scope: mcp, rules: [{allow: 'mcp.tool.name in [\"search_code\", \"add\"]'}]}",
        "name: tool-filter\nconfig: {tools: {deny: ['*_admin']}}",
        "name: prompt-guard\nconfig: {patterns: ['(?i)ignore previous instructions']}",
        "name: pii-guard\nconfig: {}",
        "name: rate-limit\nconfig: {limits: [{requests: 1000000000, per: second, key: tool}]}",
    ];
    // Loaded as on an MCP route, so each plugin takes the hooks it takes there.
    let chain = Chain::new(
        five.iter()
            .map(|y| Arc::new(load_on(&engine, y, BackendProtocol::Mcp)))
            .collect(),
    );
    let none = Chain::new(Vec::new());
    let req = McpRequest {
        method: "tools/call".into(),
        target: Some("github".into()),
        name: Some("search_code".into()),
        arguments: Some(r#"{"query": "fn main", "per_page": 10}"#.into()),
        session: None,
    };
    let resp = McpResponse {
        method: "tools/call".into(),
        target: Some("github".into()),
        name: Some("search_code".into()),
        result:
            r#"{"content":[{"type":"text","text":"src/main.rs:1: fn main() {"}],"isError":false}"#
                .into(),
        is_error: false,
    };
    let ctx = context("bench");
    let mut group = c.benchmark_group("mcp-tools-call");
    for (name, chain) in [("no chain", &none), ("all five", &chain)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut run = chain.start(ctx.clone());
                let (mut q, mut r) = (req.clone(), resp.clone());
                if run.wants(OnMcpRequest::FLAG) {
                    assert!(matches!(
                        run.run::<OnMcpRequest>(&mut q),
                        Ok(Verdict::Continue)
                    ));
                }
                if run.wants(OnMcpResponse::FLAG) {
                    assert!(matches!(
                        run.run::<OnMcpResponse>(&mut r),
                        Ok(Verdict::Continue)
                    ));
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_languages, bench_rate_limit, bench_all_five
}
criterion_main!(benches);
