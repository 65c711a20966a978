//! The admin endpoints under `/_local/` on the API port: what was recorded (job results, call counts,
//! instances, DNS answers), and what tests set (faults, identities, DB instances, a reset).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::Shared;
use crate::{dns, faults, lifecycle, rds};

/// `/_local/instances`: instances running per environment name (LocalAws::instance_counts).
pub(super) async fn admin_instances(
    AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>,
) -> Response {
    Json(instance_counts(&runtime.shared)).into_response()
}

pub(super) fn instance_counts(shared: &Shared) -> std::collections::BTreeMap<String, usize> {
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
pub(super) async fn admin_dns(
    AxumState(runtime): AxumState<Arc<lifecycle::Runtime>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match dns::answer(&runtime, &name).await {
        Some(answer) => Json(answer).into_response(),
        None => (StatusCode::NOT_FOUND, format!("NXDOMAIN {name}\n")).into_response(),
    }
}

pub(super) type Rt = AxumState<Arc<lifecycle::Runtime>>;

pub(super) async fn admin_job_results(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().job_results))
}

pub(super) async fn admin_calls(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().calls))
}

/// Forgets everything (and stops every app), keeping the options the server started with and the
/// identities it enforces.
pub(super) async fn admin_reset(AxumState(rt): Rt) -> StatusCode {
    let mut state = rt.shared.lock();
    let options = state.beanstalk.options.clone();
    let identities = state.identities.clone();
    *state = Default::default();
    state.beanstalk.options = options;
    state.identities = identities;
    StatusCode::NO_CONTENT
}

/// Registers a DB instance: `{"id":..,"host":..,"port":..,"database":..,"user":..,"password":..}`.
pub(super) async fn admin_add_db_instance(AxumState(rt): Rt, body: Bytes) -> Response {
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
pub(super) async fn admin_set_iam(AxumState(rt): Rt, body: Bytes) -> Response {
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
pub(super) async fn admin_clear_iam(AxumState(rt): Rt) -> StatusCode {
    rt.shared.lock().identities = None;
    StatusCode::NO_CONTENT
}

pub(super) async fn admin_faults(AxumState(rt): Rt) -> Json<Value> {
    Json(json!(rt.shared.lock().beanstalk.options.faults))
}

pub(super) async fn admin_set_faults(AxumState(rt): Rt, body: Bytes) -> Response {
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
