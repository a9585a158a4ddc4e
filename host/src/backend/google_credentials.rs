//! Google access tokens for `backendAuth: gcp` (a Vertex provider's
//! default; `type: idToken` is [`super::google_id_tokens`]): from a service
//! account key in the config, or else from the process's Application
//! Default Credentials
//! (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default
//! login`, the metadata server, the `gcloud` CLI). The `gcp_auth` crate
//! fetches and caches the tokens; a request waits for one only when the
//! cached token is within 20 s of expiring. Providers (and reloaded
//! configs) with the same key share one account and so its tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use gcp_auth::{CustomServiceAccount, TokenProvider};
use http::HeaderValue;
use tokio::sync::OnceCell;

/// Vertex AI, like every Google Cloud API, accepts this scope.
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];
/// How long a request waits for a token (fetching one retries a few times).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GoogleCredentials {
    source: Source,
    /// The header made from the token `gcp_auth` last gave (the same `Arc`
    /// until it fetches another), so requests do not format it each time.
    header: Mutex<Option<(Arc<gcp_auth::Token>, HeaderValue)>>,
}

enum Source {
    ServiceAccount(Arc<CustomServiceAccount>),
    /// Application Default Credentials, found on first use and shared by
    /// every provider of the process.
    Ambient,
}

static AMBIENT: OnceCell<Arc<dyn TokenProvider>> = OnceCell::const_new();

/// The accounts in use, by their key's digest.
type Accounts = HashMap<[u8; 32], Weak<CustomServiceAccount>>;
static ACCOUNTS: Mutex<Option<Accounts>> = Mutex::new(None);

impl GoogleCredentials {
    /// Credentials from a key file's JSON; only service account keys can be
    /// given this way.
    pub fn service_account(json: &str) -> Result<Self, String> {
        let parsed: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| format!("the credential is not JSON (a service account key): {e}"))?;
        require_service_account(parsed.get("type").and_then(|t| t.as_str()), |other| {
            format!(
                "a credential of type '{other}' cannot be given here: use a service account key, or leave `credential` out to use Application Default Credentials"
            )
        })?;
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(json.as_bytes()).into();
        let mut accounts = ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner());
        let accounts = accounts.get_or_insert_with(HashMap::new);
        accounts.retain(|_, account| account.strong_count() > 0);
        let account = match accounts.get(&digest).and_then(Weak::upgrade) {
            Some(account) => account,
            None => {
                let account = Arc::new(
                    CustomServiceAccount::from_json(json)
                        .map_err(|e| format!("the service account key is not usable: {e}"))?,
                );
                accounts.insert(digest, Arc::downgrade(&account));
                account
            }
        };
        Ok(GoogleCredentials {
            source: Source::ServiceAccount(account),
            header: Mutex::new(None),
        })
    }

    pub fn ambient() -> Self {
        GoogleCredentials {
            source: Source::Ambient,
            header: Mutex::new(None),
        }
    }

    /// `Bearer <access token>` for an upstream request.
    pub async fn bearer(&self) -> Result<HeaderValue, String> {
        let fetch = async {
            let token = match &self.source {
                Source::ServiceAccount(account) => account.token(SCOPES).await,
                Source::Ambient => {
                    // A failed search is not kept: the next request looks again.
                    let provider =
                        AMBIENT
                            .get_or_try_init(gcp_auth::provider)
                            .await
                            .map_err(|e| {
                                format!("no Google Application Default Credentials found: {e}")
                            })?;
                    provider.token(SCOPES).await
                }
            };
            token.map_err(|e| format!("fetching a Google access token failed: {e}"))
        };
        let token = tokio::time::timeout(TOKEN_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("no Google access token within {TOKEN_TIMEOUT:?}"))??;
        let mut last = self.header.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, value)) = last.as_ref()
            && Arc::ptr_eq(seen, &token)
        {
            return Ok(value.clone());
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .map_err(|_| "the Google access token cannot go in a header".to_string())?;
        value.set_sensitive(true);
        *last = Some((token, value.clone()));
        Ok(value)
    }
}

/// A key file's `type` must be a service account key's; `refusal` says
/// why another type will not do.
pub(super) fn require_service_account(
    kind: Option<&str>,
    refusal: impl Fn(&str) -> String,
) -> Result<(), String> {
    match kind {
        Some("service_account") => Ok(()),
        Some(other) => Err(refusal(other)),
        None => Err(
            "the credential has no `type` (a service account key has type 'service_account')"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_account_keys_are_taken_from_the_config() {
        let err = GoogleCredentials::service_account("{not json")
            .err()
            .unwrap();
        assert!(err.contains("not JSON"), "{err}");
        let err = GoogleCredentials::service_account(
            r#"{"type": "authorized_user", "refresh_token": "r"}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("'authorized_user'"), "{err}");
        let err = GoogleCredentials::service_account(r#"{"client_email": "a@b"}"#)
            .err()
            .unwrap();
        assert!(err.contains("no `type`"), "{err}");
        let err = GoogleCredentials::service_account(
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "nope", "token_uri": "http://127.0.0.1:1/token"}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("not usable"), "{err}");
    }
}
