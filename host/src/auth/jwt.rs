//! `jwtAuth`: verify a bearer token against one of the route's providers
//! (issuer, audiences, keys) and hand its claims on as the identity.
//!
//! The algorithm a token claims must belong to the family of the key that
//! verifies it (and match the JWK's own `alg` when it has one), so an
//! RSA public key can never be used as an HMAC secret; `alg: none` is not
//! an algorithm here at all.

use std::sync::Arc;

use http::request::Parts;
use jsonwebtoken::dangerous::insecure_decode_claims;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};

use super::Outcome;
use super::credential::Location;
use super::jwks::{Fetcher, KeySource};
use crate::config::schema::{JwtAuth as JwtConfig, JwtMode};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

pub struct JwtAuth {
    mode: JwtMode,
    providers: Vec<Provider>,
    /// Registered claims a token must carry (`exp` unless configured).
    required: Vec<String>,
    /// Where tokens travel: `Authorization: Bearer <token>`.
    bearer: Location,
}

/// The registered claims `jwtValidationOptions.requiredClaims` may name.
const REGISTERED_CLAIMS: [&str; 5] = ["exp", "nbf", "aud", "iss", "sub"];

struct Provider {
    issuer: String,
    audiences: Vec<String>,
    keys: KeySource,
}

impl JwtAuth {
    /// The issuers whose tokens are accepted (the authorization servers).
    pub fn issuers(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.issuer.as_str()).collect()
    }

    /// Build from config; local key files are read here.
    pub fn from_config(config: &JwtConfig, fetcher: &Arc<Fetcher>) -> Result<JwtAuth, String> {
        let mut providers = Vec::new();
        if let Some(issuer) = &config.issuer {
            let jwks = config
                .jwks
                .as_ref()
                .ok_or("`jwks` is required with `issuer`")?;
            providers.push(Provider {
                issuer: issuer.clone(),
                audiences: config.audiences.clone(),
                keys: KeySource::from_config(jwks, fetcher)?,
            });
        } else if config.jwks.is_some() || !config.audiences.is_empty() {
            return Err("`jwks` and `audiences` need an `issuer`".into());
        }
        for (i, p) in config.providers.iter().enumerate() {
            providers.push(Provider {
                issuer: p.issuer.clone(),
                audiences: p.audiences.clone(),
                keys: KeySource::from_config(&p.jwks, fetcher)
                    .map_err(|e| format!("providers[{i}]: {e}"))?,
            });
        }
        if providers.is_empty() {
            return Err("needs an `issuer` with `jwks`, or `providers`".into());
        }
        let required = match config
            .jwt_validation_options
            .as_ref()
            .and_then(|o| o.required_claims.clone())
        {
            None => vec!["exp".to_string()],
            Some(claims) => {
                if let Some(other) = claims
                    .iter()
                    .find(|c| !REGISTERED_CLAIMS.contains(&c.as_str()))
                {
                    return Err(format!(
                        "jwtValidationOptions.requiredClaims: '{other}' is not one of {}",
                        REGISTERED_CLAIMS.join(", ")
                    ));
                }
                claims
            }
        };
        Ok(JwtAuth {
            mode: config.mode.unwrap_or(JwtMode::Strict),
            providers,
            required,
            bearer: Location::authorization("Bearer"),
        })
    }

    /// Check the request's bearer token. A token the request goes on with
    /// is taken out of it unless `forward` (`backendAuth: passthrough`): it
    /// was for the gateway. Other `Authorization` schemes are left alone.
    pub async fn check(&self, parts: &mut Parts, forward: bool) -> Outcome {
        let outcome = match self.bearer.extract(parts) {
            None if matches!(self.mode, JwtMode::Strict) => {
                return Outcome::Rejected("missing bearer token".into());
            }
            None => return Outcome::Anonymous,
            Some(token) => match self.verify(&token).await {
                Ok(claims) => Outcome::Verified(claims),
                Err(reason) if matches!(self.mode, JwtMode::Permissive) => {
                    tracing::warn!(
                        "JWT not accepted (permissive mode, request continues): {reason}"
                    );
                    Outcome::Anonymous
                }
                Err(reason) => return Outcome::Rejected(reason),
            },
        };
        if !forward {
            self.bearer.remove(parts);
        }
        outcome
    }

    async fn verify(&self, token: &str) -> Result<serde_json::Value, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        // The issuer picks the provider; nothing unverified is trusted beyond that.
        let unverified: serde_json::Value =
            insecure_decode_claims(token).map_err(|e| format!("malformed token: {e}"))?;
        let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        let provider = self
            .providers
            .iter()
            .find(|p| p.issuer == iss)
            .ok_or_else(|| format!("issuer '{iss}' is not accepted"))?;
        let keys = provider.keys.keys(header.kid.as_deref()).await?;
        let candidates: Vec<_> = keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "no key with kid '{}'",
                header.kid.as_deref().unwrap_or("")
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        if provider.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&provider.audiences);
        }
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        // A present `exp` is checked whether or not it is required.
        validation.set_required_spec_claims(&self.required);

        let mut last = String::from("no key verifies this token");
        for key in candidates {
            if key.key.family() != header.alg.family() || key.alg.is_some_and(|a| a != header.alg) {
                last = format!("algorithm {:?} is not allowed for this key", header.alg);
                continue;
            }
            match decode::<serde_json::Value>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired".into(),
                        ErrorKind::ImmatureSignature => "token not yet valid (nbf)".into(),
                        ErrorKind::InvalidIssuer => "wrong issuer".into(),
                        ErrorKind::InvalidAudience => "wrong audience".into(),
                        ErrorKind::InvalidSignature => "bad signature".into(),
                        ErrorKind::InvalidAlgorithm => {
                            format!("algorithm {:?} is not allowed for this key", header.alg)
                        }
                        ErrorKind::MissingRequiredClaim(c) => format!("missing claim '{c}'"),
                        _ => format!("invalid token: {e}"),
                    };
                    // Claims errors hold for every key: stop at the first.
                    if !matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                    ) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// The `WWW-Authenticate` value of a 401 (RFC 6750 §3).
pub fn challenge(reason: &str, resource_metadata: Option<&str>) -> String {
    let mut value = String::from("Bearer realm=\"wardgate\"");
    if reason != "missing bearer token" {
        let reason = reason.replace(['"', '\\'], "'");
        value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{reason}\""
        ));
    }
    if let Some(url) = resource_metadata {
        value.push_str(&format!(", resource_metadata=\"{url}\""));
    }
    value
}
