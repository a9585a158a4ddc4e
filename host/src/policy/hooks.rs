//! The eight hooks of the contract as one trait, so a single chain runner
//! serves them all: how to call each, and how to apply its "modify".

use wasmtime::Store;

use super::bindings::*;
use super::capabilities::StoreState;

/// What a hook asked for, with the hook's own edit type.
#[derive(Debug)]
pub enum Action<E> {
    Continue,
    Deny(Denial),
    Modify(E),
}

pub trait Hook {
    /// The flag a plugin sets in `describe` to receive this hook.
    const FLAG: Hooks;
    const NAME: &'static str;
    type Input;
    type Edit;

    fn call(
        plugin: &Plugin,
        store: &mut Store<StoreState>,
        ctx: &RequestContext,
        input: &Self::Input,
    ) -> wasmtime::Result<Action<Self::Edit>>;

    fn apply(input: &mut Self::Input, edit: Self::Edit);
}

macro_rules! hook {
    ($hook:ident, $flag:ident, $name:literal, $call:ident, $input:ty, $action:ident, $edit:ty, $apply:expr) => {
        pub struct $hook;

        impl Hook for $hook {
            const FLAG: Hooks = Hooks::$flag;
            const NAME: &'static str = $name;
            type Input = $input;
            type Edit = $edit;

            fn call(
                plugin: &Plugin,
                store: &mut Store<StoreState>,
                ctx: &RequestContext,
                input: &$input,
            ) -> wasmtime::Result<Action<$edit>> {
                Ok(
                    match plugin.wardgate_policy_hooks().$call(store, ctx, input)? {
                        $action::Continue => Action::Continue,
                        $action::Deny(d) => Action::Deny(d),
                        $action::Modify(e) => Action::Modify(e),
                    },
                )
            }

            fn apply(input: &mut $input, edit: $edit) {
                let apply: fn(&mut $input, $edit) = $apply;
                apply(input, edit)
            }
        }
    };
}

fn edit_headers(headers: &mut Vec<Header>, set: Vec<Header>, remove: Vec<String>) {
    headers.retain(|h| {
        !remove.iter().any(|r| r.eq_ignore_ascii_case(&h.name))
            && !set.iter().any(|s| s.name.eq_ignore_ascii_case(&h.name))
    });
    headers.extend(set);
}

hook!(
    OnHttpRequest,
    HTTP_REQUEST,
    "http-request",
    call_on_http_request,
    HttpRequest,
    HttpRequestAction,
    HttpRequestEdit,
    |req, e| {
        edit_headers(&mut req.headers, e.set_headers, e.remove_headers);
        if let Some(p) = e.path {
            req.path = p;
        }
        if let Some(b) = e.body {
            req.body = Some(b);
        }
    }
);

hook!(
    OnHttpResponse,
    HTTP_RESPONSE,
    "http-response",
    call_on_http_response,
    HttpResponse,
    HttpResponseAction,
    HttpResponseEdit,
    |resp, e| {
        edit_headers(&mut resp.headers, e.set_headers, e.remove_headers);
        if let Some(s) = e.status {
            resp.status = s;
        }
        if let Some(b) = e.body {
            resp.body = Some(b);
        }
    }
);

hook!(
    OnLlmRequest,
    LLM_REQUEST,
    "llm-request",
    call_on_llm_request,
    LlmRequest,
    LlmRequestAction,
    LlmRequestEdit,
    |req, e| {
        if let Some(m) = e.model {
            req.model = m;
        }
        if let Some(m) = e.messages {
            req.messages = m;
        }
    }
);

hook!(
    OnLlmResponse,
    LLM_RESPONSE,
    "llm-response",
    call_on_llm_response,
    LlmResponse,
    LlmResponseAction,
    LlmResponseEdit,
    |resp, e| {
        if let Some(t) = e.text {
            resp.text = t;
        }
        if let Some(c) = e.tool_calls {
            resp.tool_calls = c;
        }
    }
);

hook!(
    OnLlmChunk,
    LLM_CHUNK,
    "llm-chunk",
    call_on_llm_chunk,
    LlmChunk,
    LlmChunkAction,
    String,
    |chunk, text| chunk.text = text
);

hook!(
    OnMcpRequest,
    MCP_REQUEST,
    "mcp-request",
    call_on_mcp_request,
    McpRequest,
    McpRequestAction,
    String,
    |req, args| req.arguments = Some(args)
);

hook!(
    OnMcpList,
    MCP_LIST,
    "mcp-list",
    call_on_mcp_list,
    McpList,
    McpListAction,
    Vec<McpItem>,
    |list, items| list.items = items
);

hook!(
    OnMcpResponse,
    MCP_RESPONSE,
    "mcp-response",
    call_on_mcp_response,
    McpResponse,
    McpResponseAction,
    String,
    |resp, result| resp.result = result
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_edits_replace_and_remove_case_insensitively() {
        let h = |n: &str, v: &str| Header {
            name: n.into(),
            value: v.into(),
        };
        let mut req = HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: vec![
                h("Authorization", "secret"),
                h("X-Keep", "1"),
                h("x-set", "old"),
                h("X-Set", "old2"),
            ],
            body: None,
        };
        OnHttpRequest::apply(
            &mut req,
            HttpRequestEdit {
                set_headers: vec![h("X-Set", "new")],
                remove_headers: vec!["authorization".into()],
                path: Some("/v2".into()),
                body: None,
            },
        );
        assert_eq!(req.headers, vec![h("X-Keep", "1"), h("X-Set", "new")]);
        assert_eq!(req.path, "/v2");
    }
}
