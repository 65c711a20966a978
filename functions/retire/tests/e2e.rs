//! The retire binary under the real lambda_runtime against a local Runtime API: Elastic Beanstalk and the
//! CodePipeline job API on local-aws (environments run examples/app for real), S3 and Route 53 on moto.
//! Every result is read back from what local-aws recorded for the job.

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, S3Location, Tag};
use beanswap_core::beanstalk::{TAG_APPLICATION, TAG_OUT_OF_SERVICE_SINCE};
use beanswap_core::retire::format_time;
use local_aws::beanstalk::Options;
use local_aws::faults::{Faults, Throttle};
use local_aws::lambda::{Function, Invocation};
use local_aws::proxy::CountingProxy;
use local_aws::LocalAws;
use serde_json::{json, Value};
use test_support::clients;
use test_support::identities::BedIdentities;
use test_support::moto::Moto;

use test_support::SOLUTION_STACK as STACK;
/// Elastic Beanstalk's own bucket, where package puts bundles: the only one whose objects retire's role
/// may delete.
const BUNDLES: &str = "elasticbeanstalk-us-east-1-123456789012";
const PROD: &str = "shop-prod";

struct Bed {
    local: LocalAws,
    _moto: Moto,
    /// The function reaches S3 and Route 53 through this, so its calls there are counted too.
    proxy: CountingProxy,
    /// The roles from pipeline-template.json; retire runs as its own.
    identities: BedIdentities,
    /// The administrator's clients: the test's own setup and checks.
    eb: aws_sdk_elasticbeanstalk::Client,
    s3: aws_sdk_s3::Client,
    route53: aws_sdk_route53::Client,
}

/// How one job ended after all its invocations.
struct Job {
    /// Every result reported for it, in order (continuations first, the final one last).
    results: Vec<Value>,
    operation: String,
}

impl Job {
    fn last(&self) -> &Value {
        self.results.last().unwrap()
    }
    fn succeeded(&self) -> bool {
        self.operation == "PutJobSuccessResult"
    }
    fn summary(&self) -> String {
        self.last()["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn variables(&self) -> BTreeMap<String, String> {
        assert!(self.succeeded(), "expected success: {}", self.last());
        serde_json::from_value(self.last()["outputVariables"].clone())
            .unwrap_or_else(|e| panic!("no output variables ({e}): {}", self.last()))
    }
    fn failure(&self, kind: &str) -> String {
        assert_eq!(
            self.operation,
            "PutJobFailureResult",
            "expected a failure: {}",
            self.last()
        );
        assert_eq!(
            self.last()["failureDetails"]["type"],
            kind,
            "{}",
            self.last()
        );
        self.last()["failureDetails"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Bed {
    async fn start(options: Options) -> Bed {
        let (local, moto) = test_support::bed::servers(options).await;
        let eb = clients::beanstalk(&local.endpoint());
        let s3 = clients::s3(&moto.endpoint());
        let route53 = clients::route53(&moto.endpoint());
        s3.create_bucket().bucket(BUNDLES).send().await.unwrap();
        eb.create_application()
            .application_name("shop")
            .send()
            .await
            .unwrap();
        let proxy = CountingProxy::start(&moto.endpoint()).await.unwrap();
        // From here on retire calls AWS as its role from pipeline-template.json; the clients above are
        // the administrator's (the test's own setup).
        let identities = BedIdentities::load();
        test_support::bed::enforce(&local, &proxy, &identities.spec);
        Bed {
            local,
            _moto: moto,
            proxy,
            identities,
            eb,
            s3,
            route53,
        }
    }

    async fn function(&self) -> Function {
        self.function_with_attempts(None).await
    }

    /// The function with `AWS_MAX_ATTEMPTS` set, e.g. 1: every throttled call then reaches retire.
    async fn function_with_attempts(&self, attempts: Option<u32>) -> Function {
        let mut env = vec![
            ("AWS_ENDPOINT_URL_CODEPIPELINE", self.local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", self.local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", self.proxy.endpoint()),
            ("AWS_ENDPOINT_URL_ROUTE_53", self.proxy.endpoint()),
            ("AWS_ACCESS_KEY_ID", self.identities.key_of("retire")),
        ];
        if let Some(n) = attempts {
            env.push(("AWS_MAX_ATTEMPTS", n.to_string()));
        }
        test_support::lambda::start(Path::new(env!("CARGO_BIN_EXE_retire")), &env).await
    }

    /// One invocation of a fresh job; what it reported.
    async fn invoke_once(&self, function: &mut Function, user_parameters: &str) -> Value {
        let event = test_support::job_event(user_parameters);
        let id = event["CodePipeline.job"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        function.invoke(event).await.unwrap();
        self.local
            .job_results()
            .into_iter()
            .find(|r| r.job_id == id)
            .unwrap()
            .request
    }

    /// A version whose bundle is `bundle` at `shop/<key>.zip`.
    async fn version_at(&self, label: &str, key: &str, bundle: Vec<u8>) {
        let key = format!("shop/{key}.zip");
        self.s3
            .put_object()
            .bucket(BUNDLES)
            .key(&key)
            .body(bundle.into())
            .send()
            .await
            .unwrap();
        self.eb
            .create_application_version()
            .application_name("shop")
            .version_label(label)
            .source_bundle(S3Location::builder().s3_bucket(BUNDLES).s3_key(key).build())
            .send()
            .await
            .unwrap();
    }

    async fn version(&self, label: &str) {
        self.version_at(label, label, test_support::app_bundle(label, &[]))
            .await;
    }

    /// Starts an environment of `shop` tagged as beanswap would (unless `app_tag` is `None`), with its
    /// out-of-service tag `out_since` ago when given. Returns its id.
    async fn launch(
        &self,
        name: &str,
        prefix: &str,
        label: &str,
        app_tag: Option<&str>,
        out_since: Option<Duration>,
    ) -> String {
        let mut request = self
            .eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK);
        if let Some(app) = app_tag {
            request = request.tags(Tag::builder().key(TAG_APPLICATION).value(app).build());
        }
        if let Some(ago) = out_since {
            request = request.tags(
                Tag::builder()
                    .key(TAG_OUT_OF_SERVICE_SINCE)
                    .value(format_time(SystemTime::now() - ago))
                    .build(),
            );
        }
        let out = request.send().await.unwrap();
        out.environment_id().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> String {
        let out = self
            .eb
            .describe_environments()
            .environment_ids(id)
            .send()
            .await
            .unwrap();
        out.environments()[0].status().unwrap().as_str().to_string()
    }

    /// Polls until every environment is in one of `statuses`.
    async fn wait_all(&self, ids: &[&str], statuses: &[&str]) {
        let started = Instant::now();
        for id in ids {
            loop {
                let status = self.status(id).await;
                if statuses.contains(&status.as_str()) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{id} is {status}, never {statuses:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn calls(&self, operation: &str) -> u64 {
        self.local
            .call_counts()
            .get(&format!("ElasticBeanstalk.{operation}"))
            .copied()
            .unwrap_or(0)
    }

    /// Every call so far per `Service.Operation`: Beanstalk and CodePipeline on local-aws, S3 and
    /// Route 53 through the proxy (the function's only; the test's own setup goes to moto directly).
    fn all_calls(&self) -> BTreeMap<String, u64> {
        let mut all = self.local.call_counts();
        all.extend(self.proxy.counts());
        all
    }

    /// Runs one job to its end as CodePipeline would: while the action answers with a continuation
    /// token, it is invoked again (a new job id carrying the token) after `pause`. At most `max` times.
    async fn drive(
        &self,
        function: &mut Function,
        user_parameters: &str,
        pause: Duration,
        max: usize,
    ) -> Job {
        let mut results = vec![];
        let mut token: Option<String> = None;
        for _ in 0..max {
            let mut event = test_support::job_event(user_parameters);
            if let Some(t) = &token {
                tokio::time::sleep(pause).await;
                event["CodePipeline.job"]["data"]["continuationToken"] = json!(t);
            }
            let id = event["CodePipeline.job"]["id"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                function.invoke(event).await.unwrap(),
                Invocation::Response(Value::Null)
            );
            let mine: Vec<_> = self
                .local
                .job_results()
                .into_iter()
                .filter(|r| r.job_id == id)
                .collect();
            assert_eq!(mine.len(), 1, "one report per invocation: {mine:?}");
            let result = mine.into_iter().next().unwrap();
            token = result.request["continuationToken"]
                .as_str()
                .map(str::to_string);
            results.push(result.request);
            if token.is_none() {
                return Job {
                    results,
                    operation: result.operation,
                };
            }
        }
        panic!("the job did not finish within {max} invocations: {results:?}");
    }

    async fn option(&self, env_name: &str, namespace: &str, option: &str) -> Option<String> {
        let out = self
            .eb
            .describe_configuration_settings()
            .application_name("shop")
            .environment_name(env_name)
            .send()
            .await
            .unwrap();
        out.configuration_settings()[0]
            .option_settings()
            .iter()
            .find(|o| o.namespace() == Some(namespace) && o.option_name() == Some(option))
            .and_then(|o| o.value().map(str::to_string))
    }

    async fn version_labels(&self) -> Vec<String> {
        let mut labels = vec![];
        let mut token = None;
        loop {
            let page = self
                .eb
                .describe_application_versions()
                .application_name("shop")
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            labels.extend(
                page.application_versions()
                    .iter()
                    .map(|v| v.version_label().unwrap().to_string()),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return labels;
            }
        }
    }

    async fn bundle_exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(BUNDLES)
            .key(format!("shop/{key}.zip"))
            .send()
            .await
            .is_ok()
    }
}

/// Calls made between two snapshots of [`Bed::all_calls`], per operation.
fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn hours(h: u64) -> Option<Duration> {
    Some(Duration::from_secs(h * 3600))
}

/// The environment kept for rollback is often busy for a moment when retire runs right after swap
/// (swap's tag on it is an environment update): it is scaled down once Ready, the job going on
/// meanwhile, not left at full size until the next deployment.
#[tokio::test]
async fn a_kept_environment_busy_for_a_moment_is_scaled_down_once_ready() {
    let bed = Bed::start(Options {
        update_delay: Duration::from_secs(3),
        ..Options::default()
    })
    .await;
    for v in ["v1", "v2"] {
        bed.version(v).await;
    }
    let app = Some("shop");
    let live = bed.launch("shop-live", PROD, "v2", app, None).await;
    let kept = bed.launch("shop-v1", "shop-v1", "v1", app, hours(1)).await;
    bed.wait_all(&[&*live, &*kept], &["Ready"]).await;
    bed.eb
        .update_environment()
        .environment_id(&kept)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("COLOR")
                .value("blue")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bed.status(&kept).await, "Updating");

    let mut function = bed.function().await;
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":1,"grace_minutes":10,"scale_down_kept":{"min":1,"max":1}}"#;
    let report = bed.invoke_once(&mut function, params).await;
    assert!(report["continuationToken"].is_string(), "{report}");
    let summary = report["executionDetails"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("not scaled: Updating (scaled once it is Ready)"),
        "{summary}"
    );
    assert_eq!(bed.calls("UpdateEnvironment"), 1, "the test's own update");

    bed.wait_all(&[&*kept], &["Ready"]).await;
    let report = bed.invoke_once(&mut function, params).await;
    assert!(report["continuationToken"].is_null(), "{report}");
    let summary = report["executionDetails"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("scaled to MinSize 1, MaxSize 1"),
        "{summary}"
    );
    assert_eq!(bed.calls("UpdateEnvironment"), 2);
}

#[tokio::test]
async fn keeps_the_newest_terminates_the_older_and_never_touches_production() {
    // Updates take a while here, so an environment caught mid-update stays Updating during the run:
    // it is waited for (busy for a moment: the job continues), never forced.
    let bed = Bed::start(Options {
        update_delay: Duration::from_secs(30),
        ..Options::default()
    })
    .await;
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        bed.version(v).await;
    }
    let app = Some("shop");
    // Production, mis-tagged as out of service for ten days: it must still never be touched.
    let live = bed.launch("shop-live", PROD, "v5", app, hours(240)).await;
    let v1 = bed.launch("shop-v1", "shop-v1", "v1", app, hours(3)).await;
    let v2 = bed.launch("shop-v2", "shop-v2", "v2", app, hours(2)).await;
    let v3 = bed.launch("shop-v3", "shop-v3", "v3", app, hours(1)).await;
    // Not beanswap's, and oldest of all.
    let other = bed
        .launch("shop-manual", "shop-manual", "v4", None, hours(48))
        .await;
    // Old and beanswap's, but in the middle of an update: skipped, not forced.
    let busy = bed
        .launch("shop-busy", "shop-busy", "v4", app, hours(4))
        .await;
    let all = [&*live, &*v1, &*v2, &*v3, &*other, &*busy];
    bed.wait_all(&all, &["Ready"]).await;
    bed.eb
        .update_environment()
        .environment_id(&busy)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("COLOR")
                .value("blue")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bed.status(&busy).await, "Updating");

    let mut function = bed.function().await;
    let before = bed.all_calls();
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":1,"grace_minutes":10,"scale_down_kept":{"min":1,"max":1}}"#;
    let report = bed.invoke_once(&mut function, params).await;
    let after = bed.all_calls();

    // The busy one keeps the job going (looked at again in a moment); everything else is done.
    assert!(report["continuationToken"].is_string(), "{report}");
    assert!(report.get("outputVariables").is_none(), "{report}");
    let summary = report["executionDetails"]["summary"].as_str().unwrap();
    for part in [
        "Live, untouched: shop-live (holds the production CNAME shop-prod.us-east-1.elasticbeanstalk.com)",
        "Terminated: shop-v1; shop-v2.",
        "Kept for rollback: shop-v3 (out of service since ",
        "scaled to MinSize 1, MaxSize 1",
        "shop-manual (not tagged beanswap:application for this application)",
        "shop-busy (Updating: busy for a moment, terminated once it is Ready)",
    ] {
        assert!(summary.contains(part), "expected {part:?} in {summary}");
    }
    bed.wait_all(&[&v1, &v2], &["Terminating", "Terminated"])
        .await;
    assert_eq!(bed.status(&live).await, "Ready");
    assert_eq!(bed.status(&other).await, "Ready");
    assert_eq!(bed.status(&busy).await, "Updating");
    assert_ne!(bed.status(&v3).await, "Terminated");
    for option in ["MinSize", "MaxSize"] {
        assert_eq!(
            bed.option("shop-v3", "aws:autoscaling:asg", option)
                .await
                .as_deref(),
            Some("1"),
            "{option}"
        );
    }
    // Production still answers through the router.
    let served = reqwest::Client::new()
        .get(format!("{}/version", bed.local.router_endpoint()))
        .header("host", "shop-prod.us-east-1.elasticbeanstalk.com")
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), "v5\n");

    // What a run costs, per operation.
    let delta = calls_between(&before, &after);
    eprintln!("API calls for one retire run: {delta:?}");
    let expected: BTreeMap<String, u64> = [
        // One listing, then one re-check per termination.
        ("ElasticBeanstalk.DescribeEnvironments", 3),
        // One per environment.
        ("ElasticBeanstalk.ListTagsForResource", 6),
        ("ElasticBeanstalk.DescribeConfigurationSettings", 1),
        // One per environment due: has it gone idle?
        ("ElasticBeanstalk.DescribeEnvironmentHealth", 2),
        ("ElasticBeanstalk.UpdateEnvironment", 1),
        ("ElasticBeanstalk.TerminateEnvironment", 2),
        ("CodePipeline.PutJobSuccessResult", 1),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_string(), n))
    .collect();
    assert_eq!(delta, expected);

    // Run again (as a retried or later job would): nothing more is terminated and the kept one is not
    // updated again.
    let again = bed.invoke_once(&mut function, params).await;
    let again = again["executionDetails"]["summary"].as_str().unwrap();
    assert!(again.contains("Terminated: none."), "{again}");
    assert!(again.contains("already at MinSize 1, MaxSize 1"), "{again}");
    assert_eq!(bed.calls("TerminateEnvironment"), 2);
    assert_eq!(
        bed.calls("UpdateEnvironment"),
        2,
        "the test's own update plus one scale-down"
    );
}

#[tokio::test]
async fn the_grace_period_is_waited_out_with_continuation_tokens() {
    let bed = Bed::start(Options::default()).await;
    bed.version("v1").await;
    bed.version("v2").await;
    let live = bed
        .launch("shop-live", PROD, "v2", Some("shop"), None)
        .await;
    // Swapped out 57 seconds ago; the grace period is a minute, so about 3 seconds are left. The tag
    // holds whole seconds (as beanswap writes it), so the grace period ends a minute after the
    // truncated time, up to a second before `now - 57 s + 60 s`.
    let swapped_out = SystemTime::now() - Duration::from_secs(57);
    let whole = swapped_out
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let grace_ends = SystemTime::UNIX_EPOCH + Duration::from_secs(whole + 60);
    let old = bed
        .launch(
            "shop-old",
            "shop-old",
            "v1",
            Some("shop"),
            Some(Duration::from_secs(57)),
        )
        .await;
    bed.wait_all(&[&live, &old], &["Ready"]).await;

    // AWS throttles Beanstalk often: the first TerminateEnvironment is refused, the SDK's retry copes.
    bed.local.set_faults(Faults {
        throttle: vec![Throttle {
            operation: "TerminateEnvironment".into(),
            first: Some(1),
            fraction: None,
        }],
        ..Faults::default()
    });
    let mut function = bed.function().await;
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":0,"grace_seconds":60}"#;
    let job = bed
        .drive(&mut function, params, Duration::from_millis(500), 40)
        .await;

    assert!(job.results.len() >= 2, "{:?}", job.results);
    let first = &job.results[0];
    let token = first["continuationToken"].as_str().unwrap();
    assert!(token.starts_with("v1:"), "{token}");
    assert!(first.get("outputVariables").is_none(), "{first}");
    let waiting = first["executionDetails"]["summary"].as_str().unwrap();
    assert!(
        waiting.contains("Waiting: shop-old (grace period ends "),
        "{waiting}"
    );
    assert!(waiting.contains("Terminated: none."), "{waiting}");
    assert!(
        first["executionDetails"]["percentComplete"]
            .as_u64()
            .unwrap()
            < 100
    );
    // Every invocation answered at once (nothing sleeps in the function): re-invocations waited out
    // the grace period, and the termination began only after it ended.
    let events = bed
        .eb
        .describe_events()
        .environment_id(&old)
        .send()
        .await
        .unwrap();
    let terminating = events
        .events()
        .iter()
        .find(|e| e.message() == Some("terminateEnvironment is starting."))
        .and_then(|e| e.event_date())
        .map(|d| SystemTime::try_from(*d).unwrap())
        .expect("the termination's event");
    assert!(
        terminating >= grace_ends - Duration::from_millis(1),
        "terminated {:?} before the grace period ended",
        grace_ends.duration_since(terminating).unwrap_or_default()
    );
    assert_eq!(job.variables()["Terminated"], "shop-old");
    assert_eq!(
        bed.calls("TerminateEnvironment"),
        2,
        "one throttled, one retried"
    );
    bed.wait_all(&[&old], &["Terminating", "Terminated"]).await;
    assert_eq!(bed.status(&live).await, "Ready");
}

#[tokio::test]
async fn a_dry_run_reports_the_same_and_changes_nothing() {
    let bed = Bed::start(Options::default()).await;
    for v in ["v1", "v2", "v3", "v4"] {
        bed.version(v).await;
    }
    let live = bed
        .launch("shop-live", PROD, "v3", Some("shop"), None)
        .await;
    let a = bed
        .launch("shop-a", "shop-a", "v1", Some("shop"), hours(2))
        .await;
    let b = bed
        .launch("shop-b", "shop-b", "v2", Some("shop"), hours(1))
        .await;
    bed.wait_all(&[&live, &a, &b], &["Ready"]).await;

    let mut function = bed.function().await;
    let before = bed.all_calls();
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":1,"grace_minutes":10,"scale_down_kept":{"min":1,"max":1},"prune_versions":{"keep":1,"delete_bundles":true},"dry_run":true}"#;
    let job = bed.drive(&mut function, params, Duration::ZERO, 1).await;
    let after = bed.all_calls();

    let summary = job.summary();
    for part in [
        "Dry run: nothing was changed.",
        "Would terminate: shop-a (out of service since ",
        "Kept for rollback: shop-b (out of service since ",
        ", would scale to MinSize 1, MaxSize 1.",
        "Would prune 0 versions (kept 1 newest, 3 in use): none.",
    ] {
        assert!(summary.contains(part), "expected {part:?} in {summary}");
    }
    assert_eq!(job.variables()["Terminated"], "");
    assert_eq!(job.variables()["Kept"], "shop-b");
    // Only reads: Describe*, List* and the job's report.
    let made = calls_between(&before, &after);
    eprintln!("API calls for a dry run: {made:?}");
    for op in made.keys() {
        let read = ["Describe", "List"]
            .iter()
            .any(|p| op.split('.').nth(1).unwrap_or_default().starts_with(p));
        assert!(
            read || op == "CodePipeline.PutJobSuccessResult",
            "{op} was called: {made:?}"
        );
    }
    for id in [&live, &a, &b] {
        assert_eq!(bed.status(id).await, "Ready");
    }
    assert_eq!(bed.version_labels().await.len(), 4);

    // The CLI's `beanswap retire --dry-run` calls the same function in-process.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(clients::credentials())
        .endpoint_url(bed.local.endpoint())
        .load()
        .await;
    let clients = beanswap_core::retire::exec::Clients::new(&config);
    let settings = beanswap_core::retire::exec::Settings {
        application: "shop".into(),
        production_cname: PROD.into(),
        record: None,
        keep: 0,
        grace: Duration::from_secs(600),
        scale_down_kept: None,
        prune: None,
        dry_run: true,
        dns_ttl: Duration::from_secs(1),
    };
    let report = beanswap_core::retire::exec::retire(&clients, &settings, None)
        .await
        .unwrap();
    let names: Vec<&str> = report
        .plan
        .to_terminate()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["shop-a", "shop-b"]);
    assert!(report.done && report.progress.terminated.is_empty());
    assert_eq!(
        bed.local
            .call_counts()
            .get("ElasticBeanstalk.TerminateEnvironment"),
        before.get("ElasticBeanstalk.TerminateEnvironment")
    );
}

#[tokio::test]
async fn pruning_pages_through_versions_and_leaves_those_in_use() {
    // The region's version limit, scaled down: 130 here stands for AWS's 1000.
    let bed = Bed::start(Options {
        max_application_versions: 130,
        ..Options::default()
    })
    .await;
    // v001..v130, oldest first. v005 runs production (a rollback), v010 the kept environment; v050
    // shares v005's bundle, so deleting v050 must not delete that object.
    for i in 1..=130 {
        let label = format!("v{i:03}");
        match i {
            5 | 10 => bed.version(&label).await,
            50 => {
                bed.version_at(&label, "v005", test_support::app_bundle("v005", &[]))
                    .await
            }
            _ => {
                bed.version_at(&label, &label, b"not deployed".to_vec())
                    .await
            }
        }
    }
    let full = bed
        .eb
        .create_application_version()
        .application_name("shop")
        .version_label("v131")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata::code(&full),
        Some("TooManyApplicationVersionsException")
    );
    let live = bed
        .launch("shop-live", PROD, "v005", Some("shop"), None)
        .await;
    let kept = bed
        .launch("shop-kept", "shop-kept", "v010", Some("shop"), hours(1))
        .await;
    bed.wait_all(&[&live, &kept], &["Ready"]).await;

    let mut function = bed.function().await;
    let before = bed.all_calls();
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":1,"prune_versions":{"keep":20,"delete_bundles":true}}"#;
    let job = bed.drive(&mut function, params, Duration::ZERO, 3).await;
    let made = calls_between(&before, &bed.all_calls());
    eprintln!("API calls for pruning 108 of 130 versions: {made:?}");
    let count = |op: &str| made.get(op).copied().unwrap_or(0);

    // 108 to delete, 100 per invocation: two invocations, the first one continuing.
    assert_eq!(job.results.len(), 2, "{:?}", job.results);
    let first = job.results[0]["executionDetails"]["summary"]
        .as_str()
        .unwrap();
    assert!(
        first.contains("8 versions left to prune in the next invocation"),
        "{first}"
    );
    let pruned: Vec<String> = job.variables()["PrunedVersions"]
        .split(',')
        .map(str::to_string)
        .collect();
    let mut expected: Vec<String> = (1..=110)
        .filter(|i| ![5, 10].contains(i))
        .map(|i| format!("v{i:03}"))
        .collect();
    assert_eq!(pruned, expected, "oldest first");
    assert!(
        job.summary()
            .contains("Pruned 108 versions (kept 20 newest, 2 in use)"),
        "{}",
        job.summary()
    );
    // 130 versions at 100 a page, then the 30 left: three pages in all.
    assert_eq!(count("ElasticBeanstalk.DescribeApplicationVersions"), 3);
    assert_eq!(count("ElasticBeanstalk.DeleteApplicationVersion"), 108);
    // Every deleted version's bundle but v050's, which v005 still uses.
    assert_eq!(count("S3.DeleteObject"), 107);

    let mut left = bed.version_labels().await;
    left.sort();
    expected = ["v005", "v010"]
        .into_iter()
        .map(str::to_string)
        .chain((111..=130).map(|i| format!("v{i:03}")))
        .collect();
    assert_eq!(left, expected);
    assert!(
        bed.bundle_exists("v005").await,
        "shared with v050, in use by production"
    );
    assert!(bed.bundle_exists("v010").await);
    assert!(bed.bundle_exists("v130").await);
    assert!(!bed.bundle_exists("v001").await);
    assert!(!bed.bundle_exists("v110").await);
    assert_eq!(bed.status(&live).await, "Ready");
    // Room again for the next release.
    bed.version("v131").await;
}

#[tokio::test]
async fn the_route53_target_is_live_and_errors_name_their_cause() {
    let bed = Bed::start(Options::default()).await;
    bed.version("v1").await;
    let zone = bed
        .route53
        .create_hosted_zone()
        .name("shop.example")
        .caller_reference("retire-test")
        .send()
        .await
        .unwrap();
    let zone_id = zone
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let prod = bed
        .launch("shop-prod", PROD, "v1", Some("shop"), None)
        .await;
    // Serves www.shop.example through its load balancer, though swap once tagged it out of service.
    let green = bed
        .launch("shop-green", "shop-green", "v1", Some("shop"), hours(5))
        .await;
    let old = bed
        .launch("shop-old", "shop-old", "v1", Some("shop"), hours(3))
        .await;
    bed.wait_all(&[&prod, &green, &old], &["Ready"]).await;
    let green_lb = bed
        .eb
        .describe_environments()
        .environment_ids(&green)
        .send()
        .await
        .unwrap()
        .environments()[0]
        .endpoint_url()
        .unwrap()
        .to_string();
    use aws_sdk_route53::types::{
        AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let www = ResourceRecordSet::builder()
        .name("www.shop.example")
        .r#type(RrType::A)
        .alias_target(
            AliasTarget::builder()
                .dns_name(format!("dualstack.{green_lb}"))
                .hosted_zone_id("Z35SXDOTRQ7X7K")
                .evaluate_target_health(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Behind a CDN retire cannot see through.
    let cdn = ResourceRecordSet::builder()
        .name("cdn.shop.example")
        .r#type(RrType::Cname)
        .ttl(60)
        .resource_records(
            ResourceRecord::builder()
                .value("d111.cloudfront.net")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let create = |set| {
        Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(set)
            .build()
            .unwrap()
    };
    bed.route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(create(www))
                .changes(create(cdn))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut function = bed.function().await;
    let params = format!(
        r#"{{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"hosted_zone_id":"{zone_id}","domain":"www.shop.example","keep":0,"grace_minutes":0}}"#
    );
    let before = bed.all_calls();
    let job = bed.drive(&mut function, &params, Duration::ZERO, 1).await;
    let made = calls_between(&before, &bed.all_calls());
    eprintln!("API calls for a run with a Route 53 record: {made:?}");
    assert_eq!(
        job.variables()["Terminated"],
        "shop-old",
        "{}",
        job.summary()
    );
    // Once to plan, once more right before the one termination.
    assert_eq!(made.get("Route53.ListResourceRecordSets"), Some(&2));
    assert!(
        job.summary()
            .contains("shop-green (target of the production Route 53 record)"),
        "{}",
        job.summary()
    );
    assert_eq!(bed.status(&green).await, "Ready");
    assert_eq!(bed.status(&prod).await, "Ready");

    // Every error ends in a failure report that names its cause, and nothing is terminated.
    let cases = [
        (
            format!(r#"{{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"hosted_zone_id":"{zone_id}","domain":"shop.example.org"}}"#),
            "ConfigurationError",
            "has no A, AAAA or CNAME record named `shop.example.org`",
        ),
        (
            format!(r#"{{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"hosted_zone_id":"{zone_id}","domain":"cdn.shop.example","keep":0,"grace_minutes":0}}"#),
            "ConfigurationError",
            "the production Route 53 record points at d111.cloudfront.net, which is neither the CNAME nor the load balancer of any environment of application `shop`",
        ),
        (
            r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"hosted_zone_id":"ZNOSUCHZONE","domain":"www.shop.example"}"#.to_string(),
            "ConfigurationError",
            "Route 53 ListResourceRecordSets on hosted zone ZNOSUCHZONE failed",
        ),
        (
            r#"{"application":"shop","production_cname":"shop-prd","keep":0,"grace_minutes":0}"#.to_string(),
            "ConfigurationError",
            "no environment of application `shop` holds the production CNAME `shop-prd`",
        ),
        (
            r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":"one"}"#.to_string(),
            "ConfigurationError",
            "UserParameters field `keep`",
        ),
    ];
    for (params, kind, message) in cases {
        let job = bed.drive(&mut function, &params, Duration::ZERO, 1).await;
        let got = job.failure(kind);
        assert!(got.contains(message), "expected {message:?} in {got:?}");
    }
    assert_eq!(bed.calls("TerminateEnvironment"), 1);
    assert_eq!(bed.status(&green).await, "Ready");
}

/// Production moves onto a candidate after retire listed the environments and planned to terminate
/// it, but before the TerminateEnvironment: the re-check right before it sees the production CNAME
/// there now and skips it; the other candidate still goes.
#[tokio::test]
async fn a_candidate_that_took_production_after_planning_is_not_terminated() {
    let bed = Bed::start(Options::default()).await;
    for v in ["v1", "v2", "v3"] {
        bed.version(v).await;
    }
    let app = Some("shop");
    let live = bed.launch("shop-live", PROD, "v3", app, None).await;
    let old = bed
        .launch("shop-old", "shop-old", "v1", app, hours(2))
        .await;
    let back = bed
        .launch("shop-back", "shop-back", "v2", app, hours(1))
        .await;
    bed.wait_all(&[&live, &old, &back], &["Ready"]).await;

    // The listing is answered at once; the tags of the first environment are held back, so the
    // function is between its listing (on which it plans) and its re-checks while production moves.
    bed.local.set_faults(Faults {
        delay_ms: [("ListTagsForResource".to_string(), 1500)].into(),
        ..Faults::default()
    });
    let tags_before = bed.calls("ListTagsForResource");
    let listings_before = bed.calls("DescribeEnvironments");
    let mut function = bed.function().await;
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":0,"grace_minutes":10}"#;
    let move_production = async {
        let started = Instant::now();
        while bed.calls("ListTagsForResource") == tags_before {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "retire never asked for tags"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Planned on the listing made before this: shop-back is a candidate there.
        assert_eq!(bed.calls("DescribeEnvironments"), listings_before + 1);
        // Someone rolls production back onto shop-back (a CNAME swap by hand) meanwhile.
        bed.eb
            .swap_environment_cnames()
            .source_environment_id(&live)
            .destination_environment_id(&back)
            .send()
            .await
            .unwrap();
        bed.local.set_faults(Faults::default());
    };
    let (job, ()) = tokio::join!(
        bed.drive(&mut function, params, Duration::ZERO, 1),
        move_production
    );

    let summary = job.summary();
    assert_eq!(job.variables()["Terminated"], "shop-old", "{summary}");
    for part in [
        "Terminated: shop-old.",
        "Skipped: shop-back (serves production at termination time).",
    ] {
        assert!(summary.contains(part), "expected {part:?} in {summary}");
    }
    assert_eq!(bed.calls("TerminateEnvironment"), 1);
    bed.wait_all(&[&old], &["Terminating", "Terminated"]).await;
    assert_eq!(bed.status(&back).await, "Ready");
    assert_eq!(bed.status(&live).await, "Ready");
    // shop-back serves production, untouched.
    let served = reqwest::Client::new()
        .get(format!("{}/version", bed.local.router_endpoint()))
        .header("host", "shop-prod.us-east-1.elasticbeanstalk.com")
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), "v2\n");
}

/// Throttling with the SDK's retries off: retire hands over with a continuation token and tries again,
/// and the job still ends terminating exactly the old environment (issue 16.4).
#[tokio::test]
async fn throttling_is_waited_out_not_reported() {
    let bed = Bed::start(Options::default()).await;
    bed.version("v1").await;
    bed.version("v2").await;
    let app = Some("shop");
    let live = bed.launch("shop-live", PROD, "v2", app, None).await;
    let old = bed
        .launch("shop-old", "shop-old", "v1", app, hours(2))
        .await;
    bed.wait_all(&[&live, &old], &["Ready"]).await;
    // A burst of throttling: the first calls of each operation retire makes on the way to a
    // termination are refused, in turn (each invocation that meets one hands over and tries again).
    bed.local.set_faults(Faults {
        throttle: [
            "DescribeEnvironments",
            "ListTagsForResource",
            "TerminateEnvironment",
        ]
        .iter()
        .map(|op| Throttle {
            operation: op.to_string(),
            first: Some(2),
            fraction: None,
        })
        .collect(),
        ..Faults::default()
    });
    let mut function = bed.function_with_attempts(Some(1)).await;
    let params = r#"{"application":"shop","production_cname":"shop-prod","dns_ttl_seconds":1,"keep":0,"grace_minutes":10}"#;
    let job = bed
        .drive(&mut function, params, Duration::from_millis(20), 30)
        .await;
    assert!(job.succeeded(), "{}", job.last());
    assert_eq!(
        job.variables()["Terminated"],
        "shop-old",
        "{}",
        job.summary()
    );
    assert!(
        job.results.iter().any(|r| r["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("Throttling")),
        "the throttling reached retire and was waited out: {:?}",
        job.results
    );
    bed.local.set_faults(Faults::default());
    assert_eq!(bed.status(&live).await, "Ready");
}

/// One request of the crowd below: when it was sent, and what answered.
#[derive(Debug, Clone)]
struct Hit {
    sent: SystemTime,
    status: u16,
    body: String,
}

/// Clients of production that keep DNS answers as real ones do: each resolves through local-aws's DNS
/// and keeps the answer for its TTL, the first `stubborn` of them for three TTLs.
fn crowd(
    dns: String,
    clients: usize,
    stubborn: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Hit>>> {
    let host = format!("{PROD}.us-east-1.elasticbeanstalk.com");
    (0..clients)
        .map(|n| {
            let (dns, host, stop) = (dns.clone(), host.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut held: Option<(String, Instant)> = None;
                let mut hits = vec![];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if held
                        .as_ref()
                        .is_none_or(|(_, until)| Instant::now() >= *until)
                    {
                        let answer: Value = http
                            .get(format!("{dns}/_local/dns/{host}"))
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        let mut ttl = Duration::from_millis(answer["ttl"].as_u64().unwrap());
                        if n < stubborn {
                            ttl *= 3;
                        }
                        let address = answer["address"].as_str().unwrap().to_string();
                        held = Some((address, Instant::now() + ttl));
                    }
                    let address = held.as_ref().map(|(a, _)| a.clone()).unwrap();
                    let sent = SystemTime::now();
                    let (status, body) = match http
                        .get(format!("http://{address}/version"))
                        .header("host", &host)
                        .send()
                        .await
                    {
                        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                        Err(e) => (0, e.to_string()),
                    };
                    hits.push(Hit { sent, status, body });
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                hits
            })
        })
        .collect()
}

#[tokio::test]
async fn retire_waits_until_the_old_environment_has_served_nothing_for_the_dns_ttl() {
    // DNS answers live 1 s here (AWS: 60 s), enhanced health's metrics cover 1 s (AWS: 10 s).
    let ttl = Duration::from_secs(1);
    let bed = Bed::start(Options {
        dns_ttl: ttl,
        health_window: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    bed.version("v1").await;
    bed.version("v2").await;
    let old = bed.launch("shop-old", PROD, "v1", Some("shop"), None).await;
    let new = bed
        .launch("shop-new", "shop-new", "v2", Some("shop"), None)
        .await;
    bed.wait_all(&[&old, &new], &["Ready"]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Ten clients, three of them stubborn.
    let clients = crowd(bed.local.endpoint(), 10, 3, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    bed.eb
        .swap_environment_cnames()
        .source_environment_id(&old)
        .destination_environment_id(&new)
        .send()
        .await
        .unwrap();

    let mut function = bed.function().await;
    let params = r#"{"application":"shop","production_cname":"shop-prod","keep":0,"grace_seconds":0,"dns_ttl_seconds":1}"#;
    let job = bed
        .drive(&mut function, params, Duration::from_millis(300), 60)
        .await;
    assert_eq!(job.variables()["Terminated"], "shop-old");
    let first = job.results[0]["executionDetails"]["summary"]
        .as_str()
        .unwrap();
    assert!(
        first.contains("Waiting: shop-old (still served "),
        "the old environment still served cached clients right after the swap: {first}"
    );
    bed.wait_all(&[&old], &["Terminated"]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut hits = vec![];
    for c in clients {
        hits.extend(c.await.unwrap());
    }

    // Nobody saw a failure, and the old environment served its last request at least a TTL before
    // its termination began.
    let failed: Vec<&Hit> = hits.iter().filter(|h| h.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let last_old = hits
        .iter()
        .filter(|h| h.body == "v1\n")
        .map(|h| h.sent)
        .max()
        .unwrap();
    let events = bed
        .eb
        .describe_events()
        .environment_id(&old)
        .send()
        .await
        .unwrap();
    let terminating = events
        .events()
        .iter()
        .find(|e| e.message() == Some("terminateEnvironment is starting."))
        .and_then(|e| e.event_date())
        .map(|d| SystemTime::try_from(*d).unwrap())
        .expect("the termination's event");
    assert!(
        terminating >= last_old + ttl,
        "terminated {:?} after its last request, within the TTL",
        terminating.duration_since(last_old).unwrap_or_default()
    );
    assert!(hits.iter().any(|h| h.body == "v2\n"));
}
