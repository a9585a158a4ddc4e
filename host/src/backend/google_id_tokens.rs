//! Google ID tokens (`backendAuth: {gcp: {type: idToken, audience?}}`) for
//! services that admit callers by them, such as Cloud Run behind IAM (an
//! MCP server deployed there). A service account key mints them: an
//! assertion naming the `target_audience`, signed with the key and traded
//! at its `token_uri`. On Google Cloud without a key, the metadata server
//! mints them. `gcp_auth` makes access tokens only, hence this module.
//! Tokens are kept per audience until a minute before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;

use super::expiring::{Expiring, bearer};
use super::fetch::send;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Google's ID tokens live an hour; assumed when a token's `exp` is unreadable.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

pub struct GoogleIdTokens {
    source: Source,
    /// The audience; by default `https://` and the backend's host.
    audience: Option<String>,
    cache: Mutex<HashMap<String, Arc<Expiring<HeaderValue>>>>,
}

enum Source {
    Key(Arc<ServiceAccountKey>),
    /// `GOOGLE_APPLICATION_CREDENTIALS` if it names a service account key,
    /// else the metadata server (`GCE_METADATA_HOST`, as Google's own
    /// libraries read it); looked at on each fetch, which is hourly.
    Ambient,
}

struct ServiceAccountKey {
    email: String,
    token_uri: String,
    key: jsonwebtoken::EncodingKey,
}

#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccountKey {
    fn parse(json: &str) -> Result<ServiceAccountKey, String> {
        let file: KeyFile = serde_json::from_str(json)
            .map_err(|e| format!("the credential is not a service account key (JSON): {e}"))?;
        super::google_credentials::require_service_account(file.kind.as_deref(), |other| {
            format!(
                "a credential of type '{other}' cannot mint ID tokens: use a service account key"
            )
        })?;
        let field = |v: Option<String>, name: &str| {
            v.ok_or_else(|| format!("the service account key has no `{name}`"))
        };
        let pem = field(file.private_key, "private_key")?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("the service account key's private_key is not an RSA key: {e}"))?;
        Ok(ServiceAccountKey {
            email: field(file.client_email, "client_email")?,
            token_uri: field(file.token_uri, "token_uri")?,
            key,
        })
    }
}

impl GoogleIdTokens {
    /// ID tokens minted by a service account key (its JSON).
    pub fn service_account(json: &str, audience: Option<String>) -> Result<Self, String> {
        Ok(Self::new(
            Source::Key(Arc::new(ServiceAccountKey::parse(json)?)),
            audience,
        ))
    }

    /// ID tokens from the process's credentials (see [`Source::Ambient`]).
    pub fn ambient(audience: Option<String>) -> Self {
        Self::new(Source::Ambient, audience)
    }

    fn new(source: Source, audience: Option<String>) -> Self {
        GoogleIdTokens {
            source,
            audience,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// `Bearer <ID token>` for a request to `host`.
    pub async fn bearer(&self, host: &str) -> Result<HeaderValue, String> {
        let audience = match &self.audience {
            Some(a) => a.clone(),
            None => format!("https://{host}"),
        };
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .entry(audience.clone())
                .or_insert_with(|| Arc::new(Expiring::new(REFRESH_MARGIN)))
                .clone()
        };
        // One fetch per audience at a time; the others wait for its token.
        slot.get("Google ID token", || async {
            let token = self.fetch(&audience).await?;
            let header = bearer(&token).map_err(|e| format!("the Google ID token: {e}"))?;
            Ok((header, lifetime(&token)))
        })
        .await
    }

    async fn fetch(&self, audience: &str) -> Result<String, String> {
        match &self.source {
            Source::Key(key) => from_key(key, audience).await,
            Source::Ambient => match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(path) => {
                    let json = std::fs::read_to_string(&path).map_err(|e| {
                        format!("cannot read GOOGLE_APPLICATION_CREDENTIALS ({path:?}): {e}")
                    })?;
                    from_key(&ServiceAccountKey::parse(&json)?, audience).await
                }
                None => from_metadata(audience).await,
            },
        }
    }
}

/// Trade a signed assertion naming `audience` for an ID token.
async fn from_key(key: &ServiceAccountKey, audience: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": key.email,
        "aud": key.token_uri,
        "target_audience": audience,
        "iat": now,
        "exp": now + 3600,
    });
    let assertion = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key.key,
    )
    .map_err(|e| format!("signing the assertion failed: {e}"))?;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", JWT_BEARER)
        .append_pair("assertion", &assertion)
        .finish();
    let req = Request::post(&key.token_uri)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| format!("token_uri '{}': {e}", key.token_uri))?;
    let body = send(req).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
    answer
        .get("id_token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the token endpoint's answer has no id_token".to_string())
}

/// Ask the metadata server of the Google Cloud machine we run on.
async fn from_metadata(audience: &str) -> Result<String, String> {
    let host = std::env::var("GCE_METADATA_HOST")
        .unwrap_or_else(|_| "metadata.google.internal".to_string());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("audience", audience)
        .append_pair("format", "full")
        .finish();
    let uri = format!(
        "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity?{query}"
    );
    let req = Request::get(&uri)
        .header("metadata-flavor", "Google")
        .body(Full::default())
        .map_err(|e| format!("metadata server '{host}': {e}"))?;
    let body = send(req)
        .await
        .map_err(|e| format!("no service account key, and the metadata server: {e}"))?;
    String::from_utf8(body.to_vec())
        .map(|t| t.trim().to_string())
        .map_err(|_| "the metadata server's token is not text".to_string())
}

/// How long a token lives, from its `exp`.
fn lifetime(token: &str) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .and_then(|c| c.get("exp")?.as_u64());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match exp {
        Some(exp) => Duration::from_secs(exp.saturating_sub(now)),
        None => DEFAULT_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_lifetime_comes_from_its_exp() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{{\"exp\": {}}}", now + 600));
        let life = lifetime(&format!("h.{payload}.s"));
        assert!((598..=600).contains(&life.as_secs()), "{life:?}");
        assert_eq!(lifetime("not a jwt"), DEFAULT_LIFETIME);
    }

    #[test]
    fn only_service_account_keys_mint_id_tokens() {
        let err = ServiceAccountKey::parse(r#"{"type": "authorized_user"}"#)
            .err()
            .unwrap();
        assert!(
            err.contains("'authorized_user' cannot mint ID tokens"),
            "{err}"
        );
        let err = ServiceAccountKey::parse(r#"{"type": "service_account"}"#)
            .err()
            .unwrap();
        assert!(err.contains("no `private_key`"), "{err}");
    }
}
