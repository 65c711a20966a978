//! stage's pure half, every path: [`assess`](super::assess), names, [`State`](super::State).
use super::*;

fn env(status: &str, health: &str) -> Environment {
    Environment {
        id: "e-1".into(),
        name: "shop-abc".into(),
        application: "shop".into(),
        version_label: Some("v2".into()),
        cname: "shop-abc.us-east-1.elasticbeanstalk.com".into(),
        status: status.into(),
        health: health.into(),
        health_status: Some("Severe".into()),
        arn: String::new(),
        created: None,
    }
}

fn event(severity: &str, message: &str) -> Event {
    Event {
        date: SystemTime::now(),
        severity: severity.into(),
        message: message.into(),
        environment: None,
    }
}

#[test]
fn assess_covers_every_way_a_launch_ends() {
    let min = Duration::from_secs(60);
    let long = Duration::from_secs(1800);
    let cases: Vec<(Environment, Vec<Event>, &str, Duration, &str)> = vec![
        (env("Launching", "Grey"), vec![], "Green", min, "wait"),
        (env("Ready", "Green"), vec![], "Green", min, "healthy"),
        (env("Ready", "Yellow"), vec![], "Yellow", min, "healthy"),
        (env("Ready", "Yellow"), vec![], "Green", min, "wait"),
        (env("Ready", "Grey"), vec![], "Green", min, "wait"),
        (
            env("Ready", "Red"),
            vec![],
            "Green",
            min,
            "failed: health is Red",
        ),
        (
            env("Terminated", "Grey"),
            vec![],
            "Green",
            min,
            "failed: went Terminated",
        ),
        (
            env("Launching", "Grey"),
            vec![
                event("INFO", "fine"),
                event("ERROR", "Stack named x aborted"),
            ],
            "Green",
            min,
            "failed: Beanstalk reported ERROR for shop-abc: Stack named x aborted",
        ),
        (
            env("Launching", "Grey"),
            vec![event("WARN", "slow")],
            "Green",
            min,
            "wait",
        ),
        (
            env("Launching", "Grey"),
            vec![],
            "Green",
            long,
            "failed: was not Ready with Green health within 30m",
        ),
    ];
    for (env, events, gate, elapsed, expected) in cases {
        let gate = if gate == "Yellow" {
            HealthGate::Yellow
        } else {
            HealthGate::Green
        };
        let verdict = assess(&env, &events, gate, elapsed, Duration::from_secs(1800));
        let ok = match (&verdict, expected) {
            (Verdict::Healthy, "healthy") | (Verdict::Waiting, "wait") => true,
            (Verdict::Failed(m), e) => e
                .strip_prefix("failed: ")
                .is_some_and(|part| m.contains(part)),
            _ => false,
        };
        assert!(
            ok,
            "{} {} {gate}: expected {expected}, got {verdict:?}",
            env.status, env.health
        );
    }
}

#[test]
fn an_adopted_environment_is_judged_on_this_executions_events_only() {
    let created = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
    let now = std::time::UNIX_EPOCH + Duration::from_secs(5_000);
    let existing = Environment {
        created: Some(created),
        ..env("Launching", "Grey")
    };
    let plan = |execution: Option<&str>| Plan {
        application: "shop".into(),
        version_label: "v2".into(),
        production_cname: Some("shop-prod".into()),
        production_environment: None,
        production_record: None,
        environment_name: "shop-abc".into(),
        first_source: None,
        clone_live: true,
        option_settings: vec![],
        tags: BTreeMap::new(),
        pipeline_execution: execution.map(str::to_string),
        health: HealthGate::Green,
        timeout: Duration::from_secs(1800),
        on_failure: OnFailure::Keep,
        poll_budget: Duration::from_secs(120),
    };
    let tagged = |execution: &str| {
        BTreeMap::from([(TAG_PIPELINE_EXECUTION.to_string(), execution.to_string())])
    };
    // Made by this execution (a retry): every event since its creation counts.
    assert_eq!(
        adopted_cursor(&existing, &tagged("exec-1"), &plan(Some("exec-1")), now),
        unix_millis(created)
    );
    // Unknown execution: the conservative reading, since creation.
    assert_eq!(
        adopted_cursor(&existing, &BTreeMap::new(), &plan(None), now),
        unix_millis(created)
    );
    // Made by an earlier execution: its launch is history; judged from now.
    assert_eq!(
        adopted_cursor(&existing, &tagged("exec-0"), &plan(Some("exec-1")), now),
        unix_millis(now) - 1000
    );
}

#[test]
fn names_are_deterministic_and_valid() {
    let a = environment_name("{app}-{id}", "shop", "v-2026-11-25-abc");
    assert_eq!(
        a,
        environment_name("{app}-{id}", "shop", "v-2026-11-25-abc")
    );
    assert_ne!(
        a,
        environment_name("{app}-{id}", "shop", "v-2026-11-25-abd")
    );
    assert!(a.starts_with("shop-") && a.len() == 13, "{a}");
    for (template, app, version) in [
        ("{app}-{id}", "My Shop_App!", "v1"),
        ("{app}-{id}", &"x".repeat(100) as &str, "v1"),
        ("{app}-{version}-{id}", "shop", &"v".repeat(90) as &str),
        ("{id}", "a", "b"),
        ("-{app}-", "shop", "v1"),
    ] {
        let name = environment_name(template, app, version);
        assert!(
            valid_environment_name(&name),
            "{template} {app} {version} -> {name}"
        );
    }
    assert_eq!(
        environment_name("{app}-{id}", "My Shop_App!", "v1")
            .split('-')
            .next(),
        Some("my")
    );
}

#[test]
fn state_fits_a_continuation_token() {
    let state = State {
        env_id: "e-abcdefghij".into(),
        env_name: "x".repeat(40),
        live: Some("y".repeat(40)),
        live_cname: Some(format!("{}.us-east-1.elasticbeanstalk.com", "z".repeat(40))),
        cursor_ms: u64::MAX,
        started_ms: u64::MAX,
        attempt: 1000,
        template: Some(format!("beanswap-{}", "x".repeat(40))),
        status_checked_ms: u64::MAX / 2,
        status: "Launching".into(),
        health: "Grey".into(),
        transient: "x".repeat(200),
    };
    let token = crate::outcome::encode_state(&state).unwrap();
    assert!(token.len() < 600, "{token}");
    assert_eq!(
        crate::outcome::decode_state::<State>(&token).unwrap(),
        state
    );
}
