//! The CodePipeline job API on the wire: raw awsJson1.1 requests, as botocore's model
//! (codepipeline/2015-07-09/service-2.json) defines them, and the AWS CLI (a client that is not ours).
//! A refused request is answered with the model's error shape and records nothing; a request at the
//! limits is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use test_support::LocalAws;

const TARGET_PREFIX: &str = "CodePipeline_20150709.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

fn new_job_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One awsJson1.1 call: (HTTP status, `x-amzn-errortype` header, body).
async fn call(local: &LocalAws, operation: &str, body: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/", local.endpoint()))
        .header("x-amz-target", format!("{TARGET_PREFIX}{operation}"))
        .header("content-type", CONTENT_TYPE)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(CONTENT_TYPE),
        "{operation}"
    );
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{operation} answered non-JSON ({e}): {text:?}"));
    (status, error_type, body)
}

/// What `/_local/job-results` shows (the admin endpoint, read over HTTP as another process would).
async fn recorded(local: &LocalAws) -> Vec<Value> {
    reqwest::get(format!("{}/_local/job-results", local.endpoint()))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_bad_job_result_gets_the_models_error_naming_the_field_and_records_nothing() {
    let local = test_support::local_aws().await;
    let id = new_job_id();
    let long = |n: usize| "é".repeat(n); // length counts characters, not bytes
    let big_value = "v".repeat(122_880); // with its key, one byte over the 122,880-byte cap

    // (operation, body, expected __type, parts the message must contain)
    let cases: Vec<(&str, Value, &str, Vec<&str>)> = vec![
        // jobId: required, lowercase UUID pattern.
        (
            "PutJobSuccessResult",
            json!({}),
            "ValidationException",
            vec!["jobId"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": "job-1"}),
            "ValidationException",
            vec!["'job-1'", "'jobId'", "regular expression pattern"],
        ),
        (
            "PutJobFailureResult",
            json!({"jobId": id.to_uppercase(), "failureDetails": {"type": "JobFailed", "message": "x"}}),
            "ValidationException",
            vec!["'jobId'", "regular expression pattern"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": 7}),
            "ValidationException",
            vec!["jobId", "must be a string"],
        ),
        // continuationToken: 1..2048.
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": ""}),
            "ValidationException",
            vec!["'continuationToken'", "length between 1 and 2048"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": long(2049)}),
            "ValidationException",
            vec![
                "'continuationToken'",
                "length between 1 and 2048",
                "got 2049",
            ],
        ),
        // executionDetails.summary: 1..2048.
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "executionDetails": {"summary": ""}}),
            "ValidationException",
            vec!["'executionDetails.summary'", "length between 1 and 2048"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "executionDetails": {"summary": long(2049)}}),
            "ValidationException",
            vec!["'executionDetails.summary'", "got 2049"],
        ),
        // executionDetails.percentComplete: integer 0..100.
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": "t", "executionDetails": {"percentComplete": 101}}),
            "ValidationException",
            vec![
                "'101'",
                "'executionDetails.percentComplete'",
                "between 0 and 100",
            ],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": "t", "executionDetails": {"percentComplete": -1}}),
            "ValidationException",
            vec!["'executionDetails.percentComplete'"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": "t", "executionDetails": {"percentComplete": 50.5}}),
            "ValidationException",
            vec!["'executionDetails.percentComplete'"],
        ),
        // outputVariables: only on the final result, keys [A-Za-z0-9@\-_]+, string values, size cap.
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "continuationToken": "t", "outputVariables": {"Name": "shop"}}),
            "ValidationException",
            vec!["Output variables", "continuation token"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "outputVariables": {"bad key": "shop"}}),
            "ValidationException",
            vec!["'bad key'", "'outputVariables'", "[A-Za-z0-9@\\-_]+"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "outputVariables": {"Count": 2}}),
            "ValidationException",
            vec!["outputVariables.Count", "must be a string"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "outputVariables": ["Name", "shop"]}),
            "ValidationException",
            vec!["outputVariables", "map"],
        ),
        (
            "PutJobSuccessResult",
            json!({"jobId": id, "outputVariables": {"B": big_value}}),
            "OutputVariablesSizeExceededException",
            vec!["Output variables size 122881", "122880"],
        ),
        // failureDetails: required; type from the enum; message 1..5000.
        (
            "PutJobFailureResult",
            json!({"jobId": id}),
            "ValidationException",
            vec!["failureDetails"],
        ),
        (
            "PutJobFailureResult",
            json!({"jobId": id, "failureDetails": {"type": "Oops", "message": "x"}}),
            "ValidationException",
            vec![
                "'Oops'",
                "'failureDetails.type'",
                "enum value set",
                "ConfigurationError",
            ],
        ),
        (
            "PutJobFailureResult",
            json!({"jobId": id, "failureDetails": {"type": "JobFailed"}}),
            "ValidationException",
            vec!["message is required"],
        ),
        (
            "PutJobFailureResult",
            json!({"jobId": id, "failureDetails": {"type": "JobFailed", "message": ""}}),
            "ValidationException",
            vec!["'failureDetails.message'", "length between 1 and 5000"],
        ),
        (
            "PutJobFailureResult",
            json!({"jobId": id, "failureDetails": {"type": "JobFailed", "message": long(5001)}}),
            "ValidationException",
            vec!["'failureDetails.message'", "got 5001"],
        ),
        // Not an operation local-aws serves.
        (
            "PollForJobs",
            json!({"actionTypeId": {}}),
            "UnknownOperationException",
            vec!["PollForJobs"],
        ),
    ];
    for (operation, body, code, parts) in &cases {
        let (status, error_type, answer) = call(&local, operation, &body.to_string()).await;
        let shown = body.to_string().chars().take(200).collect::<String>();
        assert_eq!(status, 400, "{operation} {shown}: {answer}");
        assert_eq!(answer["__type"], *code, "{operation} {shown}: {answer}");
        assert_eq!(error_type.as_deref(), Some(*code), "{operation} {shown}");
        let message = answer["message"].as_str().unwrap();
        for part in parts {
            assert!(
                message.contains(part),
                "{operation} {shown}: expected {part:?} in {message:?}"
            );
        }
    }
    // A body that is not JSON at all.
    let (status, _, answer) = call(&local, "PutJobSuccessResult", "{\"jobId\":").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("SerializationException")),
        "{answer}"
    );

    // Nothing refused was recorded, and nothing refused made the job final.
    assert_eq!(recorded(&local).await, Vec::<Value>::new());
    assert!(local.job_results().is_empty());

    // At the limits, everything is accepted (and recorded), on the same job the refusals named.
    let at_limits = json!({
        "jobId": id,
        "continuationToken": long(2048),
        "executionDetails": {"summary": long(2048), "percentComplete": 100, "externalExecutionId": "x"},
    });
    let (status, _, answer) = call(&local, "PutJobSuccessResult", &at_limits.to_string()).await;
    assert_eq!((status, &answer), (200, &json!({})));
    let mut variables = serde_json::Map::new();
    variables.insert("A-b_c@1".into(), json!(""));
    variables.insert("B".into(), json!("v".repeat(122_880 - 1 - "A-b_c@1".len())));
    let final_success = json!({
        "jobId": id,
        "executionDetails": {"summary": "done", "percentComplete": 0},
        "outputVariables": variables,
    });
    let (status, _, answer) = call(&local, "PutJobSuccessResult", &final_success.to_string()).await;
    assert_eq!((status, &answer), (200, &json!({})));
    let failed_id = new_job_id();
    let failure = json!({
        "jobId": failed_id,
        "failureDetails": {"type": "SystemUnavailable", "message": long(5000), "externalExecutionId": "x"},
    });
    let (status, _, answer) = call(&local, "PutJobFailureResult", &failure.to_string()).await;
    assert_eq!((status, &answer), (200, &json!({})));

    let results = recorded(&local).await;
    let summary: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["jobId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("PutJobSuccessResult", id.as_str()),
            ("PutJobSuccessResult", id.as_str()),
            ("PutJobFailureResult", failed_id.as_str()),
        ]
    );
    assert_eq!(results[1]["request"], final_success);
    // Both jobs are now final: a second final result is refused, and not recorded.
    let (status, _, answer) = call(
        &local,
        "PutJobSuccessResult",
        &json!({"jobId": failed_id}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("InvalidJobStateException"))
    );
    assert_eq!(recorded(&local).await.len(), 3);
}

/// Runs `aws codepipeline ARGS` against local-aws: (success, stdout, stderr).
async fn cli(local: &LocalAws, args: &[&str]) -> (bool, String, String) {
    test_support::aws_cli(&local.endpoint(), "codepipeline", args).await
}

#[tokio::test]
async fn the_aws_cli_reports_job_results_and_reads_the_validation_errors() {
    let local = test_support::local_aws().await;
    let id = new_job_id();

    // Refusals, as botocore parses them (it validates only minimums itself, so these reach the server).
    let (ok, _, stderr) = cli(
        &local,
        &[
            "put-job-success-result",
            "--job-id",
            &id,
            "--continuation-token",
            "t",
            "--execution-details",
            "summary=half way,percentComplete=101",
        ],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "An error occurred (ValidationException) when calling the PutJobSuccessResult operation: \
             Value '101' at 'executionDetails.percentComplete' failed to satisfy constraint"
        ),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(
        &local,
        &[
            "put-job-success-result",
            "--job-id",
            &id,
            "--continuation-token",
            "t",
            "--output-variables",
            "Application=shop",
        ],
    )
    .await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("An error occurred (ValidationException) when calling the PutJobSuccessResult operation: Output variables"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(
        &local,
        &[
            "put-job-failure-result",
            "--job-id",
            &id,
            "--failure-details",
            "type=JobFailed,message=x",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cli(
        &local,
        &[
            "put-job-failure-result",
            "--job-id",
            &id,
            "--failure-details",
            "type=JobFailed,message=again",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("An error occurred (InvalidJobStateException) when calling the PutJobFailureResult operation"),
        "{stderr}"
    );

    // Success, with what the CLI serialised recorded as sent.
    let done = new_job_id();
    let (ok, stdout, stderr) = cli(
        &local,
        &[
            "put-job-success-result",
            "--job-id",
            &done,
            "--execution-details",
            "summary=deployed,percentComplete=100",
            "--output-variables",
            "Application=shop,EnvironmentName=shop-green",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "",
        "no output members: the CLI prints nothing"
    );
    let results = local.job_results();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].job_id, id);
    assert_eq!(
        results[0].request["failureDetails"],
        json!({"type": "JobFailed", "message": "x"})
    );
    assert_eq!(results[1].job_id, done);
    assert_eq!(results[1].operation, "PutJobSuccessResult");
    assert_eq!(
        results[1].request,
        json!({
            "jobId": done,
            "executionDetails": {"summary": "deployed", "percentComplete": 100},
            "outputVariables": {"Application": "shop", "EnvironmentName": "shop-green"},
        })
    );
}
