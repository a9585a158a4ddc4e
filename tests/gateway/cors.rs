//! `cors` in the running gateway: preflights answered before authentication
//! and never forwarded, and the headers on every answer a route gives (the
//! upstream's, a 401, a 502), together with `responseHeaderModifier`.

use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;

use super::jwt::{AUDIENCE, FIXTURES, ISSUER, claims, token};
use super::process::{Gateway, Upstream};
use super::{client, send};

const APP: &str = "https://app.example.com";

async fn request(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&client(), req.body(Full::default()).unwrap()).await
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_before_authentication_and_every_answer_is_marked() {
    let upstream = Upstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = closed.local_addr().unwrap();
    drop(closed);
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: api
      matches: [{{path: {{pathPrefix: /api}}}}]
      policies:
        cors:
          allowOrigins: ['{APP}', 'https://*.tools.example.com']
          allowMethods: [GET, POST]
          allowHeaders: [authorization, content-type]
          exposeHeaders: [www-authenticate, x-request-id]
          allowCredentials: true
          maxAge: 10m
        jwtAuth: {{issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/rsa1.pub.pem'}}}}
        responseHeaderModifier: {{set: {{x-route: api}}}}
      backends: [{{host: "{up}"}}]
    - name: open
      matches: [{{path: {{pathPrefix: /open}}}}]
      policies: {{cors: {{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*']}}}}
      backends: [{{host: "{up}"}}]
    - name: down
      matches: [{{path: {{pathPrefix: /down}}}}]
      policies: {{cors: {{allowOrigins: ['*']}}}}
      backends: [{{host: "{down}"}}]
    - name: plain
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr,
    ))
    .await;
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ]
    };

    // A preflight carries no token: answered here, not refused, not forwarded.
    let (status, h, body) = request(&gw, "OPTIONS", "/api/tools", &preflight(APP)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    assert_eq!(
        header(&h, "access-control-allow-credentials").unwrap(),
        "true"
    );
    assert_eq!(
        header(&h, "access-control-allow-methods").unwrap(),
        "GET, POST"
    );
    assert_eq!(
        header(&h, "access-control-allow-headers").unwrap(),
        "authorization, content-type"
    );
    assert_eq!(header(&h, "access-control-max-age").unwrap(), "600");
    assert_eq!(header(&h, "x-route").unwrap(), "api");
    assert!(body.is_empty(), "{body}");

    // From an origin not listed: a bare 200, which the browser takes as no.
    let (status, h, _) = request(
        &gw,
        "OPTIONS",
        "/api/tools",
        &preflight("https://evil.example"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(header(&h, "access-control-allow-origin").is_none(), "{h:?}");
    assert!(
        header(&h, "access-control-allow-methods").is_none(),
        "{h:?}"
    );
    assert_eq!(upstream.hits(), 0, "no preflight reaches the upstream");

    // The 401 is readable by the page, challenge included.
    let tools = "https://a.tools.example.com";
    let (status, h, _) = request(&gw, "GET", "/api/tools", &[("origin", tools)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), tools);
    assert!(header(&h, "www-authenticate").is_some(), "{h:?}");
    assert_eq!(
        header(&h, "access-control-expose-headers").unwrap(),
        "www-authenticate, x-request-id"
    );
    assert_eq!(header(&h, "x-route").unwrap(), "api");

    // Authenticated: the upstream's answer, marked for the allowed origin only.
    let bearer = format!("Bearer {}", token("rsa1", "r1", claims()));
    let (status, h, body) = request(
        &gw,
        "GET",
        "/api/tools",
        &[("origin", APP), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    assert!(h.get_all("vary").iter().any(|v| v == "origin"), "{h:?}");
    assert_eq!(upstream.hits(), 1);
    for origin in ["https://evil.example", "http://app.example.com", "null"] {
        let (status, h, _) = request(
            &gw,
            "GET",
            "/api/tools",
            &[("origin", origin), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            header(&h, "access-control-allow-origin").is_none(),
            "{origin}: {h:?}"
        );
        assert_eq!(header(&h, "x-route").unwrap(), "api");
    }
    let (_, h, _) = request(&gw, "GET", "/api/tools", &[("authorization", &bearer)]).await;
    assert!(
        header(&h, "access-control-allow-origin").is_none(),
        "no Origin, no CORS: {h:?}"
    );

    // Wildcards: any origin, and whatever the preflight asks for.
    let (status, h, _) = request(
        &gw,
        "OPTIONS",
        "/open",
        &[
            ("origin", "https://anyone.example"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "x-custom"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), "*");
    assert_eq!(
        header(&h, "access-control-allow-methods").unwrap(),
        "DELETE"
    );
    assert_eq!(
        header(&h, "access-control-allow-headers").unwrap(),
        "x-custom"
    );

    // The gateway's own error answers are readable too.
    let (status, h, body) = request(&gw, "GET", "/down", &[("origin", APP)]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), "*");

    // Without `cors` an OPTIONS request is the upstream's business.
    let hits = upstream.hits();
    let (status, h, body) = request(&gw, "OPTIONS", "/elsewhere", &preflight(APP)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""method":"OPTIONS""#), "{body}");
    assert!(header(&h, "access-control-allow-origin").is_none(), "{h:?}");
    assert_eq!(upstream.hits(), hits + 1);
}

/// A browser MCP client's sign-in discovery: the 401's challenge and the
/// protected-resource metadata it points to are both readable cross-origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_finds_the_authorization_server_of_an_mcp_route() {
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: tools
      matches: [{{path: {{pathPrefix: /mcp}}}}]
      policies:
        cors: {{allowOrigins: ['{APP}'], allowHeaders: ['*'], exposeHeaders: [www-authenticate, mcp-session-id]}}
        jwtAuth: {{issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks: {{file: '{FIXTURES}/jwks-1.json'}}}}
      backends: [{{mcp: {{targets: [{{name: t, mcp: {{host: 127.0.0.1, port: 9}}}}]}}}}]
"#
    ))
    .await;
    let (status, h, _) = request(
        &gw,
        "OPTIONS",
        "/mcp",
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    assert_eq!(
        header(&h, "access-control-allow-headers").unwrap(),
        "authorization, content-type"
    );

    let (status, h, _) = request(&gw, "POST", "/mcp", &[("origin", APP)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    assert!(
        header(&h, "access-control-expose-headers")
            .unwrap()
            .contains("www-authenticate")
    );
    let challenge = header(&h, "www-authenticate").unwrap();
    assert!(challenge.contains("resource_metadata="), "{challenge}");

    let metadata = "/.well-known/oauth-protected-resource/mcp";
    let (status, h, _) = request(
        &gw,
        "OPTIONS",
        metadata,
        &[("origin", APP), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    let (status, h, body) = request(&gw, "GET", metadata, &[("origin", APP)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin").unwrap(), APP);
    let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["authorization_servers"], serde_json::json!([ISSUER]));
    let (_, h, _) = request(&gw, "GET", metadata, &[("origin", "https://evil.example")]).await;
    assert!(header(&h, "access-control-allow-origin").is_none(), "{h:?}");
}

/// `csrf`: a browser's state-changing request from another site is refused
/// before it reaches the upstream; requests without browser provenance, from
/// the gateway's own origin, or from trusted origins (listed, or allowed by
/// the route's `cors`) pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_refuses_cross_site_writes_from_browsers() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: forms
      policies:
        cors: {{allowOrigins: ['{APP}']}}
        csrf: {{additionalOrigins: ['https://*.partner.example']}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    ))
    .await;
    let own = gw.url("");
    let hits = upstream.hits();
    for (case, headers) in [
        (
            "a cross-site Origin",
            vec![("origin", "https://evil.example")],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
        ),
        (
            "Sec-Fetch-Site: same-site",
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "https://sub.evil.example"),
            ],
        ),
    ] {
        let (status, _, body) = request(&gw, "POST", "/submit", &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["error"]["type"], "csrf", "{case}: {body}");
        assert_eq!(e["error"]["route"], "forms", "{case}: {body}");
    }
    assert_eq!(
        upstream.hits(),
        hits,
        "refused writes never reach the upstream"
    );
    for (case, method, headers) in [
        ("no browser provenance", "POST", vec![]),
        (
            "the gateway's own origin",
            "POST",
            vec![("origin", own.as_str())],
        ),
        (
            "Sec-Fetch-Site: same-origin",
            "DELETE",
            vec![("sec-fetch-site", "same-origin")],
        ),
        (
            "a listed origin",
            "PUT",
            vec![("origin", "https://app.partner.example")],
        ),
        (
            "an origin cors allows",
            "POST",
            vec![("sec-fetch-site", "cross-site"), ("origin", APP)],
        ),
        (
            "a safe method",
            "GET",
            vec![("origin", "https://evil.example")],
        ),
    ] {
        let (status, _, body) = request(&gw, method, "/submit", &headers).await;
        assert_eq!(status, StatusCode::OK, "{case}: {body}");
    }
    assert_eq!(upstream.hits(), hits + 6);
}
