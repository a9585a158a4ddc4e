//! Plugins as OCI artifacts in the CNCF Wasm layout: an image manifest whose
//! config has media type `application/vnd.wasm.config.v0+json` and exactly
//! one `application/wasm` layer, the component. Other tools of that format
//! (oras, wkg) push and pull the same artifacts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::{Client, Reference, RegistryOperation};

use super::credentials;
use super::store::sha256_digest;
use crate::policy::spec::OciReference;

pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(
        "{registry} refused the credentials or needs some: set WARDGATE_REGISTRY_USERNAME and \
         WARDGATE_REGISTRY_PASSWORD (or WARDGATE_REGISTRY_TOKEN), or run `docker login {registry}`"
    )]
    AuthRequired { registry: String },
    #[error("{reference} not found in the registry")]
    NotFound { reference: String },
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("not a Wasm plugin artifact: {0}")]
    Format(String),
    #[error("cannot reach registry {registry}: {error}")]
    Unreachable { registry: String, error: String },
    #[error("{0}")]
    Other(String),
}

/// What a pull produced, verified.
pub struct Pulled {
    pub manifest_digest: String,
    pub manifest: OciImageManifest,
    pub config: serde_json::Value,
    pub bytes: Vec<u8>,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(registry)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client for one registry: plain HTTP only for loopback or when asked.
fn client(registry: &str, insecure: bool) -> Client {
    crate::listener::tls::install_default_provider();
    let protocol = if insecure || is_loopback(registry) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    })
}

fn reference(r: &OciReference) -> Reference {
    match (&r.tag, &r.digest) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
            r.registry.clone(),
            r.repository.clone(),
            tag.clone(),
            digest.clone(),
        ),
        (None, Some(digest)) => {
            Reference::with_digest(r.registry.clone(), r.repository.clone(), digest.clone())
        }
        (tag, None) => Reference::with_tag(
            r.registry.clone(),
            r.repository.clone(),
            tag.clone().unwrap_or_else(|| "latest".into()),
        ),
    }
}

fn classify(r: &OciReference, e: OciDistributionError) -> OciError {
    use OciDistributionError as E;
    let registry = r.registry.clone();
    match e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => {
            OciError::AuthRequired { registry }
        }
        E::ServerError {
            code: 401 | 403, ..
        } => OciError::AuthRequired { registry },
        E::ImageManifestNotFoundError(_) | E::ServerError { code: 404, .. } => OciError::NotFound {
            reference: r.to_string(),
        },
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::NotFound
                )
            }) =>
        {
            OciError::NotFound {
                reference: r.to_string(),
            }
        }
        E::RequestError(e) => OciError::Unreachable {
            registry,
            error: root_cause(&e),
        },
        E::DigestError(e) => OciError::DigestMismatch {
            what: format!("a blob of {r}"),
            expected: "the manifest's digest".into(),
            actual: e.to_string(),
        },
        other => OciError::Other(format!("{r}: {other}")),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Fetch and verify the manifest of `r` (the digest is computed here, not
/// taken from the registry's header) and check it is a Wasm artifact.
pub async fn manifest(
    r: &OciReference,
    insecure: bool,
) -> Result<(Client, String, OciImageManifest), OciError> {
    let client = client(&r.registry, insecure);
    let auth = credentials::for_registry(&r.registry);
    let reference = reference(r);
    let (raw, _) = client
        .pull_manifest_raw(&reference, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| classify(r, e))?;
    let digest = sha256_digest(&raw);
    if let Some(pinned) = &r.digest
        && &digest != pinned
    {
        return Err(OciError::DigestMismatch {
            what: format!("manifest of {r}"),
            expected: pinned.clone(),
            actual: digest,
        });
    }
    let manifest: OciImageManifest = serde_json::from_slice(&raw).map_err(|e| {
        OciError::Format(format!(
            "{r}: the manifest is not an OCI image manifest: {e}"
        ))
    })?;
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(OciError::Format(format!(
            "{r}: config media type is '{}', expected '{WASM_CONFIG_MEDIA_TYPE}'",
            manifest.config.media_type
        )));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => {}
        [layer] => {
            return Err(OciError::Format(format!(
                "{r}: layer media type is '{}', expected '{WASM_LAYER_MEDIA_TYPE}'",
                layer.media_type
            )));
        }
        layers => {
            return Err(OciError::Format(format!(
                "{r}: {} layers; a Wasm artifact has exactly one",
                layers.len()
            )));
        }
    }
    Ok((client, digest, manifest))
}

/// Pull `r`: manifest, config and the one layer, each checked against its digest.
pub async fn pull(
    r: &OciReference,
    insecure: bool,
    progress: Option<&ProgressBar>,
) -> Result<Pulled, OciError> {
    let (client, manifest_digest, manifest) = manifest(r, insecure).await?;
    let reference = reference(r);
    let mut config = Vec::new();
    client
        .pull_blob(&reference, &manifest.config, &mut config)
        .await
        .map_err(|e| classify(r, e))?;
    verify(&format!("config of {r}"), &manifest.config.digest, &config)?;
    let config: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| OciError::Format(format!("{r}: config is not JSON: {e}")))?;

    let layer = &manifest.layers[0];
    if let Some(bar) = progress {
        bar.set_length(layer.size.max(0) as u64);
    }
    let mut stream = client
        .pull_blob_stream(&reference, layer)
        .await
        .map_err(|e| classify(r, e))?;
    let mut bytes = Vec::with_capacity(layer.size.max(0) as usize);
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The client checks the digest as it streams; say which blob failed.
            if e.to_string().contains("digest") {
                OciError::DigestMismatch {
                    what: format!("component layer of {r}"),
                    expected: layer.digest.clone(),
                    actual: e.to_string(),
                }
            } else {
                OciError::Other(format!("{r}: reading the layer: {e}"))
            }
        })?;
        bytes.extend_from_slice(&chunk);
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    verify(&format!("component layer of {r}"), &layer.digest, &bytes)?;
    Ok(Pulled {
        manifest_digest,
        manifest,
        config,
        bytes,
    })
}

fn verify(what: &str, expected: &str, bytes: &[u8]) -> Result<(), OciError> {
    let actual = sha256_digest(bytes);
    if actual != expected {
        return Err(OciError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// The config blob of the CNCF Wasm layout for a component.
pub fn wasm_config(component: &[u8]) -> serde_json::Value {
    let (imports, exports, target) = world_of(component).unwrap_or_default();
    serde_json::json!({
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "author": format!("wardgate {}", env!("CARGO_PKG_VERSION")),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [sha256_digest(component)],
        "component": { "imports": imports, "exports": exports, "target": target },
    })
}

/// Import and export names of a component, and the world it targets.
pub fn world_of(component: &[u8]) -> Option<(Vec<String>, Vec<String>, String)> {
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(component).ok()?
    else {
        return None;
    };
    let resolve = &resolve;
    let world = &resolve.worlds[world];
    let imports: Vec<String> = world
        .imports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|k| resolve.name_world_key(k))
        .collect();
    let target = exports
        .iter()
        .find(|e| e.starts_with("wardgate:policy/hooks"))
        .map(|e| e.replace("/hooks", "/plugin"))
        .unwrap_or_default();
    Some((imports, exports, target))
}

/// Push a component to `r`; returns the manifest digest.
pub async fn push(
    r: &OciReference,
    component: Vec<u8>,
    insecure: bool,
    progress: Option<&ProgressBar>,
) -> Result<String, OciError> {
    if !crate::toolchain::is_component(&component) {
        return Err(OciError::Format(
            "the file is not a WebAssembly component; build it with `wardgate plugin build`".into(),
        ));
    }
    let client = client(&r.registry, insecure);
    let auth = credentials::for_registry(&r.registry);
    let reference = reference(r);
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| classify(r, e))?;

    let config = Config::new(
        serde_json::to_vec(&wasm_config(&component)).expect("JSON"),
        WASM_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layer_digest = sha256_digest(&component);
    let size = component.len() as u64;
    let layer = ImageLayer::new(component, WASM_LAYER_MEDIA_TYPE.to_string(), None);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    );
    let manifest =
        OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));

    if !client
        .blob_exists(&reference, &layer_digest)
        .await
        .unwrap_or(false)
    {
        if let Some(bar) = progress {
            bar.set_length(size);
        }
        // Stream the layer in chunks so the progress bar moves as it uploads.
        let data = layer.data.clone();
        let bar = progress.cloned();
        let chunks = futures_util::stream::iter(
            (0..data.len())
                .step_by(256 << 10)
                .map(move |at| data.slice(at..(at + (256 << 10)).min(data.len()))),
        )
        .map(move |chunk| {
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
            Ok(chunk)
        });
        client
            .push_blob_stream(&reference, chunks, &layer_digest, Some(size))
            .await
            .map_err(|e| classify(r, e))?;
    } else if let Some(bar) = progress {
        bar.set_length(size);
        bar.set_position(size);
    }
    client
        .push_blob(&reference, config.data.clone(), &manifest.config.digest)
        .await
        .map_err(|e| classify(r, e))?;
    client
        .push_manifest(&reference, &manifest.clone().into())
        .await
        .map_err(|e| classify(r, e))?;
    // The digest of the bytes the client sent (canonical JSON), re-read to be sure.
    let (_, digest, _) = self::manifest(
        &OciReference {
            digest: None,
            ..r.clone()
        },
        insecure,
    )
    .await?;
    Ok(digest)
}
