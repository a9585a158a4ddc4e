//! Built-in policy `rate-limit`: token buckets on requests or LLM tokens.
//!
//! The buckets live in the host's counter store, so every instance and
//! thread (and, with a shared store, every replica) sees the same count;
//! this plugin only decides keys and reads the answers.
//!
//! ```yaml
//! config:
//!   limits:
//!   - { requests: 100, per: minute, burst: 120, key: client }
//!   - { tokens: 50000, per: hour, key: { claim: org } }
//!   - { requests: 10, per: second, key: tool }            # MCP tools/call, per tool
//!   # agentgateway's shape (what `localRateLimit` expands to) works too:
//!   - { maxTokens: 10, tokensPerFill: 1, fillInterval: 60s, type: requests }
//! ```
//!
//! Where each limit counts: request limits keyed by `tool` on MCP
//! `tools/call`, the other request limits on the HTTP request (one per
//! request, whatever protocol it carries), token limits on LLM calls:
//! checked before the call (the bucket must not be empty) and debited with
//! the actual usage after it. A rejection is 429 with `x-ratelimit-limit`,
//! `x-ratelimit-remaining`, `x-ratelimit-reset` (seconds) and `retry-after`;
//! allowed HTTP responses carry the same headers for the most constrained
//! bucket.

use std::cell::RefCell;

use wardgate_sdk::host::counters::{self, Bucket, BucketState};
use wardgate_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limits: Vec<LimitConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LimitConfig {
    requests: Option<u64>,
    tokens: Option<u64>,
    per: Option<String>,
    burst: Option<u64>,
    max_tokens: Option<u64>,
    tokens_per_fill: Option<u64>,
    fill_interval: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    #[serde(default)]
    key: KeyBy,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Requests,
    Tokens,
}

/// What a bucket is per.
#[derive(Deserialize, Clone, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
enum KeyBy {
    /// One bucket for the route.
    #[default]
    Route,
    /// Per client IP address.
    Client,
    /// Per MCP tool (counted on tools/call).
    Tool,
    /// Per value of a request header.
    Header(String),
    /// Per value of a claim of the verified JWT.
    Claim(String),
}

#[derive(Debug)]
struct Limit {
    kind: Kind,
    bucket: Bucket,
    key: KeyBy,
}

struct RateLimit {
    limits: Vec<Limit>,
}

/// The most constrained bucket this request met, for the response headers.
#[derive(Clone, Copy, Debug)]
struct Seen {
    limit: u64,
    remaining: i64,
    reset_ms: u64,
}

thread_local! {
    // An instance serves one request at a time (its request and response
    // hooks); this carries the request's bucket state to the response.
    static SEEN: RefCell<Option<Seen>> = const { RefCell::new(None) };
}

fn period_ms(per: &str) -> Option<u64> {
    Some(match per {
        "second" | "s" => 1_000,
        "minute" | "m" => 60_000,
        "hour" | "h" => 3_600_000,
        "day" | "d" => 86_400_000,
        _ => return None,
    })
}

/// `250ms`, `1s`, `60s`, `5m`, `1h`, `1d`.
fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

impl LimitConfig {
    fn build(self, at: &str) -> Result<Limit, ConfigError> {
        let err = |field: &str, msg: &str| ConfigError::new(format!("{at}.{field}"), msg);
        let agw = self.max_tokens.is_some()
            || self.tokens_per_fill.is_some()
            || self.fill_interval.is_some();
        let friendly = self.requests.is_some() || self.tokens.is_some() || self.per.is_some();
        let (kind, bucket) = match (friendly, agw) {
            (true, true) => {
                return Err(err(
                    "maxTokens",
                    "use either {requests|tokens, per, burst} or {maxTokens, tokensPerFill, fillInterval}",
                ));
            }
            (false, false) => {
                return Err(err(
                    "requests",
                    "a limit needs `requests` or `tokens` with `per` (or maxTokens/tokensPerFill/fillInterval)",
                ));
            }
            (true, false) => {
                let (kind, amount) = match (self.requests, self.tokens) {
                    (Some(n), None) => (Kind::Requests, n),
                    (None, Some(n)) => (Kind::Tokens, n),
                    _ => return Err(err("requests", "give one of `requests` or `tokens`")),
                };
                if amount == 0 {
                    return Err(err("requests", "must be at least 1"));
                }
                let per = self
                    .per
                    .as_deref()
                    .ok_or_else(|| err("per", "missing: one of second, minute, hour, day"))?;
                let refill_ms = period_ms(per)
                    .ok_or_else(|| err("per", "expected one of second, minute, hour, day"))?;
                let capacity = self.burst.unwrap_or(amount);
                if capacity == 0 {
                    return Err(err("burst", "must be at least 1"));
                }
                (
                    kind,
                    Bucket {
                        capacity,
                        refill_tokens: amount,
                        refill_ms,
                    },
                )
            }
            (false, true) => {
                let capacity = self
                    .max_tokens
                    .filter(|n| *n > 0)
                    .ok_or_else(|| err("maxTokens", "missing or zero"))?;
                let refill_tokens = self.tokens_per_fill.unwrap_or(capacity);
                let interval = self
                    .fill_interval
                    .as_deref()
                    .ok_or_else(|| err("fillInterval", "missing (e.g. 60s)"))?;
                let refill_ms = duration_ms(interval).filter(|ms| *ms > 0).ok_or_else(|| {
                    err("fillInterval", "expected a duration such as 500ms, 60s, 1h")
                })?;
                (
                    self.kind.unwrap_or(Kind::Requests),
                    Bucket {
                        capacity,
                        refill_tokens,
                        refill_ms,
                    },
                )
            }
        };
        if kind == Kind::Tokens && self.key == KeyBy::Tool {
            return Err(err("key", "token limits cannot be keyed by tool"));
        }
        Ok(Limit {
            kind,
            bucket,
            key: self.key,
        })
    }
}

/// The client's IP address without its port.
fn client_ip(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => address,
    }
}

/// The verified claims, parsed once per request (`Null` without a token).
fn claims_of(ctx: &RequestContext) -> serde_json::Value {
    ctx.identity
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

fn claim(claims: &serde_json::Value, name: &str) -> String {
    match claims.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

impl RateLimit {
    /// The counter key of limit `i` for this request.
    fn key(
        &self,
        i: usize,
        ctx: &RequestContext,
        claims: &serde_json::Value,
        headers: &[Header],
        tool: &str,
    ) -> String {
        let value = match &self.limits[i].key {
            KeyBy::Route => String::new(),
            KeyBy::Client => client_ip(&ctx.client_address).to_string(),
            KeyBy::Tool => tool.to_string(),
            KeyBy::Header(name) => headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.clone())
                .unwrap_or_else(|| "-".into()),
            KeyBy::Claim(name) => claim(claims, name),
        };
        format!("rate-limit|{}|{i}|{value}", ctx.route)
    }

    /// Take one request from every selected bucket; the denial of the first
    /// that is empty, else the most constrained state.
    fn take_requests(
        &self,
        ctx: &RequestContext,
        headers: &[Header],
        tool: &str,
        select: impl Fn(&Limit) -> bool,
    ) -> Result<Option<Seen>, Denial> {
        let mut tightest: Option<Seen> = None;
        let claims = claims_of(ctx);
        for (i, limit) in self.limits.iter().enumerate() {
            if limit.kind != Kind::Requests || !select(limit) {
                continue;
            }
            let state = counters::take(&self.key(i, ctx, &claims, headers, tool), limit.bucket, 1);
            if !state.allowed {
                return Err(too_many(limit, &state));
            }
            tightest = tighter(tightest, limit, &state);
        }
        Ok(tightest)
    }
}

fn tighter(current: Option<Seen>, limit: &Limit, state: &BucketState) -> Option<Seen> {
    let seen = Seen {
        limit: limit.bucket.capacity,
        remaining: state.remaining,
        reset_ms: state.reset_ms,
    };
    match current {
        Some(c) if c.remaining <= seen.remaining => Some(c),
        _ => Some(seen),
    }
}

fn secs_ceil(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

fn headers_of(seen: &Seen) -> Vec<Header> {
    vec![
        Header {
            name: "x-ratelimit-limit".into(),
            value: seen.limit.to_string(),
        },
        Header {
            name: "x-ratelimit-remaining".into(),
            value: seen.remaining.max(0).to_string(),
        },
        Header {
            name: "x-ratelimit-reset".into(),
            value: secs_ceil(seen.reset_ms).to_string(),
        },
    ]
}

fn too_many(limit: &Limit, state: &BucketState) -> Denial {
    let mut denial = Denial::new(
        429,
        r#"{"error":{"type":"rate_limited","message":"rate limit exceeded"}}"#,
    )
    .with_header("content-type", "application/json")
    .with_header(
        "retry-after",
        secs_ceil(state.retry_after_ms).max(1).to_string(),
    );
    denial.headers.extend(headers_of(&Seen {
        limit: limit.bucket.capacity,
        remaining: 0,
        reset_ms: state.reset_ms,
    }));
    denial
}

/// Time for a bucket at `remaining` tokens to hold one again.
fn ms_until_one(bucket: &Bucket, remaining: i64) -> u64 {
    let needed = (1 - remaining).max(1) as u64;
    (needed * bucket.refill_ms).div_ceil(bucket.refill_tokens.max(1))
}

impl RateLimit {
    /// Debit what an LLM call actually used from every token bucket.
    fn debit_tokens(&self, ctx: &RequestContext, usage: TokenUsage) {
        if !self.limits.iter().any(|l| l.kind == Kind::Tokens) {
            return;
        }
        let used = usage.input + usage.output;
        let claims = claims_of(ctx);
        for (i, limit) in self.limits.iter().enumerate() {
            if limit.kind == Kind::Tokens {
                counters::debit(&self.key(i, ctx, &claims, &[], ""), limit.bucket, used);
            }
        }
    }
}

impl Plugin for RateLimit {
    type Config = Config;
    const HOOKS: Hooks = Hooks::HTTP_REQUEST
        .union(Hooks::HTTP_RESPONSE)
        .union(Hooks::MCP_REQUEST)
        .union(Hooks::LLM_REQUEST)
        .union(Hooks::LLM_RESPONSE)
        .union(Hooks::LLM_CHUNK);

    /// Only the hooks this config's limits need: request limits keyed by
    /// tool count MCP calls, the others count HTTP requests (and answer
    /// with the x-ratelimit headers); token limits follow LLM calls.
    fn active_hooks(&self) -> Hooks {
        let mut hooks = Hooks::empty();
        for l in &self.limits {
            hooks |= match (l.kind, &l.key) {
                (Kind::Requests, KeyBy::Tool) => Hooks::MCP_REQUEST,
                (Kind::Requests, _) => Hooks::HTTP_REQUEST.union(Hooks::HTTP_RESPONSE),
                (Kind::Tokens, _) => Hooks::LLM_REQUEST
                    .union(Hooks::LLM_RESPONSE)
                    .union(Hooks::LLM_CHUNK),
            };
        }
        hooks
    }

    fn configure(c: Config) -> Result<Self, ConfigError> {
        if c.limits.is_empty() {
            return Err(ConfigError::new("limits", "needs at least one limit"));
        }
        let limits = c
            .limits
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.build(&format!("limits[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(RateLimit { limits })
    }

    fn on_http_request(&self, ctx: &RequestContext, req: HttpRequest) -> HttpRequestAction {
        match self.take_requests(ctx, &req.headers, "", |l| l.key != KeyBy::Tool) {
            Ok(seen) => {
                SEEN.with(|s| *s.borrow_mut() = seen);
                HttpRequestAction::Continue
            }
            Err(denial) => HttpRequestAction::Deny(denial),
        }
    }

    fn on_http_response(&self, _: &RequestContext, _: HttpResponse) -> HttpResponseAction {
        match SEEN.with(|s| s.borrow_mut().take()) {
            Some(seen) => HttpResponseAction::Modify(HttpResponseEdit {
                status: None,
                set_headers: headers_of(&seen),
                remove_headers: vec![],
                body: None,
            }),
            None => HttpResponseAction::Continue,
        }
    }

    fn on_mcp_request(&self, ctx: &RequestContext, req: McpRequest) -> McpRequestAction {
        if req.method != "tools/call" {
            return McpRequestAction::Continue;
        }
        let tool = req.name.as_deref().unwrap_or("");
        match self.take_requests(ctx, &[], tool, |l| l.key == KeyBy::Tool) {
            Ok(_) => McpRequestAction::Continue,
            Err(denial) => McpRequestAction::Deny(denial.with_jsonrpc_code(-32000)),
        }
    }

    fn on_llm_request(&self, ctx: &RequestContext, _: LlmRequest) -> LlmRequestAction {
        // Token budgets: the call goes ahead while the bucket is not empty;
        // the response debits what it actually used.
        let claims = claims_of(ctx);
        for (i, limit) in self.limits.iter().enumerate() {
            if limit.kind != Kind::Tokens {
                continue;
            }
            let state = counters::take(&self.key(i, ctx, &claims, &[], ""), limit.bucket, 0);
            if state.remaining <= 0 {
                let blocked = BucketState {
                    allowed: false,
                    retry_after_ms: ms_until_one(&limit.bucket, state.remaining),
                    ..state
                };
                return LlmRequestAction::Deny(too_many(limit, &blocked));
            }
        }
        LlmRequestAction::Continue
    }

    fn on_llm_response(&self, ctx: &RequestContext, resp: LlmResponse) -> LlmResponseAction {
        if let Some(usage) = resp.usage {
            self.debit_tokens(ctx, usage);
        }
        LlmResponseAction::Continue
    }

    fn on_llm_chunk(&self, ctx: &RequestContext, chunk: LlmChunk) -> LlmChunkAction {
        // A streamed answer's usage comes with its last chunk.
        if let (true, Some(usage)) = (chunk.done, chunk.usage) {
            self.debit_tokens(ctx, usage);
        }
        LlmChunkAction::Continue
    }
}

export_plugin!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_sdk::testing;

    fn plugin(json: &str) -> RateLimit {
        testing::configure::<RateLimit>(json).unwrap()
    }

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            body: None,
        }
    }

    fn ctx(route: &str, client: &str, identity: Option<&str>) -> RequestContext {
        let mut c = testing::context();
        c.route = route.into();
        c.client_address = client.into();
        c.identity = identity.map(str::to_string);
        c
    }

    #[test]
    fn both_config_shapes_build_the_same_bucket() {
        let a = plugin(r#"{"limits": [{"requests": 10, "per": "minute"}]}"#);
        let b = plugin(
            r#"{"limits": [{"maxTokens": 10, "tokensPerFill": 10, "fillInterval": "60000ms"}]}"#,
        );
        assert_eq!(a.limits[0].bucket.capacity, b.limits[0].bucket.capacity);
        assert_eq!(a.limits[0].bucket.refill_ms, b.limits[0].bucket.refill_ms);
        assert_eq!(
            a.limits[0].bucket.refill_tokens,
            b.limits[0].bucket.refill_tokens
        );
        let burst = plugin(r#"{"limits": [{"requests": 5, "per": "second", "burst": 8}]}"#);
        assert_eq!(burst.limits[0].bucket.capacity, 8);
    }

    #[test]
    fn config_errors_name_the_field() {
        for (json, field) in [
            (r#"{"limits": []}"#, "limits"),
            (
                r#"{"limits": [{"requests": 1, "per": "fortnight"}]}"#,
                "limits[0].per",
            ),
            (r#"{"limits": [{"requests": 1}]}"#, "limits[0].per"),
            (
                r#"{"limits": [{"requests": 0, "per": "second"}]}"#,
                "limits[0].requests",
            ),
            (
                r#"{"limits": [{"requests": 1, "per": "second"}, {"maxTokens": 1, "fillInterval": "soon"}]}"#,
                "limits[1].fillInterval",
            ),
            (
                r#"{"limits": [{"tokens": 1, "per": "hour", "key": "tool"}]}"#,
                "limits[0].key",
            ),
        ] {
            let err = testing::configure::<RateLimit>(json).err().unwrap();
            assert_eq!(err.field, field, "{json}: {}", err.message);
        }
    }

    #[test]
    fn denies_past_the_limit_with_headers() {
        let p = plugin(r#"{"limits": [{"requests": 3, "per": "hour", "key": "client"}]}"#);
        let c = ctx("unit-deny", "10.0.0.1:5555", None);
        for _ in 0..3 {
            assert!(matches!(
                p.on_http_request(&c, request(&[])),
                HttpRequestAction::Continue
            ));
        }
        match p.on_http_request(&c, request(&[])) {
            HttpRequestAction::Deny(d) => {
                assert_eq!(d.status, 429);
                let h = |n: &str| {
                    d.headers
                        .iter()
                        .find(|h| h.name == n)
                        .map(|h| h.value.clone())
                };
                assert_eq!(h("x-ratelimit-limit").as_deref(), Some("3"));
                assert_eq!(h("x-ratelimit-remaining").as_deref(), Some("0"));
                let retry: u64 = h("retry-after").unwrap().parse().unwrap();
                assert!((1..=1200).contains(&retry), "{retry}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Another client has its own bucket.
        let other = ctx("unit-deny", "10.0.0.2:5555", None);
        assert!(matches!(
            p.on_http_request(&other, request(&[])),
            HttpRequestAction::Continue
        ));
    }

    #[test]
    fn keys_by_header_and_claim_and_reports_remaining_on_the_response() {
        let p = plugin(
            r#"{"limits": [{"requests": 2, "per": "day", "key": {"header": "x-api-key"}},
                           {"requests": 5, "per": "day", "key": {"claim": "org"}}]}"#,
        );
        let c = ctx("unit-keys", "10.0.0.1:1", Some(r#"{"org": "acme"}"#));
        assert!(matches!(
            p.on_http_request(&c, request(&[("x-api-key", "k1")])),
            HttpRequestAction::Continue
        ));
        let resp = HttpResponse {
            status: 200,
            headers: vec![],
            body: None,
        };
        match p.on_http_response(&c, resp) {
            HttpResponseAction::Modify(edit) => {
                let remaining = edit
                    .set_headers
                    .iter()
                    .find(|h| h.name == "x-ratelimit-remaining")
                    .unwrap();
                assert_eq!(remaining.value, "1", "the header bucket is the tighter one");
            }
            other => panic!("expected headers, got {other:?}"),
        }
        p.on_http_request(&c, request(&[("x-api-key", "k1")]));
        assert!(matches!(
            p.on_http_request(&c, request(&[("x-api-key", "k1")])),
            HttpRequestAction::Deny(_)
        ));
        // A new key still has budget, but the org's five are shared.
        assert!(matches!(
            p.on_http_request(&c, request(&[("x-api-key", "k2")])),
            HttpRequestAction::Continue
        ));
    }

    #[test]
    fn token_limits_check_before_and_debit_after() {
        let p = plugin(r#"{"limits": [{"tokens": 100, "per": "hour"}]}"#);
        let c = ctx("unit-tokens", "10.0.0.1:1", None);
        let llm = || LlmRequest {
            provider: "openai".into(),
            model: "m".into(),
            messages: vec![],
            tools: vec![],
            stream: false,
        };
        let done = |used: u64| LlmResponse {
            provider: "openai".into(),
            model: "m".into(),
            text: String::new(),
            tool_calls: vec![],
            usage: Some(TokenUsage {
                input: used,
                output: 0,
                cached_input: 0,
            }),
            finish_reason: None,
        };
        assert!(matches!(
            p.on_llm_request(&c, llm()),
            LlmRequestAction::Continue
        ));
        p.on_llm_response(&c, done(150)); // over budget: the bucket goes negative
        match p.on_llm_request(&c, llm()) {
            LlmRequestAction::Deny(d) => {
                assert_eq!(d.status, 429);
                let retry: u64 = d
                    .headers
                    .iter()
                    .find(|h| h.name == "retry-after")
                    .unwrap()
                    .value
                    .parse()
                    .unwrap();
                // 51 tokens at 100/hour: about 30 minutes.
                assert!((1700..=1900).contains(&retry), "{retry}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn tool_limits_count_only_tool_calls_per_tool() {
        let p = plugin(r#"{"limits": [{"requests": 1, "per": "hour", "key": "tool"}]}"#);
        let c = ctx("unit-tools", "10.0.0.1:1", None);
        let call = |name: &str, method: &str| McpRequest {
            method: method.into(),
            target: None,
            name: Some(name.into()),
            arguments: None,
            session: None,
        };
        assert!(matches!(
            p.on_mcp_request(&c, call("a", "tools/call")),
            McpRequestAction::Continue
        ));
        assert!(matches!(
            p.on_mcp_request(&c, call("a", "tools/list")),
            McpRequestAction::Continue
        ));
        match p.on_mcp_request(&c, call("a", "tools/call")) {
            McpRequestAction::Deny(d) => assert_eq!(d.jsonrpc_code, Some(-32000)),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert!(matches!(
            p.on_mcp_request(&c, call("b", "tools/call")),
            McpRequestAction::Continue
        ));
        // HTTP requests do not spend tool budgets.
        assert!(matches!(
            p.on_http_request(&c, request(&[])),
            HttpRequestAction::Continue
        ));
    }
}
