//! AWS Signature Version 4 (`backendAuth: aws`, Bedrock's default): each
//! request to the provider is signed with the gateway's AWS keys (see
//! [`super::aws_credentials`]), over its method, path, host and the
//! SHA-256 of its body.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderValue, Request};
use sha2::{Digest, Sha256};

use super::aws_credentials::AwsKeys;
use super::credentials::{FieldError, resolve_secret};
use crate::config::schema::{AwsAuth, SecretSource};

/// Bedrock's runtime API signs as this service.
const SERVICE: &str = "bedrock";

pub struct AwsSigner {
    keys: AwsKeys,
    region: String,
}

/// The SHA-256 of a request's body, in hex: set where the body is made
/// (the signature covers it), read where the request is signed.
#[derive(Clone)]
pub struct PayloadDigest(String);

impl PayloadDigest {
    pub fn of(body: &[u8]) -> Self {
        PayloadDigest(hex::encode(Sha256::digest(body)))
    }
}

impl AwsSigner {
    /// Keys from `auth`, or else the process's ([`AwsKeys::ambient`]);
    /// `region` is the provider's, unless `auth` names another.
    pub fn build(
        auth: &AwsAuth,
        region: &str,
        base_dir: Option<&std::path::Path>,
    ) -> Result<AwsSigner, FieldError> {
        let secret = |name: &str, source: &Option<SecretSource>| -> Result<_, FieldError> {
            let field = format!("policies.backendAuth.aws.{name}");
            source
                .as_ref()
                .map(|s| resolve_secret(s, base_dir).map_err(|e| (field, e)))
                .transpose()
        };
        let key_id = secret("accessKeyId", &auth.access_key_id)?;
        let secret_key = secret("secretAccessKey", &auth.secret_access_key)?;
        let token = secret("sessionToken", &auth.session_token)?;
        let region = auth.region.as_deref().unwrap_or(region).to_string();
        let keys = match (key_id, secret_key, token) {
            (Some(id), Some(secret), token) => AwsKeys::fixed(id, secret, token),
            (None, None, None) => {
                AwsKeys::ambient(&region).map_err(|e| ("policies.backendAuth.aws".into(), e))?
            }
            (None, None, Some(_)) => {
                return Err((
                    "policies.backendAuth.aws.sessionToken".into(),
                    "a session token goes with the accessKeyId and secretAccessKey it was issued with".into(),
                ));
            }
            _ => {
                return Err((
                    "policies.backendAuth.aws".into(),
                    "give both accessKeyId and secretAccessKey, or neither (the gateway then finds its keys as the AWS SDKs do)".into(),
                ));
            }
        };
        Ok(AwsSigner { keys, region })
    }

    /// Sign `req` for `host` (the Host header it is sent with). The body's
    /// digest must have been attached ([`PayloadDigest`]).
    pub async fn sign<B>(&self, req: &mut Request<B>, host: &str) -> Result<(), String> {
        let identity = self.keys.identity().await?;
        let digest = req
            .extensions()
            .get::<PayloadDigest>()
            .cloned()
            .ok_or("the request's body was not digested for signing")?;
        sign_with(req, &identity, (&self.region, SERVICE), host, digest)
    }
}

/// Sign `req` with `identity` for a service in a region, as sent to `host`.
pub fn sign_with<B>(
    req: &mut Request<B>,
    identity: &Identity,
    (region, service): (&str, &str),
    host: &str,
    digest: PayloadDigest,
) -> Result<(), String> {
    let host_value =
        HeaderValue::from_str(host).map_err(|_| format!("'{host}' is not a host name"))?;
    req.headers_mut().insert(http::header::HOST, host_value);
    let uri = format!(
        "https://{host}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    // Only what no hop rewrites is signed: the host and the body's type.
    let signed = req
        .headers()
        .iter()
        .filter(|(name, _)| *name == http::header::HOST || *name == http::header::CONTENT_TYPE)
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let params = SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        req.method().as_str(),
        uri,
        signed,
        SignableBody::Precomputed(digest.0),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    for name in ["authorization", "x-amz-security-token"] {
        if let Some(v) = req.headers_mut().get_mut(name) {
            v.set_sensitive(true);
        }
    }
    Ok(())
}
