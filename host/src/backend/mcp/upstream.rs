//! One MCP server behind a route (a "target"), and the one session the
//! gateway keeps with it: spawned over stdio or reached over Streamable
//! HTTP, initialized once, reused by every client and call, and brought back
//! with backoff when it dies.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::jsonrpc::RpcError;
use crate::gateway::WeightedBackend;

/// The revision the gateway asks its upstreams for; they answer with theirs.
pub const UPSTREAM_VERSION: &str = "2025-06-18";
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a target is reached.
pub enum Reach {
    Stdio {
        cmd: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    Http {
        backend: WeightedBackend,
        path: String,
    },
}

/// What the target said when it was initialized.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    pub protocol_version: String,
    pub capabilities: Value,
    pub info: Value,
}

#[derive(Clone, Debug)]
pub enum Health {
    Starting,
    Ready(ServerInfo),
    Down(String),
}

pub struct Target {
    pub name: String,
    reach: Reach,
    health: watch::Sender<Health>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    started: std::sync::Once,
    next_id: AtomicU64,
}

/// A live session with the target.
enum Conn {
    Stdio {
        tx: mpsc::Sender<String>,
        pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
        _child: Arc<tokio::sync::Mutex<tokio::process::Child>>,
    },
    Http {
        session: Option<HeaderValue>,
        version: HeaderValue,
    },
}

impl Target {
    pub fn new(name: String, reach: Reach) -> Arc<Target> {
        Arc::new(Target {
            name,
            reach,
            health: watch::channel(Health::Starting).0,
            conn: tokio::sync::Mutex::new(None),
            started: std::sync::Once::new(),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// Start the target's supervisor once (lazily, so `validate` spawns nothing).
    pub fn ensure_started(self: &Arc<Self>) {
        // Weak: a config reload drops the target, and the supervisor (and
        // the process it watches) must go with it.
        let me = Arc::downgrade(self);
        self.started.call_once(move || {
            tokio::spawn(supervise(me));
        });
    }

    /// Wait until the target is ready (or known down), at most `wait`.
    pub async fn ready(self: &Arc<Self>, wait: Duration) -> Result<ServerInfo, String> {
        self.ensure_started();
        let mut rx = self.health.subscribe();
        let outcome = tokio::time::timeout(wait, async {
            loop {
                let h = rx.borrow_and_update().clone();
                match h {
                    Health::Ready(info) => return Ok(info),
                    Health::Down(e) => return Err(e),
                    Health::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return Err("target stopped".to_string());
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| {
            Err(format!(
                "target {} did not start within {wait:?}",
                self.name
            ))
        })
    }

    /// Send a request and wait for its response (`result` or an error).
    pub async fn call(self: &Arc<Self>, method: &str, params: Value) -> Result<Value, RpcError> {
        let conn =
            self.conn.lock().await.clone().ok_or_else(|| {
                RpcError::internal(format!("target {} is not connected", self.name))
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let reply = match tokio::time::timeout(CALL_TIMEOUT, self.exchange(&conn, id, msg)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RpcError::internal(format!(
                    "target {} did not answer {method} within {CALL_TIMEOUT:?}",
                    self.name
                )));
            }
        };
        if let Some(err) = reply.get("error") {
            return Err(RpcError::from_value(err));
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn exchange(&self, conn: &Conn, id: u64, msg: Value) -> Result<Value, RpcError> {
        match conn {
            Conn::Stdio { tx, pending, .. } => {
                let (reply_tx, reply_rx) = oneshot::channel();
                pending.lock().unwrap().insert(id, reply_tx);
                if tx.send(msg.to_string()).await.is_err() {
                    pending.lock().unwrap().remove(&id);
                    return Err(RpcError::internal(format!("target {} is down", self.name)));
                }
                reply_rx
                    .await
                    .map_err(|_| RpcError::internal(format!("target {} went away", self.name)))
            }
            Conn::Http { session, version } => {
                let Reach::Http { backend, path } = &self.reach else {
                    unreachable!("http conn on an http target")
                };
                let (_, reply) = http_post(
                    backend,
                    path,
                    session.as_ref(),
                    Some(version),
                    &msg,
                    Some(id),
                )
                .await
                .map_err(RpcError::internal)?;
                reply.ok_or_else(|| RpcError::internal("no response".into()))
            }
        }
    }

    async fn notify(&self, conn: &Conn, method: &str) {
        let msg = json!({"jsonrpc": "2.0", "method": method});
        match conn {
            Conn::Stdio { tx, .. } => {
                let _ = tx.send(msg.to_string()).await;
            }
            Conn::Http { session, version } => {
                if let Reach::Http { backend, path } = &self.reach {
                    let _ =
                        http_post(backend, path, session.as_ref(), Some(version), &msg, None).await;
                }
            }
        }
    }

    /// Connect and initialize; returns the session and what the server said.
    async fn connect(
        self: &Arc<Self>,
    ) -> Result<(Arc<Conn>, ServerInfo, Option<tokio::task::JoinHandle<()>>), String> {
        let init = |id: u64| {
            json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
                "protocolVersion": UPSTREAM_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "wardgate", "version": env!("CARGO_PKG_VERSION")},
            }})
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (conn, reply, watcher) = match &self.reach {
            Reach::Stdio { cmd, args, env } => {
                let (conn, exited) = spawn_stdio(&self.name, cmd, args, env)?;
                let conn = Arc::new(conn);
                let reply = tokio::time::timeout(CALL_TIMEOUT, self.exchange(&conn, id, init(id)))
                    .await
                    .map_err(|_| "no answer to initialize".to_string())?
                    .map_err(|e| e.message)?;
                (conn, reply, Some(exited))
            }
            Reach::Http { backend, path } => {
                let (session, reply) =
                    http_post(backend, path, None, None, &init(id), Some(id)).await?;
                let reply = reply.ok_or("no answer to initialize")?;
                let version = reply
                    .pointer("/result/protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(UPSTREAM_VERSION);
                let conn = Conn::Http {
                    session,
                    version: HeaderValue::from_str(version)
                        .unwrap_or(HeaderValue::from_static(UPSTREAM_VERSION)),
                };
                (Arc::new(conn), reply, None)
            }
        };
        if let Some(err) = reply.get("error") {
            return Err(format!("initialize failed: {err}"));
        }
        let result = reply.get("result").cloned().unwrap_or(Value::Null);
        self.notify(&conn, "notifications/initialized").await;
        let info = ServerInfo {
            protocol_version: result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
            info: result.get("serverInfo").cloned().unwrap_or(json!({})),
        };
        Ok((conn, info, watcher))
    }
}

/// Keep the target connected: connect, and after a failure or a dead
/// process try again with a doubling pause (1 s up to 30 s). Ends, killing
/// a stdio process, when the target is dropped (the config moved on).
async fn supervise(weak: Weak<Target>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(target) = weak.upgrade() else { return };
        let mut dropped = target.health.subscribe();
        match target.connect().await {
            Ok((conn, info, watcher)) => {
                tracing::info!(target = %target.name, version = %info.protocol_version, "MCP target ready");
                *target.conn.lock().await = Some(conn);
                target.health.send_replace(Health::Ready(info));
                backoff = Duration::from_secs(1);
                drop(target);
                // An HTTP target stays "ready"; failed calls report themselves.
                let Some(mut exited) = watcher else { return };
                let gone = async { while dropped.changed().await.is_ok() {} };
                tokio::select! {
                    _ = &mut exited => {}
                    _ = gone => {
                        // The last handle on the child goes with this task.
                        exited.abort();
                        return;
                    }
                }
                let Some(target) = weak.upgrade() else { return };
                tracing::warn!(target = %target.name, "MCP target process exited; restarting");
                *target.conn.lock().await = None;
                target
                    .health
                    .send_replace(Health::Down("process exited".into()));
            }
            Err(e) => {
                tracing::warn!(target = %target.name, "MCP target unavailable: {e}; retrying in {backoff:?}");
                *target.conn.lock().await = None;
                target.health.send_replace(Health::Down(e));
                drop(target);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn spawn_stdio(
    name: &str,
    cmd: &str,
    args: &[String],
    env: &[(String, String)],
) -> Result<(Conn, tokio::task::JoinHandle<()>), String> {
    let mut child = tokio::process::Command::new(cmd)
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{cmd}`: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if stdin.write_all(line.as_bytes()).await.is_err()
                || stdin.write_all(b"\n").await.is_err()
                || stdin.flush().await.is_err()
            {
                break;
            }
        }
    });
    let target = name.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "mcp_stderr", mcp_target = %target, "{line}");
        }
    });
    let reader_pending = pending.clone();
    let reply_tx = tx.clone();
    let target = name.to_string();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                tracing::debug!(mcp_target = %target, "not JSON-RPC on stdout: {line}");
                continue;
            };
            let id = msg.get("id").cloned();
            match (msg.get("method"), id) {
                // A response to one of ours.
                (None, Some(id)) => {
                    if let Some(tx) = id
                        .as_u64()
                        .and_then(|id| reader_pending.lock().unwrap().remove(&id))
                    {
                        let _ = tx.send(msg);
                    }
                }
                // A request from the server (sampling, elicitation, roots):
                // not relayed yet, so answer it rather than leave it hanging.
                (Some(method), Some(id)) => {
                    let method = method.as_str().unwrap_or_default();
                    let reply = if method == "ping" {
                        json!({"jsonrpc": "2.0", "id": id, "result": {}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
                            "message": format!("{method} is not supported through this gateway")}})
                    };
                    let _ = reply_tx.send(reply.to_string()).await;
                }
                (Some(_), None) => {} // a notification
                (None, None) => {}
            }
        }
        // Fail whatever was waiting: the process is gone.
        reader_pending.lock().unwrap().clear();
    });
    let child = Arc::new(tokio::sync::Mutex::new(child));
    let exited = {
        let child = child.clone();
        tokio::spawn(async move {
            let _ = reader.await;
            let _ = child.lock().await.wait().await;
        })
    };
    Ok((
        Conn::Stdio {
            tx,
            pending,
            _child: child,
        },
        exited,
    ))
}

/// POST one JSON-RPC message to a Streamable HTTP server; returns the
/// session id it set and, when `want` is an id, the response to it (from a
/// JSON body or the SSE stream).
async fn http_post(
    backend: &WeightedBackend,
    path: &str,
    session: Option<&HeaderValue>,
    version: Option<&HeaderValue>,
    msg: &Value,
    want: Option<u64>,
) -> Result<(Option<HeaderValue>, Option<Value>), String> {
    let mut req = Request::post(path)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .body(crate::proxy::full(Bytes::from(msg.to_string())))
        .map_err(|e| e.to_string())?;
    if let Some(s) = session {
        req.headers_mut().insert("mcp-session-id", s.clone());
    }
    if let Some(v) = version {
        req.headers_mut().insert("mcp-protocol-version", v.clone());
    }
    req.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(&backend.target.to_string()).map_err(|e| e.to_string())?,
    );
    let resp = crate::backend::http::forward_to(backend, req, Some(CALL_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let session = resp.headers().get("mcp-session-id").cloned();
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let Some(want) = want else {
        return Ok((session, None));
    };
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let mut body = resp.into_body();
    if !is_sse {
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON: {e}"))?;
        return Ok((session, Some(v)));
    }
    // Read events until the response to our request.
    let mut decoder = crate::backend::sse::SseDecoder::default();
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        decoder.push(&data, &mut events);
        for ev in events.drain(..) {
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data)
                && v.get("id").and_then(Value::as_u64) == Some(want)
                && v.get("method").is_none()
            {
                // Read the stream to its end off the call's path, so the
                // connection goes back to the pool instead of being closed.
                tokio::spawn(async move {
                    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
                    let _ = tokio::time::timeout(CALL_TIMEOUT, drain).await;
                });
                return Ok((session, Some(v)));
            }
        }
    }
    Err("the stream ended before the response".into())
}
