//! One LLM provider of a route: where it lives, which API it speaks, and
//! the credentials the gateway adds for it.

use std::sync::Arc;

use http::HeaderValue;

use super::api::{Api, Flavor, Wire};
use super::converse::Guardrail;
use crate::backend::aws_signer::PayloadDigest;
use crate::backend::azure_credentials;
use crate::backend::credentials::{Credential, KeyHeader, Takes};
use crate::backend::http::HttpBackends;
use crate::config::schema::{
    AiProvider, AzureParams, AzureResourceType, BackendAuth, BackendTls, BedrockParams, HostPort,
    HttpVersion, NamedAiProvider, ProviderParams, VertexParams,
};
use crate::gateway::WeightedBackend;

const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic's API on Vertex names its version in the body.
const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

pub struct Provider {
    /// Name in logs and metrics (`openai`, `anthropic`, or the configured name).
    pub name: String,
    /// `openai`, `anthropic`, `gemini`, `azure`, `vertex`: the provider
    /// family, for plugins and metrics.
    pub family: &'static str,
    /// The API it speaks; a Vertex provider speaks Anthropic's for Claude
    /// models (see [`Provider::flavor_for`]).
    pub flavor: Flavor,
    pub upstream: WeightedBackend,
    /// Path the API paths go under (`/v1` for OpenAI-style APIs, empty for Anthropic's).
    base_path: String,
    /// A query every upstream request carries (Azure's `api-version`).
    query: Option<String>,
    path_override: Option<String>,
    /// Replaces the model of every request.
    pub model: Option<String>,
    credential: Credential,
    /// The APIs besides chat it serves (see [`Api::Native`]).
    natives: &'static [&'static str],
    /// Vertex AI: paths and bodies depend on the model (Claude or not).
    vertex: bool,
    /// Amazon Bedrock: chat goes through Converse (`flavor` is then only
    /// the shape its errors are read in).
    bedrock: Option<Bedrock>,
}

#[derive(Debug, Clone)]
struct Bedrock {
    region: String,
    guardrail: Option<Guardrail>,
}

/// What a kind of provider is: its API, where it lives by default, how it
/// takes a key, and which APIs besides chat it serves.
struct Preset {
    flavor: Flavor,
    family: &'static str,
    model: Option<String>,
    url: Option<String>,
    key: KeyHeader,
    natives: &'static [&'static str],
    query: Option<String>,
    vertex: bool,
    bedrock: Option<Bedrock>,
}

const OPENAI_NATIVES: &[&str] = &["responses", "embeddings", "models", "realtime"];

/// The name a provider goes by when the config gives none.
pub fn default_name(provider: &AiProvider) -> &'static str {
    match provider {
        AiProvider::OpenAi(_) => "openai",
        AiProvider::Anthropic(_) => "anthropic",
        AiProvider::OpenAiCompatible(_) => "openai-compatible",
        AiProvider::Gemini(_) => "gemini",
        AiProvider::Azure(_) => "azure",
        AiProvider::Vertex(_) => "vertex",
        AiProvider::Bedrock(_) => "bedrock",
    }
}

/// A config error: the field under the provider, and the message.
type FieldError = (String, String);

fn preset(provider: &AiProvider) -> Result<Preset, FieldError> {
    let openai = |family, p: &ProviderParams, default: Option<&str>, natives| Preset {
        flavor: Flavor::OpenAi,
        family,
        model: p.model.clone(),
        url: p.base_url.clone().or(default.map(str::to_string)),
        key: KeyHeader::Bearer,
        natives,
        query: None,
        vertex: false,
        bedrock: None,
    };
    Ok(match provider {
        AiProvider::OpenAi(p) => openai(
            "openai",
            p,
            Some("https://api.openai.com/v1"),
            OPENAI_NATIVES,
        ),
        AiProvider::OpenAiCompatible(p) => {
            if p.base_url.is_none() {
                return Err((
                    "provider.openAICompatible.baseUrl".into(),
                    "an openAICompatible provider needs `baseUrl` (e.g. http://localhost:8000/v1)"
                        .into(),
                ));
            }
            openai("openai", p, None, OPENAI_NATIVES)
        }
        // Gemini's OpenAI-compatible endpoint has no Responses or Realtime API.
        AiProvider::Gemini(p) => openai(
            "gemini",
            p,
            Some("https://generativelanguage.googleapis.com/v1beta/openai"),
            &["embeddings", "models"],
        ),
        AiProvider::Anthropic(p) => Preset {
            flavor: Flavor::Anthropic,
            family: "anthropic",
            model: p.model.clone(),
            url: Some(
                p.base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.anthropic.com".into()),
            ),
            key: KeyHeader::XApiKey,
            natives: &["messages/count_tokens", "models"],
            query: None,
            vertex: false,
            bedrock: None,
        },
        AiProvider::Azure(p) => azure(p)?,
        AiProvider::Vertex(p) => vertex(p)?,
        AiProvider::Bedrock(p) => bedrock(p)?,
    })
}

/// Amazon Bedrock's runtime API in the region; chat only, through Converse.
fn bedrock(p: &BedrockParams) -> Result<Preset, FieldError> {
    let region_like =
        |s: &str| path_segment(s, &['-']) && s.chars().all(|c| !c.is_ascii_uppercase());
    if !region_like(&p.region) {
        return Err((
            "provider.bedrock.region".into(),
            format!("'{}' is not an AWS region (e.g. us-east-1)", p.region),
        ));
    }
    let guardrail = match (&p.guardrail_identifier, &p.guardrail_version) {
        (Some(identifier), Some(version)) => Some(Guardrail {
            identifier: identifier.clone(),
            version: version.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err((
                "provider.bedrock.guardrailVersion".into(),
                "a guardrail needs its version (a number, or DRAFT)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "provider.bedrock.guardrailIdentifier".into(),
                "a guardrail version needs the guardrail's identifier".into(),
            ));
        }
    };
    Ok(Preset {
        flavor: Flavor::OpenAi,
        family: "bedrock",
        model: p.model.clone(),
        url: Some(format!(
            "https://bedrock-runtime.{}.amazonaws.com",
            p.region
        )),
        // Bedrock API keys are bearer tokens.
        key: KeyHeader::Bearer,
        // Embeddings go through InvokeModel (see `bedrock_embeddings`), token
        // counts through CountTokens (see `bedrock_count_tokens`).
        natives: &["embeddings", "messages/count_tokens"],
        query: None,
        vertex: false,
        bedrock: Some(Bedrock {
            region: p.region.clone(),
            guardrail,
        }),
    })
}

/// A model id as one path segment: Bedrock's ids hold `:` and ARNs `/`,
/// which are escaped as AWS's own clients escape them.
fn model_segment(model: &str) -> String {
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(model, ESCAPED).to_string()
}

/// Vertex AI: `{region}-aiplatform.googleapis.com` (`aiplatform.googleapis.com`
/// for `global`), the project's location as the base path.
fn vertex(p: &VertexParams) -> Result<Preset, FieldError> {
    let name_like = |s: &str| path_segment(s, &['-', '_', '.', ':']);
    if !name_like(&p.project_id) {
        return Err((
            "provider.vertex.projectId".into(),
            format!("'{}' is not a Google Cloud project id", p.project_id),
        ));
    }
    let region = p.region.as_deref().unwrap_or("global");
    if !name_like(region) {
        return Err((
            "provider.vertex.region".into(),
            format!("'{region}' is not a Google Cloud location (e.g. us-east5, or global)"),
        ));
    }
    let host = match region {
        "global" => "aiplatform.googleapis.com".to_string(),
        r => format!("{r}-aiplatform.googleapis.com"),
    };
    let claude = p.model.as_deref().is_some_and(|m| claude_id(m).is_some());
    Ok(Preset {
        flavor: if claude {
            Flavor::Anthropic
        } else {
            Flavor::OpenAi
        },
        family: "vertex",
        model: p.model.clone(),
        url: Some(format!(
            "https://{host}/v1/projects/{}/locations/{region}",
            p.project_id
        )),
        key: KeyHeader::Bearer,
        natives: &["embeddings", "messages/count_tokens"],
        query: None,
        vertex: true,
        bedrock: None,
    })
}

/// The model id of a Claude model as Vertex names it in the path
/// (`claude-sonnet-4-5@20250929`), from the model or its `anthropic/` or
/// `publishers/anthropic/models/` form; `None` for other models, and for
/// ids that are no model name (a client's `../` must not steer the path).
fn claude_id(model: &str) -> Option<&str> {
    let id = match model
        .strip_prefix("publishers/anthropic/models/")
        .or_else(|| model.strip_prefix("anthropic/"))
    {
        Some(id) => id,
        None => model.strip_prefix("claude").map(|_| model)?,
    };
    path_segment(id, &['-', '_', '.', '@']).then_some(id)
}

/// Whether `s` can go into a path as one segment as it is: letters, digits
/// and `extra`, not empty and not starting with a dot (no `..`).
fn path_segment(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Azure's endpoints: the v1 API (`/openai/v1/...`, also as `preview`), a
/// deployment's dated API (`/openai/deployments/{model}/...?api-version=`),
/// or a Foundry project's (`/api/projects/{project}/openai/v1/...`).
fn azure(p: &AzureParams) -> Result<Preset, FieldError> {
    let name = p.resource_name.trim();
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err((
            "provider.azure.resourceName".into(),
            format!("'{name}' is not an Azure resource name (letters, digits and '-')"),
        ));
    }
    let version = p.api_version.as_deref().unwrap_or("v1");
    let (host, path, query) = match p.resource_type {
        AzureResourceType::Foundry => {
            let project = p.project_name.as_deref().unwrap_or(name);
            (
                format!("{name}.services.ai.azure.com"),
                format!("/api/projects/{project}/openai/v1"),
                None,
            )
        }
        AzureResourceType::OpenAi => {
            let host = format!("{name}.openai.azure.com");
            match version {
                "v1" => (host, "/openai/v1".to_string(), None),
                "preview" => (
                    host,
                    "/openai/v1".to_string(),
                    Some("api-version=preview".to_string()),
                ),
                dated => {
                    let Some(deployment) = &p.model else {
                        return Err((
                            "provider.azure.model".into(),
                            format!(
                                "apiVersion '{dated}' addresses a deployment: name it in `model`, or use apiVersion v1"
                            ),
                        ));
                    };
                    (
                        host,
                        format!("/openai/deployments/{deployment}"),
                        Some(format!("api-version={dated}")),
                    )
                }
            }
        }
    };
    Ok(Preset {
        flavor: Flavor::OpenAi,
        family: "azure",
        model: p.model.clone(),
        url: Some(format!("https://{host}{path}")),
        key: KeyHeader::ApiKey,
        natives: &["responses", "embeddings", "models"],
        query,
        vertex: false,
        bedrock: None,
    })
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
        let preset = preset(&named.provider)?;
        let flavor = preset.flavor;
        let url = preset.url.as_deref().unwrap_or_default();
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
        let takes = match (&preset.bedrock, preset.vertex, &named.provider) {
            (Some(b), _, _) => Takes::Aws { region: &b.region },
            (None, true, _) => Takes::Google,
            (None, false, AiProvider::Azure(a)) => Takes::Azure {
                scope: match a.resource_type {
                    AzureResourceType::Foundry => azure_credentials::FOUNDRY_SCOPE,
                    AzureResourceType::OpenAi => azure_credentials::COGNITIVE_SERVICES_SCOPE,
                },
            },
            (None, false, _) => Takes::Configured,
        };
        let credential = Credential::build(auth, preset.key, takes, base_dir)?;
        let mut upstream = WeightedBackend::new(at.target, 1, &transport);
        // Realtime sessions (OpenAI's) are WebSocket upgrades.
        if preset.natives.contains(&"realtime")
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
            family: preset.family,
            flavor,
            upstream,
            base_path: at.base_path,
            query: preset.query,
            path_override: named.path_override.clone(),
            model: preset.model,
            credential,
            natives: preset.natives,
            vertex: preset.vertex,
            bedrock: preset.bedrock,
        })
    }

    /// What this provider speaks for a chat call sending `model`.
    pub fn wire_for(&self, model: &str) -> Wire {
        if self.bedrock.is_some() {
            Wire::Converse
        } else if self.vertex_gemini(model).is_some() {
            Wire::Gemini
        } else {
            Wire::Chat(self.flavor_for(model))
        }
    }

    /// The model id in the path when a Vertex provider serves `model` with
    /// Gemini's own API (`gemini-…`, or `google/gemini-…` as the OpenAI
    /// endpoint spells it); other publishers' models go to that endpoint.
    fn vertex_gemini<'m>(&'m self, model: &'m str) -> Option<&'m str> {
        if !self.vertex || self.path_override.is_some() {
            return None;
        }
        let model = self.model.as_deref().unwrap_or(model);
        let id = model
            .strip_prefix("publishers/google/models/")
            .or_else(|| model.strip_prefix("google/"))
            .unwrap_or(model);
        (id.starts_with("gemini-") && path_segment(id, &['-', '_', '.', '@'])).then_some(id)
    }

    /// Amazon Bedrock: chat through Converse, embeddings through InvokeModel.
    pub fn is_bedrock(&self) -> bool {
        self.bedrock.is_some()
    }

    /// Bedrock's path of `action` (`invoke`, `count-tokens`) for `model`
    /// (unless the provider fixes one).
    pub fn model_uri(&self, model: &str, action: &str) -> String {
        let model = self.model.as_deref().unwrap_or(model);
        format!("{}/model/{}/{action}", self.base_path, model_segment(model))
    }

    /// The guardrail every Converse call of this provider names.
    pub fn guardrail(&self) -> Option<&Guardrail> {
        self.bedrock.as_ref()?.guardrail.as_ref()
    }

    /// Let the request's signature cover `body` (AWS signatures do).
    pub fn digest_body<B>(&self, req: &mut http::Request<B>, body: &[u8]) {
        if matches!(self.credential, Credential::Aws(_)) {
            req.extensions_mut().insert(PayloadDigest::of(body));
        }
    }

    /// The API this provider speaks for a request sending `model`.
    pub fn flavor_for(&self, model: &str) -> Flavor {
        match self.vertex_claude(model) {
            Some(_) => Flavor::Anthropic,
            None => self.flavor,
        }
    }

    /// The model id in the path when a Vertex provider serves `model` with
    /// Anthropic's API.
    fn vertex_claude<'m>(&'m self, model: &'m str) -> Option<&'m str> {
        if !self.vertex {
            return None;
        }
        claude_id(self.model.as_deref().unwrap_or(model))
    }

    /// The upstream path of a chat call sending `model`.
    pub fn chat_uri(&self, model: &str, stream: bool) -> String {
        if self.bedrock.is_some() && self.path_override.is_none() {
            let method = if stream {
                "converse-stream"
            } else {
                "converse"
            };
            let model = self.model.as_deref().unwrap_or(model);
            return format!("{}/model/{}/{method}", self.base_path, model_segment(model));
        }
        if let Some(id) = self.vertex_gemini(model) {
            let method = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            return format!("{}/publishers/google/models/{id}:{method}", self.base_path);
        }
        match self.vertex_claude(model) {
            Some(id) if self.path_override.is_none() => {
                let method = if stream {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                };
                format!(
                    "{}/publishers/anthropic/models/{id}:{method}",
                    self.base_path
                )
            }
            _ => self.uri_for(Api::Chat(self.flavor), "", None),
        }
    }

    /// Last changes to a chat body in the provider's API: Anthropic's API on
    /// Vertex takes the model from the path and its version in the body.
    pub fn finish_body(&self, model: &str, body: &mut serde_json::Map<String, serde_json::Value>) {
        if self.vertex_claude(model).is_some() {
            body.remove("model");
            body.insert("anthropic_version".into(), VERTEX_ANTHROPIC_VERSION.into());
        }
    }

    /// The body of another API call as the provider takes it: Vertex's
    /// token count wants Anthropic's version in the body too.
    pub fn native_body(&self, api: Api, body: &bytes::Bytes) -> bytes::Bytes {
        if !(self.vertex && api == Api::Native("messages/count_tokens")) {
            return body.clone();
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.entry("anthropic_version")
                    .or_insert_with(|| VERTEX_ANTHROPIC_VERSION.into());
                serde_json::Value::Object(map).to_string().into()
            }
            // Not ours to fix: the provider says what is wrong with it.
            _ => body.clone(),
        }
    }

    /// Whether this provider can answer `api` (translating if need be).
    pub fn serves(&self, api: Api) -> bool {
        match api {
            Api::Chat(_) => true,
            // Other calls are forwarded as they come; Bedrock's would need
            // to be signed, and its API has no client here.
            Api::Other => self.bedrock.is_none(),
            Api::Native(endpoint) => self.natives.contains(&endpoint),
        }
    }

    /// The upstream path (and query) for `api`, with the client's query
    /// when it is to be kept; `client_path` is kept for passthrough.
    pub fn uri_for(&self, api: Api, client_path: &str, client_query: Option<&str>) -> String {
        let path = self.path_for(api, client_path);
        let query = match (self.query.as_deref(), client_query) {
            (Some(own), Some(client)) => format!("?{client}&{own}"),
            (Some(q), None) | (None, Some(q)) => format!("?{q}"),
            (None, None) => String::new(),
        };
        format!("{path}{query}")
    }

    /// The upstream path for `api`; `client_path` is kept for passthrough.
    fn path_for(&self, api: Api, client_path: &str) -> String {
        let endpoint = match api {
            Api::Chat(_) => {
                if let Some(p) = &self.path_override {
                    return p.clone();
                }
                match (self.vertex, self.flavor) {
                    (true, _) => "endpoints/openapi/chat/completions",
                    (false, Flavor::OpenAi) => "chat/completions",
                    (false, Flavor::Anthropic) => "messages",
                }
            }
            Api::Native("embeddings") if self.vertex => "endpoints/openapi/embeddings",
            // Vertex counts tokens for every Claude model at one path.
            Api::Native("messages/count_tokens") if self.vertex => {
                "publishers/anthropic/models/count-tokens:rawPredict"
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

    /// Put the gateway's key on an upstream request (a Google token comes
    /// later, from [`Provider::sign`]).
    pub fn authorize(&self, headers: &mut http::HeaderMap, passthrough: bool) {
        if !passthrough {
            headers.remove(http::header::AUTHORIZATION);
            headers.remove("x-api-key");
            headers.remove("api-key");
        }
        self.credential.authorize(headers);
        if self.vertex {
            // Vertex takes Anthropic's version in the body (as Anthropic's
            // own Vertex client sends it).
            headers.remove("anthropic-version");
        }
        if self.flavor == Flavor::Anthropic
            && !self.vertex
            && !headers.contains_key("anthropic-version")
        {
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }

    /// Add the credentials that must be fetched (a Google token) or cover
    /// the finished request (an AWS signature).
    pub async fn sign<B>(&self, req: &mut http::Request<B>) -> Result<(), String> {
        self.credential.sign(req, &self.upstream.target).await
    }
}

pub type Providers = Vec<Arc<Provider>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn azure_params(version: Option<&str>, model: Option<&str>) -> AzureParams {
        AzureParams {
            model: model.map(str::to_string),
            resource_name: "contoso".into(),
            resource_type: AzureResourceType::OpenAi,
            api_version: version.map(str::to_string),
            project_name: None,
        }
    }

    #[test]
    fn azure_endpoints_follow_the_api_version_and_resource_type() {
        let v1 = azure(&azure_params(None, None)).unwrap();
        assert_eq!(
            v1.url.as_deref(),
            Some("https://contoso.openai.azure.com/openai/v1")
        );
        assert_eq!(v1.query, None);
        let preview = azure(&azure_params(Some("preview"), None)).unwrap();
        assert_eq!(preview.query.as_deref(), Some("api-version=preview"));
        let dated = azure(&azure_params(Some("2024-10-21"), Some("gpt-4o-prod"))).unwrap();
        assert_eq!(
            dated.url.as_deref(),
            Some("https://contoso.openai.azure.com/openai/deployments/gpt-4o-prod")
        );
        assert_eq!(dated.query.as_deref(), Some("api-version=2024-10-21"));
        let (field, message) = azure(&azure_params(Some("2024-10-21"), None))
            .err()
            .unwrap();
        assert_eq!(field, "provider.azure.model");
        assert!(message.contains("addresses a deployment"), "{message}");

        let mut foundry = azure_params(None, None);
        foundry.resource_type = AzureResourceType::Foundry;
        assert_eq!(
            azure(&foundry).unwrap().url.as_deref(),
            Some("https://contoso.services.ai.azure.com/api/projects/contoso/openai/v1")
        );
        foundry.project_name = Some("agents".into());
        assert!(
            azure(&foundry)
                .unwrap()
                .url
                .unwrap()
                .ends_with("/api/projects/agents/openai/v1")
        );
        let mut bad = azure_params(None, None);
        bad.resource_name = "contoso.openai.azure.com/x".into();
        assert_eq!(azure(&bad).err().unwrap().0, "provider.azure.resourceName");
    }

    fn vertex_provider(model: Option<&str>, region: Option<&str>) -> Provider {
        let named = NamedAiProvider {
            name: "vx".into(),
            provider: AiProvider::Vertex(VertexParams {
                model: model.map(str::to_string),
                region: region.map(str::to_string),
                project_id: "proj-1".into(),
            }),
            host_override: None,
            path_override: None,
            path_prefix: None,
            policies: None,
        };
        let clients = HttpBackends::new(std::time::Duration::from_secs(1), 0);
        Provider::build(&named, None, None, None, &clients, None).unwrap()
    }

    #[test]
    fn vertex_sends_claude_and_gemini_models_to_their_apis_and_others_to_the_openai_endpoint() {
        assert_eq!(
            claude_id("claude-sonnet-4-5@20250929"),
            Some("claude-sonnet-4-5@20250929")
        );
        assert_eq!(
            claude_id("anthropic/claude-opus-4-1"),
            Some("claude-opus-4-1")
        );
        assert_eq!(
            claude_id("publishers/anthropic/models/claude-haiku-4-5"),
            Some("claude-haiku-4-5")
        );
        assert_eq!(claude_id("google/gemini-2.5-flash"), None);
        assert_eq!(claude_id("claude-x/../../../projects/other"), None);
        assert_eq!(claude_id("anthropic/..%2f"), None);

        let any = vertex_provider(None, Some("us-east5"));
        assert_eq!(
            any.upstream.target.host,
            "us-east5-aiplatform.googleapis.com"
        );
        let base = "/v1/projects/proj-1/locations/us-east5";
        assert_eq!(any.flavor_for("claude-haiku-4-5"), Flavor::Anthropic);
        assert_eq!(any.flavor_for("google/gemini-2.5-pro"), Flavor::OpenAi);
        assert_eq!(
            any.chat_uri("claude-haiku-4-5", true),
            format!("{base}/publishers/anthropic/models/claude-haiku-4-5:streamRawPredict")
        );
        assert_eq!(any.wire_for("google/gemini-2.5-pro"), Wire::Gemini);
        assert_eq!(
            any.chat_uri("google/gemini-2.5-pro", true),
            format!("{base}/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            any.chat_uri("gemini-3-flash", false),
            format!("{base}/publishers/google/models/gemini-3-flash:generateContent")
        );
        // Other publishers' models, and ids that are no path segment, go
        // to the OpenAI-compatible endpoint.
        for model in [
            "meta/llama-4-scout-17b-16e-instruct-maas",
            "gemini-x/../../other",
        ] {
            assert_eq!(any.wire_for(model), Wire::Chat(Flavor::OpenAi), "{model}");
            assert_eq!(
                any.chat_uri(model, true),
                format!("{base}/endpoints/openapi/chat/completions")
            );
        }
        assert_eq!(
            any.uri_for(Api::Native("messages/count_tokens"), "", None),
            format!("{base}/publishers/anthropic/models/count-tokens:rawPredict")
        );
        assert_eq!(
            any.uri_for(Api::Native("embeddings"), "", None),
            format!("{base}/endpoints/openapi/embeddings")
        );
        assert!(!any.serves(Api::RESPONSES) && !any.serves(Api::REALTIME));

        let mut body = serde_json::Map::new();
        body.insert("model".into(), "claude-haiku-4-5".into());
        any.finish_body("claude-haiku-4-5", &mut body);
        assert_eq!(
            serde_json::Value::Object(body),
            serde_json::json!({"anthropic_version": "vertex-2023-10-16"})
        );
        let mut body = serde_json::Map::new();
        body.insert("model".into(), "google/gemini-2.5-pro".into());
        any.finish_body("google/gemini-2.5-pro", &mut body);
        assert_eq!(body["model"], "google/gemini-2.5-pro");

        // A configured Claude model decides for every request; global is
        // the location without a region in the host.
        let claude = vertex_provider(Some("anthropic/claude-sonnet-4-5"), None);
        assert_eq!(claude.flavor, Flavor::Anthropic);
        assert_eq!(claude.upstream.target.host, "aiplatform.googleapis.com");
        assert_eq!(
            claude.chat_uri("gpt-4o", false),
            "/v1/projects/proj-1/locations/global/publishers/anthropic/models/claude-sonnet-4-5:rawPredict"
        );
        // No anthropic-version header: Vertex takes it in the body.
        let mut headers = http::HeaderMap::new();
        claude.authorize(&mut headers, false);
        assert!(headers.is_empty());

        let mut bad = VertexParams {
            model: None,
            region: Some("us east".into()),
            project_id: "p".into(),
        };
        assert_eq!(vertex(&bad).err().unwrap().0, "provider.vertex.region");
        bad.region = None;
        bad.project_id = "a/b".into();
        assert_eq!(vertex(&bad).err().unwrap().0, "provider.vertex.projectId");
    }

    #[test]
    fn bedrock_speaks_converse_at_the_models_escaped_path() {
        let params = BedrockParams {
            model: None,
            region: "eu-west-1".into(),
            guardrail_identifier: None,
            guardrail_version: None,
        };
        let named = NamedAiProvider {
            name: "br".into(),
            provider: AiProvider::Bedrock(params.clone()),
            host_override: None,
            path_override: None,
            path_prefix: None,
            policies: None,
        };
        let clients = HttpBackends::new(std::time::Duration::from_secs(1), 0);
        let auth = BackendAuth::Aws(crate::config::schema::AwsAuth {
            access_key_id: Some(crate::config::schema::SecretSource::Value("AKID".into())),
            secret_access_key: Some(crate::config::schema::SecretSource::Value("s".into())),
            ..Default::default()
        });
        let p = Provider::build(&named, Some(&auth), None, None, &clients, None).unwrap();
        assert_eq!(
            p.upstream.target.host,
            "bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(p.wire_for("anything"), Wire::Converse);
        assert_eq!(
            p.chat_uri("anthropic.claude-3-5-haiku-20241022-v1:0", false),
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
        );
        // An ARN's slashes stay in its one segment; `..` cannot climb.
        assert_eq!(
            p.chat_uri("arn:aws:bedrock:eu-west-1:1:inference-profile/x", true),
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A1%3Ainference-profile%2Fx/converse-stream"
        );
        assert_eq!(p.chat_uri("../../x", false), "/model/..%2F..%2Fx/converse");
        assert!(p.serves(Api::Chat(Flavor::Anthropic)));
        assert!(!p.serves(Api::Other) && !p.serves(Api::Native("models")));
        // Embeddings go to InvokeModel, the model escaped as for Converse.
        assert!(p.serves(Api::Native("embeddings")));
        assert_eq!(
            p.model_uri("amazon.titan-embed-text-v2:0", "invoke"),
            "/model/amazon.titan-embed-text-v2%3A0/invoke"
        );

        let mut req = http::Request::new(());
        p.digest_body(&mut req, b"{}");
        assert!(req.extensions().get::<PayloadDigest>().is_some());

        let mut bad = params.clone();
        bad.region = "US-EAST-1".into();
        assert_eq!(bedrock(&bad).err().unwrap().0, "provider.bedrock.region");
        let mut half = params;
        half.guardrail_identifier = Some("gr".into());
        assert_eq!(
            bedrock(&half).err().unwrap().0,
            "provider.bedrock.guardrailVersion"
        );
    }

    #[test]
    fn each_kind_of_provider_serves_its_own_apis() {
        let params = ProviderParams::default();
        let gemini = preset(&AiProvider::Gemini(params.clone())).unwrap();
        assert_eq!(
            gemini.url.as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta/openai")
        );
        assert!(matches!(gemini.key, KeyHeader::Bearer));
        assert!(!gemini.natives.contains(&"responses") && !gemini.natives.contains(&"realtime"));
        let azure = preset(&AiProvider::Azure(azure_params(None, None))).unwrap();
        assert!(matches!(azure.key, KeyHeader::ApiKey));
        assert!(azure.natives.contains(&"responses") && !azure.natives.contains(&"realtime"));
        let anthropic = preset(&AiProvider::Anthropic(params.clone())).unwrap();
        assert_eq!(anthropic.natives, ["messages/count_tokens", "models"]);
        let (field, _) = preset(&AiProvider::OpenAiCompatible(params)).err().unwrap();
        assert_eq!(field, "provider.openAICompatible.baseUrl");
    }
}
