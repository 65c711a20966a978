//! RDS's snapshot operations against a real PostgreSQL, read back with the AWS CLI (botocore's own
//! parser): CreateDBSnapshot answers `creating` at once and the snapshot becomes `available` once its
//! pg_dump is complete; the dump restores the data it was taken of; DescribeDBSnapshots filters by
//! instance and identifier and carries the tags; DeleteDBSnapshot removes it; the model's error codes
//! for a missing instance, a taken identifier, a missing snapshot and a bad identifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use local_aws::postgres::{psql, restore};
use local_aws::rds::Instance;
use serde_json::Value;
use test_support::{aws_cli, postgres};

async fn rds(endpoint: &str, args: &[&str]) -> Result<Value, String> {
    let (ok, out, err) = aws_cli(endpoint, "rds", args).await;
    if ok {
        Ok(serde_json::from_str(&out).unwrap_or(Value::Null))
    } else {
        Err(err)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_a_pg_dump_that_restores_what_it_was_taken_of() {
    let login = postgres::database("rds");
    psql(
        &login,
        "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL); INSERT INTO orders (item) VALUES ('tea'), ('cake');",
    )
    .unwrap();
    let aws = test_support::local_aws().await;
    let dir = tempfile::tempdir().unwrap();
    aws.add_db_instance(Instance {
        id: "shop-db".into(),
        host: login.host.clone(),
        port: login.port,
        database: login.database.clone(),
        user: login.user.clone(),
        password: login.password.clone(),
        snapshot_dir: Some(dir.path().to_path_buf()),
    });
    let endpoint = aws.endpoint();

    let created = rds(
        &endpoint,
        &[
            "create-db-snapshot",
            "--db-instance-identifier",
            "shop-db",
            "--db-snapshot-identifier",
            "Beanswap-Shop-1",
            "--tags",
            "Key=beanswap:application,Value=shop",
        ],
    )
    .await
    .unwrap();
    let snapshot = &created["DBSnapshot"];
    // Identifiers are stored in lowercase; the answer comes before the dump is complete.
    assert_eq!(snapshot["DBSnapshotIdentifier"], "beanswap-shop-1");
    assert_eq!(snapshot["DBInstanceIdentifier"], "shop-db");
    assert_eq!(snapshot["Status"], "creating");
    assert_eq!(snapshot["SnapshotType"], "manual");
    assert_eq!(
        snapshot["DBSnapshotArn"],
        "arn:aws:rds:us-east-1:123456789012:snapshot:beanswap-shop-1"
    );
    assert_eq!(
        snapshot["TagList"],
        serde_json::json!([{"Key": "beanswap:application", "Value": "shop"}])
    );

    let started = Instant::now();
    let available = loop {
        let described = rds(
            &endpoint,
            &[
                "describe-db-snapshots",
                "--db-snapshot-identifier",
                "beanswap-shop-1",
            ],
        )
        .await
        .unwrap();
        let s = described["DBSnapshots"][0].clone();
        if s["Status"] == "available" {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(available["PercentProgress"], 100);
    let dump = dir.path().join("beanswap-shop-1.dump");
    assert!(dump.metadata().unwrap().len() > 0);
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("beanswap-shop-1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["database"], login.database.as_str());

    // Listing by instance finds it; another instance's name is DBInstanceNotFound.
    let listed = rds(
        &endpoint,
        &[
            "describe-db-snapshots",
            "--db-instance-identifier",
            "shop-db",
        ],
    )
    .await
    .unwrap();
    assert_eq!(listed["DBSnapshots"].as_array().unwrap().len(), 1);
    let missing = rds(
        &endpoint,
        &["describe-db-snapshots", "--db-instance-identifier", "nope"],
    )
    .await
    .unwrap_err();
    assert!(missing.contains("DBInstanceNotFound"), "{missing}");
    // Only manual snapshots exist here.
    let automated = rds(
        &endpoint,
        &[
            "describe-db-snapshots",
            "--db-instance-identifier",
            "shop-db",
            "--snapshot-type",
            "automated",
        ],
    )
    .await
    .unwrap();
    assert_eq!(automated["DBSnapshots"], serde_json::json!([]));

    // The dump restores what it was taken of.
    psql(&login, "DROP TABLE orders; CREATE TABLE other (x int);").unwrap();
    restore(&login, &dump, None).unwrap();
    let items = psql(
        &login,
        "SELECT string_agg(item, ',' ORDER BY id) FROM orders",
    )
    .unwrap();
    assert_eq!(items.trim(), "tea,cake");

    // The model's errors.
    let taken = rds(
        &endpoint,
        &[
            "create-db-snapshot",
            "--db-instance-identifier",
            "shop-db",
            "--db-snapshot-identifier",
            "beanswap-shop-1",
        ],
    )
    .await
    .unwrap_err();
    assert!(taken.contains("DBSnapshotAlreadyExists"), "{taken}");
    let no_instance = rds(
        &endpoint,
        &[
            "create-db-snapshot",
            "--db-instance-identifier",
            "other-db",
            "--db-snapshot-identifier",
            "x1",
        ],
    )
    .await
    .unwrap_err();
    assert!(no_instance.contains("DBInstanceNotFound"), "{no_instance}");
    let bad = rds(
        &endpoint,
        &[
            "create-db-snapshot",
            "--db-instance-identifier",
            "shop-db",
            "--db-snapshot-identifier",
            "1-bad--id",
        ],
    )
    .await
    .unwrap_err();
    assert!(bad.contains("InvalidParameterValue"), "{bad}");

    let deleted = rds(
        &endpoint,
        &[
            "delete-db-snapshot",
            "--db-snapshot-identifier",
            "beanswap-shop-1",
        ],
    )
    .await
    .unwrap();
    assert_eq!(deleted["DBSnapshot"]["Status"], "deleted");
    assert!(!dump.exists());
    let gone = rds(
        &endpoint,
        &[
            "describe-db-snapshots",
            "--db-snapshot-identifier",
            "beanswap-shop-1",
        ],
    )
    .await
    .unwrap_err();
    assert!(gone.contains("DBSnapshotNotFound"), "{gone}");
    assert_eq!(aws.call_counts()["RDS.CreateDBSnapshot"], 4);
}
