//! The manual operations against local-aws: status marks the live environment, events read back what
//! Beanstalk said, retire --dry-run reports without touching anything, and `beanswap rollback` (the
//! binary) moves production back once and then says there is nothing to do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use beanswap_cli::ops;
use local_aws::beanstalk::Options;
use test_support::bed::Bed;

use test_support::SOLUTION_STACK as STACK;

#[tokio::test]
async fn status_events_and_a_dry_run_retire() {
    let bed = Bed::start_unenforced(
        Options::default(),
        "beanswap's manual operations (status, events, retire --dry-run, rollback) run with the operator's own credentials, which the template defines no role for",
    )
    .await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    bed.version("v2", test_support::app_bundle("v2", &[])).await;
    for (name, prefix, label) in [
        ("shop-one", "shop-prod", "v1"),
        ("shop-two", "shop-two", "v2"),
    ] {
        bed.eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK)
            .tags(
                aws_sdk_elasticbeanstalk::types::Tag::builder()
                    .key("beanswap:application")
                    .value("shop")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        bed.wait_env(name, Duration::from_secs(20), |e| {
            e.status().map(|s| s.as_str()) == Some("Ready")
        })
        .await;
    }
    let config = ops::sdk_config(Some(&bed.local.endpoint()), None).await;
    let status = ops::status(&config, "shop", Some("shop-prod"))
        .await
        .unwrap();
    let live_line = status.lines().find(|l| l.contains("shop-one")).unwrap();
    assert!(live_line.trim_start().starts_with('*'), "{status}");
    assert!(
        status.contains("v2") && status.contains("serves production"),
        "{status}"
    );

    let events = ops::events(&config, "shop", "shop-two", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(
        events.contains("INFO Successfully launched environment: shop-two"),
        "{events}"
    );

    // A swap by hand; the rollback by the `beanswap` binary itself comes after the dry run below.
    // The same sequence as the swap action's (its words too).
    let plan = ops::cname_swap(
        "shop",
        "shop-prod",
        "shop-two",
        beanswap_core::beanstalk::HealthGate::Green,
    );
    let swapped = ops::swap(&config, &plan).await.unwrap();
    assert!(
        swapped.contains("swapped CNAMEs: `shop-two` now serves `shop-prod.us-east-1.elasticbeanstalk.com` (was `shop-one`)"),
        "{swapped}"
    );
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await
            .1,
        "v2\n"
    );
    let again = ops::swap(&config, &plan).await.unwrap();
    assert!(
        again.contains("`shop-two` already serves production (an earlier invocation moved it there from `shop-one`); nothing changed"),
        "{again}"
    );
    let status = ops::status(&config, "shop", Some("shop-prod"))
        .await
        .unwrap();
    assert!(status.contains("out of service since"), "{status}");

    let calls_before = bed.local.call_counts();
    let settings = beanswap_core::retire::exec::Settings {
        application: "shop".into(),
        production_cname: "shop-prod".into(),
        record: None,
        keep: 0,
        grace: Duration::ZERO,
        scale_down_kept: None,
        prune: None,
        dry_run: true,
        dns_ttl: Duration::from_secs(1),
    };
    let report = ops::retire(&config, &settings).await.unwrap();
    assert!(report.contains("shop-one"), "{report}");
    assert!(
        !report.contains("shop-one") || report.contains("production"),
        "{report}"
    );
    let calls_after = bed.local.call_counts();
    assert_eq!(
        calls_before.get("ElasticBeanstalk.TerminateEnvironment"),
        calls_after.get("ElasticBeanstalk.TerminateEnvironment"),
        "a dry run terminates nothing"
    );

    // `beanswap rollback`, the binary as a person runs it: production back on shop-one (the live
    // environment's previous one), served through the router; a second rollback changes nothing.
    let endpoint = bed.local.endpoint();
    let rollback = [
        "rollback",
        "--application",
        "shop",
        "--production-cname",
        "shop-prod",
        "--endpoint-url",
        &endpoint,
    ];
    let swaps_before = bed.local.call_counts()["ElasticBeanstalk.SwapEnvironmentCNAMEs"];
    let out = beanswap(&rollback).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rolled production back from `shop-two` to `shop-one` (CNAME swap: `shop-one` holds `shop-prod` again)"),
        "{stdout}"
    );
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await
            .1,
        "v1\n"
    );
    let status = ops::status(&config, "shop", Some("shop-prod"))
        .await
        .unwrap();
    let live_line = status.lines().find(|l| l.contains("shop-one")).unwrap();
    assert!(live_line.trim_start().starts_with('*'), "{status}");
    assert!(!live_line.contains("out of service since"), "{status}");
    let moved_away = status.lines().find(|l| l.contains("shop-two")).unwrap();
    assert!(moved_away.contains("out of service since"), "{status}");

    let out = beanswap(&rollback).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "production is already back on `shop-one` (rolled back from `shop-two`); nothing changed"
        ),
        "{stdout}"
    );
    assert_eq!(
        bed.local.call_counts()["ElasticBeanstalk.SwapEnvironmentCNAMEs"],
        swaps_before + 1,
        "one swap back, none by the repeated rollback"
    );
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await
            .1,
        "v1\n"
    );
}

/// Runs the `beanswap` binary this package builds, as a person would.
async fn beanswap(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_beanswap"))
        .args(args)
        .output()
        .await
        .unwrap()
}
