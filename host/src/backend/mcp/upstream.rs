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
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::jsonrpc::RpcError;
use crate::backend::credentials::Credential;
use crate::gateway::WeightedBackend;

/// Where a target's own messages (requests to the client such as sampling
/// or elicitation, progress, logging) go: the client call they belong to.
pub type Sink = mpsc::UnboundedSender<ServerMessage>;

/// A message a target sent on its own, and which target sent it.
#[derive(Clone, Debug)]
pub struct ServerMessage {
    pub target: Arc<str>,
    pub msg: Value,
}

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
    /// The legacy HTTP+SSE transport (revision 2024-11-05).
    Sse {
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
    relay: Arc<Relay>,
}

/// Sorts what a target says on its own to the clients it concerns.
///
/// Over Streamable HTTP the server answers a call on that call's stream,
/// so the call is known. Over stdio there is one pipe: a progress
/// notification names its call by token; other requests and logs go to the
/// newest call in flight (a server asks for sampling while it works on a
/// call); whatever concerns no call (list_changed, resource updates) goes
/// to every GET stream open on the route.
pub struct Relay {
    target: Arc<str>,
    calls: Mutex<Vec<InFlight>>,
    unrelated: broadcast::Sender<ServerMessage>,
}

struct InFlight {
    id: u64,
    progress: Option<Value>,
    sink: Sink,
}

impl Relay {
    /// Hand `msg` on; a request nobody can take comes back for an error answer.
    fn deliver(&self, mut msg: Value, via: Option<&Sink>) -> Result<(), Value> {
        let is_request = msg.get("id").is_some();
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        if method == "notifications/cancelled" {
            // The target gives up on a request it relayed to one client, under
            // its own id (the client saw a sealed one): nobody else may see it,
            // and the spec lets a receiver ignore it; a late answer is ignored
            // by the target.
            return Ok(());
        }
        let is_progress = method == "notifications/progress";
        let for_a_call = is_request || is_progress || method == "notifications/message";
        if for_a_call {
            let sink = match via {
                Some(via) => Some(via.clone()),
                None if is_progress => {
                    let calls = self.calls.lock().unwrap();
                    let call = msg
                        .pointer("/params/progressToken")
                        .and_then(Value::as_u64)
                        .and_then(|t| calls.iter().find(|c| c.id == t && c.progress.is_some()));
                    let Some(call) = call else {
                        // A call that ended, or a token we never gave out:
                        // no client may see another's progress.
                        return Ok(());
                    };
                    msg["params"]["progressToken"] = call.progress.clone().unwrap_or_default();
                    Some(call.sink.clone())
                }
                None => self.calls.lock().unwrap().last().map(|c| c.sink.clone()),
            };
            if let Some(sink) = sink {
                let out = ServerMessage {
                    target: self.target.clone(),
                    msg,
                };
                return match sink.send(out) {
                    Ok(()) => Ok(()),
                    Err(e) if is_request => Err(e.0.msg),
                    Err(_) => Ok(()),
                };
            }
        }
        if self.unrelated.receiver_count() == 0 {
            return if is_request { Err(msg) } else { Ok(()) };
        }
        let _ = self.unrelated.send(ServerMessage {
            target: self.target.clone(),
            msg,
        });
        Ok(())
    }
}

/// The error answer to a server request no client can take.
fn unanswerable(request: &Value) -> Value {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    json!({"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32603,
        "message": format!("{method}: no client is connected to answer it")}})
}

/// Unregisters a stdio call from the relay when it ends, however it ends.
struct CallGuard<'a> {
    relay: &'a Relay,
    id: u64,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.relay.calls.lock().unwrap().retain(|c| c.id != self.id);
    }
}

/// Tells the target to stop a call the gateway no longer waits for (the
/// client cancelled it or went away, or it timed out), as the spec asks of
/// a requester: `notifications/cancelled` with the id the target knows.
struct Abandon {
    target: Arc<Target>,
    conn: Arc<Conn>,
    id: u64,
    answered: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let msg = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.id, "reason": "the gateway no longer waits for this request"}});
        tracing::debug!(target = %self.target.name, id = self.id, "telling the target a call was cancelled");
        match &*self.conn {
            Conn::Piped { tx, pending, .. } => {
                pending.take(self.id);
                // A full pipe means a stalled target: it gets no cancellation.
                let _ = tx.try_send(msg.to_string());
            }
            Conn::Http { .. } => {
                let (target, conn) = (self.target.clone(), self.conn.clone());
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(e) = target.send(&conn, &msg).await {
                            tracing::debug!(target = %target.name, "cancellation not delivered: {e}");
                        }
                    });
                }
            }
        }
    }
}

/// A live session with the target.
enum Conn {
    /// One ordered channel each way: a process's stdin/stdout, or a legacy
    /// SSE stream (server to gateway) with POSTs (gateway to server).
    Piped {
        tx: mpsc::Sender<String>,
        pending: Pending,
        _child: Option<Arc<tokio::sync::Mutex<tokio::process::Child>>>,
    },
    Http {
        session: Option<HeaderValue>,
        version: HeaderValue,
    },
}

impl Target {
    pub fn new(name: String, reach: Reach) -> Arc<Target> {
        let relay = Arc::new(Relay {
            target: name.as_str().into(),
            calls: Mutex::new(Vec::new()),
            unrelated: broadcast::channel(256).0,
        });
        Arc::new(Target {
            name,
            reach,
            health: watch::channel(Health::Starting).0,
            conn: tokio::sync::Mutex::new(None),
            started: std::sync::Once::new(),
            next_id: AtomicU64::new(1),
            relay,
        })
    }

    /// The same server reached with `credential` on every request, in a
    /// session of its own; `None` for a process, which has no requests
    /// to carry it.
    pub fn with_credential(&self, credential: &Arc<Credential>) -> Option<Arc<Target>> {
        let reach = match &self.reach {
            Reach::Stdio { .. } => return None,
            Reach::Http { backend, path } => Reach::Http {
                backend: backend.clone().authenticated(Some(credential)),
                path: path.clone(),
            },
            Reach::Sse { backend, path } => Reach::Sse {
                backend: backend.clone().authenticated(Some(credential)),
                path: path.clone(),
            },
        };
        Some(Target::new(self.name.clone(), reach))
    }

    /// Messages of this target that concern no call in particular.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerMessage> {
        self.relay.unrelated.subscribe()
    }

    /// Pass a client's answer to one of this target's requests back to it.
    pub async fn respond(&self, reply: Value) -> Result<(), String> {
        let conn = self
            .conn
            .lock()
            .await
            .clone()
            .ok_or_else(|| format!("target {} is not connected", self.name))?;
        self.send(&conn, &reply).await
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
    /// `sink` receives what the target sends on its own about this call.
    pub async fn call(
        self: &Arc<Self>,
        method: &str,
        mut params: Value,
        sink: Option<&Sink>,
    ) -> Result<Value, RpcError> {
        let conn =
            self.conn.lock().await.clone().ok_or_else(|| {
                RpcError::internal(format!("target {} is not connected", self.name))
            })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _registered = match (&*conn, sink) {
            (Conn::Piped { .. }, Some(sink)) => {
                // Every client's calls share this pipe, and clients pick
                // tokens alike (0, 1, ...): the target gets the call's own
                // id as its token, and the client's comes back on relay.
                let progress = params
                    .pointer_mut("/_meta/progressToken")
                    .map(|token| std::mem::replace(token, Value::from(id)));
                self.relay.calls.lock().unwrap().push(InFlight {
                    id,
                    progress,
                    sink: sink.clone(),
                });
                Some(CallGuard {
                    relay: &self.relay,
                    id,
                })
            }
            _ => None,
        };
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut abandon = Abandon {
            target: self.clone(),
            conn: conn.clone(),
            id,
            answered: false,
        };
        let mut outcome =
            tokio::time::timeout(CALL_TIMEOUT, self.exchange(&conn, id, &msg, sink)).await;
        if let Ok(Err(e)) = &outcome
            && matches!(&*conn, Conn::Http { .. })
            && e.message.starts_with("404")
        {
            // The server forgot our session (restarted, expired): open a
            // new one and try once more.
            tracing::info!(target = %self.name, "MCP target lost the session; initializing again");
            let (fresh, info, _) = self.connect().await.map_err(RpcError::internal)?;
            *self.conn.lock().await = Some(fresh.clone());
            self.health.send_replace(Health::Ready(info));
            abandon.conn = fresh.clone();
            outcome =
                tokio::time::timeout(CALL_TIMEOUT, self.exchange(&fresh, id, &msg, sink)).await;
        }
        // A target that timed out is told to stop, as one the client left.
        abandon.answered = outcome.is_ok();
        let reply = match outcome {
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

    async fn exchange(
        &self,
        conn: &Conn,
        id: u64,
        msg: &Value,
        sink: Option<&Sink>,
    ) -> Result<Value, RpcError> {
        match conn {
            Conn::Piped { tx, pending, .. } => {
                let down = || RpcError::internal(format!("target {} is down", self.name));
                let reply_rx = pending.wait_for(id).ok_or_else(down)?;
                if tx.send(msg.to_string()).await.is_err() {
                    pending.take(id);
                    return Err(down());
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
                    msg,
                    Some((id, &self.relay, sink)),
                )
                .await
                .map_err(RpcError::internal)?;
                reply.ok_or_else(|| RpcError::internal("no response".into()))
            }
        }
    }

    /// Send a message that gets no answer (a notification, or a response).
    async fn send(&self, conn: &Conn, msg: &Value) -> Result<(), String> {
        match conn {
            Conn::Piped { tx, .. } => tx
                .send(msg.to_string())
                .await
                .map_err(|_| format!("target {} is down", self.name)),
            Conn::Http { session, version } => {
                let Reach::Http { backend, path } = &self.reach else {
                    unreachable!("http conn on an http target")
                };
                http_post(backend, path, session.as_ref(), Some(version), msg, None)
                    .await
                    .map(drop)
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
                // What the gateway relays to its clients (they answer).
                "capabilities": {"sampling": {}, "elicitation": {}},
                "clientInfo": {"name": "wardgate", "version": env!("CARGO_PKG_VERSION")},
            }})
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Piped targets (a process, a legacy SSE stream) answer on their
        // own channel; Streamable HTTP ones in the POST's response.
        let piped = match &self.reach {
            Reach::Stdio { cmd, args, env } => {
                Some(spawn_stdio(&self.name, cmd, args, env, self.relay.clone())?)
            }
            Reach::Sse { backend, path } => {
                Some(open_sse(&self.name, backend, path, self.relay.clone()).await?)
            }
            Reach::Http { .. } => None,
        };
        let (conn, reply, watcher) = match (piped, &self.reach) {
            (Some((conn, exited)), _) => {
                let conn = Arc::new(conn);
                let reply =
                    tokio::time::timeout(CALL_TIMEOUT, self.exchange(&conn, id, &init(id), None))
                        .await
                        .map_err(|_| "no answer to initialize".to_string())?
                        .map_err(|e| e.message)?;
                (conn, reply, Some(exited))
            }
            (None, Reach::Http { backend, path }) => {
                let (session, reply) = http_post(
                    backend,
                    path,
                    None,
                    None,
                    &init(id),
                    Some((id, &self.relay, None)),
                )
                .await?;
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
            (None, _) => unreachable!("every target but Streamable HTTP is piped"),
        };
        if let Some(err) = reply.get("error") {
            return Err(format!("initialize failed: {err}"));
        }
        let result = reply.get("result").cloned().unwrap_or(Value::Null);
        let _ = self
            .send(
                &conn,
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
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

impl Drop for Target {
    /// A Streamable HTTP server keeps a session until it times out; end it
    /// when the gateway is done with it (a reload, an idle caller's sessions).
    fn drop(&mut self) {
        let (Some(conn), Reach::Http { backend, path }) = (self.conn.get_mut().take(), &self.reach)
        else {
            return;
        };
        let Conn::Http {
            session: Some(session),
            ..
        } = &*conn
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut req = Request::delete(path.as_str())
            .body(crate::proxy::full(Bytes::new()))
            .expect("valid request");
        req.headers_mut().insert("mcp-session-id", session.clone());
        if let Ok(host) = HeaderValue::from_str(&backend.target.to_string()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let backend = backend.clone();
        runtime.spawn(async move {
            let _ =
                crate::backend::http::forward_to(&backend, req, Some(Duration::from_secs(5))).await;
        });
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
                let Some(mut exited) = watcher else {
                    tokio::spawn(listen(weak));
                    return;
                };
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

/// A Streamable HTTP server sends what concerns no call on a GET stream;
/// keep one open while the target lives (a server without one answers 405).
async fn listen(weak: Weak<Target>) {
    loop {
        let Some(target) = weak.upgrade() else { return };
        let Some(conn) = target.conn.lock().await.clone() else {
            return;
        };
        let (Conn::Http { session, version }, Reach::Http { backend, path }) =
            (&*conn, &target.reach)
        else {
            return;
        };
        let mut req = Request::get(path.as_str())
            .header(ACCEPT, "text/event-stream")
            .header("mcp-protocol-version", version.clone())
            .body(crate::proxy::full(Bytes::new()))
            .expect("valid request");
        if let Some(s) = session {
            req.headers_mut().insert("mcp-session-id", s.clone());
        }
        if let Ok(host) = HeaderValue::from_str(&backend.target.to_string()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let resp = match crate::backend::http::forward_to(backend, req, None).await {
            Ok(r) if r.status().is_success() => r,
            _ => return,
        };
        let relay = target.relay.clone();
        let mut gone = target.health.subscribe();
        drop(target);
        let mut body = resp.into_body();
        let mut decoder = crate::backend::sse::SseDecoder::default();
        let mut events = Vec::new();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = async { while gone.changed().await.is_ok() {} } => return,
            };
            let Some(Ok(frame)) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data, &mut events);
            for ev in events.drain(..) {
                let Ok(msg) = serde_json::from_str::<Value>(&ev.data) else {
                    continue;
                };
                if let Err(request) = relay.deliver(msg, None)
                    && let Some(target) = weak.upgrade()
                {
                    let _ = target.respond(unanswerable(&request)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn spawn_stdio(
    name: &str,
    cmd: &str,
    args: &[String],
    env: &[(String, String)],
    relay: Arc<Relay>,
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
    let pending = Pending::default();
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
            on_message(msg, &reader_pending, &relay, &reply_tx).await;
        }
        // Fail whatever was waiting: the process is gone.
        reader_pending.close();
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
        Conn::Piped {
            tx,
            pending,
            _child: Some(child),
        },
        exited,
    ))
}

/// Calls waiting for their answer on a piped channel. Closed when the
/// channel's reader ends: a call registered after that (it took the
/// connection just before the process died) fails at once instead of
/// waiting for an answer that cannot come.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<PendingCalls>>);

#[derive(Default)]
struct PendingCalls {
    waiting: HashMap<u64, oneshot::Sender<Value>>,
    closed: bool,
}

impl Pending {
    /// Where call `id`'s answer will arrive; `None` once the channel is gone.
    fn wait_for(&self, id: u64) -> Option<oneshot::Receiver<Value>> {
        let mut calls = self.0.lock().unwrap();
        if calls.closed {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        calls.waiting.insert(id, tx);
        Some(rx)
    }

    /// Stop waiting for `id`; its sender, if the answer has not come.
    fn take(&self, id: u64) -> Option<oneshot::Sender<Value>> {
        self.0.lock().unwrap().waiting.remove(&id)
    }

    /// The channel is gone: fail every waiting call, and any later one.
    fn close(&self) {
        let mut calls = self.0.lock().unwrap();
        calls.closed = true;
        calls.waiting.clear();
    }
}

/// A message from a piped target: the answer to one of our calls, or the
/// server's own (answered here if it is a ping, else relayed to clients).
async fn on_message(msg: Value, pending: &Pending, relay: &Relay, reply: &mpsc::Sender<String>) {
    let id = msg.get("id").cloned();
    match (msg.get("method"), id) {
        (None, Some(id)) => {
            if let Some(tx) = id.as_u64().and_then(|id| pending.take(id)) {
                let _ = tx.send(msg);
            }
        }
        (Some(method), Some(id)) if method == "ping" => {
            let pong = json!({"jsonrpc": "2.0", "id": id, "result": {}});
            let _ = reply.send(pong.to_string()).await;
        }
        (Some(_), _) => {
            if let Err(request) = relay.deliver(msg, None) {
                let _ = reply.send(unanswerable(&request).to_string()).await;
            }
        }
        (None, None) => {}
    }
}

/// Open a legacy HTTP+SSE session: GET the stream, learn the POST endpoint
/// from its first `endpoint` event, then relay as over stdio.
async fn open_sse(
    name: &str,
    backend: &WeightedBackend,
    path: &str,
    relay: Arc<Relay>,
) -> Result<(Conn, tokio::task::JoinHandle<()>), String> {
    let mut req = Request::get(path)
        .header(ACCEPT, "text/event-stream")
        .body(crate::proxy::full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        http::header::HOST,
        HeaderValue::from_str(&backend.target.to_string()).map_err(|e| e.to_string())?,
    );
    let resp = crate::backend::http::forward_to(backend, req, None)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("GET {path}: {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut decoder = crate::backend::sse::SseDecoder::default();
    let mut events = Vec::new();
    let endpoint = loop {
        let frame = tokio::time::timeout(CALL_TIMEOUT, body.frame())
            .await
            .map_err(|_| "no endpoint event".to_string())?
            .ok_or("the stream ended before its endpoint event")?
            .map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            decoder.push(&data, &mut events);
        }
        if let Some(i) = events
            .iter()
            .position(|e| e.event.as_deref() == Some("endpoint"))
        {
            let ev = events.remove(i);
            break ev.data.trim().to_string();
        }
    };
    // The endpoint is a path (maybe with the session in its query) or a URL.
    let post_path = match endpoint.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() => u
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        _ if endpoint.starts_with('/') => endpoint,
        _ => format!(
            "{}/{endpoint}",
            path.rsplit_once('/').map(|(b, _)| b).unwrap_or("")
        ),
    };
    let (tx, mut rx) = mpsc::channel::<String>(64);
    let pending = Pending::default();
    let writer_backend = backend.clone();
    let target = name.to_string();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Err(e) = http_post(&writer_backend, &post_path, None, None, &msg, None).await {
                tracing::warn!(mcp_target = %target, "POST to the SSE endpoint failed: {e}");
            }
        }
    });
    let reader_pending = pending.clone();
    let reply_tx = tx.clone();
    let reader = tokio::spawn(async move {
        let handle = |events: &mut Vec<crate::backend::sse::SseEvent>| {
            events
                .drain(..)
                .filter(|e| e.event.as_deref().is_none_or(|t| t == "message"))
                .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
                .collect::<Vec<_>>()
        };
        let mut backlog = handle(&mut events);
        loop {
            for msg in backlog.drain(..) {
                on_message(msg, &reader_pending, &relay, &reply_tx).await;
            }
            let Some(Ok(frame)) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.into_data() {
                decoder.push(&data, &mut events);
                backlog = handle(&mut events);
            }
        }
        reader_pending.close();
    });
    Ok((
        Conn::Piped {
            tx,
            pending,
            _child: None,
        },
        reader,
    ))
}

/// POST one JSON-RPC message to a Streamable HTTP server; returns the
/// session id it set and, when `want` names a request id, the response to
/// it (from a JSON body or the SSE stream; the server's own messages on
/// that stream go to the relay, for the call's sink).
async fn http_post(
    backend: &WeightedBackend,
    path: &str,
    session: Option<&HeaderValue>,
    version: Option<&HeaderValue>,
    msg: &Value,
    want: Option<(u64, &Arc<Relay>, Option<&Sink>)>,
) -> Result<(Option<HeaderValue>, Option<Value>), String> {
    let mut req = Request::post(path)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .body(crate::proxy::full(Bytes::from(msg.to_string())))
        .map_err(|e| e.to_string())?;
    let session_in = session;
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
    let Some((want, relay, sink)) = want else {
        if !status.is_success() {
            return Err(format!("{status}"));
        }
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
    let session_for_reply = session.clone().or_else(|| session_in.cloned());
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
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue; // e.g. a priming event with empty data
            };
            if v.get("method").is_some() {
                if let Err(request) = relay.deliver(v, sink) {
                    let reply = unanswerable(&request);
                    let answer = http_post(
                        backend,
                        path,
                        session_for_reply.as_ref(),
                        version,
                        &reply,
                        None,
                    );
                    let _ = Box::pin(answer).await;
                }
                continue;
            }
            if v.get("id").and_then(Value::as_u64) == Some(want) {
                // The rest of the stream is read off the call's path.
                tokio::spawn(crate::backend::http::finish_reading(body, CALL_TIMEOUT));
                return Ok((session, Some(v)));
            }
        }
    }
    Err("the stream ended before the response".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_registered_after_its_channel_closed_fails_at_once() {
        let pending = Pending::default();
        let early = pending.wait_for(1).expect("open channel");
        // The process died: its reader closes the calls it was answering...
        pending.close();
        assert!(early.await.is_err(), "a waiting call is failed");
        // ...and one that took the connection a moment too late gets no
        // place to wait (it used to wait out the 60 s call timeout).
        assert!(pending.wait_for(2).is_none());
    }

    fn relay_with(
        calls: &[(u64, Option<Value>)],
    ) -> (Relay, Vec<mpsc::UnboundedReceiver<ServerMessage>>) {
        let mut sinks = Vec::new();
        let mut in_flight = Vec::new();
        for (id, progress) in calls {
            let (tx, rx) = mpsc::unbounded_channel();
            sinks.push(rx);
            in_flight.push(InFlight {
                id: *id,
                progress: progress.clone(),
                sink: tx,
            });
        }
        let relay = Relay {
            target: "t".into(),
            calls: Mutex::new(in_flight),
            unrelated: broadcast::channel(4).0,
        };
        (relay, sinks)
    }

    fn progress(token: Value) -> Value {
        json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": token, "progress": 1}})
    }

    #[test]
    fn progress_on_a_shared_pipe_reaches_the_client_whose_call_it_is() {
        // Two clients, both with token 1, calls 7 and 8 upstream.
        let (relay, mut sinks) = relay_with(&[(7, Some(json!(1))), (8, Some(json!(1)))]);
        relay.deliver(progress(json!(7)), None).unwrap();
        let got = sinks[0].try_recv().expect("the first client's progress");
        assert_eq!(got.msg["params"]["progressToken"], 1);
        assert!(sinks[1].try_recv().is_err(), "the other client saw it");

        // Progress of a call that ended (or never was) reaches nobody.
        let mut everyone = relay.unrelated.subscribe();
        relay.deliver(progress(json!(9)), None).unwrap();
        relay.deliver(progress(json!("1")), None).unwrap();
        assert!(sinks.iter_mut().all(|s| s.try_recv().is_err()));
        assert!(everyone.try_recv().is_err());

        // A target's cancellation of its own request reaches no session.
        let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3}});
        relay.deliver(cancelled, None).unwrap();
        assert!(sinks.iter_mut().all(|s| s.try_recv().is_err()));
        assert!(everyone.try_recv().is_err());
    }
}
