//! The environments' shared front door: one port that forwards each request, by its Host header, to
//! the load balancer of the environment holding that CNAME (or of the one a Route 53 record points
//! at). It stands for a client that resolves the name afresh for every request: the lookup happens
//! per request under the store's lock, so a CNAME swap moves its traffic at once. Clients that cache
//! DNS answers for their TTL, as real ones do, resolve through `/_local/dns` ([`crate::dns`]) and
//! connect to the load balancer's own listener instead ([`crate::lb`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::lifecycle::Runtime;

pub fn router(rt: Arc<Runtime>) -> Router {
    Router::new().fallback(forward).with_state(rt)
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
    let mut env_id = crate::dns::environment_of(&rt.shared.lock(), &host);
    if env_id.is_none() {
        // Not an environment CNAME: maybe a custom domain, resolved through Route 53.
        if let Some(target) = rt.dns.resolve(&host).await {
            env_id = crate::dns::environment_of(&rt.shared.lock(), &target.name);
        }
    }
    match env_id {
        Some(env_id) => crate::lb::forward(&rt, &env_id, request).await,
        None => (
            StatusCode::BAD_GATEWAY,
            format!("local-aws router: no environment has the CNAME `{host}`\n"),
        )
            .into_response(),
    }
}
