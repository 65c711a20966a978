//! The API port's wire: which protocol a request speaks (AWS JSON for CodePipeline and CloudWatch, the
//! query protocol for Beanstalk and RDS, Smithy RPC v2 CBOR for the CloudWatch SDK client), counting
//! each call, checking it against the caller's policies and answering in that protocol's shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::admin::{
    admin_add_db_instance, admin_calls, admin_clear_iam, admin_dns, admin_faults, admin_instances,
    admin_job_results, admin_reset, admin_set_faults, admin_set_iam,
};
use crate::auth::{authorize, authorize_cloudwatch, authorize_with};
use crate::{beanstalk, cloudwatch, codepipeline, iam, lifecycle, query, rds};

pub(super) fn api_router(runtime: Arc<lifecycle::Runtime>) -> Router {
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
pub(super) async fn rpc_v2_cbor(
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

pub(super) async fn dispatch(
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
        // Counted before anything refuses it, like Beanstalk's calls below.
        *shared
            .lock()
            .calls
            .entry(format!("RDS.{operation}"))
            .or_default() += 1;
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

/// One RDS call (already counted as `RDS.<Operation>`), answered from the store; a snapshot's dump is
/// started in the background.
pub(super) fn rds_dispatch(
    runtime: &Arc<lifecycle::Runtime>,
    operation: &str,
    params: &query::Params,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = {
        let mut state = runtime.shared.lock();
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
pub(super) async fn create_storage_location(
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

pub(super) fn xml_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    response
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

pub(super) fn json_error(e: codepipeline::JsonError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, json!({"__type": e.code, "message": e.message}));
    if let Ok(v) = HeaderValue::from_str(e.code) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}
