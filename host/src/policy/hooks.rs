//! The eight hooks of the contract as one trait, so a single chain runner
//! serves them all: how to call each, and how to apply its "modify".
//!
//! Hooks are called through export indices resolved and type-checked once at
//! load, not through the generated `Plugin` struct, whose constructor
//! type-checks all ten exports on every instantiation.

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Func, Instance, TypedFunc};

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
    /// Position in [`ALL_EXPORTS`].
    const INDEX: usize;
    const NAME: &'static str;
    type Input;
    type Edit;

    /// Call the hook's export.
    ///
    /// # Safety
    /// `func` must be this hook's export of an instance whose component was
    /// checked with [`Hook::typecheck`].
    unsafe fn call(
        func: Func,
        store: &mut Store<StoreState>,
        ctx: &RequestContext,
        input: &Self::Input,
    ) -> wasmtime::Result<Action<Self::Edit>>;

    /// Check once, at load, that the export has this hook's signature.
    fn typecheck(
        instance: &Instance,
        store: &mut Store<StoreState>,
        index: &ComponentExportIndex,
    ) -> wasmtime::Result<()>;

    fn apply(input: &mut Self::Input, edit: Self::Edit);
}

/// The exported function names of the hooks, in `Hook::INDEX` order.
pub const ALL_EXPORTS: [&str; 8] = [
    "on-http-request",
    "on-http-response",
    "on-llm-request",
    "on-llm-response",
    "on-llm-chunk",
    "on-mcp-request",
    "on-mcp-list",
    "on-mcp-response",
];

/// The hooks that see the answer: a plugin with none of them is done with
/// a request once the request's own hooks have run.
pub fn answer_hooks() -> Hooks {
    Hooks::HTTP_RESPONSE
        | Hooks::LLM_RESPONSE
        | Hooks::LLM_CHUNK
        | Hooks::MCP_RESPONSE
        | Hooks::MCP_LIST
}

macro_rules! hook {
    ($hook:ident, $flag:ident, $index:literal, $input:ty, $action:ident, $edit:ty, $apply:expr) => {
        pub struct $hook;

        impl Hook for $hook {
            const FLAG: Hooks = Hooks::$flag;
            const INDEX: usize = $index;
            const NAME: &'static str = ALL_EXPORTS[$index];
            type Input = $input;
            type Edit = $edit;

            unsafe fn call(
                func: Func,
                store: &mut Store<StoreState>,
                ctx: &RequestContext,
                input: &$input,
            ) -> wasmtime::Result<Action<$edit>> {
                // SAFETY: the caller guarantees `func` was type-checked at load
                // against exactly these parameter and result types. Checking
                // again per request would walk every record type each time.
                let typed = unsafe {
                    TypedFunc::<(&RequestContext, &$input), ($action,)>::new_unchecked(func)
                };
                Ok(match typed.call(store, (ctx, input))?.0 {
                    $action::Continue => Action::Continue,
                    $action::Deny(d) => Action::Deny(d),
                    $action::Modify(e) => Action::Modify(e),
                })
            }

            fn typecheck(
                instance: &Instance,
                store: &mut Store<StoreState>,
                index: &ComponentExportIndex,
            ) -> wasmtime::Result<()> {
                instance
                    .get_typed_func::<(&RequestContext, &$input), ($action,)>(store, index)
                    .map(drop)
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
    0,
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
    1,
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
    2,
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
    3,
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
    4,
    LlmChunk,
    LlmChunkAction,
    String,
    |chunk, text| chunk.text = text
);

hook!(
    OnMcpRequest,
    MCP_REQUEST,
    5,
    McpRequest,
    McpRequestAction,
    String,
    |req, args| req.arguments = Some(args)
);

hook!(
    OnMcpList,
    MCP_LIST,
    6,
    McpList,
    McpListAction,
    Vec<McpItem>,
    |list, items| list.items = items
);

hook!(
    OnMcpResponse,
    MCP_RESPONSE,
    7,
    McpResponse,
    McpResponseAction,
    String,
    |resp, result| resp.result = result
);

/// Resolve and type-check the exports of the hooks in `declared`.
pub(crate) fn resolve_exports(
    declared: Hooks,
    instance: &Instance,
    store: &mut Store<StoreState>,
) -> Result<[Option<ComponentExportIndex>; ALL_EXPORTS.len()], String> {
    type Check =
        fn(&Instance, &mut Store<StoreState>, &ComponentExportIndex) -> wasmtime::Result<()>;
    const CHECKS: [(Hooks, Check); ALL_EXPORTS.len()] = [
        (OnHttpRequest::FLAG, OnHttpRequest::typecheck),
        (OnHttpResponse::FLAG, OnHttpResponse::typecheck),
        (OnLlmRequest::FLAG, OnLlmRequest::typecheck),
        (OnLlmResponse::FLAG, OnLlmResponse::typecheck),
        (OnLlmChunk::FLAG, OnLlmChunk::typecheck),
        (OnMcpRequest::FLAG, OnMcpRequest::typecheck),
        (OnMcpList::FLAG, OnMcpList::typecheck),
        (OnMcpResponse::FLAG, OnMcpResponse::typecheck),
    ];
    let interface = instance
        .get_export_index(&mut *store, None, HOOKS_EXPORT)
        .ok_or_else(|| format!("no {HOOKS_EXPORT} export"))?;
    let mut exports = [const { None }; ALL_EXPORTS.len()];
    for (i, (flag, check)) in CHECKS.iter().enumerate() {
        if !declared.contains(*flag) {
            continue;
        }
        let name = ALL_EXPORTS[i];
        let index = instance
            .get_export_index(&mut *store, Some(&interface), name)
            .ok_or_else(|| format!("declares the {name} hook but does not export it"))?;
        check(instance, store, &index).map_err(|e| format!("{name}: {e:#}"))?;
        exports[i] = Some(index);
    }
    Ok(exports)
}

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
        let pairs: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(pairs, [("X-Keep", "1"), ("X-Set", "new")]);
        assert_eq!(req.path, "/v2");
    }
}
