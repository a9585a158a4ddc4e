//! `jwtAuth` in the running gateway: every rejection, with RSA and EC keys,
//! the three modes, token passthrough, and a JWKS served over HTTP whose keys
//! rotate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

use super::process::{Gateway, Upstream};

pub(super) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");
pub(super) const ISSUER: &str = "https://issuer.test";
pub(super) const AUDIENCE: &str = "wardgate-tests";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token signed with fixture key `key` (`rsa1`, `ec1`, ...) under `kid`.
pub(super) fn token(key: &str, kid: &str, claims: serde_json::Value) -> String {
    let pem = fixture(&format!("{key}.key"));
    let (alg, encoding) = if key.starts_with("ec") {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap())
    } else {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap())
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, &claims, &encoding).unwrap()
}

pub(super) fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "org": "acme",
        "exp": now() + 600, "nbf": now() - 10, "iat": now(),
    })
}

fn with(mut base: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    base[key] = value;
    base
}

/// Unsigned and hand-forged tokens.
fn forged(header: serde_json::Value, claims: serde_json::Value, sig: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string()),
        b64.encode(sig)
    )
}

/// HS256 with the RSA public key's PEM as the HMAC secret: the classic
/// algorithm-confusion attack on verifiers that trust the header's `alg`.
fn hmac_with_rsa_public_key() -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r1".into());
    encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&fixture("rsa1.pub.pem")),
    )
    .unwrap()
}

/// A JWKS endpoint whose document can be swapped, counting its fetches.
struct JwksServer {
    url: String,
    doc: Arc<std::sync::Mutex<Vec<u8>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(doc: Vec<u8>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(std::sync::Mutex::new(doc));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (d, f) = (d.clone(), f.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        f.fetch_add(1, Ordering::SeqCst);
                        let body = d.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<
                                bytes::Bytes,
                            >::from(
                                body
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            doc,
            fetches,
        }
    }

    fn rotate(&self, doc: Vec<u8>) {
        *self.doc.lock().unwrap() = doc;
    }
}

struct Reply {
    status: StatusCode,
    challenge: String,
    body: String,
}

async fn call(gw: &Gateway, path: &str, token: Option<&str>) -> Reply {
    let mut req = http::Request::get(gw.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let (status, headers, body) =
        super::send(&super::client(), req.body(Full::default()).unwrap()).await;
    let challenge = headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Reply {
        status,
        challenge,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_rejections_modes_passthrough_and_key_rotation() {
    let jwks = JwksServer::start(fixture("jwks-1.json")).await;
    let upstream = Upstream::start().await;
    let auth = |mode: &str| {
        format!(
            "jwtAuth: {{mode: {mode}, issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{url: '{}'}}}}",
            jwks.url
        )
    };
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: strict
      matches: [{{path: {{pathPrefix: /strict}}}}]
      policies: {{{strict}}}
      backends: [{{host: "{up}"}}]
    - name: optional
      matches: [{{path: {{pathPrefix: /optional}}}}]
      policies: {{{optional}}}
      backends: [{{host: "{up}"}}]
    - name: permissive
      matches: [{{path: {{pathPrefix: /permissive}}}}]
      policies: {{{permissive}}}
      backends: [{{host: "{up}"}}]
    - name: passthrough
      matches: [{{path: {{pathPrefix: /passthrough}}}}]
      policies: {{{strict}, backendAuth: {{passthrough: {{}}}}}}
      backends: [{{host: "{up}"}}]
    - name: local-file
      matches: [{{path: {{pathPrefix: /file}}}}]
      policies:
        jwtAuth: {{issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/rsa1.pub.pem'}}}}
      backends: [{{host: "{up}"}}]
"#,
        strict = auth("strict"),
        optional = auth("optional"),
        permissive = auth("permissive"),
        up = upstream.addr,
    ))
    .await;

    // Accepted, with RSA and with EC keys; the token does not go upstream.
    let first_fetch = std::time::Instant::now();
    for key in [("rsa1", "r1"), ("ec1", "e1")] {
        let t = token(key.0, key.1, claims());
        let r = call(&gw, "/strict/ok", Some(&t)).await;
        assert_eq!(r.status, StatusCode::OK, "{key:?}: {}", r.body);
        let seen: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(seen["headers"].get("authorization").is_none(), "{}", r.body);
    }
    // A PEM public key from a file works as a key set.
    let r = call(&gw, "/file", Some(&token("rsa1", "r1", claims()))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let table: Vec<(&str, Option<String>, &str)> = vec![
        ("missing token", None, "missing bearer token"),
        (
            "signed by an untrusted key",
            Some(token("rogue", "r1", claims())),
            "bad signature",
        ),
        (
            "expired",
            Some(token(
                "rsa1",
                "r1",
                with(claims(), "exp", (now() - 600).into()),
            )),
            "token expired",
        ),
        (
            "not yet valid",
            Some(token(
                "ec1",
                "e1",
                with(claims(), "nbf", (now() + 600).into()),
            )),
            "not yet valid",
        ),
        (
            "wrong issuer",
            Some(token(
                "rsa1",
                "r1",
                with(claims(), "iss", "https://evil.test".into()),
            )),
            "not accepted",
        ),
        (
            "wrong audience",
            Some(token(
                "ec1",
                "e1",
                with(claims(), "aud", "someone-else".into()),
            )),
            "wrong audience",
        ),
        (
            "no exp",
            Some(token("rsa1", "r1", {
                let mut c = claims();
                c.as_object_mut().unwrap().remove("exp");
                c
            })),
            "missing claim 'exp'",
        ),
        (
            "alg none",
            Some(forged(
                serde_json::json!({"alg": "none", "typ": "JWT"}),
                claims(),
                b"",
            )),
            "malformed token",
        ),
        (
            "HMAC signed with the RSA public key",
            Some(hmac_with_rsa_public_key()),
            "not allowed for this key",
        ),
        (
            "EC token under the RSA key's kid",
            Some(token("ec1", "r1", claims())),
            "not allowed for this key",
        ),
        ("garbage", Some("not.a.jwt".into()), "malformed token"),
    ];
    for (case, t, reason) in &table {
        let r = call(&gw, "/strict/x", t.as_deref()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}: {}", r.body);
        assert!(
            r.body.contains(reason),
            "{case}: expected '{reason}' in {}",
            r.body
        );
        assert!(
            r.challenge.starts_with("Bearer realm=\"wardgate\""),
            "{case}: {}",
            r.challenge
        );
        if t.is_some() {
            assert!(
                r.challenge.contains("error=\"invalid_token\""),
                "{case}: {}",
                r.challenge
            );
        }
        // Optional mode: no token passes, a bad one does not.
        let r = call(&gw, "/optional/x", t.as_deref()).await;
        let expected = if t.is_none() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(r.status, expected, "optional, {case}: {}", r.body);
        // Permissive mode: everything passes (failures are logged).
        let r = call(&gw, "/permissive/x", t.as_deref()).await;
        assert_eq!(r.status, StatusCode::OK, "permissive, {case}: {}", r.body);
    }
    assert!(gw.log_contains("permissive mode").await);

    // Passthrough forwards the token.
    let t = token("rsa1", "r1", claims());
    let r = call(&gw, "/passthrough/x", Some(&t)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {t}"));

    // Rotation: the issuer now signs with rsa2 (kid r2). The gateway does
    // not know r2, fetches the set again once (no sooner than the refetch
    // interval after the last fetch), and accepts the token.
    jwks.rotate(fixture("jwks-2.json"));
    let interval = std::time::Duration::from_millis(5200);
    if let Some(wait) = interval.checked_sub(first_fetch.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let before = jwks.fetches.load(Ordering::SeqCst);
    let r = call(&gw, "/strict/rotated", Some(&token("rsa2", "r2", claims()))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
    // Unknown kids do not hammer the issuer: no refetch within the interval.
    for _ in 0..5 {
        let r = call(&gw, "/strict/x", Some(&token("rogue", "nope", claims()))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("no key with kid 'nope'"), "{}", r.body);
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_claims_reach_cel_authorization() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: acme-only
      policies:
        jwtAuth: {{mode: optional, issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/jwks-1.json'}}}}
        authorization:
          rules:
          - allow: 'jwt.org == "acme"'
          - deny: 'request.path.startsWith("/admin")'
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    ))
    .await;
    let acme = token("rsa1", "r1", claims());
    let other = token("ec1", "e1", with(claims(), "org", "globex".into()));
    let r = call(&gw, "/reports", Some(&acme)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (case, t, path) in [
        ("another org", Some(other.as_str()), "/reports"),
        ("no token (no claims)", None, "/reports"),
        (
            "acme, but a denied path",
            Some(acme.as_str()),
            "/admin/users",
        ),
    ] {
        let r = call(&gw, path, t).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{case}: {}", r.body);
        assert!(r.body.contains("not allowed"), "{case}: {}", r.body);
    }
}

/// MCP routes behind jwtAuth publish RFC 9728 protected-resource metadata
/// and point to it from their 401, so MCP clients find the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_routes_serve_protected_resource_metadata() {
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: tools
      matches: [{{path: {{pathPrefix: /mcp}}}}]
      policies:
        jwtAuth: {{issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/jwks-1.json'}}}}
      backends: [{{mcp: {{targets: [{{name: t, mcp: {{host: 127.0.0.1, port: 9}}}}]}}}}]
"#
    ))
    .await;
    let r = call(&gw, "/.well-known/oauth-protected-resource/mcp", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let meta: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let base = gw.url("");
    assert_eq!(meta["resource"], format!("{base}/mcp"));
    assert_eq!(meta["authorization_servers"], serde_json::json!([ISSUER]));
    assert_eq!(
        meta["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    let r = call(&gw, "/mcp", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = &r.challenge;
    assert!(
        challenge.starts_with("Bearer")
            && challenge.contains(&format!(
                "resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
            )),
        "{challenge}"
    );
    // No MCP route with jwtAuth serves that path: no metadata.
    let r = call(&gw, "/.well-known/oauth-protected-resource/other", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// agentgateway's `mcpAuthentication`: the same token checks, with the
/// route's RFC 9728 metadata taken from `resourceMetadata`, and
/// `jwtValidationOptions.requiredClaims` deciding which claims must be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_authentication_serves_its_resource_metadata_and_checks_tokens() {
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: tools
      matches: [{{path: {{exact: /stdio/mcp}}}}]
      policies:
        mcpAuthentication:
          issuer: '{ISSUER}'
          audiences: [{AUDIENCE}]
          jwks: {{file: '{FIXTURES}/jwks-1.json'}}
          resourceMetadata:
            resource: http://localhost:3000/stdio/mcp
            scopesSupported: [read:all]
            bearerMethodsSupported: [header]
            resourceDocumentation: http://localhost:3000/stdio/docs
      backends: [{{mcp: {{targets: [{{name: t, mcp: {{host: 127.0.0.1, port: 9}}}}]}}}}]
    - name: lenient
      matches: [{{path: {{exact: /lenient/mcp}}}}]
      policies:
        mcpAuthentication:
          issuer: '{ISSUER}'
          jwks: {{file: '{FIXTURES}/jwks-1.json'}}
          jwtValidationOptions: {{requiredClaims: []}}
      backends: [{{mcp: {{targets: [{{name: t, mcp: {{host: 127.0.0.1, port: 9}}}}]}}}}]
"#
    ))
    .await;
    let r = call(&gw, "/.well-known/oauth-protected-resource/stdio/mcp", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let meta: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(meta["resource"], "http://localhost:3000/stdio/mcp");
    assert_eq!(meta["authorization_servers"], serde_json::json!([ISSUER]));
    assert_eq!(meta["scopes_supported"], serde_json::json!(["read:all"]));
    assert_eq!(
        meta["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    assert_eq!(
        meta["resource_documentation"],
        "http://localhost:3000/stdio/docs"
    );

    let r = call(&gw, "/stdio/mcp", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let base = gw.url("");
    assert!(
        r.challenge.contains(&format!(
            "resource_metadata=\"{base}/.well-known/oauth-protected-resource/stdio/mcp\""
        )),
        "{}",
        r.challenge
    );
    // A valid token gets past authentication (to an MCP error: nothing
    // listens on the target's port, and this is not an initialize).
    let good = token("rsa1", "r1", claims());
    let r = call(&gw, "/stdio/mcp", Some(&good)).await;
    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // Without `exp`: refused by default, accepted where no claim is required.
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let no_exp = token("rsa1", "r1", no_exp);
    let r = call(&gw, "/stdio/mcp", Some(&no_exp)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("missing claim 'exp'"), "{}", r.body);
    let r = call(&gw, "/lenient/mcp", Some(&no_exp)).await;
    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    // An expired token is refused even there.
    let expired = token("rsa1", "r1", with(claims(), "exp", (now() - 600).into()));
    let r = call(&gw, "/lenient/mcp", Some(&expired)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("token expired"), "{}", r.body);
}
