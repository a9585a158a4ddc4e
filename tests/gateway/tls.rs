//! TLS on both sides, with a CA generated per test run: termination with SNI
//! choosing among several certificates, HTTP/2 by ALPN, and upstream TLS
//! with a CA file, an SNI override, system roots and `insecure`; h2c
//! upstreams with prior knowledge.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::process::{self, Gateway, Upstream};

/// A throwaway CA and files of leaf certificates it signed.
pub(super) struct Pki {
    pub(super) dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(super) fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("wardgate-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wardgate test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    /// Write `name.pem` and `name.key` for a leaf valid for `names`.
    pub(super) fn leaf(&self, name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (
            cert_path.display().to_string(),
            key_path.display().to_string(),
        )
    }

    pub(super) fn ca_path(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    fn server_config(&self, cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one TLS request saw: the server's leaf certificate, the protocol
/// ALPN chose, and the response.
struct Exchange {
    leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    status: StatusCode,
    body: String,
}

/// GET `path` over TLS to `port` on loopback, offering `sni` and `alpn`.
async fn tls_get(
    config: &rustls::ClientConfig,
    port: u16,
    sni: &str,
    alpn: &[&[u8]],
    path: &str,
) -> Exchange {
    let mut config = config.clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = connector
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake with the gateway");
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let req = Request::get(path)
        .header("host", sni)
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = req;
        *req.uri_mut() = format!("https://{sni}{path}").parse().unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Exchange {
        leaf,
        alpn,
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn leaf_der(path: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_with_sni_choosing_among_certificates_over_h1_and_h2() {
    let pki = Pki::new("terminate");
    let (a_cert, a_key) = pki.leaf("a", &["a.test"]);
    let (b_cert, b_key) = pki.leaf("b", &["*.b.test"]);
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - protocol: HTTPS
    tls:
      cert: {a_cert}
      key: {a_key}
      certificates: [{{cert: {b_cert}, key: {b_key}}}]
    routes:
    - backends: [{{host: "{up}"}}]
    - matches: [{{path: {{pathPrefix: /mcp}}}}]
      policies:
        jwtAuth: {{issuer: 'https://issuer.test', jwks: {{file: '{jwks}/jwks-1.json'}}}}
      backends: [{{mcp: {{targets: [{{name: t, mcp: {{host: 127.0.0.1, port: 9}}}}]}}}}]
"#,
        up = upstream.addr,
        jwks = super::jwt::FIXTURES,
    ))
    .await;
    let port = gw.ports[0];
    let client = pki.client_config();

    // Requests over TLS are https ones: the MCP route's RFC 9728 metadata
    // names an https resource though HTTP/1.1 requests carry no scheme.
    let meta = tls_get(
        &client,
        port,
        "a.test",
        &[b"http/1.1"],
        "/.well-known/oauth-protected-resource/mcp",
    )
    .await;
    assert_eq!(meta.status, StatusCode::OK, "{}", meta.body);
    let meta: serde_json::Value = serde_json::from_str(&meta.body).unwrap();
    assert_eq!(meta["resource"], "https://a.test/mcp");

    let a = tls_get(&client, port, "a.test", &[b"http/1.1"], "/hello").await;
    assert_eq!(a.leaf, leaf_der(&a_cert), "SNI a.test gets a's certificate");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(seen["path"], "/hello");

    let b = tls_get(&client, port, "api.b.test", &[b"h2", b"http/1.1"], "/h2").await;
    assert_eq!(b.leaf, leaf_der(&b_cert), "SNI api.b.test matches *.b.test");
    assert_eq!(b.alpn.as_deref(), Some(&b"h2"[..]), "ALPN picks h2");
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);

    // No certificate covers this name: the first is the default, which the
    // client then rejects as not valid for the name it asked for.
    let mut config = client.clone();
    config.alpn_protocols = vec![];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let err = connector
        .connect(ServerName::try_from("other.test").unwrap(), tcp)
        .await
        .expect_err("no certificate is valid for other.test");
    assert!(
        err.to_string().contains("certificate"),
        "unexpected error: {err}"
    );

    // A plain-HTTP client on the TLS port gets no response, and the
    // gateway keeps serving TLS afterwards.
    let plain = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let attempt = plain
        .get(format!("http://127.0.0.1:{port}/").parse().unwrap())
        .await;
    assert!(
        attempt.is_err(),
        "plain HTTP must not be served on a TLS port"
    );
    let again = tls_get(&client, port, "a.test", &[b"http/1.1"], "/after").await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_with_ca_file_sni_override_or_explicit_insecure() {
    let pki = Pki::new("upstream");
    let (cert, key) = pki.leaf("up", &["upstream.internal"]);
    let upstream = Upstream::start_tls(pki.server_config(&cert, &key)).await;
    let plain = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: verified
      matches: [{{path: {{pathPrefix: /verified}}}}]
      policies:
        backendTLS: {{root: {ca}, hostname: upstream.internal}}
      backends: [{{host: "{up}"}}]
    - name: verified-h1
      matches: [{{path: {{pathPrefix: /h1}}}}]
      policies:
        backendTLS: {{root: {ca}, hostname: upstream.internal}}
        http: {{version: HTTP1}}
      backends: [{{host: "{up}"}}]
    - name: wrong-name
      matches: [{{path: {{pathPrefix: /wrong-name}}}}]
      policies:
        backendTLS: {{root: {ca}, hostname: elsewhere.internal}}
      backends: [{{host: "{up}"}}]
    - name: system-roots
      matches: [{{path: {{pathPrefix: /system}}}}]
      policies:
        backendTLS: {{hostname: upstream.internal}}
      backends: [{{host: "{up}"}}]
    - name: insecure
      matches: [{{path: {{pathPrefix: /insecure}}}}]
      policies:
        backendTLS: {{insecure: true}}
      backends: [{{host: "{up}"}}]
    - name: h2c
      matches: [{{path: {{pathPrefix: /h2c}}}}]
      policies:
        http: {{version: HTTP2}}
      backends: [{{host: "{plain}"}}]
"#,
        ca = pki.ca_path(),
        up = upstream.addr,
        plain = plain.addr,
    ))
    .await;
    let c = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let get = |path: &str| {
        let c = c.clone();
        let url = gw.url(path);
        async move {
            let resp = c.get(url.parse().unwrap()).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };

    let (status, body) = get("/verified/x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "ALPN offers h2 to a TLS upstream"
    );
    assert_eq!(seen["path"], "/verified/x");

    let (status, body) = get("/h1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["version"], "HTTP/1.1", "version HTTP1 pins HTTP/1.1");

    for path in ["/wrong-name", "/system"] {
        let (status, body) = get(path).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {body}");
        assert!(body.contains("certificate"), "{path}: {body}");
    }

    let (status, body) = get("/insecure").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = get("/h2c").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["version"], "HTTP/2.0", "h2c with prior knowledge");
}

#[test]
fn tls_config_errors_name_the_file_and_config_path() {
    let pki = Pki::new("errors");
    let (cert, _) = pki.leaf("one", &["one.test"]);
    let (_, other_key) = pki.leaf("two", &["two.test"]);
    let cases = [
        (
            format!("tls: {{cert: {cert}, key: /nonexistent/key.pem}}"),
            "binds[0].listeners[0].tls",
            "/nonexistent/key.pem",
        ),
        (
            format!("tls: {{cert: {cert}, key: {other_key}}}"),
            "binds[0].listeners[0].tls",
            "does not fit",
        ),
        (
            "protocol: HTTPS".to_string(),
            "binds[0].listeners[0]",
            "needs `tls",
        ),
    ];
    for (listener, path, needle) in cases {
        let file = pki.dir.join("bad.yaml");
        std::fs::write(
            &file,
            format!(
                "binds:\n- port: 8443\n  listeners:\n  - {listener}\n    routes: [{{backends: [{{host: 'a:1'}}]}}]\n"
            ),
        )
        .unwrap();
        let out = process::wardgate(&["validate", "-c", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{listener}: must fail");
        assert!(
            stderr.contains(path) && stderr.contains(needle),
            "{listener}: expected '{path}' and '{needle}' in: {stderr}"
        );
    }

    let file = pki.dir.join("bad-ca.yaml");
    std::fs::write(
        &file,
        "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - policies: {backendTLS: {root: /nonexistent/ca.pem}}\n      backends: [{host: 'a:1'}]\n",
    )
    .unwrap();
    let out = process::wardgate(&["validate", "-c", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("binds[0].listeners[0].routes[0].policies.backendTLS")
            && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
}
