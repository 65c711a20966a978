#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use super::fake::{snapshot, FakeRds};
use super::*;
use crate::aws_error::{AwsError, Service};
use crate::clock::FakeClock;

fn plan() -> Plan {
    Plan {
        instance: "shop-db".into(),
        application: "shop".into(),
        version_label: "v2".into(),
        pipeline_execution: Some("exec-1".into()),
        snapshot_id: snapshot_id("shop", "v2", Some("exec-1")),
        keep: 2,
        timeout: Duration::from_secs(3600),
        poll_budget: Duration::from_secs(60),
    }
}

const OURS: &[(&str, &str)] = &[(TAG_APPLICATION, "shop"), (TAG_KIND, KIND_BACKUP)];

#[test]
fn the_identifier_is_the_executions_and_fits_rds_rule() {
    let a = snapshot_id("shop", "v2", Some("exec-1"));
    assert_eq!(
        a,
        snapshot_id("shop", "v9", Some("exec-1")),
        "the execution decides"
    );
    assert_ne!(a, snapshot_id("shop", "v2", Some("exec-2")));
    assert!(a.starts_with("beanswap-shop-") && a.len() == "beanswap-shop-".len() + 8);
    for app in ["My Shop_App!", "--x--", "", &"a".repeat(300)] {
        let id = snapshot_id(app, "v1", None);
        assert!(
            id.len() <= 255 && !id.contains("--") && !id.ends_with('-'),
            "{id}"
        );
        assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
    }
}

#[test]
fn decide_covers_every_state_a_snapshot_can_be_found_in() {
    let p = plan();
    let minute = Duration::from_secs(60);
    let mut s = snapshot(&p.snapshot_id, "shop-db", 1, OURS);
    assert_eq!(decide(&p, None, minute), Decision::Create);
    assert_eq!(decide(&p, Some(&s), minute), Decision::Done);
    s.status = "creating".into();
    assert_eq!(decide(&p, Some(&s), minute), Decision::Wait);
    assert!(matches!(
        decide(&p, Some(&s), Duration::from_secs(3600)),
        Decision::Fail(FailureKind::JobFailed, m) if m.contains("was not available within 1h")
    ));
    s.status = "failed".into();
    assert!(matches!(
        decide(&p, Some(&s), minute),
        Decision::Fail(FailureKind::JobFailed, m) if m.contains("is failed, not available")
    ));
    let theirs = snapshot(&p.snapshot_id, "shop-db", 1, &[]);
    assert!(matches!(
        decide(&p, Some(&theirs), minute),
        Decision::Fail(FailureKind::ConfigurationError, m) if m.contains("beanswap did not take it")
    ));
    let other_instance = snapshot(&p.snapshot_id, "blog-db", 1, OURS);
    assert!(matches!(
        decide(&p, Some(&other_instance), minute),
        Decision::Fail(FailureKind::ConfigurationError, _)
    ));
}

#[test]
fn only_beanswaps_available_backups_of_this_instance_beyond_the_newest_keep_are_deleted() {
    let p = plan();
    let mut creating = snapshot("b-creating", "shop-db", 1, OURS);
    creating.status = "creating".into();
    let mut automated = snapshot("rds:shop-db-2026", "shop-db", 2, OURS);
    automated.kind = "automated".into();
    let all = vec![
        snapshot("b-old", "shop-db", 10, OURS),
        snapshot("b-older", "shop-db", 5, OURS),
        snapshot("b-new", "shop-db", 30, OURS),
        // The one just taken sorts first even with a clock that says otherwise.
        snapshot("b-just-taken", "shop-db", 0, OURS),
        snapshot("manual-by-a-person", "shop-db", 1, &[]),
        snapshot(
            "other-app",
            "shop-db",
            1,
            &[(TAG_APPLICATION, "blog"), (TAG_KIND, KIND_BACKUP)],
        ),
        snapshot("other-instance", "blog-db", 1, OURS),
        creating,
        automated,
    ];
    assert_eq!(to_delete(&p, &all, "b-just-taken"), ["b-old", "b-older"]);
    let keep_one = Plan { keep: 1, ..plan() };
    assert_eq!(
        to_delete(&keep_one, &all, "b-just-taken"),
        ["b-new", "b-old", "b-older"]
    );
    let keep_zero = Plan { keep: 0, ..plan() };
    assert_eq!(
        to_delete(&keep_zero, &all, "b-just-taken").len(),
        3,
        "the new one is always kept"
    );
}

#[tokio::test]
async fn a_backup_takes_the_snapshot_waits_until_available_then_prunes() {
    let p = plan();
    let rds = FakeRds::with(vec![
        snapshot("beanswap-shop-a", "shop-db", 10, OURS),
        snapshot("beanswap-shop-b", "shop-db", 20, OURS),
    ])
    .slow(3);
    let clock = FakeClock::default();
    let outcome = run(&rds, &clock, &p, None).await.unwrap();
    let Outcome::Succeeded { summary, variables } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(variables["SnapshotId"], p.snapshot_id);
    assert!(variables["SnapshotArn"].ends_with(&p.snapshot_id));
    assert!(
        summary.contains("deleted 1 older backup beyond the newest 2: beanswap-shop-a"),
        "{summary}"
    );
    assert_eq!(
        rds.ids(),
        ["beanswap-shop-b".to_string(), p.snapshot_id.clone()]
    );
    let taken = rds.get(&p.snapshot_id).unwrap();
    assert_eq!(taken.tags[TAG_VERSION], "v2");
    assert_eq!(taken.tags[TAG_PIPELINE_EXECUTION], "exec-1");
    // A look finds nothing, one create, then looks with a doubling pause until the fourth sees it
    // available.
    assert_eq!(
        rds.calls()
            .iter()
            .filter(|c| c.starts_with("CreateDBSnapshot"))
            .count(),
        1
    );
    assert_eq!(clock.slept(), [1, 2, 4, 8].map(Duration::from_secs));
}

#[tokio::test]
async fn a_long_snapshot_hands_over_with_a_token_and_a_retry_adopts_it() {
    let p = Plan {
        poll_budget: Duration::from_secs(5),
        ..plan()
    };
    let rds = FakeRds::default().slow(100);
    let clock = FakeClock::default();
    let outcome = run(&rds, &clock, &p, None).await.unwrap();
    let Outcome::InProgress { state, summary, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        summary.starts_with(&format!("RDS is taking snapshot {}", p.snapshot_id)),
        "{summary}"
    );
    // CodePipeline invokes again (or Lambda retries the first invocation without the token): the
    // snapshot is found by its identifier, never taken twice.
    let later = FakeClock::at(clock.now() + Duration::from_secs(30));
    let again = run(&rds, &later, &p, None).await.unwrap();
    assert!(matches!(again, Outcome::InProgress { .. }));
    let more = run(&rds, &later, &p, Some(state)).await.unwrap();
    assert!(matches!(more, Outcome::InProgress { .. }));
    assert_eq!(
        rds.calls()
            .iter()
            .filter(|c| c.starts_with("CreateDBSnapshot"))
            .count(),
        1
    );
}

#[tokio::test]
async fn transient_trouble_is_waited_out_and_a_lost_race_is_adopted() {
    let p = plan();
    let rds = FakeRds::default();
    rds.fail_next(
        "DescribeDBSnapshots",
        AwsError::answered(
            Service::Rds,
            "DescribeDBSnapshots",
            "Throttling",
            "Rate exceeded",
        ),
    );
    rds.fail_next(
        "CreateDBSnapshot",
        AwsError::answered(
            Service::Rds,
            "CreateDBSnapshot",
            "InvalidDBInstanceState",
            "DB instance is not available (backing-up)",
        ),
    );
    let clock = FakeClock::default();
    let outcome = run(&rds, &clock, &p, None).await.unwrap();
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(
        rds.calls()
            .iter()
            .filter(|c| c.starts_with("CreateDBSnapshot"))
            .count(),
        2
    );

    // Another invocation created it between our look and our create: adopted, not a failure.
    let rds = FakeRds::default();
    rds.create_snapshot(&p.instance, &p.snapshot_id, &p.tags())
        .await
        .unwrap();
    let outcome = run(&rds, &FakeClock::default(), &p, None).await.unwrap();
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
}

#[tokio::test]
async fn refusals_end_the_backup_with_the_failure_type_of_their_class() {
    let p = plan();
    for (code, kind) in [
        ("DBInstanceNotFound", FailureKind::ConfigurationError),
        ("AccessDenied", FailureKind::PermissionError),
        ("SnapshotQuotaExceeded", FailureKind::JobFailed),
    ] {
        let rds = FakeRds::default();
        rds.fail_next(
            "CreateDBSnapshot",
            AwsError::answered(Service::Rds, "CreateDBSnapshot", code, "no"),
        );
        let e = run(&rds, &FakeClock::default(), &p, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{code}: {}", e.message);
        assert!(
            e.message.starts_with("RDS CreateDBSnapshot failed"),
            "{}",
            e.message
        );
    }
}

#[tokio::test]
async fn a_failed_deletion_is_named_and_left_for_the_next_backup() {
    let p = Plan { keep: 1, ..plan() };
    let rds = FakeRds::with(vec![snapshot("beanswap-shop-a", "shop-db", 10, OURS)]);
    rds.fail_next(
        "DeleteDBSnapshot",
        AwsError::answered(
            Service::Rds,
            "DeleteDBSnapshot",
            "InvalidDBSnapshotState",
            "not available",
        ),
    );
    let outcome = run(&rds, &FakeClock::default(), &p, None).await.unwrap();
    let Outcome::Succeeded { summary, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        summary.contains("not deleted this time: beanswap-shop-a"),
        "{summary}"
    );
    assert!(rds.get("beanswap-shop-a").is_some());
}

/// A refused deletion is the role's trouble, and every later backup would be refused as well: the
/// action fails with a PermissionError naming the action, instead of a note in a passing summary.
#[tokio::test]
async fn a_refused_deletion_fails_as_a_permission_error() {
    let p = Plan { keep: 1, ..plan() };
    let rds = FakeRds::with(vec![snapshot("beanswap-shop-a", "shop-db", 10, OURS)]);
    rds.fail_next(
        "DeleteDBSnapshot",
        AwsError::answered(
            Service::Rds,
            "DeleteDBSnapshot",
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/backup/BackupFunctionRole is not authorized to perform: rds:DeleteDBSnapshot",
        ),
    );
    let e = run(&rds, &FakeClock::default(), &p, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::PermissionError, "{}", e.message);
    assert!(
        e.message.contains("rds:DeleteDBSnapshot") && e.message.contains("is available"),
        "{}",
        e.message
    );
    assert!(rds.get("beanswap-shop-a").is_some());
}

#[test]
fn state_fits_a_continuation_token() {
    let state = State {
        started: u64::MAX,
        attempt: 1000,
        transient: "x".repeat(200),
    };
    let token = crate::outcome::encode_state(&state).unwrap();
    assert!(token.len() < 400, "{token}");
    assert_eq!(
        crate::outcome::decode_state::<State>(&token).unwrap(),
        state
    );
}
