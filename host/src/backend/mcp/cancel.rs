//! Client cancellation: `notifications/cancelled` names one of the
//! session's requests in flight; the gateway stops waiting for it, which
//! drops the upstream call, and the target hears `notifications/cancelled`
//! under the id the gateway used (see `upstream::Target::call`).
//!
//! Calls are in flight on the replica that took their POST, so a
//! cancellation that reaches another replica finds nothing and is ignored
//! (the spec lets a receiver ignore cancellations it cannot act on).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::oneshot;

use super::jsonrpc::RpcError;

/// The error a cancelled call answers with, should the client still read
/// its POST's response (JSON-RPC leaves the code to the application; this
/// is the one LSP uses for the same event).
pub const REQUEST_CANCELLED: i64 = -32800;

pub fn cancelled_error() -> RpcError {
    RpcError::new(REQUEST_CANCELLED, "Request cancelled")
}

/// (session, request id as JSON text).
type Key = (String, String);

/// Requests in flight by (session, request id), each with a serial (see
/// [`Registration`]) and the sender that cancels it.
#[derive(Default)]
pub struct Cancellable {
    calls: Mutex<HashMap<Key, (u64, oneshot::Sender<String>)>>,
    serial: AtomicU64,
}

/// One registered request; unregisters when the request ends, however.
pub struct Registration<'a> {
    table: &'a Cancellable,
    key: Key,
    serial: u64,
    /// Resolves with the client's reason when it cancels the request.
    pub cancelled: oneshot::Receiver<String>,
}

impl Cancellable {
    pub fn register(&self, session: &str, id: &Value) -> Registration<'_> {
        let (tx, rx) = oneshot::channel();
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let key = (session.to_string(), id.to_string());
        // A client that reuses an id in flight cancels the newer request only.
        self.calls.lock().unwrap().insert(key.clone(), (serial, tx));
        Registration {
            table: self,
            key,
            serial,
            cancelled: rx,
        }
    }

    /// Act on a client's `notifications/cancelled`; whether it named a
    /// request in flight here.
    pub fn cancel(&self, session: &str, params: &Value) -> bool {
        let Some(id) = params.get("requestId") else {
            return false;
        };
        let reason = params
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("cancelled by the client")
            .to_string();
        let key = (session.to_string(), id.to_string());
        match self.calls.lock().unwrap().remove(&key) {
            Some((_, tx)) => tx.send(reason).is_ok(),
            None => false,
        }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut calls = self.table.calls.lock().unwrap();
        if calls.get(&self.key).is_some_and(|(s, _)| *s == self.serial) {
            calls.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cancellation_reaches_only_its_sessions_request() {
        let table = Cancellable::default();
        let mut a = table.register("s1", &json!(7));
        let mut b = table.register("s2", &json!(7));
        assert!(!table.cancel("s1", &json!({"requestId": 8})));
        assert!(!table.cancel("s3", &json!({"requestId": 7})));
        assert!(table.cancel("s1", &json!({"requestId": 7, "reason": "user stop"})));
        assert_eq!(a.cancelled.try_recv().unwrap(), "user stop");
        assert!(b.cancelled.try_recv().is_err());
        // String and number ids are different ids.
        assert!(!table.cancel("s2", &json!({"requestId": "7"})));
        drop(b);
        assert!(
            !table.cancel("s2", &json!({"requestId": 7})),
            "unregistered"
        );
    }

    #[test]
    fn an_ended_request_does_not_unregister_a_newer_one_with_its_id() {
        let table = Cancellable::default();
        let old = table.register("s", &json!(1));
        let _new = table.register("s", &json!(1));
        drop(old);
        assert!(table.cancel("s", &json!({"requestId": 1})));
    }
}
