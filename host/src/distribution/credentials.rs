//! Registry credentials, in this order: `WARDGATE_REGISTRY_TOKEN` (bearer)
//! or `WARDGATE_REGISTRY_USERNAME` / `WARDGATE_REGISTRY_PASSWORD`, then the
//! docker `config.json` (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, its `auths` entries), else anonymous.

use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

pub fn for_registry(registry: &str) -> RegistryAuth {
    if let Ok(token) = std::env::var("WARDGATE_REGISTRY_TOKEN")
        && !token.is_empty()
    {
        return RegistryAuth::Bearer(token);
    }
    if let (Ok(user), Ok(pass)) = (
        std::env::var("WARDGATE_REGISTRY_USERNAME"),
        std::env::var("WARDGATE_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(user, pass);
    }
    docker_config(registry).unwrap_or(RegistryAuth::Anonymous)
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

fn docker_config(registry: &str) -> Option<RegistryAuth> {
    let text = std::fs::read_to_string(docker_config_path()?).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    // Entries are keyed by host, sometimes with a scheme or a /v1/ path.
    let entry = auths.iter().find_map(|(key, value)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        (host == registry).then_some(value)
    })?;
    if let Some(token) = entry.get("registrytoken").and_then(|t| t.as_str()) {
        return Some(RegistryAuth::Bearer(token.to_string()));
    }
    let (user, pass) = match entry.get("auth").and_then(|a| a.as_str()) {
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            (u.to_string(), p.to_string())
        }
        None => (
            entry.get("username")?.as_str()?.to_string(),
            entry.get("password")?.as_str()?.to_string(),
        ),
    };
    Some(RegistryAuth::Basic(user, pass))
}
