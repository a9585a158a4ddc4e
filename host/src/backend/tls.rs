//! TLS to upstreams: trust (system roots or a CA file), the server name sent
//! and verified (SNI), ALPN for the HTTP versions allowed, and the explicit
//! `insecure` escape hatch.

use std::sync::{Arc, OnceLock};

use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::schema::{BackendTls, HttpVersion};
use crate::listener::tls::provider;

/// Build the connector for one `backendTLS` setting.
pub fn connector(
    settings: &BackendTls,
    version: HttpVersion,
    tcp: HttpConnector,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if settings.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(settings.root.as_deref())?)
            .with_no_client_auth()
    };
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let builder = match &settings.hostname {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| format!("backendTLS.hostname '{name}' is not a valid server name"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(match version {
        HttpVersion::Auto => builder.enable_all_versions().wrap_connector(tcp),
        HttpVersion::Http1 => builder.enable_http1().wrap_connector(tcp),
        HttpVersion::Http2 => builder.enable_http2().wrap_connector(tcp),
    })
}

/// A client for the gateway's own calls (JWKS and the like): http or
/// https, verified against the system roots.
pub fn http_or_https_client<B>()
-> Result<hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let roots = system_roots()
        .clone()
        .unwrap_or_else(|_| RootCertStore::empty());
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// The CAs to trust: the given PEM file, or the system's roots (read once).
fn roots(file: Option<&str>) -> Result<RootCertStore, String> {
    let Some(file) = file else {
        return system_roots().clone();
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read CA file '{file}': {e}"))?
    {
        let cert = cert.map_err(|e| format!("CA file '{file}' is not valid PEM: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("CA file '{file}' holds an unusable certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("CA file '{file}' holds no certificate"));
    }
    Ok(store)
}

fn system_roots() -> &'static Result<RootCertStore, String> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(found.certs);
        if store.is_empty() {
            return Err("no system root certificates found; set backendTLS.root".into());
        }
        Ok(store)
    })
}

/// `insecure: true`: any certificate is accepted, but the handshake's
/// signatures are still checked so the session keys are the peer's.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
