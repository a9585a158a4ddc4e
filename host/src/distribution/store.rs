//! The local artifact cache, content-addressed like a registry:
//! `oci/blobs/sha256/<hex>` holds components, `oci/manifests/<hex>` maps a
//! manifest digest to its layer, `oci/refs/<hash of reference>` the digest a
//! tag last resolved to. Everything read back is verified against its digest.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub struct Store {
    root: PathBuf,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<64 hex>` → the hex part, refusing anything that could escape a path.
fn digest_hex(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest '{digest}' (only sha256)"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("malformed digest '{digest}'"));
    }
    Ok(hex)
}

impl Store {
    pub fn open(dir: PathBuf) -> Result<Store, String> {
        let root = dir.join("oci");
        for sub in ["blobs/sha256", "manifests", "refs"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| format!("cannot create cache {}: {e}", root.join(sub).display()))?;
        }
        Ok(Store { root })
    }

    /// Record a verified artifact: its component, its manifest and the reference.
    pub fn put(&self, reference: &str, manifest_digest: &str, bytes: &[u8]) -> Result<(), String> {
        let layer = sha256_digest(bytes);
        write_atomic(
            &self.root.join("blobs/sha256").join(digest_hex(&layer)?),
            bytes,
        )?;
        write_atomic(
            &self
                .root
                .join("manifests")
                .join(digest_hex(manifest_digest)?),
            layer.as_bytes(),
        )?;
        write_atomic(
            &self.ref_path(reference),
            format!("{manifest_digest}\n{reference}\n").as_bytes(),
        )
    }

    /// The component of a manifest digest, if cached and intact.
    pub fn artifact(&self, manifest_digest: &str) -> Result<Option<Vec<u8>>, String> {
        let manifest = self
            .root
            .join("manifests")
            .join(digest_hex(manifest_digest)?);
        let Ok(layer) = std::fs::read_to_string(&manifest) else {
            return Ok(None);
        };
        let layer = layer.trim();
        let Ok(bytes) = std::fs::read(self.root.join("blobs/sha256").join(digest_hex(layer)?))
        else {
            return Ok(None);
        };
        if sha256_digest(&bytes) != layer {
            return Err(format!(
                "cached blob {layer} does not match its digest; delete {} to refetch",
                self.root.display()
            ));
        }
        Ok(Some(bytes))
    }

    /// The manifest digest `reference` resolved to when last fetched.
    pub fn resolve(&self, reference: &str) -> Result<Option<String>, String> {
        Ok(std::fs::read_to_string(self.ref_path(reference))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string)))
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        self.root
            .join("refs")
            .join(hex::encode(Sha256::digest(reference.as_bytes())))
    }
}

/// Write to a temporary name, then rename: readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
