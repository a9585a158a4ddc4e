//! A plugin chain entry as written in YAML: `{ name, source, config, failureMode, ... }`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::capabilities::Capability;

/// One entry of a route's `plugins:` chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginSpec {
    /// Name of this entry in logs, metrics and errors.
    pub name: String,
    /// Where the component comes from; defaults to the built-in plugin called `name`.
    #[serde(default)]
    pub source: Option<PluginSource>,
    /// The plugin's own config, handed to its `configure` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Default: `reuse` for built-ins (they keep nothing between requests:
    /// limits live in the host's counters), `snapshot` for all others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    #[serde(default)]
    pub limits: Limits,
    /// Capabilities granted; default `[log, metrics]` (built-ins: all they import).
    #[serde(default)]
    pub grants: Option<Vec<Capability>>,
    /// Fetch an `oci://` source over plain HTTP although the registry is not
    /// on loopback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl PluginSpec {
    pub fn isolation(&self) -> Isolation {
        self.isolation.unwrap_or(match self.source() {
            PluginSource::Builtin(_) => Isolation::Reuse,
            _ => Isolation::Snapshot,
        })
    }

    pub fn source(&self) -> PluginSource {
        self.source
            .clone()
            .unwrap_or_else(|| PluginSource::Builtin(self.name.clone()))
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PluginSource {
    /// Shipped inside the binary: `prompt-guard`, or `builtin:prompt-guard`.
    Builtin(String),
    /// A `.wasm` file: `./plugins/x.wasm`, or `file:x.wasm`.
    File(PathBuf),
    /// An OCI artifact: `oci://registry[:port]/repo:tag` or `...@sha256:DIGEST`.
    Oci(OciReference),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl OciReference {
    fn parse(rest: &str) -> Result<Self, String> {
        let (registry, path) = rest.split_once('/').ok_or(
            "an OCI reference needs a registry and a repository: oci://host[:port]/repo:tag",
        )?;
        if registry.is_empty() || path.is_empty() {
            return Err("empty registry or repository in OCI reference".into());
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| format!("digest '{d}' must start with sha256:"))?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(format!(
                        "digest '{d}' must be sha256: followed by 64 lowercase hex digits"
                    ));
                }
                (p, Some(d.to_string()))
            }
            None => (path, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last = path.rsplit('/').next().unwrap_or(path);
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => (&path[..path.len() - tag.len() - 1], Some(tag.to_string())),
            None => (path, None),
        };
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if !repository.chars().all(valid) {
            return Err(format!(
                "repository '{repository}' may hold only lowercase letters, digits and . _ - /"
            ));
        }
        if tag.is_none() && digest.is_none() {
            return Err("an OCI reference needs a :tag or an @sha256: digest".into());
        }
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

impl TryFrom<String> for PluginSource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("oci://") {
            return OciReference::parse(rest).map(PluginSource::Oci);
        }
        if let Some(name) = s.strip_prefix("builtin:") {
            return Ok(PluginSource::Builtin(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(PluginSource::File(PathBuf::from(path)));
        }
        if s.contains('/') || s.ends_with(".wasm") {
            return Ok(PluginSource::File(PathBuf::from(s)));
        }
        if s.is_empty() {
            return Err("source is empty".into());
        }
        Ok(PluginSource::Builtin(s))
    }
}

impl From<PluginSource> for String {
    fn from(s: PluginSource) -> String {
        match s {
            PluginSource::Builtin(n) => n,
            PluginSource::File(p) => format!("file:{}", p.display()),
            PluginSource::Oci(r) => r.to_string(),
        }
    }
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// What happens to a request when the plugin fails (trap, timeout, memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// The request fails with a 5xx naming the plugin.
    #[default]
    Closed,
    /// The plugin is skipped and the request goes on; the failure is logged.
    Open,
}

/// How instances relate to requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Isolation {
    /// A fresh instance per request, made from a snapshot taken after
    /// `configure`: no state crosses requests, no set-up is repeated.
    #[default]
    Snapshot,
    /// Configured instances are kept and reused by later requests: a little
    /// faster, but a plugin can carry state from one request to the next.
    Reuse,
}

/// Per-plugin resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// CPU time per hook call, in milliseconds.
    #[serde(default = "default_cpu_ms")]
    pub cpu_ms: u64,
    /// Linear memory per instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
}

fn default_cpu_ms() -> u64 {
    50
}
fn default_memory_mib() -> u64 {
    64
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_ms: default_cpu_ms(),
            memory_mib: default_memory_mib(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let p = |s: &str| PluginSource::try_from(s.to_string());
        assert_eq!(
            p("prompt-guard").unwrap(),
            PluginSource::Builtin("prompt-guard".into())
        );
        assert_eq!(
            p("./x.wasm").unwrap(),
            PluginSource::File("./x.wasm".into())
        );
        let PluginSource::Oci(r) = p("oci://127.0.0.1:5000/wardgate/guard:1.0").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "wardgate/guard", Some("1.0"))
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let PluginSource::Oci(r) = p(&format!("oci://ghcr.io/x/y@{digest}")).unwrap() else {
            panic!()
        };
        assert_eq!((r.tag, r.digest), (None, Some(digest)));
        assert!(p("oci://ghcr.io/x/y").unwrap_err().contains("tag"));
        assert!(
            p("oci://ghcr.io/x/y@sha256:abc")
                .unwrap_err()
                .contains("64")
        );
        assert!(p("oci://noslash").is_err());
    }
}
