//! The legacy HTTP+SSE transport (revision 2024-11-05), for clients that
//! predate Streamable HTTP: a GET on `…/sse` opens the stream, whose first
//! `endpoint` event names the URL to POST messages to; every answer then
//! travels on that stream, and each POST is only acknowledged (202).
//!
//! The stream lives on the replica that opened it, so the POSTs of a
//! legacy session must reach the same replica (the transport's nature).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use super::jsonrpc::{INVALID_REQUEST, Incoming, RpcError};
use super::{McpBackend, McpTrace, initialize_result, parse_message, start_answer};
use super::{forward_unrelated, relay_answer, rpc_failure, sse_response};
use crate::backend::http::Body;
use crate::backend::sse;
use crate::policy::ChainRun;

pub const LEGACY_VERSION: &str = "2024-11-05";

/// Open legacy streams by session id.
#[derive(Default)]
pub struct LegacyStreams(Mutex<HashMap<String, mpsc::Sender<Bytes>>>);

/// A GET path that opens a legacy stream (the Streamable HTTP GET carries
/// a session header instead).
pub fn is_legacy_get(path: &str) -> bool {
    path.ends_with("/sse")
}

/// The session a legacy POST names in its query.
pub fn session_param(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("sessionId="))
        .map(str::to_string)
}

pub fn open(mcp: Arc<McpBackend>, path: &str, trace: &mut McpTrace) -> Response<Body> {
    let sid = mcp.new_session(LEGACY_VERSION);
    trace.summary = Some(format!("mcp legacy SSE session={sid}"));
    let (tx, rx) = mpsc::channel(64);
    let endpoint = format!("event: endpoint\ndata: {path}?sessionId={sid}\n\n");
    let _ = tx.try_send(Bytes::from(endpoint));
    mcp.legacy.0.lock().unwrap().insert(sid.clone(), tx.clone());
    forward_unrelated(mcp.clone(), sid.clone(), tx.clone());
    tokio::spawn(async move {
        tx.closed().await;
        mcp.legacy.0.lock().unwrap().remove(&sid);
    });
    sse_response(rx)
}

pub async fn post(
    mcp: Arc<McpBackend>,
    sid: String,
    body: Bytes,
    run: ChainRun,
    trace: &mut McpTrace,
) -> Response<Body> {
    let stream = mcp.legacy.0.lock().unwrap().get(&sid).cloned();
    let Some(stream) = stream.filter(|_| mcp.session(&sid).is_some()) else {
        return rpc_failure(
            StatusCode::NOT_FOUND,
            Value::Null,
            RpcError::new(
                INVALID_REQUEST,
                "unknown session: no SSE stream is open for it here",
            ),
        );
    };
    let (msg, incoming) = match parse_message(&body) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    match incoming {
        Incoming::Request { id, method, params } if method == "initialize" => {
            trace.summary = Some(format!("mcp legacy initialize session={sid}"));
            let (_, result) = initialize_result(&mcp, &params).await;
            let reply = super::jsonrpc::result(&id, result);
            let _ = stream.send(sse::message_event(&reply.to_string())).await;
        }
        Incoming::Request { id, method, params } => {
            trace.summary = Some(format!("mcp legacy {method} session={sid}"));
            let (answer, from_targets) = start_answer(&mcp, run, &sid, id, method, params);
            tokio::spawn(relay_answer(mcp, sid, answer, from_targets, None, stream));
        }
        Incoming::Response { id } => mcp.answer_relayed(&sid, &id, msg).await,
        Incoming::Notification { method, params } => mcp.notified(&sid, &method, &params),
    }
    let mut r = Response::new(crate::proxy::full(Bytes::new()));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
