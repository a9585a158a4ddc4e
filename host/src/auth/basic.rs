//! `basicAuth`: users and passwords (RFC 7617) checked against htpasswd
//! text, as Apache's `htpasswd` writes it: bcrypt (`-B`), Apache MD5
//! (`$apr1$`, the default), SHA-256 and SHA-512 crypt (`-2`, `-5`), `{SHA}`
//! (`-s`) and MD5 crypt (`$1$`). DES crypt (`-d`, eight characters at most)
//! and plain text (`-p`) are refused when the config is read.
//!
//! The salted hashes are slow on purpose, so a check runs on the blocking
//! pool once per distinct user and password and its verdict is remembered
//! ([`super::slow_hash`]).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::request::Parts;
use md5::{Digest, Md5};
use sha_crypt::ShaCrypt;
use sha_crypt::password_hash::PasswordVerifier;
use subtle::ConstantTimeEq;

use super::Outcome;
use super::credential::Location;
use super::slow_hash::SlowHashChecks;
use crate::config::schema::{AuthMode, BasicAuth as BasicConfig, bcrypt_hash};

pub struct BasicAuth {
    mode: AuthMode,
    realm: String,
    location: Location,
    users: Arc<HashMap<String, PasswordHash>>,
    checks: SlowHashChecks,
}

/// One user's entry.
#[derive(Debug, Clone, PartialEq)]
enum PasswordHash {
    Bcrypt(String),
    /// `$apr1$` or `$1$`: the magic, the salt and the encoded digest.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        hash: String,
    },
    /// `$5$` or `$6$`.
    ShaCrypt(String),
    /// `{SHA}`: SHA-1 of the password, unsalted.
    Sha1([u8; 20]),
}

impl BasicAuth {
    /// `htpasswd` is the password file's text.
    pub fn from_config(config: &BasicConfig, htpasswd: &str) -> Result<BasicAuth, String> {
        let users = parse_htpasswd(htpasswd)?;
        if users.is_empty() {
            return Err("the htpasswd text has no users".into());
        }
        if let Some(realm) = &config.realm
            && (realm.contains(['"', '\\']) || realm.chars().any(char::is_control))
        {
            return Err(format!(
                "realm '{realm}' may not hold quotes, backslashes or control characters"
            ));
        }
        Ok(BasicAuth {
            mode: config.mode,
            realm: config.realm.clone().unwrap_or_else(|| "Restricted".into()),
            location: config
                .authorization_location
                .as_ref()
                .map(Location::from_config)
                .unwrap_or_else(|| Location::authorization("Basic")),
            users: Arc::new(users),
            checks: SlowHashChecks::new(),
        })
    }

    /// The `WWW-Authenticate` value of this route's 401s.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    /// Check the request's user and password; on success they are taken out
    /// of the request and the identity is `{"username": ...}`.
    pub async fn check(&self, parts: &mut Parts) -> Outcome {
        let Some(encoded) = self.location.extract(parts) else {
            return match self.mode {
                AuthMode::Strict => Outcome::Rejected("missing credentials".into()),
                _ => Outcome::Anonymous,
            };
        };
        let verdict = match decode(&encoded) {
            Some((user, password)) => self.verify(&user, &password).await.then_some(user),
            None => None,
        };
        match verdict {
            Some(user) => {
                let identity = serde_json::json!({ "username": user });
                self.location.remove(parts);
                Outcome::Verified(identity)
            }
            None if self.mode == AuthMode::Permissive => {
                tracing::warn!(
                    "basic credentials not accepted (permissive mode, request continues)"
                );
                Outcome::Anonymous
            }
            None => Outcome::Rejected("invalid user or password".into()),
        }
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        if let PasswordHash::Sha1(expected) = hash {
            let got: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
            return got.ct_eq(expected).into();
        }
        let credential = format!("{user}:{password}");
        let users = self.users.clone();
        let (user, password) = (user.to_string(), password.to_string());
        let verdict = self
            .checks
            .verdict(credential.as_bytes(), move || {
                users.get(&user)?.matches(&password).then_some(0)
            })
            .await;
        verdict.is_some()
    }
}

/// `base64(user:password)`; the user may not hold a colon, the password may.
fn decode(encoded: &str) -> Option<(String, String)> {
    let bytes = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn parse_htpasswd(text: &str) -> Result<HashMap<String, PasswordHash>, String> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |what: String| format!("htpasswd line {}: {what}", n + 1);
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| at("expected `user:hash`".into()))?;
        let hash = PasswordHash::parse(hash).map_err(|e| at(format!("user '{user}': {e}")))?;
        // Apache takes the first entry of a user; so does this.
        users.entry(user.to_string()).or_insert(hash);
    }
    Ok(users)
}

impl PasswordHash {
    fn parse(text: &str) -> Result<PasswordHash, String> {
        let rehash = "re-hash it with `htpasswd -B` (bcrypt)";
        if let Some(checked) = bcrypt_hash(text) {
            return checked.map(PasswordHash::Bcrypt);
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = text.strip_prefix(magic) {
                let (salt, hash) = rest
                    .split_once('$')
                    .filter(|(s, h)| s.len() <= 8 && h.len() == 22)
                    .ok_or_else(|| format!("not a valid {magic} hash"))?;
                return Ok(PasswordHash::Md5Crypt {
                    magic,
                    salt: salt.to_string(),
                    hash: hash.to_string(),
                });
            }
        }
        if text.starts_with("$5$") || text.starts_with("$6$") {
            // A wrong password, not a malformed hash, is the only expected refusal.
            return match ShaCrypt::default().verify_password(b"", text) {
                Err(sha_crypt::password_hash::Error::PasswordInvalid) => {
                    Ok(PasswordHash::ShaCrypt(text.to_string()))
                }
                _ => Err("not a valid SHA-crypt hash".into()),
            };
        }
        if let Some(b64) = text.strip_prefix("{SHA}") {
            return BASE64
                .decode(b64)
                .ok()
                .and_then(|d| <[u8; 20]>::try_from(d).ok())
                .map(PasswordHash::Sha1)
                .ok_or_else(|| "not a valid {SHA} hash".into());
        }
        if text.len() == 13 && !text.starts_with('$') {
            return Err(format!(
                "DES crypt (`htpasswd -d`) checks eight characters at most; {rehash}"
            ));
        }
        Err(format!(
            "not a hash htpasswd writes (plain text is not accepted); {rehash}"
        ))
    }

    fn matches(&self, password: &str) -> bool {
        match self {
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            PasswordHash::Md5Crypt { magic, salt, hash } => {
                let got = md5_crypt(password.as_bytes(), magic.as_bytes(), salt.as_bytes());
                got.as_bytes().ct_eq(hash.as_bytes()).into()
            }
            PasswordHash::ShaCrypt(hash) => ShaCrypt::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok(),
            PasswordHash::Sha1(expected) => {
                let got: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
                got.ct_eq(expected).into()
            }
        }
    }
}

/// Poul-Henning Kamp's MD5-crypt, the digest part (22 characters); with
/// the magic `$apr1$` it is Apache's variant. No maintained crate offers it.
fn md5_crypt(password: &[u8], magic: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(digest);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(digest);
        } else {
            c.update(password);
        }
        digest = c.finalize();
    }
    const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |value: u32, chars: usize| {
        let mut v = value;
        for _ in 0..chars {
            out.push(ALPHABET[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((d(a) << 16) | (d(b) << 8) | d(c), 4);
    }
    put(d(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `htpasswd -nb[B|m|s|2|5] alice pw-<flag>` (apache2-utils 2.4)
    // and `openssl passwd -apr1|-1 -salt abcdefgh hello`.
    const HTPASSWD: &str = "\
# comment, then a blank line

bcrypt:$2y$05$gaZNJDlZ19CbtDxbUh5ECebZj/LIyVv31pOU/g6y.7ui94wDdZY4a
apr1:$apr1$Eo9n/Oq7$1BfBJ7Jok.3R0qM2NYgWi1
sha1:{SHA}SVLUEEX+LADUvVlU84GPXm0LQ4s=
sha256:$5$Oq5fcNKKBPhZqqo9$RDgibHlV.OithaTAiaX3LTeYWlSIzsJvdNW7tj.YOFB
sha512:$6$p4/qzCPlrXTwDTio$qb5ilsGoXHVcwSx33LCOF/pUnTGmqU8qi/cyAPQuPfpcrxLu05HL1Kk2ay.jIy9b7m2uBa1uN62SO7LmaZLeB1
";

    #[test]
    fn every_hash_htpasswd_writes_is_checked() {
        let users = parse_htpasswd(HTPASSWD).unwrap();
        for (user, password) in [
            ("bcrypt", "pw--B"),
            ("apr1", "pw--m"),
            ("sha1", "pw--s"),
            ("sha256", "pw--2"),
            ("sha512", "pw--5"),
        ] {
            let hash = &users[user];
            assert!(hash.matches(password), "{user}");
            assert!(!hash.matches("pw--x"), "{user} with a wrong password");
            assert!(!hash.matches(""), "{user} with none");
        }
    }

    #[test]
    fn md5_crypt_matches_openssl() {
        assert_eq!(
            md5_crypt(b"hello", b"$apr1$", b"abcdefgh"),
            "cy3DSYyOwfhsyu7QOMQzd."
        );
        assert_eq!(
            md5_crypt(b"hello", b"$1$", b"abcdefgh"),
            "rwnEbRiN0agqVgZBovWNQ/"
        );
        // A password longer than one 16-byte digest, a salt shorter than 8.
        let long = PasswordHash::parse("$apr1$x.Y/z$5B2GUWcB0bidtgAHBo4qT0").unwrap();
        assert!(long.matches("a-password-of-30-characters!!!"));
        assert!(!long.matches("a-password-of-30-characters!!"));
    }

    #[test]
    fn unusable_entries_are_refused_with_their_line() {
        let err =
            parse_htpasswd("a:{SHA}SVLUEEX+LADUvVlU84GPXm0LQ4s=\nbob:TnxZqmJj7RNKU\n").unwrap_err();
        assert!(
            err.starts_with("htpasswd line 2: user 'bob': DES crypt"),
            "{err}"
        );
        let err = parse_htpasswd("carol:secret\n").unwrap_err();
        assert!(err.contains("plain text is not accepted"), "{err}");
        let err = parse_htpasswd("no-colon\n").unwrap_err();
        assert_eq!(err, "htpasswd line 1: expected `user:hash`");
        let err = parse_htpasswd("d:$2y$05$short\n").unwrap_err();
        assert!(err.contains("not a valid bcrypt hash"), "{err}");
    }

    fn auth(mode: &str) -> BasicAuth {
        let config: BasicConfig =
            serde_saphyr::from_str(&format!("htpasswd: x\nrealm: Team\nmode: {mode}\n")).unwrap();
        BasicAuth::from_config(&config, HTPASSWD).unwrap()
    }

    fn request(credential: Option<&str>) -> Parts {
        let mut req = http::Request::builder().uri("/");
        if let Some(c) = credential {
            req = req.header("authorization", format!("Basic {}", BASE64.encode(c)));
        }
        req.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn users_are_checked_and_their_credentials_taken_out() {
        let strict = auth("strict");
        let mut p = request(Some("apr1:pw--m"));
        assert!(
            matches!(strict.check(&mut p).await, Outcome::Verified(id) if id == serde_json::json!({"username": "apr1"}))
        );
        assert!(p.headers.get("authorization").is_none());
        for wrong in ["apr1:pw--x", "nobody:pw--m", "apr1", "bcrypt:"] {
            let mut p = request(Some(wrong));
            assert!(
                matches!(strict.check(&mut p).await, Outcome::Rejected(_)),
                "{wrong}"
            );
        }
        let mut p = request(None);
        assert!(
            matches!(strict.check(&mut p).await, Outcome::Rejected(r) if r == "missing credentials")
        );
        assert_eq!(
            strict.challenge(),
            "Basic realm=\"Team\", charset=\"UTF-8\""
        );
        // A password may hold colons.
        let colon = BasicAuth::from_config(
            &serde_saphyr::from_str("htpasswd: x").unwrap(),
            "u:{SHA}3OptnM09ILoVSfbZtd3mB0IViII=\n",
        )
        .unwrap();
        assert!(matches!(
            colon.check(&mut request(Some("u:a:b"))).await,
            Outcome::Verified(_)
        ));
    }

    #[tokio::test]
    async fn optional_and_permissive_modes() {
        let optional = auth("optional");
        assert!(matches!(
            optional.check(&mut request(None)).await,
            Outcome::Anonymous
        ));
        assert!(matches!(
            optional.check(&mut request(Some("sha1:no"))).await,
            Outcome::Rejected(_)
        ));
        let permissive = auth("permissive");
        assert!(matches!(
            permissive.check(&mut request(Some("sha1:no"))).await,
            Outcome::Anonymous
        ));
        assert!(matches!(
            permissive.check(&mut request(Some("sha1:pw--s"))).await,
            Outcome::Verified(_)
        ));
    }
}
