//! The whole pipeline of pipeline-template.json on the local default, with the real function binaries:
//! v1 then v2 reach production with no failed request, the old environment is retired per the retire
//! settings; a failing smoke test stops the pipeline before the approval and production keeps serving v1;
//! the `beanswap` binary deploys a git repository on already running servers, approved by a keypress,
//! printing JSON lines; Ctrl-C on it ends everything it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::EnvironmentStatus;
use beanswap_cli::local::{Endpoints, RunningLocalAws};
use beanswap_cli::pipeline::{Approval, Ui};
use beanswap_cli::run::{self, Settings};
use local_aws::LocalAws;
use serde_json::Value;
use test_support::moto::Moto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Every action of the template's pipeline, in order.
const ACTIONS: &[(&str, &str)] = &[
    ("Source", "Source"),
    ("Build", "Build"),
    ("Package", "CheckConfig"),
    ("Package", "Package"),
    ("Backup", "Backup"),
    ("Stage", "Stage"),
    ("SmokeTest", "SmokeTest"),
    ("Approval", "Approve"),
    ("Swap", "Swap"),
    ("Retire", "Retire"),
];
const PRODUCTION: &str = "shop-prod.us-east-1.elasticbeanstalk.com";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The function binaries live beside this test's own target directory (target/debug).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn settings(sources: Vec<PathBuf>, extra: &[(&str, &str)], report: &Path) -> Settings {
    let mut parameters = run::local_parameters();
    for (k, v) in extra {
        parameters.insert(k.to_string(), v.to_string());
    }
    Settings {
        root: root(),
        template: root().join("pipeline-template.json"),
        sources,
        parameters,
        approval: Approval::Auto,
        json: true,
        bin_dir: bin_dir(),
        launch_delay: Duration::from_millis(500),
        probe_rate: 100,
        report_dir: report.to_path_buf(),
        continuation_pause: Duration::from_millis(200),
        endpoints: Endpoints::default(),
        domain: None,
        title: "pipeline test".into(),
        now: None,
    }
}

/// moto and local-aws started by the test, so they outlive a run and can be asked what it left.
struct Cloud {
    moto: Moto,
    aws: LocalAws,
    eb: aws_sdk_elasticbeanstalk::Client,
}

impl Cloud {
    async fn start() -> Cloud {
        let moto = Moto::start().await;
        let aws = LocalAws::start_with(
            ([127, 0, 0, 1], 0).into(),
            local_aws::beanstalk::Options {
                s3_endpoint: Some(moto.endpoint()),
                route53_endpoint: Some(moto.endpoint()),
                ..run::cloud_options(Duration::from_millis(500))
            },
        )
        .await
        .unwrap();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            // The test's own look at what a run left is the administrator's, as the runner's are.
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                beanswap_iam::identity::ADMIN_KEY,
                "local",
                None,
                None,
                "test",
            ))
            .load()
            .await;
        let eb = aws_sdk_elasticbeanstalk::Client::from_conf(
            aws_sdk_elasticbeanstalk::config::Builder::from(&config)
                .endpoint_url(aws.endpoint())
                .build(),
        );
        Cloud { moto, aws, eb }
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            moto: Some(self.moto.endpoint()),
            local_aws: Some(RunningLocalAws {
                endpoint: self.aws.endpoint(),
                router: self.aws.router_addr(),
            }),
        }
    }

    /// Environment name -> status, terminated ones included.
    async fn environments(&self) -> BTreeMap<String, EnvironmentStatus> {
        self.eb
            .describe_environments()
            .include_deleted(true)
            .send()
            .await
            .unwrap()
            .environments()
            .iter()
            .map(|e| {
                (
                    e.environment_name().unwrap().to_string(),
                    e.status().unwrap().clone(),
                )
            })
            .collect()
    }
}

/// GET `path` on `host` through local-aws's router, as DNS would send the request to the load balancer.
async fn get(router: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{router}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// With a custom domain the whole pipeline runs as it does on AWS with one: the hosted zone in moto's
/// Route 53, swap creating the domain's record on the first deployment and moving it on the second,
/// retire reading it to know production, and users (the probe) reaching production by the domain only.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_custom_domain_route53_carries_production_from_v1_to_v2() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start().await;
    let v1 = root().join("examples/app");
    let v2 = run::changed_copy(&v1, tmp.path(), "v2\n").unwrap();
    let ui = Ui { json: true };
    let mut settings = settings(vec![v1, v2], &[], tmp.path());
    settings.endpoints = cloud.endpoints();
    settings.domain = Some("www.shop.test".into());
    let outcome = run::run(&settings, &ui).await.unwrap();
    let report = &outcome.report;
    for r in &outcome.runs {
        assert!(r.failure.is_none(), "{:?}\n{report}", r.failure);
    }
    assert_eq!(outcome.probe.failures, 0, "{report}");
    assert!(outcome.probe.requests > 20, "{report}");
    let (first, second) = (&outcome.runs[0].variables, &outcome.runs[1].variables);
    assert_eq!(first["Swap.Mode"], "route53");
    assert_eq!(second["Swap.Mode"], "route53");
    assert_eq!(
        second["Swap.PreviousEnvironmentName"], first["Stage.EnvironmentName"],
        "{report}"
    );
    // The domain serves v2; the record is an alias to v2's environment.
    let (status, body) = get(cloud.aws.router_addr(), "www.shop.test", "/version").await;
    assert_eq!(
        (status, body.trim()),
        (200, second["SourceVariables.CommitId"].as_str())
    );
    let route53 = test_support::clients::route53(&cloud.moto.endpoint());
    let zones = route53.list_hosted_zones().send().await.unwrap();
    let zone = zones
        .hosted_zones()
        .iter()
        .find(|z| z.name() == "shop.test.")
        .expect("the local run made the domain's zone");
    let records = route53
        .list_resource_record_sets()
        .hosted_zone_id(zone.id())
        .send()
        .await
        .unwrap();
    let alias = records
        .resource_record_sets()
        .iter()
        .find(|r| r.name() == "www.shop.test.")
        .and_then(|r| r.alias_target())
        .expect("an alias record for the domain");
    assert_eq!(
        alias.dns_name().trim_end_matches('.'),
        second["Stage.Cname"],
        "the domain points at v2's environment"
    );
    // Route 53 was really used: by swap (records, changes) and retire (reading production).
    let route53_calls: u64 = outcome
        .calls
        .iter()
        .filter(|(op, _)| op.starts_with("Route53."))
        .map(|(_, n)| n)
        .sum();
    assert!(route53_calls >= 4, "{:?}", outcome.calls);
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_then_v2_reach_production_with_no_failed_request_and_v1_is_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start().await;
    let v1 = root().join("examples/app");
    // v2 changes the schema (expand only: a column v2 writes and reads, v1 ignores).
    let v2 = run::next_release(&v1, tmp.path(), "v2\n", "0002_orders_note.sql").unwrap();
    let ui = Ui { json: true };
    // Keep no previous environment: once v2 is live, v1 is terminated (no grace period locally).
    let mut settings = settings(
        vec![v1, v2],
        &[("KeepPreviousEnvironments", "0")],
        tmp.path(),
    );
    settings.endpoints = cloud.endpoints();
    let outcome = run::run(&settings, &ui).await.unwrap();
    let report = &outcome.report;
    for r in &outcome.runs {
        assert!(r.failure.is_none(), "{:?}\n{report}", r.failure);
    }
    assert_eq!(outcome.runs.len(), 2);
    assert!(outcome.probe.requests > 50, "{report}");
    assert_eq!(outcome.probe.failures, 0, "{report}");
    assert!(outcome.ok);
    let (first, second) = (&outcome.runs[0].variables, &outcome.runs[1].variables);
    let v1_env = &first["Stage.EnvironmentName"];
    let v2_env = &second["Stage.EnvironmentName"];
    assert_ne!(v1_env, v2_env);

    // v2 serves production: its environment holds the production CNAME, and production answers v2's
    // version (the buildspec stamps the source revision into VERSION).
    assert_eq!(&second["Swap.LiveEnvironmentName"], v2_env);
    assert_eq!(&second["Swap.PreviousEnvironmentName"], v1_env);
    let (status, body) = get(cloud.aws.router_addr(), PRODUCTION, "/version").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), second["SourceVariables.CommitId"], "{report}");
    assert_ne!(
        second["SourceVariables.CommitId"],
        first["SourceVariables.CommitId"]
    );
    // The template's first-environment settings reached the app, the database's among them: the run's
    // own PostgreSQL (stopped with the run, so the app now says it cannot reach it).
    let (_, info) = get(cloud.aws.router_addr(), PRODUCTION, "/api/info").await;
    let info: serde_json::Value = serde_json::from_str(&info).expect("/api/info is JSON");
    assert!(
        info["database_status"]
            .as_str()
            .unwrap()
            .starts_with("database at 127.0.0.1:"),
        "{info}"
    );
    assert_eq!(info["schema"]["expected"], 2, "{info}");
    // Each deployment took a snapshot before Stage, v2's migration ran (once), and the version still in
    // production was checked against the migrated database before the approval.
    let snapshots = [&first["Backup.SnapshotId"], &second["Backup.SnapshotId"]];
    assert_ne!(snapshots[0], snapshots[1]);
    for id in snapshots {
        assert!(
            tmp.path()
                .join("snapshots")
                .join(format!("{id}.dump"))
                .exists(),
            "{report}"
        );
    }
    assert_eq!(
        first["Stage.LiveUrl"], "",
        "the first deployment has nothing to check"
    );
    assert_eq!(second["Stage.LiveUrl"], format!("http://{PRODUCTION}/"));
    assert!(
        second["SmokeTest.Summary"].contains(&format!(
            "the version in production passed the same checks at http://{PRODUCTION}/ against the migrated database"
        )),
        "{report}"
    );
    let migrations =
        regex::Regex::new(r"migrations applied: 1 0001_orders \S+, 2 0002_orders_note \S+;")
            .unwrap();
    assert!(migrations.is_match(report), "{report}");
    // The report says v1 passed the live check on v2's migrated database (from SmokeTest's result).
    assert!(
        report.contains(&format!(
            "live check of the version in production on the migrated database (SmokeTest, before the approval): deployment 1 none, nothing else served production; deployment 2 passed at http://{PRODUCTION}/\n"
        )),
        "{report}"
    );

    // v1 was retired per the retire settings (keep 0): terminated, nothing kept.
    assert_eq!(&second["Retire.Terminated"], v1_env, "{report}");
    assert_eq!(second["Retire.Kept"], "", "{report}");
    let started = Instant::now();
    loop {
        let environments = cloud.environments().await;
        assert_eq!(environments[v2_env], EnvironmentStatus::Ready);
        match &environments[v1_env] {
            EnvironmentStatus::Terminated => break,
            EnvironmentStatus::Terminating => {}
            other => panic!("v1's environment is {other:?} after retire"),
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The report: each deployment's actions, versions, environments, API calls per service, the probe.
    for d in 1..=2 {
        assert!(report.contains(&format!("deployment {d}:\n")), "{report}");
    }
    for (stage, action) in ACTIONS {
        let line = format!("✔ {:<26}", format!("{stage} / {action}"));
        assert_eq!(report.matches(&line).count(), 2, "{line}\n{report}");
    }
    assert!(!report.contains('✘'), "{report}");
    let versions = regex::Regex::new(r"(?m)^versions: (.+)$").unwrap();
    let versions = &versions.captures(report).expect(report)[1];
    for vars in [first, second] {
        assert!(
            versions.contains(&vars["Package.VersionLabel"]),
            "{versions}"
        );
    }
    let environments = report
        .split("environments:\n")
        .nth(1)
        .expect(report)
        .split("API calls:")
        .next()
        .unwrap();
    let env_line = |name: &str| {
        environments
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{report}"))
            .to_string()
    };
    let live = env_line(v2_env);
    assert!(
        live.contains("Ready") && live.contains(PRODUCTION) && live.ends_with("<- production"),
        "{live}"
    );
    let retired = env_line(v1_env);
    assert!(
        retired.contains("Terminat") && !retired.contains("<- production"),
        "{retired}"
    );
    let mut per_service: BTreeMap<&str, u64> = BTreeMap::new();
    for (op, n) in &outcome.calls {
        *per_service
            .entry(op.split('.').next().unwrap())
            .or_default() += n;
    }
    for service in ["CodePipeline", "ElasticBeanstalk", "S3"] {
        assert!(per_service[service] > 0, "{service}: {:?}", outcome.calls);
    }
    let calls_line = per_service
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        report.contains(&format!("API calls: {calls_line}\n")),
        "{calls_line}\n{report}"
    );
    // The counts are this run's: what the test's local-aws recorded, the test's own reads aside.
    let recorded = cloud.aws.call_counts();
    assert_eq!(
        outcome.calls["CodePipeline.PutJobSuccessResult"],
        recorded["CodePipeline.PutJobSuccessResult"]
    );
    assert!(
        report.contains(&format!(
            "load probe on http://{PRODUCTION}/api/orders: {} requests while production was up, 0 failed, max latency {} ms",
            outcome.probe.requests,
            outcome.probe.max_latency.as_millis()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("timeline: {}\n", outcome.svg.display())),
        "{report}"
    );
    // The pictures: the probe saw which version answered, v1's commit then v2's, and production moved
    // between them at the swap, with no answer from v1 after it (a CNAME swap is instant here).
    let data = &outcome.data;
    assert_eq!(data.totals(), outcome.probe);
    assert_eq!(
        data.versions(),
        [
            first["SourceVariables.CommitId"].clone(),
            second["SourceVariables.CommitId"].clone()
        ]
    );
    let moved = data.summary(1);
    assert!(moved.swap_at.is_some(), "{:?}", data.marks);
    // The probe's clients keep DNS answers for the TTL (some three times as long): v1 went on
    // answering them after the swap, and retire terminated it only once it had served nobody for a
    // TTL.
    assert!(moved.old_after_swap.unwrap_or(0) > 0, "{moved:?}");
    // ... and v1 alone answered until the swap: no answer by v2 before the Swap action began.
    assert_eq!(moved.new_before_swap, Some(0), "{moved:?}");
    assert_eq!(data.summary(0).new_before_swap, None);
    assert!(
        report.contains("answered by the new version before the swap: 0;"),
        "{report}"
    );
    assert!(
        moved.cutover.is_some() && moved.to_99.is_some(),
        "{moved:?}"
    );
    assert_eq!(moved.refused_draining, 0, "{moved:?}");
    let last_old = moved.old_until.unwrap();
    let terminated = data
        .marks
        .iter()
        .find(|m| m.kind == beanswap_cli::report::MarkKind::Termination)
        .map(|m| m.at)
        .unwrap();
    assert!(
        last_old + beanswap_cli::run::DNS_TTL <= terminated,
        "v1 answered at {last_old:?} and was terminated at {terminated:?}, within the TTL"
    );
    // Each environment ran the template's two instances.
    assert!(
        moved
            .instances
            .values()
            .any(|seen| seen.iter().any(|(_, n)| *n == 2)),
        "{moved:?}"
    );
    assert_eq!(
        data.summary(0).swap_at,
        None,
        "the first deployment moved nothing"
    );
    // The swap (once: Beanstalk records it for each environment, which is no rollback), the bake after
    // it (BakeMinutes 0.05) and retire's termination of v1's environment are marked.
    let kinds: Vec<_> = data.marks.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            beanswap_cli::report::MarkKind::Swap,
            beanswap_cli::report::MarkKind::Bake,
            beanswap_cli::report::MarkKind::Termination
        ],
        "{:?}",
        data.marks
    );
    // The page names what the probe requested, and says how its clients cache DNS.
    assert_eq!(data.target, run::probe_target(PRODUCTION));
    assert!(data.target.ends_with(run::PROBE_PATH), "{}", data.target);
    assert!(
        report.contains(&format!("({})", run::dns_caching()))
            && report.contains("(AWS: 60 s, scaled down for the local run)"),
        "{report}"
    );
    // Instances per environment over the run, one chart each: both environments ran two.
    assert!(data.series.len() >= 2, "{:?}", data.series);
    for s in &data.series {
        assert_eq!(s.unit, "instances");
        assert!(s.points.iter().any(|(_, n)| *n == 2.0), "{s:?}");
    }
    let page = std::fs::read_to_string(&outcome.html).unwrap();
    assert!(
        page.contains(&format!(
            "load probe on <code>http://{PRODUCTION}{}</code>",
            run::PROBE_PATH
        )),
        "{page}"
    );
    assert_eq!(
        page.matches(r#"<g class="series""#).count(),
        data.series.len(),
        "{page}"
    );
    assert_eq!(data.summary(0).failures + moved.failures, 0);
    let svg = std::fs::read_to_string(&outcome.svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("swap #2") && svg.contains("0 failed;"),
        "{svg}"
    );
    assert!(
        report.contains(&format!("report: {}\n", outcome.html.display())),
        "{report}"
    );
    // The page of this real run, in a real browser: clean, and its failure count is the run's.
    if let Some(chromium) = browser::chromium() {
        let page = browser::render(&chromium, &outcome.html);
        browser::assert_clean(&page);
        assert_eq!(page.metric("page failures"), "0");
        assert_eq!(
            page.metric("page requests"),
            outcome.probe.requests.to_string()
        );
        assert_eq!(page.found("table#summary tbody tr"), 2);
        assert_eq!(page.found("#timeline g.lane"), ACTIONS.len() as u64);
        // The run's own screenshot, at the height it estimated, holds the whole page.
        let png = outcome.png.as_ref().expect("the run took a screenshot");
        let (width, height) = browser::png_size(png);
        assert_eq!(width, beanswap_cli::report::browser::WIDTH);
        assert!(
            height + 40 >= page.height(),
            "a {height} px screenshot of a {} px page",
            page.height()
        );
    }
}

/// `beanswap demo --break-migration`: v2's migration adds a required column v1 does not write. The staged v2 passes,
/// the live v1 fails against the migrated database, so the pipeline stops before the approval and the
/// swap, naming the migration and the snapshot; `beanswap restore --snapshot` brings the schema back.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_that_breaks_v1_stops_before_the_swap_and_its_snapshot_restores_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    let v2 = run::next_release(&v1, tmp.path(), "v2\n", "0002_orders_note_required.sql").unwrap();
    let ui = Ui { json: true };
    let outcome = run::run(&settings(vec![v1, v2], &[], tmp.path()), &ui)
        .await
        .unwrap();
    let report = &outcome.report;
    assert!(outcome.runs[0].failure.is_none(), "{report}");
    let failed = &outcome.runs[1];
    let snapshot = failed.variables["Backup.SnapshotId"].clone();
    let message = failed.failure.as_ref().expect("v2 stops").to_string();
    for expected in [
        "SmokeTest / SmokeTest failed: JobFailed: the migration broke the version in production: http://shop-prod.us-east-1.elasticbeanstalk.com/",
        &format!("the migrations of {} left it", failed.variables["Package.VersionLabel"]),
        "before the approval and the swap",
        &format!("restore the database from snapshot {snapshot}"),
        "null value in column \\\"note\\\" of relation \\\"orders\\\" violates not-null constraint",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    let reached: Vec<&str> = failed.actions.iter().map(|a| a.stage.as_str()).collect();
    assert!(
        !reached.contains(&"Approval") && !reached.contains(&"Swap"),
        "{reached:?}"
    );
    assert!(!outcome.ok);
    assert!(
        report.contains(&snapshot),
        "the report names the snapshot: {report}"
    );

    // The snapshot restores the schema v1 works with, into the same database.
    let restored = beanswap_cli::database::restore(tmp.path(), &snapshot).unwrap();
    assert!(restored.contains("schema version 1"), "{restored}");
    let again = beanswap_cli::database::restore(tmp.path(), "no-such-snapshot").unwrap_err();
    assert!(again.contains("no snapshot no-such-snapshot"), "{again}");
}

#[tokio::test]
async fn a_failing_smoke_test_stops_before_the_approval_and_production_keeps_v1() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    // v2 builds, launches and is healthy, but serves the wrong version: the smoke test's version check
    // must catch it.
    let v2 = run::changed_copy(&v1, tmp.path(), "v2\n").unwrap();
    let buildspec = std::fs::read_to_string(v2.join("buildspec.yml")).unwrap();
    let broken = buildspec.replace("> VERSION", "> /dev/null && echo not-the-commit > VERSION");
    assert_ne!(broken, buildspec, "the example buildspec writes VERSION");
    std::fs::write(v2.join("buildspec.yml"), broken).unwrap();
    let ui = Ui { json: true };
    let outcome = run::run(&settings(vec![v1, v2], &[], tmp.path()), &ui)
        .await
        .unwrap();
    assert!(outcome.runs[0].failure.is_none(), "{}", outcome.report);
    let failed = &outcome.runs[1];
    let message = failed.failure.as_ref().expect("v2 fails").to_string();
    assert!(
        message.starts_with("SmokeTest / SmokeTest failed"),
        "{message}"
    );
    assert!(message.contains("not-the-commit"), "{message}");
    let reached: Vec<&str> = failed.actions.iter().map(|a| a.stage.as_str()).collect();
    assert!(
        !reached.contains(&"Approval") && !reached.contains(&"Swap"),
        "{reached:?}"
    );
    assert!(!outcome.ok);
    assert!(
        outcome.report.contains(&format!("  stopped: {message}\n")),
        "{}",
        outcome.report
    );
    assert_eq!(
        outcome.probe.failures, 0,
        "production kept serving v1: {}",
        outcome.report
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=beanswap",
            "-c",
            "user.email=beanswap@example.com",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Processes started (directly or not) by a `beanswap` this test ran: they inherit its marker.
fn marked(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("BEANSWAP_CLI_TEST={marker}");
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !String::from_utf8_lossy(&environ).contains(&needle) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has ended; only its parent's wait is missing.
        if stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
        {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
    }
    found
}

/// A `beanswap` process whose every descendant is killed when the test ends, passed or not.
struct Cli {
    child: tokio::process::Child,
    marker: String,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        Cli::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, String)]) -> Cli {
        let marker = uuid::Uuid::new_v4().to_string();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_beanswap"))
            .args(args)
            .current_dir(root())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("BEANSWAP_CLI_TEST", &marker)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        Cli {
            child,
            marker,
            lines,
            stderr,
        }
    }

    /// The next stdout line, parsed: every line `--json` prints is one JSON object with an `event`.
    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .expect("no output for 120 s")
            .unwrap()?;
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value["event"].is_string(), "{line}");
        Some(value)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        for (pid, _) in marked(&self.marker) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_deploys_a_git_repository_on_running_servers_approved_by_a_keypress() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start().await;
    let repo = run::changed_copy(&root().join("examples/app"), tmp.path(), "git\n").unwrap();
    git(&repo, &["init", "--quiet"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "--quiet", "-m", "the app"]);
    // Not committed: `git archive` ships the commit, not the working tree.
    std::fs::write(repo.join("UNTRACKED"), "left out").unwrap();
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let branch = git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]);
    let report_dir = tmp.path().join("report");
    let (endpoint, router, moto) = (
        cloud.aws.endpoint(),
        cloud.aws.router_endpoint(),
        cloud.moto.endpoint(),
    );
    let template = root().join("pipeline-template.json");
    // A desktop's opener that notes what it was asked to open.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = tmp.path().join("opened");
    std::fs::write(
        bin.join("xdg-open"),
        format!(
            "#!/bin/sh\necho \"$1\" > {}.tmp && mv {0}.tmp {0}\n",
            opened.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x"])
        .arg(bin.join("xdg-open"))
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cli = Cli::start_with(
        &[
            "run",
            "--open",
            "--source",
            repo.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
            "--json",
            "--launch-delay",
            "500ms",
            "--continuation-pause",
            "200ms",
            "--probe-rate",
            "20",
            "--report-dir",
            report_dir.to_str().unwrap(),
            "--endpoint-url",
            &endpoint,
            "--router-url",
            &router,
            "--moto-url",
            &moto,
        ],
        &[("PATH", path), ("DISPLAY", ":99".into())],
    );
    let mut events = vec![];
    while let Some(event) = cli.next().await {
        if event["event"] == "approval-waiting" {
            assert_eq!(event["action"], "Approve");
            // The pipeline waits for the answer: nothing after the approval has started.
            assert!(
                !events.iter().any(|e: &Value| e["stage"] == "Swap"),
                "{events:?}"
            );
            // It runs on the given servers: no moto of its own.
            let started = marked(&cli.marker);
            assert!(
                !started.iter().any(|(_, c)| c.contains("moto_server")),
                "{started:?}"
            );
            let stdin = cli.child.stdin.as_mut().unwrap();
            stdin.write_all(b"y\n").await.unwrap();
            stdin.flush().await.unwrap();
        }
        events.push(event);
    }
    let status = cli.child.wait().await.unwrap();
    let stderr = (&mut cli.stderr).await.unwrap();
    assert!(status.success(), "{status}\n{stderr}\n{events:#?}");

    let named = |kind: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| {
                (
                    e["stage"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let expected: Vec<(String, String)> = ACTIONS
        .iter()
        .map(|(s, a)| (s.to_string(), a.to_string()))
        .collect();
    assert_eq!(named("action-started"), expected);
    assert_eq!(named("action-succeeded"), expected);
    let approved = events
        .iter()
        .find(|e| e["event"] == "action-succeeded" && e["action"] == "Approve")
        .unwrap();
    assert_eq!(approved["summary"], "approved");
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("local cloud: ")
            && l.contains(&format!("{router} (already running)"))
            && l.contains(&format!("{moto} (already running)"))),
        "{logs:#?}"
    );
    assert!(
        events.iter().any(|e| e["event"] == "beanstalk"),
        "Beanstalk events are shown: {events:#?}"
    );

    // Stage's wait said how far it was and what it waited for; a running local-aws's launch delay is
    // its own, so no time is expected.
    let waits: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "waiting" && e["action"] == "Stage")
        .collect();
    assert!(!waits.is_empty(), "{events:#?}");
    for w in &waits {
        assert!(w["percent"].as_u64().unwrap() <= 100, "{w}");
        assert!(
            w["waiting_for"].as_str().is_some_and(|s| !s.is_empty()),
            "{w}"
        );
        assert_eq!(w["expected_seconds"], Value::Null, "{w}");
    }
    // --open: the report, opened with the desktop's opener, as the last thing the run did.
    let open = events.last().unwrap();
    assert_eq!(open["event"], "open", "{open}");
    assert_eq!(open["with"], "xdg-open", "{open}");
    let waited = Instant::now();
    while !opened.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "xdg-open never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = events
        .iter()
        .rev()
        .find(|e| e["event"] == "report")
        .unwrap();
    let html = Path::new(report["html"].as_str().unwrap());
    assert!(html.exists(), "{report}");
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap().trim(),
        html.canonicalize().unwrap().display().to_string()
    );

    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["probe"]["failures"], 0, "{report}");
    assert!(
        report["probe"]["requests"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["calls"]["ElasticBeanstalk.CreateEnvironment"]
            .as_u64()
            .unwrap()
            > 0,
        "{report}"
    );
    assert!(
        report["calls"]["S3.PutObject"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        Path::new(report["timeline"].as_str().unwrap()).exists(),
        "{report}"
    );
    // The source revision is the repository's HEAD commit, and production serves exactly that.
    let variables = &report["variables"];
    assert_eq!(variables["SourceVariables.CommitId"], commit.as_str());
    assert_eq!(variables["SourceVariables.BranchName"], branch.as_str());
    let (status, body) = get(cloud.aws.router_addr(), PRODUCTION, "/version").await;
    assert_eq!((status, body.trim()), (200, commit.as_str()));
    assert!(cloud.aws.call_counts()["CodePipeline.PutJobSuccessResult"] > 0);
}

#[tokio::test]
async fn ctrl_c_ends_moto_local_aws_the_functions_and_the_apps() {
    let tmp = tempfile::tempdir().unwrap();
    let template = root().join("pipeline-template.json");
    let mut cli = Cli::start(&[
        "run",
        "--template",
        template.to_str().unwrap(),
        "--json",
        "--approve",
        "--launch-delay",
        "500ms",
        "--probe-rate",
        "5",
        "--report-dir",
        tmp.path().to_str().unwrap(),
    ]);
    loop {
        let event = cli
            .next()
            .await
            .expect("the run ended before the Stage action");
        // Stage's wait says what it expects: the launch delay of the local cloud this run started.
        if event["event"] == "waiting" && event["action"] == "Stage" {
            assert_eq!(event["expected_seconds"], 0.5, "{event}");
            assert_eq!(event["percent"], 0, "{event}");
            break;
        }
    }
    // Under way: moto, a function and the new environment's app run.
    let started = Instant::now();
    loop {
        let running = marked(&cli.marker);
        let has = |what: &str| running.iter().any(|(_, c)| c.contains(what));
        if has("moto_server") && has("app.py") && has("/stage") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all running: {running:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pid = cli.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), cli.child.wait())
        .await
        .expect("beanswap did not exit on Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let stderr = (&mut cli.stderr).await.unwrap();
    assert!(
        stderr.contains("interrupted; stopping everything it started"),
        "{stderr}"
    );
    let stopped = Instant::now();
    loop {
        let left = marked(&cli.marker);
        if left.is_empty() {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "outlived beanswap: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `beanswap demo --bad-release`: v3 passes the smoke test, then answers 5 % of production's requests
/// with 500; the swap's bake sees the 5xx share and moves production back to v2 by itself.
#[tokio::test]
async fn a_bad_release_is_caught_by_the_bake_and_production_returns_to_v2() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    let v2 = run::next_release(&v1, tmp.path(), "v2\n", "0002_orders_note.sql").unwrap();
    let v3 = run::bad_release(&v2, tmp.path()).unwrap();
    let ui = Ui { json: true };
    let outcome = run::run(&settings(vec![v1, v2, v3], &[], tmp.path()), &ui)
        .await
        .unwrap();
    let report = &outcome.report;
    assert!(outcome.runs[0].failure.is_none(), "{report}");
    assert!(outcome.runs[1].failure.is_none(), "{report}");
    let failed = &outcome.runs[2];
    let message = failed
        .failure
        .as_ref()
        .expect("v3 is moved back")
        .to_string();
    for expected in [
        "Swap / Swap failed: JobFailed: the bake caught ",
        "answered 5xx over the last 10 s (threshold 1 %)",
        "Swapped back: ",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    // v3's swap, its bake, and the bake's move back are marked on the page.
    let v3_marks: Vec<_> = outcome
        .data
        .marks
        .iter()
        .filter(|m| m.label.ends_with("#3"))
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        v3_marks,
        [
            beanswap_cli::report::MarkKind::Swap,
            beanswap_cli::report::MarkKind::Bake,
            beanswap_cli::report::MarkKind::Rollback
        ],
        "{:?}",
        outcome.data.marks
    );
    assert!(!outcome.ok);
    eprintln!("{report}");
}

/// SwapWindowCron: outside the window the Swap stage is not entered (FAIL stops the execution there,
/// SKIP goes on without it), as CodePipeline's DeploymentWindow entry condition does.
#[tokio::test]
async fn outside_the_deployment_window_swap_fails_or_is_skipped_as_configured() {
    // 2026-12-05 is a Saturday; the window is weekdays 09:00-16:59 UTC.
    let saturday = humantime::parse_rfc3339("2026-12-05T10:00:00Z").unwrap();
    for outside in ["FAIL", "SKIP"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(
            vec![root().join("examples/app")],
            &[
                ("SwapWindowCron", "* * 9-16 ? * MON-FRI"),
                ("SwapOutsideWindow", outside),
            ],
            tmp.path(),
        );
        s.now = Some(saturday);
        let outcome = run::run(&s, &Ui { json: true }).await.unwrap();
        let run = &outcome.runs[0];
        let reached: Vec<&str> = run.actions.iter().map(|a| a.stage.as_str()).collect();
        assert!(!reached.contains(&"Swap"), "{outside}: {reached:?}");
        let why = "rule SwapWindow: 2026-12-05T10:00:00Z is outside the deployment window `* * 9-16 ? * MON-FRI` (UTC)";
        if outside == "FAIL" {
            let failure = run
                .failure
                .as_ref()
                .expect("stopped before Swap")
                .to_string();
            assert_eq!(failure, format!("Swap was not entered: {why}"));
            assert!(!reached.contains(&"Retire"), "{reached:?}");
        } else {
            assert!(run.failure.is_none(), "{}", outcome.report);
            assert_eq!(run.skipped, vec![("Swap".to_string(), why.to_string())]);
            assert!(reached.contains(&"Retire"), "{reached:?}");
            assert!(
                outcome.report.contains(&format!("↷ Swap skipped: {why}")),
                "{}",
                outcome.report
            );
        }
    }
}

/// SwapOnFailure=ROLLBACK: when Swap fails (here the bake moved a bad release back), CodePipeline's
/// stage rollback runs Swap again with the previous successful execution's variables; production is
/// already on that execution's environment, so the rollback finds it there and succeeds.
#[tokio::test]
async fn a_failed_swap_is_rolled_back_by_the_stage_with_the_previous_executions_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    let v2 = run::next_release(&v1, tmp.path(), "v2\n", "0002_orders_note.sql").unwrap();
    let v3 = run::bad_release(&v2, tmp.path()).unwrap();
    let outcome = run::run(
        &settings(
            vec![v1, v2, v3],
            &[("SwapOnFailure", "ROLLBACK")],
            tmp.path(),
        ),
        &Ui { json: true },
    )
    .await
    .unwrap();
    let third = &outcome.runs[2];
    let failure = third.failure.as_ref().expect("v3's swap fails").to_string();
    assert!(failure.contains("the bake caught"), "{failure}");
    assert_eq!(
        third.rollback,
        Some(beanswap_cli::pipeline::Rollback::Done),
        "{}",
        outcome.report
    );
    let rerun = third
        .actions
        .iter()
        .find(|a| a.stage == "Swap (rollback)")
        .expect("Swap ran again");
    assert!(rerun.ok, "{}", rerun.summary);
    let v2_env = &outcome.runs[1].variables["Stage.EnvironmentName"];
    assert!(
        rerun
            .summary
            .contains(&format!("`{v2_env}` already serves production")),
        "{}",
        rerun.summary
    );
    assert!(
        outcome.report.contains("rolled back: the stage ran again"),
        "{}",
        outcome.report
    );
}

/// SwapAlarmName: after Swap succeeded, its success condition reads the alarm (local-aws's CloudWatch);
/// in ALARM it engages the stage's rollback, which needs an earlier successful execution.
#[tokio::test]
async fn an_alarm_in_alarm_after_swap_engages_the_stages_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start().await;
    let endpoint = cloud.aws.endpoint();
    for args in [
        vec![
            "put-metric-alarm",
            "--alarm-name",
            "shop-5xx",
            "--namespace",
            "AWS/ElasticBeanstalk",
            "--metric-name",
            "ApplicationRequests5xx",
            "--statistic",
            "Sum",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "5",
            "--comparison-operator",
            "GreaterThanThreshold",
        ],
        vec![
            "set-alarm-state",
            "--alarm-name",
            "shop-5xx",
            "--state-value",
            "ALARM",
            "--state-reason",
            "Threshold Crossed",
        ],
    ] {
        test_support::aws_cli_json(&endpoint, "cloudwatch", &args)
            .await
            .unwrap();
    }
    let mut settings = settings(
        vec![root().join("examples/app")],
        &[("SwapAlarmName", "shop-5xx")],
        tmp.path(),
    );
    settings.endpoints = cloud.endpoints();
    let outcome = run::run(&settings, &Ui { json: true }).await.unwrap();
    let run = &outcome.runs[0];
    assert!(
        run.actions.iter().any(|a| a.stage == "Swap" && a.ok),
        "{}",
        outcome.report
    );
    assert_eq!(
        run.failure.as_ref().map(ToString::to_string).as_deref(),
        Some("Swap succeeded, but its success condition failed: rule SwapAlarm: CloudWatch alarm `shop-5xx` is in ALARM (Threshold Crossed)")
    );
    assert_eq!(
        run.rollback,
        Some(beanswap_cli::pipeline::Rollback::Impossible(
            "no earlier execution succeeded, so there is nothing to roll back to".into()
        ))
    );
}
