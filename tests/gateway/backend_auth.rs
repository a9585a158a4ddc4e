//! `backendAuth` on HTTP and MCP routes: the gateway's key as a bearer token
//! to an HTTP upstream and to a FastMCP server that requires one (the SDK's
//! own bearer check), a Google access token from a service account key
//! (verified by the fake Google token endpoint), and the failures: a token
//! Google refuses, a key variable that is not set.

use http::{Request, StatusCode};
use http_body_util::Full;

use super::llm::{FakeProvider, refused_config, service_account_file, tokens_issued};
use super::mcp::{FastMcp, sdk_client};
use super::process::{Gateway, Upstream};
use super::{client, send};

async fn call(url: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::get(url)
        .header("authorization", "Bearer the-clients-own")
        .body(Full::default())
        .unwrap();
    let (status, _, body) = send(&client(), req).await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_auth_reaches_http_upstreams_and_mcp_targets() {
    let upstream = Upstream::start().await;
    let calc = FastMcp::start_with(&["--require-token", "mcp-s3cret"]);
    let google = FakeProvider::start("vertex", "fake-google", &[]);
    let key = service_account_file(&google, false).await;
    let forged = service_account_file(&google, true).await;
    let http_route = |name: &str, auth: &str| {
        format!(
            r#"
    - name: {name}
      matches: [{{path: {{pathPrefix: /{name}}}}}]
      policies: {{backendAuth: {auth}}}
      backends: [{{host: "{}"}}]"#,
            upstream.addr
        )
    };
    let mcp_route = |name: &str, policies: &str| {
        format!(
            r#"
    - name: {name}
      matches: [{{path: {{pathPrefix: /{name}}}}}]
      policies: {{{policies}}}
      backends:
      - mcp:
          targets:
          - {{name: calc, mcp: {{host: 127.0.0.1, port: {}, path: /mcp}}}}"#,
            calc.port
        )
    };
    let gw = Gateway::start_env(
        &format!(
            "binds:\n- port: 0\n  listeners:\n  - routes:{}{}{}{}{}\n",
            http_route("key", "{key: $UPSTREAM_KEY}"),
            http_route(
                "gcp",
                &format!("{{gcp: {{credential: {{file: \"{}\"}}}}}}", key.display())
            ),
            http_route(
                "forged",
                &format!(
                    "{{gcp: {{credential: {{file: \"{}\"}}}}}}",
                    forged.display()
                )
            ),
            mcp_route("tools", "backendAuth: {key: $MCP_KEY}"),
            mcp_route("bare", ""),
        ),
        &[
            ("UPSTREAM_KEY", "up-123".to_string()),
            ("MCP_KEY", "mcp-s3cret".to_string()),
        ],
    )
    .await;

    // The gateway's credential replaces the client's.
    let (status, seen) = call(&gw.url("/key/x")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["headers"]["authorization"], "Bearer up-123");
    for _ in 0..3 {
        let (status, seen) = call(&gw.url("/gcp/x")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen["headers"]["authorization"], "Bearer ya29.fake-1");
    }
    assert_eq!(tokens_issued(&google).await, 1);
    // A key Google refuses: 502 naming the route and backend; nothing sent.
    let hits = upstream.hits();
    let (status, body) = call(&gw.url("/forged/x")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["route"], "forged", "{body}");
    assert_eq!(
        body["error"]["backend"],
        upstream.addr.to_string(),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no credentials for") && message.contains("Google access token"),
        "{body}"
    );
    assert_eq!(upstream.hits(), hits);

    // The FastMCP server refuses calls without its token: through the
    // route with backendAuth the SDK client reaches it, without it not.
    let out = sdk_client("py", &gw.url("/tools"), &[r#"add={"a": 2, "b": 3}"#]);
    assert_eq!(
        out[1]["tools"],
        serde_json::json!(["add", "echo", "multiply"])
    );
    assert_eq!(out[2]["text"], "5", "{out:?}");
    let out = sdk_client("py", &gw.url("/bare"), &[r#"add={"a": 2, "b": 3}"#]);
    assert!(
        out[1]["tools"].as_array().is_some_and(|t| t.is_empty()),
        "{out:?}"
    );

    let (_, _, dump) = super::get(&client(), &gw.admin_url("/config_dump")).await;
    assert!(!dump.contains("up-123") && !dump.contains("mcp-s3cret"));
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&forged);
}

#[test]
fn an_unset_key_variable_on_an_http_route_is_placed() {
    let stderr = refused_config(
        "backend-auth-key",
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        backendAuth: {key: $WARDGATE_TEST_UNSET}\n      backends: [{host: 127.0.0.1:9}]\n",
    );
    assert!(
        stderr.contains(":6:23: binds[0].listeners[0].routes[0].policies.backendAuth.key: environment variable WARDGATE_TEST_UNSET is not set"),
        "{stderr}"
    );
}

/// The claims of the bearer JWT an upstream saw.
fn bearer_claims(seen: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let header = seen["headers"]["authorization"]
        .as_str()
        .unwrap_or_default();
    let token = header.strip_prefix("Bearer ").expect("a bearer token");
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn id_tokens(google: &FakeProvider) -> Vec<serde_json::Value> {
    let (_, _, body) = super::get(&client(), &format!("http://{}/_tokens", google.addr())).await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["id_tokens"]
        .as_array()
        .cloned()
        .unwrap()
}

/// `type: idToken` (for Cloud Run behind IAM and the like): a service
/// account key mints an ID token for the route's audience, or for
/// `https://` and the backend's host; without a key, the metadata server
/// mints it. Each is kept until near expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_come_from_a_key_or_the_metadata_server() {
    let upstream = Upstream::start().await;
    let google = FakeProvider::start("vertex", "fake-google", &[]);
    let key = service_account_file(&google, false).await;
    let route = |name: &str, auth: &str| {
        format!(
            r#"
    - name: {name}
      matches: [{{path: {{pathPrefix: /{name}}}}}]
      policies: {{backendAuth: {{gcp: {auth}}}}}
      backends: [{{host: "{}"}}]"#,
            upstream.addr
        )
    };
    let file = format!("credential: {{file: \"{}\"}}", key.display());
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:{}{}\n",
        route(
            "run",
            &format!("{{type: idToken, audience: \"https://calc-7x.a.run.app\", {file}}}")
        ),
        route("host", &format!("{{type: idToken, {file}}}")),
    ))
    .await;
    for _ in 0..2 {
        let (status, seen) = call(&gw.url("/run/x")).await;
        assert_eq!(status, StatusCode::OK);
        let claims = bearer_claims(&seen);
        assert_eq!(claims["aud"], "https://calc-7x.a.run.app", "{claims}");
        assert_eq!(
            claims["email"],
            "gateway@wardgate-test.iam.gserviceaccount.com"
        );
    }
    let (status, seen) = call(&gw.url("/host/x")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bearer_claims(&seen)["aud"], "https://127.0.0.1");
    assert_eq!(
        id_tokens(&google).await,
        serde_json::json!([
            {"aud": "https://calc-7x.a.run.app", "via": "key"},
            {"aud": "https://127.0.0.1", "via": "key"},
        ])
        .as_array()
        .cloned()
        .unwrap()
    );
    drop(gw);

    // On Google Cloud without a key: the metadata server.
    let gw = Gateway::start_env(
        &format!(
            "binds:\n- port: 0\n  listeners:\n  - routes:{}\n",
            route(
                "run",
                "{type: idToken, audience: \"https://calc-7x.a.run.app\"}"
            )
        ),
        &[("GCE_METADATA_HOST", google.addr())],
    )
    .await;
    let (status, seen) = call(&gw.url("/run/x")).await;
    assert_eq!(status, StatusCode::OK, "{}", gw.log());
    assert_eq!(bearer_claims(&seen)["aud"], "https://calc-7x.a.run.app");
    assert_eq!(id_tokens(&google).await[2]["via"], "metadata");
    let _ = std::fs::remove_file(&key);
}

#[test]
fn an_audience_without_id_tokens_is_placed() {
    let stderr = refused_config(
        "backend-auth-audience",
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        backendAuth: {gcp: {audience: https://x.run.app}}\n      backends: [{host: 127.0.0.1:9}]\n",
    );
    assert!(
        stderr.contains("binds[0].listeners[0].routes[0].policies.backendAuth.gcp.audience: an audience is for ID tokens"),
        "{stderr}"
    );
}

/// `backendAuth: passthrough` on an MCP route: each caller's verified token
/// reaches the HTTP target in sessions of the caller's own (the SDK server
/// binds a session to the token that opened it, so one shared session
/// would fail every caller but the first), over Streamable HTTP and the
/// legacy SSE transport downstream; a token the target refuses is named in
/// the call's error; without passthrough the target gets no token; and a
/// reload ends the old sessions with a DELETE under their own tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_gives_each_caller_its_own_target_sessions() {
    use super::jwt::{AUDIENCE, FIXTURES, ISSUER, claims, token};
    let server = FastMcp::start_with(&["--accept-jwts"]);
    let route = |name: &str, auth: &str| {
        format!(
            r#"
    - name: {name}
      matches: [{{path: {{pathPrefix: /{name}}}}}]
      policies:
        jwtAuth: {{issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/jwks-1.json'}}}}
        {auth}
      backends:
      - mcp:
          targets:
          - {{name: calc, mcp: {{host: 127.0.0.1, port: {}, path: /mcp}}}}"#,
            server.port
        )
    };
    let gw = Gateway::start(&format!(
        "binds:\n- port: 0\n  listeners:\n  - routes:{}{}\n",
        route("pass", "backendAuth: {passthrough: {}}"),
        route("strip", ""),
    ))
    .await;
    let as_user = |sub: &str| {
        let mut c = claims();
        c["sub"] = sub.into();
        token("rsa1", "r1", c)
    };
    let (alice, bob, mallory) = (as_user("alice"), as_user("bob"), as_user("mallory"));
    let whoami = |line: &str, path: &str, bearer: &str| {
        let out = sdk_client(line, &gw.url(path), &["--bearer", bearer, "whoami="]);
        assert!(
            out[1]["tools"]
                .as_array()
                .is_some_and(|t| t.contains(&"whoami".into())),
            "{out:?}"
        );
        out[2]["text"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(whoami("py", "/pass", &alice), "alice");
    assert_eq!(whoami("py", "/pass", &bob), "bob");
    assert_eq!(whoami("py-mcp1", "/pass/sse", &bob), "bob");
    assert_eq!(whoami("py", "/pass", &alice), "alice");

    // A token the gateway accepts and the target refuses: no tools, and a
    // call says why.
    let out = sdk_client("py", &gw.url("/pass"), &["--bearer", &mallory, "whoami="]);
    assert_eq!(out[1]["tools"], serde_json::json!([]), "{out:?}");
    let message = out[2]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("target calc is unavailable") && message.contains("401"),
        "{out:?}"
    );
    // Without passthrough the gateway keeps the token to itself.
    let out = sdk_client("py", &gw.url("/strip"), &["--bearer", &alice]);
    assert_eq!(out[1]["tools"], serde_json::json!([]), "{out:?}");

    // A reload drops the old config's sessions, each ended under its token.
    gw.signal("HUP");
    assert!(gw.wait_for_log("config reloaded").await);
    super::process::eventually(|| async {
        let out = sdk_client("py", &gw.url("/pass"), &["--bearer", &alice, "deleted="]);
        let mut deleted: Vec<String> =
            serde_json::from_str(out[2]["text"].as_str().unwrap_or("[]")).unwrap_or_default();
        deleted.sort();
        deleted == ["alice", "bob"]
    })
    .await;
}
