//! What the gateway adds to authenticate to a backend (`backendAuth`): a key
//! in the header the backend reads, or a Google access token, which may
//! have to be fetched and so is added last ([`Credential::sign`]).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::google_credentials::GoogleCredentials;
use super::google_id_tokens::GoogleIdTokens;
use crate::config::schema::{BackendAuth, GcpAuth, GcpTokenType, SecretSource};

pub enum Credential {
    None,
    /// A key, set on every request.
    Header(HeaderName, HeaderValue),
    /// A Google access token, cached and fetched when near expiry.
    Google(GoogleCredentials),
    /// A Google ID token for the backend's audience, likewise.
    GoogleId(GoogleIdTokens),
}

/// Where a backend reads a key.
#[derive(Clone, Copy)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// Anthropic's `x-api-key`.
    XApiKey,
    /// Azure's `api-key`.
    ApiKey,
}

/// A config error: the field under `policies` (`backendAuth.key`, ...), and
/// the message.
pub type FieldError = (String, String);

impl Credential {
    /// The credential `auth` names; with none, Google's when the backend
    /// takes Google credentials by default (Vertex). Keys and key files are
    /// read here, once.
    pub fn build(
        auth: Option<&BackendAuth>,
        key_header: KeyHeader,
        google_by_default: bool,
        base_dir: Option<&std::path::Path>,
    ) -> Result<Credential, FieldError> {
        Ok(match auth {
            Some(BackendAuth::Key(source)) => {
                let field = || "policies.backendAuth.key".to_string();
                let key = resolve_secret(source, base_dir).map_err(|e| (field(), e))?;
                let (name, value) = match key_header {
                    KeyHeader::Bearer => (http::header::AUTHORIZATION, format!("Bearer {key}")),
                    KeyHeader::XApiKey => (HeaderName::from_static("x-api-key"), key),
                    KeyHeader::ApiKey => (HeaderName::from_static("api-key"), key),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    (
                        field(),
                        "the key has characters a header cannot carry".to_string(),
                    )
                })?;
                value.set_sensitive(true);
                Credential::Header(name, value)
            }
            Some(BackendAuth::Gcp(GcpAuth {
                kind,
                audience,
                credential,
            })) => {
                let field = || "policies.backendAuth.gcp.credential".to_string();
                let json = match credential {
                    Some(source) => {
                        Some(resolve_secret(source, base_dir).map_err(|e| (field(), e))?)
                    }
                    None => None,
                };
                match kind.unwrap_or(GcpTokenType::AccessToken) {
                    GcpTokenType::AccessToken => {
                        if audience.is_some() {
                            return Err((
                                "policies.backendAuth.gcp.audience".into(),
                                "an audience is for ID tokens: add `type: idToken`".into(),
                            ));
                        }
                        Credential::Google(match json {
                            Some(json) => GoogleCredentials::service_account(&json)
                                .map_err(|e| (field(), e))?,
                            None => GoogleCredentials::ambient(),
                        })
                    }
                    GcpTokenType::IdToken => Credential::GoogleId(match json {
                        Some(json) => GoogleIdTokens::service_account(&json, audience.clone())
                            .map_err(|e| (field(), e))?,
                        None => GoogleIdTokens::ambient(audience.clone()),
                    }),
                }
            }
            None if google_by_default => Credential::Google(GoogleCredentials::ambient()),
            Some(BackendAuth::Passthrough(_)) | None => Credential::None,
        })
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Credential::None)
    }

    /// Set the key, if the credential is one.
    pub fn authorize(&self, headers: &mut HeaderMap) {
        if let Credential::Header(name, value) = self {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Set the credential that may need fetching, a Google token, for a
    /// request to `host`.
    pub async fn sign(&self, headers: &mut HeaderMap, host: &str) -> Result<(), String> {
        let token = match self {
            Credential::Google(google) => google.bearer().await?,
            Credential::GoogleId(google) => google.bearer(host).await?,
            Credential::None | Credential::Header(..) => return Ok(()),
        };
        headers.insert(http::header::AUTHORIZATION, token);
        Ok(())
    }
}

/// Resolve a secret: a literal, `$ENV` / `${ENV}`, or a file's trimmed contents.
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
