//! The runner and artifact store against real SDK clients: CodePipeline on local-aws, S3 on moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;
use beanswap_core::artifacts::ArtifactStore;
use beanswap_core::report::{Report, Reporter};
use beanswap_core::runner::Runner;
use beanswap_core::{Action, ActionError, FailureKind, Job, Outcome, UserParameters};
use serde::{Deserialize, Serialize};
use serde_json::json;
use test_support::{job_event, moto::Moto, LocalAws};

fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "test",
            )),
        )
        .build()
}

fn reporter(local: &LocalAws) -> Reporter {
    Reporter::new(aws_sdk_codepipeline::Client::new(&sdk_config(
        &local.endpoint(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitParams {
    #[serde(default)]
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
}
impl UserParameters for WaitParams {
    const EXAMPLE: &'static str = r#"{"steps":3}"#;
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Progress {
    done: u32,
}

/// Counts to `steps`, one per invocation, like an action waiting for an environment.
struct Counter;
impl Action for Counter {
    type Params = WaitParams;
    type State = Progress;
    async fn run(
        &self,
        _job: &Job,
        p: WaitParams,
        state: Option<Progress>,
    ) -> Result<Outcome<Progress>, ActionError> {
        tokio::time::sleep(Duration::from_millis(p.sleep_ms)).await;
        let done = state.map_or(0, |s| s.done) + 1;
        if done >= p.steps {
            return Ok(Outcome::succeeded(format!("counted to {done}"))
                .with_variable("Count", done.to_string()));
        }
        Ok(Outcome::InProgress {
            state: Progress { done },
            summary: format!("counted {done} of {}", p.steps),
            percent: (done * 100 / p.steps) as u8,
        })
    }
}

#[tokio::test]
async fn continuation_tokens_carry_state_and_variables_come_only_at_the_end() {
    let local = test_support::local_aws().await;
    let runner = Runner::new(Counter, reporter(&local));
    let mut event = job_event(r#"{"steps":3}"#);
    let mut tokens = vec![];
    loop {
        match runner.handle(event.clone(), None).await.unwrap() {
            Report::Success {
                continuation_token: Some(token),
                percent,
                variables,
                ..
            } => {
                assert!(variables.is_empty());
                assert!(percent.unwrap() < 100);
                event["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
                tokens.push(token);
            }
            Report::Success {
                continuation_token: None,
                variables,
                summary,
                ..
            } => {
                assert_eq!(summary, "counted to 3");
                assert_eq!(variables.get("Count").map(String::as_str), Some("3"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(tokens, vec![r#"v1:{"done":1}"#, r#"v1:{"done":2}"#]);
    let results = local.job_results();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].request["continuationToken"], r#"v1:{"done":1}"#);
    assert_eq!(
        results[0].request["executionDetails"]["percentComplete"],
        33
    );
    assert!(results[0].request.get("outputVariables").is_none());
    assert_eq!(results[2].request["outputVariables"], json!({"Count": "3"}));
}

#[tokio::test]
async fn an_action_that_would_outlive_the_lambda_reports_before_the_deadline() {
    let local = test_support::local_aws().await;
    let runner = Runner::new(Counter, reporter(&local));
    let event = job_event(r#"{"steps":1,"sleep_ms":60000}"#);
    // 10 s are kept back for reporting, so 10.5 s of Lambda time leaves the action half a second.
    let deadline = SystemTime::now() + Duration::from_millis(10_500);
    let report = runner.handle(event, Some(deadline)).await.unwrap();
    let Report::Failure { kind, message } = report else {
        panic!("expected a failure, got {report:?}")
    };
    assert_eq!(kind, FailureKind::JobFailed);
    assert!(
        message.contains("did not finish within the Lambda time limit"),
        "{message}"
    );
    assert_eq!(local.job_results()[0].operation, "PutJobFailureResult");
}

#[tokio::test]
async fn long_failure_messages_are_cut_to_what_codepipeline_accepts() {
    struct Verbose;
    impl Action for Verbose {
        type Params = WaitParams;
        type State = ();
        async fn run(
            &self,
            _: &Job,
            _: WaitParams,
            _: Option<()>,
        ) -> Result<Outcome<()>, ActionError> {
            Err(ActionError::failed(
                "Beanstalk event: health degraded. ".repeat(500),
            ))
        }
    }
    let local = test_support::local_aws().await;
    let runner = Runner::new(Verbose, reporter(&local));
    runner.handle(job_event("{}"), None).await.unwrap();
    let message = local.job_results()[0].request["failureDetails"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(message.chars().count(), 5000);
    assert!(message.ends_with("…[truncated]"));
}

#[tokio::test]
async fn artifacts_are_read_and_written_with_job_credentials_and_the_pipeline_kms_key() {
    let moto = Moto::start().await;
    let base = sdk_config(&moto.endpoint());
    let event = job_event("{}");
    let job = Job::from_event(&event).unwrap();
    let store = ArtifactStore::for_job(&base, &job);
    let input = &job.input_artifacts[0];
    let output = &job.output_artifacts[0];
    store
        .client()
        .create_bucket()
        .bucket(&input.bucket)
        .send()
        .await
        .unwrap();

    store.write(output, b"bundle bytes".to_vec()).await.unwrap();
    let head = store
        .client()
        .head_object()
        .bucket(&output.bucket)
        .key(&output.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), job.encryption_key.as_deref());
    // Read back through the spool file, as every input artifact is.
    let spooled = store.spool(output, 1024).await.unwrap();
    let mut body = vec![];
    spooled.reader().unwrap().read_to_end(&mut body).unwrap();
    assert_eq!(body, b"bundle bytes");
    assert_eq!(spooled.size, 12);

    let err = store.spool(output, 4).await.unwrap_err().to_string();
    assert!(
        err.contains("artifact `AppBundle` is 12 bytes; the limit is 4 bytes"),
        "{err}"
    );
    let err = store.read_zip(output, 1024).await.unwrap_err().to_string();
    assert!(
        err.contains("artifact `AppBundle` is not a zip file"),
        "{err}"
    );
    let err = store.spool(input, 1024).await.unwrap_err().to_string();
    assert!(err.contains("could not read artifact `BuildOutput` (s3://codepipeline-artifacts/shop-pipeline/BuildOutpu/abc123)"), "{err}");
}
