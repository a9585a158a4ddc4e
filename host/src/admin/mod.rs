//! The admin listener (default 127.0.0.1:15000): `/healthz`, `/readyz`,
//! `/config_dump` (secrets redacted), `/metrics` (Prometheus text) and
//! `POST /reload`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::http::Body;
use crate::proxy::{Shared, full};

pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(shared, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn route<B>(shared: Arc<Shared>, req: Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/reload") => match shared.config_path.clone() {
            None => text(
                StatusCode::CONFLICT,
                "running the embedded config: nothing to reload\n",
            ),
            Some(path) => match crate::reload::reload(shared.clone(), path).await {
                Ok(()) => text(StatusCode::OK, "reloaded\n"),
                Err(e) => {
                    let mut resp =
                        Response::new(full(Bytes::from(format!("reload rejected: {e}\n"))));
                    *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    resp
                }
            },
        },
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if shared.draining.load(Ordering::Acquire) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if shared.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/config_dump") => {
            let gateway = shared.gateway();
            let mut value = serde_json::to_value(&gateway.config).unwrap_or_default();
            redact(&mut value);
            // What each chain entry actually loaded: OCI tags resolved to digests.
            let loaded: Vec<serde_json::Value> = gateway
                .binds
                .iter()
                .flat_map(|b| &b.listeners)
                .flat_map(|l| l.routes.routes())
                .flat_map(|r| {
                    r.chain.plugins().iter().map(|p| {
                        serde_json::json!({
                            "route": r.name,
                            "plugin": p.name(),
                            "source": p.source,
                            "digest": p.digest,
                        })
                    })
                })
                .collect();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("loadedPlugins".into(), loaded.into());
            }
            let mut resp = Response::new(full(Bytes::from(
                serde_json::to_string_pretty(&value).unwrap_or_default(),
            )));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        (&Method::GET, "/metrics") => {
            let mut out = String::new();
            shared.metrics.render(&mut out);
            shared.llm_metrics.render(&mut out);
            shared.tunnels.render(&mut out);
            shared.engine.services().hook_stats.render(&mut out);
            out.push_str(&shared.engine.services().metrics.render());
            crate::telemetry::log_output::render_metrics(&mut out);
            let mut resp = Response::new(full(Bytes::from(out)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /config_dump, /metrics, POST /reload\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Values under keys that name secrets never leave the process.
pub fn redact(value: &mut serde_json::Value) {
    const SECRET_KEYS: [&str; 15] = [
        "key",
        "keyhash",
        "htpasswd",
        "apikey",
        "password",
        "secret",
        "token",
        "authorization",
        "inline",
        "sessionkey",
        "credential",
        "accesskeyid",
        "secretaccesskey",
        "sessiontoken",
        "clientsecret",
    ];
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let lower = k.to_ascii_lowercase().replace(['_', '-'], "");
                if SECRET_KEYS.contains(&lower.as_str()) && !v.is_null() && !v.is_object() {
                    *v = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
