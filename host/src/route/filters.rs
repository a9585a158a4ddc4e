//! Route filters: header modifiers, URL and host rewrites, redirects.

use http::header::{HOST, HeaderName, HeaderValue, LOCATION};
use http::{HeaderMap, StatusCode, Uri};

use super::{Matcher, PathMatcher};
use crate::config::schema::{HeaderModifier, PathRewrite, RequestRedirect, UrlRewrite};

/// A header modifier with names and values checked once, at config load.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn from_config(m: &HeaderModifier) -> Result<Self, String> {
        let pair = |(k, v): (&String, &String)| -> Result<(HeaderName, HeaderValue), String> {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name '{k}'"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value for header '{k}'"))?;
            Ok((name, value))
        };
        Ok(HeaderEdits {
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|k| {
                    HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| format!("invalid header name '{k}'"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// The new path for a rewrite: `full` replaces it, `prefix` replaces what the
/// route's path prefix matched (Gateway API `ReplacePrefixMatch`).
pub fn rewrite_path(rewrite: &PathRewrite, matched: &Matcher, path: &str) -> String {
    match rewrite {
        PathRewrite::Full(p) => p.clone(),
        PathRewrite::Prefix(new_prefix) => match &matched.path {
            PathMatcher::Prefix(prefix) => {
                let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let joined = match (new_prefix.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => format!("{new_prefix}{}", &rest[1..]),
                    (false, false) if !rest.is_empty() => format!("{new_prefix}/{rest}"),
                    _ => format!("{new_prefix}{rest}"),
                };
                if joined.is_empty() {
                    "/".into()
                } else {
                    joined
                }
            }
            // Without a prefix match, the whole path is the prefix.
            _ => new_prefix.clone(),
        },
    }
}

fn with_path(uri: &Uri, path: &str) -> Result<Uri, String> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| format!("rewritten path '{path}' is not a valid URI path"))?,
    );
    Uri::from_parts(parts).map_err(|e| e.to_string())
}

/// Apply a `urlRewrite` to the request's URI and Host.
pub fn apply_rewrite(
    rewrite: &UrlRewrite,
    matched: &Matcher,
    uri: &mut Uri,
    headers: &mut HeaderMap,
) -> Result<(), String> {
    if let Some(path) = &rewrite.path {
        *uri = with_path(uri, &rewrite_path(path, matched, uri.path()))?;
    }
    if let Some(authority) = &rewrite.authority {
        let value = HeaderValue::from_str(authority)
            .map_err(|_| format!("invalid authority '{authority}'"))?;
        headers.insert(HOST, value);
    }
    Ok(())
}

/// The `Location` and status of a `requestRedirect`.
pub fn redirect(
    r: &RequestRedirect,
    matched: &Matcher,
    uri: &Uri,
    headers: &HeaderMap,
) -> (StatusCode, HeaderValue) {
    let scheme = r.scheme.as_deref().unwrap_or("http");
    let host = r
        .authority
        .clone()
        .or_else(|| {
            headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let path = match &r.path {
        Some(p) => rewrite_path(p, matched, uri.path()),
        None => uri.path().to_string(),
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{scheme}://{host}{path}{query}");
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    (
        status,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/")),
    )
}

pub const LOCATION_HEADER: HeaderName = LOCATION;

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> Matcher {
        Matcher {
            path: PathMatcher::Prefix(p.into()),
            ..Matcher::any()
        }
    }

    #[test]
    fn prefix_and_full_rewrites() {
        let full = PathRewrite::Full("/v1/chat/completions".into());
        assert_eq!(
            rewrite_path(&full, &prefix("/anthropic"), "/anthropic"),
            "/v1/chat/completions"
        );
        let p = PathRewrite::Prefix("/v2".into());
        assert_eq!(rewrite_path(&p, &prefix("/api"), "/api/users"), "/v2/users");
        assert_eq!(
            rewrite_path(&p, &prefix("/api/"), "/api/users"),
            "/v2/users"
        );
        assert_eq!(
            rewrite_path(
                &PathRewrite::Prefix("/".into()),
                &prefix("/api"),
                "/api/users"
            ),
            "/users"
        );
        assert_eq!(
            rewrite_path(&PathRewrite::Prefix("/".into()), &prefix("/api"), "/api"),
            "/"
        );
    }

    #[test]
    fn rewrite_keeps_query() {
        let mut uri: Uri = "/anthropic?x=1".parse().unwrap();
        let mut headers = HeaderMap::new();
        let rw = UrlRewrite {
            authority: Some("api.example.com".into()),
            path: Some(PathRewrite::Full("/v1/chat/completions".into())),
        };
        apply_rewrite(&rw, &prefix("/anthropic"), &mut uri, &mut headers).unwrap();
        assert_eq!(uri.to_string(), "/v1/chat/completions?x=1");
        assert_eq!(headers[HOST], "api.example.com");
    }

    #[test]
    fn header_edits() {
        let m = HeaderModifier {
            set: [("x-a".to_string(), "1".to_string())].into(),
            add: [("x-b".to_string(), "2".to_string())].into(),
            remove: vec!["x-c".into()],
        };
        let edits = HeaderEdits::from_config(&m).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("0"));
        h.insert("x-b", HeaderValue::from_static("1"));
        h.insert("x-c", HeaderValue::from_static("gone"));
        edits.apply(&mut h);
        assert_eq!(h["x-a"], "1");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
        assert!(h.get("x-c").is_none());
    }
}
