//! The environments' front door: one port that forwards each request, by its Host header, to the app of
//! the environment holding that CNAME, as DNS + load balancer do in AWS. The lookup happens per request
//! under the store's lock, so a CNAME swap moves traffic atomically and no request falls in between.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::lifecycle::Runtime;

/// Largest request body forwarded to an app.
const MAX_BODY: usize = 64 * 1024 * 1024;

pub fn router(rt: Arc<Runtime>) -> Router {
    Router::new().fallback(forward).with_state(rt)
}

enum Target {
    App(u16),
    Sample(String),
    NoInstance(String),
}

/// The environment holding `cname`, and how to reach it.
fn find(rt: &Runtime, cname: &str) -> Option<Target> {
    let state = rt.shared.lock();
    state
        .beanstalk
        .environments
        .values()
        .find(|e| e.is_live() && e.status != "Terminating" && e.cname == cname)
        .map(|e| match (e.port, &e.version_label) {
            (Some(port), _) => Target::App(port),
            (None, None) => Target::Sample(e.name.clone()),
            (None, Some(_)) => Target::NoInstance(e.name.clone()),
        })
}

async fn forward(State(rt): State<Arc<Runtime>>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut target = find(&rt, &host);
    if target.is_none() {
        // Not an environment CNAME: maybe a custom domain, resolved through Route 53.
        if let Some(cname) = rt.dns.resolve(&host).await {
            target = find(&rt, &cname);
        }
    }
    let port = match target {
        None => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("local-aws router: no environment has the CNAME `{host}`\n"),
            )
                .into_response()
        }
        Some(Target::Sample(name)) => {
            return (
                StatusCode::OK,
                format!("Congratulations: environment {name} runs the sample application.\n"),
            )
                .into_response()
        }
        Some(Target::NoInstance(name)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("503 Service Unavailable: environment {name} has no healthy instance\n"),
            )
                .into_response()
        }
        Some(Target::App(port)) => port,
    };
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("request body: {e}\n")).into_response(),
    };
    let mut headers = parts.headers.clone();
    for hop in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(hop);
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let upstream = rt
        .http
        .request(parts.method, format!("http://127.0.0.1:{port}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    match upstream {
        Ok(r) => {
            let status = r.status();
            let mut headers = r.headers().clone();
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::CONNECTION);
            let bytes = match r.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n"))
                        .into_response()
                }
            };
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n")).into_response(),
    }
}
