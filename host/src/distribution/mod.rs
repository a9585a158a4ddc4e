//! Getting plugin components from OCI registries: the artifact format and
//! registry protocol ([`oci`]), credentials ([`credentials`]) and the local
//! content-addressed cache ([`store`]) that lets a restart work while the
//! registry is down.

pub mod credentials;
pub mod oci;
pub mod store;

use std::path::PathBuf;

use crate::policy::spec::OciReference;

/// Where Wardgate keeps downloaded artifacts and compiled code:
/// `$WARDGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/wardgate`, else `~/.cache/wardgate`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARDGATE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("wardgate");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/wardgate"),
        None => std::env::temp_dir().join("wardgate-cache"),
    }
}

/// A component fetched for a chain entry, and the digests it was verified against.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// Digest of the manifest the reference resolved to.
    pub manifest_digest: String,
    /// Where it came from: the registry, or the cache when that was down.
    pub from_cache: bool,
}

/// Resolve and fetch `reference` for loading, synchronously (config loads
/// run off the async workers). A digest-pinned reference already in the
/// cache needs no network; a tag is resolved at the registry, and only when
/// the registry cannot be reached does the last digest seen for it serve.
pub fn fetch(reference: &OciReference, insecure: bool) -> Result<Fetched, String> {
    let store = store::Store::open(cache_dir())?;
    if let Some(digest) = &reference.digest
        && let Some(bytes) = store.artifact(digest)?
    {
        return Ok(Fetched {
            bytes,
            manifest_digest: digest.clone(),
            from_cache: true,
        });
    }
    let r = reference.clone();
    // The OCI client is async; run it on a private runtime in its own
    // thread, so this works from any caller (blocking pool, CLI, tests).
    let pulled = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| oci::OciError::Other(e.to_string()))?
            .block_on(oci::pull(&r, insecure, None))
    })
    .join()
    .map_err(|_| "the OCI fetch thread panicked".to_string())?;
    match pulled {
        Ok(p) => {
            store.put(&reference.to_string(), &p.manifest_digest, &p.bytes)?;
            if reference.digest.is_none() {
                tracing::info!(reference = %reference, digest = %p.manifest_digest, "resolved plugin tag");
            }
            Ok(Fetched {
                bytes: p.bytes,
                manifest_digest: p.manifest_digest,
                from_cache: false,
            })
        }
        // Verification failures never fall back: the cache must not hide tampering.
        Err(e @ (oci::OciError::DigestMismatch { .. } | oci::OciError::Format(_))) => {
            Err(e.to_string())
        }
        Err(e) if reference.digest.is_none() => match store.resolve(&reference.to_string())? {
            Some(digest) => {
                let bytes = store
                    .artifact(&digest)?
                    .ok_or_else(|| format!("{e}; and the cached {digest} is incomplete"))?;
                tracing::warn!(reference = %reference, %digest, "registry unreachable ({e}); using the cached digest");
                Ok(Fetched {
                    bytes,
                    manifest_digest: digest,
                    from_cache: true,
                })
            }
            None => Err(format!("{e} (and nothing cached for it)")),
        },
        Err(e) => Err(e.to_string()),
    }
}
