//! stage against a real PostgreSQL shared by the environments, with the example app's own migration
//! (migrate.py as a leader_only container command, .ebextensions/db-migrate.config) and the credentials
//! delivered as Beanstalk's secret environment variable: a migration runs once per new environment, a
//! Lambda retry of stage adopts the environment instead of migrating again, a migration run again anyway
//! skips what it applied; a database the staged environment cannot reach fails staging with the
//! migration's own words from the tail logs, production untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::types::EnvironmentInfoType;
use local_aws::beanstalk::Options;
use local_aws::postgres::{psql, Login};
use test_support::bed::Bed;
use test_support::lambda::Function;
use test_support::postgres;

use test_support::SOLUTION_STACK as STACK;

fn app_file(path: &str) -> String {
    std::fs::read_to_string(
        test_support::workspace_root()
            .join("examples/app")
            .join(path),
    )
    .unwrap()
}

/// The example app with its migration command and `extra` files.
fn bundle(version: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let config = app_file(".ebextensions/db-migrate.config");
    let mut files: Vec<(&str, &str)> = vec![(".ebextensions/db-migrate.config", config.as_str())];
    files.extend(extra.iter().map(|(n, c)| (*n, c.as_str())));
    test_support::app_bundle(version, &files)
}

/// Stage's parameters for a first deployment whose environment reaches `host:port` with `secret`.
fn params(label: &str, host: &str, port: u16, database: &str, secret: &str) -> String {
    let env = "aws:elasticbeanstalk:application:environment";
    let settings = [
        (env, "DATABASE_HOST", host.to_string()),
        (env, "DATABASE_PORT", port.to_string()),
        (env, "DATABASE_NAME", database.to_string()),
        (
            "aws:elasticbeanstalk:application:environmentsecrets",
            "DATABASE_CREDENTIALS",
            secret.to_string(),
        ),
        ("aws:autoscaling:asg", "MinSize", "2".to_string()),
    ]
    .iter()
    .map(|(ns, name, value)| {
        format!(r#"{{"namespace":"{ns}","option_name":"{name}","value":"{value}"}}"#)
    })
    .collect::<Vec<_>>()
    .join(",");
    format!(
        r#"{{"application":"shop","version_label":"{label}","production_cname":"shop-prod","solution_stack":"{STACK}","poll_seconds":0.3,"option_settings":[{settings}]}}"#
    )
}

async fn secret(bed: &Bed, login: &Login) -> String {
    local_aws::secrets::create_secret(
        &reqwest::Client::new(),
        &bed.moto.endpoint(),
        &format!("db-{}", login.database),
        &serde_json::json!({"username": login.user, "password": login.password}).to_string(),
    )
    .await
    .unwrap()
}

async fn function(bed: &Bed) -> Function {
    bed.function(Path::new(env!("CARGO_BIN_EXE_stage"))).await
}

/// Every instance's tail log of an environment, through RequestEnvironmentInfo/RetrieveEnvironmentInfo.
async fn tail_logs(bed: &Bed, name: &str) -> String {
    // SampleTimestamp has milliseconds: what this request compiled is sampled at or after this.
    let now = std::time::SystemTime::now();
    let ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let asked = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    bed.eb
        .request_environment_info()
        .environment_name(name)
        .info_type(EnvironmentInfoType::Tail)
        .send()
        .await
        .unwrap();
    for _ in 0..100 {
        let out = bed
            .eb
            .retrieve_environment_info()
            .environment_name(name)
            .info_type(EnvironmentInfoType::Tail)
            .send()
            .await
            .unwrap();
        let fresh: Vec<_> = out
            .environment_info()
            .iter()
            .filter(|i| {
                i.sample_timestamp()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                    .is_some_and(|t| t >= asked)
            })
            .collect();
        if !fresh.is_empty() {
            let mut text = String::new();
            for i in fresh {
                text.push_str(
                    &reqwest::get(i.message().unwrap())
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap(),
                );
            }
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no tail logs for {name}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_runs_once_and_a_retried_stage_does_not_run_it_again() {
    let bed = Bed::start(Options::default()).await;
    let login = postgres::database("stage");
    let secret = secret(&bed, &login).await;
    let mut f = function(&bed).await;
    bed.version("v1", bundle("v1", &[])).await;
    let first = bed
        .drive(
            &mut f,
            &params("v1", &login.host, login.port, &login.database, &secret),
            60,
        )
        .await;
    assert!(first.succeeded(), "{}", first.failure());
    assert_eq!(
        psql(
            &login,
            "SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations"
        )
        .unwrap()
        .trim(),
        "0001_orders"
    );
    // The app reaches the database with the secret's credentials.
    let (status, body) = bed
        .get("shop-prod.us-east-1.elasticbeanstalk.com", "/api/orders")
        .await;
    assert_eq!(status, 200, "{body}");

    // v2: the expand-only migration. Its environment is a clone of the live one, with the same database
    // settings and secret; the migration runs on its leader.
    bed.version(
        "v2",
        bundle(
            "v2",
            &[(
                "migrations/0002_orders_note.sql",
                app_file("next/0002_orders_note.sql"),
            )],
        ),
    )
    .await;
    let v2 = params("v2", &login.host, login.port, &login.database, &secret);
    let staged = bed.drive(&mut f, &v2, 60).await;
    let name = staged.variable("EnvironmentName");
    // The schema each version sees once v2's migration ran: v2 (staged) expects 2 and finds 2; v1,
    // still in production until the swap, expects 1, finds 2, and still writes and reads orders on it.
    let schema = |host: String| {
        let bed = &bed;
        async move {
            let (status, body) = bed.get(&host, "/api/info").await;
            assert_eq!(status, 200, "{host}: {body}");
            let info: serde_json::Value = serde_json::from_str(&body).unwrap();
            (
                info["version"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                info["schema"]["expected"].clone(),
                info["schema"]["found"].clone(),
                info,
            )
        }
    };
    let (version, expected, found, info) = schema(staged.variable("Cname")).await;
    assert_eq!(
        (version.as_str(), expected, found),
        ("v2", 2.into(), 2.into()),
        "{info}"
    );
    let production = "shop-prod.us-east-1.elasticbeanstalk.com";
    let (version, expected, found, info) = schema(production.to_string()).await;
    assert_eq!(
        (version.as_str(), expected, found),
        ("v1", 1.into(), 2.into()),
        "{info}"
    );
    for _ in 0..2 {
        let (status, body) = bed.get(production, "/api/orders").await;
        assert_eq!(status, 200, "v1 writes on v2's schema: {body}");
        let orders: serde_json::Value = serde_json::from_str(&body).unwrap();
        let inserted = &orders["inserted"];
        assert_eq!(
            orders["latest"][0]["id"], *inserted,
            "v1 reads what it wrote: {body}"
        );
    }
    // Lambda retries the invocation (a new job, no token): the environment is adopted, not launched
    // again, so its container commands do not run again.
    let retried = bed.drive(&mut f, &v2, 60).await;
    assert_eq!(retried.variable("EnvironmentName"), name);
    assert_eq!(
        bed.local.call_counts()["ElasticBeanstalk.CreateEnvironment"],
        2
    );
    assert_eq!(
        psql(
            &login,
            "SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations"
        )
        .unwrap()
        .trim(),
        "0001_orders,0002_orders_note"
    );
    let logs = tail_logs(&bed, &name).await;
    assert_eq!(
        logs.matches("0002_orders_note: applied").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("Command 01_migrate\n").count(),
        1,
        "leader only, once: {logs}"
    );

    // The command running again anyway (the version redeployed onto the environment) skips what is
    // applied: 0002's ALTER TABLE, run twice, would fail the deployment.
    bed.eb
        .update_environment()
        .environment_name(&name)
        .version_label("v2")
        .send()
        .await
        .unwrap();
    let env = bed
        .wait_env(&name, Duration::from_secs(30), |e| {
            e.status().map(|s| s.as_str()) == Some("Ready")
        })
        .await;
    assert_eq!(env.health().map(|h| h.as_str()), Some("Green"));
    let logs = tail_logs(&bed, &name).await;
    assert_eq!(
        logs.matches("0002_orders_note: already applied").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        psql(&login, "SELECT count(*) FROM schema_migrations")
            .unwrap()
            .trim(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_the_staged_environment_cannot_reach_fails_staging_with_the_migrations_words() {
    let bed = Bed::start(Options::default()).await;
    let login = postgres::database("stage");
    let secret = secret(&bed, &login).await;
    let mut f = function(&bed).await;
    bed.version("v1", bundle("v1", &[])).await;
    // Nothing listens on this port: as a security group that does not admit the instances would leave it.
    let closed = test_support::free_port();
    let run = bed
        .drive(
            &mut f,
            &params("v1", "127.0.0.1", closed, &login.database, &secret),
            60,
        )
        .await;
    let message = run.failure();
    assert_eq!(run.failure_type(), "JobFailed");
    for expected in [
        "Instance deployment failed. For details, see 'eb-engine.log'.",
        "[INFO] Command 01_migrate",
        &format!(
            "could not connect to the database at 127.0.0.1:{closed}/{}",
            login.database
        ),
        "[ERROR] Command 01_migrate (python3 migrate.py) failed",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} not in:\n{message}"
        );
    }
}
