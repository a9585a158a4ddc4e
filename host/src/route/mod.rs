//! Choosing the route for a request. Pure logic, no I/O.
//!
//! Precedence follows the Gateway API: an exact path beats a regex, a regex
//! beats a prefix, a longer prefix beats a shorter one; then a method match,
//! then more header matches, then more query matches; ties go to the route
//! listed first.

pub mod cors;
pub mod csrf;
pub mod filters;

use http::{HeaderMap, Method};

use crate::config::schema::{self, PathMatch, StringMatch};

/// How a request value is compared.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    Regex(regex::Regex),
}

impl ValueMatch {
    fn from_config(m: &StringMatch) -> Self {
        match m {
            StringMatch::Plain(s) | StringMatch::Exact { exact: s } => ValueMatch::Exact(s.clone()),
            StringMatch::Regex { regex } => ValueMatch::Regex(regex.0.clone()),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(s) => s == value,
            ValueMatch::Regex(r) => r.is_match(value),
        }
    }
}

#[derive(Debug, Clone)]
pub enum PathMatcher {
    Exact(String),
    Regex(regex::Regex),
    Prefix(String),
}

impl PathMatcher {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => p == path,
            PathMatcher::Regex(r) => r.is_match(path),
            PathMatcher::Prefix(prefix) => prefix_matches(prefix, path),
        }
    }

    // (kind rank, length): exact > regex > prefix, longer first.
    fn rank(&self) -> (u8, usize) {
        match self {
            PathMatcher::Exact(p) => (3, p.len()),
            PathMatcher::Regex(r) => (2, r.as_str().len()),
            PathMatcher::Prefix(p) => (1, p.len()),
        }
    }
}

/// Gateway API prefix semantics: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// One entry of a route's `matches` (all conditions must hold).
#[derive(Debug, Clone)]
pub struct Matcher {
    pub path: PathMatcher,
    pub method: Option<Method>,
    pub headers: Vec<(String, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

impl Matcher {
    pub fn from_config(m: &schema::RouteMatch) -> Result<Self, String> {
        let path = match &m.path {
            None => PathMatcher::Prefix("/".into()),
            Some(PathMatch::Exact(p)) => PathMatcher::Exact(p.clone()),
            Some(PathMatch::PathPrefix(p)) => PathMatcher::Prefix(p.clone()),
            Some(PathMatch::Regex(r)) => PathMatcher::Regex(r.0.clone()),
        };
        let method = m
            .method
            .as_deref()
            .map(|s| {
                Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("invalid method '{s}'"))
            })
            .transpose()?;
        let pairs = |list: &[schema::HeaderMatch], lower: bool| {
            list.iter()
                .map(|h| {
                    let name = if lower {
                        h.name.to_ascii_lowercase()
                    } else {
                        h.name.clone()
                    };
                    (name, ValueMatch::from_config(&h.value))
                })
                .collect()
        };
        Ok(Matcher {
            path,
            method,
            headers: pairs(&m.headers, true),
            query: pairs(&m.query, false),
        })
    }

    /// Matches everything (a route without `matches`).
    pub fn any() -> Self {
        Matcher {
            path: PathMatcher::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    pub fn matches(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        if !self.path.matches(path) {
            return false;
        }
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let header_ok = self.headers.iter().all(|(name, want)| {
            headers
                .get_all(name.as_str())
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| want.matches(v)))
        });
        if !header_ok {
            return false;
        }
        self.query.iter().all(|(name, want)| {
            query
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .any(|(k, v)| k == name && want.matches(v))
        })
    }

    fn precedence(&self) -> (u8, usize, bool, usize, usize) {
        let (kind, len) = self.path.rank();
        (
            kind,
            len,
            self.method.is_some(),
            self.headers.len(),
            self.query.len(),
        )
    }
}

/// Host names a listener or route answers for: exact, or `*.example.com`.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Routes of one listener, ordered for matching.
#[derive(Debug, Clone)]
pub struct RouteTable<R> {
    // (matcher, route index), most specific first.
    entries: Vec<(Matcher, usize)>,
    hostnames: Vec<Vec<String>>,
    routes: Vec<R>,
}

impl<R> RouteTable<R> {
    /// `routes`: each with its hostnames and matchers (empty = match all).
    pub fn new(routes: Vec<(R, Vec<String>, Vec<Matcher>)>) -> Self {
        let mut entries = Vec::new();
        let mut hostnames = Vec::new();
        let mut values = Vec::new();
        for (i, (route, hosts, matchers)) in routes.into_iter().enumerate() {
            let matchers = if matchers.is_empty() {
                vec![Matcher::any()]
            } else {
                matchers
            };
            entries.extend(matchers.into_iter().map(|m| (m, i)));
            hostnames.push(hosts);
            values.push(route);
        }
        // Stable sort: ties keep config order.
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.precedence()));
        RouteTable {
            entries,
            hostnames,
            routes: values,
        }
    }

    pub fn find(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<(&R, &Matcher)> {
        self.entries.iter().find_map(|(m, i)| {
            let hosts = &self.hostnames[*i];
            let host_ok = hosts.is_empty()
                || host.is_some_and(|h| hosts.iter().any(|p| hostname_matches(p, h)));
            (host_ok && m.matches(method, path, query, headers)).then(|| (&self.routes[*i], m))
        })
    }

    pub fn routes(&self) -> &[R] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn m(path: PathMatcher) -> Matcher {
        Matcher {
            path,
            method: None,
            headers: vec![],
            query: vec![],
        }
    }

    #[test]
    fn prefix_respects_path_segments() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(prefix_matches("/foo/", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn most_specific_wins_regardless_of_order() {
        let table = RouteTable::new(vec![
            ("catch-all", vec![], vec![]),
            (
                "prefix",
                vec![],
                vec![m(PathMatcher::Prefix("/api".into()))],
            ),
            (
                "longer-prefix",
                vec![],
                vec![m(PathMatcher::Prefix("/api/v1".into()))],
            ),
            (
                "exact",
                vec![],
                vec![m(PathMatcher::Exact("/api/v1/x".into()))],
            ),
            (
                "regex",
                vec![],
                vec![m(PathMatcher::Regex(
                    regex::Regex::new("^/api/v1/[a-z]+$").unwrap(),
                ))],
            ),
            (
                "header",
                vec![],
                vec![Matcher {
                    headers: vec![("x-mcp-server".into(), ValueMatch::Exact("github".into()))],
                    ..m(PathMatcher::Prefix("/api".into()))
                }],
            ),
        ]);
        let h = HeaderMap::new();
        let find = |path: &str, headers: &HeaderMap| {
            *table
                .find(&Method::GET, None, path, None, headers)
                .unwrap()
                .0
        };
        assert_eq!(find("/api/v1/x", &h), "exact");
        assert_eq!(find("/api/v1/y", &h), "regex");
        assert_eq!(find("/api/v1/1", &h), "longer-prefix");
        assert_eq!(find("/api/other", &h), "prefix");
        assert_eq!(find("/other", &h), "catch-all");
        let mut gh = HeaderMap::new();
        gh.insert("x-mcp-server", HeaderValue::from_static("github"));
        assert_eq!(find("/api/other", &gh), "header");
    }

    #[test]
    fn method_query_and_hostnames() {
        let post = Matcher {
            method: Some(Method::POST),
            ..m(PathMatcher::Prefix("/".into()))
        };
        let q = Matcher {
            query: vec![("v".into(), ValueMatch::Exact("2".into()))],
            ..m(PathMatcher::Prefix("/".into()))
        };
        let table = RouteTable::new(vec![
            ("get", vec![], vec![]),
            ("post", vec![], vec![post]),
            ("q", vec![], vec![q]),
            (
                "host",
                vec!["*.example.com".into()],
                vec![m(PathMatcher::Exact("/h".into()))],
            ),
        ]);
        let h = HeaderMap::new();
        assert_eq!(
            *table.find(&Method::POST, None, "/x", None, &h).unwrap().0,
            "post"
        );
        assert_eq!(
            *table
                .find(&Method::GET, None, "/x", Some("a=1&v=2"), &h)
                .unwrap()
                .0,
            "q"
        );
        assert_eq!(
            *table
                .find(&Method::GET, None, "/x", Some("v=3"), &h)
                .unwrap()
                .0,
            "get"
        );
        assert_eq!(
            *table
                .find(&Method::GET, Some("api.example.com:8080"), "/h", None, &h)
                .unwrap()
                .0,
            "host"
        );
        assert_eq!(
            *table
                .find(&Method::GET, Some("example.com"), "/h", None, &h)
                .unwrap()
                .0,
            "get"
        );
    }
}
