//! CodePipeline's job API (awsJson1.1, target prefix `CodePipeline_20150709`): the two calls a Lambda
//! action makes, validated as the service model says, and recorded so tests can read what was reported.
//!
//! Constraints follow botocore's `codepipeline/2015-07-09/service-2.json`: JobId matches the UUID
//! pattern, ContinuationToken 1..2048, ExecutionSummary 1..2048,
//! Percentage 0..100, Message 1..5000, FailureType one of six values, OutputVariablesKey
//! `[A-Za-z0-9@\-_]+`. A job that already has a final result answers InvalidJobStateException.

use serde::Serialize;
use serde_json::{json, Value};

use crate::state::Shared;

const FAILURE_TYPES: [&str; 6] = [
    "JobFailed",
    "ConfigurationError",
    "PermissionError",
    "RevisionOutOfSync",
    "RevisionUnavailable",
    "SystemUnavailable",
];
const MAX_OUTPUT_VARIABLES_BYTES: usize = 122_880;

/// One accepted PutJobSuccessResult or PutJobFailureResult, as the admin endpoint shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    pub job_id: String,
    /// `PutJobSuccessResult` or `PutJobFailureResult`.
    pub operation: String,
    /// The request body, as the client sent it.
    pub request: Value,
}

/// An awsJson1.1 error: HTTP status, `__type` and message.
#[derive(Debug)]
pub struct JsonError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn validation(message: impl Into<String>) -> JsonError {
    JsonError {
        status: 400,
        code: "ValidationException",
        message: message.into(),
    }
}

/// Handles one operation; `Ok` is the response body.
pub fn handle(shared: &Shared, operation: &str, body: &Value) -> Result<Value, JsonError> {
    match operation {
        "PutJobSuccessResult" => put_result(shared, operation, body, check_success),
        "PutJobFailureResult" => put_result(shared, operation, body, check_failure),
        other => Err(JsonError {
            status: 400,
            code: "UnknownOperationException",
            message: format!("local-aws does not implement CodePipeline operation {other}"),
        }),
    }
}

fn put_result(
    shared: &Shared,
    operation: &str,
    body: &Value,
    check: fn(&Value) -> Result<bool, JsonError>,
) -> Result<Value, JsonError> {
    let job_id = required_str(body, "jobId")?;
    if !is_uuid(job_id) {
        return Err(validation(format!(
            "1 validation error detected: Value '{job_id}' at 'jobId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}"
        )));
    }
    let is_final = check(body)?;
    let mut state = shared.lock();
    if state.finished_jobs.contains(job_id) {
        return Err(JsonError {
            status: 400,
            code: "InvalidJobStateException",
            message: format!("Job {job_id} is already in a final state"),
        });
    }
    if is_final {
        state.finished_jobs.insert(job_id.to_string());
    }
    state.job_results.push(JobResult {
        job_id: job_id.to_string(),
        operation: operation.to_string(),
        request: body.clone(),
    });
    Ok(json!({}))
}

/// Returns whether the result is final (no continuation token).
fn check_success(body: &Value) -> Result<bool, JsonError> {
    let token = optional_str(body, "continuationToken")?;
    if let Some(t) = token {
        length("continuationToken", t, 1, 2048)?;
    }
    if let Some(details) = body.get("executionDetails") {
        if let Some(s) = optional_str(details, "summary")? {
            length("executionDetails.summary", s, 1, 2048)?;
        }
        if let Some(p) = details.get("percentComplete") {
            let ok = p.as_i64().is_some_and(|p| (0..=100).contains(&p));
            if !ok {
                return Err(validation(format!(
                    "Value '{p}' at 'executionDetails.percentComplete' failed to satisfy constraint: Member must have value between 0 and 100"
                )));
            }
        }
    }
    if let Some(vars) = body.get("outputVariables") {
        let vars = vars
            .as_object()
            .ok_or_else(|| validation("outputVariables must be a map"))?;
        if token.is_some() && !vars.is_empty() {
            return Err(validation(
                "Output variables can only be set when the job completes; a continuation token was given",
            ));
        }
        let mut total = 0;
        for (k, v) in vars {
            let ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@-_".contains(c));
            if !ok {
                return Err(validation(format!(
                    "Value '{k}' at 'outputVariables' failed to satisfy constraint: Map keys must satisfy regular expression pattern: [A-Za-z0-9@\\-_]+"
                )));
            }
            let v = v
                .as_str()
                .ok_or_else(|| validation(format!("outputVariables.{k} must be a string")))?;
            total += k.len() + v.len();
        }
        if total > MAX_OUTPUT_VARIABLES_BYTES {
            return Err(JsonError {
                status: 400,
                code: "OutputVariablesSizeExceededException",
                message: format!("Output variables size {total} exceeds the limit of {MAX_OUTPUT_VARIABLES_BYTES} bytes"),
            });
        }
    }
    Ok(token.is_none())
}

fn check_failure(body: &Value) -> Result<bool, JsonError> {
    let details = body
        .get("failureDetails")
        .ok_or_else(|| validation("failureDetails is required"))?;
    let kind = required_str(details, "type")?;
    if !FAILURE_TYPES.contains(&kind) {
        return Err(validation(format!(
            "Value '{kind}' at 'failureDetails.type' failed to satisfy constraint: Member must satisfy enum value set: {FAILURE_TYPES:?}"
        )));
    }
    length(
        "failureDetails.message",
        required_str(details, "message")?,
        1,
        5000,
    )?;
    Ok(true)
}

fn required_str<'a>(v: &'a Value, field: &str) -> Result<&'a str, JsonError> {
    optional_str(v, field)?.ok_or_else(|| validation(format!("{field} is required")))
}

fn optional_str<'a>(v: &'a Value, field: &str) -> Result<Option<&'a str>, JsonError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(validation(format!("{field} must be a string, got {other}"))),
    }
}

fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), JsonError> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(validation(format!(
            "Value at '{field}' failed to satisfy constraint: Member must have length between {min} and {max}, got {len}"
        )));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}
