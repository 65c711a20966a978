//! The check-config binary under the real lambda_runtime, against a local Runtime API, with its
//! CodePipeline calls landing on local-aws and its S3 reads on moto.

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use beanswap_core::{Action, FailureKind, Job};
use serde_json::{json, Value};
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;
use test_support::{job_event, LocalAws};

const BUCKET: &str = "codepipeline-artifacts";
const KEY: &str = "shop-pipeline/BuildOutpu/abc123";

/// The function as its role from pipeline-template.json, held to it by local-aws (its own calls are
/// CodePipeline's job results). Its one S3 call reads the input artifact with the job's artifact
/// credentials, not its role, straight from moto (or from an endpoint that does not answer).
async fn start(local: &LocalAws, s3_endpoint: &str) -> Function {
    let identities = test_support::identities::BedIdentities::load();
    local.set_identities(Some(test_support::identities::parse(&identities.spec)));
    test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_check-config")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", s3_endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", identities.key_of("check-config")),
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
    let s3 = test_support::clients::s3(&moto.endpoint());
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

/// A build output of `entries` files of 4 MiB each (incompressible, Stored) plus a Procfile.
fn big_zip(entries: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer.start_file("Procfile", stored).unwrap();
    writer.write_all(b"web: ./server\n").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut block = vec![0u8; 4 * 1024 * 1024];
    for i in 0..entries {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        writer
            .start_file(format!("static/asset_{i}.bin"), stored)
            .unwrap();
        writer.write_all(&block).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn a_build_output_many_times_any_buffer_is_checked_from_its_spool_file() {
    let local = test_support::local_aws().await;
    let moto = Moto::start().await;
    let s3 = test_support::clients::s3(&moto.endpoint());
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    // 16 MiB: many HTTP chunks and spool buffers; the zip's central directory is at its very end, so
    // the entries can only be counted once every chunk has reached the spool file in order.
    let zip = big_zip(4);
    assert!(zip.len() > 16 * 1024 * 1024);
    s3.put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(zip))
        .send()
        .await
        .unwrap();
    let mut function = start(&local, &moto.endpoint()).await;

    let event = job_event(r#"{"application":"shop"}"#);
    function.invoke(event.clone()).await.unwrap();
    let (operation, body) = reported(&local, &event);
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    assert_eq!(body["outputVariables"]["ArtifactEntries"], "5", "{body}");
}

#[tokio::test]
async fn an_artifact_over_the_limit_fails_naming_its_size_and_the_limit() {
    let moto = Moto::start().await;
    let s3 = test_support::clients::s3(&moto.endpoint());
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let zip = small_zip();
    let size = zip.len();
    s3.put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(zip))
        .send()
        .await
        .unwrap();
    // In process: the binary's limit is Elastic Beanstalk's 512 MB, too big an object for a test.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(test_support::clients::credentials())
        .load()
        .await;
    let action = check_config::CheckConfig::new(&aws).with_max_artifact_bytes(100);
    let job = Job::from_event(&job_event(r#"{"application":"shop"}"#)).unwrap();
    let params: check_config::Params = serde_json::from_str(r#"{"application":"shop"}"#).unwrap();
    let err = action.run(&job, params, None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert_eq!(
        err.message,
        format!("artifact `BuildOutput` is {size} bytes; the limit is 100 bytes")
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

/// A JSON value that refuses an object with the same key twice (serde_json's `Value` silently keeps
/// the last one, which is how a field named `message` hid a log line's own message).
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = NoDuplicateKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    map.next_value::<NoDuplicateKeys>()?;
                }
                Ok(NoDuplicateKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
                Ok(NoDuplicateKeys)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(NoDuplicateKeys)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The function's log file, parsed: every line must be one JSON object (what CloudWatch parses), with
/// no key twice.
fn json_log_lines(path: &Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            if let Err(e) = serde_json::from_str::<NoDuplicateKeys>(l) {
                panic!(
                    "log line is not JSON without duplicate keys ({e}): {l}\nwhole log:\n{text}"
                );
            }
            let line: Value = serde_json::from_str(l).unwrap();
            assert!(line.is_object(), "log line is not a JSON object: {l}");
            line
        })
        .collect();
    (text, lines)
}

/// Polls the log until a line with `message` for `job` is there (the write races the report).
async fn wait_for_log(path: &Path, job: &str, message: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (text, lines) = json_log_lines(path);
        if let Some(line) = lines
            .iter()
            .find(|l| l["fields"]["message"] == message && l["span"]["job_id"] == job)
        {
            return line.clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no {message:?} line for job {job} in the log:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logs_are_json_lines_carrying_the_job_id_and_never_the_artifact_credentials() {
    let local = test_support::local_aws().await;
    let moto = Moto::start().await;
    let s3 = test_support::clients::s3(&moto.endpoint());
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(small_zip()))
        .send()
        .await
        .unwrap();
    let ok = job_event(r#"{"application":"shop"}"#);
    let ok_id = job_id(&ok);
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("check-config-{ok_id}.log"));
    let _ = std::fs::remove_file(&log);
    // Not held to its role (the other tests here are, through `start`): this one is about what the
    // logs carry, at TRACE, and changes nothing the role decides.
    let mut function = test_support::lambda::Function::start_logging_to(
        Path::new(env!("CARGO_BIN_EXE_check-config")),
        &[
            // What Lambda sets and what switches the runner to JSON logs (set explicitly, not relied on).
            (
                "AWS_LAMBDA_FUNCTION_NAME",
                "beanswap-check-config".to_string(),
            ),
            // The most verbose level, as someone debugging a deployment would set it: the SDK and
            // lambda_runtime log credentials at DEBUG/TRACE unless the runner caps them.
            ("RUST_LOG", "trace".to_string()),
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", moto.endpoint()),
        ],
        Some(&log),
    )
    .await
    .unwrap();

    // Success: the artifact is read with the job's credentials.
    assert_eq!(
        function.invoke(ok.clone()).await.unwrap(),
        Invocation::Response(Value::Null)
    );
    assert_eq!(reported(&local, &ok).0, "PutJobSuccessResult");
    // Failure: the read with those credentials fails (no such key), and the error is logged.
    let mut missing = job_event(r#"{"application":"shop"}"#);
    missing["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]
        ["objectKey"] = json!("gone");
    let missing_id = job_id(&missing);
    assert_eq!(
        function.invoke(missing.clone()).await.unwrap(),
        Invocation::Response(Value::Null)
    );
    assert_failure(&local, &missing, "JobFailed", "could not read artifact");

    let succeeded = wait_for_log(&log, &ok_id, "job succeeded").await;
    assert!(
        succeeded["fields"]["summary"]
            .as_str()
            .unwrap()
            .contains("artifact `BuildOutput` is a zip with 2 entries"),
        "{succeeded}"
    );
    assert_eq!(succeeded["span"]["name"], "job", "{succeeded}");
    assert_eq!(succeeded["level"], "INFO", "{succeeded}");
    let failed = wait_for_log(&log, &missing_id, "job failed").await;
    assert_eq!(failed["fields"]["kind"], "JobFailed", "{failed}");
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert!(
        failed["fields"]["failure"]
            .as_str()
            .unwrap_or_default()
            .starts_with(
                "could not read artifact `BuildOutput` (s3://codepipeline-artifacts/gone)"
            ),
        "{failed}"
    );

    let (text, lines) = json_log_lines(&log);
    // Every line logged inside a job's span (however deep) names that job, one of the two sent.
    let mut in_a_job = 0;
    for line in &lines {
        let spans = line["spans"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for span in spans.iter().filter(|s| s["name"] == "job") {
            let id = span["job_id"].as_str();
            assert!(id == Some(&ok_id) || id == Some(&missing_id), "{line}");
            in_a_job += 1;
        }
    }
    assert!(in_a_job >= 2, "{text}");
    // The artifact credentials of the event appear nowhere, in any field of any line.
    let credentials = &ok["CodePipeline.job"]["data"]["artifactCredentials"];
    for field in ["secretAccessKey", "sessionToken", "accessKeyId"] {
        let secret = credentials[field].as_str().unwrap();
        assert!(
            !text.contains(secret),
            "the log carries the artifact {field} {secret:?}:\n{text}"
        );
    }
    drop(function);
    let _ = std::fs::remove_file(&log);
}
