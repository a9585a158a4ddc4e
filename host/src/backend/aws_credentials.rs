//! The gateway's AWS keys. Given in the config they are fixed; otherwise
//! they are found as the AWS SDKs find them, in the same order: the
//! environment (`AWS_ACCESS_KEY_ID`, ...), the shared credentials file's
//! profile, web identity (EKS IRSA: a token file traded at STS), container
//! credentials (ECS, EKS Pod Identity) and the EC2 instance metadata
//! service (IMDSv2). Keys from the last three expire: they are fetched on
//! first use and again five minutes before they expire.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::fetch::send;

/// Keys are replaced this long before they expire (as the AWS SDKs do).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The instance metadata service answers at once or not at all (off EC2).
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
const ECS_HOST: &str = "http://169.254.170.2";
const IMDS_DEFAULT: &str = "http://169.254.169.254";

pub enum AwsKeys {
    Fixed(Identity),
    Fetched {
        source: Source,
        cache: tokio::sync::Mutex<Option<(Identity, Instant)>>,
    },
}

/// Where expiring keys are fetched from.
#[derive(Debug)]
pub enum Source {
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        sts: String,
    },
    Container {
        uri: String,
        token: Option<String>,
        token_file: Option<PathBuf>,
    },
    Instance {
        endpoint: String,
    },
}

/// Keys as the services answer them (container credentials and IMDS).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysJson {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn identity(id: String, secret: String, token: Option<String>) -> Identity {
    Credentials::new(id, secret, token, None, "wardgate").into()
}

impl AwsKeys {
    pub fn fixed(id: String, secret: String, token: Option<String>) -> AwsKeys {
        AwsKeys::Fixed(identity(id, secret, token))
    }

    /// The process's keys, looked for once, now; `region` names the STS
    /// endpoint web identity is traded at (unless `AWS_REGION` says).
    pub fn ambient(region: &str) -> Result<AwsKeys, String> {
        if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(AwsKeys::fixed(id, secret, env("AWS_SESSION_TOKEN")));
        }
        if let Some(keys) = profile_keys()? {
            return Ok(keys);
        }
        let source = if let (Some(token_file), Some(role_arn)) =
            (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
        {
            let region = env("AWS_REGION").unwrap_or_else(|| region.to_string());
            Source::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    format!("wardgate-{now}")
                }),
                sts: env("AWS_ENDPOINT_URL_STS")
                    .or_else(|| env("AWS_ENDPOINT_URL"))
                    .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com")),
            }
        } else if let Some(uri) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|path| format!("{ECS_HOST}{path}"))
        }) {
            Source::Container {
                uri,
                token: env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                token_file: env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
            }
        } else if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err("no AWS keys: set accessKeyId and secretAccessKey here, or give the gateway AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in the shared credentials file, web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) or container credentials; the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)".into());
        } else {
            Source::Instance {
                endpoint: env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                    .unwrap_or_else(|| IMDS_DEFAULT.to_string())
                    .trim_end_matches('/')
                    .to_string(),
            }
        };
        Ok(AwsKeys::Fetched {
            source,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The keys to sign with now.
    pub async fn identity(&self) -> Result<Identity, String> {
        let (source, cache) = match self {
            AwsKeys::Fixed(identity) => return Ok(identity.clone()),
            AwsKeys::Fetched { source, cache } => (source, cache),
        };
        // One fetch at a time; the others wait for its keys.
        let mut cache = cache.lock().await;
        if let Some((identity, refresh_at)) = cache.as_ref()
            && *refresh_at > Instant::now()
        {
            return Ok(identity.clone());
        }
        let keys = tokio::time::timeout(FETCH_TIMEOUT, source.fetch())
            .await
            .map_err(|_| format!("no AWS keys within {FETCH_TIMEOUT:?} ({source})"))??;
        let left = keys
            .expiration
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        let identity = identity(keys.access_key_id, keys.secret_access_key, keys.token);
        *cache = Some((
            identity.clone(),
            Instant::now() + left.saturating_sub(REFRESH_MARGIN),
        ));
        Ok(identity)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::WebIdentity { sts, .. } => write!(f, "web identity at {sts}"),
            Source::Container { uri, .. } => write!(f, "container credentials at {uri}"),
            Source::Instance { endpoint } => write!(f, "instance metadata at {endpoint}"),
        }
    }
}

impl Source {
    async fn fetch(&self) -> Result<KeysJson, String> {
        let failed = |e: String| format!("{self}: {e}");
        match self {
            Source::WebIdentity {
                token_file,
                role_arn,
                session_name,
                sts,
            } => {
                // Kubernetes rotates the token: read it for each trade.
                let token = std::fs::read_to_string(token_file)
                    .map_err(|e| failed(format!("cannot read {}: {e}", token_file.display())))?;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("Action", "AssumeRoleWithWebIdentity")
                    .append_pair("Version", "2011-06-15")
                    .append_pair("RoleArn", role_arn)
                    .append_pair("RoleSessionName", session_name)
                    .append_pair("WebIdentityToken", token.trim())
                    .finish();
                let req = Request::post(sts.as_str())
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Full::new(Bytes::from(form)))
                    .map_err(|e| failed(e.to_string()))?;
                let body = send(req).await.map_err(failed)?;
                sts_keys(&String::from_utf8_lossy(&body)).map_err(failed)
            }
            Source::Container {
                uri,
                token,
                token_file,
            } => {
                let token = match token_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?,
                    ),
                    None => token.clone(),
                };
                let mut req = Request::get(uri.as_str());
                if let Some(token) = token {
                    req = req.header(http::header::AUTHORIZATION, token.trim());
                }
                let req = req
                    .body(Full::default())
                    .map_err(|e| failed(e.to_string()))?;
                let body = send(req).await.map_err(failed)?;
                serde_json::from_slice(&body).map_err(|e| failed(format!("not keys: {e}")))
            }
            Source::Instance { endpoint } => {
                let call = |req| async {
                    tokio::time::timeout(IMDS_TIMEOUT, send(req))
                        .await
                        .map_err(|_| format!("no answer within {IMDS_TIMEOUT:?} (not on EC2?)"))?
                };
                let token_req = Request::put(format!("{endpoint}/latest/api/token"))
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                    .body(Full::default())
                    .map_err(|e| failed(e.to_string()))?;
                let token = call(token_req).await.map_err(failed)?;
                let token = String::from_utf8_lossy(&token).trim().to_string();
                let get = |path: String| {
                    Request::get(format!(
                        "{endpoint}/latest/meta-data/iam/security-credentials/{path}"
                    ))
                    .header("x-aws-ec2-metadata-token", token.as_str())
                    .body(Full::default())
                    .map_err(|e| failed(e.to_string()))
                };
                let roles = call(get(String::new())?).await.map_err(failed)?;
                let role = String::from_utf8_lossy(&roles)
                    .lines()
                    .next()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| failed("the instance has no IAM role".into()))?;
                let body = call(get(role)?).await.map_err(failed)?;
                serde_json::from_slice(&body).map_err(|e| failed(format!("not keys: {e}")))
            }
        }
    }
}

/// The keys in STS's XML answer: four leaf elements of a fixed document.
fn sts_keys(xml: &str) -> Result<KeysJson, String> {
    let leaf = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml.find(&open)? + open.len();
        let end = start + xml[start..].find(&format!("</{tag}>"))?;
        Some(xml[start..end].trim().to_string())
    };
    Ok(KeysJson {
        access_key_id: leaf("AccessKeyId").ok_or("STS answered without an AccessKeyId")?,
        secret_access_key: leaf("SecretAccessKey")
            .ok_or("STS answered without a SecretAccessKey")?,
        token: leaf("SessionToken"),
        expiration: leaf("Expiration"),
    })
}

/// Static keys of the shared credentials file's profile (`AWS_PROFILE`, or
/// `default`), if it has them; profiles that assume roles or sign in with
/// SSO are not followed.
fn profile_keys() -> Result<Option<AwsKeys>, String> {
    let path = match env("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => match env("HOME") {
            Some(home) => PathBuf::from(home).join(".aws/credentials"),
            None => return Ok(None),
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let mut section = None;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
        } else if section.as_deref() == Some(profile.as_str())
            && let Some((key, value)) = line.split_once('=')
        {
            let value = Some(value.trim().to_string());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(AwsKeys::fixed(id, secret, token))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "profile '{profile}' in {} has only half of its keys (aws_access_key_id and aws_secret_access_key)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_give_their_keys() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>tok</SessionToken>
      <SecretAccessKey>sec</SecretAccessKey>
      <Expiration>2026-12-04T23:00:00Z</Expiration>
      <AccessKeyId>ASIA1</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let keys = sts_keys(xml).unwrap();
        assert_eq!(keys.access_key_id, "ASIA1");
        assert_eq!(keys.secret_access_key, "sec");
        assert_eq!(keys.token.as_deref(), Some("tok"));
        assert!(humantime::parse_rfc3339_weak(keys.expiration.as_deref().unwrap()).is_ok());
        assert!(sts_keys("<Error><Message>denied</Message></Error>").is_err());
    }
}
