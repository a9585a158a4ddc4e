//! The gateway's AWS keys. Given in the config they are fixed; otherwise
//! they are found as the AWS SDKs find them, in the same order: the
//! environment (`AWS_ACCESS_KEY_ID`, ...), the profile in the shared files
//! (a role it assumes with another profile's keys or a named source, its
//! own keys, or an IAM Identity Center sign-in: [`super::aws_sso`]), web identity (EKS IRSA: a token file traded at STS),
//! container credentials (ECS, EKS Pod Identity) and the EC2 instance
//! metadata service (IMDSv2). Keys from roles and the last three expire:
//! they are fetched on first use and again five minutes before they expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::aws_profiles::SharedFiles;
use super::aws_signer::{PayloadDigest, sign_with};
use super::aws_sso::SsoRole;
use super::env;
use super::expiring::Expiring;
use super::fetch::send;

/// Keys are replaced this long before they expire (as the AWS SDKs do).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The instance metadata service answers at once or not at all (off EC2).
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
const ECS_HOST: &str = "http://169.254.170.2";
const IMDS_DEFAULT: &str = "http://169.254.169.254";

pub enum AwsKeys {
    Fixed(Identity),
    Fetched {
        source: Box<Source>,
        cache: Expiring<Identity>,
    },
}

/// Where expiring keys are fetched from.
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
    /// A profile's role, assumed at STS with the keys of its source.
    AssumeRole {
        role_arn: String,
        session_name: String,
        external_id: Option<String>,
        duration: Option<String>,
        source: Box<AwsKeys>,
        region: String,
        sts: String,
    },
    /// A role reached through an IAM Identity Center (SSO) sign-in.
    Sso(SsoRole),
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

fn identity(id: String, secret: String, token: Option<String>) -> Identity {
    Credentials::new(id, secret, token, None, "wardgate").into()
}

impl AwsKeys {
    pub fn fixed(id: String, secret: String, token: Option<String>) -> AwsKeys {
        AwsKeys::Fixed(identity(id, secret, token))
    }

    /// The process's keys, looked for once, now; `region` names the STS
    /// endpoint roles are assumed at (unless the profile or `AWS_REGION`
    /// says).
    pub fn ambient(region: &str) -> Result<AwsKeys, String> {
        if let Some(keys) = env_keys() {
            return Ok(keys);
        }
        let files = SharedFiles::load();
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        if let Some(keys) = profile_keys(&files, &profile, region, 0)? {
            return Ok(keys);
        }
        let source = if let (Some(token_file), Some(role_arn)) =
            (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
        {
            let region = env("AWS_REGION").unwrap_or_else(|| region.to_string());
            Source::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: env("AWS_ROLE_SESSION_NAME").unwrap_or_else(session_name),
                sts: sts_endpoint(&region),
            }
        } else if let Some(container) = container_source() {
            container
        } else if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err("no AWS keys: set accessKeyId and secretAccessKey here, or give the gateway AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile in the shared files, web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) or container credentials; the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)".into());
        } else {
            instance_source()
        };
        Ok(AwsKeys::fetched(source))
    }

    fn fetched(source: Source) -> AwsKeys {
        AwsKeys::Fetched {
            source: Box::new(source),
            cache: Expiring::new(REFRESH_MARGIN),
        }
    }

    /// The keys to sign with now.
    pub async fn identity(&self) -> Result<Identity, String> {
        let (source, cache) = match self {
            AwsKeys::Fixed(identity) => return Ok(identity.clone()),
            AwsKeys::Fetched { source, cache } => (source, cache),
        };
        cache
            .get(format!("AWS keys ({source})"), || async {
                let keys = source.fetch().await?;
                let life = keys
                    .expiration
                    .as_deref()
                    .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
                    .and_then(|at| at.duration_since(SystemTime::now()).ok())
                    .unwrap_or(Duration::from_secs(3600));
                let identity = identity(keys.access_key_id, keys.secret_access_key, keys.token);
                Ok((identity, life))
            })
            .await
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::WebIdentity { sts, .. } => write!(f, "web identity at {sts}"),
            Source::Container { uri, .. } => write!(f, "container credentials at {uri}"),
            Source::Instance { endpoint } => write!(f, "instance metadata at {endpoint}"),
            Source::AssumeRole { role_arn, sts, .. } => {
                write!(f, "role {role_arn} assumed at {sts}")
            }
            Source::Sso(role) => role.fmt(f),
        }
    }
}

type Fetch<'a> = std::pin::Pin<Box<dyn Future<Output = Result<KeysJson, String>> + Send + 'a>>;

impl Source {
    /// Boxed: a role's source may be fetched in turn, and a recursive
    /// future needs a name for its type.
    fn fetch(&self) -> Fetch<'_> {
        Box::pin(self.fetch_now())
    }

    async fn fetch_now(&self) -> Result<KeysJson, String> {
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
            Source::AssumeRole {
                role_arn,
                session_name,
                external_id,
                duration,
                source,
                region,
                sts,
            } => {
                // The source's keys may themselves be fetched (a role of a
                // role, instance metadata).
                let identity = source.identity().await.map_err(failed)?;
                let form = {
                    let mut form = form_urlencoded::Serializer::new(String::new());
                    form.append_pair("Action", "AssumeRole")
                        .append_pair("Version", "2011-06-15")
                        .append_pair("RoleArn", role_arn)
                        .append_pair("RoleSessionName", session_name);
                    if let Some(id) = external_id {
                        form.append_pair("ExternalId", id);
                    }
                    if let Some(secs) = duration {
                        form.append_pair("DurationSeconds", secs);
                    }
                    form.finish()
                };
                let digest = PayloadDigest::of(form.as_bytes());
                let mut req = Request::post(sts.as_str())
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Full::new(Bytes::from(form)))
                    .map_err(|e| failed(e.to_string()))?;
                let host = req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .ok_or_else(|| failed("the STS endpoint has no host".into()))?;
                sign_with(&mut req, &identity, (region, "sts"), &host, digest).map_err(failed)?;
                let body = send(req).await.map_err(failed)?;
                sts_keys(&String::from_utf8_lossy(&body)).map_err(failed)
            }
            Source::Sso(role) => {
                let keys = role.fetch().await.map_err(failed)?;
                Ok(KeysJson {
                    access_key_id: keys.access_key_id,
                    secret_access_key: keys.secret_access_key,
                    token: Some(keys.session_token),
                    expiration: Some(humantime::format_rfc3339(keys.expiration).to_string()),
                })
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

fn env_keys() -> Option<AwsKeys> {
    let (id, secret) = (env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?);
    Some(AwsKeys::fixed(id, secret, env("AWS_SESSION_TOKEN")))
}

fn container_source() -> Option<Source> {
    let uri = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|path| format!("{ECS_HOST}{path}"))
    })?;
    Some(Source::Container {
        uri,
        token: env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        token_file: env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
    })
}

fn instance_source() -> Source {
    Source::Instance {
        endpoint: env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| IMDS_DEFAULT.to_string())
            .trim_end_matches('/')
            .to_string(),
    }
}

fn sts_endpoint(region: &str) -> String {
    env("AWS_ENDPOINT_URL_STS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
}

fn session_name() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("wardgate-{now}")
}

/// Roles may name a source profile that assumes a role in turn; the SDKs
/// bound the chain, and so does this.
const MAX_ROLE_CHAIN: usize = 4;

/// The keys profile `name` gives, as the SDKs read it: a role it assumes
/// (`role_arn`, with `source_profile` or `credential_source`), its own
/// keys, or an SSO sign-in's role; `None` when it has none (or does not
/// exist).
fn profile_keys(
    files: &SharedFiles,
    name: &str,
    region: &str,
    depth: usize,
) -> Result<Option<AwsKeys>, String> {
    let get = |key: &str| files.get(name, key);
    let own_keys = || match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Some(AwsKeys::fixed(
            id.into(),
            secret.into(),
            get("aws_session_token").map(str::to_string),
        ))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "AWS profile '{name}' has only half of its keys (aws_access_key_id and aws_secret_access_key)"
        )),
    };
    let Some(role_arn) = get("role_arn") else {
        if let Some(keys) = own_keys()? {
            return Ok(Some(keys));
        }
        let sso = SsoRole::of_profile(files, name)?;
        return Ok(sso.map(|role| AwsKeys::fetched(Source::Sso(role))));
    };
    if depth >= MAX_ROLE_CHAIN {
        return Err(format!(
            "AWS profile '{name}': roles chained more than {MAX_ROLE_CHAIN} deep (a loop of source_profile?)"
        ));
    }
    let source = match (get("source_profile"), get("credential_source")) {
        (Some(source), None) if source == name => own_keys()?,
        (Some(source), None) => profile_keys(files, source, region, depth + 1)?,
        (None, Some("Environment")) => env_keys(),
        (None, Some("EcsContainer")) => container_source().map(AwsKeys::fetched),
        (None, Some("Ec2InstanceMetadata")) => Some(AwsKeys::fetched(instance_source())),
        (None, Some(other)) => {
            return Err(format!(
                "AWS profile '{name}': credential_source '{other}' is not one of Environment, EcsContainer, Ec2InstanceMetadata"
            ));
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "AWS profile '{name}' names both source_profile and credential_source"
            ));
        }
        (None, None) => {
            return Err(format!(
                "AWS profile '{name}' has a role_arn but neither source_profile nor credential_source"
            ));
        }
    };
    let source = source.ok_or_else(|| {
        format!("AWS profile '{name}': the source of its role ({role_arn}) gives no keys")
    })?;
    let region = get("region")
        .map(str::to_string)
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| region.to_string());
    Ok(Some(AwsKeys::fetched(Source::AssumeRole {
        role_arn: role_arn.to_string(),
        session_name: get("role_session_name")
            .map(str::to_string)
            .unwrap_or_else(session_name),
        external_id: get("external_id").map(str::to_string),
        duration: get("duration_seconds").map(str::to_string),
        source: Box::new(source),
        sts: sts_endpoint(&region),
        region,
    })))
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

    #[test]
    fn profiles_that_cannot_give_keys_say_why() {
        let config = "[profile sso]\nsso_session = corp\n[profile lone]\nrole_arn = arn:aws:iam::1:role/r\n\
            [profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n\
            [profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n\
            [profile odd]\nrole_arn = arn:aws:iam::1:role/o\ncredential_source = Laptop\n\
            [profile self]\nrole_arn = arn:aws:iam::1:role/s\nsource_profile = self\n";
        let files = SharedFiles::from_text(
            "[self]\naws_access_key_id = A\naws_secret_access_key = S\n",
            config,
        );
        let error = |name: &str| match profile_keys(&files, name, "us-east-1", 0) {
            Err(e) => e,
            Ok(_) => panic!("{name} gave keys"),
        };
        assert!(error("sso").contains("names sso_session 'corp', but the config file has no"));
        assert!(error("lone").contains("neither source_profile nor credential_source"));
        assert!(error("a").contains("a loop of source_profile"));
        assert!(error("odd").contains("credential_source 'Laptop'"));
        // A role whose source is the profile's own keys; an unknown profile.
        assert!(matches!(
            profile_keys(&files, "self", "us-east-1", 0),
            Ok(Some(AwsKeys::Fetched { source, .. }))
                if matches!(*source, Source::AssumeRole { .. })
        ));
        assert!(matches!(
            profile_keys(&files, "none", "us-east-1", 0),
            Ok(None)
        ));
    }
}
