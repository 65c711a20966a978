//! The manual operations against local-aws: status marks the live environment, events read back what
//! Beanstalk said, retire --dry-run reports without touching anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use beanswap_cli::ops;
use local_aws::beanstalk::Options;
use test_support::bed::Bed;

const STACK: &str = "64bit Amazon Linux 2023 v4.3.0 running Python 3.11";

#[tokio::test]
async fn status_events_and_a_dry_run_retire() {
    let bed = Bed::start(Options::default()).await;
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

    // A swap by hand, then a rollback by the core operation the CLI's `rollback` uses.
    let swapped = ops::swap(&config, "shop", "shop-prod", "shop-two", "Green")
        .await
        .unwrap();
    assert!(
        swapped.contains("shop-two now serves shop-prod"),
        "{swapped}"
    );
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await
            .1,
        "v2\n"
    );
    let again = ops::swap(&config, "shop", "shop-prod", "shop-two", "Green")
        .await
        .unwrap();
    assert!(again.contains("nothing to do"), "{again}");
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
}
