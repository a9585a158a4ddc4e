//! One LLM provider of a route: where it lives, which API it speaks, and
//! the credentials the gateway adds for it.

use std::sync::Arc;

use http::HeaderValue;

use super::api::{Api, Flavor};
use crate::backend::http::HttpBackends;
use crate::config::schema::{
    AiProvider, BackendAuth, BackendTls, HostPort, HttpVersion, NamedAiProvider, SecretSource,
};
use crate::gateway::WeightedBackend;

const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Provider {
    /// Name in logs and metrics (`openai`, `anthropic`, or the configured name).
    pub name: String,
    /// `openai` / `anthropic`: the provider family, for plugins and metrics.
    pub family: &'static str,
    pub flavor: Flavor,
    pub upstream: WeightedBackend,
    /// Path the API paths go under (`/v1` for OpenAI-style APIs, empty for Anthropic's).
    base_path: String,
    path_override: Option<String>,
    /// Replaces the model of every request.
    pub model: Option<String>,
    /// The header carrying the key: `Authorization: Bearer ...` or `x-api-key`.
    credential: Option<(http::HeaderName, HeaderValue)>,
}

/// Where a provider is reached, from its defaults and overrides.
struct Location {
    target: HostPort,
    tls: bool,
    base_path: String,
}

fn parse_base_url(url: &str) -> Result<Location, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("baseUrl '{url}' is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "baseUrl '{url}' must start with http:// or https://"
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("baseUrl '{url}' has no host"))?;
    Ok(Location {
        target: HostPort {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        },
        tls,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

/// Resolve a key: a literal, `$ENV` / `${ENV}`, or a file's trimmed contents.
pub fn resolve_secret(
    source: &SecretSource,
    base_dir: Option<&std::path::Path>,
) -> Result<String, String> {
    match source {
        SecretSource::Value(v) => {
            let name = v
                .strip_prefix("${")
                .and_then(|n| n.strip_suffix('}'))
                .or_else(|| v.strip_prefix('$'));
            match name {
                Some(name) => std::env::var(name)
                    .map_err(|_| format!("environment variable {name} is not set")),
                None => Ok(v.clone()),
            }
        }
        SecretSource::File { file } => {
            let path = match base_dir {
                Some(dir) => dir.join(file),
                None => file.into(),
            };
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))
        }
    }
}

impl Provider {
    /// Build a provider; `auth` and `tls` are the provider's own policies,
    /// falling back to the route's.
    pub fn build(
        named: &NamedAiProvider,
        auth: Option<&BackendAuth>,
        tls: Option<&BackendTls>,
        connect_timeout: Option<std::time::Duration>,
        clients: &HttpBackends,
        base_dir: Option<&std::path::Path>,
    ) -> Result<Provider, (String, String)> {
        let (flavor, family, params, default) = match &named.provider {
            AiProvider::OpenAi(p) => (
                Flavor::OpenAi,
                "openai",
                p,
                Some("https://api.openai.com/v1"),
            ),
            AiProvider::Anthropic(p) => (
                Flavor::Anthropic,
                "anthropic",
                p,
                Some("https://api.anthropic.com"),
            ),
            AiProvider::OpenAiCompatible(p) => (Flavor::OpenAi, "openai", p, None),
        };
        let url = params.base_url.as_deref().or(default).ok_or_else(|| {
            (
                "provider.openAICompatible.baseUrl".to_string(),
                "an openAICompatible provider needs `baseUrl` (e.g. http://localhost:8000/v1)"
                    .to_string(),
            )
        })?;
        let mut at = parse_base_url(url).map_err(|e| ("provider".to_string(), e))?;
        if let Some(host) = &named.host_override {
            // A bare host:port is plain HTTP unless backendTLS says otherwise.
            at.target =
                HostPort::try_from(host.clone()).map_err(|e| ("hostOverride".to_string(), e))?;
            at.tls = tls.is_some();
        }
        if let Some(prefix) = &named.path_prefix {
            at.base_path = prefix.trim_end_matches('/').to_string();
        }
        let tls_settings = match (at.tls, tls) {
            (true, Some(t)) => Some(t.clone()),
            (true, None) => Some(BackendTls::default()),
            (false, _) => None,
        };
        let transport = clients
            .transport(
                tls_settings.as_ref(),
                HttpVersion::default(),
                connect_timeout,
            )
            .map_err(|e| ("policies.backendTLS".to_string(), e))?;
        let credential = match auth {
            Some(BackendAuth::Key(source)) => {
                let key = resolve_secret(source, base_dir)
                    .map_err(|e| ("policies.backendAuth.key".to_string(), e))?;
                let (name, value) = match flavor {
                    Flavor::OpenAi => (http::header::AUTHORIZATION, format!("Bearer {key}")),
                    Flavor::Anthropic => (http::HeaderName::from_static("x-api-key"), key),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    (
                        "policies.backendAuth.key".to_string(),
                        "the key has characters a header cannot carry".to_string(),
                    )
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            _ => None,
        };
        let mut upstream = WeightedBackend::new(at.target, 1, &transport);
        // Realtime sessions (OpenAI's) are WebSocket upgrades.
        if flavor == Flavor::OpenAi
            && let Some(via) = clients
                .upgrade_transport(
                    tls_settings.as_ref(),
                    HttpVersion::default(),
                    connect_timeout,
                )
                .map_err(|e| ("policies.backendTLS".to_string(), e))?
        {
            upstream = upstream.upgradable(&via);
        }
        Ok(Provider {
            name: named.name.clone(),
            family,
            flavor,
            upstream,
            base_path: at.base_path,
            path_override: named.path_override.clone(),
            model: params.model.clone(),
            credential,
        })
    }

    /// Whether this provider can answer `api` (translating if need be).
    pub fn serves(&self, api: Api) -> bool {
        match api {
            Api::Chat(_) | Api::Other => true,
            Api::Native("messages/count_tokens") => self.flavor == Flavor::Anthropic,
            Api::Native("models") => true,
            Api::Native(_) => self.flavor == Flavor::OpenAi,
        }
    }

    /// The upstream path for `api`; `client_path` is kept for passthrough.
    pub fn path_for(&self, api: Api, client_path: &str) -> String {
        let endpoint = match api {
            Api::Chat(_) => {
                if let Some(p) = &self.path_override {
                    return p.clone();
                }
                match self.flavor {
                    Flavor::OpenAi => "chat/completions",
                    Flavor::Anthropic => "messages",
                }
            }
            Api::Native(endpoint) => endpoint,
            Api::Other => return client_path.to_string(),
        };
        let base = match (self.flavor, self.base_path.is_empty()) {
            // api.anthropic.com's paths carry their own /v1.
            (Flavor::Anthropic, true) => "/v1",
            _ => self.base_path.as_str(),
        };
        format!("{base}/{endpoint}")
    }

    /// Put the gateway's credentials on an upstream request.
    pub fn authorize(&self, headers: &mut http::HeaderMap, passthrough: bool) {
        if !passthrough {
            headers.remove(http::header::AUTHORIZATION);
            headers.remove("x-api-key");
        }
        if let Some((name, value)) = &self.credential {
            headers.insert(name.clone(), value.clone());
        }
        if self.flavor == Flavor::Anthropic && !headers.contains_key("anthropic-version") {
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }
}

pub type Providers = Vec<Arc<Provider>>;
