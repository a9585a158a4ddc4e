//! `apiKey` and `basicAuth` in the running gateway: keys as digests, bcrypt
//! hashes and plain text, read from a header, a query parameter or a
//! cookie; users from an htpasswd file written by Apache's `htpasswd`; the
//! modes; credentials kept from the upstream; the caller's identity in CEL
//! rules and as a rate-limit key.

use base64::Engine as _;
use http::StatusCode;
use http_body_util::Full;

use super::process::{Gateway, Upstream};

const HTPASSWD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/auth/htpasswd"
);

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

impl Reply {
    /// What the upstream saw (it echoes the request as JSON).
    fn seen(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not the echo: {}", self.body))
    }

    /// The request reached the upstream, its credential taken out. `case`
    /// names the call in a failure.
    fn passed_without_credential(&self, case: &str) {
        assert_eq!(self.status, StatusCode::OK, "{case}: {}", self.body);
        assert!(
            self.seen()["headers"].get("authorization").is_none(),
            "{case}: {}",
            self.body
        );
    }
}

async fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = http::Request::get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, headers, body) =
        super::send(&super::client(), req.body(Full::default()).unwrap()).await;
    Reply {
        status,
        challenge: headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string()),
        body,
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_routes_and_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    // `printf '%s' my-secret-key | sha256sum`; the bcrypt hash is of
    // `k-bcrypt`, from `htpasswd -nbBC 4 u k-bcrypt`.
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: bearer
      matches: [{{path: {{pathPrefix: /bearer}}}}]
      policies:
        apiKey:
          keys:
          - {{keyHash: "sha256:1311f8fc80a7ea28d78dd7723f09c44c1754cd35160ca8e7133ae3d7f636a19a", metadata: {{group: sales}}}}
          - {{key: k-plaintext-456}}
          - {{keyHash: "$2y$04$4pTBObH967iB2E1QIiCyue9iOrOlrWVVl/IWNGSaVUPkKn2THJ2ue", metadata: {{group: eng}}}}
      backends: [{{host: "{up}"}}]
    - name: header
      matches: [{{path: {{pathPrefix: /header}}}}]
      policies:
        apiKey: {{mode: optional, keys: [{{key: k-1}}], location: {{header: {{name: x-api-key}}}}}}
      backends: [{{host: "{up}"}}]
    - name: query
      matches: [{{path: {{pathPrefix: /query}}}}]
      policies:
        apiKey: {{keys: [{{key: "k 2"}}], location: {{queryParameter: {{name: api_key}}}}}}
      backends: [{{host: "{up}"}}]
    - name: cookie
      matches: [{{path: {{pathPrefix: /cookie}}}}]
      policies:
        apiKey: {{mode: permissive, keys: [{{key: k-3}}], location: {{cookie: {{name: gw_key}}}}}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    ))
    .await;

    // Accepted keys; the credential is taken out before the upstream.
    for key in ["my-secret-key", "k-plaintext-456", "k-bcrypt", "k-bcrypt"] {
        let r = call(
            &gw,
            "/bearer/x",
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
        r.passed_without_credential(key);
    }
    let hits = upstream.hits();
    for (case, auth, reason) in [
        ("no key", None, "missing API key"),
        ("a wrong key", Some("Bearer nope"), "invalid API key"),
        ("another scheme", Some("Basic bXk6a2V5"), "missing API key"),
        (
            "a digest as the key",
            Some("Bearer 1311f8fc80a7ea28d78dd7723f09c44c1754cd35160ca8e7133ae3d7f636a19a"),
            "invalid API key",
        ),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let r = call(&gw, "/bearer/x", &headers).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}: {}", r.body);
        assert_eq!(
            r.challenge.as_deref(),
            Some("Bearer realm=\"wardgate\""),
            "{case}"
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let body = &body["error"];
        assert_eq!(body["route"], "bearer", "{case}: {}", r.body);
        assert_eq!(body["policy"], "apiKey", "{case}: {}", r.body);
        assert!(
            body["message"].as_str().unwrap().contains(reason),
            "{case}: {}",
            r.body
        );
    }
    assert_eq!(
        upstream.hits(),
        hits,
        "refused requests never reach the upstream"
    );

    // A custom header, optional: no key passes, a wrong one does not.
    let r = call(
        &gw,
        "/header",
        &[("x-api-key", "k-1"), ("authorization", "Bearer other")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = r.seen();
    assert!(seen["headers"].get("x-api-key").is_none(), "{}", r.body);
    assert_eq!(
        seen["headers"]["authorization"], "Bearer other",
        "other headers stay"
    );
    assert_eq!(call(&gw, "/header", &[]).await.status, StatusCode::OK);
    let r = call(&gw, "/header", &[("x-api-key", "k-9")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenge, None, "no scheme to name for a custom header");

    // A query parameter, percent-encoded; the rest of the query stays.
    let r = call(&gw, "/query/v1?a=1&api_key=k%202&b=two", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.seen()["path"], "/query/v1?a=1&b=two");
    assert_eq!(
        call(&gw, "/query/v1?api_key=k3", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A cookie, permissive: a wrong key still passes, the cookie goes away
    // when it was a key, the other cookies stay.
    let r = call(&gw, "/cookie", &[("cookie", "theme=dark; gw_key=k-3")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.seen()["headers"]["cookie"], "theme=dark");
    assert_eq!(
        call(&gw, "/cookie", &[("cookie", "gw_key=bad")])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_users_sign_in_with_every_hash_apache_writes() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: team
      policies:
        basicAuth: {{htpasswd: {{file: "{HTPASSWD}"}}, realm: Team Area}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    ))
    .await;
    for user in ["ann", "ben", "cat", "dan", "eve"] {
        let auth = basic(user, &format!("pw-{user}"));
        let r = call(&gw, "/x", &[("authorization", &auth)]).await;
        r.passed_without_credential(user);
    }
    let hits = upstream.hits();
    for (case, auth) in [
        ("no credentials", None),
        ("a wrong password", Some(basic("ann", "pw-ben"))),
        ("an unknown user", Some(basic("zed", "pw-zed"))),
        ("not base64", Some("Basic !!!".to_string())),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = call(&gw, "/x", &headers).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case}: {}", r.body);
        assert_eq!(
            r.challenge.as_deref(),
            Some("Basic realm=\"Team Area\", charset=\"UTF-8\""),
            "{case}"
        );
        assert!(
            r.body.contains("\"policy\":\"basicAuth\""),
            "{case}: {}",
            r.body
        );
    }
    assert_eq!(upstream.hits(), hits);
}

/// The identity an `apiKey` or `basicAuth` policy verifies is what CEL
/// rules read (as `apiKey.*` and `basicAuth.username`) and what a rate
/// limit keys on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_a_key_or_password_names_reaches_rules_and_limits() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: reports
      matches: [{{path: {{pathPrefix: /reports}}}}]
      policies:
        apiKey:
          keys:
          - {{key: k-sales, metadata: {{group: sales, team: s}}}}
          - {{key: k-ops, metadata: {{group: ops, team: o}}}}
        authorization:
          rules: ['apiKey.group == "sales"']
      backends: [{{host: "{up}"}}]
    - name: metered
      matches: [{{path: {{pathPrefix: /metered}}}}]
      policies:
        apiKey:
          keys:
          - {{key: k-sales, metadata: {{team: s}}}}
          - {{key: k-ops, metadata: {{team: o}}}}
      plugins:
      - name: rate-limit
        config: {{limits: [{{requests: 2, per: minute, key: {{claim: team}}}}]}}
      backends: [{{host: "{up}"}}]
    - name: admin
      matches: [{{path: {{pathPrefix: /admin}}}}]
      policies:
        basicAuth: {{htpasswd: {{file: "{HTPASSWD}"}}}}
        authorization:
          rules: ['basicAuth.username == "ann"']
      backends: [{{host: "{up}"}}]
    - name: token-or-password
      matches: [{{path: {{pathPrefix: /either}}}}]
      policies:
        jwtAuth: {{mode: optional, issuer: '{issuer}', audiences: [{audience}], jwks: {{file: '{jwks}/jwks-1.json'}}}}
        basicAuth: {{htpasswd: {{file: "{HTPASSWD}"}}, mode: optional}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr,
        issuer = super::jwt::ISSUER,
        audience = super::jwt::AUDIENCE,
        jwks = super::jwt::FIXTURES,
    ))
    .await;
    let bearer = |k: &str| format!("Bearer {k}");
    let r = call(&gw, "/reports", &[("authorization", &bearer("k-sales"))]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(&gw, "/reports", &[("authorization", &bearer("k-ops"))]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    for _ in 0..2 {
        let r = call(&gw, "/metered", &[("authorization", &bearer("k-sales"))]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = call(&gw, "/metered", &[("authorization", &bearer("k-sales"))]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let r = call(&gw, "/metered", &[("authorization", &bearer("k-ops"))]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "another key holder has a bucket of its own: {}",
        r.body
    );

    let r = call(&gw, "/admin", &[("authorization", &basic("ann", "pw-ann"))]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(&gw, "/admin", &[("authorization", &basic("ben", "pw-ben"))]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // `jwtAuth` takes out only a bearer token: a password in the same
    // header is left for `basicAuth`, which runs after it.
    let r = call(
        &gw,
        "/either",
        &[("authorization", &basic("ann", "pw-wrong"))],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("\"policy\":\"basicAuth\""), "{}", r.body);
    let r = call(
        &gw,
        "/either",
        &[("authorization", &basic("ann", "pw-ann"))],
    )
    .await;
    r.passed_without_credential("basic on the shared route");
    let token = super::jwt::token("rsa1", "r1", super::jwt::claims());
    let r = call(
        &gw,
        "/either",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    r.passed_without_credential("bearer on the shared route");
}
