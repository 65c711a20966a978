//! retire's sequence without a server: [`exec::run`] against the in-memory fakes (Beanstalk, Route 53,
//! S3), on an injected clock, invocation after invocation as CodePipeline makes them. Which calls are
//! made, in what order, and what the job reports; the decisions themselves are tested in `tests.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use super::exec::{self, Clients, Progress, Prune, Scale, Settings};
use super::format_time;
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::{
    ApplicationVersion, Traffic, TAG_APPLICATION, TAG_OUT_OF_SERVICE_SINCE, TAG_VERSION,
};
use crate::clock::{unix_seconds, Clock as _, FakeClock};
use crate::fakes::{environment, not_ready, FakeBeanstalk, FakeRoute53, FakeS3};
use crate::swap::capacity::Capacity;
use crate::{FailureKind, Outcome};

type Fakes = Clients<FakeBeanstalk, FakeRoute53, FakeS3, FakeClock>;

const GRACE: Duration = Duration::from_secs(10 * 60);
const TTL: Duration = Duration::from_secs(60);

fn settings() -> Settings {
    Settings {
        application: "shop".into(),
        production_cname: "shop-prod".into(),
        record: None,
        keep: 0,
        grace: GRACE,
        scale_down_kept: None,
        prune: None,
        dry_run: false,
        dns_ttl: TTL,
    }
}

/// `shop-a` live (holds `shop-prod`, runs v2); `shop-b` out of service for `out_minutes` (runs v1).
fn fakes(clock: &FakeClock, out_minutes: u64) -> Fakes {
    let eb = FakeBeanstalk::with(vec![
        environment("shop", "shop-a", "shop-prod", "v2"),
        environment("shop", "shop-b", "shop-b", "v1"),
    ]);
    eb.set_tags("shop-a", &[(TAG_APPLICATION, "shop"), (TAG_VERSION, "v2")]);
    let since = clock.now() - Duration::from_secs(out_minutes * 60);
    eb.set_tags(
        "shop-b",
        &[
            (TAG_APPLICATION, "shop"),
            (TAG_VERSION, "v1"),
            (TAG_OUT_OF_SERVICE_SINCE, &format_time(since)),
        ],
    );
    Clients {
        beanstalk: eb,
        route53: FakeRoute53::default(),
        s3: FakeS3::default(),
        clock: clock.clone(),
    }
}

fn serving(requests: u64) -> Option<Traffic> {
    Some(Traffic {
        requests,
        window: Duration::from_secs(10),
    })
}

async fn invoke(
    clients: &Fakes,
    settings: &Settings,
    state: Option<Progress>,
) -> Outcome<Progress> {
    exec::run(clients, settings, state)
        .await
        .expect("no failure")
}

fn in_progress(outcome: Outcome<Progress>) -> (Progress, String) {
    match outcome {
        Outcome::InProgress { state, summary, .. } => (state, summary),
        other => panic!("expected a continuation, got {other:?}"),
    }
}

fn succeeded(outcome: Outcome<Progress>) -> (String, std::collections::BTreeMap<String, String>) {
    match outcome {
        Outcome::Succeeded { summary, variables } => (summary, variables),
        other => panic!("expected success, got {other:?}"),
    }
}

fn status(clients: &Fakes, name: &str) -> String {
    clients.beanstalk.env(name).status.to_string()
}

#[tokio::test]
async fn nothing_to_retire_succeeds_with_only_reads() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 0);
    // Only the live environment.
    clients
        .beanstalk
        .set("shop-b", |e| e.status = "Terminated".into());

    let (summary, variables) = succeeded(invoke(&clients, &settings(), None).await);

    assert_eq!(
        clients.beanstalk.calls(),
        ["DescribeEnvironments", "ListTagsForResource"],
        "{summary}"
    );
    assert_eq!(variables["Terminated"], "");
    assert_eq!(variables["Kept"], "");
    assert_eq!(variables["PrunedVersions"], "");
    assert_eq!(status(&clients, "shop-a"), "Ready");
}

#[tokio::test]
async fn an_environment_inside_its_grace_period_is_waited_for() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 4);

    let (progress, summary) = in_progress(invoke(&clients, &settings(), None).await);

    assert_eq!(progress.started, unix_seconds(clock.now()));
    assert!(progress.terminated.is_empty() && progress.quiet.is_empty());
    // Not due: its traffic is not even looked at, nothing is written.
    assert_eq!(clients.beanstalk.count("DescribeEnvironmentHealth"), 0);
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
    assert_eq!(status(&clients, "shop-b"), "Ready", "{summary}");

    // Still inside it a minute later: the same.
    clock.advance(Duration::from_secs(60));
    let (again, _) = in_progress(invoke(&clients, &settings(), Some(progress)).await);
    assert_eq!(again.started, unix_seconds(clock.now()) - 60);
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
}

#[tokio::test]
async fn past_grace_an_environment_still_serving_is_waited_for_until_idle() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(12));

    let (progress, summary) = in_progress(invoke(&clients, &settings(), None).await);

    assert_eq!(clients.beanstalk.count("DescribeEnvironmentHealth"), 1);
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
    assert!(progress.quiet.is_empty(), "serving: not quiet");
    assert_eq!(status(&clients, "shop-b"), "Ready", "{summary}");

    // Still serving several TTLs later: still waiting, never forced.
    clock.advance(TTL * 5);
    let (progress, _) = in_progress(invoke(&clients, &settings(), Some(progress)).await);
    assert!(progress.quiet.is_empty());
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
}

#[tokio::test]
async fn an_idle_environment_is_terminated_once_quiet_for_the_ttl() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(3));
    let (progress, _) = in_progress(invoke(&clients, &settings(), None).await);

    // It stops serving: quiet since its health window began, remembered in the token.
    clock.advance(Duration::from_secs(30));
    clients.beanstalk.set_traffic("shop-b", serving(0));
    let (progress, _) = in_progress(invoke(&clients, &settings(), Some(progress)).await);
    let quiet = progress.quiet["shop-b"];
    let window_start = clock.now() - Duration::from_secs(10);
    assert_eq!(
        quiet,
        u64::try_from(
            window_start
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        )
        .unwrap()
    );
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);

    // Quiet for the TTL: re-checked, then terminated, and the job is done.
    clock.advance(TTL);
    let before = clients.beanstalk.calls().len();
    let (summary, variables) = succeeded(invoke(&clients, &settings(), Some(progress)).await);
    assert_eq!(
        clients.beanstalk.calls()[before..],
        [
            "DescribeEnvironments",
            "ListTagsForResource",
            "ListTagsForResource",
            "DescribeEnvironmentHealth",
            // The re-check just before terminating.
            "DescribeEnvironments",
            "TerminateEnvironment",
        ],
        "{summary}"
    );
    assert_eq!(variables["Terminated"], "shop-b");
    assert_eq!(status(&clients, "shop-b"), "Terminated");
    assert_eq!(status(&clients, "shop-a"), "Ready");
}

#[tokio::test]
async fn a_busy_environment_is_a_continuation_not_a_failure() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    // Busy when the plan is made (an update someone started).
    clients
        .beanstalk
        .set("shop-b", |e| e.status = "Updating".into());
    // Idle at once once Ready (the health window is longer than the TTL).
    let settings = Settings {
        dns_ttl: Duration::from_secs(5),
        ..settings()
    };

    let (progress, summary) = in_progress(invoke(&clients, &settings, None).await);
    assert_eq!(
        clients.beanstalk.count("TerminateEnvironment"),
        0,
        "{summary}"
    );

    // Ready at the re-check but busy again when TerminateEnvironment comes: refused, looked at again.
    clients
        .beanstalk
        .set("shop-b", |e| e.status = "Ready".into());
    clients.beanstalk.fail_next(
        "TerminateEnvironment",
        not_ready("TerminateEnvironment", "shop-b"),
    );
    clock.advance(Duration::from_secs(10));
    let (progress, summary) = in_progress(invoke(&clients, &settings, Some(progress)).await);
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 1);
    assert!(progress.terminated.is_empty(), "{summary}");

    // Ready for good: terminated.
    clock.advance(Duration::from_secs(10));
    let (_, variables) = succeeded(invoke(&clients, &settings, Some(progress)).await);
    assert_eq!(variables["Terminated"], "shop-b");
    assert_eq!(status(&clients, "shop-b"), "Terminated");
}

#[tokio::test]
async fn a_kept_environment_is_scaled_down_once_it_is_ready() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_capacity(
        "shop-b",
        Capacity {
            instances: 3,
            healthy: 3,
            min: 2,
            max: 4,
        },
    );
    // Busy with swap's own tag change at first.
    clients
        .beanstalk
        .set("shop-b", |e| e.status = "Updating".into());
    let settings = Settings {
        keep: 1,
        scale_down_kept: Some(Scale { min: 1, max: 1 }),
        ..settings()
    };

    let (progress, summary) = in_progress(invoke(&clients, &settings, None).await);
    assert_eq!(clients.beanstalk.count("UpdateEnvironment"), 0, "{summary}");
    assert!(progress.scaled.is_empty());

    clients
        .beanstalk
        .set("shop-b", |e| e.status = "Ready".into());
    clock.advance(Duration::from_secs(10));
    let before = clients.beanstalk.calls().len();
    let (summary, variables) = succeeded(invoke(&clients, &settings, Some(progress)).await);
    assert_eq!(
        clients.beanstalk.calls()[before..],
        [
            "DescribeEnvironments",
            "ListTagsForResource",
            "ListTagsForResource",
            "DescribeConfigurationSettings",
            "UpdateEnvironment",
        ],
        "{summary}"
    );
    let size = clients.beanstalk.capacity_of("shop-b");
    assert_eq!((size.min, size.max), (1, 1));
    assert_eq!(variables["Kept"], "shop-b");
    assert_eq!(variables["Terminated"], "");
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
    assert_ne!(status(&clients, "shop-b"), "Terminated");
}

/// `versions` (label, minutes old) with their bundles, and settings that prune all but the newest `keep`.
fn pruning(clients: &Fakes, clock: &FakeClock, versions: &[(&str, u64)], keep: usize) -> Settings {
    for (label, age) in versions {
        clients
            .beanstalk
            .add_version("shop", version(label, *age, clock));
        clients.s3.put("bundles", &format!("shop/{label}.zip"));
    }
    Settings {
        prune: Some(Prune {
            keep,
            delete_bundles: true,
        }),
        dns_ttl: Duration::from_secs(5),
        ..settings()
    }
}

fn version(label: &str, minutes_ago: u64, clock: &FakeClock) -> ApplicationVersion {
    ApplicationVersion {
        label: label.into(),
        created: Some(clock.now() - Duration::from_secs(minutes_ago * 60)),
        status: "Processed".into(),
        bundle: Some(("bundles".into(), format!("shop/{label}.zip"))),
    }
}

#[tokio::test]
async fn old_versions_are_pruned_bundles_first_after_the_terminations() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(0));
    clients
        .beanstalk
        .set_endpoint("shop-b", "awseb-b.elb.amazonaws.com");
    // v2 runs on shop-a; v1 on shop-b, which this job terminates first: in use when the job looked,
    // so kept until the next job.
    let all = [
        ("v-2", 70),
        ("v-1", 60),
        ("v0", 50),
        ("v1", 40),
        ("v2", 30),
        ("v3", 20),
        ("v4", 10),
    ];
    let settings = pruning(&clients, &clock, &all, 2);

    let (summary, variables) = succeeded(invoke(&clients, &settings, None).await);

    assert_eq!(variables["Terminated"], "shop-b", "{summary}");
    // The newest two and the ones in use stay; the rest go, oldest first.
    assert_eq!(variables["PrunedVersions"], "v-2,v-1,v0");
    assert_eq!(
        clients.beanstalk.version_labels("shop"),
        ["v1", "v2", "v3", "v4"]
    );
    for (label, age) in all {
        let exists = age < 50;
        assert_eq!(
            clients.s3.exists("bundles", &format!("shop/{label}.zip")),
            exists,
            "{label}"
        );
    }
    assert_eq!(clients.s3.calls(), ["DeleteObject"; 3]);
    let calls = clients.beanstalk.calls();
    let terminated = calls
        .iter()
        .position(|c| c == "TerminateEnvironment")
        .unwrap();
    let listed = calls
        .iter()
        .position(|c| c == "DescribeApplicationVersions")
        .unwrap();
    assert!(terminated < listed, "{calls:?}");
    assert_eq!(clients.beanstalk.count("DeleteApplicationVersion"), 3);

    // A bundle that cannot be deleted keeps its version (the bundle goes first).
    clients
        .beanstalk
        .add_version("shop", version("v-old", 80, &clock));
    clients.s3.fail_next(
        "DeleteObject",
        AwsError::answered(Service::S3, "DeleteObject", "AccessDenied", "Access Denied"),
    );
    let err = exec::run(&clients, &settings, None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::PermissionError, "{}", err.message);
    assert!(err.message.contains("DeleteObject"), "{}", err.message);
    assert!(clients
        .beanstalk
        .version_labels("shop")
        .contains(&"v-old".to_string()));
}

#[tokio::test]
async fn a_permission_refusal_fails_the_job_naming_the_action() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(0));
    clients.beanstalk.fail_next(
        "TerminateEnvironment",
        AwsError::answered(
            Service::ElasticBeanstalk,
            "TerminateEnvironment",
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/retire/fn is not authorized to perform: \
             elasticbeanstalk:TerminateEnvironment",
        ),
    );
    let settings = Settings {
        dns_ttl: Duration::from_secs(5),
        ..settings()
    };

    let err = exec::run(&clients, &settings, None).await.unwrap_err();

    assert_eq!(err.kind, FailureKind::PermissionError, "{}", err.message);
    assert!(
        err.message.contains("TerminateEnvironment") && err.message.contains("shop-b"),
        "{}",
        err.message
    );
    assert_eq!(status(&clients, "shop-b"), "Ready");
}

#[tokio::test]
async fn a_throttle_is_a_continuation_until_the_patience_runs_out() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    let throttled = || {
        AwsError::answered(
            Service::ElasticBeanstalk,
            "DescribeEnvironments",
            "Throttling",
            "Rate exceeded",
        )
    };
    clients
        .beanstalk
        .fail_next("DescribeEnvironments", throttled());

    let (progress, summary) = in_progress(invoke(&clients, &settings(), None).await);
    assert_eq!(progress.started, unix_seconds(clock.now()));
    assert!(summary.contains("Rate exceeded"), "{summary}");
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);

    // Throttled again past the grace period and the patience: reported, as AWS unavailable.
    clock.advance(GRACE + exec::TRANSIENT_PATIENCE);
    clients
        .beanstalk
        .fail_next("DescribeEnvironments", throttled());
    let err = exec::run(&clients, &settings(), Some(progress))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::SystemUnavailable, "{}", err.message);
}

#[tokio::test]
async fn a_dry_run_only_reads_and_says_what_would_happen() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(0));
    clients.beanstalk.set_capacity(
        "shop-b",
        Capacity {
            instances: 2,
            healthy: 2,
            min: 2,
            max: 4,
        },
    );
    for (label, age) in [("v0", 50), ("v1", 40), ("v2", 30)] {
        clients
            .beanstalk
            .add_version("shop", version(label, age, &clock));
    }
    let settings = Settings {
        dry_run: true,
        dns_ttl: Duration::from_secs(5),
        prune: Some(Prune {
            keep: 1,
            delete_bundles: true,
        }),
        ..settings()
    };

    let (summary, variables) = succeeded(invoke(&clients, &settings, None).await);

    for write in [
        "TerminateEnvironment",
        "UpdateEnvironment",
        "DeleteApplicationVersion",
        "UpdateTagsForResource",
    ] {
        assert_eq!(clients.beanstalk.count(write), 0, "{write}: {summary}");
    }
    assert!(clients.s3.calls().is_empty());
    assert_eq!(clients.beanstalk.count("DescribeApplicationVersions"), 1);
    assert_eq!(variables["Terminated"], "");
    assert_eq!(variables["PrunedVersions"], "");
    assert!(summary.contains("shop-b"), "{summary}");
    assert_eq!(status(&clients, "shop-b"), "Ready");
    assert_eq!(clients.beanstalk.version_labels("shop").len(), 3);
}

fn record_to(target: &str) -> crate::route53::Record {
    crate::route53::Record {
        name: "www.shop.example.".into(),
        pointer: crate::route53::Pointer::Cname {
            value: target.into(),
            ttl: 60,
        },
        set_identifier: None,
        weight: None,
    }
}

#[tokio::test]
async fn with_a_domain_the_record_is_read_for_the_plan_and_again_before_terminating() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(0));
    clients.route53.set_records(
        "Z1",
        "www.shop.example",
        vec![record_to("shop-prod.us-east-1.elasticbeanstalk.com")],
    );
    let settings = Settings {
        record: Some(exec::Record {
            zone: "Z1".into(),
            name: "www.shop.example".into(),
        }),
        dns_ttl: Duration::from_secs(5),
        ..settings()
    };

    let (_, variables) = succeeded(invoke(&clients, &settings, None).await);
    assert_eq!(variables["Terminated"], "shop-b");
    // Read for the plan, and again just before the termination (is it the target now?).
    assert_eq!(
        clients.route53.calls(),
        ["ListResourceRecordSets", "ListResourceRecordSets"]
    );

    // A typo in the domain is a configuration error before anything is touched.
    let clients = fakes(&clock, 30);
    let err = exec::run(&clients, &settings, None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert!(
        err.message.contains("Z1") && err.message.contains("www.shop.example"),
        "{}",
        err.message
    );
    assert_eq!(clients.beanstalk.count("TerminateEnvironment"), 0);
}

#[tokio::test]
async fn pruning_stops_at_its_time_budget_and_goes_on_in_the_next_invocation() {
    let clock = FakeClock::default();
    let clients = fakes(&clock, 30);
    clients.beanstalk.set_traffic("shop-b", serving(0));
    let settings = pruning(
        &clients,
        &clock,
        &[
            ("v-3", 90),
            ("v-2", 80),
            ("v-1", 70),
            ("v0", 60),
            ("v-old", 100),
        ],
        0,
    );
    // Throttled and retried by the SDK, each bundle deletion takes 50 s: after three (150 s) the
    // 120 s budget is spent, so this invocation stops and the next one goes on.
    clients.s3.set_latency(&clock, Duration::from_secs(50));

    let (progress, summary) = in_progress(invoke(&clients, &settings, None).await);

    assert_eq!(
        clients.beanstalk.count("DeleteApplicationVersion"),
        3,
        "{summary}"
    );
    assert_eq!(progress.pruned, ["v-old", "v-3", "v-2"]);
    let (summary, variables) = succeeded(invoke(&clients, &settings, Some(progress)).await);
    assert_eq!(
        variables["PrunedVersions"], "v-old,v-3,v-2,v-1,v0",
        "{summary}"
    );
    assert_eq!(clients.beanstalk.count("DeleteApplicationVersion"), 5);
}
