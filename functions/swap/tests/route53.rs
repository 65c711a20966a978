//! swap in route53 and weighted modes: the real binary against moto's Route 53 and local-aws, whose
//! router resolves the custom domain through those records (weighted by weight), so the checks and the
//! clients below reach whichever environment the records point at.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bed, Bed, Load, DOMAIN, EB_ZONE_US_EAST_1};
use local_aws::faults::Faults;
use serde_json::json;
use test_support::job_event;

fn params(bed: &Bed, zone: &str, mode: &str, staged: &str, extra: serde_json::Value) -> String {
    let mut p = json!({
        "application": "shop",
        "staged_environment": staged,
        "mode": mode,
        "hosted_zone_id": zone,
        "domain": DOMAIN,
        "record_type": "alias",
        "verify": {"path": "/version", "timeout_seconds": 5},
        "resolve": bed.resolve(),
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p.to_string()
}

fn alias(
    target: &str,
    id: Option<&str>,
    weight: Option<i64>,
) -> (String, Option<String>, Option<i64>, String, Option<String>) {
    (
        "A".into(),
        id.map(str::to_string),
        weight,
        format!("{target}.us-east-1.elasticbeanstalk.com"),
        Some(EB_ZONE_US_EAST_1.into()),
    )
}

#[tokio::test]
async fn route53_mode_upserts_the_alias_verifies_and_restores_the_records_on_failure() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    bed.version("v3", "v3-broken").await;
    let a = bed.launch("shop-a", "shop-a", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;
    let zone = bed.hosted_zone().await;
    bed.alias(&zone, DOMAIN, "shop-a.us-east-1.elasticbeanstalk.com")
        .await;
    bed.serves(DOMAIN, "v1").await;

    let load = Load::start(&bed, DOMAIN, 4);
    load.wait_for(50).await;
    let report = bed
        .invoke(&job_event(&params(
            &bed,
            &zone,
            "route53",
            "shop-b",
            json!({}),
        )))
        .await;
    load.wait_for(50).await;
    let (ok, failures, seen) = load.stop().await;
    eprintln!(
        "load on {DOMAIN} during the UPSERT: {ok} succeeded, {} failed, {seen:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        report.succeeded(),
        &json!({"LiveEnvironmentName": "shop-b", "PreviousEnvironmentName": "shop-a", "Mode": "route53", "Bake": "none"})
    );
    assert!(
        report.summary().contains(
            "`shop.example.com` now points at `shop-b` (was `shop-a`), in sync; verified"
        ),
        "{}",
        report.summary()
    );
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![alias("shop-b", None, None)]
    );
    bed.serves(DOMAIN, "v2").await;
    assert!(bed.out_of_service(&a.id).await);
    assert_eq!(bed.swaps(), 0, "no CNAME swap in route53 mode");

    // Invoked again (a new job): already done, nothing changed.
    let report = bed
        .invoke(&job_event(&params(
            &bed,
            &zone,
            "route53",
            "shop-b",
            json!({}),
        )))
        .await;
    assert!(
        report.summary().contains("already serves production"),
        "{}",
        report.summary()
    );
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![alias("shop-b", None, None)]
    );

    // A new version that serves the wrong thing: the previous record comes back.
    bed.launch("shop-c", "shop-c", "v3").await;
    let report = bed
        .invoke(&job_event(&params(
            &bed,
            &zone,
            "route53",
            "shop-c",
            json!({"verify": {"timeout_seconds": 2}}),
        )))
        .await;
    let (kind, message) = report.failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message
            .contains("verification failed after pointing `shop.example.com` at `shop-c`: after "),
        "{message}"
    );
    assert!(
        message.contains("wrong version: expected `v3`, the app serves `v3-broken`"),
        "{message}"
    );
    assert!(
        message.contains("request: GET http://shop.example.com/version"),
        "{message}"
    );
    assert!(message.contains("Restored the previous records: `shop-b` serves `shop.example.com` again and `shop-c` is out of service"), "{message}");
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![alias("shop-b", None, None)]
    );
    bed.serves(DOMAIN, "v2").await;
    assert!(!bed.out_of_service(&b.id).await);

    // Rollback through the domain: back to shop-a, shop-b's previous environment.
    let rollback = json!({"application": "shop", "mode": "rollback", "hosted_zone_id": zone,
        "domain": DOMAIN, "verify": {"timeout_seconds": 5}, "resolve": bed.resolve()});
    let report = bed.invoke(&job_event(&rollback.to_string())).await;
    assert_eq!(
        report.succeeded(),
        &json!({"LiveEnvironmentName": "shop-a", "PreviousEnvironmentName": "shop-b", "Mode": "rollback", "Bake": "none"})
    );
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![alias("shop-a", None, None)]
    );
    bed.serves(DOMAIN, "v1").await;
}

#[tokio::test]
async fn route53_mode_writes_a_cname_record_when_asked() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    bed.launch("shop-a", "shop-prod", "v1").await;
    bed.launch("shop-b", "shop-b", "v2").await;
    let zone = bed.hosted_zone().await;
    // No record yet: production is the environment holding the production CNAME.
    let report = bed
        .invoke(&job_event(&params(
            &bed,
            &zone,
            "route53",
            "shop-b",
            json!({"record_type": "cname", "ttl": 30, "production_cname": "shop-prod"}),
        )))
        .await;
    assert_eq!(report.succeeded()["PreviousEnvironmentName"], "shop-a");
    let cname_to = |target: &str| {
        vec![(
            "CNAME".to_string(),
            None,
            None,
            format!("{target}.us-east-1.elasticbeanstalk.com"),
            None,
        )]
    };
    assert_eq!(bed.records(&zone, DOMAIN).await, cname_to("shop-b"));
    bed.serves(DOMAIN, "v2").await;

    // A rollback through the domain keeps the record a CNAME (the default record type is alias).
    let rollback = json!({"application": "shop", "mode": "rollback", "hosted_zone_id": zone,
        "domain": DOMAIN});
    let report = bed.invoke(&job_event(&rollback.to_string())).await;
    assert_eq!(report.succeeded()["LiveEnvironmentName"], "shop-a");
    assert!(
        report
            .summary()
            .contains("(`shop.example.com` points at `shop-a` again)"),
        "{}",
        report.summary()
    );
    // shop-a is the environment holding the production CNAME.
    assert_eq!(bed.records(&zone, DOMAIN).await, cname_to("shop-prod"));
    bed.serves(DOMAIN, "v1").await;
}

#[tokio::test]
async fn weighted_mode_shifts_in_steps_and_shifts_everything_back_when_a_step_fails() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2").await;
    bed.version("v3", "v3").await;
    bed.launch("shop-a", "shop-a", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;
    let zone = bed.hosted_zone().await;
    bed.alias(&zone, DOMAIN, "shop-a.us-east-1.elasticbeanstalk.com")
        .await;

    let event = job_event(&params(
        &bed,
        &zone,
        "weighted",
        "shop-b",
        json!({"steps": [10, 50, 100], "bake_seconds": 1}),
    ));
    let first = bed.invoke(&event).await;
    assert!(first.continuation_token().is_some(), "{:?}", first.body);
    assert_eq!(first.body["executionDetails"]["percentComplete"], 10);
    assert!(first.body.get("outputVariables").is_none());
    // The simple record became two weighted ones in the same batch.
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![
            alias("shop-a", Some("shop-a"), Some(90)),
            alias("shop-b", Some("shop-b"), Some(10))
        ]
    );
    let mut next = event.clone();
    next["CodePipeline.job"]["data"]["continuationToken"] = json!(first.continuation_token());
    let reports = bed.run_job(&next).await;
    let percents: Vec<i64> = reports
        .iter()
        .filter_map(|r| r.body["executionDetails"]["percentComplete"].as_i64())
        .collect();
    // The 10% step was reported by the first invocation; whether a later one still sees it
    // depends on how fast this machine gets through the 1 s bake, so only the 50% step is certain.
    assert!(
        percents.contains(&50) && percents.iter().all(|p| (10..=100).contains(p)),
        "{percents:?}"
    );
    let last = reports.last().unwrap();
    assert_eq!(
        last.succeeded(),
        &json!({"LiveEnvironmentName": "shop-b", "PreviousEnvironmentName": "shop-a", "Mode": "weighted", "Bake": "none"})
    );
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![
            alias("shop-a", Some("shop-a"), Some(0)),
            alias("shop-b", Some("shop-b"), Some(100))
        ]
    );
    bed.serves(DOMAIN, "v2").await;
    eprintln!(
        "weighted a->b: {} invocations: {:?}",
        reports.len() + 1,
        reports.iter().map(|r| r.summary()).collect::<Vec<_>>()
    );

    // The next deployment goes Red during the first bake: all weight goes back to shop-b.
    bed.local.set_faults(Faults {
        red_after_seconds: [("shop-c".to_string(), 2.0)].into(),
        ..Faults::default()
    });
    bed.launch("shop-c", "shop-c", "v3").await;
    let event = job_event(&params(
        &bed,
        &zone,
        "weighted",
        "shop-c",
        json!({"steps": [10, 100], "bake_seconds": 60}),
    ));
    let reports = bed.run_job(&event).await;
    assert!(reports.len() >= 2, "{reports:?}");
    assert_eq!(
        reports[0].body["executionDetails"]["percentComplete"], 10,
        "{:?}",
        reports[0].body
    );
    let (kind, message) = reports.last().unwrap().failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.contains("at 10% `shop-c` turned unhealthy: health Red (Severe)"),
        "{message}"
    );
    assert!(message.contains("Shifted all weight back: `shop-b` has 100% of `shop.example.com` again, `shop-c` 0% and out of service"), "{message}");
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![
            alias("shop-b", Some("shop-b"), Some(100)),
            alias("shop-c", Some("shop-c"), Some(0))
        ]
    );
    bed.serves(DOMAIN, "v2").await;
    assert!(!bed.out_of_service(&b.id).await);
}

/// Between steps the new environment stays Green but serves the wrong version: the version check
/// fails, all weight goes back to the old environment, and the failure says both.
#[tokio::test]
async fn weighted_mode_shifts_everything_back_when_the_version_check_between_steps_fails() {
    let mut bed = bed().await;
    bed.version("v1", "v1").await;
    bed.version("v2", "v2-broken").await;
    let a = bed.launch("shop-a", "shop-a", "v1").await;
    let b = bed.launch("shop-b", "shop-b", "v2").await;
    let zone = bed.hosted_zone().await;
    bed.alias(&zone, DOMAIN, "shop-a.us-east-1.elasticbeanstalk.com")
        .await;
    bed.serves(DOMAIN, "v1").await;

    let event = job_event(&params(
        &bed,
        &zone,
        "weighted",
        "shop-b",
        json!({"steps": [10, 100], "bake_seconds": 1, "verify": {"timeout_seconds": 1}}),
    ));
    let reports = bed.run_job(&event).await;
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(
        reports[0].body["executionDetails"]["percentComplete"], 10,
        "{:?}",
        reports[0].body
    );
    let (kind, message) = reports[1].failed();
    assert_eq!(kind, "JobFailed");
    assert!(
        message.contains("at 10% the version check of `shop-b` failed: "),
        "{message}"
    );
    assert!(
        message.contains("wrong version: expected `v2`, the app serves `v2-broken`"),
        "{message}"
    );
    assert!(
        message.contains("request: GET http://shop-b.us-east-1.elasticbeanstalk.com/version"),
        "{message}"
    );
    assert!(
        message.contains("Shifted all weight back: `shop-a` has 100% of `shop.example.com` again, `shop-b` 0% and out of service"),
        "{message}"
    );
    assert_eq!(
        bed.records(&zone, DOMAIN).await,
        vec![
            alias("shop-a", Some("shop-a"), Some(100)),
            alias("shop-b", Some("shop-b"), Some(0))
        ]
    );
    bed.serves(DOMAIN, "v1").await;
    assert!(!bed.out_of_service(&a.id).await);
    assert!(bed.out_of_service(&b.id).await);
    assert_eq!(bed.swaps(), 0);
}

/// The first deployment to a custom domain: stage launched the environment on the production CNAME and
/// the zone has no record for the domain yet. Nothing to swap, but the record is created, in either
/// mode, and a re-invocation leaves it alone.
#[tokio::test]
async fn the_first_deployment_creates_the_domain_record_in_route53_and_weighted_modes() {
    for mode in ["route53", "weighted"] {
        let mut bed = bed().await;
        bed.version("v1", "v1").await;
        bed.launch("shop-a", "shop-prod", "v1").await;
        let zone = bed.hosted_zone().await;
        assert!(bed.records(&zone, DOMAIN).await.is_empty());
        let user_parameters = params(
            &bed,
            &zone,
            mode,
            "shop-a",
            json!({"production_cname": "shop-prod"}),
        );
        let report = bed.invoke(&job_event(&user_parameters)).await;
        assert_eq!(
            report.succeeded(),
            &json!({"LiveEnvironmentName": "shop-a", "PreviousEnvironmentName": "", "Mode": mode, "Bake": "none"}),
            "{mode}"
        );
        assert!(
            report.summary().contains(
                "first deployment: created `shop.example.com` pointing at `shop-a`, in sync; verified"
            ),
            "{mode}: {}",
            report.summary()
        );
        assert_eq!(
            bed.records(&zone, DOMAIN).await,
            vec![alias("shop-prod", None, None)],
            "{mode}"
        );
        bed.serves(DOMAIN, "v1").await;
        assert_eq!(bed.swaps(), 0);

        // Invoked again (a new job): already done, nothing changed.
        let again = bed.invoke(&job_event(&user_parameters)).await;
        assert!(
            again.summary().contains("already serves production"),
            "{mode}: {}",
            again.summary()
        );
        assert_eq!(
            bed.records(&zone, DOMAIN).await,
            vec![alias("shop-prod", None, None)]
        );
    }
}
