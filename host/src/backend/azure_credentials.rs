//! Microsoft Entra ID access tokens for Azure OpenAI and Azure AI Foundry
//! (`backendAuth: azure`), fetched as the Azure SDKs fetch them: a service
//! principal's secret or a Kubernetes workload identity's federated token
//! traded at the tenant's token endpoint, a managed identity's token from
//! the App Service endpoint or the instance metadata service, or the Azure
//! CLI's signed-in account. Tokens are kept until five minutes before they
//! expire, one fetch at a time.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;

use super::credentials::{FieldError, resolve_secret};
use super::env;
use super::expiring::{Expiring, bearer};
use super::fetch::send;
use crate::config::schema::{AzureAuth, AzureExplicit, AzureUserAssignedIdentity};

/// Azure OpenAI's audience; Foundry projects take [`FOUNDRY_SCOPE`].
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
pub const FOUNDRY_SCOPE: &str = "https://ai.azure.com/.default";
/// Tokens are replaced this long before they expire (as the Azure SDKs do).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const AUTHORITY_DEFAULT: &str = "https://login.microsoftonline.com";
const IMDS_DEFAULT: &str = "http://169.254.169.254";
const NO_WORKLOAD: &str = "workload identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID in the gateway's environment";

pub struct AzureTokens {
    source: Source,
    scope: String,
    cache: Expiring<HeaderValue>,
}

/// Where tokens come from.
#[derive(Debug)]
enum Source {
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// Workload identity: the federated token (re-read each time, as
    /// Kubernetes rotates it) is the client's assertion.
    Workload {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// App Service, Container Apps and Functions: `IDENTITY_ENDPOINT`.
    AppService {
        endpoint: String,
        header: String,
        identity: Option<(&'static str, String)>,
    },
    /// A virtual machine's (or AKS node's) instance metadata service.
    Instance {
        endpoint: String,
        identity: Option<(&'static str, String)>,
    },
    Cli,
}

/// A token endpoint's or managed identity's answer. Expiry comes as
/// seconds left (`expires_in`) or a Unix time (`expires_on`), as a number
/// or a string depending on the service.
#[derive(serde::Deserialize)]
struct TokenJson {
    #[serde(alias = "accessToken")]
    access_token: String,
    expires_in: Option<serde_json::Value>,
    expires_on: Option<serde_json::Value>,
}

fn authority() -> String {
    env("AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| AUTHORITY_DEFAULT.to_string())
        .trim_end_matches('/')
        .to_string()
}

impl AzureTokens {
    /// Tokens for `scope` from the source `auth` names (a client secret
    /// is read here, once).
    pub fn build(
        auth: &AzureAuth,
        scope: &str,
        base_dir: Option<&std::path::Path>,
    ) -> Result<Self, FieldError> {
        let field = |at: &str| format!("policies.backendAuth.azure{at}");
        let source = match auth {
            AzureAuth::ExplicitConfig(AzureExplicit::ClientSecret(c)) => Source::ClientSecret {
                authority: authority(),
                tenant: c.tenant_id.clone(),
                client_id: c.client_id.clone(),
                secret: resolve_secret(&c.client_secret, base_dir)
                    .map_err(|e| (field(".explicitConfig.clientSecret.clientSecret"), e))?,
            },
            AzureAuth::ExplicitConfig(AzureExplicit::WorkloadIdentity(_)) => workload()
                .and_then(|w| w.ok_or_else(|| NO_WORKLOAD.to_string()))
                .map_err(|e| (field(""), e))?,
            AzureAuth::ExplicitConfig(AzureExplicit::ManagedIdentity(m)) => {
                managed(m.user_assigned_identity.as_ref())
            }
            AzureAuth::Implicit(_) => implicit().map_err(|e| (field(""), e))?,
            AzureAuth::DeveloperImplicit(_) => Source::Cli,
        };
        Ok(AzureTokens {
            source,
            scope: scope.to_string(),
            cache: Expiring::new(REFRESH_MARGIN),
        })
    }

    /// `Authorization: Bearer <token>`, fetched when none is kept or the
    /// kept one is about to expire.
    pub async fn bearer(&self) -> Result<HeaderValue, String> {
        let what = format!("Entra ID token ({})", self.source);
        self.cache
            .get(what, || async {
                let token = self.fetch().await?;
                let life = expires_in(&token).unwrap_or(Duration::from_secs(3600));
                let value =
                    bearer(&token.access_token).map_err(|e| format!("{}: {e}", self.source))?;
                Ok((value, life))
            })
            .await
    }

    async fn fetch(&self) -> Result<TokenJson, String> {
        let source = &self.source;
        let failed = |e: String| format!("{source}: {e}");
        // Managed identities and the CLI name the resource, not the scope.
        let resource = self.scope.trim_end_matches("/.default");
        let req = match source {
            Source::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => token_request(
                authority,
                tenant,
                &[
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("scope", &self.scope),
                ],
            ),
            Source::Workload {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = std::fs::read_to_string(token_file)
                    .map_err(|e| failed(format!("cannot read {}: {e}", token_file.display())))?;
                token_request(
                    authority,
                    tenant,
                    &[
                        ("client_id", client_id),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", assertion.trim()),
                        ("scope", &self.scope),
                    ],
                )
            }
            Source::AppService {
                endpoint,
                header,
                identity,
            } => Request::get(with_query(endpoint, "2019-08-01", resource, identity))
                .header("x-identity-header", header.as_str())
                .body(Full::default()),
            Source::Instance { endpoint, identity } => Request::get(with_query(
                &format!("{endpoint}/metadata/identity/oauth2/token"),
                "2018-02-01",
                resource,
                identity,
            ))
            .header("metadata", "true")
            .body(Full::default()),
            Source::Cli => return cli_token(resource).await.map_err(failed),
        }
        .map_err(|e| failed(e.to_string()))?;
        let body = send(req).await.map_err(failed)?;
        serde_json::from_slice(&body).map_err(|e| failed(format!("not a token: {e}")))
    }
}

/// The Azure SDKs' default chain, decided once from the environment: a
/// service principal's secret, workload identity, then managed identity.
fn implicit() -> Result<Source, String> {
    if let (Some(tenant), Some(client_id), Some(secret)) = (
        env("AZURE_TENANT_ID"),
        env("AZURE_CLIENT_ID"),
        env("AZURE_CLIENT_SECRET"),
    ) {
        return Ok(Source::ClientSecret {
            authority: authority(),
            tenant,
            client_id,
            secret,
        });
    }
    if let Some(workload) = workload()? {
        return Ok(workload);
    }
    // A user-assigned identity is named by AZURE_CLIENT_ID, as in the SDKs.
    let identity = env("AZURE_CLIENT_ID").map(AzureUserAssignedIdentity::ClientId);
    Ok(managed(identity.as_ref()))
}

fn workload() -> Result<Option<Source>, String> {
    let Some(token_file) = env("AZURE_FEDERATED_TOKEN_FILE") else {
        return Ok(None);
    };
    let (Some(tenant), Some(client_id)) = (env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID")) else {
        return Err(
            "AZURE_FEDERATED_TOKEN_FILE is set without AZURE_TENANT_ID and AZURE_CLIENT_ID".into(),
        );
    };
    Ok(Some(Source::Workload {
        authority: authority(),
        tenant,
        client_id,
        token_file: token_file.into(),
    }))
}

fn managed(identity: Option<&AzureUserAssignedIdentity>) -> Source {
    if let (Some(endpoint), Some(header)) = (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
        // App Service spells the identity parameters its own way.
        let identity = identity.map(|i| match i {
            AzureUserAssignedIdentity::ClientId(v) => ("client_id", v.clone()),
            AzureUserAssignedIdentity::ObjectId(v) => ("principal_id", v.clone()),
            AzureUserAssignedIdentity::ResourceId(v) => ("mi_res_id", v.clone()),
        });
        return Source::AppService {
            endpoint,
            header,
            identity,
        };
    }
    let identity = identity.map(|i| match i {
        AzureUserAssignedIdentity::ClientId(v) => ("client_id", v.clone()),
        AzureUserAssignedIdentity::ObjectId(v) => ("object_id", v.clone()),
        AzureUserAssignedIdentity::ResourceId(v) => ("msi_res_id", v.clone()),
    });
    Source::Instance {
        // The Azure SDKs' override of the metadata service's address.
        endpoint: env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            .unwrap_or_else(|| IMDS_DEFAULT.to_string())
            .trim_end_matches('/')
            .to_string(),
        identity,
    }
}

/// A client-credentials request to the tenant's v2.0 token endpoint.
fn token_request(
    authority: &str,
    tenant: &str,
    fields: &[(&str, &str)],
) -> http::Result<Request<Full<Bytes>>> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    for (k, v) in fields {
        form.append_pair(k, v);
    }
    let tenant: String = form_urlencoded::byte_serialize(tenant.as_bytes()).collect();
    Request::post(format!("{authority}/{tenant}/oauth2/v2.0/token"))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form.finish())))
}

fn with_query(
    base: &str,
    version: &str,
    resource: &str,
    identity: &Option<(&'static str, String)>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("api-version", version);
    query.append_pair("resource", resource);
    if let Some((name, value)) = identity {
        query.append_pair(name, value);
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", query.finish())
}

/// The Azure CLI's token for the signed-in account.
async fn cli_token(resource: &str) -> Result<TokenJson, String> {
    let out = tokio::process::Command::new("az")
        .args([
            "account",
            "get-access-token",
            "--output",
            "json",
            "--resource",
            resource,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run az: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("az failed: {}", err.trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("az gave no token: {e}"))
}

/// What is left of a token's life, from whichever field its source gives.
fn expires_in(t: &TokenJson) -> Option<Duration> {
    let number = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    if let Some(secs) = t.expires_in.as_ref().and_then(number) {
        return Some(Duration::from_secs(secs));
    }
    let at = t.expires_on.as_ref().and_then(number)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::ClientSecret {
                authority, tenant, ..
            } => write!(f, "client secret at {authority}/{tenant}"),
            Source::Workload {
                authority, tenant, ..
            } => write!(f, "workload identity at {authority}/{tenant}"),
            Source::AppService { endpoint, .. } => write!(f, "managed identity at {endpoint}"),
            Source::Instance { endpoint, .. } => {
                write!(f, "managed identity at {endpoint} (instance metadata)")
            }
            Source::Cli => write!(f, "the Azure CLI"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_any_field_the_services_use() {
        let token = |v: serde_json::Value| serde_json::from_value::<TokenJson>(v).unwrap();
        let left = |v| expires_in(&token(v)).unwrap().as_secs();
        // The token endpoint: a number of seconds; IMDS: a string.
        assert_eq!(
            left(serde_json::json!({"access_token": "t", "expires_in": 3599})),
            3599
        );
        assert_eq!(
            left(serde_json::json!({"access_token": "t", "expires_in": "86399"})),
            86399
        );
        // App Service and the CLI: a Unix time.
        let soon = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let from_cli = left(serde_json::json!({"accessToken": "t", "expires_on": soon}));
        assert!((598..=600).contains(&from_cli), "{from_cli}");
        assert_eq!(
            with_query(
                "http://h/t",
                "2018-02-01",
                "https://ai.azure.com",
                &Some(("object_id", "o 1".into()))
            ),
            "http://h/t?api-version=2018-02-01&resource=https%3A%2F%2Fai.azure.com&object_id=o+1"
        );
    }
}
