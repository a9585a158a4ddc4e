//! `csrf`: refuse state-changing requests that a browser sent on behalf of
//! another site. Browsers say where a request comes from (`Sec-Fetch-Site`,
//! or at least `Origin`); a request without either is not a browser's and
//! passes, as do safe methods. The rules are agentgateway's (and Go's
//! `CrossOriginProtection`); origins the route's `cors` allows are trusted
//! as `additionalOrigins` are.

use http::{HeaderMap, Method};

use crate::config::schema::{CorsOrigin, Csrf as CsrfConfig, Origin};
use crate::route::cors::origin_matches;

pub struct CsrfPolicy {
    trusted: Vec<CorsOrigin>,
}

impl CsrfPolicy {
    pub fn from_config(config: &CsrfConfig) -> CsrfPolicy {
        CsrfPolicy {
            trusted: config.additional_origins.clone(),
        }
    }

    /// `Err` says why the request is refused. `own_origin` gives the origin
    /// the request was addressed to (`scheme://host[:port]`), made only for
    /// a browser's write that lacks fetch metadata; `cors_allowed` says that
    /// the route's `cors` allows the request's origin.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        own_origin: impl FnOnce() -> String,
        cors_allowed: bool,
    ) -> Result<(), &'static str> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let origin = headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|o| *o != "null");
        let trusted = || cors_allowed || origin.is_some_and(|o| self.trusts(o));
        if let Some(site) = headers.get("sec-fetch-site") {
            return match site.as_bytes() {
                b"same-origin" | b"none" => Ok(()),
                _ if trusted() => Ok(()),
                _ => Err(
                    "cross-origin request (Sec-Fetch-Site) from an origin this route does not trust",
                ),
            };
        }
        let Some(origin) = origin else {
            return Ok(());
        };
        let same = match (
            Origin::parse(origin, false),
            Origin::parse(&own_origin(), false),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if same || trusted() {
            Ok(())
        } else {
            Err("cross-origin request (Origin) from an origin this route does not trust")
        }
    }

    fn trusts(&self, origin: &str) -> bool {
        let Some(origin) = Origin::parse(origin, false) else {
            return false;
        };
        self.trusted.iter().any(|t| match &t.origin {
            None => true,
            Some(allowed) => origin_matches(allowed, &origin),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> CsrfPolicy {
        let yaml = format!("additionalOrigins: [{}]", origins.join(", "));
        CsrfPolicy::from_config(&serde_saphyr::from_str(&yaml).unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const OWN: &str = "https://gw.example.com";

    #[test]
    fn browsers_are_judged_by_fetch_metadata_then_by_origin() {
        let p = policy(&["'https://*.partner.com'"]);
        let post = Method::POST;
        let own = || OWN.to_string();
        let check = |h: &[(&str, &str)]| p.check(&post, &headers(h), own, false);
        // Not a browser, or a browser on this origin.
        assert!(check(&[]).is_ok());
        assert!(check(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(check(&[("sec-fetch-site", "none")]).is_ok());
        assert!(check(&[("origin", "https://gw.example.com:443")]).is_ok());
        assert!(check(&[("origin", "null")]).is_ok());
        // Another site.
        assert!(
            check(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.com")
            ])
            .is_err()
        );
        assert!(
            check(&[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://a.gw.example.com")
            ])
            .is_err()
        );
        assert!(check(&[("origin", "https://evil.com")]).is_err());
        assert!(
            check(&[("origin", "http://gw.example.com")]).is_err(),
            "another scheme"
        );
        // Trusted ones.
        assert!(
            check(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://app.partner.com")
            ])
            .is_ok()
        );
        assert!(check(&[("origin", "https://app.partner.com")]).is_ok());
        // Safe methods always pass.
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(
                p.check(&m, &headers(&[("origin", "https://evil.com")]), own, false)
                    .is_ok()
            );
        }
        // An origin the route's CORS allows is trusted too.
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.com"),
        ]);
        assert!(p.check(&post, &h, own, true).is_ok());
    }
}
