//! Where a route's traffic goes: plain and TLS HTTP upstreams ([`http`],
//! [`tls`]), and the tunnels of upgraded connections ([`upgrade`]). MCP and
//! LLM backends come with their own modules.

pub mod aws_credentials;
pub mod aws_profiles;
pub mod aws_signer;
pub mod aws_sso;
pub mod azure_credentials;
pub mod credentials;
pub mod expiring;
pub mod fetch;
pub mod google_credentials;
pub mod google_id_tokens;
pub mod h1pool;
pub mod h1wire;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod sse;
pub mod tls;
pub mod upgrade;

/// An environment variable as credential lookups read it: unset and empty
/// are the same.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
