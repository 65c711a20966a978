//! swap's bake against real parts: local-aws measures enhanced health from the requests its router
//! served (DescribeEnvironmentHealth), moto keeps the CloudWatch alarms, and clients keep hitting the
//! production CNAME while a release that fails some of its requests takes over and is moved back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use common::{bed, Load, PROD};
use serde_json::json;
use test_support::job_event;

fn params(extra: serde_json::Value, resolve: &str) -> String {
    let mut p = json!({
        "application": "shop",
        "staged_environment": "shop-b",
        "production_cname": "shop-prod",
        "mode": "cname",
        "verify": {"path": "/version", "timeout_seconds": 5},
        "resolve": resolve,
        "bake_poll_seconds": 1,
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p.to_string()
}

#[tokio::test]
async fn a_release_that_fails_requests_after_the_move_is_moved_back_by_the_bake() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    // The bug ships in the bundle: every 5th request of each instance answers 500 (not /health, so
    // the load balancer keeps the instance and smoke tests of a few requests pass).
    bed.version_with("v2", "v2", &[("ERROR_PERCENT", "20")])
        .await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;

    let load = Load::start(&bed, PROD, 4);
    load.wait_for(50).await;
    let event = job_event(&params(
        json!({"bake_minutes": 0.5, "bake_max_5xx_percent": 5}),
        &bed.resolve(),
    ));
    let started = Instant::now();
    let reports = bed.run_job(&event).await;
    let took = started.elapsed();
    let (kind, message) = reports.last().unwrap().failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.starts_with("the bake caught `shop-b` at "),
        "{message}"
    );
    assert!(
        message.contains("requests answered 5xx over the last 10 s (threshold 5 %)"),
        "{message}"
    );
    assert!(
        message.contains("Swapped back: `shop-a` serves `shop-prod.us-east-1.elasticbeanstalk.com` again and `shop-b` is out of service"),
        "{message}"
    );
    // Caught by a reading, long before the 30 s bake would have ended.
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(bed.swaps(), 2);
    assert_eq!(bed.env(&a.id).await.cname, PROD);
    assert!(bed.out_of_service(&b.id).await);
    assert!(!bed.out_of_service(&a.id).await);
    let (_, failures, seen) = load.stop().await;
    assert!(
        !failures.is_empty(),
        "the bad release answered some requests: {seen:?}"
    );
    // Production is v1 again, and nothing fails any more.
    bed.serves(PROD, "v1").await;
    let after = Load::start(&bed, PROD, 4);
    after.wait_for(100).await;
    let (_, failures, seen) = after.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["v1"]);
}

#[tokio::test]
async fn a_quiet_bake_passes_and_only_then_marks_the_old_environment() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    bed.launch("shop-b", "shop-b", "v2").await;
    let load = Load::start(&bed, PROD, 2);
    load.wait_for(20).await;
    let reports = bed
        .run_job(&job_event(&params(
            json!({"bake_minutes": 0.05, "bake_max_p99_ms": 5000}),
            &bed.resolve(),
        )))
        .await;
    let (_, failures, _) = load.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    let done = reports.last().unwrap().succeeded();
    let bake = done["Bake"].as_str().unwrap();
    assert!(bake.starts_with("passed: baked 3 s: "), "{bake}");
    assert!(bake.ends_with("no breach"), "{bake}");
    let tags = bed.tags(&a.id).await;
    let since = humantime::parse_rfc3339(&tags["beanswap:out-of-service-since"]).unwrap();
    let b_tags = bed.tags(&bed.env(&a.id).await.id).await;
    assert!(b_tags.contains_key("beanswap:out-of-service-since"));
    // Marked after the bake: at least its 3 s after the move (the swap event's time).
    let events = bed
        .eb
        .describe_events()
        .environment_name("shop-b")
        .send()
        .await
        .unwrap();
    let swapped = events
        .events()
        .iter()
        .find(|e| {
            e.message()
                .unwrap_or_default()
                .starts_with("Completed swapping CNAMEs")
        })
        .and_then(|e| e.event_date())
        .map(|d| std::time::SystemTime::try_from(*d).unwrap())
        .expect("the swap's event");
    assert!(
        since + Duration::from_secs(1) >= swapped + Duration::from_secs(3),
        "marked out of service {since:?}, swapped {swapped:?}"
    );
}

#[tokio::test]
async fn a_cloudwatch_alarm_in_alarm_during_the_bake_moves_production_back() {
    let mut bed = bed().await;
    let cw = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .endpoint_url(bed.local.endpoint())
            // The administrator: the test's own alarm, not swap's call.
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
                test_support::identities::ADMIN_KEY,
                "local",
                None,
                None,
                "admin",
            ))
            .build(),
    );
    cw.put_metric_alarm()
        .alarm_name("shop-errors")
        .namespace("AWS/ElasticBeanstalk")
        .metric_name("ApplicationRequests5xx")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    cw.set_alarm_state()
        .alarm_name("shop-errors")
        .state_value(StateValue::Ok)
        .state_reason("quiet")
        .send()
        .await
        .unwrap();
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    bed.launch("shop-b", "shop-b", "v2").await;

    // The alarm goes off once v2 serves production, as a real one would a minute later.
    let router = bed.local.router_endpoint();
    let alarm = cw.clone();
    let trip = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let r = http
                .get(format!("{router}/version"))
                .header("host", PROD)
                .send()
                .await;
            if let Ok(r) = r {
                if r.text().await.unwrap_or_default().trim() == "v2" {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        alarm
            .set_alarm_state()
            .alarm_name("shop-errors")
            .state_value(StateValue::Alarm)
            .state_reason(
                "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0).",
            )
            .send()
            .await
            .unwrap();
    });
    let reports = bed
        .run_job(&job_event(&params(
            json!({"bake_minutes": 0.5, "bake_alarms": ["shop-errors"]}),
            &bed.resolve(),
        )))
        .await;
    trip.await.unwrap();
    let (kind, message) = reports.last().unwrap().failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.contains("CloudWatch alarm `shop-errors` is in ALARM: Threshold Crossed"),
        "{message}"
    );
    assert_eq!(bed.env(&a.id).await.cname, PROD);
    bed.serves(PROD, "v1").await;
}

/// Capacity before the move, against local-aws's instances: the live environment runs 3, the clone 1;
/// swap raises the clone's MinSize to 3, moves production once 3 instances are healthy, then restores
/// MinSize 1.
#[tokio::test]
async fn a_smaller_clone_is_raised_to_the_live_size_before_the_move_and_restored_after() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    bed.launch_sized("shop-a", "shop-prod", "v1", Some((3, 4)))
        .await;
    let b = bed
        .launch_sized("shop-b", "shop-b", "v2", Some((1, 4)))
        .await;
    let counts = bed.local.instance_counts();
    assert_eq!((counts["shop-a"], counts["shop-b"]), (3, 1), "{counts:?}");
    let load = Load::start(&bed, PROD, 4);
    load.wait_for(50).await;
    let reports = bed
        .run_job(&job_event(&params(json!({}), &bed.resolve())))
        .await;
    load.wait_for(50).await;
    let (_, failures, _) = load.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    let done = reports.last().unwrap();
    let summary = done.summary();
    assert!(
        summary.contains("`shop-b` ran 3 instances for the move, its MinSize is 1 again"),
        "{summary}"
    );
    assert_eq!(bed.env(&b.id).await.cname, PROD);
    let waited = reports.iter().any(|r| {
        r.summary()
            .contains("to run 3 healthy instances as the live `shop-a` does")
    });
    let calls = bed.local.call_counts();
    assert_eq!(
        calls.get("ElasticBeanstalk.UpdateEnvironment").copied(),
        Some(2),
        "raised once, restored once: {calls:?}"
    );
    eprintln!("waited across invocations for the instances: {waited}");
    let settings = bed
        .eb
        .describe_configuration_settings()
        .application_name("shop")
        .environment_name("shop-b")
        .send()
        .await
        .unwrap();
    let min = settings.configuration_settings()[0]
        .option_settings()
        .iter()
        .find(|o| {
            o.namespace() == Some("aws:autoscaling:asg") && o.option_name() == Some("MinSize")
        })
        .and_then(|o| o.value())
        .map(str::to_string);
    assert_eq!(min.as_deref(), Some("1"));
}
