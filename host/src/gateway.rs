//! The running config: one immutable value built from a checked [`Config`],
//! with every plugin loaded, every regex compiled and every header parsed.
//! A request holds the snapshot it started with; a reload swaps in a new one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::api_key::ApiKeyAuth;
use crate::auth::basic::BasicAuth;
use crate::auth::jwks::Fetcher;
use crate::auth::jwt::JwtAuth;
use crate::backend::credentials::{Credential, KeyHeader, Takes};
use crate::backend::h1pool::HostConns;
use crate::backend::http::{HttpBackends, Transport, Upstream};
use crate::backend::llm::LlmBackend;
use crate::backend::mcp::McpBackend;
use crate::backend::mcp::session::Sealer;
use crate::config::locate::Source;
use crate::config::schema::{
    AccessLogFormat, BackendKind, Bind, Config, DirectResponse, HostPort, Protocol,
    RequestRedirect, UrlRewrite,
};
use crate::config::sugar;
use crate::listener::drain::Termination;
use crate::listener::tls::{self, TlsAcceptor};
use crate::policy::bindings::{BackendProtocol, Hooks};
use crate::policy::{Chain, PolicyEngine};
use crate::route::cors::CorsPolicy;
use crate::route::csrf::CsrfPolicy;
use crate::route::filters::HeaderEdits;
use crate::route::{Matcher, RouteTable};

pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15000";
pub const DEFAULT_MAX_BODY: usize = 8 << 20;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a config could not become a running gateway.
#[derive(Debug)]
pub struct BuildError {
    pub path: String,
    pub message: String,
    /// `file:line:column` of `path`, and the lines leading to it, when the
    /// config came from a file.
    pub location: Option<(String, String)>,
    /// A config path below `path` that places the error more precisely (the
    /// field of a plugin's config that its `configure` refused).
    within: Option<String>,
    /// The config is fine but something it needs could not be fetched yet
    /// (a registry is down): worth trying again rather than giving up.
    pub retryable: bool,
}

impl BuildError {
    fn new(path: String, message: String) -> Self {
        BuildError {
            path,
            message,
            location: None,
            within: None,
            retryable: false,
        }
    }

    /// Place the error in the file `source` was read from.
    fn locate(mut self, source: Option<&Source>) -> Self {
        let path = self.within.as_deref().unwrap_or(&self.path);
        if let Some(source) = source
            && let Some((line, column)) = source.position(path)
        {
            let at = format!("{}:{line}:{column}", source.file);
            self.location = Some((at, source.snippet(line)));
        }
        self
    }

    fn plugin(path: String, e: crate::policy::LoadError) -> Self {
        let within = match &e.kind {
            crate::policy::LoadErrorKind::Config { field, .. } => config_field(&path, field),
            _ => None,
        };
        BuildError {
            path,
            retryable: matches!(e.kind, crate::policy::LoadErrorKind::Fetch { .. }),
            message: e.to_string(),
            location: None,
            within,
        }
    }
}

/// Where the field `field` of a plugin's config (as its `configure`
/// names it) is in the file, given the chain entry's path: under `config`
/// for a `plugins:` entry, and under the policy key for sugar, which hands
/// its value on as `rules` or `limits`.
fn config_field(entry: &str, field: &str) -> Option<String> {
    if field.is_empty() || field == "." {
        return None;
    }
    if entry.ends_with(']') {
        return Some(format!("{entry}.config.{field}"));
    }
    if entry.ends_with(".localRateLimit") {
        return field
            .strip_prefix("limits")
            .map(|rest| format!("{entry}{rest}"));
    }
    if entry.ends_with(".mcpAuthorization") || entry.ends_with(".authorization") {
        return Some(format!("{entry}.{field}"));
    }
    None
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some((at, snippet)) => write!(f, "{at}: {}: {}\n{snippet}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for BuildError {}

pub struct Gateway {
    /// The config this was built from, for `/config_dump`.
    pub config: Config,
    pub binds: Vec<BindRuntime>,
    pub admin_addr: SocketAddr,
    pub max_body: usize,
    pub client_limits: ClientLimits,
    pub access_log: AccessLogFormat,
    /// How long `SIGTERM`'s drain keeps accepting, and waits at most.
    pub termination: Termination,
}

/// What protects the listeners from slow or oversized clients; read for
/// each new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no request open this long is closed
    /// (HTTP/1.1 between requests: `header_read_timeout`).
    pub idle_timeout: Duration,
}

pub struct BindRuntime {
    pub addr: SocketAddr,
    /// Set when the bind's listeners are HTTPS.
    pub tls: Option<TlsAcceptor>,
    pub listeners: Vec<ListenerRuntime>,
}

pub struct ListenerRuntime {
    pub name: String,
    pub hostname: Option<String>,
    pub routes: RouteTable<Arc<RouteRuntime>>,
}

pub struct RouteRuntime {
    pub name: String,
    pub chain: Chain,
    /// Buffer the request body: some plugin reads it.
    pub buffer_request: bool,
    /// Buffer the response body: some plugin reads it.
    pub buffer_response: bool,
    pub request_headers: Option<HeaderEdits>,
    /// Applied to every answer the route gives, errors included.
    pub response_headers: Option<HeaderEdits>,
    pub cors: Option<CorsPolicy>,
    pub csrf: Option<CsrfPolicy>,
    pub rewrite: Option<UrlRewrite>,
    pub redirect: Option<RequestRedirect>,
    pub direct: Option<DirectResponse>,
    pub request_timeout: Option<Duration>,
    pub backend_timeout: Option<Duration>,
    pub retry: Option<crate::config::schema::Retry>,
    pub backends: Vec<WeightedBackend>,
    /// `jwtAuth`: verify the bearer token before the plugin chain.
    pub jwt: Option<Arc<JwtAuth>>,
    /// `mcpAuthentication.resourceMetadata` in RFC 9728's spelling, served
    /// as the route's protected-resource metadata.
    pub resource_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `basicAuth`: users and passwords from htpasswd text.
    pub basic: Option<Arc<BasicAuth>>,
    /// `apiKey`: the caller presents one of the route's keys.
    pub api_key: Option<Arc<ApiKeyAuth>>,
    /// `backendAuth: passthrough`: forward the client's token upstream.
    pub forward_token: bool,
    /// An `ai:` backend: the route is an LLM gateway.
    pub llm: Option<Arc<LlmBackend>>,
    /// An `mcp:` backend: the route is one MCP server federating its targets.
    pub mcp: Option<Arc<McpBackend>>,
}

#[derive(Clone)]
pub struct WeightedBackend {
    pub target: HostPort,
    /// `target` as text, for logs and error bodies.
    pub name: Arc<str>,
    pub weight: u32,
    /// How to reach `target`, settled once rather than per request; `None`
    /// if it is not a URI authority (forwarding then fails with a 502 naming it).
    pub upstream: Option<Upstream>,
    /// Where upgrade requests (WebSocket) go: HTTP/1.1 connections to
    /// `target`; `None` when the route speaks HTTP/2 only to it.
    pub upgrades: Option<Arc<HostConns>>,
    /// `backendAuth`: what the gateway adds to authenticate to it.
    pub credential: Option<Arc<Credential>>,
}

impl WeightedBackend {
    pub fn new(target: HostPort, weight: u32, transport: &Transport) -> Self {
        let name: Arc<str> = target.to_string().into();
        let upstream = name.parse().ok().map(|a| transport.upstream(a));
        WeightedBackend {
            target,
            name,
            weight,
            upstream,
            upgrades: None,
            credential: None,
        }
    }

    /// Authenticate to this backend with `credential`.
    pub fn authenticated(mut self, credential: Option<&Arc<Credential>>) -> Self {
        self.credential = credential.cloned();
        self
    }

    /// Let upgrade requests reach this backend over `via`, an HTTP/1.1 transport.
    pub fn upgradable(mut self, via: &Transport) -> Self {
        if let Ok(authority) = self.name.parse()
            && let Upstream::Http1(conns) = via.upstream(authority)
        {
            self.upgrades = Some(conns);
        }
        self
    }
}

impl Gateway {
    /// Build the running gateway: loads (and snapshots) every plugin, so this
    /// runs off the request path, and any failure leaves the old config serving.
    pub fn build(
        config: Config,
        engine: &PolicyEngine,
        clients: &HttpBackends,
    ) -> Result<Gateway, BuildError> {
        let source = config.source.clone();
        Self::build_unlocated(config, engine, clients).map_err(|e| e.locate(source.as_deref()))
    }

    fn build_unlocated(
        config: Config,
        engine: &PolicyEngine,
        clients: &HttpBackends,
    ) -> Result<Gateway, BuildError> {
        let err = BuildError::new;
        let has_mcp = config
            .binds
            .iter()
            .flat_map(|b| &b.listeners)
            .flat_map(|l| &l.routes)
            .flat_map(|r| &r.backends)
            .any(|b| matches!(b.kind, BackendKind::Mcp(_)));
        // The per-process key (and the log line saying so) only where MCP sessions exist.
        let sealer = match session_sealer(&config)? {
            Some(sealer) => sealer,
            None if has_mcp => Sealer::process_default(),
            None => Arc::new(Sealer::new(&[0; 32])),
        };
        // Addresses and TLS first (shared with `waiting`), then the routes.
        let mut gateway = Gateway::waiting(config)?;
        for (b, bind) in gateway.config.binds.iter().enumerate() {
            let mut listeners = Vec::new();
            for (l, listener) in bind.listeners.iter().enumerate() {
                let at = format!("binds[{b}].listeners[{l}]");
                let listener_name = listener
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("listener{l}"));
                let mut routes = Vec::new();
                for (r, route) in listener.routes.iter().enumerate() {
                    let at = format!("{at}.routes[{r}]");
                    let name = route
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("{listener_name}/route{r}"));
                    let built = build_route(engine, clients, &sealer, listener, route, &name, &at)?;
                    let matchers = route
                        .matches
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            Matcher::from_config(m)
                                .map_err(|e| err(format!("{at}.matches[{i}]"), e))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    routes.push((Arc::new(built), route.hostnames.clone(), matchers));
                }
                listeners.push(ListenerRuntime {
                    name: listener_name,
                    hostname: listener.hostname.clone(),
                    routes: RouteTable::new(routes),
                });
            }
            gateway.binds[b].listeners = listeners;
        }
        Ok(gateway)
    }

    /// A gateway that listens where `config` says but has no routes: the
    /// first step of [`Gateway::build`], and what runs (not ready, 503) while
    /// a plugin cannot be fetched yet.
    pub fn waiting(config: Config) -> Result<Gateway, BuildError> {
        let admin = config
            .config
            .admin_addr
            .as_deref()
            .unwrap_or(DEFAULT_ADMIN_ADDR);
        let admin_addr: SocketAddr = admin.parse().map_err(|_| {
            BuildError::new(
                "config.adminAddr".into(),
                format!("'{admin}' is not an ip:port address"),
            )
        })?;
        let mut binds = Vec::new();
        for (b, bind) in config.binds.iter().enumerate() {
            let ip: IpAddr = bind
                .address
                .as_deref()
                .unwrap_or("0.0.0.0")
                .parse()
                .map_err(|_| {
                    BuildError::new(format!("binds[{b}].address"), "not an IP address".into())
                })?;
            binds.push(BindRuntime {
                addr: SocketAddr::new(ip, bind.port),
                tls: bind_tls(bind, b)?,
                listeners: Vec::new(),
            });
        }
        Ok(Gateway {
            admin_addr,
            max_body: config.config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            client_limits: ClientLimits {
                max_header_bytes: config
                    .config
                    .max_header_bytes
                    .map_or(DEFAULT_MAX_HEADER_BYTES, |b| b.0),
                header_read_timeout: config
                    .config
                    .header_read_timeout
                    .map_or(DEFAULT_HEADER_READ_TIMEOUT, |d| d.0),
                idle_timeout: config
                    .config
                    .idle_timeout
                    .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0),
            },
            access_log: config.config.access_log,
            termination: termination(&config)?,
            binds,
            config,
        })
    }

    /// What `wardgate validate` checks beyond the schema: every plugin entry
    /// loads with its config (built-in sugar included, when the built-in
    /// exists). Features this build parses but does not serve yet come back
    /// as notes; `run` refuses them.
    pub fn check(config: &Config, engine: &PolicyEngine) -> Result<Vec<String>, BuildError> {
        Self::check_unlocated(config, engine).map_err(|e| e.locate(config.source.as_deref()))
    }

    fn check_unlocated(config: &Config, engine: &PolicyEngine) -> Result<Vec<String>, BuildError> {
        // A configured key is checked; without one, checking needs no real key.
        let checking = session_sealer(config)?.unwrap_or_else(|| Arc::new(Sealer::new(&[0; 32])));
        termination(config)?;
        let mut notes = Vec::new();
        let clients = HttpBackends::new(Duration::from_secs(10), 0);
        for (b, bind) in config.binds.iter().enumerate() {
            bind_tls(bind, b)?;
            for (l, listener) in bind.listeners.iter().enumerate() {
                let at = format!("binds[{b}].listeners[{l}]");
                for (r, route) in listener.routes.iter().enumerate() {
                    let at = format!("{at}.routes[{r}]");
                    let name = route.name.clone().unwrap_or_else(|| format!("route{r}"));
                    for (spec, origin) in &sugar::expand_located(listener, route) {
                        let missing = spec.source.is_none()
                            && crate::policy::builtin::get(&spec.name).is_none();
                        if missing {
                            notes.push(format!("{at}: needs the built-in plugin '{}', which this build does not include yet", spec.name));
                            continue;
                        }
                        engine
                            .load(spec, &name, protocol_of(route))
                            .map_err(|e| BuildError::plugin(located(&at, origin), e))?;
                    }
                    let p = &route.policies;
                    let version = p.http.as_ref().map(|h| h.version).unwrap_or_default();
                    clients
                        .transport(p.backend_tls.as_ref(), version, connect_timeout(p, &at)?)
                        .map_err(|e| BuildError::new(format!("{at}.policies.backendTLS"), e))?;
                    jwt_auth(p, &at)?;
                    resource_metadata(route, &at)?;
                    basic_auth(p, &at)?;
                    api_key_auth(p, &at)?;
                    llm_backend(route, &clients, &at)?;
                    let credential = backend_credential(route, &at)?;
                    mcp_backend(route, &clients, &checking, credential.as_ref(), &name, &at)?;
                }
            }
        }
        Ok(notes)
    }

    /// The listener of the `bind`-th bind that answers for `host`.
    pub fn listener(&self, bind: usize, host: Option<&str>) -> Option<&ListenerRuntime> {
        let bind = self.binds.get(bind)?;
        let named = bind.listeners.iter().find(|l| {
            l.hostname
                .as_deref()
                .is_some_and(|p| host.is_some_and(|h| crate::route::hostname_matches(p, h)))
        });
        named.or_else(|| bind.listeners.iter().find(|l| l.hostname.is_none()))
    }
}

/// The TLS acceptor of an HTTPS bind: every listener's certificates, in
/// order. A bind is either all HTTPS or all HTTP, since the first bytes of
/// a connection decide which before any Host header is seen.
fn bind_tls(bind: &Bind, b: usize) -> Result<Option<TlsAcceptor>, BuildError> {
    let https =
        |l: &crate::config::schema::Listener| l.protocol == Protocol::Https || l.tls.is_some();
    if !bind.listeners.iter().any(https) {
        return Ok(None);
    }
    let mut certs = Vec::new();
    for (l, listener) in bind.listeners.iter().enumerate() {
        let at = format!("binds[{b}].listeners[{l}]");
        let Some(settings) = listener.tls.as_ref() else {
            let message = if https(listener) {
                "an HTTPS listener needs `tls: {cert, key}`"
            } else {
                "this bind has HTTPS listeners; all listeners of one port must be HTTPS"
            };
            return Err(BuildError::new(at, message.into()));
        };
        let pairs = std::iter::once((settings.cert.as_str(), settings.key.as_str())).chain(
            settings
                .certificates
                .iter()
                .map(|p| (p.cert.as_str(), p.key.as_str())),
        );
        for (i, (cert, key)) in pairs.enumerate() {
            let path = match i {
                0 => format!("{at}.tls"),
                n => format!("{at}.tls.certificates[{}]", n - 1),
            };
            certs
                .push(tls::load_cert(cert, key).map_err(|message| BuildError::new(path, message))?);
        }
    }
    tls::acceptor(certs)
        .map(Some)
        .map_err(|message| BuildError::new(format!("binds[{b}]"), message))
}

/// The config path of a chain entry: under the route, or, for a listener's
/// default chain, under the listener.
fn located(route_at: &str, origin: &str) -> String {
    match origin.strip_prefix("listener.") {
        Some(rest) => {
            let listener_at = route_at
                .rsplit_once(".routes[")
                .map_or(route_at, |(l, _)| l);
            format!("{listener_at}.{rest}")
        }
        None => format!("{route_at}.{origin}"),
    }
}

/// `jwtAuth`, or `mcpAuthentication` (the same checks, for an MCP route).
fn jwt_auth(
    p: &crate::config::schema::Policies,
    at: &str,
) -> Result<Option<Arc<JwtAuth>>, BuildError> {
    let (config, path) = match (&p.jwt_auth, &p.mcp_authentication) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(BuildError::new(
                format!("{at}.policies.mcpAuthentication"),
                "give `jwtAuth` or `mcpAuthentication`, not both".into(),
            ));
        }
        (Some(config), None) => (config.clone(), format!("{at}.policies.jwtAuth")),
        (None, Some(mcp)) => {
            let path = format!("{at}.policies.mcpAuthentication");
            let config = mcp_as_jwt(mcp)
                .map_err(|(field, e)| BuildError::new(format!("{path}{field}"), e))?;
            (config, path)
        }
    };
    let fetcher = Fetcher::global();
    JwtAuth::from_config(&config, &fetcher)
        .map(|j| Some(Arc::new(j)))
        .map_err(|e| BuildError::new(path, e))
}

/// `mcpAuthentication.resourceMetadata`, its keys as RFC 9728 spells them
/// (`scopesSupported` → `scopes_supported`); the policy itself needs the
/// route to be an MCP one.
fn resource_metadata(
    route: &crate::config::schema::Route,
    at: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, BuildError> {
    let Some(mcp) = &route.policies.mcp_authentication else {
        return Ok(None);
    };
    if !route
        .backends
        .iter()
        .any(|b| matches!(b.kind, BackendKind::Mcp(_)))
    {
        return Err(BuildError::new(
            format!("{at}.policies.mcpAuthentication"),
            "needs an `mcp` backend on the route; use `jwtAuth` for other routes".into(),
        ));
    }
    let snake = |key: &str| {
        key.chars().fold(String::new(), |mut out, c| {
            if c.is_ascii_uppercase() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            out
        })
    };
    Ok(mcp
        .resource_metadata
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (snake(k), v.clone())).collect()))
}

/// The token checks `mcpAuthentication` asks for, as a `jwtAuth`. Adapting
/// an authorization server that does not follow the MCP spec (agentgateway's
/// `provider` facades for Keycloak, Auth0, ...) is not done here.
fn mcp_as_jwt(
    mcp: &crate::config::schema::McpAuthentication,
) -> Result<crate::config::schema::JwtAuth, (String, String)> {
    let adapter = [
        ("provider", mcp.provider.is_some()),
        ("clientId", mcp.client_id.is_some()),
        ("clientSecret", mcp.client_secret.is_some()),
        ("relaySigningKey", mcp.relay_signing_key.is_some()),
    ];
    if let Some((key, _)) = adapter.iter().find(|(_, set)| *set) {
        return Err((
            format!(".{key}"),
            format!(
                "configures an authorization-server adapter (agentgateway's provider facades), \
                 which Wardgate does not offer: point `issuer` at a server that publishes its own \
                 metadata (RFC 8414) and client registration, and remove `{key}`"
            ),
        ));
    }
    let jwks = mcp.jwks.clone().ok_or((
        String::new(),
        "needs `jwks` ({url: ...}, {file: ...} or {inline: ...}): keys are not derived from a provider"
            .to_string(),
    ))?;
    Ok(crate::config::schema::JwtAuth {
        issuer: Some(mcp.issuer.clone()),
        audiences: mcp.audiences.clone(),
        jwks: Some(jwks),
        mode: mcp.mode,
        providers: Vec::new(),
        jwt_validation_options: mcp.jwt_validation_options.clone(),
    })
}

/// The route's `tcp.connectTimeout`, which must be above zero.
fn connect_timeout(
    p: &crate::config::schema::Policies,
    at: &str,
) -> Result<Option<Duration>, BuildError> {
    match p.connect_timeout() {
        Some(d) if d.is_zero() => Err(BuildError::new(
            format!("{at}.policies.tcp.connectTimeout"),
            "must be above zero".into(),
        )),
        other => Ok(other),
    }
}

fn basic_auth(
    p: &crate::config::schema::Policies,
    at: &str,
) -> Result<Option<Arc<BasicAuth>>, BuildError> {
    let Some(config) = &p.basic_auth else {
        return Ok(None);
    };
    let path = format!("{at}.policies.basicAuth");
    let text = match (&config.htpasswd, &config.htpasswd_file) {
        (Some(source), None) => crate::backend::credentials::resolve_secret(source, None),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read htpasswd file {file}: {e}")),
        (Some(_), Some(_)) => Err("give `htpasswd` or `htpasswdFile`, not both".into()),
        (None, None) => Err("needs `htpasswd` (text or `{file: path}`) or `htpasswdFile`".into()),
    }
    .map_err(|e| BuildError::new(path.clone(), e))?;
    BasicAuth::from_config(config, &text)
        .map(|b| Some(Arc::new(b)))
        .map_err(|e| BuildError::new(path, e))
}

fn api_key_auth(
    p: &crate::config::schema::Policies,
    at: &str,
) -> Result<Option<Arc<ApiKeyAuth>>, BuildError> {
    let Some(config) = &p.api_key else {
        return Ok(None);
    };
    ApiKeyAuth::from_config(config)
        .map(|a| Some(Arc::new(a)))
        .map_err(|e| BuildError::new(format!("{at}.policies.apiKey"), e))
}

/// `SIGTERM`'s drain times, checked against each other.
fn termination(config: &Config) -> Result<Termination, BuildError> {
    Termination::from_settings(&config.config)
        .map_err(|(path, message)| BuildError::new(path, message))
}

/// `config.session.key`, when set, as the sealer of MCP session ids.
fn session_sealer(config: &Config) -> Result<Option<Arc<Sealer>>, BuildError> {
    let Some(session) = &config.config.session else {
        return Ok(None);
    };
    let at = "config.session.key".to_string();
    let hex = crate::backend::credentials::resolve_secret(&session.key, None)
        .map_err(|e| BuildError::new(at.clone(), e))?;
    Sealer::from_hex(&hex)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| BuildError::new(at, e))
}

/// The route's `mcp:` backend, if it has one; it must be the only backend.
/// The route's `backendAuth` for its HTTP backends and MCP targets, as a
/// bearer token (AI backends build their providers' credentials).
fn backend_credential(
    route: &crate::config::schema::Route,
    at: &str,
) -> Result<Option<Arc<Credential>>, BuildError> {
    let auth = route.policies.backend_auth.as_ref();
    let credential = match route.backends.first().map(|b| &b.kind) {
        Some(BackendKind::Host(_) | BackendKind::Mcp(_)) => {
            Credential::build(auth, KeyHeader::Bearer, Takes::Configured, None)
                .map_err(|(field, message)| BuildError::new(format!("{at}.{field}"), message))?
        }
        _ => Credential::None,
    };
    Ok((!credential.is_none()).then(|| Arc::new(credential)))
}

fn mcp_backend(
    route: &crate::config::schema::Route,
    clients: &HttpBackends,
    sealer: &Arc<Sealer>,
    credential: Option<&Arc<Credential>>,
    name: &str,
    at: &str,
) -> Result<Option<Arc<McpBackend>>, BuildError> {
    let Some((i, config)) = route
        .backends
        .iter()
        .enumerate()
        .find_map(|(i, b)| match &b.kind {
            BackendKind::Mcp(m) => Some((i, m)),
            _ => None,
        })
    else {
        return Ok(None);
    };
    if route.backends.len() > 1 {
        return Err(BuildError::new(
            format!("{at}.backends"),
            "an mcp backend must be the route's only backend; list several servers under `mcp.targets`".into(),
        ));
    }
    // `tcp.connectTimeout` was checked with the route's transport.
    let connect_timeout = route.policies.connect_timeout();
    McpBackend::build(
        config,
        clients,
        sealer.clone(),
        credential,
        matches!(
            route.policies.backend_auth,
            Some(crate::config::schema::BackendAuth::Passthrough(_))
        ),
        name,
        connect_timeout,
    )
    .map(|b| Some(Arc::new(b)))
    .map_err(|(field, message)| BuildError::new(format!("{at}.backends[{i}].mcp.{field}"), message))
}

/// What the route's backend speaks, for plugins (`route.protocol`): an MCP
/// or AI backend is the route's only one, so its first backend decides.
fn protocol_of(route: &crate::config::schema::Route) -> BackendProtocol {
    match route.backends.first().map(|b| &b.kind) {
        Some(BackendKind::Mcp(_)) => BackendProtocol::Mcp,
        Some(BackendKind::Ai(_)) => BackendProtocol::Llm,
        _ => BackendProtocol::Http,
    }
}

/// The route's `ai:` backend, if it has one; it must be the only backend.
fn llm_backend(
    route: &crate::config::schema::Route,
    clients: &HttpBackends,
    at: &str,
) -> Result<Option<Arc<LlmBackend>>, BuildError> {
    let ai: Vec<(usize, &crate::config::schema::AiBackend)> = route
        .backends
        .iter()
        .enumerate()
        .filter_map(|(i, b)| match &b.kind {
            BackendKind::Ai(ai) => Some((i, &**ai)),
            _ => None,
        })
        .collect();
    let Some(&(i, config)) = ai.first() else {
        return Ok(None);
    };
    if route.backends.len() > 1 {
        return Err(BuildError::new(
            format!("{at}.backends"),
            "an ai backend must be the route's only backend; list several providers under `ai.groups` for failover".into(),
        ));
    }
    LlmBackend::build(config, &route.policies, clients, None)
        .map(|b| Some(Arc::new(b)))
        .map_err(|(field, message)| {
            let path = match field.strip_prefix(crate::backend::llm::ROUTE_PREFIX) {
                Some(route_field) => format!("{at}.{route_field}"),
                None => format!("{at}.backends[{i}].ai.{field}"),
            };
            BuildError::new(path, message)
        })
}

fn build_route(
    engine: &PolicyEngine,
    clients: &HttpBackends,
    sealer: &Arc<Sealer>,
    listener: &crate::config::schema::Listener,
    route: &crate::config::schema::Route,
    name: &str,
    at: &str,
) -> Result<RouteRuntime, BuildError> {
    let err = BuildError::new;
    let p = &route.policies;
    let mut plugins = Vec::new();
    for (spec, origin) in &sugar::expand_located(listener, route) {
        let plugin = engine
            .load(spec, name, protocol_of(route))
            .map_err(|e| BuildError::plugin(located(at, origin), e))?;
        plugins.push(Arc::new(plugin));
    }
    let chain = Chain::new(plugins);
    let any = |hook: Hooks| chain.plugins().iter().any(|p| p.implements(hook));

    let version = p.http.as_ref().map(|h| h.version).unwrap_or_default();
    let transport = clients
        .transport(p.backend_tls.as_ref(), version, connect_timeout(p, at)?)
        .map_err(|e| err(format!("{at}.policies.backendTLS"), e))?;
    let upgrades = clients
        .upgrade_transport(p.backend_tls.as_ref(), version, connect_timeout(p, at)?)
        .map_err(|e| err(format!("{at}.policies.backendTLS"), e))?;
    let credential = backend_credential(route, at)?;
    let mut backends = Vec::new();
    for backend in &route.backends {
        // MCP and AI backends have their own runtimes, built below.
        if let BackendKind::Host(target) = &backend.kind {
            let weighted = WeightedBackend::new(target.clone(), backend.weight, &transport)
                .authenticated(credential.as_ref());
            backends.push(match &upgrades {
                Some(via) => weighted.upgradable(via),
                None => weighted,
            });
        }
    }
    let llm = llm_backend(route, clients, at)?;
    let mcp = mcp_backend(route, clients, sealer, credential.as_ref(), name, at)?;
    let jwt = jwt_auth(p, at)?;
    let resource_metadata = resource_metadata(route, at)?;
    let basic = basic_auth(p, at)?;
    let api_key = api_key_auth(p, at)?;
    let edits = |m: &Option<crate::config::schema::HeaderModifier>, key: &str| {
        m.as_ref()
            .map(HeaderEdits::from_config)
            .transpose()
            .map_err(|e| err(format!("{at}.policies.{key}"), e))
    };
    Ok(RouteRuntime {
        name: name.to_string(),
        // An LLM route reads the body to parse the chat request.
        buffer_request: any(Hooks::HTTP_REQUEST) || llm.is_some() || mcp.is_some(),
        buffer_response: any(Hooks::HTTP_RESPONSE),
        chain,
        request_headers: edits(&p.request_header_modifier, "requestHeaderModifier")?,
        response_headers: edits(&p.response_header_modifier, "responseHeaderModifier")?,
        cors: p.cors.as_ref().map(CorsPolicy::from_config),
        csrf: p.csrf.as_ref().map(CsrfPolicy::from_config),
        rewrite: p.url_rewrite.clone(),
        redirect: p.request_redirect.clone(),
        direct: p.direct_response.clone(),
        request_timeout: p
            .timeout
            .as_ref()
            .and_then(|t| t.request_timeout)
            .map(|d| d.0),
        backend_timeout: p
            .timeout
            .as_ref()
            .and_then(|t| t.backend_request_timeout)
            .map(|d| d.0),
        retry: p.retry.clone(),
        backends,
        jwt,
        resource_metadata,
        basic,
        api_key,
        forward_token: matches!(
            p.backend_auth,
            Some(crate::config::schema::BackendAuth::Passthrough(_))
        ),
        llm,
        mcp,
    })
}
