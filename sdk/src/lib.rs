//! Write Wardgate policy plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`]: it is built from its typed,
//! serde-deserialized config once per route, declares the [`Hooks`] it
//! implements, and answers each hook with an action (continue, deny, modify).
//! [`export_plugin!`] turns it into a WebAssembly component for the
//! `wardgate:policy` world.
//!
//! ```ignore
//! use wardgate_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Config { word: String }
//!
//! struct NoWord(String);
//!
//! impl Plugin for NoWord {
//!     type Config = Config;
//!     const HOOKS: Hooks = Hooks::LLM_REQUEST;
//!     fn configure(c: Config) -> Result<Self, ConfigError> { Ok(NoWord(c.word)) }
//!     fn on_llm_request(&self, _: &RequestContext, r: LlmRequest) -> LlmRequestAction {
//!         if r.texts().any(|t| t.contains(&self.0)) { deny(403, "no") } else { LlmRequestAction::Continue }
//!     }
//! }
//! export_plugin!(NoWord);
//! ```
//!
//! The host capabilities (logging, clock, counters, metrics) and what the
//! route is ([`host::route`]) are in [`host`].
//! Off wasm32 they fall back to local implementations, so a plugin's logic can
//! be unit-tested natively with `cargo test`.
#![deny(missing_docs)]

// The generated bindings name this crate by path, also from inside it.
extern crate self as wardgate_sdk;

mod decisions;
pub mod host;
mod messages;
pub mod stream;
pub mod testing;
pub mod text;

#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_hooks",
        default_bindings_module: "::wardgate_sdk::wit",
        runtime_path: "::wardgate_sdk::__private::rt",
        bitflags_path: "::wardgate_sdk::__private::bitflags",
    });
}

pub use decisions::deny;
pub use wit::wardgate::policy::types::{
    ChatMessage, ConfigError, ContentPart, Denial, Header, Hooks, HttpRequest, HttpRequestAction,
    HttpRequestEdit, HttpResponse, HttpResponseAction, HttpResponseEdit, LlmChunk, LlmChunkAction,
    LlmRequest, LlmRequestAction, LlmRequestEdit, LlmResponse, LlmResponseAction, LlmResponseEdit,
    McpItem, McpList, McpListAction, McpListKind, McpRequest, McpRequestAction, McpResponse,
    McpResponseAction, PluginInfo, RequestContext, Role, TokenUsage, ToolCall, ToolDefinition,
};

/// Everything a plugin usually needs, in one import.
pub mod prelude {
    pub use crate::host::{clock, counters, log, metrics, route};
    pub use crate::{
        ChatMessage, ConfigError, ContentPart, Denial, Header, Hooks, HttpRequest,
        HttpRequestAction, HttpRequestEdit, HttpResponse, HttpResponseAction, HttpResponseEdit,
        LlmChunk, LlmChunkAction, LlmRequest, LlmRequestAction, LlmRequestEdit, LlmResponse,
        LlmResponseAction, LlmResponseEdit, McpItem, McpList, McpListAction, McpListKind,
        McpRequest, McpRequestAction, McpResponse, McpResponseAction, Plugin, RequestContext, Role,
        TokenUsage, ToolCall, ToolDefinition, deny, export_plugin,
    };
    pub use serde::Deserialize;
}

/// A policy plugin.
///
/// Only `Config`, `HOOKS` and `configure` are required; every hook defaults to
/// "continue". The host calls exactly the hooks named in `HOOKS`.
///
/// The plugin value is built once per (route, config) and the host snapshots
/// the instance after `configure`, so expensive set-up (compiling regexes,
/// parsing expressions) is never repeated per request.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The plugin's config, deserialized from the route's YAML `config:`.
    type Config: serde::de::DeserializeOwned;

    /// The hooks this plugin implements.
    const HOOKS: Hooks;

    /// JSON Schema of `Config`, shown by `wardgate plugin inspect`.
    const CONFIG_SCHEMA: Option<&'static str> = None;

    /// Validate the config and build the plugin. Errors name the field.
    fn configure(config: Self::Config) -> Result<Self, ConfigError>;

    /// The hooks this configuration uses, a subset of `HOOKS`: the host asks
    /// after `configure` and skips the rest (a call that only says
    /// "continue" still costs an instance and the copying of its input).
    fn active_hooks(&self) -> Hooks {
        Self::HOOKS
    }

    /// A buffered HTTP request.
    fn on_http_request(&self, _ctx: &RequestContext, _req: HttpRequest) -> HttpRequestAction {
        HttpRequestAction::Continue
    }
    /// An HTTP response from the backend.
    fn on_http_response(&self, _ctx: &RequestContext, _resp: HttpResponse) -> HttpResponseAction {
        HttpResponseAction::Continue
    }
    /// A chat request, parsed by the host.
    fn on_llm_request(&self, _ctx: &RequestContext, _req: LlmRequest) -> LlmRequestAction {
        LlmRequestAction::Continue
    }
    /// A complete (non-streamed) chat response.
    fn on_llm_response(&self, _ctx: &RequestContext, _resp: LlmResponse) -> LlmResponseAction {
        LlmResponseAction::Continue
    }
    /// One chunk of a streamed chat response.
    fn on_llm_chunk(&self, _ctx: &RequestContext, _chunk: LlmChunk) -> LlmChunkAction {
        LlmChunkAction::Continue
    }
    /// An MCP request (e.g. `tools/call`).
    fn on_mcp_request(&self, _ctx: &RequestContext, _req: McpRequest) -> McpRequestAction {
        McpRequestAction::Continue
    }
    /// The result of an MCP list method (`tools/list`, ...), to filter or rewrite.
    fn on_mcp_list(&self, _ctx: &RequestContext, _list: McpList) -> McpListAction {
        McpListAction::Continue
    }
    /// The result of an MCP call.
    fn on_mcp_response(&self, _ctx: &RequestContext, _resp: McpResponse) -> McpResponseAction {
        McpResponseAction::Continue
    }
}

impl ConfigError {
    /// An error about the config field at `field` (a path such as `rules[2].pattern`).
    pub fn new(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ConfigError {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// Parse a JSON config into `P::Config`, reporting the failing field's path.
pub fn parse_config<P: Plugin>(json: &str) -> Result<P::Config, ConfigError> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(field, strip_position(&e.into_inner().to_string()))
    })
}

// serde_json appends " at line 1 column 37"; the position in a JSON string the
// host generated means nothing to the user, the field path does.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen::rt;
    pub use wit_bindgen::rt::bitflags;

    use super::*;

    /// `configured` is the plugin once `configure` ran: then only its active hooks.
    pub fn describe<P: Plugin>(name: &str, version: &str, configured: Option<&P>) -> PluginInfo {
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            hooks: configured.map_or(P::HOOKS, |p| p.active_hooks() & P::HOOKS),
            config_schema: P::CONFIG_SCHEMA.map(str::to_string),
        }
    }

    pub fn configure<P: Plugin>(json: &str) -> Result<P, ConfigError> {
        report_panics();
        let plugin = P::configure(parse_config::<P>(json)?)?;
        reserve_heap();
        Ok(plugin)
    }

    /// Grow the heap once now, and free it: the host snapshots the instance
    /// after `configure`, so every request starts with this much free heap
    /// instead of growing linear memory (a syscall) to hold its input.
    fn reserve_heap() {
        const HEAP_RESERVE: usize = 512 << 10;
        drop(std::hint::black_box(Vec::<u8>::with_capacity(HEAP_RESERVE)));
    }

    /// Send panic messages to the host before the trap, so the gateway's
    /// error says why the plugin failed instead of just "unreachable".
    fn report_panics() {
        #[cfg(target_arch = "wasm32")]
        std::panic::set_hook(Box::new(|info| {
            let message = match info.payload().downcast_ref::<&str>() {
                Some(s) => s.to_string(),
                None => info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| info.to_string()),
            };
            crate::host::log::log(
                crate::host::log::Level::Error,
                &message,
                &[("panic", "true")],
            );
        }));
    }
}

/// Export a [`Plugin`] type as the component's `wardgate:policy/hooks`.
///
/// Use once per plugin crate, at the crate root.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            use $crate::wit::exports::wardgate::policy::hooks::Guest;
            static STATE: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();

            fn state() -> &'static $plugin {
                STATE.get().expect("wardgate: a hook ran before configure")
            }

            struct Export;

            impl Guest for Export {
                fn describe() -> $crate::PluginInfo {
                    $crate::__private::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                        STATE.get(),
                    )
                }
                fn configure(config: String) -> Result<(), $crate::ConfigError> {
                    let plugin = $crate::__private::configure::<$plugin>(&config)?;
                    STATE
                        .set(plugin)
                        .map_err(|_| $crate::ConfigError::new("", "configure was called twice"))
                }
                fn on_http_request(
                    ctx: $crate::RequestContext,
                    req: $crate::HttpRequest,
                ) -> $crate::HttpRequestAction {
                    $crate::Plugin::on_http_request(state(), &ctx, req)
                }
                fn on_http_response(
                    ctx: $crate::RequestContext,
                    resp: $crate::HttpResponse,
                ) -> $crate::HttpResponseAction {
                    $crate::Plugin::on_http_response(state(), &ctx, resp)
                }
                fn on_llm_request(
                    ctx: $crate::RequestContext,
                    req: $crate::LlmRequest,
                ) -> $crate::LlmRequestAction {
                    $crate::Plugin::on_llm_request(state(), &ctx, req)
                }
                fn on_llm_response(
                    ctx: $crate::RequestContext,
                    resp: $crate::LlmResponse,
                ) -> $crate::LlmResponseAction {
                    $crate::Plugin::on_llm_response(state(), &ctx, resp)
                }
                fn on_llm_chunk(
                    ctx: $crate::RequestContext,
                    chunk: $crate::LlmChunk,
                ) -> $crate::LlmChunkAction {
                    $crate::Plugin::on_llm_chunk(state(), &ctx, chunk)
                }
                fn on_mcp_request(
                    ctx: $crate::RequestContext,
                    req: $crate::McpRequest,
                ) -> $crate::McpRequestAction {
                    $crate::Plugin::on_mcp_request(state(), &ctx, req)
                }
                fn on_mcp_list(
                    ctx: $crate::RequestContext,
                    list: $crate::McpList,
                ) -> $crate::McpListAction {
                    $crate::Plugin::on_mcp_list(state(), &ctx, list)
                }
                fn on_mcp_response(
                    ctx: $crate::RequestContext,
                    resp: $crate::McpResponse,
                ) -> $crate::McpResponseAction {
                    $crate::Plugin::on_mcp_response(state(), &ctx, resp)
                }
            }

            // Only wasm builds export: native builds (unit tests) would put
            // symbol names with ':' into the linker's version script.
            #[cfg(target_arch = "wasm32")]
    $crate::wit::__export_hooks!(Export with_types_in $crate::wit);

            // Natively, keep the plugin reachable so it is not dead code.
            #[cfg(not(target_arch = "wasm32"))]
            #[allow(dead_code)]
            fn keep_exports() {
                let _ = <Export as Guest>::configure;
                let _ = <Export as Guest>::describe;
            }
        };
    };
}
