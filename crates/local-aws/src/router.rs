//! The environments' front door: one port that forwards each request, by its Host header, to the app of
//! the environment holding that CNAME, as DNS + load balancer do in AWS. The lookup happens per request
//! under the store's lock, so a CNAME swap moves traffic atomically and no request falls in between.
//!
//! Like an Application Load Balancer, it forwards only to a registered target that has had its first
//! health check (healthy, or unhealthy with none healthy: an ALB fails open) and answers 503 itself
//! otherwise, so no request reaches an app that is still starting. Every answer is recorded (environment,
//! instance, status, latency) for enhanced health's figures.

use std::sync::Arc;
use std::time::Instant;

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

/// The environment holding `cname` (its id and instance), and how to reach it.
fn find(rt: &Runtime, cname: &str) -> Option<(String, String, Target)> {
    let state = rt.shared.lock();
    state
        .beanstalk
        .environments
        .values()
        .find(|e| e.is_live() && e.status != "Terminating" && e.cname == cname)
        .map(|e| {
            let target = match (e.target.routable(), e.port, &e.version_label) {
                (true, Some(port), _) => Target::App(port),
                (true, None, None) => Target::Sample(e.name.clone()),
                _ => Target::NoInstance(e.name.clone()),
            };
            (e.id.clone(), e.instance_id.clone(), target)
        })
}

/// Records one answer for enhanced health; `instance` is empty when the load balancer answered itself.
fn record(rt: &Runtime, env_id: &str, instance: &str, status: StatusCode, started: Instant) {
    let mut state = rt.shared.lock();
    let window = state.beanstalk.options.health_window;
    state.beanstalk.requests.keep(window);
    state
        .beanstalk
        .requests
        .record(crate::beanstalk::health::Record {
            at: Instant::now(),
            env_id: env_id.to_string(),
            instance_id: instance.to_string(),
            status: status.as_u16(),
            latency: started.elapsed(),
        });
}

async fn forward(State(rt): State<Arc<Runtime>>, request: Request) -> Response {
    let started = Instant::now();
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
    let (env_id, instance, target) = match target {
        Some((env_id, instance, target)) => (env_id, instance, Some(target)),
        None => (String::new(), String::new(), None),
    };
    let port = match target {
        None => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("local-aws router: no environment has the CNAME `{host}`\n"),
            )
                .into_response()
        }
        Some(Target::Sample(name)) => {
            record(&rt, &env_id, &instance, StatusCode::OK, started);
            return (
                StatusCode::OK,
                format!("Congratulations: environment {name} runs the sample application.\n"),
            )
                .into_response();
        }
        Some(Target::NoInstance(name)) => {
            record(&rt, &env_id, "", StatusCode::SERVICE_UNAVAILABLE, started);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("503 Service Temporarily Unavailable: environment {name} has no healthy instance registered with its load balancer\n"),
            )
                .into_response();
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
                    record(&rt, &env_id, &instance, StatusCode::BAD_GATEWAY, started);
                    return (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n"))
                        .into_response();
                }
            };
            record(&rt, &env_id, &instance, status, started);
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(e) => {
            record(&rt, &env_id, &instance, StatusCode::BAD_GATEWAY, started);
            (StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n")).into_response()
        }
    }
}
