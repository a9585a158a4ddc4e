//! One-off HTTP calls the gateway makes for itself (token endpoints,
//! metadata servers), on a client of their own: they are rare, and must
//! not wait behind or count among the routes' upstream connections.

use std::sync::OnceLock;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Send `req` and read the whole answer; a status other than 2xx is an
/// error carrying the start of the body.
pub async fn send(req: Request<Full<Bytes>>) -> Result<Bytes, String> {
    static CLIENT: OnceLock<Result<HttpClient, String>> = OnceLock::new();
    let client = CLIENT
        .get_or_init(crate::backend::tls::http_or_https_client)
        .as_ref()?;
    let uri = req.uri().clone();
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{uri} failed: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri} failed: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("{uri} answered {status}: {text}"));
    }
    Ok(body)
}
