//! swap in cname and rollback modes: the real binary against local-aws, whose environments run the
//! example app behind a Host router, while clients hit the production CNAME through that router.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bed, Load, PROD};
use local_aws::faults::Faults;
use serde_json::json;
use test_support::job_event;

fn params(staged: &str, extra: serde_json::Value, resolve: &str) -> String {
    let mut p = json!({
        "application": "shop",
        "staged_environment": staged,
        "production_cname": "shop-prod",
        "mode": "cname",
        "verify": {"path": "/version", "timeout_seconds": 5},
        "resolve": resolve,
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p.to_string()
}

#[tokio::test]
async fn a_cname_swap_under_load_loses_no_request_and_is_not_undone_by_a_second_invocation() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;

    let load = Load::start(&bed, PROD, 8);
    load.wait_for(100).await;
    let event = job_event(&params(
        "shop-b",
        json!({"verify": {"path": "/version", "expected": "v2", "timeout_seconds": 5}}),
        &bed.resolve(),
    ));
    let calls_before = bed.local.call_counts();
    let report = bed.invoke(&event).await;
    let calls: std::collections::BTreeMap<String, u64> = bed
        .local
        .call_counts()
        .into_iter()
        .filter(|(op, _)| op.starts_with("ElasticBeanstalk."))
        .map(|(op, n)| {
            let before = calls_before.get(&op).copied().unwrap_or(0);
            (op, n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!("Beanstalk calls of the swap: {calls:?}");
    // Few calls: one listing, one wait for the tag change to pass, the swap showing; the staged
    // environment's tags read once; one swap; two tag changes (the staged one before, the old one after);
    // and the capacity of both (instances and Auto Scaling bounds: two calls each, match_capacity).
    assert!(calls.values().sum::<u64>() <= 12, "{calls:?}");
    load.wait_for(100).await;
    let (ok, failures, seen) = load.stop().await;
    eprintln!(
        "load during the swap: {ok} requests succeeded, {} failed, bodies {seen:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(seen.get("v1").copied().unwrap_or(0) >= 100, "{seen:?}");
    assert!(seen.get("v2").copied().unwrap_or(0) >= 100, "{seen:?}");

    assert_eq!(
        report.succeeded(),
        &json!({"LiveEnvironmentName": "shop-b", "PreviousEnvironmentName": "shop-a", "Mode": "cname", "Bake": "none"})
    );
    assert_eq!(
        swap::OUTPUT_VARIABLES.len(),
        report.succeeded().as_object().unwrap().len()
    );
    for name in swap::OUTPUT_VARIABLES {
        assert!(report.succeeded().get(name).is_some(), "{name}");
    }
    let summary = report.summary();
    assert!(summary.contains("swapped CNAMEs: `shop-b` now serves `shop-prod.us-east-1.elasticbeanstalk.com` (was `shop-a`)"), "{summary}");
    assert!(
        summary.contains(
            "verified: GET http://shop-prod.us-east-1.elasticbeanstalk.com/version answered `v2`"
        ),
        "{summary}"
    );
    assert_eq!(bed.env(&b.id).await.cname, PROD);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v2\n".into()));
    assert_eq!(bed.swaps(), 1);
    // Retire's grace period counts from the tag; the new live environment knows where it came from.
    let old_tags = bed.tags(&a.id).await;
    let since = old_tags
        .get("beanswap:out-of-service-since")
        .expect("tagged");
    assert!(humantime::parse_rfc3339(since).is_ok(), "{since}");
    let new_tags = bed.tags(&b.id).await;
    assert_eq!(
        new_tags
            .get("beanswap:previous-environment")
            .map(String::as_str),
        Some("shop-a")
    );
    assert!(!new_tags.contains_key("beanswap:out-of-service-since"));

    // Lambda retries the same job: the report is refused (the job is final), and nothing swaps back.
    let invocation = bed.function.invoke(event.clone()).await.unwrap();
    assert!(
        format!("{invocation:?}").contains("InvalidJobStateException"),
        "{invocation:?}"
    );
    // The pipeline runs the action again (a new job, same parameters): success, nothing swapped.
    let again = job_event(&params("shop-b", json!({}), &bed.resolve()));
    let report = bed.invoke(&again).await;
    assert_eq!(report.succeeded()["LiveEnvironmentName"], "shop-b");
    assert_eq!(report.succeeded()["PreviousEnvironmentName"], "shop-a");
    assert!(
        report.summary().contains(
            "already serves production (an earlier invocation moved it there from `shop-a`)"
        ),
        "{}",
        report.summary()
    );
    assert_eq!(bed.swaps(), 1);
    assert_eq!(bed.env(&b.id).await.cname, PROD);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v2\n".into()));
}

/// The first deployment: stage launched the only environment on the production CNAME, so swap has
/// nothing to move, and says so instead of claiming an earlier invocation moved it (issue 16.7).
#[tokio::test]
async fn the_first_deployments_swap_says_nothing_was_moved() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.launch("shop-a", "shop-prod", "v1").await;
    let report = bed
        .invoke(&job_event(&params("shop-a", json!({}), &bed.resolve())))
        .await;
    assert_eq!(report.succeeded()["LiveEnvironmentName"], "shop-a");
    assert_eq!(report.succeeded()["PreviousEnvironmentName"], "");
    let summary = report.summary();
    assert!(
        summary.contains("launched on the production CNAME as the first environment"),
        "{summary}"
    );
    assert!(!summary.contains("earlier invocation"), "{summary}");
    assert_eq!(bed.swaps(), 0);
}

#[tokio::test]
async fn a_staged_environment_that_went_red_is_not_swapped() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    bed.local.set_faults(Faults {
        red_after_seconds: [("shop-b".to_string(), 0.2)].into(),
        ..Faults::default()
    });
    let b = bed.launch("shop-b", "shop-b", "v2").await;
    bed.wait_until(&b.id, |e| e.health == "Red").await;

    let report = bed
        .invoke(&job_event(&params("shop-b", json!({}), &bed.resolve())))
        .await;
    let (kind, message) = report.failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.contains("the staged environment `shop-b` is not healthy now: health Red (Severe) (at least Green required); nothing was swapped"),
        "{message}"
    );
    assert!(
        message.contains("Environment health has transitioned"),
        "the events say why: {message}"
    );
    assert_eq!(bed.swaps(), 0);
    assert_eq!(bed.env(&a.id).await.cname, PROD);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v1\n".into()));
    assert!(!bed.out_of_service(&a.id).await);

    // Those events are read with the role's elasticbeanstalk:DescribeEvents (only on this path, which
    // the pipeline's run never takes): refused, the refusal is the failure, naming the action.
    let without = bed
        .identities
        .without("SwapFunctionRole", "elasticbeanstalk:DescribeEvents");
    test_support::bed::enforce(&bed.local, &bed.proxy, &without);
    let report = bed
        .invoke(&job_event(&params("shop-b", json!({}), &bed.resolve())))
        .await;
    let (kind, message) = report.failed();
    assert_eq!(kind, "PermissionError", "{message}");
    assert!(
        message.contains("is not healthy now")
            && message.contains("elasticbeanstalk:DescribeEvents"),
        "{message}"
    );
    assert_eq!(bed.swaps(), 0);
}

#[tokio::test]
async fn a_failed_verification_swaps_back_and_says_what_it_saw() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    // Version v2 whose bundle was built wrong: the app answers something else.
    bed.version("v2", "v2-broken").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;

    let load = Load::start(&bed, PROD, 4);
    load.wait_for(50).await;
    // No `expected`: the staged environment's version label, v2.
    let report = bed
        .invoke(&job_event(&params(
            "shop-b",
            json!({"verify": {"timeout_seconds": 2}}),
            &bed.resolve(),
        )))
        .await;
    load.wait_for(50).await;
    let (ok, failures, seen) = load.stop().await;
    eprintln!(
        "load during swap and swap-back: {ok} succeeded, {} failed, {seen:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");

    let (kind, message) = report.failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.contains("verification failed after the CNAME swap: after "),
        "{message}"
    );
    assert!(
        message.contains("wrong version: expected `v2`, the app serves `v2-broken`"),
        "{message}"
    );
    assert!(
        message.contains("request: GET http://shop-prod.us-east-1.elasticbeanstalk.com/version"),
        "{message}"
    );
    assert!(message.contains("Swapped back: `shop-a` serves `shop-prod.us-east-1.elasticbeanstalk.com` again and `shop-b` is out of service"), "{message}");
    assert_eq!(bed.swaps(), 2);
    assert_eq!(bed.env(&a.id).await.cname, PROD);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v1\n".into()));
    assert!(!bed.out_of_service(&a.id).await);
    assert!(bed.out_of_service(&b.id).await);
}

#[tokio::test]
async fn rollback_returns_production_to_the_previous_environment_once() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    let a = bed.launch("shop-a", "shop-prod", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;
    let report = bed
        .invoke(&job_event(&params("shop-b", json!({}), &bed.resolve())))
        .await;
    assert_eq!(report.succeeded()["LiveEnvironmentName"], "shop-b");

    let rollback = json!({
        "application": "shop",
        "production_cname": "shop-prod",
        "mode": "rollback",
        "verify": {"path": "/version", "timeout_seconds": 5},
        "resolve": bed.resolve(),
    })
    .to_string();
    let report = bed.invoke(&job_event(&rollback)).await;
    assert_eq!(
        report.succeeded(),
        &json!({"LiveEnvironmentName": "shop-a", "PreviousEnvironmentName": "shop-b", "Mode": "rollback", "Bake": "none"})
    );
    let summary = report.summary();
    assert!(
        summary.contains("rolled production back from `shop-b` to `shop-a` (CNAME swap"),
        "{summary}"
    );
    assert!(
        summary.contains("answered `v1`"),
        "expected the previous version: {summary}"
    );
    assert_eq!(bed.env(&a.id).await.cname, PROD);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v1\n".into()));
    assert_eq!(bed.swaps(), 2);
    assert!(!bed.out_of_service(&a.id).await);
    assert!(bed.out_of_service(&b.id).await);

    // Again: production is already back; nothing moves forward again.
    let report = bed.invoke(&job_event(&rollback)).await;
    assert!(
        report.summary().contains("already back on `shop-a`"),
        "{}",
        report.summary()
    );
    assert_eq!(bed.swaps(), 2);
    assert_eq!(bed.get(PROD, "/version").await, (200, "v1\n".into()));

    // The previous environment is gone (retired): a rollback says so and changes nothing. (Its
    // out-of-service tag made it busy for a moment: as on AWS, it can be terminated once Ready.)
    bed.wait_until(&b.id, |e| e.status == "Ready").await;
    bed.eb
        .terminate_environment()
        .environment_id(&b.id)
        .send()
        .await
        .unwrap();
    bed.wait_until(&b.id, |e| e.status == "Terminated").await;
    let report = bed
        .invoke(&job_event(
            &json!({"application": "shop", "production_cname": "shop-prod", "mode": "rollback", "staged_environment": "shop-b"})
                .to_string(),
        ))
        .await;
    let (_, message) = report.failed();
    assert!(message.contains("rollback: the previous environment `shop-b` no longer exists (retired?); production stays on `shop-a`"), "{message}");
    assert_eq!(bed.swaps(), 2);
}
