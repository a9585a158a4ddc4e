//! Helpers to build hook actions.

use crate::{
    Denial, Header, HttpRequestAction, HttpResponseAction, LlmChunkAction, LlmRequestAction,
    LlmResponseAction, McpListAction, McpRequestAction, McpResponseAction,
};

/// Deny with `status` and `body`; converts into any hook's action.
///
/// For MCP hooks the body becomes the JSON-RPC error message.
pub fn deny<A: From<Denial>>(status: u16, body: impl Into<String>) -> A {
    Denial::new(status, body).into()
}

impl Denial {
    /// A denial with a status and a body (or JSON-RPC message).
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Denial {
            status,
            body: body.into(),
            headers: Vec::new(),
            jsonrpc_code: None,
        }
    }

    /// Add a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Set the JSON-RPC error code used on MCP routes.
    pub fn with_jsonrpc_code(mut self, code: i32) -> Self {
        self.jsonrpc_code = Some(code);
        self
    }
}

macro_rules! from_denial {
    ($($action:ty),*) => {$(
        impl From<Denial> for $action {
            fn from(d: Denial) -> Self {
                <$action>::Deny(d)
            }
        }
    )*};
}

from_denial!(
    HttpRequestAction,
    HttpResponseAction,
    LlmRequestAction,
    LlmResponseAction,
    LlmChunkAction,
    McpRequestAction,
    McpListAction,
    McpResponseAction
);
