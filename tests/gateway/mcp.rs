//! MCP routes in the running gateway with real peers: `mcp-server-time`
//! (PyPI) over stdio, a FastMCP server (`mcp<2`, PyPI) over Streamable
//! HTTP, and the `mcp` Python SDK's client, v2 and v1 lines
//! (tests/clients/mcp_client.py). scripts/setup-test-peers installs them
//! into target/py (mcp 2) and target/py-mcp1 (mcp<2).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::process::Gateway;
use super::{client, json, send};

pub(super) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(super) fn venv(name: &str, bin: &str) -> PathBuf {
    let p = root().join("target").join(name).join("bin").join(bin);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-test-peers",
        p.display()
    );
    p
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The FastMCP server (mcp<2) on a loopback port, over Streamable HTTP.
pub(super) struct FastMcp {
    child: Child,
    pub(super) port: u16,
}

impl FastMcp {
    fn start() -> FastMcp {
        FastMcp::start_with(&[])
    }

    pub(super) fn start_with(options: &[&str]) -> FastMcp {
        let port = free_port();
        let child = Command::new(venv("py-mcp1", "python"))
            .arg(root().join("tests/peers/fastmcp_server.py"))
            .arg(port.to_string())
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the FastMCP server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "FastMCP server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        FastMcp { child, port }
    }
}

impl Drop for FastMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn time_target() -> String {
    format!(
        "{{name: time, stdio: {{cmd: \"{}\", args: [\"--local-timezone\", \"UTC\"]}}}}",
        venv("py", "mcp-server-time").display()
    )
}

/// Run the SDK client (`py` = mcp 2, `py-mcp1` = mcp<2); its JSON lines.
pub(super) fn sdk_client(line: &str, url: &str, calls: &[&str]) -> Vec<Value> {
    let out = Command::new(venv(line, "python"))
        .arg(root().join("tests/clients/mcp_client.py"))
        .arg(url)
        .args(calls)
        .output()
        .expect("run the mcp client");
    assert!(
        out.status.success(),
        "mcp client ({line}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json)
        .collect()
}

/// One raw JSON-RPC POST.
pub(super) async fn rpc(
    url: &str,
    session: Option<&str>,
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    send(
        &client(),
        req.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
    )
    .await
}

pub(super) async fn open_session(url: &str) -> String {
    let (status, headers, body) = rpc(
        url,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["result"]["protocolVersion"], "2025-06-18");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

async fn call(url: &str, session: &str, tool: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": args}});
    let (status, _, body) = rpc(url, Some(session), &body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federates_stdio_and_http_targets_for_both_sdk_lines() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: tools
      matches: [{{path: {{pathPrefix: /mcp}}}}]
      backends:
      - mcp:
          targets:
          - {time}
          - {{name: calc, mcp: {{host: 127.0.0.1, port: {port}, path: /mcp}}}}
"#,
        time = time_target(),
        port = calc.port
    ))
    .await;
    for line in ["py", "py-mcp1"] {
        let out = sdk_client(
            line,
            &gw.url("/mcp"),
            &[
                r#"calc_add={"a": 2, "b": 3}"#,
                r#"time_get_current_time={"timezone": "Asia/Tokyo"}"#,
                r#"calc_nope={}"#,
            ],
        );
        assert_eq!(out[0]["server"], "wardgate");
        let tools: Vec<&str> = out[1]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(
            tools,
            [
                "calc_add",
                "calc_echo",
                "calc_multiply",
                "time_convert_time",
                "time_get_current_time"
            ],
            "{line}"
        );
        assert_eq!(out[2]["text"], "5", "{line}: {}", out[2]);
        assert!(
            out[3]["text"].as_str().unwrap().contains("Asia/Tokyo"),
            "{}",
            out[3]
        );
        // The FastMCP server reports an unknown tool as a tool error.
        assert!(
            out[4]["isError"] == true || out[4]["error"].is_object(),
            "{}",
            out[4]
        );
    }
    // Prompts and resources are federated too, resources as {target}+{uri}.
    let url = gw.url("/mcp");
    let s = open_session(&url).await;
    let (_, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":2,"method":"prompts/list"}"#,
    )
    .await;
    assert_eq!(
        json(&body)["result"]["prompts"][0]["name"],
        "calc_greet",
        "{body}"
    );
    let (_, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#,
    )
    .await;
    assert_eq!(
        json(&body)["result"]["resources"][0]["uri"],
        "calc+calc://constants/pi",
        "{body}"
    );
    let (_, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"calc+calc://constants/pi"}}"#,
    )
    .await;
    assert_eq!(
        json(&body)["result"]["contents"][0]["text"],
        "3.14159",
        "{body}"
    );
    // The access log names method, target, tool and session.
    assert!(
        gw.wait_for_log("mcp tools/call target=calc name=calc_add session=")
            .await,
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_authorization_lists_only_allowed_tools_and_hides_the_rest() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - policies:
        mcpAuthorization:
          rules:
          - allow: 'mcp.tool.name in ["add", "multiply"]'
      backends:
      - mcp:
          targets:
          - {{name: calc, mcp: {{host: "http://127.0.0.1:{port}/mcp"}}}}
"#,
        port = calc.port
    ))
    .await;
    let out = sdk_client(
        "py",
        &gw.url("/mcp"),
        &[r#"multiply={"a": 6, "b": 7}"#, r#"echo={"text": "hi"}"#],
    );
    assert_eq!(out[1]["tools"], json!(["add", "multiply"]));
    assert_eq!(out[2]["text"], "42");
    assert_eq!(
        out[3]["error"],
        json!({"code": -32602, "message": "Unknown tool: echo"})
    );
}

/// What a browser-based client (MCP Inspector, a web agent) goes through:
/// a preflight, then calls whose answers it may read, session id included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_clients_get_cors_and_header_edits_on_mcp_answers() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - policies:
        cors:
          allowOrigins: ['https://inspector.example.com']
          allowMethods: [GET, POST, DELETE]
          allowHeaders: [content-type, mcp-session-id, mcp-protocol-version]
          exposeHeaders: [mcp-session-id]
        responseHeaderModifier: {{set: {{x-served-by: wardgate}}}}
      backends:
      - mcp:
          targets:
          - {{name: calc, mcp: {{host: "http://127.0.0.1:{port}/mcp"}}}}
"#,
        port = calc.port
    ))
    .await;
    // Not a loopback origin: admitted past the DNS-rebinding check because
    // the route's `cors` allows it.
    let inspector = "https://inspector.example.com";
    let url = gw.url("/mcp");
    let (status, h, _) = send(
        &client(),
        Request::options(url.as_str())
            .header("origin", inspector)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,mcp-protocol-version",
            )
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["access-control-allow-origin"], inspector);
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, mcp-session-id, mcp-protocol-version"
    );
    assert_eq!(h["x-served-by"], "wardgate");

    let post = |body: &'static str, session: Option<&str>| {
        let mut req = Request::post(url.as_str())
            .header("origin", inspector)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let (status, h, body) = send(
        &client(),
        post(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"browser","version":"1"}}}"#,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h["access-control-allow-origin"], inspector);
    assert_eq!(h["access-control-expose-headers"], "mcp-session-id");
    assert_eq!(h["x-served-by"], "wardgate");
    let session = h["mcp-session-id"].to_str().unwrap().to_string();
    let (status, h, body) = send(
        &client(),
        post(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#,
            Some(&session),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""text":"5""#), "{body}");
    assert_eq!(h["access-control-allow-origin"], inspector);
    assert_eq!(h["x-served-by"], "wardgate");
    // Another page is refused by that check, and gets no CORS headers.
    let (status, h, body) = send(
        &client(),
        Request::post(url.as_str())
            .header("origin", "https://evil.example.com")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    // A JSON-RPC error the gateway itself gives is marked as well.
    let (status, h, _) = send(
        &client(),
        post(
            r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
            Some("no-such-session"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h["access-control-allow-origin"], inspector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_stdio_target_leaves_the_others_working_and_comes_back() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
          - {time}
          - {{name: calc, mcp: {{host: 127.0.0.1, port: {port}}}}}
"#,
        time = time_target(),
        port = calc.port
    ))
    .await;
    let url = gw.url("/mcp");
    let s = open_session(&url).await;
    let r = call(
        &url,
        &s,
        "time_get_current_time",
        json!({"timezone": "UTC"}),
    )
    .await;
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("UTC"),
        "{r}"
    );

    let status = Command::new("pkill")
        .args([
            "-KILL",
            "-P",
            &gw.pid().to_string(),
            "-f",
            "mcp-server-time",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "no mcp-server-time child to kill");
    // The other target keeps answering, in the same session.
    let r = call(&url, &s, "calc_add", json!({"a": 1, "b": 1})).await;
    assert_eq!(r["result"]["content"][0]["text"], "2", "{r}");
    // And the dead one comes back (restarted with backoff).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call(
            &url,
            &s,
            "time_get_current_time",
            json!({"timezone": "UTC"}),
        )
        .await;
        if r["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("UTC"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "time target did not come back: {r}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        gw.wait_for_log("MCP target process exited; restarting")
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_and_json_rpc_errors_get_the_spec_answers() {
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:\n    - backends:\n      - mcp: {{targets: [{}]}}\n",
        time_target()
    ))
    .await;
    let url = gw.url("/mcp");
    let plain = |accept: &'static str, ct: &'static str| {
        Request::post(url.as_str())
            .header("accept", accept)
            .header("content-type", ct)
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            )))
            .unwrap()
    };
    let (status, _, _) = send(&client(), plain("application/json", "application/json")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    let (status, _, _) = send(
        &client(),
        plain("application/json, text/event-stream", "text/plain"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, _, body) = rpc(&url, None, "{not json").await;
    assert_eq!(
        (status, json(&body)["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32700))
    );
    let (status, _, body) = rpc(&url, None, r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
    assert_eq!(
        (status, json(&body)["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    let (status, _, body) = rpc(&url, None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no session: {body}");
    let (status, _, _) = rpc(
        &url,
        Some("no-such-session"),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let s = open_session(&url).await;
    let (status, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(
        (status, json(&body)["result"].clone()),
        (StatusCode::OK, json!({}))
    );
    let (_, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":3,"method":"no/such"}"#,
    )
    .await;
    assert_eq!(json(&body)["error"]["code"], -32601);
    let (_, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{}}"#,
    )
    .await;
    assert_eq!(json(&body)["error"]["code"], -32602);
    let (status, _, body) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, ""));
    let (status, _, body) = rpc(&url, Some(&s), r#"{"jsonrpc":"2.0","id":5}"#).await;
    assert_eq!(
        (status, json(&body)["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32600))
    );
    let versioned = Request::post(url.as_str())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", s.as_str())
        .header("mcp-protocol-version", "1999-01-01")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#,
        )))
        .unwrap();
    let (status, _, _) = send(&client(), versioned).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // DELETE ends the session; it is unknown afterwards.
    let delete = Request::delete(url.as_str())
        .header("mcp-session-id", s.as_str())
        .body(Full::default())
        .unwrap();
    let (status, _, _) = send(&client(), delete).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = rpc(
        &url,
        Some(&s),
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_replica_continues_on_another_with_the_same_key() {
    let calc = FastMcp::start();
    let config = |key: &str| {
        format!(
            "config:\n  session: {{key: \"{key}\"}}\nbinds:\n- port: 0\n  listeners:\n  - routes:\n    - name: tools\n      backends:\n      - mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {port}}}}}]}}\n",
            port = calc.port
        )
    };
    let shared = "3b1f0e9c2d4a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344";
    let a = Gateway::start(&config(shared)).await;
    let b = Gateway::start(&config(shared)).await;
    let stranger = Gateway::start(&config(&shared.replace('3', "4"))).await;
    let s = open_session(&a.url("/mcp")).await;
    // No session table is shared: the id itself carries the (sealed) state.
    let r = call(&b.url("/mcp"), &s, "add", json!({"a": 20, "b": 22})).await;
    assert_eq!(r["result"]["content"][0]["text"], "42", "{r}");
    let (status, _, _) = rpc(
        &stranger.url("/mcp"),
        Some(&s),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another key cannot open it");
    // The GET stream opens on any replica too.
    let get = |gw: &Gateway| {
        Request::get(gw.url("/mcp"))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", s.as_str())
            .body(Full::default())
            .unwrap()
    };
    let resp = client().request(get(&b)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    drop(resp);
    let resp = client().request(get(&stranger)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let delete = Request::delete(b.url("/mcp"))
        .header("mcp-session-id", s.as_str())
        .body(Full::default())
        .unwrap();
    let (status, _, _) = send(&client(), delete).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = rpc(
        &b.url("/mcp"),
        Some(&s),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A tampered id is unknown everywhere.
    let mut tampered = s.clone();
    tampered.replace_range(10..11, if &s[10..11] == "A" { "B" } else { "A" });
    let (status, _, _) = rpc(
        &a.url("/mcp"),
        Some(&tampered),
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A malformed key is a config error naming it.
    let path = std::env::temp_dir().join(format!("wardgate-mcp-key-{}.yaml", std::process::id()));
    std::fs::write(&path, config("xyz")).unwrap();
    let out = super::process::wardgate(&["validate", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("config.session.key")
            && stderr.contains("64 hex digits"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(path);
}

/// Stdio children of the gateway running mcp-server-time.
fn time_processes(gw: &Gateway) -> usize {
    let out = Command::new("pgrep")
        .args(["-P", &gw.pid().to_string(), "-f", "mcp-server-time"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_stops_the_old_configs_stdio_targets() {
    let yaml = |route: &str| {
        format!(
            "binds:\n- port: 0\n  listeners:\n  - routes:\n    - name: {route}\n      backends:\n      - mcp: {{targets: [{}]}}\n",
            time_target()
        )
    };
    let gw = Gateway::start(&yaml("before")).await;
    let url = gw.url("/mcp");
    let s = open_session(&url).await;
    let r = call(&url, &s, "get_current_time", json!({"timezone": "UTC"})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(time_processes(&gw), 1);
    gw.rewrite_config(&yaml("after"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while time_processes(&gw) != 0 {
        assert!(
            Instant::now() < deadline,
            "the old target still runs after the reload"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new config starts its own on first use.
    let s = open_session(&url).await;
    let r = call(&url, &s, "get_current_time", json!({"timezone": "UTC"})).await;
    assert!(r["result"].is_object(), "{r}");
    assert_eq!(time_processes(&gw), 1);
}

/// The stateless revision (2026-07-28) on the same endpoint as the
/// session-based ones: the v2 SDK's Client discovers it and uses it; the
/// header/body ladder gives the revision's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stateless_revision_is_served_next_to_the_session_based_ones() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:\n    - name: tools\n      backends:\n      - mcp: {{targets: [{time}, {{name: calc, mcp: {{host: 127.0.0.1, port: {port}}}}}]}}\n",
        time = time_target(),
        port = calc.port
    ))
    .await;
    let url = gw.url("/mcp");
    let out = Command::new(venv("py", "python"))
        .arg(root().join("tests/clients/mcp_stateless_client.py"))
        .args([
            url.as_str(),
            r#"calc_add={"a": 2, "b": 40}"#,
            "calc_nope={}",
        ])
        .output()
        .expect("run the stateless client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = text.lines().map(json).collect();
    assert_eq!(lines[0]["version"], "2026-07-28", "{text}");
    assert!(
        lines[1]["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("time_get_current_time"))
    );
    assert_eq!(lines[2]["text"], "42", "{text}");
    // The target itself says it has no such tool.
    assert_eq!(lines[3]["isError"], true, "{text}");
    // The session-based revisions still work on the same endpoint.
    let session = open_session(&url).await;
    assert!(!session.is_empty());

    let envelope = |version: &str| {
        json!({"io.modelcontextprotocol/protocolVersion": version,
               "io.modelcontextprotocol/clientCapabilities": {}})
    };
    let post = |headers: Vec<(&'static str, String)>, body: Value| {
        let mut req = Request::post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    };
    let modern = |method: &str, name: Option<&str>| {
        let mut h = vec![
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", method.to_string()),
        ];
        if let Some(n) = name {
            h.push(("mcp-name", n.to_string()));
        }
        h
    };
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": name, "arguments": {"a": 1, "b": 1}, "_meta": envelope("2026-07-28")}})
    };
    // Agreeing headers: answered, and no session is minted.
    let (status, headers, body) = send(
        &client(),
        post(modern("tools/call", Some("calc_add")), call("calc_add")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("mcp-session-id").is_none());
    assert_eq!(json(&body)["result"]["resultType"], "complete");
    // Mcp-Name naming another tool than the body: -32020, 400.
    let (status, _, body) = send(
        &client(),
        post(modern("tools/call", Some("calc_sub")), call("calc_add")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["error"]["code"], -32020, "{body}");
    // Mcp-Method missing: -32020.
    let (status, _, body) = send(
        &client(),
        post(
            vec![("mcp-protocol-version", "2026-07-28".to_string())],
            call("calc_add"),
        ),
    )
    .await;
    assert_eq!(
        (status, json(&body)["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(-32020))
    );
    // A revision from the future: -32022 listing what is supported.
    let discover = json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover",
        "params": {"_meta": envelope("2099-01-01")}});
    let (status, _, body) = send(
        &client(),
        post(
            vec![
                ("mcp-protocol-version", "2099-01-01".to_string()),
                ("mcp-method", "server/discover".to_string()),
            ],
            discover,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = json(&body);
    assert_eq!(body["error"]["code"], -32022);
    assert_eq!(body["error"]["data"]["supported"], json!(["2026-07-28"]));
    // An unknown method: 404 with -32601.
    let unknown = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/frobnicate",
        "params": {"_meta": envelope("2026-07-28")}});
    let (status, _, body) = send(&client(), post(modern("tools/frobnicate", None), unknown)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"]["code"], -32601);
}

/// tool-filter on a federated route: globs on the federated names and, per
/// target, on the target's own names; lists lose the filtered tools and
/// calls to them are answered as for a tool that does not exist. The
/// example config validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_filter_hides_tools_by_federated_and_per_target_globs() {
    let calc = FastMcp::start();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: tools
      plugins:
      - name: tool-filter
        config:
          tools: {{deny: ["*_multiply"]}}
          targets:
            time: {{tools: {{allow: ["get_*"]}}}}
      - {{name: prompt-guard, config: {{sets: [creditCard, secrets]}}}}
      backends:
      - mcp:
          targets:
          - {time}
          - {{name: calc, mcp: {{host: 127.0.0.1, port: {port}}}}}
"#,
        time = time_target(),
        port = calc.port
    ))
    .await;
    let out = sdk_client(
        "py",
        &gw.url("/mcp"),
        &[
            r#"calc_add={"a": 1, "b": 2}"#,
            r#"calc_multiply={"a": 2, "b": 3}"#,
            r#"time_convert_time={"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}"#,
            // prompt-guard's built-in sets: a Luhn-valid card number is refused,
            // a look-alike that fails the checksum passes.
            r#"calc_echo={"text": "card 4111 1111 1111 1111"}"#,
            r#"calc_echo={"text": "card 4111 1111 1111 1112"}"#,
        ],
    );
    assert_eq!(
        out[1]["tools"],
        json!(["calc_add", "calc_echo", "time_get_current_time"]),
        "{out:?}"
    );
    assert_eq!(out[2]["text"], "3");
    for (line, name) in [(3, "calc_multiply"), (4, "time_convert_time")] {
        assert_eq!(out[line]["error"]["code"], -32602, "{out:?}");
        assert_eq!(
            out[line]["error"]["message"],
            format!("Unknown tool: {name}")
        );
    }
    // Refused at the HTTP stage (the raw body), still answered as JSON-RPC.
    assert_eq!(out[5]["error"]["code"], -32602, "{out:?}");
    assert_eq!(
        out[5]["error"]["message"],
        "Rejected due to inappropriate content"
    );
    assert_eq!(out[6]["text"], "card 4111 1111 1111 1112", "{out:?}");
    // examples/configs/mcp-gateway.yaml: `every_example_config_validates`.
}

/// pii-guard on MCP: `pre_call` masks tool arguments before the target
/// sees them (echo says back what it received), `post_call` masks what the
/// target answers, and BLOCK refuses the call with the entity named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_guard_masks_tool_arguments_and_results() {
    let calc = FastMcp::start();
    let route = |name: &str, config: &str| {
        format!(
            r#"
    - name: {name}
      matches: [{{path: {{pathPrefix: /{name}}}}}]
      plugins:
      - {{name: pii-guard, config: {config}}}
      backends: [{{mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {port}}}}}]}}}}]"#,
            port = calc.port
        )
    };
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:{}{}\n",
        route(
            "pre",
            "{mode: pre_call, entityActions: {US_SSN: HASH, IBAN_CODE: BLOCK}, hashKey: k}"
        ),
        route("post", "{mode: post_call, names: [Jane Doe]}"),
    ))
    .await;
    let said = r#"echo={"text": "Jane Doe, jane@example.com, ssn 536-22-8726"}"#;
    let out = sdk_client("py", &gw.url("/pre/mcp"), &[said]);
    // The target received (and echoed) the masked arguments; the SSN is a
    // keyed hash; PERSON is off without names.
    let text = out[2]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Jane Doe, <EMAIL_ADDRESS>, ssn "),
        "{out:?}"
    );
    assert!(!text.contains("536-22-8726") && text.len() > 60, "{text}");
    let out = sdk_client(
        "py",
        &gw.url("/pre/mcp"),
        &[r#"echo={"text": "IBAN DE89 3704 0044 0532 0130 00"}"#],
    );
    assert_eq!(out[2]["error"]["code"], -32602, "{out:?}");
    assert_eq!(
        out[2]["error"]["message"],
        "request blocked: it contains IBAN_CODE"
    );
    // post_call: the target got the real values, the client gets them masked.
    let out = sdk_client("py", &gw.url("/post/mcp"), &[said]);
    assert_eq!(
        out[2]["text"], "<PERSON>, <EMAIL_ADDRESS>, ssn <US_SSN>",
        "{out:?}"
    );
}

/// A client's `notifications/cancelled` stops its call: the gateway answers
/// the call at once, and the target hears the cancellation under the id the
/// gateway gave the call upstream (the FastMCP tool sees its task
/// cancelled). A cancellation from another session, or naming no request
/// in flight, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancellation_reaches_the_target_running_the_call() {
    let calc = FastMcp::start_with(&["--slow-tools"]);
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:\n    - backends:\n      - mcp: {{targets: [{{name: calc, mcp: {{host: 127.0.0.1, port: {}}}}}]}}\n",
        calc.port
    ))
    .await;
    let url = gw.url("/mcp");
    let (a, b) = (open_session(&url).await, open_session(&url).await);
    let counts = || async {
        let reply = call(&url, &b, "calls", json!({})).await;
        let text = reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("{}");
        json(text)
    };
    let wait_for = |field: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = counts().await;
            if c[field] == 1 {
                return c;
            }
            assert!(Instant::now() < deadline, "no {field} call: {c}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let slow = {
        let (url, a) = (url.clone(), a.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let body = json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call",
                "params": {"name": "slow", "arguments": {"seconds": 30}}});
            let (status, _, body) = rpc(&url, Some(&a), &body.to_string()).await;
            (status, json(&body), started.elapsed())
        })
    };
    wait_for("started").await;

    let cancel = |id: Value| {
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "the user stopped it"}})
        .to_string()
    };
    for (session, id) in [(&b, json!(41)), (&a, json!(99)), (&a, json!("41"))] {
        let (status, _, _) = rpc(&url, Some(session), &cancel(id)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slow.is_finished(),
        "another session's cancellation stopped the call"
    );
    assert_eq!(counts().await["cancelled"], 0);

    let (status, _, _) = rpc(&url, Some(&a), &cancel(json!(41))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, reply, took) = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the cancelled call is answered at once")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["id"], 41);
    assert_eq!(reply["error"]["code"], -32800, "{reply}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let c = wait_for("cancelled").await;
    assert_eq!(c["finished"], 0, "{c}");

    // The session goes on.
    let reply = call(&url, &a, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(reply["result"]["content"][0]["text"], "5");
}
