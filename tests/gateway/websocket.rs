//! WebSocket upgrades through the running gateway, with real peers on both
//! sides: the `websockets` library's server (tests/peers/websocket_server.py)
//! upstream and its client (tests/clients/websocket_client.py) downstream.
//! The route's policies run on the handshake; the tunnel carries frames
//! both ways, closes with either side and after `config.idleTimeout` of
//! silence; failures before the 101 are the usual named errors.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mcp::{free_port, root, venv};
use super::process::Gateway;
use super::tls::Pki;

/// The `websockets` server on a loopback port, plain or TLS.
struct WsServer {
    child: Child,
    port: u16,
}

impl WsServer {
    fn start(tls: Option<(&str, &str)>) -> WsServer {
        let port = free_port();
        let mut command = Command::new(venv("py", "python"));
        command
            .arg(root().join("tests/peers/websocket_server.py"))
            .arg(port.to_string());
        if let Some((cert, key)) = tls {
            command.args([cert, key]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the websockets server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "websockets server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        WsServer { child, port }
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run one step of the client against `url`; its JSON lines.
pub(super) fn ws_client(url: &str, step: &str, options: &[&str]) -> Vec<Value> {
    let out = Command::new(venv("py", "python"))
        .arg(root().join("tests/clients/websocket_client.py"))
        .args([url, step])
        .args(options)
        .output()
        .expect("run the websockets client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "websockets client ({step} {url}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

pub(super) fn ws_url(gw: &Gateway, path: &str) -> String {
    gw.url(path).replacen("http://", "ws://", 1)
}

async fn metrics(gw: &Gateway) -> String {
    let (_, _, body) = super::get(&super::client(), &gw.admin_url("/metrics")).await;
    body
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_cross_the_gateway_both_ways_with_the_routes_edits() {
    let server = WsServer::start(None);
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: ws
      policies:
        requestHeaderModifier: {{set: {{x-via: wardgate}}}}
        responseHeaderModifier: {{set: {{x-served-by: wardgate}}}}
      backends: [{{host: "{up}"}}]
"#,
        up = server.addr()
    ))
    .await;

    let lines = ws_client(&ws_url(&gw, "/chat?room=1"), "echo", &[]);
    let hello = &lines[0];
    assert_eq!(hello["status"], 101, "{hello}");
    assert_eq!(hello["hello"]["path"], "/chat?room=1");
    let seen = &hello["hello"]["headers"];
    assert_eq!(seen["x-via"], "wardgate", "{seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["upgrade"], "websocket");
    let request_id = seen["x-request-id"]
        .as_str()
        .expect("a request id upstream");
    let answered = &hello["response_headers"];
    assert_eq!(answered["x-request-id"], request_id, "{answered}");
    assert_eq!(answered["x-served-by"], "wardgate");
    assert_eq!(lines[1]["text"], "hello through the gateway");
    assert_eq!(lines[2]["binary_bytes"], 1 << 20);
    assert_eq!(lines[2]["binary_same"], true);

    // The upstream ends the conversation: its close code reaches the client.
    let lines = ws_client(&ws_url(&gw, "/close/4001"), "hello", &[]);
    assert_eq!(lines[1]["close_code"], 4001, "{lines:?}");
    assert_eq!(lines[1]["close_reason"], "bye");

    // An upstream that refuses the handshake is answered as it said.
    let lines = ws_client(&ws_url(&gw, "/refuse"), "refused", &[]);
    assert_eq!(lines[0]["status"], 403, "{lines:?}");
    assert_eq!(lines[0]["body"], "refused by the upstream\n");

    // Both tunnels closed, counted with the megabyte each way.
    let mut text = String::new();
    for _ in 0..50 {
        text = metrics(&gw).await;
        if metric(&text, "wardgate_tunnels_open{route=\"ws\"}") == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&text, "wardgate_tunnels_open{route=\"ws\"}"),
        Some(0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "wardgate_tunnels_total{route=\"ws\"}"),
        Some(2),
        "{text}"
    );
    for direction in ["to_upstream", "to_client"] {
        let series =
            format!("wardgate_tunnel_bytes_total{{route=\"ws\",direction=\"{direction}\"}}");
        let bytes = metric(&text, &series).unwrap_or_default();
        assert!(bytes > 1 << 20, "{series} = {bytes}\n{text}");
    }
    assert_eq!(
        metric(
            &text,
            "wardgate_requests_total{route=\"ws\",status=\"101\"}"
        ),
        Some(2),
        "{text}"
    );
    assert!(gw.log_contains("status=101").await, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_pass_the_routes_policies_and_fail_with_named_errors() {
    let server = WsServer::start(None);
    let closed = free_port();
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: keyed
      matches: [{{path: {{pathPrefix: /keyed}}}}]
      policies:
        apiKey: {{keys: [{{key: k-1}}]}}
      plugins:
      - name: rate-limit
        config: {{limits: [{{requests: 1, per: minute}}]}}
      backends: [{{host: "{up}"}}]
    - name: down
      matches: [{{path: {{pathPrefix: /down}}}}]
      backends: [{{host: "127.0.0.1:{closed}"}}]
    - name: h2-only
      matches: [{{path: {{pathPrefix: /h2}}}}]
      policies:
        http: {{version: HTTP2}}
      backends: [{{host: "{up}"}}]
"#,
        up = server.addr()
    ))
    .await;
    let url = ws_url(&gw, "/keyed");
    let key = ["--header", "authorization:Bearer k-1"];

    let lines = ws_client(&url, "refused", &[]);
    assert_eq!(lines[0]["status"], 401, "{lines:?}");
    let lines = ws_client(&url, "refused", &key);
    assert_eq!(lines[0]["status"], 101, "{lines:?}");
    assert_eq!(lines[0]["hello"]["path"], "/keyed");
    // The rate-limit plugin counted the first handshake.
    let lines = ws_client(&url, "refused", &key);
    assert_eq!(lines[0]["status"], 429, "{lines:?}");

    let lines = ws_client(&ws_url(&gw, "/down"), "refused", &[]);
    assert_eq!(lines[0]["status"], 502, "{lines:?}");
    let body: Value = serde_json::from_str(lines[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["route"], "down", "{body}");
    assert_eq!(body["error"]["backend"], format!("127.0.0.1:{closed}"));

    let lines = ws_client(&ws_url(&gw, "/h2"), "refused", &[]);
    assert_eq!(lines[0]["status"], 502, "{lines:?}");
    let body = lines[0]["body"].as_str().unwrap();
    assert!(body.contains("an upgrade needs HTTP/1.1"), "{body}");

    // The gateway still serves.
    let lines = ws_client(&ws_url(&gw, "/keyed"), "refused", &[]);
    assert_eq!(lines[0]["status"], 401, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_tunnels_close_after_the_idle_timeout_and_busy_ones_stay_open() {
    let server = WsServer::start(None);
    let gw = Gateway::start(&super::proxy_to(
        server.addr(),
        "config:\n  idleTimeout: 1s\n",
    ))
    .await;
    let quiet = ws_client(&ws_url(&gw, "/quiet"), "quiet", &[]);
    let after = quiet[1]["closed_after"]
        .as_f64()
        .expect("closed by the gateway");
    assert!((0.9..5.0).contains(&after), "closed after {after} s");
    // Pings every 0.25 s are traffic: three seconds later the tunnel still echoes.
    let busy = ws_client(&ws_url(&gw, "/busy"), "pinging", &[]);
    assert_eq!(busy[1]["text"], "still here", "{busy:?}");
    assert!(busy[1]["open_after"].as_f64().unwrap() >= 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_run_over_tls_on_both_sides() {
    let pki = Pki::new("ws");
    let (edge_cert, edge_key) = pki.leaf("edge", &["localhost"]);
    let (up_cert, up_key) = pki.leaf("upstream", &["upstream.internal"]);
    let server = WsServer::start(Some((&up_cert, &up_key)));
    // The backend's TLS may negotiate HTTP/2 for requests; the handshake
    // goes over a connection that offers HTTP/1.1 alone.
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - protocol: HTTPS
    tls: {{cert: {edge_cert}, key: {edge_key}}}
    routes:
    - policies:
        backendTLS: {{root: {ca}, hostname: upstream.internal}}
      backends: [{{host: "{up}"}}]
"#,
        ca = pki.ca_path(),
        up = server.addr()
    ))
    .await;
    let url = gw
        .url("/secure")
        .replacen("http://127.0.0.1", "wss://localhost", 1);
    let lines = ws_client(&url, "echo", &["--ca", &pki.ca_path()]);
    assert_eq!(lines[0]["status"], 101, "{lines:?}");
    assert_eq!(lines[0]["hello"]["path"], "/secure");
    assert_eq!(lines[2]["binary_same"], true, "{lines:?}");
}

/// `SIGTERM` drains tunnels too: an open one keeps carrying messages until
/// `connectionTerminationDeadline`, when the gateway closes it and exits.
/// Meanwhile `/readyz` says it is draining and no new connection is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_tunnels_open_until_the_termination_deadline() {
    use std::io::BufRead;
    let server = WsServer::start(None);
    let settings = "config:\n  connectionTerminationDeadline: 2s\n";
    let mut gw = Gateway::start(&super::proxy_to(server.addr(), settings)).await;
    let mut client = Command::new(venv("py", "python"))
        .arg(root().join("tests/clients/websocket_client.py"))
        .args([&ws_url(&gw, "/held"), "hold"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the websockets client");
    let mut lines = std::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next_line = move || -> Value {
        let line = lines.next().expect("a line").expect("readable");
        serde_json::from_str(&line).expect("a JSON line")
    };
    assert_eq!(next_line()["status"], 101);
    let signalled = Instant::now();
    gw.signal("TERM");
    super::process::eventually(|| async {
        let (status, _, body) = super::get(&super::client(), &gw.admin_url("/readyz")).await;
        status == 503 && body == "draining\n"
    })
    .await;
    let listener = gw.url("").replacen("http://", "", 1);
    super::process::eventually(|| async {
        tokio::net::TcpStream::connect(&listener).await.is_err()
    })
    .await;
    assert!(
        gw.wait_exit(Duration::from_secs(10)),
        "gateway did not exit at the deadline"
    );
    let exited = signalled.elapsed().as_secs_f64();
    let held = next_line();
    client.wait().unwrap();
    assert!(
        (1.8..4.0).contains(&exited),
        "exited {exited} s after SIGTERM"
    );
    // Echoed every 0.1 s through the drain, until the gateway closed it.
    let held_for = held["held_for"].as_f64().unwrap();
    assert!(held_for >= 1.8, "{held}");
    assert!(held["echoes"].as_u64().unwrap() >= 10, "{held}");
    assert_eq!(held["ended"], "ConnectionClosedError", "{held}");
    assert!(
        gw.log()
            .contains("connectionTerminationDeadline passed: closing 1 connection(s) still open"),
        "{}",
        gw.log()
    );
}

/// RFC 8441: an HTTP/2 client opens a WebSocket with an extended CONNECT.
/// The upstream (HTTP/1.1) gets the usual handshake, the client a 200, and
/// frames cross both ways; the tunnel keeps its HTTP/2 connection from
/// counting as idle. The client is hyper's HTTP/2 client with
/// tokio-tungstenite's WebSocket on the stream it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_open_websockets_with_extended_connect() {
    use futures_util::{SinkExt, StreamExt};
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let server = WsServer::start(None);
    let gw = Gateway::start(&format!(
        r#"
config:
  idleTimeout: 1s
binds:
- port: 0
  listeners:
  - routes:
    - policies:
        requestHeaderModifier: {{set: {{x-edge: h2}}}}
      backends: [{{host: "{up}"}}]
"#,
        up = server.addr()
    ))
    .await;
    let authority = gw.url("").replacen("http://", "", 1);
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // A plain request first, so the gateway's SETTINGS (which offer
    // extended CONNECT) have arrived before the CONNECT is sent.
    let plain = http::Request::get(format!("http://{authority}/plain"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = sender.send_request(plain).await.unwrap();
    assert_eq!(answer.status(), 426, "a plain GET is no handshake");

    let connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{authority}/h2chat?room=2"))
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = sender.send_request(connect).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("sec-websocket-accept").is_none());
    let stream = hyper::upgrade::on(answer).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
    let Some(Ok(Message::Text(hello))) = ws.next().await else {
        panic!("no hello from the upstream");
    };
    let hello: Value = serde_json::from_str(&hello).unwrap();
    // The upstream saw an HTTP/1.1 handshake with a key, and the route's edits.
    assert_eq!(hello["path"], "/h2chat?room=2");
    assert_eq!(hello["headers"]["upgrade"], "websocket", "{hello}");
    assert_eq!(hello["headers"]["x-edge"], "h2", "{hello}");
    assert_eq!(
        hello["headers"]["sec-websocket-key"].as_str().map(str::len),
        Some(24),
        "{hello}"
    );
    // 2.4 s of messages 0.3 s apart: longer than idleTimeout, never idle.
    for i in 0..8 {
        ws.send(Message::text(format!("message {i}")))
            .await
            .unwrap();
        let Some(Ok(Message::Text(back))) = ws.next().await else {
            panic!("message {i} did not come back");
        };
        assert_eq!(back.as_str(), format!("message {i}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let blob: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let Some(Ok(Message::Binary(back))) = ws.next().await else {
        panic!("the binary message did not come back");
    };
    assert!(back == blob, "1 MiB came back changed");
    ws.close(None).await.unwrap();
    let text = metrics(&gw).await;
    assert_eq!(
        metric(&text, "wardgate_tunnels_total{route=\"listener0/route0\"}"),
        Some(1),
        "{text}"
    );
}
