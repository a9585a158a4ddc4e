//! The YAML config as written, in agentgateway's standalone shape:
//! `binds[] { port, listeners[] { name, hostname, protocol, tls, routes[] {
//! name, matches[], policies, backends[], plugins[] } } }`.
//!
//! Every struct denies unknown keys, and values are checked while they are
//! deserialized (newtypes with `try_from`), so an error points at its line.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::PluginSpec;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub config: Settings,
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// The folder of the config file: relative file paths in it (certs,
    /// keys, CA and JWKS files, plugin files) are relative to this.
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
    /// The file this was read from, to place errors found after parsing.
    #[serde(skip)]
    pub source: Option<std::sync::Arc<super::locate::Source>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Admin listener (config_dump, health, readiness, metrics); default 127.0.0.1:15000.
    #[serde(default)]
    pub admin_addr: Option<String>,
    /// Access log format: `text` (default) or `json`.
    #[serde(default)]
    pub access_log: AccessLogFormat,
    /// Threads serving requests, each with its own connections and upstream
    /// pools; default one per core. Read at start only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// Plugin instances alive at once, across every route (the runtime's
    /// pool of slots); default 1000. A request holds one per plugin that
    /// looks at its answer while it waits on the upstream. Read at start only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_instances: Option<std::num::NonZeroU32>,
    /// Largest request body buffered for plugins; larger bodies get 413.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Largest request head (request line and headers) a client may send;
    /// larger ones get 431. Default 64 KiB; applies to connections opened
    /// after a reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<HeaderBytes>,
    /// How long a client may take to send a request head (and, on HTTPS,
    /// its TLS handshake) before the connection is closed. Default 10s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "longer_than_zero"
    )]
    pub header_read_timeout: Option<DurationStr>,
    /// How long an HTTP/2 client connection may carry no request before it
    /// is closed (HTTP/1.1 ones idle between requests close after
    /// `headerReadTimeout`), and a WebSocket tunnel no byte either way.
    /// Default 60s.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "longer_than_zero"
    )]
    pub idle_timeout: Option<DurationStr>,
    /// After `SIGTERM`, the longest the gateway waits for open connections
    /// (requests, streams, WebSocket tunnels) to finish before it closes
    /// them and exits. Default 5s, or `TERMINATION_GRACE_PERIOD_SECONDS`
    /// less a margin when that is set (as Kubernetes can pass it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_termination_deadline: Option<DurationStr>,
    /// After `SIGTERM`, how long the gateway keeps accepting new connections
    /// (each served one request at a time and asked to close) while load
    /// balancers stop sending to it. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_min_termination_deadline: Option<DurationStr>,
    /// MCP sessions: `key` seals session ids so any replica with it resumes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionSettings {
    /// 64 hex digits (AES-256), as a literal, `$ENV` or `{file: path}`.
    pub key: SecretSource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessLogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bind {
    pub port: u16,
    /// Address to bind; default 0.0.0.0.
    #[serde(default)]
    pub address: Option<String>,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: Option<String>,
    /// Host name this listener answers for (exact or `*.suffix`); default any.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Default plugin chain for routes that have none of their own.
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTls {
    /// PEM certificate chain file (leaf first).
    pub cert: String,
    /// PEM private key file (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// More certificates on the same listener; SNI picks the one whose
    /// names cover the requested host, the first above is the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertKeyPair>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertKeyPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub matches: Vec<RouteMatch>,
    #[serde(default)]
    pub policies: Policies,
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// This route's plugin chain (replaces the listener's default).
    #[serde(default)]
    pub plugins: Option<Vec<PluginSpec>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub query: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathMatch {
    Exact(String),
    PathPrefix(String),
    Regex(Pattern),
}

/// A header or query parameter match; a plain string value means `exact`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringMatch {
    Plain(String),
    Exact { exact: String },
    Regex { regex: Pattern },
}

/// A regex, compiled while the config is read so a bad one is reported at its line.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(pub regex::Regex);

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        // Anchored: a route regex matches the whole path, as in the Gateway API.
        regex::Regex::new(&format!("^(?:{s})$"))
            .map(Pattern)
            .map_err(|e| format!("invalid regex '{s}': {e}"))
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        let s = p.0.as_str();
        s[4..s.len() - 2].to_string()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from(self.clone()))
    }
}

/// A duration such as `500ms`, `30s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DurationStr(pub Duration);

impl TryFrom<String> for DurationStr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let err = || format!("invalid duration '{s}': use a number with ms, s, m or h (e.g. 30s)");
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(err)?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| err())?;
        let ms = match unit {
            "ms" => n,
            "s" => n * 1e3,
            "m" => n * 60e3,
            "h" => n * 3600e3,
            _ => return Err(err()),
        };
        Ok(DurationStr(Duration::from_micros((ms * 1e3) as u64)))
    }
}

impl From<DurationStr> for String {
    fn from(d: DurationStr) -> String {
        format!("{}ms", d.0.as_millis())
    }
}

/// A duration a client is given: 0 would refuse every client.
fn longer_than_zero<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<DurationStr>, D::Error> {
    let duration = DurationStr::deserialize(d)?;
    if duration.0.is_zero() {
        return Err(serde::de::Error::custom(
            "must be longer than 0: clients need time to send a request head",
        ));
    }
    Ok(Some(duration))
}

/// A request-head size limit, in bytes: at least 8 KiB (less would refuse
/// ordinary browsers' heads) and at most 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct HeaderBytes(pub usize);

impl HeaderBytes {
    pub const MIN: u64 = 8 << 10;
    pub const MAX: u64 = 16 << 20;
}

impl TryFrom<u64> for HeaderBytes {
    type Error = String;
    fn try_from(n: u64) -> Result<Self, String> {
        if (Self::MIN..=Self::MAX).contains(&n) {
            Ok(HeaderBytes(n as usize))
        } else {
            Err(format!(
                "{n} bytes is out of range: use {} (8 KiB) to {} (16 MiB)",
                Self::MIN,
                Self::MAX
            ))
        }
    }
}

impl From<HeaderBytes> for u64 {
    fn from(b: HeaderBytes) -> u64 {
        b.0 as u64
    }
}

/// `host:port`, where host is a name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' must be host:port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("'{s}': port '{port}' is not a number from 1 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("'{s}' must be host:port"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        h.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

// ---- policies ---------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authorization: Option<Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_auth: Option<JwtAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_authentication: Option<McpAuthentication>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_auth: Option<BackendAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<Vec<LocalRateLimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<Csrf>,
    #[serde(
        default,
        rename = "backendTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_tls: Option<BackendTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<BackendHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<BackendTcp>,
}

impl Policies {
    /// `tcp.connectTimeout`, when set.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.tcp
            .as_ref()
            .and_then(|t| t.connect_timeout)
            .map(|d| d.0)
    }
}

/// TLS to the route's backends. `{}` means TLS verified against the
/// system's root certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendTls {
    /// PEM file of the CA certificates to trust instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Server name to send (SNI) and verify, instead of the backend's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Skip certificate verification. Only for tests and trusted networks.
    #[serde(default)]
    pub insecure: bool,
}

/// How the gateway opens TCP connections to the route's backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendTcp {
    /// Give up on a connection not established within this (default 10s);
    /// the request then gets 504 or goes to the next backend.
    #[serde(default)]
    pub connect_timeout: Option<DurationStr>,
}

/// How the gateway speaks HTTP to the route's backends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendHttp {
    #[serde(default)]
    pub version: HttpVersion,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.1, or HTTP/2 when TLS negotiates it (ALPN).
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "HTTP1")]
    Http1,
    /// HTTP/2 only; over plain TCP that is h2c with prior knowledge.
    #[serde(rename = "HTTP2")]
    Http2,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UrlRewrite {
    /// New Host / :authority.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path: Option<PathRewrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathRewrite {
    /// Replace the whole path.
    Full(String),
    /// Replace the part the route's `pathPrefix` matched.
    Prefix(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path: Option<PathRewrite>,
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    302
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectResponse {
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_direct_status")]
    pub status: u16,
}

fn default_direct_status() -> u16 {
    200
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request, from the first byte in to the response head out.
    #[serde(default)]
    pub request_timeout: Option<DurationStr>,
    /// One backend attempt, until its response head arrives.
    #[serde(default)]
    pub backend_request_timeout: Option<DurationStr>,
}

/// Retries of failed attempts: connection failures always (nothing was
/// sent), timeouts and listed statuses only for idempotent methods.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubles for each next one.
    #[serde(default)]
    pub backoff: Option<DurationStr>,
    /// Upstream statuses that count as failures (e.g. 502, 503).
    #[serde(default)]
    pub codes: Vec<u16>,
}

fn default_attempts() -> u32 {
    2
}

/// CEL rules: a bare string allows, or `{allow|deny|require: expr}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Authorization {
    pub rules: Vec<AuthRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuthRule {
    Allow(String),
    Tagged(TaggedRule),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum TaggedRule {
    Allow(String),
    Deny(String),
    Require(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks: Option<Jwks>,
    #[serde(default)]
    pub mode: Option<JwtMode>,
    #[serde(default)]
    pub providers: Vec<JwtProvider>,
    #[serde(default)]
    pub jwt_validation_options: Option<JwtValidationOptions>,
}

/// Which registered claims a token must carry (agentgateway's
/// `jwtValidationOptions`); default `exp`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtValidationOptions {
    #[serde(default)]
    pub required_claims: Option<Vec<String>>,
}

/// `mcpAuthentication` (agentgateway's MCP authorization policy): the
/// route is an OAuth resource server for `issuer`; tokens are checked as
/// `jwtAuth` checks them and `resourceMetadata` is served as the route's
/// RFC 9728 protected-resource metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpAuthentication {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks: Option<Jwks>,
    #[serde(default)]
    pub mode: Option<JwtMode>,
    /// RFC 9728 fields in camelCase (`resource`, `scopesSupported`,
    /// `bearerMethodsSupported`, `resourceDocumentation`, ...).
    #[serde(default)]
    pub resource_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub jwt_validation_options: Option<JwtValidationOptions>,
    /// Adapting a non-compliant authorization server (keycloak, auth0,
    /// ...): read so it can be refused by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_signing_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtProvider {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub jwks: Jwks,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Jwks {
    File(String),
    Url(String),
    Inline(String),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JwtMode {
    Strict,
    Optional,
    Permissive,
}

/// How strictly `apiKey` and `basicAuth` ask for credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    /// A valid credential is required (the default here; agentgateway's
    /// default is `optional`, but a missing `mode` must not open a route).
    #[default]
    Strict,
    /// No credential passes without identity; a wrong one is refused.
    Optional,
    /// Nothing is refused; a valid credential still gives an identity.
    Permissive,
}

/// `apiKey`: callers present one of these keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeyAuth {
    pub keys: Vec<ApiKeyEntry>,
    #[serde(default)]
    pub mode: AuthMode,
    /// Where the key is read from; default `Authorization: Bearer <key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<CredentialLocation>,
}

/// One accepted key: exactly one of `key` (the key itself) or `keyHash`
/// (`sha256:<hex>` or a bcrypt hash), with optional `metadata` that becomes
/// the caller's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawApiKeyEntry", into = "RawApiKeyEntry")]
pub struct ApiKeyEntry {
    pub secret: StoredKey,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    Plain(String),
    Sha256([u8; 32]),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`), checked as it is written.
    Bcrypt(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApiKeyEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
}

impl TryFrom<RawApiKeyEntry> for ApiKeyEntry {
    type Error = String;
    fn try_from(raw: RawApiKeyEntry) -> Result<Self, String> {
        let secret = match (raw.key, raw.key_hash) {
            (Some(key), None) if key.is_empty() => return Err("`key` is empty".into()),
            (Some(key), None) => StoredKey::Plain(key),
            (None, Some(hash)) => StoredKey::parse_hash(&hash)?,
            (Some(_), Some(_)) => return Err("give `key` or `keyHash`, not both".into()),
            (None, None) => return Err("an entry needs `key` or `keyHash`".into()),
        };
        if let Some(m) = &raw.metadata
            && !m.is_object()
        {
            return Err("`metadata` must be a map (it becomes the caller's identity)".into());
        }
        Ok(ApiKeyEntry {
            secret,
            metadata: raw.metadata,
        })
    }
}

impl From<ApiKeyEntry> for RawApiKeyEntry {
    fn from(e: ApiKeyEntry) -> Self {
        let (key, key_hash) = match e.secret {
            StoredKey::Plain(k) => (Some(k), None),
            StoredKey::Sha256(d) => (None, Some(format!("sha256:{}", hex::encode(d)))),
            StoredKey::Bcrypt(h) => (None, Some(h)),
        };
        RawApiKeyEntry {
            key,
            key_hash,
            metadata: e.metadata,
        }
    }
}

impl StoredKey {
    fn parse_hash(text: &str) -> Result<StoredKey, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let mut digest = [0u8; 32];
            return hex::decode_to_slice(hex, &mut digest)
                .map(|()| StoredKey::Sha256(digest))
                .map_err(|_| {
                    "`sha256:` must be followed by 64 hex digits \
                     (printf '%s' KEY | sha256sum)"
                        .into()
                });
        }
        if let Some(checked) = bcrypt_hash(text) {
            return checked.map(StoredKey::Bcrypt);
        }
        Err("`keyHash` must be `sha256:<hex>` or a bcrypt hash ($2a$, $2b$, $2y$)".into())
    }
}

/// `Some` when `text` is written as a bcrypt hash (`$2a$`, `$2b$`, `$2y$`):
/// the hash, or why it is not a valid one.
pub fn bcrypt_hash(text: &str) -> Option<Result<String, String>> {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| text.starts_with(p))
        .then(|| {
            text.parse::<bcrypt::HashParts>()
                .map(|_| text.to_string())
                .map_err(|e| format!("not a valid bcrypt hash: {e}"))
        })
}

/// `basicAuth`: users and password hashes in htpasswd format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuth {
    /// The htpasswd text inline, or `{file: path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<SecretSource>,
    /// A path to an htpasswd file (agentgateway's earlier spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htpasswd_file: Option<String>,
    /// Shown by browsers in the login prompt; default `Restricted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    #[serde(default)]
    pub mode: AuthMode,
    /// Where the credentials are read; default `Authorization: Basic ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_location: Option<CredentialLocation>,
}

/// Where a request carries its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum CredentialLocation {
    /// A header, its value after `prefix` (matched without regard to case).
    Header {
        name: HeaderToken,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    QueryParameter {
        name: String,
    },
    Cookie {
        name: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum BackendAuth {
    Passthrough(Empty),
    /// An API key the gateway sends upstream: a literal, `$ENV` / `${ENV}`,
    /// or `{file: path}`.
    Key(SecretSource),
    /// A Google access token (Vertex's default): from `credential`, a
    /// service account key, or else the process's Application Default
    /// Credentials.
    Gcp(GcpAuth),
    /// AWS SigV4 signing (Bedrock's default): keys given here, or else the
    /// process's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`.
    Aws(AwsAuth),
    /// A Microsoft Entra ID token (Azure OpenAI, Azure AI Foundry).
    Azure(AzureAuth),
}

/// agentgateway's `backendAuth: azure`: where the Entra ID token comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum AzureAuth {
    ExplicitConfig(AzureExplicit),
    /// As the Azure SDKs' default chain: a client secret in the
    /// environment, workload identity, managed identity.
    Implicit(Empty),
    /// The Azure CLI's signed-in account (`az account get-access-token`).
    DeveloperImplicit(Empty),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum AzureExplicit {
    ClientSecret(AzureClientSecret),
    ManagedIdentity(AzureManagedIdentity),
    /// Kubernetes workload identity: `AZURE_FEDERATED_TOKEN_FILE`,
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`.
    WorkloadIdentity(Empty),
}

/// A service principal's secret. agentgateway's schema spells the keys
/// in snake case and its docs in camel case: both are taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureClientSecret {
    #[serde(alias = "tenant_id")]
    pub tenant_id: String,
    #[serde(alias = "client_id")]
    pub client_id: String,
    #[serde(alias = "client_secret")]
    pub client_secret: SecretSource,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureManagedIdentity {
    /// A user-assigned identity; the system-assigned one by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity: Option<AzureUserAssignedIdentity>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum AzureUserAssignedIdentity {
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretSource>,
    /// The region to sign for; the provider's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcpAuth {
    /// `accessToken` (the default: Google APIs) or `idToken` (services
    /// that admit callers by ID token, such as Cloud Run).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<GcpTokenType>,
    /// An ID token's audience; `https://` and the backend's host by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// A service account key (JSON): inline, `$ENV`, or `{file: path}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretSource>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GcpTokenType {
    AccessToken,
    IdToken,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Value(String),
    File { file: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalRateLimit {
    pub max_tokens: u64,
    pub tokens_per_fill: u64,
    pub fill_interval: DurationStr,
    #[serde(default, rename = "type")]
    pub kind: Option<RateLimitKind>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKind {
    Requests,
    Tokens,
}

/// LLM policies (`policies.ai`): `promptGuard` is sugar for prompt-guard;
/// the rest shape the request an LLM backend sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_guard: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_aliases: Option<BTreeMap<String, String>>,
    /// Messages put before and after the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptEnrichment>,
    /// Cache breakpoints the gateway sets on requests to Anthropic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_caching: Option<PromptCaching>,
    /// Which API a request path speaks: path suffix (or `*`) → route type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<BTreeMap<String, AiRouteType>>,
}

/// agentgateway's route types (either spelling: `completions`, `Completions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AiRouteType {
    #[serde(rename = "completions", alias = "Completions")]
    Completions,
    #[serde(rename = "messages", alias = "Messages")]
    Messages,
    #[serde(rename = "responses", alias = "Responses")]
    Responses,
    #[serde(rename = "embeddings", alias = "Embeddings")]
    Embeddings,
    #[serde(rename = "models", alias = "Models")]
    Models,
    #[serde(rename = "anthropicTokenCount", alias = "AnthropicTokenCount")]
    AnthropicTokenCount,
    #[serde(rename = "realtime", alias = "Realtime")]
    Realtime,
    /// Read by nothing here: forwarded like `passthrough`.
    #[serde(rename = "rerank", alias = "Rerank")]
    Rerank,
    /// Read by nothing here: forwarded like `passthrough`.
    #[serde(rename = "detect", alias = "Detect")]
    Detect,
    #[serde(rename = "passthrough", alias = "Passthrough")]
    Passthrough,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptEnrichment {
    #[serde(default)]
    pub prepend: Vec<PromptMessage>,
    #[serde(default)]
    pub append: Vec<PromptMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptMessage {
    pub role: PromptRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PromptRole {
    System,
    Developer,
    User,
    Assistant,
}

impl PromptRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PromptRole::System => "system",
            PromptRole::Developer => "developer",
            PromptRole::User => "user",
            PromptRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PromptCaching {
    #[serde(default = "yes")]
    pub cache_system: bool,
    #[serde(default = "yes")]
    pub cache_messages: bool,
    #[serde(default = "yes")]
    pub cache_tools: bool,
    /// Below this estimate of the prompt's tokens no breakpoint is set
    /// (Anthropic does not cache shorter prompts anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
}

fn yes() -> bool {
    true
}

/// `cors`: which browser origins may read the route's answers
/// (applied by `route::cors`). `"*"` in a list means any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cors {
    #[serde(default)]
    pub allow_origins: Vec<CorsOrigin>,
    #[serde(default)]
    pub allow_headers: Vec<HeaderToken>,
    #[serde(default)]
    pub allow_methods: Vec<MethodToken>,
    #[serde(default)]
    pub expose_headers: Vec<HeaderToken>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default)]
    pub max_age: Option<DurationStr>,
}

/// `csrf`: refuse cross-origin state-changing requests from browsers,
/// except from these origins (and those the route's `cors` allows).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Csrf {
    #[serde(default)]
    pub additional_origins: Vec<CorsOrigin>,
}

/// An origin as browsers send it: `scheme://host[:port]`, the port filled in
/// from the scheme when absent, the host in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `wildcards` lets the host hold `*` (allowed origins do; a request's
    /// origin does not). `None` for anything else, `null` included.
    pub fn parse(text: &str, wildcards: bool) -> Option<Origin> {
        let (scheme, rest) = text.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal: `[::1]` or `[::1]:8080`.
            Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
            _ => (rest, None),
        };
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().filter(|&p| p != 0),
            Some(_) => None,
        }?;
        let host_chars = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')
                || (wildcards && c == '*')
        };
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty() || !host.chars().all(host_chars) || (host.contains(':') && !bracketed) {
            return None;
        }
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// One entry of `cors.allowOrigins`: `*`, or an origin whose host may hold
/// `*` wildcards (`https://*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CorsOrigin {
    pub text: String,
    /// `None` for `*`.
    pub origin: Option<Origin>,
}

impl TryFrom<String> for CorsOrigin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text == "*" {
            return Ok(CorsOrigin { text, origin: None });
        }
        match Origin::parse(&text, true) {
            Some(origin) => Ok(CorsOrigin {
                text,
                origin: Some(origin),
            }),
            None => Err(format!(
                "'{text}' is not an origin: write scheme://host[:port] with http or https and no path \
                 (e.g. https://app.example.com, https://*.example.com), or \"*\" for any"
            )),
        }
    }
}

impl From<CorsOrigin> for String {
    fn from(o: CorsOrigin) -> String {
        o.text
    }
}

/// A header name in `cors.allowHeaders` or `cors.exposeHeaders`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderToken(pub String);

impl TryFrom<String> for HeaderToken {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match http::HeaderName::from_bytes(s.as_bytes()) {
            Ok(_) => Ok(HeaderToken(s)),
            Err(_) => Err(format!("'{s}' is not a header name")),
        }
    }
}

impl From<HeaderToken> for String {
    fn from(t: HeaderToken) -> String {
        t.0
    }
}

/// A method in `cors.allowMethods` (`GET`, `POST`, ...), or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MethodToken(pub String);

impl TryFrom<String> for MethodToken {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match http::Method::from_bytes(s.as_bytes()) {
            Ok(_) if !s.is_empty() => Ok(MethodToken(s)),
            _ => Err(format!("'{s}' is not an HTTP method")),
        }
    }
}

impl From<MethodToken> for String {
    fn from(t: MethodToken) -> String {
        t.0
    }
}

// ---- backends ---------------------------------------------------------

/// One backend of a route: exactly one of `host`, `mcp`, `ai`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawBackend", into = "RawBackend")]
pub struct Backend {
    pub weight: u32,
    pub kind: BackendKind,
}

#[derive(Debug, Clone)]
pub enum BackendKind {
    Host(HostPort),
    Mcp(McpBackend),
    Ai(Box<AiBackend>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBackend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiBackend>,
}

impl TryFrom<RawBackend> for Backend {
    type Error = String;
    fn try_from(raw: RawBackend) -> Result<Self, String> {
        let kind = match (raw.host, raw.mcp, raw.ai) {
            (Some(h), None, None) => BackendKind::Host(h),
            (None, Some(m), None) => BackendKind::Mcp(m),
            (None, None, Some(a)) => BackendKind::Ai(Box::new(a)),
            (None, None, None) => return Err("a backend needs one of `host`, `mcp` or `ai`".into()),
            _ => return Err("a backend takes only one of `host`, `mcp` or `ai`".into()),
        };
        Ok(Backend {
            weight: raw.weight.unwrap_or(1),
            kind,
        })
    }
}

impl From<Backend> for RawBackend {
    fn from(b: Backend) -> RawBackend {
        let mut raw = RawBackend {
            weight: Some(b.weight),
            host: None,
            mcp: None,
            ai: None,
        };
        match b.kind {
            BackendKind::Host(h) => raw.host = Some(h),
            BackendKind::Mcp(m) => raw.mcp = Some(m),
            BackendKind::Ai(a) => raw.ai = Some(*a),
        }
        raw
    }
}

/// An LLM backend: one provider (`provider:`), or priority groups of them
/// (`groups:`), tried in order on 429, 5xx and connection failures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiBackend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<AiProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AiProviderPolicies>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<AiGroup>,
    /// Longest silence allowed between two chunks of a streamed answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationStr>,
    /// How long a provider that failed is set aside (default 30s, or the
    /// provider's `retry-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<DurationStr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiGroup {
    pub providers: Vec<NamedAiProvider>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedAiProvider {
    pub name: String,
    pub provider: AiProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<AiProviderPolicies>,
}

/// Which API the provider speaks. `model`, when set, replaces the model of
/// every request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum AiProvider {
    #[serde(rename = "openAI")]
    OpenAi(ProviderParams),
    #[serde(rename = "anthropic")]
    Anthropic(ProviderParams),
    /// Any server with OpenAI's chat API at `baseUrl` (vLLM, Ollama, Groq, ...).
    #[serde(rename = "openAICompatible")]
    OpenAiCompatible(ProviderParams),
    /// Google's Gemini API, through its OpenAI-compatible endpoint.
    #[serde(rename = "gemini")]
    Gemini(ProviderParams),
    /// Azure OpenAI, or an Azure AI Foundry project.
    #[serde(rename = "azure")]
    Azure(AzureParams),
    /// Google Vertex AI: Claude models through Anthropic's API on Vertex,
    /// others through Vertex's OpenAI-compatible endpoint.
    #[serde(rename = "vertex")]
    Vertex(VertexParams),
    /// Amazon Bedrock, through its Converse API, signed with AWS SigV4.
    #[serde(rename = "bedrock")]
    Bedrock(BedrockParams),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BedrockParams {
    /// Replaces the request's model: a model id (`anthropic.claude-...`),
    /// an inference profile (`us.anthropic.claude-...`) or an ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The AWS region (`us-east-1`, ...).
    pub region: String,
    /// A Bedrock guardrail applied to every call, with its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VertexParams {
    /// Replaces the request's model; a Claude model (`claude-...`, or
    /// prefixed `anthropic/`) is served by Anthropic's API on Vertex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The location (`us-east5`, ...); `global` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub project_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureParams {
    /// The deployment; with a dated `apiVersion` it is in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The resource: `{resourceName}.openai.azure.com` (or
    /// `.services.ai.azure.com` for Foundry).
    pub resource_name: String,
    #[serde(default)]
    pub resource_type: AzureResourceType,
    /// `v1` (the default), `preview`, or a dated version such as `2024-10-21`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The Foundry project (defaults to the resource name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AzureResourceType {
    #[default]
    #[serde(rename = "openAI", alias = "azureOpenAI")]
    OpenAi,
    #[serde(rename = "foundry", alias = "aiServices")]
    Foundry,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `http(s)://host[:port][/path]`; the API paths go under its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// Per-provider policies inside an AI backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiProviderPolicies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_auth: Option<BackendAuth>,
    #[serde(
        default,
        rename = "backendTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub backend_tls: Option<BackendTls>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpBackend {
    pub targets: Vec<McpTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_mode: Option<String>,
    /// Browser origins allowed besides loopback ones (`*` for any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// An MCP server behind the route: exactly one of `stdio`, `mcp`, `sse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpTarget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<HttpTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<HttpTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StdioTarget {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpTarget {
    /// A host name, or a whole URL (`https://example.com:443/mcp`).
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub path: Option<String>,
}
