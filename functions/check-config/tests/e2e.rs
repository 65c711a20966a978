//! The check-config binary under the real lambda_runtime, against a local Runtime API, with its
//! CodePipeline calls landing on local-aws and its S3 reads on moto.

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;
use test_support::{job_event, LocalAws};

const BUCKET: &str = "codepipeline-artifacts";
const KEY: &str = "shop-pipeline/BuildOutpu/abc123";

async fn start(local: &LocalAws, s3_endpoint: &str) -> Function {
    test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_check-config")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", s3_endpoint.to_string()),
        ],
    )
    .await
}

fn job_id(event: &Value) -> String {
    event["CodePipeline.job"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The one result local-aws recorded for this job: (operation, request body).
fn reported(local: &LocalAws, event: &Value) -> (String, Value) {
    let id = job_id(event);
    let mut results: Vec<_> = local
        .job_results()
        .into_iter()
        .filter(|r| r.job_id == id)
        .collect();
    assert_eq!(
        results.len(),
        1,
        "expected exactly one report for job {id}: {results:?}"
    );
    let r = results.remove(0);
    (r.operation, r.request)
}

fn assert_failure(local: &LocalAws, event: &Value, kind: &str, message_part: &str) {
    let (operation, body) = reported(local, event);
    assert_eq!(operation, "PutJobFailureResult", "{body}");
    assert_eq!(body["failureDetails"]["type"], kind, "{body}");
    let message = body["failureDetails"]["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "expected {message_part:?} in {message:?}"
    );
}

async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn small_zip() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    writer.start_file("Procfile", options).unwrap();
    writer.write_all(b"web: ./server\n").unwrap();
    writer.start_file("server", options).unwrap();
    writer.write_all(b"#!/bin/sh\n").unwrap();
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn reads_the_artifact_with_job_credentials_and_reports_variables() {
    let local = test_support::local_aws().await;
    let moto = Moto::start().await;
    let s3 = s3_client(&moto.endpoint()).await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(small_zip()))
        .send()
        .await
        .unwrap();
    let mut function = start(&local, &moto.endpoint()).await;

    let event = job_event(r#"{"application":"shop"}"#);
    assert_eq!(
        function.invoke(event.clone()).await.unwrap(),
        Invocation::Response(Value::Null)
    );
    let (operation, body) = reported(&local, &event);
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_eq!(
        body["outputVariables"],
        json!({"Application": "shop", "ArtifactEntries": "2"})
    );
    // What the crate declares (and the pipeline template test relies on) is what a run really sets.
    let set: Vec<&str> = body["outputVariables"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(set, check_config::OUTPUT_VARIABLES);
    assert!(body.get("continuationToken").is_none(), "{body}");
    let summary = body["executionDetails"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("artifact `BuildOutput` is a zip with 2 entries"),
        "{summary}"
    );

    // An artifact that is not in the bucket: the failure names the artifact, bucket and key.
    let mut missing = job_event(r#"{"application":"shop"}"#);
    missing["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]
        ["objectKey"] = json!("gone");
    function.invoke(missing.clone()).await.unwrap();
    assert_failure(
        &local,
        &missing,
        "JobFailed",
        "could not read artifact `BuildOutput` (s3://codepipeline-artifacts/gone)",
    );

    // An artifact that is not a zip.
    s3.put_object()
        .bucket(BUCKET)
        .key("text")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let mut not_zip = job_event(r#"{"application":"shop"}"#);
    not_zip["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]
        ["objectKey"] = json!("text");
    function.invoke(not_zip.clone()).await.unwrap();
    assert_failure(
        &local,
        &not_zip,
        "ConfigurationError",
        "artifact `BuildOutput` is not a zip file",
    );
}

#[tokio::test]
async fn every_bad_input_and_crash_ends_in_a_failure_report_naming_the_cause() {
    let local = test_support::local_aws().await;
    // No S3 is needed: none of these gets as far as reading an artifact.
    let mut function = start(&local, "http://127.0.0.1:9").await;

    let mut malformed = job_event("{}");
    malformed["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"] =
        json!("s3://somewhere");
    let typo = job_event(r#"{"aplication":"shop"}"#);
    let not_json = job_event("application=shop");
    let panics = job_event(r#"{"application":"shop","panic":true}"#);
    let fails = job_event(r#"{"application":"shop","fail_with":"the smoke test got HTTP 502"}"#);
    let mut bad_token = job_event(r#"{"application":"shop"}"#);
    bad_token["CodePipeline.job"]["data"]["continuationToken"] = json!("v0:whatever");

    let cases = [
        (
            &malformed,
            "ConfigurationError",
            "malformed at `CodePipeline.job.data.inputArtifacts[0].location`",
        ),
        (
            &typo,
            "ConfigurationError",
            "UserParameters field `aplication`: unknown field `aplication`, expected one of",
        ),
        (
            &not_json,
            "ConfigurationError",
            "UserParameters is not valid JSON",
        ),
        (
            &panics,
            "JobFailed",
            "the action panicked: check-config was asked to panic",
        ),
        (&fails, "JobFailed", "the smoke test got HTTP 502"),
        (
            &bad_token,
            "JobFailed",
            "written by another version of beanswap",
        ),
    ];
    for (event, kind, message) in cases {
        // The invocation itself succeeds: the failure went to CodePipeline, which is what matters.
        assert_eq!(
            function.invoke(event.clone()).await.unwrap(),
            Invocation::Response(Value::Null)
        );
        assert_failure(&local, event, kind, message);
    }
    // The function is still alive after a panic and serves the next job.
    let ok = job_event(r#"{"application":"shop"}"#);
    let mut ok_no_artifacts = ok.clone();
    ok_no_artifacts["CodePipeline.job"]["data"]["inputArtifacts"] = json!([]);
    function.invoke(ok_no_artifacts.clone()).await.unwrap();
    assert_eq!(reported(&local, &ok_no_artifacts).0, "PutJobSuccessResult");
}

#[tokio::test]
async fn the_invocation_fails_only_when_nothing_could_be_reported() {
    let local = test_support::local_aws().await;
    let mut function = start(&local, "http://127.0.0.1:9").await;

    // No job id: there is nobody to report to.
    let Invocation::Error(error) = function
        .invoke(json!({"CodePipeline.job": {"data": {}}}))
        .await
        .unwrap()
    else {
        panic!("an event without a job id must fail the invocation");
    };
    assert!(error.to_string().contains("no job id"), "{error}");

    // A job that already has its final result: CodePipeline refuses the second report.
    let mut event = job_event(r#"{"application":"shop"}"#);
    event["CodePipeline.job"]["data"]["inputArtifacts"] = json!([]);
    assert_eq!(
        function.invoke(event.clone()).await.unwrap(),
        Invocation::Response(Value::Null)
    );
    let Invocation::Error(error) = function.invoke(event.clone()).await.unwrap() else {
        panic!("a refused report must fail the invocation");
    };
    assert!(
        error.to_string().contains("InvalidJobStateException"),
        "{error}"
    );
    assert_eq!(reported(&local, &event).0, "PutJobSuccessResult");
}
