//! TLS termination. Each HTTPS bind gets one rustls config holding the
//! certificates of all its listeners; the client's SNI picks the first
//! certificate whose names cover it, and the first one is the default.
//! Certificates are read when the config is built, so a bad file fails the
//! load (or reload) instead of the first handshake.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// The crypto provider of every TLS config in the process (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide provider, for libraries (the OCI client's
/// HTTP stack) that use the default; ours pass [`provider`] explicitly.
pub fn install_default_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Read a PEM certificate chain (leaf first) and the private key that signs for it.
pub fn load_cert(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate file '{cert}': {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file '{cert}' is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!("certificate file '{cert}' holds no certificate"));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from '{key}': {e}"))?;
    let certified = CertifiedKey::from_der(chain, der, &provider())
        .map_err(|e| format!("key '{key}' does not fit certificate '{cert}': {e}"))?;
    Ok(Arc::new(certified))
}

/// The server side of one bind: its certificates, ALPN for h2 and HTTP/1.1.
pub fn acceptor(certs: Vec<Arc<CertifiedKey>>) -> Result<TlsAcceptor, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn covering(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        let name = ServerName::try_from(sni).ok()?;
        self.certs.iter().find(|ck| {
            ck.end_entity_cert()
                .ok()
                .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
                .is_some_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|sni| self.covering(sni))
            .or_else(|| self.certs.first())
            .cloned()
    }
}
