//! Plugins through a real OCI registry (Debian's docker-registry on
//! loopback): push, pull by tag and by digest, tampering caught, basic auth,
//! a gateway loading an `oci://` plugin and restarting from its cache once
//! the registry is gone.

use std::path::PathBuf;

use http::StatusCode;
use http_body_util::{BodyExt, Full};

use super::process::{self, Gateway, Registry, Upstream};

/// A component to publish: the built-in prompt guard, written to a file.
fn component_file(tag: &str) -> (PathBuf, Vec<u8>) {
    let bytes = wardgate::policy::builtin::get("prompt-guard")
        .expect("built-in prompt-guard")
        .to_vec();
    let path = std::env::temp_dir().join(format!("wardgate-oci-{}-{tag}.wasm", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wardgate-oci-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str], envs: &[(&str, String)]) -> (bool, String) {
    let out = process::wardgate_env(args, envs);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`run`] from async tests, off the runtime's workers.
async fn run_async(args: &[&str], envs: &[(&'static str, String)]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs = envs.to_vec();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &envs)
    })
    .await
    .unwrap()
}

/// A plain HTTP/1.0 GET to the registry, returning the body.
fn registry_get(addr: std::net::SocketAddr, path: &str, accept: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

fn digest_in(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .unwrap_or_else(|| panic!("no digest line in: {output}"))
        .trim()
        .to_string()
}

#[test]
fn push_pull_by_tag_and_digest_and_tampering_is_caught() {
    let registry = Registry::start(None);
    let (file, bytes) = component_file("push");
    let dir = scratch("push");
    let cache = [(
        "WARDGATE_CACHE_DIR",
        dir.join("cache").display().to_string(),
    )];
    let reference = format!("oci://{}/plugins/guard:v1", registry.addr);

    let (ok, out) = run(
        &["plugin", "push", file.to_str().unwrap(), &reference],
        &cache,
    );
    assert!(ok, "push failed: {out}");
    let digest = digest_in(&out);

    // The artifact is in the CNCF Wasm layout, as the registry stores it.
    let manifest: serde_json::Value = serde_json::from_str(&registry_get(
        registry.addr,
        "/v2/plugins/guard/manifests/v1",
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let layer_digest = wardgate::distribution::store::sha256_digest(&bytes);
    assert_eq!(layers[0]["digest"], layer_digest.as_str());
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_str(&registry_get(
        registry.addr,
        &format!("/v2/plugins/guard/blobs/{config_digest}"),
        "*/*",
    ))
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], layer_digest.as_str());
    assert_eq!(
        config["component"]["target"],
        "wardgate:policy/plugin@0.1.0"
    );
    assert!(
        config["component"]["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "wardgate:policy/hooks@0.1.0")
    );

    // By tag.
    let by_tag = dir.join("by-tag.wasm");
    let (ok, out) = run(
        &["plugin", "pull", &reference, "-o", by_tag.to_str().unwrap()],
        &cache,
    );
    assert!(ok, "pull by tag failed: {out}");
    assert_eq!(digest_in(&out), digest);
    assert_eq!(std::fs::read(&by_tag).unwrap(), bytes);

    // By digest.
    let pinned = format!("oci://{}/plugins/guard@{digest}", registry.addr);
    let by_digest = dir.join("by-digest.wasm");
    let (ok, out) = run(
        &["plugin", "pull", &pinned, "-o", by_digest.to_str().unwrap()],
        &cache,
    );
    assert!(ok, "pull by digest failed: {out}");
    assert_eq!(std::fs::read(&by_digest).unwrap(), bytes);

    // The artifact is in the CNCF Wasm layout, and inspect reads it back.
    let (ok, out) = run(&["plugin", "inspect", &reference], &cache);
    assert!(ok, "inspect failed: {out}");
    for needle in [
        "wardgate:policy/plugin@0.1.0",
        "hooks     http-request, llm-request, llm-response, llm-chunk, mcp-request",
        &digest,
    ] {
        assert!(
            out.contains(needle),
            "inspect output lacks '{needle}': {out}"
        );
    }

    // A digest the registry does not hold.
    let wrong = format!(
        "oci://{}/plugins/guard:v1@sha256:{}",
        registry.addr,
        "0".repeat(64)
    );
    let (ok, out) = run(&["plugin", "pull", &wrong], &cache);
    assert!(!ok && out.contains("not found"), "{out}");

    // Tamper with the stored component: the pull must notice.
    let layer = wardgate::distribution::store::sha256_digest(&bytes);
    let blob = registry.blob_path(&layer);
    let mut stored = std::fs::read(&blob).unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 0xff;
    std::fs::write(&blob, stored).unwrap();
    let (ok, out) = run(
        &[
            "plugin",
            "pull",
            &reference,
            "-o",
            dir.join("t.wasm").to_str().unwrap(),
        ],
        &cache,
    );
    assert!(!ok, "a tampered blob must not be accepted: {out}");
    assert!(out.to_lowercase().contains("digest"), "{out}");

    // A registry that serves a different manifest than the pinned digest
    // names: refused, whatever the registry claims.
    let manifest = registry.blob_path(&digest);
    let mut stored = std::fs::read(&manifest).unwrap();
    stored.push(b' ');
    std::fs::write(&manifest, stored).unwrap();
    let (ok, out) = run(
        &[
            "plugin",
            "pull",
            &pinned,
            "-o",
            dir.join("m.wasm").to_str().unwrap(),
        ],
        &[(
            "WARDGATE_CACHE_DIR",
            dir.join("cache2").display().to_string(),
        )],
    );
    assert!(!ok && out.contains("does not match its digest"), "{out}");

    // Not a component: refused before anything is sent.
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let (ok, out) = run(
        &["plugin", "push", text.to_str().unwrap(), &reference],
        &cache,
    );
    assert!(!ok && out.contains("component"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}

#[test]
fn basic_auth_registry_takes_env_or_docker_config_credentials() {
    let registry = Registry::start(Some(("alice", "s3cret")));
    let (file, bytes) = component_file("auth");
    let dir = scratch("auth");
    let cache = (
        "WARDGATE_CACHE_DIR",
        dir.join("cache").display().to_string(),
    );
    let reference = format!("oci://{}/team/guard:1.0.0", registry.addr);
    let no_docker = ("DOCKER_CONFIG", dir.join("empty").display().to_string());

    let (ok, out) = run(
        &["plugin", "push", file.to_str().unwrap(), &reference],
        &[cache.clone(), no_docker.clone()],
    );
    assert!(!ok, "push without credentials must fail");
    assert!(out.contains("WARDGATE_REGISTRY_USERNAME"), "{out}");

    let (ok, out) = run(
        &["plugin", "push", file.to_str().unwrap(), &reference],
        &[
            cache.clone(),
            no_docker,
            ("WARDGATE_REGISTRY_USERNAME", "alice".into()),
            ("WARDGATE_REGISTRY_PASSWORD", "s3cret".into()),
        ],
    );
    assert!(ok, "push with credentials failed: {out}");

    // docker login's config.json works too.
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "YWxpY2U6czNjcmV0"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let out_file = dir.join("pulled.wasm");
    let (ok, out) = run(
        &[
            "plugin",
            "pull",
            &reference,
            "-o",
            out_file.to_str().unwrap(),
        ],
        &[cache, ("DOCKER_CONFIG", docker.display().to_string())],
    );
    assert!(ok, "pull with docker config credentials failed: {out}");
    assert_eq!(std::fs::read(out_file).unwrap(), bytes);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_an_oci_plugin_and_restarts_from_cache_without_the_registry() {
    let mut registry = Registry::start(None);
    let (file, _) = component_file("gateway");
    let dir = scratch("gateway");
    let cache = (
        "WARDGATE_CACHE_DIR",
        dir.join("cache").display().to_string(),
    );
    let reference = format!("oci://{}/plugins/guard:latest", registry.addr);
    let (ok, out) = run(
        &["plugin", "push", file.to_str().unwrap(), &reference],
        std::slice::from_ref(&cache),
    );
    assert!(ok, "{out}");
    let digest = digest_in(&out);

    let upstream = Upstream::start().await;
    let config = format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: guarded
      plugins:
      - name: guard
        source: {reference}
        config: {{patterns: ["(?i)forbidden"]}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    );
    let client = super::client();
    let post = |url: String, body: &'static str| {
        let client = client.clone();
        async move {
            let (status, _, body) = super::post(&client, &url, body).await;
            (status, body)
        }
    };

    {
        let gw = Gateway::start_env(&config, std::slice::from_ref(&cache)).await;
        assert_eq!(post(gw.url("/x"), "hello").await.0, StatusCode::OK);
        assert_eq!(
            post(gw.url("/x"), "this is forbidden").await.0,
            StatusCode::FORBIDDEN
        );
        let dump = client
            .get(gw.admin_url("/config_dump").parse().unwrap())
            .await
            .unwrap();
        let dump = dump.into_body().collect().await.unwrap().to_bytes();
        let dump: serde_json::Value = serde_json::from_slice(&dump).unwrap();
        let loaded = &dump["loadedPlugins"][0];
        assert_eq!(loaded["plugin"], "guard");
        assert_eq!(loaded["digest"], digest.as_str(), "{dump}");
        assert!(gw.wait_for_log("resolved plugin tag").await);
    }

    // Registry gone: a restart loads the same digest from the cache.
    registry.stop();
    let gw = Gateway::start_env(&config, std::slice::from_ref(&cache)).await;
    assert!(
        gw.wait_for_log("using the cached digest").await,
        "{}",
        gw.log()
    );
    assert_eq!(
        post(gw.url("/x"), "forbidden again").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(gw.url("/x"), "fine").await.0, StatusCode::OK);
    drop(gw);

    // Nothing cached and no registry: validate says why...
    let empty = (
        "WARDGATE_CACHE_DIR",
        dir.join("empty-cache").display().to_string(),
    );
    let cfg = dir.join("gw.yaml");
    std::fs::write(&cfg, &config).unwrap();
    let (ok, out) = run(
        &["validate", "-c", cfg.to_str().unwrap()],
        std::slice::from_ref(&empty),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("routes[0].plugins[0]") && out.contains("cannot reach registry"),
        "{out}"
    );

    // ...and the gateway runs not ready, answering 503 rather than serving
    // without the policy, until the registry is back.
    let gw = Gateway::start_env(&config, &[empty]).await;
    let ready = client
        .get(gw.admin_url("/readyz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = post(gw.url("/x"), "fine").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("not_ready"), "{body}");
    registry.restart();
    // The next retry (every 5 s) fetches, then compiles the component, its
    // instrumented form and the snapshot with an empty cache: ~10 s alone,
    // more with other tests sharing the two cores.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = client
            .get(gw.admin_url("/readyz").parse().unwrap())
            .await
            .unwrap();
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never became ready: {}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        post(gw.url("/x"), "forbidden").await.0,
        StatusCode::FORBIDDEN
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}

/// A token service in docker's token-auth protocol: basic credentials in,
/// an ES256 JWT out, naming the scope asked for; its certificate rides in
/// the `x5c` header and is the registry's `rootcertbundle`.
struct TokenServer {
    realm: String,
    cert_pem: String,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const SERVICE: &str = "wardgate-test-registry";
const ISSUER: &str = "wardgate-test-issuer";

impl TokenServer {
    async fn start(user: &'static str, pass: &'static str) -> TokenServer {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
        let cert = rcgen::CertificateParams::new(vec!["token.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let signer = std::sync::Arc::new(
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &ring::rand::SystemRandom::new(),
            )
            .unwrap(),
        );
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = issued.clone();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (signer, x5c, expected, counter) = (
                    signer.clone(),
                    x5c.clone(),
                    expected.clone(),
                    counter.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let authorized = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
                        let query = req.uri().query().unwrap_or("").to_string();
                        let (signer, x5c, counter) = (signer.clone(), x5c.clone(), counter.clone());
                        async move {
                            let resp: http::Response<Full<bytes::Bytes>> = if !authorized {
                                http::Response::builder()
                                    .status(401)
                                    .body(Full::from("bad credentials"))
                                    .unwrap()
                            } else {
                                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let token = jwt(&signer, &x5c, &query);
                                let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300});
                                http::Response::new(Full::from(body.to_string()))
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TokenServer {
            realm: format!("http://{addr}/token"),
            cert_pem: cert.pem(),
            issued,
        }
    }
}

/// An ES256 JWT granting the scopes in `query` (`scope=repository:NAME:ACTIONS`).
fn jwt(signer: &ring::signature::EcdsaKeyPair, x5c: &str, query: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(|scope| {
            let scope = scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/");
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()})
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "alice", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    format!("{signing_input}.{}", b64.encode(sig.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_challenge_flow_with_a_token_service() {
    let tokens = TokenServer::start("alice", "s3cret").await;
    let registry = Registry::start_token(&tokens.realm, SERVICE, ISSUER, &tokens.cert_pem);
    let (file, bytes) = component_file("bearer");
    let dir = scratch("bearer");
    let cache = (
        "WARDGATE_CACHE_DIR",
        dir.join("cache").display().to_string(),
    );
    let no_docker = ("DOCKER_CONFIG", dir.join("empty").display().to_string());
    let reference = format!("oci://{}/plugins/guard:bearer", registry.addr);
    let creds = [
        cache.clone(),
        no_docker.clone(),
        ("WARDGATE_REGISTRY_USERNAME", "alice".to_string()),
        ("WARDGATE_REGISTRY_PASSWORD", "s3cret".to_string()),
    ];

    // Anonymous: the token service refuses, and the error says what to do.
    let args = ["plugin", "push", file.to_str().unwrap(), &reference];
    let (ok, out) = run_async(&args, &[cache.clone(), no_docker]).await;
    assert!(!ok, "anonymous push must fail: {out}");
    assert!(out.contains("WARDGATE_REGISTRY_USERNAME"), "{out}");

    let (ok, out) = run_async(&args, &creds).await;
    assert!(ok, "push through the token flow failed: {out}");
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > 0);

    let dest = dir.join("pulled.wasm");
    let dest_text = dest.display().to_string();
    let (ok, out) = run_async(&["plugin", "pull", &reference, "-o", &dest_text], &creds).await;
    assert!(ok, "pull through the token flow failed: {out}");
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}

/// wkg (bytecodealliance/wasm-pkg-tools), installed by scripts/setup-test-peers.
fn wkg() -> std::process::Command {
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tools/bin/wkg");
    let bin = if std::path::Path::new(local).exists() {
        local
    } else {
        "wkg"
    };
    std::process::Command::new(bin)
}

#[test]
fn wkg_pulls_what_we_push_and_we_pull_what_wkg_pushes() {
    let registry = Registry::start(None);
    let (file, bytes) = component_file("wkg");
    let dir = scratch("wkg");
    let cache = [(
        "WARDGATE_CACHE_DIR",
        dir.join("cache").display().to_string(),
    )];
    let addr = registry.addr.to_string();

    let (ok, out) = run(
        &[
            "plugin",
            "push",
            file.to_str().unwrap(),
            &format!("oci://{addr}/plugins/ours:1.0.0"),
        ],
        &cache,
    );
    assert!(ok, "{out}");
    let pulled = dir.join("by-wkg.wasm");
    let out = wkg()
        .args(["oci", "pull", "--insecure", &addr, "-o"])
        .arg(&pulled)
        .arg(format!("{addr}/plugins/ours:1.0.0"))
        .output()
        .expect("wkg is missing: scripts/setup-test-peers installs it");
    assert!(
        out.status.success(),
        "wkg pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&pulled).unwrap(), bytes);

    let out = wkg()
        .args(["oci", "push", "--insecure", &addr])
        .arg(format!("{addr}/plugins/theirs:1.0.0"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wkg push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = dir.join("by-wardgate.wasm");
    let (ok, out) = run(
        &[
            "plugin",
            "pull",
            &format!("oci://{addr}/plugins/theirs:1.0.0"),
            "-o",
            ours.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&ours).unwrap(), bytes);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(file);
}
