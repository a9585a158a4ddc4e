//! The built-in rate-limit plugin in the running gateway: exact under
//! concurrency, with the 429 and the x-ratelimit headers; sugar and plugin
//! forms.

use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

use super::process::{Gateway, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_against_100_per_minute_admit_exactly_100() {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(&format!(
        r#"
binds:
- port: 0
  listeners:
  - routes:
    - name: sugar
      matches: [{{path: {{pathPrefix: /sugar}}}}]
      policies:
        localRateLimit: [{{maxTokens: 100, tokensPerFill: 100, fillInterval: 60s}}]
      backends: [{{host: "{up}"}}]
    - name: per-client
      matches: [{{path: {{pathPrefix: /client}}}}]
      plugins:
      - name: rate-limit
        config: {{limits: [{{requests: 100, per: minute, key: client}}]}}
      backends: [{{host: "{up}"}}]
"#,
        up = upstream.addr
    ))
    .await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1000)
        .build_http::<Full<bytes::Bytes>>();

    for prefix in ["/sugar", "/client"] {
        let before = upstream.hits();
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let client = client.clone();
            let url = gw.url(&format!("{prefix}/{i}"));
            tasks.push(tokio::spawn(async move {
                let resp = client
                    .get(url.parse().unwrap())
                    .await
                    .expect("gateway answers");
                let status = resp.status();
                let headers = resp.headers().clone();
                let _ = resp.into_body().collect().await;
                (status, headers)
            }));
        }
        let mut ok = 0;
        let mut limited = Vec::new();
        for t in tasks {
            let (status, headers) = t.await.unwrap();
            match status {
                StatusCode::OK => {
                    ok += 1;
                    let remaining: u64 = headers["x-ratelimit-remaining"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(remaining < 100);
                    assert_eq!(headers["x-ratelimit-limit"], "100");
                }
                StatusCode::TOO_MANY_REQUESTS => limited.push(headers),
                other => panic!("{prefix}: unexpected status {other}"),
            }
        }
        assert_eq!(ok, 100, "{prefix}: exactly the limit gets through");
        assert_eq!(limited.len(), 900, "{prefix}");
        assert_eq!(
            upstream.hits() - before,
            100,
            "{prefix}: denied requests never reach the upstream"
        );
        let h = &limited[0];
        assert_eq!(h["x-ratelimit-limit"], "100");
        assert_eq!(h["x-ratelimit-remaining"], "0");
        let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
        assert!((1..=60).contains(&retry), "{retry}");

        // The 101st, after the burst: still 429, with the same headers.
        let resp = client
            .get(gw.url(&format!("{prefix}/101st")).parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key("retry-after"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("rate limit exceeded"));
    }
}
