//! The whole pipeline of pipeline-template.json on the local default, with the real function binaries:
//! v1 then v2 reach production with no failed request, the old environment is retired per the retire
//! settings; a failing smoke test stops the pipeline before the approval and production keeps serving v1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use beanswap_cli::pipeline::{Approval, Ui};
use beanswap_cli::run::{self, Settings};

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

fn settings(sources: Vec<PathBuf>, extra: &[(&str, &str)], report: &std::path::Path) -> Settings {
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
    }
}

#[tokio::test]
async fn v1_then_v2_reach_production_with_no_failed_request_and_v1_is_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    let v2 = run::changed_copy(&v1, tmp.path(), "v2\n").unwrap();
    let ui = Ui { json: true };
    let outcome = run::run(&settings(vec![v1, v2], &[], tmp.path()), &ui)
        .await
        .unwrap();
    for r in &outcome.runs {
        assert!(r.failure.is_none(), "{:?}\n{}", r.failure, outcome.report);
    }
    assert_eq!(outcome.runs.len(), 2);
    assert!(outcome.probe.requests > 50, "{}", outcome.report);
    assert_eq!(outcome.probe.failures, 0, "{}", outcome.report);
    assert!(outcome.ok);
    let second = &outcome.runs[1].variables;
    // v2's environment serves production; v1's was retired (keep 1 previous: the first one is kept
    // out of production for rollback, nothing older exists to terminate).
    assert_eq!(
        second["Swap.LiveEnvironmentName"],
        second["Stage.EnvironmentName"]
    );
    assert_eq!(
        second["Swap.PreviousEnvironmentName"],
        outcome.runs[0].variables["Stage.EnvironmentName"]
    );
    assert!(
        outcome.report.contains("<- production"),
        "{}",
        outcome.report
    );
    assert!(outcome.svg.exists());
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
    assert_eq!(
        outcome.probe.failures, 0,
        "production kept serving v1: {}",
        outcome.report
    );
}
