//! IAM Identity Center (SSO) sign-ins, followed as the AWS SDKs follow
//! them. A profile names an account and a role (`sso_account_id`,
//! `sso_role_name`) and a sign-in: an `[sso-session NAME]` section
//! (`sso_start_url`, `sso_region`) or, in the legacy form, those two keys on
//! the profile itself. `aws sso login` leaves the sign-in's token in
//! `~/.aws/sso/cache/`, in a file named by the SHA-1 of the session's name
//! (legacy: of the start URL). The token buys the role's keys at the SSO
//! portal (`GetRoleCredentials`). A session's token within 15 minutes of
//! expiry is refreshed at SSO OIDC (`CreateToken` with its refresh token)
//! and written back to the cache, so the CLI and SDKs see it too.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::aws_profiles::SharedFiles;
use super::env;
use super::fetch::send;

/// A token this close to expiry is refreshed first (the SDKs' window).
const REFRESH_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A profile's role, reached through an SSO sign-in.
pub struct SsoRole {
    account_id: String,
    role_name: String,
    start_url: String,
    /// The sign-in's token, as `aws sso login` cached it.
    cache_file: PathBuf,
    /// What to run to sign in again.
    login: String,
    portal: String,
    /// SSO OIDC, which refreshes a session's token (legacy sign-ins have
    /// no refresh).
    oidc: Option<String>,
}

/// Keys for the role: id, secret, session token, expiry.
pub struct RoleKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
}

fn endpoint(service_var: &str, default: String) -> String {
    env(service_var)
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string()
}

/// The cache file of a sign-in: `~/.aws/sso/cache/{sha1(key)}.json`.
fn cache_file(key: &str) -> Result<PathBuf, String> {
    let home = env("HOME").ok_or("no HOME to find ~/.aws/sso/cache in")?;
    let name = hex::encode(Sha1::digest(key.as_bytes()));
    Ok(PathBuf::from(home)
        .join(".aws/sso/cache")
        .join(format!("{name}.json")))
}

/// `2026-12-05T04:00:00Z` (fractions allowed), or the older CLI's
/// `...UTC`, or `+00:00`: always UTC.
fn parse_time(s: &str) -> Option<SystemTime> {
    let bare = ["UTC", "Z", "+00:00"]
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix))
        .unwrap_or(s);
    humantime::parse_rfc3339_weak(bare).ok()
}

fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl SsoRole {
    /// The SSO role profile `name` signs in to; `None` when it names no
    /// sign-in, an error naming what is missing when it names one in part.
    pub fn of_profile(files: &SharedFiles, name: &str) -> Result<Option<SsoRole>, String> {
        let get = |key: &str| files.get(name, key);
        let (start_url, region, cache_key, login, session) = match (
            get("sso_session"),
            get("sso_start_url"),
        ) {
            (None, None) => return Ok(None),
            (Some(session), _) => {
                let section = files.sso_session(session).ok_or_else(|| {
                        format!(
                            "AWS profile '{name}' names sso_session '{session}', but the config file has no [sso-session {session}]"
                        )
                    })?;
                let key = |k: &str| {
                    section.get(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                        format!("[sso-session {session}] of the AWS config file has no {k}")
                    })
                };
                (
                    key("sso_start_url")?.clone(),
                    key("sso_region")?.clone(),
                    session.to_string(),
                    format!("aws sso login --sso-session {session}"),
                    true,
                )
            }
            (None, Some(start_url)) => {
                let region = get("sso_region").ok_or_else(|| {
                    format!("AWS profile '{name}' has sso_start_url but no sso_region")
                })?;
                (
                    start_url.to_string(),
                    region.to_string(),
                    start_url.to_string(),
                    format!("aws sso login --profile {name}"),
                    false,
                )
            }
        };
        let needed = |key: &str| {
            get(key).map(str::to_string).ok_or_else(|| {
                format!("AWS profile '{name}' signs in with IAM Identity Center but has no {key}")
            })
        };
        Ok(Some(SsoRole {
            account_id: needed("sso_account_id")?,
            role_name: needed("sso_role_name")?,
            start_url,
            cache_file: cache_file(&cache_key)?,
            login,
            portal: endpoint(
                "AWS_ENDPOINT_URL_SSO",
                format!("https://portal.sso.{region}.amazonaws.com"),
            ),
            oidc: session.then(|| {
                endpoint(
                    "AWS_ENDPOINT_URL_SSO_OIDC",
                    format!("https://oidc.{region}.amazonaws.com"),
                )
            }),
        }))
    }

    /// The role's keys, bought with the sign-in's token (refreshed first
    /// when it is near expiry).
    pub async fn fetch(&self) -> Result<RoleKeys, String> {
        let token = self.token().await?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("account_id", &self.account_id)
            .append_pair("role_name", &self.role_name)
            .finish();
        let req = Request::get(format!("{}/federation/credentials?{query}", self.portal))
            .header("x-amz-sso_bearer_token", token)
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        let body = send(req).await.map_err(|e| {
            if e.contains(" 401 ") || e.contains(" 403 ") {
                format!(
                    "the SSO sign-in for {} was refused ({e}); run `{}`",
                    self.start_url, self.login
                )
            } else {
                e
            }
        })?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the SSO portal answered no JSON: {e}"))?;
        let keys = answer
            .get("roleCredentials")
            .ok_or("the SSO portal answered without roleCredentials")?;
        let field = |k: &str| {
            keys.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the SSO portal's roleCredentials have no {k}"))
        };
        let expiration = keys
            .get("expiration")
            .and_then(Value::as_u64)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            .ok_or("the SSO portal's roleCredentials have no expiration")?;
        Ok(RoleKeys {
            access_key_id: field("accessKeyId")?,
            secret_access_key: field("secretAccessKey")?,
            session_token: field("sessionToken")?,
            expiration,
        })
    }

    /// The sign-in's access token from the cache, refreshed when near
    /// expiry and refreshable.
    async fn token(&self) -> Result<String, String> {
        let path = &self.cache_file;
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "no SSO sign-in for {} ({}: {e}); run `{}`",
                self.start_url,
                path.display(),
                self.login
            )
        })?;
        let cached: Map<String, Value> = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not an SSO token cache: {e}", path.display()))?;
        let text_of = |k: &str| cached.get(k).and_then(Value::as_str);
        let token = text_of("accessToken")
            .ok_or_else(|| format!("{} has no accessToken", path.display()))?
            .to_string();
        let expires = text_of("expiresAt")
            .and_then(parse_time)
            .ok_or_else(|| format!("{} has no expiresAt the gateway can read", path.display()))?;
        let now = SystemTime::now();
        if expires > now + REFRESH_WINDOW {
            return Ok(token);
        }
        let refreshed = match &self.oidc {
            Some(oidc) => self.refresh(oidc, cached.clone()).await,
            None => Err("a legacy sign-in (sso_start_url on the profile) has no refresh".into()),
        };
        match refreshed {
            Ok(token) => Ok(token),
            // A token not yet expired still serves.
            Err(_) if expires > now => Ok(token),
            Err(why) => Err(format!(
                "the SSO sign-in for {} expired at {} and was not refreshed ({why}); run `{}`",
                self.start_url,
                format_time(expires),
                self.login
            )),
        }
    }

    /// SSO OIDC's CreateToken with the cached refresh token; the new token
    /// goes back into the cache file.
    async fn refresh(&self, oidc: &str, mut cached: Map<String, Value>) -> Result<String, String> {
        let text = |k: &str| {
            cached
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the cached sign-in has no {k}"))
        };
        if let Some(until) = cached
            .get("registrationExpiresAt")
            .and_then(Value::as_str)
            .and_then(parse_time)
            && until <= SystemTime::now()
        {
            return Err("its client registration expired".into());
        }
        let body = json!({
            "grantType": "refresh_token",
            "clientId": text("clientId")?,
            "clientSecret": text("clientSecret")?,
            "refreshToken": text("refreshToken")?,
        });
        let req = Request::post(format!("{oidc}/token"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&send(req).await?)
            .map_err(|e| format!("SSO OIDC answered no JSON: {e}"))?;
        let token = answer
            .get("accessToken")
            .and_then(Value::as_str)
            .ok_or("SSO OIDC answered without an accessToken")?
            .to_string();
        let life = answer
            .get("expiresIn")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        cached.insert("accessToken".into(), token.clone().into());
        cached.insert(
            "expiresAt".into(),
            format_time(SystemTime::now() + Duration::from_secs(life)).into(),
        );
        if let Some(next) = answer.get("refreshToken").filter(|v| v.is_string()) {
            cached.insert("refreshToken".into(), next.clone());
        }
        if let Err(e) = self.write_cache(&Value::Object(cached)) {
            // The token serves all the same; the next refresh uses the old
            // refresh token, which may then fail and ask for a sign-in.
            tracing::warn!(file = %self.cache_file.display(), "could not update the SSO token cache: {e}");
        }
        Ok(token)
    }

    /// Replace the cache file whole (a reader never sees half of it),
    /// readable by its owner only, as the CLI writes it.
    fn write_cache(&self, value: &Value) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.cache_file.with_extension("json.wardgate-tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(value.to_string().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.cache_file)
    }
}

impl std::fmt::Display for SsoRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SSO role {} in account {} at {}",
            self.role_name, self.account_id, self.portal
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = BedrockUser\n\
        [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-central-1\n\
        [profile old]\nsso_start_url = https://old.awsapps.com/start\nsso_region = us-east-1\nsso_account_id = 1\nsso_role_name = R\n\
        [profile nosession]\nsso_session = gone\nsso_account_id = 1\nsso_role_name = R\n\
        [profile norole]\nsso_session = corp\nsso_account_id = 1\n\
        [profile noregion]\nsso_start_url = https://x\nsso_account_id = 1\nsso_role_name = R\n\
        [profile keys]\naws_access_key_id = A\n";

    fn role(name: &str) -> Result<Option<SsoRole>, String> {
        SsoRole::of_profile(&SharedFiles::from_text("", CONFIG), name)
    }

    #[test]
    fn sign_ins_are_found_where_the_sdks_put_them() {
        let dev = role("dev").unwrap().unwrap();
        assert_eq!(
            (dev.account_id.as_str(), dev.role_name.as_str()),
            ("123456789012", "BedrockUser")
        );
        // The session's name keys the cache: sha1("corp").
        assert!(
            dev.cache_file
                .ends_with(".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
            "{}",
            dev.cache_file.display()
        );
        assert_eq!(dev.portal, "https://portal.sso.eu-central-1.amazonaws.com");
        assert!(dev.oidc.is_some());
        assert_eq!(dev.login, "aws sso login --sso-session corp");
        // The legacy form: the start URL keys the cache; no refresh.
        let old = role("old").unwrap().unwrap();
        assert!(
            old.cache_file
                .ends_with(".aws/sso/cache/33d5ca4bf3b1a62edb96b47f7c203034a43ac435.json")
        );
        assert!(old.oidc.is_none());
        assert!(role("keys").unwrap().is_none());
    }

    #[test]
    fn a_sign_in_named_in_part_is_an_error_saying_what_is_missing() {
        let error = |name| role(name).err().unwrap();
        assert!(
            error("nosession").contains("no [sso-session gone]"),
            "{}",
            error("nosession")
        );
        assert!(error("norole").ends_with("has no sso_role_name"));
        assert!(error("noregion").ends_with("has sso_start_url but no sso_region"));
    }

    #[test]
    fn cached_expiry_reads_both_cli_spellings() {
        let a = parse_time("2026-12-05T04:00:00Z").unwrap();
        assert_eq!(parse_time("2026-12-05T04:00:00UTC"), Some(a));
        assert_eq!(parse_time("2026-12-05T04:00:00+00:00"), Some(a));
        assert!(parse_time("2026-12-05T04:00:00.250Z").unwrap() > a);
        assert_eq!(format_time(a), "2026-12-05T04:00:00Z");
        assert!(parse_time("soon").is_none());
    }
}
