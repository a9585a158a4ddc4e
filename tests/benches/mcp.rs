//! MCP tools/call round trips: direct to a FastMCP server (the `mcp` SDK's
//! v1 line, Streamable HTTP) vs through Wardgate without plugins, with a
//! 3-plugin chain (mcpAuthorization via cel-authz, prompt-guard, rate-limit)
//! and with all five built-ins (plus tool-filter and pii-guard).
//! Sequential calls on one connection, interleaved so drift hits all alike.
//!
//! Needs scripts/setup-test-peers (target/py-mcp1).
//! Run: cargo bench -p wardgate --bench mcp [-- CALLS [each]]
//! (`each` adds one route per plugin, to see where the chain's time goes;
//! more routes interleaved also means colder caches for each. `PICK=0,1,3`
//! runs only those cases, by their index in the table. `WARDGATE=path`
//! measures that gateway binary instead of this package's; `BASELINE=path` also
//! runs another wardgate binary with the same routes and interleaves its
//! cases, for an A/B of two builds in one run. `UPSTREAM=everything` puts
//! `@modelcontextprotocol/server-everything` (Node, Streamable HTTP; its
//! `get-sum` tool) behind every case instead of FastMCP: answers ~4x faster,
//! so less of the upstream's work between calls. `PIN=1` gives the gateway
//! core 0 and the bench and upstream the others; see `gateway_process.rs`.)

#[path = "gateway_process.rs"]
mod gateway_process;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use gateway_process::{Gateway, free_port, wait_port};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(c: &Http, url: &str, session: Option<&str>, body: &str) -> (Option<String>, String) {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = c
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (sid, String::from_utf8_lossy(&body).into_owned())
}

async fn session(c: &Http, url: &str) -> String {
    let (sid, _) = post(
        c,
        url,
        None,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
    )
    .await;
    let sid = sid.expect("a session id");
    post(
        c,
        url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    sid
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cores = gateway_process::pin_self_off_core_zero();
    let calc_port = free_port();
    let everything = std::env::var("UPSTREAM").is_ok_and(|u| u == "everything");
    let (mut upstream, tool, sum) = if everything {
        let mut c = Command::new(root.join("target/node/bin/node"));
        c.arg(root.join("target/node/node_modules/.bin/mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", calc_port.to_string());
        (c, "get-sum", "is 5.")
    } else {
        let mut c = Command::new(root.join("target/py-mcp1/bin/python"));
        c.arg(root.join("tests/peers/fastmcp_server.py"))
            .arg(calc_port.to_string());
        (c, "add", "\"5\"")
    };
    let mut calc = upstream
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the upstream MCP server (scripts/setup-test-peers)");
    wait_port(calc_port);
    let config_for = |port: u16, admin: u16| {
        format!(
            r#"config: {{adminAddr: 127.0.0.1:{admin}}}
binds:
- port: {port}
  listeners:
  - routes:
    - name: plain
      matches: [{{path: {{pathPrefix: /plain}}}}]
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
    - name: chain
      matches: [{{path: {{pathPrefix: /chain}}}}]
      policies:
        mcpAuthorization: {{rules: [{{allow: 'mcp.tool.name in ["{tool}", "multiply"]'}}]}}
      plugins:
      - {{name: prompt-guard, config: {{patterns: ["(?i)ignore previous instructions"]}}}}
      - {{name: rate-limit, config: {{limits: [{{requests: 1000000, per: second, key: tool}}]}}}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
    - name: five
      matches: [{{path: {{pathPrefix: /five}}}}]
      policies:
        mcpAuthorization: {{rules: [{{allow: 'mcp.tool.name in ["{tool}", "multiply"]'}}]}}
      plugins:
      - {{name: tool-filter, config: {{tools: {{deny: ["*_admin"]}}}}}}
      - {{name: prompt-guard, config: {{patterns: ["(?i)ignore previous instructions"]}}}}
      - {{name: pii-guard, config: {{}}}}
      - {{name: rate-limit, config: {{limits: [{{requests: 1000000, per: second, key: tool}}]}}}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
    - name: cel
      matches: [{{path: {{pathPrefix: /cel}}}}]
      policies:
        mcpAuthorization: {{rules: [{{allow: 'mcp.tool.name in ["{tool}", "multiply"]'}}]}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
    - name: guard
      matches: [{{path: {{pathPrefix: /guard}}}}]
      plugins:
      - {{name: prompt-guard, config: {{patterns: ["(?i)ignore previous instructions"]}}}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
    - name: limit
      matches: [{{path: {{pathPrefix: /limit}}}}]
      plugins:
      - {{name: rate-limit, config: {{limits: [{{requests: 1000000, per: second, key: tool}}]}}}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {calc_port}}}}}]}}}}]
"#
        )
    };
    let start_gateway = |bin: &Path, tag: &str| {
        let (port, admin) = (free_port(), free_port());
        (
            Gateway::start(bin, &config_for(port, admin), port, tag),
            port,
        )
    };
    let (gw, port) = start_gateway(&gateway_process::wardgate_bin(), "mcp");
    let baseline =
        std::env::var_os("BASELINE").map(|bin| start_gateway(Path::new(&bin), "mcp-baseline"));

    let c: Http = Client::builder(TokioExecutor::new()).build_http();
    let urls = [
        ("direct", format!("http://127.0.0.1:{calc_port}/mcp")),
        (
            "wardgate, no plugins",
            format!("http://127.0.0.1:{port}/plain/mcp"),
        ),
        (
            "wardgate, 3 plugins",
            format!("http://127.0.0.1:{port}/chain/mcp"),
        ),
        (
            "wardgate, all 5",
            format!("http://127.0.0.1:{port}/five/mcp"),
        ),
        (
            "  cel-authz only",
            format!("http://127.0.0.1:{port}/cel/mcp"),
        ),
        (
            "  prompt-guard only",
            format!("http://127.0.0.1:{port}/guard/mcp"),
        ),
        (
            "  rate-limit only",
            format!("http://127.0.0.1:{port}/limit/mcp"),
        ),
    ];
    let each = std::env::args().any(|a| a == "each");
    let pick: Vec<(&str, String)> = std::env::var("PICK")
        .map(|p| {
            p.split(',')
                .map(|i| urls[i.trim().parse::<usize>().expect("PICK=0,1,3")].clone())
                .collect()
        })
        .unwrap_or_default();
    let mut urls = match (pick.is_empty(), each) {
        (false, _) => pick,
        (true, true) => urls.to_vec(),
        (true, false) => urls[..4].to_vec(),
    };
    if let Some((_, base_port)) = &baseline {
        let this = format!("127.0.0.1:{port}/");
        let other: Vec<_> = urls
            .iter()
            .filter(|(_, url)| url.contains(&this))
            .map(|(name, url)| {
                let name: &str = Box::leak(format!("baseline: {}", name.trim()).into_boxed_str());
                (name, url.replace(&this, &format!("127.0.0.1:{base_port}/")))
            })
            .collect();
        urls.extend(other);
    }
    let urls = &urls[..];
    let mut sessions = Vec::new();
    for (_, url) in urls {
        sessions.push(session(&c, url).await);
    }
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"a":2,"b":3}}}}}}"#
    );
    let mut times = vec![Vec::new(); urls.len()];
    let steal = gateway_process::CpuSteal::start();
    for round in 0..(n + 100) {
        // Each round starts one case further on, so every case takes every
        // place in the order equally often: with a fixed order the same
        // binary measured in two slots of one run differed by ~9 us.
        for k in 0..urls.len() {
            let i = (round + k) % urls.len();
            let url = &urls[i].1;
            let start = Instant::now();
            let (_, answer) = post(&c, url, Some(&sessions[i]), &body).await;
            let us = start.elapsed().as_secs_f64() * 1e6;
            assert!(answer.contains(sum), "{}: {answer}", urls[i].0);
            if round >= 100 {
                times[i].push(us);
            }
        }
    }
    println!(
        "machine: {cores} cores{}, {} during the calls, wake-up round trip {:.0} us; upstream {}; {n} sequential tools/call per case, 1 connection",
        gateway_process::pin_note(),
        steal.note(),
        gateway_process::wake_round_trip_us(),
        if everything {
            "server-everything (Node)"
        } else {
            "FastMCP (Python)"
        }
    );
    let p50_of = |name: &str, times: &[Vec<f64>]| {
        urls.iter()
            .position(|(n, _)| *n == name)
            .map(|i| pct(&mut times[i].clone(), 0.5))
    };
    let direct = p50_of("direct", &times).unwrap_or(0.0);
    let plain = p50_of("wardgate, no plugins", &times);
    let base_plain = p50_of("baseline: wardgate, no plugins", &times);
    for (i, (name, _)) in urls.iter().enumerate() {
        let (p50, p99) = (pct(&mut times[i], 0.5), pct(&mut times[i], 0.99));
        let plain = if name.starts_with("baseline:") {
            base_plain
        } else {
            plain
        };
        let over = plain
            .map(|p| format!("  over no plugins {:7.1} us", p50 - p))
            .unwrap_or_default();
        println!(
            "{name:32} p50 {p50:8.1} us  p99 {p99:8.1} us  added p50 {:7.1} us{over}",
            p50 - direct
        );
    }
    drop((gw, baseline));
    let _ = calc.kill();
    let _ = calc.wait();
}
