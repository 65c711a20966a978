//! local-aws: a local, wire-compatible stand-in for the AWS APIs moto lacks: the CodePipeline job API and
//! Elastic Beanstalk, plus a Lambda Runtime API to run functions. It follows the botocore service models,
//! not beanswap's client, so a misunderstanding in beanswap-core shows up as a failing test instead of
//! being mirrored here.
//!
//! Two ports: the API ([`LocalAws::endpoint`], for `AWS_ENDPOINT_URL_CODEPIPELINE` and
//! `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK`) and the router ([`LocalAws::router_endpoint`]), which forwards
//! requests by Host header to the app each environment runs. Admin endpoints under `/_local/` on the API
//! port expose what was recorded and set faults.

pub mod beanstalk;
pub mod cloudwatch;
pub mod codepipeline;
pub mod deploy;
pub mod dns;
pub mod faults;
pub mod iam;
pub mod lambda;
pub mod lb;
pub mod lifecycle;
pub mod moto;
pub mod postgres;
pub mod proxy;
mod query;
pub mod rds;
mod router;
pub mod secrets;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

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

/// A running stand-in; stops when dropped, killing every app it started.
pub struct LocalAws {
    addr: SocketAddr,
    router_addr: SocketAddr,
    shared: Shared,
    stop: Vec<oneshot::Sender<()>>,
    /// Holds the temporary state directory (bundles, app logs) until the server stops.
    _state_dir: Option<tempfile::TempDir>,
}

impl LocalAws {
    /// Starts on `addr` (use `127.0.0.1:0` for a free port) in the current tokio runtime, with the
    /// router on a free port of the same address.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, beanstalk::Options::default()).await
    }

    /// Starts with chosen Elastic Beanstalk settings (delays, faults, S3 endpoint, version cap).
    pub async fn start_with(
        addr: SocketAddr,
        options: beanstalk::Options,
    ) -> std::io::Result<Self> {
        Self::start_with_router(addr, SocketAddr::new(addr.ip(), 0), options).await
    }

    /// Starts the API on `addr` and the environments' router on `router_addr`.
    pub async fn start_with_router(
        addr: SocketAddr,
        router_addr: SocketAddr,
        options: beanstalk::Options,
    ) -> std::io::Result<Self> {
        let (state_dir, dir) = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (None, dir.clone())
            }
            None => {
                let tmp = tempfile::Builder::new().prefix("local-aws-").tempdir()?;
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let s3 = s3_client(options.s3_endpoint.clone()).await;
        let dns = dns::Resolver::new(options.route53_endpoint.clone()).await;
        let shared = Shared::default();
        shared.lock().beanstalk.options = options;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let runtime = Arc::new(lifecycle::Runtime {
            shared: shared.clone(),
            dir,
            s3,
            dns,
            http,
        });
        let api = tokio::net::TcpListener::bind(addr).await?;
        let routes = tokio::net::TcpListener::bind(router_addr).await?;
        let addr = api.local_addr()?;
        let router_addr = routes.local_addr()?;
        let stop = vec![
            serve(api, api_router(runtime.clone())),
            serve(routes, router::router(runtime)),
        ];
        Ok(LocalAws {
            addr,
            router_addr,
            shared,
            stop,
            _state_dir: state_dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where environments are reached: send requests here with `Host: <environment CNAME>`.
    pub fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }

    pub fn router_endpoint(&self) -> String {
        format!("http://{}", self.router_addr)
    }

    /// Replaces the active faults (and restarts their call counting).
    pub fn set_faults(&self, faults: faults::Faults) {
        let mut state = self.shared.lock();
        state.beanstalk.options.faults = faults;
        state.fault_calls.clear();
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_*`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every job result accepted so far.
    pub fn job_results(&self) -> Vec<JobResult> {
        self.shared.lock().job_results.clone()
    }

    /// Beanstalk events recorded after `sequence` (oldest first): `(sequence, severity, environment,
    /// message)`. Read from the store directly, so watching costs no API call (and skews no budget).
    pub fn events_after(&self, sequence: u64) -> Vec<(u64, String, String, String)> {
        let state = self.shared.lock();
        let mut events: Vec<(u64, String, String, String)> = state
            .beanstalk
            .events
            .iter()
            .filter(|e| e.sequence > sequence)
            .map(|e| {
                (
                    e.sequence,
                    e.severity.as_str().to_string(),
                    e.environment.clone().unwrap_or_default(),
                    e.message.clone(),
                )
            })
            .collect();
        events.sort_by_key(|e| e.0);
        events
    }

    /// Registers a DB instance (a real PostgreSQL database) that RDS's snapshot operations act on.
    pub fn add_db_instance(&self, instance: rds::Instance) {
        self.shared
            .lock()
            .rds
            .instances
            .insert(instance.id.to_ascii_lowercase(), instance);
    }

    /// Holds every request from now on to these identities' policies (`None`: checks nothing). The
    /// local run registers each function's role and its own administrator key.
    pub fn set_identities(&self, identities: Option<beanswap_iam::Identities>) {
        self.shared.lock().identities = identities.map(Arc::new);
    }

    /// Instances running (registered with their load balancer) per environment name, for reports of
    /// how environments grew and shrank; terminated environments are left out.
    pub fn instance_counts(&self) -> std::collections::BTreeMap<String, usize> {
        instance_counts(&self.shared)
    }

    /// Kills one instance's app process (as a crashed app or a lost instance would end), leaving the
    /// load balancer to find out by its health checks. False when no such process runs.
    pub fn kill_instance(&self, instance_id: &str) -> bool {
        let mut state = self.shared.lock();
        state
            .processes
            .values_mut()
            .find_map(|by_instance| by_instance.get_mut(instance_id))
            .map(lifecycle::AppProcess::kill)
            .is_some()
    }

    /// Calls per `Service.Operation`.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.lock().calls.clone()
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        let mut state = self.shared.lock();
        state.stopped = true;
        state.processes.clear();
        state.lbs.clear();
    }
}

/// `/_local/instances`: instances running per environment name (LocalAws::instance_counts).
async fn admin_instances(AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>) -> Response {
    Json(instance_counts(&runtime.shared)).into_response()
}

fn instance_counts(shared: &Shared) -> std::collections::BTreeMap<String, usize> {
    let state = shared.lock();
    state
        .beanstalk
        .environments
        .values()
        .filter(|e| e.is_live())
        .map(|e| (e.name.clone(), e.running()))
        .collect()
}

/// `/_local/dns/{name}`: the name resolved as a client's resolver would (crate::dns), with the
/// answer's TTL in milliseconds; 404 (NXDOMAIN) when nothing answers for it.
async fn admin_dns(
    AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match dns::answer(&runtime, &name).await {
        Some(answer) => Json(answer).into_response(),
        None => (StatusCode::NOT_FOUND, format!("NXDOMAIN {name}\n")).into_response(),
    }
}

fn serve(listener: tokio::net::TcpListener, app: Router) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "local-aws server stopped");
        }
    });
    stop
}

/// An S3 client for source bundles: the given endpoint, else `AWS_ENDPOINT_URL_S3`; none without either.
async fn s3_client(endpoint: Option<String>) -> Option<aws_sdk_s3::Client> {
    let endpoint = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())?;
    let config = sdk_config(endpoint).await;
    let config = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    Some(aws_sdk_s3::Client::from_conf(config))
}

fn api_router(runtime: Arc<lifecycle::Runtime>) -> Router {
    Router::new()
        .route("/", post(dispatch))
        .route(
            "/service/{service}/operation/{operation}",
            post(rpc_v2_cbor),
        )
        .route("/_local/job-results", get(admin_job_results))
        .route("/_local/calls", get(admin_calls))
        .route("/_local/reset", post(admin_reset))
        .route("/_local/faults", get(admin_faults).put(admin_set_faults))
        .route("/_local/dns/{name}", get(admin_dns))
        .route("/_local/instances", get(admin_instances))
        .route(
            "/_local/iam",
            axum::routing::put(admin_set_iam).delete(admin_clear_iam),
        )
        .route(
            "/_local/rds/instances",
            axum::routing::put(admin_add_db_instance),
        )
        .with_state(runtime)
}

/// Smithy RPC v2 CBOR: CloudWatch, whose Rust SDK client speaks only this protocol.
async fn rpc_v2_cbor(
    AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>,
    axum::extract::Path((service, operation)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = |status: StatusCode, value: &ciborium::Value, query_error: Option<String>| {
        let mut bytes = Vec::new();
        if let Err(e) = ciborium::into_writer(value, &mut bytes) {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/cbor"));
        headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
        // CloudWatch is awsQueryCompatible: clients read the query error code from this header.
        if let Some(code) = query_error.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert("x-amzn-query-error", code);
        }
        response
    };
    let fail = |e: cloudwatch::CborError| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        let fault = if e.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        answer(status, &e.body(), Some(format!("{};{fault}", e.code)))
    };
    if service != cloudwatch::SERVICE {
        return fail(cloudwatch::CborError {
            status: 404,
            code: "UnknownOperationException",
            message: format!("local-aws does not serve the RPC v2 service `{service}`"),
        });
    }
    let shared = &runtime.shared;
    *shared
        .lock()
        .calls
        .entry(format!("CloudWatch.{operation}"))
        .or_default() += 1;
    let input = if body.is_empty() {
        ciborium::Value::Map(vec![])
    } else {
        match ciborium::from_reader::<ciborium::Value, _>(&body[..]) {
            Ok(v) => v,
            Err(e) => {
                return fail(cloudwatch::CborError {
                    status: 400,
                    code: "SerializationException",
                    message: format!("the request body is not CBOR: {e}"),
                })
            }
        }
    };
    let names = cloudwatch::alarm_names(&input);
    if let Err(refused) = authorize_cloudwatch(shared, &headers, &operation, &names) {
        return fail(refused);
    }
    let result = shared.lock().alarms.handle(&operation, &input);
    match result {
        Ok(out) => answer(StatusCode::OK, &out, None),
        Err(e) => fail(e),
    }
}

/// CloudWatch's permission check: each alarm the request names is a resource of the row's checks.
fn authorize_cloudwatch(
    shared: &state::Shared,
    headers: &HeaderMap,
    operation: &str,
    names: &[String],
) -> Result<(), cloudwatch::CborError> {
    authorize(
        shared,
        headers,
        beanswap_iam::Service::CloudWatch,
        operation,
        |row| {
            let arns: Vec<Option<String>> = if names.is_empty() {
                vec![None]
            } else {
                names
                    .iter()
                    .map(|n| {
                        Some(format!(
                            "arn:aws:cloudwatch:{}:{}:alarm:{n}",
                            beanstalk::REGION,
                            beanstalk::ACCOUNT
                        ))
                    })
                    .collect()
            };
            arns.into_iter()
                .flat_map(|arn| iam::checks(row, |_| false, |_| arn.clone()))
                .collect()
        },
    )
    // CloudWatch's AccessDenied (query-compatible code AccessDenied, HTTP 403).
    .map_err(|message| cloudwatch::CborError {
        status: 403,
        code: "AccessDenied",
        message,
    })
}

async fn dispatch(
    AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &runtime.shared;
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
        if let Err(refused) = authorize(
            shared,
            &headers,
            beanswap_iam::Service::CodePipeline,
            operation,
            |row| iam::checks(row, |m| parsed.get(m).is_some(), |_| None),
        ) {
            // CodePipeline's common AccessDeniedException (awsJson1_1: HTTP 400).
            return json_error(codepipeline::JsonError {
                status: 400,
                code: "AccessDeniedException",
                message: refused,
            });
        }
        return match codepipeline::handle(shared, operation, &parsed) {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => json_error(e),
        };
    }
    if let Some(operation) = target.strip_prefix("GraniteServiceVersion20100801.") {
        *shared
            .lock()
            .calls
            .entry(format!("CloudWatch.{operation}"))
            .or_default() += 1;
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let names = cloudwatch::alarm_names_json(&input);
        let result = authorize_cloudwatch(shared, &headers, operation, &names)
            .and_then(|()| shared.lock().alarms.handle_json(operation, &input));
        return match result {
            Ok(v) => json_response(StatusCode::OK, v),
            Err(e) => {
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                let mut response = json_response(
                    status,
                    json!({"__type": format!("com.amazonaws.cloudwatch#{}", e.code), "message": e.message}),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", e.code)) {
                    response.headers_mut().insert("x-amzn-query-error", v);
                }
                response
            }
        };
    }
    if !target.is_empty() {
        return json_error(codepipeline::JsonError {
            status: 400,
            code: "UnknownOperationException",
            message: format!("local-aws does not serve X-Amz-Target `{target}`"),
        });
    }
    // awsQuery: a form with Action and Version; the Version tells RDS (2014-10-31) from Elastic
    // Beanstalk (2010-12-01).
    let params = query::Params::parse(&body);
    let operation = params.get("Action").unwrap_or_default().to_string();
    if params.get("Version") == Some(rds::VERSION) {
        if let Err(refused) = authorize(
            shared,
            &headers,
            beanswap_iam::Service::Rds,
            &operation,
            |row| {
                iam::checks(
                    row,
                    |m| iam::query_has(&params, m),
                    |k| iam::rds_arn(&params, k),
                )
            },
        ) {
            let e = query::QueryError::new(403, "AccessDenied", refused);
            return xml_response(
                StatusCode::FORBIDDEN,
                query::error_body(rds::NAMESPACE, &e, &uuid::Uuid::new_v4().to_string()),
            );
        }
        return rds_dispatch(&runtime, &operation, &params);
    }
    let qualified = format!("ElasticBeanstalk.{operation}");
    let request_id = uuid::Uuid::new_v4().to_string();
    let (throttled, delay) = {
        let mut state = shared.lock();
        *state.calls.entry(qualified.clone()).or_default() += 1;
        let n = {
            let count = state.fault_calls.entry(qualified.clone()).or_default();
            *count += 1;
            *count
        };
        let faults = &state.beanstalk.options.faults;
        (faults.throttles(&qualified, n), faults.delay(&qualified))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let refused = {
        let state = shared.lock();
        let store = &state.beanstalk;
        let identities = state.identities.clone();
        authorize_with(
            identities.as_deref(),
            &headers,
            beanswap_iam::Service::ElasticBeanstalk,
            &operation,
            |row| {
                let settings = (operation == "CreateEnvironment")
                    .then(|| iam::create_settings(store, &params));
                iam::checks(
                    row,
                    |m| iam::query_has(&params, m),
                    |kind| match (&settings, &identities) {
                        (Some(settings), Some(ids))
                            if matches!(
                                kind,
                                beanswap_iam::ResourceKind::ServiceRole
                                    | beanswap_iam::ResourceKind::InstanceRole
                            ) =>
                        {
                            iam::passed_role(ids, settings, kind)
                        }
                        _ => iam::beanstalk_arn(store, &params, kind),
                    },
                )
            },
        )
        .err()
    };
    let result = if let Some(refused) = refused {
        // Elastic Beanstalk's InsufficientPrivilegesException (the model's 403).
        Err(query::QueryError::new(
            403,
            "InsufficientPrivilegesException",
            refused,
        ))
    } else if params.get("Version") != Some("2010-12-01") {
        Err(query::QueryError::new(
            400,
            "InvalidAction",
            format!(
                "Could not find operation {operation} for version {}",
                params.get("Version").unwrap_or("(none)")
            ),
        ))
    } else if throttled {
        Err(query::QueryError::new(400, "Throttling", "Rate exceeded"))
    } else if operation == "CreateStorageLocation" {
        create_storage_location(&runtime).await
    } else {
        let request = beanstalk::Request {
            params: &params,
            request_id: &request_id,
        };
        let mut state = shared.lock();
        beanstalk::handle(&mut state.beanstalk, &operation, &request)
    };
    match result {
        Ok((inner, effects)) => {
            for effect in effects {
                runtime.spawn(effect);
            }
            xml_response(
                StatusCode::OK,
                query::response(beanstalk::NAMESPACE, &operation, inner, &request_id),
            )
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            xml_response(
                status,
                query::error_body(beanstalk::NAMESPACE, &e, &request_id),
            )
        }
    }
}

/// One RDS call: counted like Beanstalk's (`RDS.<Operation>`), answered from the store; a snapshot's
/// dump is started in the background.
fn rds_dispatch(
    runtime: &Arc<lifecycle::Runtime>,
    operation: &str,
    params: &query::Params,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = {
        let mut state = runtime.shared.lock();
        *state.calls.entry(format!("RDS.{operation}")).or_default() += 1;
        rds::handle(&mut state.rds, operation, params, &runtime.dir)
    };
    match result {
        Ok((inner, dump)) => {
            if let Some(rds::Dump(id)) = dump {
                runtime.spawn_dump(id);
            }
            xml_response(
                StatusCode::OK,
                query::response(rds::NAMESPACE, operation, Some(inner), &request_id),
            )
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            xml_response(status, query::error_body(rds::NAMESPACE, &e, &request_id))
        }
    }
}

/// CreateStorageLocation: the account's `elasticbeanstalk-<region>-<account>` bucket, created in S3 (moto)
/// when missing, as Beanstalk does.
async fn create_storage_location(
    runtime: &lifecycle::Runtime,
) -> Result<(Option<String>, Vec<beanstalk::Effect>), query::QueryError> {
    let bucket = format!(
        "elasticbeanstalk-{}-{}",
        beanstalk::REGION,
        beanstalk::ACCOUNT
    );
    let s3 = runtime.s3.as_ref().ok_or_else(|| {
        query::QueryError::new(
            500,
            "InternalFailure",
            "local-aws has no S3 endpoint to create the storage location in",
        )
    })?;
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| {
                query::QueryError::new(
                    500,
                    "InternalFailure",
                    format!(
                        "creating bucket {bucket} failed: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
    }
    Ok((Some(format!("<S3Bucket>{bucket}</S3Bucket>")), vec![]))
}

/// The access key id a request was signed with.
fn access_key(headers: &HeaderMap) -> Option<String> {
    beanswap_iam::identity::access_key(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        "",
    )
}

/// `Err(message)` when the registered identities refuse the request (nothing is refused before the
/// local run registers them).
fn authorize(
    shared: &state::Shared,
    headers: &HeaderMap,
    service: beanswap_iam::Service,
    operation: &str,
    checks_of: impl FnOnce(&beanswap_iam::table::Operation) -> Vec<beanswap_iam::Check>,
) -> Result<(), String> {
    let identities = shared.lock().identities.clone();
    authorize_with(
        identities.as_deref(),
        headers,
        service,
        operation,
        checks_of,
    )
}

fn authorize_with(
    identities: Option<&beanswap_iam::Identities>,
    headers: &HeaderMap,
    service: beanswap_iam::Service,
    operation: &str,
    checks_of: impl FnOnce(&beanswap_iam::table::Operation) -> Vec<beanswap_iam::Check>,
) -> Result<(), String> {
    let Some(identities) = identities else {
        return Ok(());
    };
    let key = access_key(headers);
    iam::authorize(identities, key.as_deref(), service, operation, checks_of).map_err(|r| {
        tracing::info!(%operation, refused = %r.message(), "refused by the caller's policies");
        r.message()
    })
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

type Rt = AxumState<Arc<lifecycle::Runtime>>;

async fn admin_job_results(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().job_results))
}

async fn admin_calls(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().calls))
}

/// Forgets everything (and stops every app), keeping the options the server started with and the
/// identities it enforces.
async fn admin_reset(AxumState(rt): Rt) -> StatusCode {
    let mut state = rt.shared.lock();
    let options = state.beanstalk.options.clone();
    let identities = state.identities.clone();
    *state = Default::default();
    state.beanstalk.options = options;
    state.identities = identities;
    StatusCode::NO_CONTENT
}

/// Registers a DB instance: `{"id":..,"host":..,"port":..,"database":..,"user":..,"password":..}`.
async fn admin_add_db_instance(AxumState(rt): Rt, body: Bytes) -> Response {
    match serde_json::from_slice::<rds::Instance>(&body) {
        Ok(instance) => {
            rt.shared
                .lock()
                .rds
                .instances
                .insert(instance.id.to_ascii_lowercase(), instance);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("instance: {e}\n")).into_response(),
    }
}

/// Registers the identities to enforce (`beanswap_iam::identity::IdentitiesSpec` as JSON); a policy the
/// evaluator does not understand is a 400 naming it, so the run that sent it fails before it starts.
async fn admin_set_iam(AxumState(rt): Rt, body: Bytes) -> Response {
    let spec = match serde_json::from_slice::<beanswap_iam::identity::IdentitiesSpec>(&body) {
        Ok(spec) => spec,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("identities: {e}\n")).into_response(),
    };
    match beanswap_iam::Identities::from_spec(&spec) {
        Ok(ids) => {
            rt.shared.lock().identities = Some(Arc::new(ids));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// Stops checking permissions.
async fn admin_clear_iam(AxumState(rt): Rt) -> StatusCode {
    rt.shared.lock().identities = None;
    StatusCode::NO_CONTENT
}

async fn admin_faults(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().beanstalk.options.faults))
}

async fn admin_set_faults(AxumState(rt): Rt, body: Bytes) -> Response {
    match serde_json::from_slice::<faults::Faults>(&body) {
        Ok(faults) => {
            let mut state = rt.shared.lock();
            state.beanstalk.options.faults = faults;
            state.fault_calls.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("faults: {e}\n")).into_response(),
    }
}

/// SDK settings for talking to moto: its endpoint, the stand-in's region, credentials from the
/// environment or dummy ones (moto accepts any).
pub(crate) async fn sdk_config(endpoint: String) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(beanstalk::REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "local".into()),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "local".into()),
            None,
            None,
            "local-aws",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}
