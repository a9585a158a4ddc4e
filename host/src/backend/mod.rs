//! Where a route's traffic goes. Only plain HTTP upstreams so far ([`http`]);
//! MCP and LLM backends come with their own modules.

pub mod http;
