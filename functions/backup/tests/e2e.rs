//! The backup binary through the real SDK against local-aws's RDS and a real PostgreSQL: the snapshot is
//! taken, waited for across continuation tokens until available, its id set as `SnapshotId`; a Lambda
//! retry of the same execution adopts it instead of taking a second; a later execution's backup keeps
//! only the newest `keep` of beanswap's snapshots and never a snapshot a person took; a missing instance
//! is the pipeline's configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use local_aws::beanstalk::Options;
use local_aws::rds::Instance;
use test_support::bed::Bed;
use test_support::postgres;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_backup"))
}

fn params(execution: &str, keep: usize) -> String {
    format!(
        r#"{{"db_instance":"shop-db","application":"shop","version_label":"v-{execution}","pipeline_execution":"{execution}","keep":{keep},"poll_seconds":0}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_taken_once_per_execution_and_only_the_newest_are_kept() {
    let bed = Bed::start(Options::default()).await;
    let login = postgres::database("backup");
    local_aws::postgres::psql(
        &login,
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    bed.local.add_db_instance(Instance {
        id: "shop-db".into(),
        host: login.host.clone(),
        port: login.port,
        database: login.database.clone(),
        user: login.user.clone(),
        password: login.password.clone(),
        snapshot_dir: Some(dir.path().to_path_buf()),
    });
    let mut f = bed.function(binary()).await;

    // poll_seconds 0: every invocation looks once and hands over until the dump is complete.
    let first = bed.drive(&mut f, &params("exec-1", 2), 200).await;
    let id1 = first.variable("SnapshotId");
    assert_eq!(
        id1,
        beanswap_core::backup::snapshot_id("shop", "v-exec-1", Some("exec-1"))
    );
    assert!(
        first
            .summary()
            .contains(&format!("snapshot {id1} of shop-db is available")),
        "{}",
        first.summary()
    );
    assert!(dir.path().join(format!("{id1}.dump")).exists());

    // A Lambda retry of the same execution (a new job, no token): the same snapshot, not a second.
    let retried = bed.drive(&mut f, &params("exec-1", 2), 200).await;
    assert_eq!(retried.variable("SnapshotId"), id1);
    assert_eq!(bed.local.call_counts()["RDS.CreateDBSnapshot"], 1);

    // A snapshot someone took by hand is never pruned.
    let (ok, _, err) = test_support::aws_cli(
        &bed.local.endpoint(),
        "rds",
        &[
            "create-db-snapshot",
            "--db-instance-identifier",
            "shop-db",
            "--db-snapshot-identifier",
            "by-hand",
        ],
    )
    .await;
    assert!(ok, "{err}");

    let id2 = bed
        .drive(&mut f, &params("exec-2", 2), 200)
        .await
        .variable("SnapshotId");
    let third = bed.drive(&mut f, &params("exec-3", 2), 200).await;
    let id3 = third.variable("SnapshotId");
    assert!(
        third.summary().contains(&format!(
            "deleted 1 older backup beyond the newest 2: {id1}"
        )),
        "{}",
        third.summary()
    );
    let (ok, out, err) = test_support::aws_cli(
        &bed.local.endpoint(),
        "rds",
        &[
            "describe-db-snapshots",
            "--db-instance-identifier",
            "shop-db",
            "--query",
            "DBSnapshots[].DBSnapshotIdentifier",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let mut left: Vec<String> = serde_json::from_str(&out).unwrap();
    left.sort();
    let mut expected = vec!["by-hand".to_string(), id2, id3];
    expected.sort();
    assert_eq!(left, expected);
    assert!(!dir.path().join(format!("{id1}.dump")).exists());

    let missing = bed
        .drive(
            &mut f,
            r#"{"db_instance":"no-such-db","application":"shop","version_label":"v9"}"#,
            5,
        )
        .await;
    // The role may snapshot the stack's own instance only: another name is refused before RDS looks
    // it up (IAM decides first), naming the instance, as AWS answers.
    assert_eq!(missing.failure_type(), "PermissionError");
    assert!(
        missing.failure().contains("db:no-such-db"),
        "{}",
        missing.failure()
    );
    // Without enforcement, the instance that does not exist is the answer: a ConfigurationError.
    bed.local.set_identities(None);
    bed.proxy.set_identities(None);
    let missing = bed
        .drive(
            &mut f,
            r#"{"db_instance":"no-such-db","application":"shop","version_label":"v9"}"#,
            5,
        )
        .await;
    assert_eq!(missing.failure_type(), "ConfigurationError");
    assert!(
        missing.failure().contains("DBInstanceNotFound"),
        "{}",
        missing.failure()
    );
}
