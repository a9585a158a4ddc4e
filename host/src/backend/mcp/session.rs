//! MCP session ids that any replica can resume: the id a client holds is
//! the session's state (revision, route, start time) sealed with
//! AES-256-GCM under the configured key (`config.session.key`), so every
//! gateway sharing the key can open it, for POST and DELETE alike; there is
//! no session table to share.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

const SESSION_AAD: &[u8] = b"wardgate-mcp-session-v1";
/// Ids of server-to-client requests relayed to a client.
pub const RELAY_AAD: &[u8] = b"wardgate-mcp-relay-v1";

pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub version: String,
    pub route: String,
    pub opened: u64,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key")),
            rng: SystemRandom::new(),
        }
    }

    /// From `config.session.key`: 64 hex digits (32 bytes).
    pub fn from_hex(hex: &str) -> Result<Sealer, String> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut key).map_err(
            |_| "must be 64 hex digits (a 32-byte AES-256 key), e.g. from `openssl rand -hex 32`",
        )?;
        Ok(Sealer::new(&key))
    }

    /// One key per process when none is configured (said once in the log).
    pub fn process_default() -> Arc<Sealer> {
        static DEFAULT: OnceLock<Arc<Sealer>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let mut key = [0u8; 32];
                SystemRandom::new().fill(&mut key).expect("system randomness");
                tracing::warn!(
                    "no config.session.key: MCP session ids are sealed with a key made for this process; \
                     they do not survive a restart or move to another replica"
                );
                Arc::new(Sealer::new(&key))
            })
            .clone()
    }

    pub fn seal(&self, state: &SessionState) -> String {
        let plain = json!({"v": state.version, "r": state.route, "t": state.opened});
        self.seal_value(SESSION_AAD, &plain)
    }

    /// The state in a session id, if this key sealed it (and nobody changed it).
    pub fn open(&self, id: &str) -> Option<SessionState> {
        let v = self.open_value(SESSION_AAD, id)?;
        Some(SessionState {
            version: v.get("v")?.as_str()?.to_string(),
            route: v.get("r")?.as_str()?.to_string(),
            opened: v.get("t")?.as_u64()?,
        })
    }

    /// Seal any small JSON value; `purpose` (the AEAD's associated data)
    /// keeps a token made for one use from being accepted for another.
    pub fn seal_value(&self, purpose: &[u8], plain: &Value) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut data = plain.to_string().into_bytes();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose),
                &mut data,
            )
            .expect("sealing cannot fail for small inputs");
        let mut token = nonce.to_vec();
        token.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(token)
    }

    pub fn open_value(&self, purpose: &[u8], token: &str) -> Option<Value> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose), &mut data)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_ids_open_with_the_same_key_only_and_resist_tampering() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = Sealer::from_hex(key).unwrap();
        let b = Sealer::from_hex(key).unwrap();
        let state = SessionState {
            version: "2025-06-18".into(),
            route: "tools".into(),
            opened: 1,
        };
        let id = a.seal(&state);
        assert_eq!(b.open(&id), Some(state.clone()), "another replica opens it");
        assert_ne!(a.seal(&state), id, "fresh nonce per session");
        let other = Sealer::from_hex(&key.replace('0', "1")).unwrap();
        assert_eq!(other.open(&id), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(a.open(&URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(a.open("not-a-session"), None);
        assert!(Sealer::from_hex("abc").is_err());
    }
}
