//! CORS (`policies.cors`): the gateway answers browsers' preflight requests
//! itself and marks the route's answers readable by the allowed origins.
//!
//! A route filter rather than a plugin, for three reasons: the preflight must
//! be answered before authentication (browsers send it without credentials),
//! the headers belong on every answer the route gives (errors and denials
//! included, or the page cannot read why it failed), and adding them must not
//! buffer a streamed body. The semantics are Envoy's CORS filter, as in
//! agentgateway: a preflight is never forwarded, and one from an origin that
//! is not allowed gets a bare 200, which the browser takes as a refusal.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

use crate::config::schema::{self, Origin};

/// `allowMethods` or `allowHeaders`, settled at config load.
#[derive(Debug)]
enum Allowed {
    /// Empty list: the header is not sent.
    Unlisted,
    /// `*`: whatever the preflight asks for.
    Any,
    /// The list, joined into one header value.
    These(HeaderValue),
}

impl Allowed {
    fn from_list<'a>(items: impl Iterator<Item = &'a str>) -> Self {
        let items: Vec<&str> = items.collect();
        if items.contains(&"*") {
            Allowed::Any
        } else if items.is_empty() {
            Allowed::Unlisted
        } else {
            Allowed::These(joined(&items))
        }
    }
}

/// Validated tokens joined with commas always make a header value.
fn joined(items: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&items.join(", ")).expect("header names and methods are visible ASCII")
}

#[derive(Debug)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<Origin>,
    methods: Allowed,
    headers: Allowed,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

/// What the policy makes of one request.
#[derive(Debug)]
pub enum CorsCheck {
    /// Not a cross-origin request, or one from an origin that is not
    /// allowed: serve it as it is, and add nothing.
    Pass,
    /// A preflight: answer it at the gateway with these headers (none when
    /// the origin is not allowed).
    Preflight(HeaderMap),
    /// A request from an allowed origin: serve it, then add these headers
    /// to whatever answers it.
    Allow(HeaderMap),
}

impl CorsPolicy {
    pub fn from_config(c: &schema::Cors) -> Self {
        let expose: Vec<&str> = c.expose_headers.iter().map(|h| h.0.as_str()).collect();
        CorsPolicy {
            any_origin: c.allow_origins.iter().any(|o| o.origin.is_none()),
            origins: c
                .allow_origins
                .iter()
                .filter_map(|o| o.origin.clone())
                .collect(),
            methods: Allowed::from_list(c.allow_methods.iter().map(|m| m.0.as_str())),
            headers: Allowed::from_list(c.allow_headers.iter().map(|h| h.0.as_str())),
            expose: (!expose.is_empty()).then(|| joined(&expose)),
            max_age: c.max_age.map(|d| HeaderValue::from(d.0.as_secs())),
            credentials: c.allow_credentials,
        }
    }

    pub fn check(&self, method: &Method, request: &HeaderMap) -> CorsCheck {
        let Some(origin) = request.get(ORIGIN) else {
            return CorsCheck::Pass;
        };
        let asked_method = request.get(ACCESS_CONTROL_REQUEST_METHOD).and_then(trimmed);
        let preflight = *method == Method::OPTIONS && asked_method.is_some();
        if !self.allows(origin) {
            return if preflight {
                CorsCheck::Preflight(HeaderMap::new())
            } else {
                CorsCheck::Pass
            };
        }

        let mut answer = HeaderMap::new();
        if self.any_origin && !self.credentials {
            // Literal `*` needs no `Vary`, so shared caches keep one copy.
            answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else {
            answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            answer.insert(VARY, HeaderValue::from_static("origin"));
        }
        if self.credentials {
            answer.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !preflight {
            if let Some(expose) = &self.expose {
                answer.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
            return CorsCheck::Allow(answer);
        }

        // With credentials browsers read `*` literally, so a wildcard echoes
        // what the preflight asks for.
        let methods = match &self.methods {
            Allowed::Unlisted => None,
            Allowed::Any => asked_method,
            Allowed::These(v) => Some(v.clone()),
        };
        let headers = match &self.headers {
            Allowed::Unlisted => None,
            Allowed::Any => request
                .get(ACCESS_CONTROL_REQUEST_HEADERS)
                .and_then(trimmed)
                .or_else(|| (!self.credentials).then(|| HeaderValue::from_static("*"))),
            Allowed::These(v) => Some(v.clone()),
        };
        if let Some(v) = methods {
            answer.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if let Some(v) = headers {
            answer.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(v) = &self.max_age {
            answer.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        CorsCheck::Preflight(answer)
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        if self.any_origin {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(|o| Origin::parse(o, false)) else {
            return false;
        };
        self.origins
            .iter()
            .any(|allowed| origin_matches(allowed, &origin))
    }
}

/// Whether `origin` is one that `allowed` (whose host may hold `*`) names.
pub fn origin_matches(allowed: &Origin, origin: &Origin) -> bool {
    allowed.https == origin.https
        && allowed.port == origin.port
        && glob(&allowed.host, &origin.host)
}

/// Add an allowed request's CORS headers to its answer: they replace any the
/// upstream sent, and `Vary` is extended rather than replaced.
pub fn decorate(response: &mut HeaderMap, cors: HeaderMap) {
    for (name, value) in cors {
        let Some(name) = name else { continue };
        if name == VARY {
            response.append(name, value);
        } else {
            response.insert(name, value);
        }
    }
}

fn trimmed(v: &HeaderValue) -> Option<HeaderValue> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty()).then(|| HeaderValue::from_str(s).ok())?
}

/// `*` in `pattern` stands for any run of characters (dots included, as in
/// Envoy and agentgateway: `https://*.com` allows `https://a.b.com`).
fn glob(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or("");
    for part in parts {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> CorsPolicy {
        let c: schema::Cors = serde_saphyr::from_str(yaml).expect(yaml);
        CorsPolicy::from_config(&c)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get(h: &HeaderMap, name: &str) -> Option<String> {
        h.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn origins_match_by_scheme_host_and_port_with_wildcards() {
        let p = policy(
            "allowOrigins: [https://app.example.com, 'http://*.internal:8080', 'https://*.corp.com']",
        );
        let allowed = |o: &str| p.allows(&HeaderValue::from_str(o).unwrap());
        assert!(allowed("https://app.example.com"));
        assert!(
            allowed("https://APP.example.com:443"),
            "default port, any case"
        );
        assert!(!allowed("http://app.example.com"), "scheme differs");
        assert!(!allowed("https://app.example.com:8443"), "port differs");
        assert!(!allowed("https://evil-app.example.com"));
        assert!(!allowed("https://app.example.com.evil.com"));
        assert!(allowed("http://svc.internal:8080"));
        assert!(allowed("http://a.b.internal:8080"), "a wildcard spans dots");
        assert!(!allowed("http://svc.internal"), "port 80 is not 8080");
        assert!(allowed("https://x.corp.com"));
        assert!(
            !allowed("https://corp.com"),
            "`*.` needs a label before the dot"
        );
        assert!(!allowed("null"));
        assert!(!allowed("https://app.example.com/path"));

        let any = policy("allowOrigins: ['*']");
        assert!(any.allows(&HeaderValue::from_static("null")));
    }

    #[test]
    fn glob_matches_runs_of_characters() {
        for (pattern, text, expected) in [
            ("*", "anything.at.all", true),
            ("*.a.com", "x.a.com", true),
            ("*.a.com", "a.com", false),
            ("api-*.a.com", "api-eu.a.com", true),
            ("api-*.a.com", "web-eu.a.com", false),
            ("*-*.a.com", "x-y.a.com", true),
            ("*-*.a.com", "xy.a.com", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ] {
            assert_eq!(glob(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_gets_the_lists() {
        let p = policy(
            "{allowOrigins: [https://app.example.com], allowMethods: [GET, POST], \
             allowHeaders: [content-type, mcp-session-id], exposeHeaders: [mcp-session-id], maxAge: 10m}",
        );
        let request = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ]);
        let CorsCheck::Preflight(h) = p.check(&Method::OPTIONS, &request) else {
            panic!("a preflight")
        };
        assert_eq!(
            get(&h, "access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(get(&h, "vary").unwrap(), "origin");
        assert_eq!(
            get(&h, "access-control-allow-methods").unwrap(),
            "GET, POST"
        );
        assert_eq!(
            get(&h, "access-control-allow-headers").unwrap(),
            "content-type, mcp-session-id"
        );
        assert_eq!(get(&h, "access-control-max-age").unwrap(), "600");
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(
            get(&h, "access-control-expose-headers"),
            None,
            "for actual answers only"
        );
    }

    #[test]
    fn a_preflight_from_another_origin_is_answered_bare() {
        let p = policy("{allowOrigins: [https://app.example.com], allowMethods: ['*']}");
        let request = headers(&[
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        match p.check(&Method::OPTIONS, &request) {
            CorsCheck::Preflight(h) => assert!(h.is_empty(), "{h:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_without_a_requested_method_is_not_a_preflight() {
        let p = policy("{allowOrigins: ['*']}");
        let request = headers(&[("origin", "https://app.example.com")]);
        assert!(matches!(
            p.check(&Method::OPTIONS, &request),
            CorsCheck::Allow(_)
        ));
        let request = headers(&[("access-control-request-method", "POST")]);
        assert!(
            matches!(p.check(&Method::OPTIONS, &request), CorsCheck::Pass),
            "no origin"
        );
    }

    #[test]
    fn wildcards_echo_the_request_when_credentials_are_allowed() {
        let request = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", " PUT "),
            ("access-control-request-headers", "x-a, x-b"),
        ]);
        let open = policy("{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*']}");
        let CorsCheck::Preflight(h) = open.check(&Method::OPTIONS, &request) else {
            panic!()
        };
        assert_eq!(get(&h, "access-control-allow-origin").unwrap(), "*");
        assert_eq!(get(&h, "vary"), None);
        assert_eq!(get(&h, "access-control-allow-methods").unwrap(), "PUT");
        assert_eq!(get(&h, "access-control-allow-headers").unwrap(), "x-a, x-b");

        let with_credentials = policy(
            "{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], allowCredentials: true}",
        );
        let CorsCheck::Preflight(h) = with_credentials.check(&Method::OPTIONS, &request) else {
            panic!()
        };
        assert_eq!(
            get(&h, "access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(get(&h, "access-control-allow-credentials").unwrap(), "true");
        let no_headers_asked = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
        ]);
        let CorsCheck::Preflight(h) = with_credentials.check(&Method::OPTIONS, &no_headers_asked)
        else {
            panic!()
        };
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            None,
            "`*` would be literal"
        );
        let CorsCheck::Preflight(h) = open.check(&Method::OPTIONS, &no_headers_asked) else {
            panic!()
        };
        assert_eq!(get(&h, "access-control-allow-headers").unwrap(), "*");
    }

    #[test]
    fn an_allowed_request_gets_origin_credentials_and_exposed_headers() {
        let p = policy(
            "{allowOrigins: [https://app.example.com], exposeHeaders: [mcp-session-id, www-authenticate], \
             allowCredentials: true}",
        );
        let request = headers(&[("origin", "https://app.example.com")]);
        let CorsCheck::Allow(cors) = p.check(&Method::POST, &request) else {
            panic!()
        };
        let mut response = headers(&[
            ("vary", "accept-encoding"),
            ("access-control-allow-origin", "https://upstream.example"),
        ]);
        decorate(&mut response, cors);
        assert_eq!(
            get(&response, "access-control-allow-origin").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            get(&response, "access-control-allow-credentials").unwrap(),
            "true"
        );
        assert_eq!(
            get(&response, "access-control-expose-headers").unwrap(),
            "mcp-session-id, www-authenticate"
        );
        let vary: Vec<_> = response.get_all("vary").iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);

        let other = headers(&[("origin", "https://elsewhere.example.com")]);
        assert!(matches!(p.check(&Method::POST, &other), CorsCheck::Pass));
    }
}
