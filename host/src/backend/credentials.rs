//! What the gateway adds to authenticate to a backend (`backendAuth`): a key
//! in the header the backend reads, a Google or Entra ID token, which may
//! have to be fetched, or an AWS signature over the finished request; the
//! last three are added last ([`Credential::sign`]).

use http::{HeaderMap, HeaderName, HeaderValue, Request};

use super::aws_signer::AwsSigner;
use super::azure_credentials::{AzureTokens, COGNITIVE_SERVICES_SCOPE};
use super::google_credentials::GoogleCredentials;
use super::google_id_tokens::GoogleIdTokens;
use crate::config::schema::{AwsAuth, BackendAuth, GcpAuth, GcpTokenType, HostPort, SecretSource};

pub enum Credential {
    None,
    /// A key, set on every request.
    Header(HeaderName, HeaderValue),
    /// A Google access token, cached and fetched when near expiry.
    Google(GoogleCredentials),
    /// A Google ID token for the backend's audience, likewise.
    GoogleId(GoogleIdTokens),
    /// An AWS SigV4 signature.
    Aws(AwsSigner),
    /// A Microsoft Entra ID token, cached and fetched when near expiry.
    Azure(AzureTokens),
}

/// What a backend takes when `backendAuth` names nothing, and what it can
/// take at all.
#[derive(Clone, Copy)]
pub enum Takes<'a> {
    /// What `backendAuth` gives; nothing otherwise.
    Configured,
    /// A Google access token by default (Vertex).
    Google,
    /// AWS signatures for this region by default (Bedrock).
    Aws { region: &'a str },
    /// What `backendAuth` gives, with Entra ID tokens for this audience
    /// (an Azure provider's: Foundry's differs from Azure OpenAI's).
    Azure { scope: &'static str },
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
    /// The credential `auth` names; with none, the backend's default
    /// (`takes`). Keys and key files are read here, once.
    pub fn build(
        auth: Option<&BackendAuth>,
        key_header: KeyHeader,
        takes: Takes,
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
            Some(BackendAuth::Aws(aws)) => match takes {
                Takes::Aws { region } => Credential::Aws(AwsSigner::build(aws, region, base_dir)?),
                _ => {
                    return Err((
                        "policies.backendAuth.aws".into(),
                        "AWS signatures are made for Bedrock providers only (a signature covers the whole body, which the gateway streams to other backends)".into(),
                    ));
                }
            },
            Some(BackendAuth::Azure(azure)) => {
                let scope = match takes {
                    Takes::Azure { scope } => scope,
                    _ => COGNITIVE_SERVICES_SCOPE,
                };
                Credential::Azure(AzureTokens::build(azure, scope, base_dir)?)
            }
            None => match takes {
                Takes::Google => Credential::Google(GoogleCredentials::ambient()),
                Takes::Aws { region } => {
                    Credential::Aws(AwsSigner::build(&AwsAuth::default(), region, base_dir)?)
                }
                Takes::Configured | Takes::Azure { .. } => Credential::None,
            },
            Some(BackendAuth::Passthrough(_)) => Credential::None,
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

    /// Set the credential that may need fetching (a Google token), or
    /// that covers the finished request (an AWS signature), for a request
    /// to `target`.
    pub async fn sign<B>(&self, req: &mut Request<B>, target: &HostPort) -> Result<(), String> {
        let token = match self {
            Credential::Google(google) => google.bearer().await?,
            Credential::GoogleId(google) => google.bearer(&target.host).await?,
            Credential::Azure(azure) => azure.bearer().await?,
            Credential::Aws(signer) => return signer.sign(req, &host_header(target)).await,
            Credential::None | Credential::Header(..) => return Ok(()),
        };
        req.headers_mut().insert(http::header::AUTHORIZATION, token);
        Ok(())
    }
}

/// The Host header a request to `target` carries: the name, and the port
/// unless it is HTTP's or HTTPS's.
fn host_header(target: &HostPort) -> String {
    let name = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    match target.port {
        80 | 443 => name,
        port => format!("{name}:{port}"),
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
