//! Where a request carries a credential (a header after a prefix, a query
//! parameter, a cookie): reading it, and taking it out once it has been
//! checked so the upstream never sees a secret meant for the gateway.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Uri};

use crate::config::schema::CredentialLocation;

#[derive(Debug, Clone)]
pub enum Location {
    Header {
        name: HeaderName,
        prefix: Option<String>,
    },
    Query(String),
    Cookie(String),
}

impl Location {
    pub fn from_config(config: &CredentialLocation) -> Location {
        match config {
            CredentialLocation::Header { name, prefix } => Location::Header {
                name: HeaderName::from_bytes(name.0.as_bytes())
                    .expect("checked when the config was read"),
                prefix: prefix.clone(),
            },
            CredentialLocation::QueryParameter { name } => Location::Query(name.clone()),
            CredentialLocation::Cookie { name } => Location::Cookie(name.clone()),
        }
    }

    /// `Authorization: <scheme> <credential>`.
    pub fn authorization(scheme: &str) -> Location {
        Location::Header {
            name: AUTHORIZATION,
            prefix: Some(format!("{scheme} ")),
        }
    }

    /// The credential, if the request carries one here. A header whose
    /// value lacks the prefix carries none (it may be another scheme's).
    pub fn extract<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        let found = match self {
            Location::Header { name, prefix } => {
                let value = parts.headers.get(name)?.to_str().ok()?;
                let rest = match prefix {
                    Some(p) => {
                        let head = value.get(..p.len())?;
                        head.eq_ignore_ascii_case(p).then(|| &value[p.len()..])?
                    }
                    None => value,
                };
                Cow::Borrowed(rest.trim())
            }
            Location::Query(name) => {
                let query = parts.uri.query()?;
                form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Cow::Owned(v.into_owned()))?
            }
            Location::Cookie(name) => parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| Cow::Borrowed(v.trim_matches('"')))?,
        };
        (!found.is_empty()).then_some(found)
    }

    /// Take the credential out of the request.
    pub fn remove(&self, parts: &mut Parts) {
        match self {
            Location::Header { name, .. } => {
                parts.headers.remove(name);
            }
            Location::Query(name) => {
                let Some(query) = parts.uri.query() else {
                    return;
                };
                let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k != name)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let query = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(kept)
                    .finish();
                let path_and_query = match query.is_empty() {
                    true => parts.uri.path().to_string(),
                    false => format!("{}?{query}", parts.uri.path()),
                };
                let mut uri = std::mem::take(&mut parts.uri).into_parts();
                uri.path_and_query = path_and_query.parse().ok();
                parts.uri = Uri::from_parts(uri).unwrap_or_default();
            }
            Location::Cookie(name) => {
                let kept: Vec<String> = parts
                    .headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|pair| !pair.is_empty())
                    .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k != name))
                    .map(str::to_string)
                    .collect();
                parts.headers.remove(COOKIE);
                if !kept.is_empty()
                    && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
                {
                    parts.headers.insert(COOKIE, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_header_credential_needs_its_prefix_in_any_case() {
        let loc = Location::authorization("Bearer");
        let p = parts("/", &[("authorization", "bearer  k-1 ")]);
        assert_eq!(loc.extract(&p).as_deref(), Some("k-1"));
        let p = parts("/", &[("authorization", "Basic dTpw")]);
        assert_eq!(loc.extract(&p), None);
        let p = parts("/", &[("authorization", "Bearer ")]);
        assert_eq!(loc.extract(&p), None, "an empty credential is none");
        let loc = Location::Header {
            name: HeaderName::from_static("x-api-key"),
            prefix: None,
        };
        let mut p = parts("/", &[("x-api-key", "k-2"), ("authorization", "Bearer t")]);
        assert_eq!(loc.extract(&p).as_deref(), Some("k-2"));
        loc.remove(&mut p);
        assert!(p.headers.get("x-api-key").is_none());
        assert!(
            p.headers.get("authorization").is_some(),
            "only its own header goes"
        );
    }

    #[test]
    fn a_query_credential_is_decoded_and_removed_alone() {
        let loc = Location::Query("api_key".into());
        let mut p = parts("/v1/x?a=1&api_key=k%2B3&b=two%20words", &[]);
        assert_eq!(loc.extract(&p).as_deref(), Some("k+3"));
        loc.remove(&mut p);
        assert_eq!(p.uri.path(), "/v1/x");
        assert_eq!(p.uri.query(), Some("a=1&b=two+words"));
        let mut p = parts("/only?api_key=k", &[]);
        loc.remove(&mut p);
        assert_eq!(p.uri.to_string(), "/only");
    }

    #[test]
    fn a_cookie_credential_leaves_the_other_cookies() {
        let loc = Location::Cookie("session".into());
        let mut p = parts(
            "/",
            &[("cookie", "theme=dark; session=\"s-4\""), ("cookie", "x=1")],
        );
        assert_eq!(loc.extract(&p).as_deref(), Some("s-4"));
        loc.remove(&mut p);
        assert_eq!(p.headers.get_all(COOKIE).iter().count(), 1);
        assert_eq!(p.headers[COOKIE], "theme=dark; x=1");
        let mut p = parts("/", &[("cookie", "session=s")]);
        loc.remove(&mut p);
        assert!(p.headers.get(COOKIE).is_none());
    }
}
