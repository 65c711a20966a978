//! local-aws: a local, wire-compatible stand-in for the AWS APIs moto lacks: the CodePipeline job API and
//! Elastic Beanstalk (applications and versions so far), plus a Lambda Runtime API to run functions. It follows the botocore service models, not beanswap's client, so a misunderstanding in
//! beanswap-core shows up as a failing test instead of being mirrored here.
//!
//! Start it in a test with [`LocalAws::start`]; point the SDK at [`LocalAws::endpoint`] through
//! `AWS_ENDPOINT_URL_CODEPIPELINE` and `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK`. Admin endpoints under `/_local/` expose what was recorded.

pub mod beanstalk;
pub mod codepipeline;
pub mod lambda;
mod query;
mod state;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub use codepipeline::JobResult;
use state::Shared;

/// A running stand-in; stops when dropped.
pub struct LocalAws {
    addr: SocketAddr,
    shared: Shared,
    stop: Option<oneshot::Sender<()>>,
}

impl LocalAws {
    /// Starts on `addr` (use `127.0.0.1:0` for a free port) in the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, beanstalk::Options::default()).await
    }

    /// Starts with chosen Elastic Beanstalk settings (version cap, ...).
    pub async fn start_with(
        addr: SocketAddr,
        options: beanstalk::Options,
    ) -> std::io::Result<Self> {
        let shared = Shared::default();
        shared.lock().beanstalk.options = options;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "local-aws server stopped");
            }
        });
        Ok(LocalAws {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_*`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every job result accepted so far.
    pub fn job_results(&self) -> Vec<JobResult> {
        self.shared.lock().job_results.clone()
    }

    /// Calls per `Service.Operation`.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.lock().calls.clone()
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/", post(dispatch))
        .route("/_local/job-results", get(admin_job_results))
        .route("/_local/calls", get(admin_calls))
        .route("/_local/reset", post(admin_reset))
        .with_state(shared)
}

async fn dispatch(
    AxumState(shared): AxumState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(operation) = target.strip_prefix("CodePipeline_20150709.") {
        *shared
            .lock()
            .calls
            .entry(format!("CodePipeline.{operation}"))
            .or_default() += 1;
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return json_error(codepipeline::JsonError {
                    status: 400,
                    code: "SerializationException",
                    message: format!("request body is not JSON: {e}"),
                })
            }
        };
        return match codepipeline::handle(&shared, operation, &parsed) {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => json_error(e),
        };
    }
    if !target.is_empty() {
        return json_error(codepipeline::JsonError {
            status: 400,
            code: "UnknownOperationException",
            message: format!("local-aws does not serve X-Amz-Target `{target}`"),
        });
    }
    // awsQuery: a form with Action and Version. Only Elastic Beanstalk speaks it here.
    let params = query::Params::parse(&body);
    let operation = params.get("Action").unwrap_or_default().to_string();
    let mut state = shared.lock();
    *state
        .calls
        .entry(format!("ElasticBeanstalk.{operation}"))
        .or_default() += 1;
    let result = if params.get("Version") != Some("2010-12-01") {
        Err(query::QueryError::new(
            400,
            "InvalidAction",
            format!(
                "Could not find operation {operation} for version {}",
                params.get("Version").unwrap_or("(none)")
            ),
        ))
    } else {
        beanstalk::handle(&mut state.beanstalk, &operation, &params)
    };
    drop(state);
    match result {
        Ok(inner) => xml_response(
            StatusCode::OK,
            query::response(beanstalk::NAMESPACE, &operation, inner),
        ),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            xml_response(status, query::error_body(beanstalk::NAMESPACE, &e))
        }
    }
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

fn json_error(e: codepipeline::JsonError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, json!({"__type": e.code, "message": e.message}));
    if let Ok(v) = HeaderValue::from_str(e.code) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

async fn admin_job_results(AxumState(shared): AxumState<Shared>) -> Json<Value> {
    Json(json!(shared.lock().job_results))
}

async fn admin_calls(AxumState(shared): AxumState<Shared>) -> Json<Value> {
    Json(json!(shared.lock().calls))
}

async fn admin_reset(AxumState(shared): AxumState<Shared>) -> StatusCode {
    let mut state = shared.lock();
    let options = state.beanstalk.options.clone();
    *state = Default::default();
    state.beanstalk.options = options;
    StatusCode::NO_CONTENT
}
