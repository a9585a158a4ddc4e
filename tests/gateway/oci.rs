//! Plugins through a real OCI registry (Debian's docker-registry on
//! loopback): push, pull by tag and by digest, tampering caught, basic auth,
//! a gateway loading an `oci://` plugin and restarting from its cache once
//! the registry is gone.

use std::path::PathBuf;

use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

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
        "hooks     http-request, llm-request, mcp-request",
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
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let post = |url: String, body: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::post(url).body(Full::from(body)).unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
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
