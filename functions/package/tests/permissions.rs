//! package as its role from pipeline-template.json (PackageFunctionRole), held to it by local-aws and the
//! proxy in front of moto as in `beanswap run`: the paths the pipeline's run never reaches (the template
//! sets no `prune_keep`, and CodePipeline does not re-run a job whose version exists or whose bundle
//! fails processing) pass under the role, and fail as a PermissionError naming the action when it is
//! taken out of the role. crates/cli/tests/permissions.rs points here for these actions.
//!
//! e2e.rs runs the same binary without enforcement: it covers answers the role never lets it reach
//! (another account's bucket, a `bucket` of the user's choice that does not exist).

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use local_aws::beanstalk::Options;
use local_aws::proxy::CountingProxy;
use serde_json::{json, Value};
use test_support::clients;
use test_support::identities::BedIdentities;
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;
use test_support::{job_event, LocalAws};

const ARTIFACTS: &str = "codepipeline-artifacts";
/// Elastic Beanstalk's bucket in the local cloud's account, the one the role may write.
const BUNDLES: &str = "elasticbeanstalk-us-east-1-123456789012";
const ROLE: &str = "PackageFunctionRole";

struct Env {
    local: LocalAws,
    _moto: Moto,
    proxy: CountingProxy,
    identities: BedIdentities,
    /// The administrator's: the test's own setup and checks.
    s3: aws_sdk_s3::Client,
    function: Function,
}

async fn env_with(options: Options) -> Env {
    let (local, moto) = test_support::bed::servers(options).await;
    let proxy = CountingProxy::start(&moto.endpoint()).await.unwrap();
    let s3 = clients::s3(&proxy.endpoint());
    for bucket in [ARTIFACTS, BUNDLES] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    clients::beanstalk(&local.endpoint())
        .create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    let identities = BedIdentities::load();
    test_support::bed::enforce(&local, &proxy, &identities.spec);
    let function = test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_package")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", proxy.endpoint()),
            ("AWS_ACCESS_KEY_ID", identities.key_of("package")),
        ],
    )
    .await;
    Env {
        local,
        _moto: moto,
        proxy,
        identities,
        s3,
        function,
    }
}

impl Env {
    /// The role as the template has it, or without `action`.
    fn role(&self, without: Option<&str>) {
        let spec = match without {
            Some(action) => self.identities.without(ROLE, action),
            None => self.identities.spec.clone(),
        };
        test_support::bed::enforce(&self.local, &self.proxy, &spec);
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(ARTIFACTS)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
    }

    /// A job as the pipeline hands it over: the local account, artifact credentials of CodePipeline's
    /// role, the artifact at `key`.
    fn event(&self, params: &str, key: &str) -> Value {
        let mut event = job_event(params);
        let job = &mut event["CodePipeline.job"];
        job["accountId"] = json!(local_aws::beanstalk::ACCOUNT);
        job["data"]["inputArtifacts"][0]["location"]["s3Location"]["objectKey"] = json!(key);
        job["data"]["artifactCredentials"]["accessKeyId"] =
            json!(self.identities.artifact_key.clone().unwrap());
        event
    }

    /// Invokes the function: (operation reported, its request body).
    async fn run(&mut self, event: &Value) -> (String, Value) {
        assert_eq!(
            self.function.invoke(event.clone()).await.unwrap(),
            Invocation::Response(Value::Null)
        );
        let id = event["CodePipeline.job"]["id"].as_str().unwrap();
        let r = self
            .local
            .job_results()
            .into_iter()
            .rfind(|r| r.job_id == id)
            .expect("a report");
        (r.operation, r.request)
    }

    async fn succeeds(&mut self, event: &Value) -> String {
        let (operation, body) = self.run(event).await;
        assert_eq!(operation, "PutJobSuccessResult", "{body}");
        body["executionDetails"]["summary"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Fails as a PermissionError naming `action`; the message.
    async fn refused(&mut self, event: &Value, action: &str) -> String {
        let (operation, body) = self.run(event).await;
        assert_eq!(operation, "PutJobFailureResult", "{body}");
        assert_eq!(body["failureDetails"]["type"], "PermissionError", "{body}");
        let message = body["failureDetails"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(action), "{action} not named: {message}");
        message
    }
}

fn fresh_id(event: &Value, n: u32) -> Value {
    let mut e = event.clone();
    e["CodePipeline.job"]["id"] = json!(format!("{n:08x}-abcd-4bcd-8bcd-000000000000"));
    e
}

/// A retried job finds its version made and compares the stored bundle (HeadObject, authorised as
/// s3:GetObject); when the bundle is gone, S3 says so with a 404 only to a caller with s3:ListBucket.
#[tokio::test]
async fn a_retried_job_reads_the_stored_bundle_with_get_object_and_list_bucket() {
    let mut env = env_with(Options::default()).await;
    let key = "p/B/one";
    env.put(key, test_support::app_bundle("v1", &[])).await;
    let first = env.event(r#"{"application":"shop"}"#, key);
    let made = env.succeeds(&first).await;
    assert!(made.contains("copied server-side"), "{made}");
    let again = env.succeeds(&fresh_id(&first, 1)).await;
    assert!(again.contains("already exists with this bundle"), "{again}");

    env.role(Some("s3:GetObject"));
    env.refused(&fresh_id(&first, 2), "s3:GetObject").await;

    // The bundle is gone: with the role's s3:ListBucket it is a 404 (a conflict naming the missing
    // object); without it, a 403 the function names as the refusal it is.
    env.s3
        .delete_object()
        .bucket(BUNDLES)
        .key("shop/4f2a9c1e0b7d-one.zip")
        .send()
        .await
        .unwrap();
    env.role(None);
    let (_, body) = env.run(&fresh_id(&first, 3)).await;
    assert!(
        body["failureDetails"]["message"]
            .as_str()
            .unwrap()
            .contains("the bundle object is missing"),
        "{body}"
    );
    env.role(Some("s3:ListBucket"));
    env.refused(&fresh_id(&first, 4), "s3:ListBucket").await;
}

/// At the account's version limit with `prune_keep`, package lists the environments (versions in use
/// are never pruned) and deletes the oldest unused versions.
#[tokio::test]
async fn pruning_at_the_version_limit_needs_describe_environments_and_delete_application_version() {
    let mut env = env_with(Options {
        max_application_versions: 2,
        ..Options::default()
    })
    .await;
    for key in ["p/B/one", "p/B/two", "p/B/three"] {
        env.put(key, test_support::app_bundle(key, &[])).await;
    }
    for (i, key) in ["p/B/one", "p/B/two"].iter().enumerate() {
        let e = env.event(r#"{"application":"shop"}"#, key);
        env.succeeds(&fresh_id(&e, 10 + i as u32)).await;
    }
    let third = env.event(r#"{"application":"shop","prune_keep":1}"#, "p/B/three");
    env.role(Some("elasticbeanstalk:DescribeEnvironments"));
    env.refused(
        &fresh_id(&third, 20),
        "elasticbeanstalk:DescribeEnvironments",
    )
    .await;
    env.role(Some("elasticbeanstalk:DeleteApplicationVersion"));
    env.refused(
        &fresh_id(&third, 21),
        "elasticbeanstalk:DeleteApplicationVersion",
    )
    .await;
    env.role(None);
    let pruned = env.succeeds(&fresh_id(&third, 22)).await;
    assert!(
        pruned.contains("pruned 1 old unused versions of `shop` (4f2a9c1e0b7d-one)"),
        "{pruned}"
    );
}

/// A bundle Elastic Beanstalk cannot process fails the job with the version's events, which the role
/// reads with elasticbeanstalk:DescribeEvents; refused, that is the failure, not a message without them.
#[tokio::test]
async fn a_failed_processing_reads_its_events_with_describe_events() {
    let mut env = env_with(Options {
        // Processing takes update_delay / 2: long enough to break the bundle meanwhile.
        update_delay: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    for (n, (key, without)) in [
        ("p/B/broken", None),
        ("p/B/refused", Some("elasticbeanstalk:DescribeEvents")),
    ]
    .into_iter()
    .enumerate()
    {
        env.role(None);
        env.put(key, test_support::app_bundle(key, &[])).await;
        let first = env.event(r#"{"application":"shop","process":true}"#, key);
        let (_, body) = env.run(&first).await;
        let token = body["continuationToken"]
            .as_str()
            .unwrap_or_else(|| panic!("a continuation token: {body}"))
            .to_string();
        let label = key.rsplit('/').next().unwrap();
        env.s3
            .put_object()
            .bucket(BUNDLES)
            .key(format!("shop/4f2a9c1e0b7d-{label}.zip"))
            .body(ByteStream::from_static(b"not a zip any more"))
            .send()
            .await
            .unwrap();
        let mut next = fresh_id(&first, 30 + n as u32);
        next["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
        match without {
            None => {
                let (_, body) = env.run(&next).await;
                assert_eq!(body["failureDetails"]["type"], "JobFailed", "{body}");
                assert!(
                    body["failureDetails"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("ERROR Failed to process application version"),
                    "{body}"
                );
            }
            Some(action) => {
                env.role(Some(action));
                let message = env.refused(&next, action).await;
                assert!(message.contains("could not be processed"), "{message}");
            }
        }
    }
}
