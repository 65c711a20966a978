//! stage's sequence without a server: [`begin`](super::begin) and [`run_on`](super::run_on) against
//! the in-memory Beanstalk on a clock that never sleeps. Which calls are made, what CreateEnvironment
//! is asked, what the token carries and what the job reports; what each poll means
//! ([`assess`](super::assess)) is tested in `tests.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::beanstalk::LaunchFrom;
use crate::clock::{Clock as _, FakeClock};
use crate::fakes::{environment, FakeBeanstalk, FakeRoute53};
use crate::FailureKind;

fn plan() -> Plan {
    Plan {
        application: "shop".into(),
        version_label: "v2".into(),
        production_cname: Some("shop-prod".into()),
        production_environment: None,
        production_record: None,
        environment_name: "shop-v2".into(),
        first_source: None,
        clone_live: true,
        option_settings: vec![OptionSetting {
            namespace: "aws:elasticbeanstalk:application:environment".into(),
            option_name: "RELEASE".into(),
            value: "v2".into(),
        }],
        tags: BTreeMap::from([("team".to_string(), "web".to_string())]),
        pipeline_execution: Some("exec-1".into()),
        health: HealthGate::Green,
        timeout: Duration::from_secs(1800),
        on_failure: OnFailure::Keep,
        poll_budget: Duration::from_secs(60),
    }
}

/// Route 53 with no record: plans without `production_record` never call it.
fn no_domain() -> FakeRoute53 {
    FakeRoute53::default()
}

/// `shop-a` live on `shop-prod`.
fn with_live() -> FakeBeanstalk {
    let eb = FakeBeanstalk::with(vec![environment("shop", "shop-a", "shop-prod", "v1")]);
    eb.set_tags("shop-a", &[(TAG_APPLICATION, "shop"), (TAG_VERSION, "v1")]);
    eb
}

fn begun(outcome: Outcome<State>) -> (State, String) {
    match outcome {
        Outcome::InProgress { state, summary, .. } => (state, summary),
        other => panic!("expected a continuation, got {other:?}"),
    }
}

#[tokio::test]
async fn the_new_environment_is_created_from_a_clone_of_the_live_one() {
    let clock = FakeClock::default();
    let eb = with_live();

    let (state, summary) = begun(
        begin(&eb, &no_domain(), &plan(), clock.now())
            .await
            .unwrap(),
    );

    assert_eq!(
        eb.calls(),
        [
            "DescribeEnvironments",
            "CheckDNSAvailability",
            "CreateConfigurationTemplate",
            "CreateEnvironment",
        ],
        "{summary}"
    );
    let created = eb.created();
    assert_eq!(created.len(), 1);
    let new = &created[0];
    assert_eq!(
        (new.name.as_str(), new.version_label.as_str()),
        ("shop-v2", "v2")
    );
    assert_eq!(new.cname_prefix.as_deref(), Some("shop-v2"));
    assert_eq!(new.from, LaunchFrom::Template("beanswap-shop-v2".into()));
    assert_eq!(
        new.option_settings,
        [(
            "aws:elasticbeanstalk:application:environment".to_string(),
            "RELEASE".to_string(),
            "v2".to_string()
        )]
    );
    assert_eq!(new.tags[TAG_APPLICATION], "shop");
    assert_eq!(new.tags[TAG_VERSION], "v2");
    assert_eq!(new.tags[TAG_PIPELINE_EXECUTION], "exec-1");
    assert_eq!(new.tags["team"], "web");
    assert_eq!(
        eb.templates(),
        [("shop".to_string(), "beanswap-shop-v2".to_string())]
    );

    let env = eb.env("shop-v2");
    assert_eq!(state.env_id, env.id);
    assert_eq!(state.env_name, "shop-v2");
    assert_eq!(state.live.as_deref(), Some("shop-a"));
    assert_eq!(
        state.live_cname.as_deref(),
        Some("shop-prod.us-east-1.elasticbeanstalk.com")
    );
    assert_eq!(state.template.as_deref(), Some("beanswap-shop-v2"));
    assert_eq!(state.started_ms, unix_millis(clock.now()));
    assert_eq!(state.cursor_ms, unix_millis(clock.now()) - 1000);
    assert!(state.begun());
    assert_eq!(env.status, "Launching");
}

#[tokio::test]
async fn a_retry_adopts_the_environment_an_earlier_invocation_created() {
    let clock = FakeClock::default();
    let eb = with_live();
    let (first, _) = begun(
        begin(&eb, &no_domain(), &plan(), clock.now())
            .await
            .unwrap(),
    );

    // The invocation died before handing over its token: the next one begins again.
    clock.advance(Duration::from_secs(30));
    let before = eb.calls().len();
    let (again, summary) = begun(
        begin(&eb, &no_domain(), &plan(), clock.now())
            .await
            .unwrap(),
    );

    assert_eq!(
        eb.calls()[before..],
        ["DescribeEnvironments", "ListTagsForResource"],
        "nothing created twice: {summary}"
    );
    assert_eq!(eb.created().len(), 1);
    assert_eq!(again.env_id, first.env_id);
    assert_eq!(again.live.as_deref(), Some("shop-a"));
    // The template the first one cloned is remembered, so the end of staging deletes it.
    assert_eq!(again.template.as_deref(), Some("beanswap-shop-v2"));
    assert!(summary.contains("already exists"), "{summary}");

    // An environment of that name that beanswap did not make for this version is never adopted.
    let eb = with_live();
    eb.add(environment("shop", "shop-v2", "shop-v2", "v2"));
    let err = begin(&eb, &no_domain(), &plan(), clock.now())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert!(err.message.contains("shop-v2"), "{}", err.message);
    assert_eq!(eb.count("CreateEnvironment"), 0);
}

#[tokio::test]
async fn the_first_environment_takes_the_production_cname_unless_it_is_taken() {
    let clock = FakeClock::default();
    let first = Plan {
        first_source: Some(Source::SolutionStack("64bit Amazon Linux 2023".into())),
        ..plan()
    };

    let eb = FakeBeanstalk::default();
    let (state, _) = begun(begin(&eb, &no_domain(), &first, clock.now()).await.unwrap());
    let new = &eb.created()[0];
    assert_eq!(new.cname_prefix.as_deref(), Some("shop-prod"));
    assert_eq!(
        new.from,
        LaunchFrom::SolutionStack("64bit Amazon Linux 2023".into())
    );
    assert_eq!(eb.count("CreateConfigurationTemplate"), 0);
    assert_eq!((state.live, state.template), (None, None));

    // Taken by someone else: a configuration error, nothing created.
    let eb = FakeBeanstalk::default();
    eb.take_cname("shop-prod");
    let err = begin(&eb, &no_domain(), &first, clock.now())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert_eq!(eb.count("CreateEnvironment"), 0);

    // No live environment and nothing to create one from: said before anything is made.
    let eb = FakeBeanstalk::default();
    let err = begin(&eb, &no_domain(), &plan(), clock.now())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert_eq!(eb.count("CreateEnvironment"), 0);
}

#[tokio::test]
async fn a_template_left_by_an_earlier_attempt_is_used_and_refusals_are_not_transient() {
    let clock = FakeClock::default();
    let eb = with_live();
    // An earlier attempt made the template, then died before CreateEnvironment.
    eb.create_configuration_template("shop", "beanswap-shop-v2", "e-shop-a", "")
        .await
        .unwrap();
    let (state, _) = begun(
        begin(&eb, &no_domain(), &plan(), clock.now())
            .await
            .unwrap(),
    );
    assert_eq!(state.template.as_deref(), Some("beanswap-shop-v2"));
    assert_eq!(eb.created().len(), 1);

    // CreateEnvironment refused for want of a permission: the job fails naming the action.
    let eb = with_live();
    eb.fail_next(
        "CreateEnvironment",
        crate::aws_error::AwsError::answered(
            crate::aws_error::Service::ElasticBeanstalk,
            "CreateEnvironment",
            "InsufficientPrivilegesException",
            "not authorized to perform: elasticbeanstalk:CreateEnvironment",
        ),
    );
    let err = begin(&eb, &no_domain(), &plan(), clock.now())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::PermissionError, "{}", err.message);
    assert!(err.message.contains("CreateEnvironment"), "{}", err.message);
}

/// Invocations as CodePipeline makes them, until one is not a continuation (at most `max`).
async fn invoke_until_done(
    eb: &FakeBeanstalk,
    plan: &Plan,
    mut state: Option<State>,
    clock: &FakeClock,
    max: usize,
) -> Result<Outcome<State>, ActionError> {
    for _ in 0..max {
        match run_on(eb, &no_domain(), plan, state.take(), clock).await? {
            Outcome::InProgress { state: next, .. } => state = Some(next),
            done => return Ok(done),
        }
    }
    panic!("still in progress after {max} invocations: {state:?}");
}

#[tokio::test]
async fn a_launch_is_a_continuation_until_ready_and_healthy_then_succeeds() {
    let clock = FakeClock::default();
    let eb = with_live();

    // Begins, then polls the Launching environment until the poll budget is spent.
    let (state, summary) = begun(
        run_on(&eb, &no_domain(), &plan(), None, &clock)
            .await
            .unwrap(),
    );
    assert_eq!(eb.count("CreateEnvironment"), 1);
    assert!(eb.count("DescribeEvents") > 1, "{summary}");
    assert!(summary.contains("Launching"), "{summary}");
    assert!(clock.slept().iter().sum::<Duration>() <= plan().poll_budget);
    assert!(eb
        .calls()
        .iter()
        .all(|c| c != "DeleteConfigurationTemplate" && c != "TerminateEnvironment"));

    // Still launching at the next invocation: another continuation, nothing created again.
    let (state, _) = begun(
        run_on(&eb, &no_domain(), &plan(), Some(state), &clock)
            .await
            .unwrap(),
    );
    assert_eq!(eb.count("CreateEnvironment"), 1);

    eb.set("shop-v2", |e| {
        e.status = "Ready".into();
        e.health = "Green".into();
    });
    let done = invoke_until_done(&eb, &plan(), Some(state), &clock, 3)
        .await
        .unwrap();
    let Outcome::Succeeded { summary, .. } = done else {
        panic!("expected success, got {done:?}");
    };
    assert!(summary.contains("shop-v2"), "{summary}");
    // The template cloned for it is deleted once it is staged.
    assert!(eb.templates().is_empty());
    assert_eq!(eb.count("DeleteConfigurationTemplate"), 1);
    assert_eq!(eb.env("shop-a").status, "Ready");
}

#[tokio::test]
async fn a_red_launch_fails_with_its_events_and_is_terminated_when_asked() {
    let clock = FakeClock::default();
    let eb = with_live();
    let plan = Plan {
        on_failure: OnFailure::Terminate,
        ..plan()
    };
    let (state, _) = begun(begin(&eb, &no_domain(), &plan, clock.now()).await.unwrap());

    clock.advance(Duration::from_secs(120));
    eb.set("shop-v2", |e| {
        e.status = "Ready".into();
        e.health = "Red".into();
    });
    eb.add_event(
        "shop-v2",
        clock.now(),
        "ERROR",
        "Instance deployment failed. For details, see 'eb-engine.log'.",
    );
    eb.set_tail_logs(
        "shop-v2",
        vec![(
            "i-0abc".into(),
            "2026/12/02 12:00:00.000000 [ERROR] An error occurred during execution of command \
             [app-deploy] - [RunAppDeployPreBuildHooks]."
                .into(),
        )],
    );

    let err = invoke_until_done(&eb, &plan, Some(state), &clock, 3)
        .await
        .unwrap_err();

    assert_eq!(err.kind, FailureKind::JobFailed, "{}", err.message);
    for part in [
        "Staging version v2 failed",
        "Instance deployment failed",
        "shop-a still serves it",
        "being terminated (on_failure: terminate)",
    ] {
        assert!(err.message.contains(part), "{part}: {}", err.message);
    }
    assert_eq!(eb.count("RequestEnvironmentInfo"), 1);
    assert_eq!(eb.env("shop-v2").status, "Terminated");
    assert_eq!(eb.env("shop-a").status, "Ready");
    assert!(
        eb.templates().is_empty(),
        "the cloned template is deleted too"
    );
}

#[tokio::test]
async fn a_throttled_poll_is_skipped_not_a_verdict() {
    let clock = FakeClock::default();
    let eb = with_live();
    let (state, _) = begun(
        begin(&eb, &no_domain(), &plan(), clock.now())
            .await
            .unwrap(),
    );
    eb.set("shop-v2", |e| {
        e.status = "Ready".into();
        e.health = "Green".into();
    });
    let throttled = |operation: &'static str| {
        crate::aws_error::AwsError::answered(
            crate::aws_error::Service::ElasticBeanstalk,
            operation,
            "Throttling",
            "Rate exceeded",
        )
    };
    // The first poll's events and status reads are both throttled: skipped, read again next poll.
    eb.fail_next("DescribeEvents", throttled("DescribeEvents"));
    eb.fail_next("DescribeEnvironments", throttled("DescribeEnvironments"));
    let before = eb.count("DescribeEnvironments");

    let done = invoke_until_done(&eb, &plan(), Some(state), &clock, 3)
        .await
        .unwrap();
    assert!(matches!(done, Outcome::Succeeded { .. }), "{done:?}");
    assert_eq!(eb.count("DescribeEnvironments") - before, 2);
    assert_eq!(eb.count("DescribeEvents"), 2);
}

/// The production record of `www.shop.example` as an alias to `env`.
fn production_record(r53: &FakeRoute53, env: &crate::beanstalk::Environment) {
    r53.set_records(
        "Z1",
        "www.shop.example",
        vec![crate::route53::Record {
            name: "www.shop.example.".into(),
            pointer: crate::route53::Pointer::Alias {
                dns_name: env.cname.clone(),
                zone_id: "Z117KPS5GTRQ2G".into(),
            },
            set_identifier: None,
            weight: None,
        }],
    );
}

#[tokio::test]
async fn with_a_domain_the_live_environment_is_the_records_target_not_the_cnames_holder() {
    let clock = FakeClock::default();
    // shop-a launched first, on the production CNAME; a Route 53 swap has since moved the domain to
    // shop-b, so shop-a keeps the CNAME but no longer serves.
    let eb = with_live();
    eb.add(environment("shop", "shop-b", "shop-b", "v1b"));
    let r53 = FakeRoute53::default();
    let plan = Plan {
        production_record: Some(RecordName {
            zone: "Z1".into(),
            name: "www.shop.example".into(),
        }),
        ..plan()
    };

    // Before the record exists (the first deployment's swap writes it), the CNAME decides.
    let (state, _) = begun(begin(&eb, &r53, &plan, clock.now()).await.unwrap());
    assert_eq!(state.live.as_deref(), Some("shop-a"));
    assert_eq!(r53.calls(), ["ListResourceRecordSets"]);

    let eb = with_live();
    eb.add(environment("shop", "shop-b", "shop-b", "v1b"));
    production_record(&r53, &eb.env("shop-b"));
    let (state, summary) = begun(begin(&eb, &r53, &plan, clock.now()).await.unwrap());
    assert_eq!(state.live.as_deref(), Some("shop-b"), "{summary}");
    assert_eq!(
        state.live_cname.as_deref(),
        Some(eb.env("shop-b").cname.as_str())
    );
    assert_eq!(state.template.as_deref(), Some("beanswap-shop-v2"));
    let new = &eb.created()[0];
    assert_eq!(new.cname_prefix.as_deref(), Some("shop-v2"));

    // A record pointing somewhere stage cannot match (a CDN, another application) is a configuration
    // error before anything is created.
    let eb = with_live();
    let elsewhere = environment("other", "cdn", "cdn-edge", "x");
    production_record(&r53, &elsewhere);
    let err = begin(&eb, &r53, &plan, clock.now()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::ConfigurationError, "{}", err.message);
    assert!(err.message.contains("www.shop.example"), "{}", err.message);
    assert!(eb.created().is_empty());
}

/// Rule 6 in stage: the version being staged is already live, its environment Ready but Red. Stage
/// fails it like any Red launch, but never terminates it whatever on_failure says, nor suggests
/// terminating it, and says that it is production that failed, not "Production is unchanged".
#[tokio::test]
async fn a_red_environment_that_serves_production_is_never_terminated() {
    for on_failure in [OnFailure::Terminate, OnFailure::Keep] {
        let clock = FakeClock::default();
        // shop-v2 already holds the production CNAME with this very version (swapped earlier).
        let eb = FakeBeanstalk::with(vec![environment("shop", "shop-v2", "shop-prod", "v2")]);
        eb.set_tags(
            "shop-v2",
            &[
                (TAG_APPLICATION, "shop"),
                (TAG_VERSION, "v2"),
                (TAG_PIPELINE_EXECUTION, "exec-0"),
            ],
        );
        eb.set("shop-v2", |e| {
            e.health = "Red".into();
            e.health_status = Some("Severe".into());
        });
        let plan = Plan {
            on_failure,
            ..plan()
        };

        let err = invoke_until_done(&eb, &plan, None, &clock, 3)
            .await
            .unwrap_err();

        assert_eq!(err.kind, FailureKind::JobFailed, "{}", err.message);
        assert_eq!(eb.count("TerminateEnvironment"), 0, "{}", err.message);
        assert_eq!(eb.env("shop-v2").status, "Ready");
        for part in [
            "health is Red",
            "shop-v2 holds the production CNAME",
            "leaves it running whatever on_failure says",
            "Production is shop-v2 itself",
        ] {
            assert!(err.message.contains(part), "{part}: {}", err.message);
        }
        for wrong in [
            "Production is unchanged",
            "terminate-environment",
            "being terminated",
        ] {
            assert!(!err.message.contains(wrong), "{wrong}: {}", err.message);
        }
    }

    // A first environment, launched on the production CNAME, that goes Red: it holds the production
    // CNAME, so it is not terminated either.
    let clock = FakeClock::default();
    let eb = FakeBeanstalk::default();
    let first = Plan {
        first_source: Some(Source::SolutionStack("64bit Amazon Linux 2023".into())),
        on_failure: OnFailure::Terminate,
        ..plan()
    };
    let (state, _) = begun(begin(&eb, &no_domain(), &first, clock.now()).await.unwrap());
    eb.set("shop-v2", |e| {
        e.status = "Ready".into();
        e.health = "Red".into();
    });
    let err = invoke_until_done(&eb, &first, Some(state), &clock, 3)
        .await
        .unwrap_err();
    assert_eq!(eb.count("TerminateEnvironment"), 0, "{}", err.message);
    assert!(
        err.message.contains("shop-v2 holds the production CNAME"),
        "{}",
        err.message
    );

    // Beside a live environment, on_failure: terminate still removes the failed new one (see
    // a_red_launch_fails_with_its_events_and_is_terminated_when_asked).
}

/// A Retry pressed after a failure adopts the environment the earlier invocation created and judges it
/// on every event since its launch; the failure's "Recent events" list those events too, not only the
/// ones after the retry began (which would be none).
#[tokio::test]
async fn a_retry_that_fails_lists_the_adopted_environments_events_since_its_launch() {
    let clock = FakeClock::default();
    let eb = with_live();
    let launched = clock.now();
    begun(begin(&eb, &no_domain(), &plan(), launched).await.unwrap());
    eb.set("shop-v2", |e| e.created = Some(launched));
    eb.add_event(
        "shop-v2",
        launched + Duration::from_secs(20),
        "INFO",
        "Created EC2 instance(s): [i-0abc].",
    );
    eb.add_event(
        "shop-v2",
        launched + Duration::from_secs(90),
        "ERROR",
        "Stack named 'awseb-e-shop-v2-stack' aborted operation.",
    );

    // The earlier invocation's token is lost; Retry is pressed ten minutes later.
    clock.advance(Duration::from_secs(600));
    let err = invoke_until_done(&eb, &plan(), None, &clock, 3)
        .await
        .unwrap_err();

    assert_eq!(eb.created().len(), 1, "adopted, not launched again");
    let (_, recent) = err
        .message
        .split_once("Recent events of shop-v2:\n")
        .expect("a list of recent events");
    for event in ["Created EC2 instance(s)", "aborted operation"] {
        assert!(recent.contains(event), "{event}: {}", err.message);
    }
}
