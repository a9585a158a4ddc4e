//! Verification keys: a JWKS document (`{"keys": [...]}`) or PEM public
//! keys, from a file, inline, or a URL. Remote sets are cached and fetched
//! again when a token names an unknown `kid`, at most once per
//! [`REFETCH_INTERVAL`], so a flood of bogus `kid`s cannot hammer the issuer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use moka::sync::Cache;

use crate::config::schema::Jwks;

/// Remote sets are refreshed at least this often.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid` triggers at most one refetch per this interval.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// One verification key and what it may verify.
pub struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// From the JWK's `alg`, when it names one: the only algorithm allowed.
    pub alg: Option<Algorithm>,
}

pub type KeySet = Arc<Vec<Key>>;

/// Parse a JWKS document or PEM public keys. Symmetric (`oct`) keys are
/// refused: a key set is public, and an HMAC key in it would let anyone sign.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Key>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let set: JwkSet =
            serde_json::from_str(trimmed).map_err(|e| format!("{origin}: not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Err(format!(
                    "{origin}: keys[{i}] is a symmetric (oct) key; only public keys belong in a JWKS"
                ));
            }
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("{origin}: keys[{i}] is not a usable key: {e}"))?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                key,
                alg,
            });
        }
        if keys.is_empty() {
            return Err(format!("{origin}: the JWKS has no keys"));
        }
        return Ok(keys);
    }
    if trimmed.starts_with("-----BEGIN") {
        let pem = text.as_bytes();
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|e| format!("{origin}: not an RSA, EC or Ed25519 public key: {e}"))?;
        return Ok(vec![Key {
            kid: None,
            key,
            alg: None,
        }]);
    }
    Err(format!(
        "{origin}: expected a JWKS (JSON) or a PEM public key"
    ))
}

/// Where a provider's keys come from.
pub enum KeySource {
    Static(KeySet),
    Remote(RemoteJwks),
}

impl KeySource {
    /// Local sources are read now, so a bad file fails the config load.
    pub fn from_config(jwks: &Jwks, fetcher: &Arc<Fetcher>) -> Result<KeySource, String> {
        match jwks {
            Jwks::Inline(text) => Ok(KeySource::Static(Arc::new(parse(text, "inline JWKS")?))),
            Jwks::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read JWKS file '{path}': {e}"))?;
                Ok(KeySource::Static(Arc::new(parse(&text, path)?)))
            }
            Jwks::Url(url) => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| format!("JWKS url '{url}' is not a URL: {e}"))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) {
                    return Err(format!("JWKS url '{url}' must be http or https"));
                }
                Ok(KeySource::Remote(RemoteJwks {
                    url: url.clone(),
                    fetcher: fetcher.clone(),
                }))
            }
        }
    }

    /// The keys to try for a token naming `kid`.
    pub async fn keys(&self, kid: Option<&str>) -> Result<KeySet, String> {
        match self {
            KeySource::Static(keys) => Ok(keys.clone()),
            KeySource::Remote(remote) => remote.keys(kid).await,
        }
    }
}

pub struct RemoteJwks {
    url: String,
    fetcher: Arc<Fetcher>,
}

impl RemoteJwks {
    async fn keys(&self, kid: Option<&str>) -> Result<KeySet, String> {
        if let Some(keys) = self.fetcher.cache.get(&self.url) {
            let known = kid.is_none_or(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            if known || !self.fetcher.may_refetch(&self.url) {
                return Ok(keys);
            }
        }
        let keys = self.fetcher.fetch(&self.url).await?;
        Ok(keys)
    }
}

/// Fetches and caches remote key sets; one per process, shared by reloads.
pub struct Fetcher {
    cache: Cache<String, KeySet>,
    last_fetch: Cache<String, Instant>,
}

impl Fetcher {
    /// The process's fetcher: its cache outlives config reloads.
    pub fn global() -> Arc<Fetcher> {
        static GLOBAL: std::sync::OnceLock<Arc<Fetcher>> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Fetcher::new())).clone()
    }

    fn new() -> Fetcher {
        Fetcher {
            cache: Cache::builder()
                .max_capacity(1024)
                .time_to_live(CACHE_TTL)
                .build(),
            last_fetch: Cache::builder()
                .max_capacity(1024)
                .time_to_live(REFETCH_INTERVAL)
                .build(),
        }
    }

    fn may_refetch(&self, url: &str) -> bool {
        !self.last_fetch.contains_key(url)
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        self.last_fetch.insert(url.to_string(), Instant::now());
        let req = http::Request::get(url)
            .body(Default::default())
            .map_err(|e| format!("{url}: {e}"))?;
        let call = crate::backend::fetch::send(req);
        let body = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .map_err(|_| format!("fetching JWKS {url}: timed out"))?
            .map_err(|e| format!("fetching JWKS: {e}"))?;
        let text = String::from_utf8_lossy(&body);
        let keys: KeySet = Arc::new(parse(&text, url)?);
        self.cache.insert(url.to_string(), keys.clone());
        tracing::info!(%url, keys = keys.len(), "fetched JWKS");
        Ok(keys)
    }
}
