//! `apiKey`: the caller presents one of the route's keys; its `metadata`
//! becomes the request's identity.
//!
//! Keys are kept as SHA-256 digests only (a `key` written in the config is
//! hashed when the config is built), and a presented key is found by its
//! digest, so no comparison runs over secret bytes. bcrypt entries cannot
//! be found that way (each carries its own salt): they are tried in turn
//! on the blocking pool, once per distinct presented key.

use std::collections::HashMap;
use std::sync::Arc;

use http::request::Parts;
use sha2::{Digest, Sha256};

use super::Outcome;
use super::credential::Location;
use super::slow_hash::SlowHashChecks;
use crate::config::schema::{ApiKeyAuth as ApiKeyConfig, AuthMode, StoredKey};

pub struct ApiKeyAuth {
    mode: AuthMode,
    location: Location,
    by_digest: HashMap<[u8; 32], Arc<serde_json::Value>>,
    /// bcrypt hashes and their metadata, tried in order.
    salted: Arc<Vec<(String, Arc<serde_json::Value>)>>,
    checks: SlowHashChecks,
}

impl ApiKeyAuth {
    pub fn from_config(config: &ApiKeyConfig) -> Result<ApiKeyAuth, String> {
        if config.keys.is_empty() {
            return Err("`keys` is empty: no key could ever be accepted".into());
        }
        let mut by_digest = HashMap::new();
        let mut salted = Vec::new();
        for (i, entry) in config.keys.iter().enumerate() {
            let metadata = Arc::new(
                entry
                    .metadata
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({})),
            );
            let digest = match &entry.secret {
                StoredKey::Plain(key) => Sha256::digest(key.as_bytes()).into(),
                StoredKey::Sha256(digest) => *digest,
                StoredKey::Bcrypt(hash) => {
                    salted.push((hash.clone(), metadata));
                    continue;
                }
            };
            if by_digest.insert(digest, metadata).is_some() {
                return Err(format!("keys[{i}]: the same key is listed twice"));
            }
        }
        Ok(ApiKeyAuth {
            mode: config.mode,
            location: config
                .location
                .as_ref()
                .map(Location::from_config)
                .unwrap_or_else(|| Location::authorization("Bearer")),
            by_digest,
            salted: Arc::new(salted),
            checks: SlowHashChecks::new(),
        })
    }

    /// The `WWW-Authenticate` value of a 401, when the key travels in
    /// `Authorization` (a scheme to name); a custom header has none.
    pub fn challenge(&self) -> Option<String> {
        match &self.location {
            Location::Header {
                name,
                prefix: Some(scheme),
            } if name == http::header::AUTHORIZATION => {
                Some(format!("{} realm=\"wardgate\"", scheme.trim()))
            }
            _ => None,
        }
    }

    /// Check the request's key; on success it is taken out of the request.
    pub async fn check(&self, parts: &mut Parts) -> Outcome {
        let Some(key) = self.location.extract(parts) else {
            return match self.mode {
                AuthMode::Strict => Outcome::Rejected("missing API key".into()),
                _ => Outcome::Anonymous,
            };
        };
        let key = key.into_owned();
        match self.lookup(key).await {
            Some(metadata) => {
                self.location.remove(parts);
                Outcome::Verified(metadata)
            }
            None if self.mode == AuthMode::Permissive => {
                tracing::warn!("API key not accepted (permissive mode, request continues)");
                Outcome::Anonymous
            }
            None => Outcome::Rejected("invalid API key".into()),
        }
    }

    async fn lookup(&self, key: String) -> Option<serde_json::Value> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(metadata) = self.by_digest.get(&digest) {
            return Some(metadata.as_ref().clone());
        }
        if self.salted.is_empty() {
            return None;
        }
        let salted = self.salted.clone();
        let presented = key.clone();
        let found = self
            .checks
            .verdict(presented.as_bytes(), move || {
                let i = salted
                    .iter()
                    .position(|(hash, _)| bcrypt::verify(key.as_bytes(), hash).unwrap_or(false))?;
                u32::try_from(i).ok()
            })
            .await?;
        Some(self.salted[found as usize].1.as_ref().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(yaml: &str) -> ApiKeyAuth {
        let config: ApiKeyConfig = serde_saphyr::from_str(yaml).unwrap();
        ApiKeyAuth::from_config(&config).unwrap()
    }

    fn request(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().uri("/x");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    // `printf '%s' my-secret-key | sha256sum`; the bcrypt hash is of
    // `k-bcrypt` at cost 4, made with `htpasswd -nbBC 4 u k-bcrypt`.
    const KEYS: &str = r#"
keys:
- keyHash: "sha256:1311f8fc80a7ea28d78dd7723f09c44c1754cd35160ca8e7133ae3d7f636a19a"
  metadata: { group: sales }
- key: k-plaintext-456
- keyHash: "$2y$04$4pTBObH967iB2E1QIiCyue9iOrOlrWVVl/IWNGSaVUPkKn2THJ2ue"
  metadata: { group: ops }
"#;

    #[tokio::test]
    async fn keys_are_found_by_digest_or_by_bcrypt_and_taken_out() {
        let auth = auth(KEYS);
        let mut p = request(&[("authorization", "Bearer my-secret-key")]);
        match auth.check(&mut p).await {
            Outcome::Verified(m) => assert_eq!(m["group"], "sales"),
            other => panic!("{other:?}"),
        }
        assert!(
            p.headers.get("authorization").is_none(),
            "the key stays here"
        );
        let mut p = request(&[("authorization", "Bearer k-plaintext-456")]);
        assert!(
            matches!(auth.check(&mut p).await, Outcome::Verified(m) if m == serde_json::json!({}))
        );
        for _ in 0..2 {
            let mut p = request(&[("authorization", "Bearer k-bcrypt")]);
            assert!(
                matches!(auth.check(&mut p).await, Outcome::Verified(m) if m["group"] == "ops")
            );
        }
        let mut p = request(&[("authorization", "Bearer nosuchkey")]);
        assert!(matches!(auth.check(&mut p).await, Outcome::Rejected(r) if r == "invalid API key"));
        assert!(
            p.headers.get("authorization").is_some(),
            "a refused key is left alone"
        );
    }

    #[tokio::test]
    async fn modes_decide_what_a_missing_or_wrong_key_means() {
        let strict = auth(KEYS);
        let optional = auth(&format!("{KEYS}mode: optional\n"));
        let permissive = auth(&format!("{KEYS}mode: permissive\n"));
        let none = || request(&[]);
        let wrong = || request(&[("authorization", "Bearer wrong")]);
        assert!(
            matches!(strict.check(&mut none()).await, Outcome::Rejected(r) if r == "missing API key")
        );
        assert!(matches!(
            optional.check(&mut none()).await,
            Outcome::Anonymous
        ));
        assert!(matches!(
            optional.check(&mut wrong()).await,
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            permissive.check(&mut none()).await,
            Outcome::Anonymous
        ));
        assert!(matches!(
            permissive.check(&mut wrong()).await,
            Outcome::Anonymous
        ));
    }

    #[test]
    fn a_key_listed_twice_or_no_keys_is_an_error() {
        let twice = "keys: [{key: a}, {keyHash: \"sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb\"}]";
        let config: ApiKeyConfig = serde_saphyr::from_str(twice).unwrap();
        let err = ApiKeyAuth::from_config(&config).err().unwrap();
        assert_eq!(err, "keys[1]: the same key is listed twice");
        let config: ApiKeyConfig = serde_saphyr::from_str("keys: []").unwrap();
        assert!(ApiKeyAuth::from_config(&config).is_err());
    }
}
