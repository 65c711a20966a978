//! Manual operations against a real account or a running local-aws: `status`, `events`, `retire`, and
//! (with the swap action's core) `swap` and `rollback`. Same core code as the functions, so what a
//! person does by hand follows the same safety rules the pipeline does.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use beanswap_core::alarms::CloudWatch;
use beanswap_core::beanstalk::{
    Beanstalk, BeanstalkApi, Environment, HealthGate, TAG_OUT_OF_SERVICE_SINCE,
};
use beanswap_core::clock::SystemClock;
use beanswap_core::retire::exec as retire;
use beanswap_core::route53::Route53;
use beanswap_core::swap::engine::{self, Clients, Plan};
use beanswap_core::swap::{Domain, HttpVerifier, Mode};
use beanswap_core::Outcome;

/// SDK settings: the default chain (profile, environment, SSO), or everything pointed at one endpoint
/// (a local-aws started with `local-aws`).
pub async fn sdk_config(endpoint: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(
                region.unwrap_or(crate::template::REGION).to_string(),
            ));
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                "local", "local", None, None, "beanswap",
            ));
        }
    }
    loader.load().await
}

/// Environments of the application, which one is live, their versions and health.
pub async fn status(
    config: &SdkConfig,
    application: &str,
    production: Option<&str>,
) -> Result<String, String> {
    let eb = Beanstalk::new(config);
    let environments = eb
        .environments(application)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = writeln!(out, "application {application}");
    if environments.is_empty() {
        let _ = writeln!(out, "  no environments");
    }
    for e in &environments {
        let live = production.is_some_and(|p| e.holds_cname(p));
        let tags = eb.tags(&e.arn).await.unwrap_or_default();
        let since = tags
            .get(TAG_OUT_OF_SERVICE_SINCE)
            .map(|s| format!("  out of service since {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {:<24} {:<11} {:<7} {:<24} {}{since}",
            if live { "*" } else { " " },
            e.name,
            e.status,
            e.health,
            e.version_label.as_deref().unwrap_or("-"),
            e.cname
        );
    }
    if let Some(p) = production {
        if !environments.iter().any(|e| e.holds_cname(p)) {
            let _ = writeln!(out, "  (no environment holds the production CNAME {p})");
        } else {
            let _ = writeln!(out, "  * serves production ({p})");
        }
    }
    let versions = eb
        .client()
        .describe_application_versions()
        .application_name(application)
        .max_records(10)
        .send()
        .await
        .map_err(|e| {
            beanswap_core::beanstalk::eb_error("DescribeApplicationVersions", e).to_string()
        })?;
    let _ = writeln!(out, "newest versions:");
    for v in versions.application_versions() {
        let _ = writeln!(
            out,
            "  {:<32} {:<12} {}",
            v.version_label().unwrap_or_default(),
            v.status().map(|s| s.as_str()).unwrap_or_default(),
            v.description().unwrap_or_default()
        );
    }
    Ok(out)
}

/// An environment's events of the last `since`, oldest first.
pub async fn events(
    config: &SdkConfig,
    application: &str,
    environment: &str,
    since: Duration,
) -> Result<String, String> {
    let eb = Beanstalk::new(config);
    let env: Environment = eb
        .environment_named(application, environment)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no environment {environment} in {application}"))?;
    let events = eb
        .events_since(&env.id, Some(SystemTime::now() - since), 1000)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for e in &events {
        let _ = writeln!(out, "{}", e.line());
    }
    if events.is_empty() {
        let _ = writeln!(
            out,
            "no events for {environment} in the last {}",
            humantime::format_duration(since)
        );
    }
    Ok(out)
}

/// Retire by hand: what the retire action would do (`dry_run`), or do it.
pub async fn retire(config: &SdkConfig, settings: &retire::Settings) -> Result<String, String> {
    let clients = retire::Clients::new(config);
    let report = retire::retire(&clients, settings, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(report.summary())
}

/// The swap action's own sequence, by hand (`beanswap swap`, `beanswap rollback`): the same
/// preconditions, waits, tags, verification and move back as the pipeline's swap, with its
/// continuations driven here (a person waits; a pipeline would hand over).
pub async fn swap(config: &SdkConfig, plan: &Plan) -> Result<String, String> {
    let eb = Beanstalk::new(config);
    let r53 = Route53::new(config);
    let verifier = HttpVerifier::new();
    let clients = Clients {
        eb: &eb,
        r53: &r53,
        verifier: &verifier,
        clock: &SystemClock,
        alarms: &CloudWatch::new(config),
    };
    let mut state = None;
    loop {
        match engine::run(&clients, plan, state, plan.timeout).await {
            Ok(Outcome::Succeeded { summary, .. }) => return Ok(format!("{summary}\n")),
            Ok(Outcome::InProgress {
                summary,
                state: next,
                ..
            }) => {
                eprintln!("{summary}");
                state = Some(next);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(Outcome::Failed { message, .. }) => return Err(message),
            Err(e) => return Err(e.message),
        }
    }
}

/// What `beanswap swap` asks: a CNAME swap of `staged` into `production`.
pub fn cname_swap(
    application: &str,
    production: &str,
    staged: &str,
    min_health: HealthGate,
) -> Plan {
    Plan {
        staged: Some(staged.to_string()),
        production_cname: Some(production.to_string()),
        min_health,
        ..by_hand(application, Mode::Cname)
    }
}

/// What `beanswap rollback` asks: production back to `to`, or to where it came from.
pub fn rollback(
    application: &str,
    production_cname: Option<String>,
    domain: Option<Domain>,
    to: Option<String>,
) -> Plan {
    Plan {
        staged: to,
        production_cname,
        domain,
        ..by_hand(application, Mode::Rollback)
    }
}

/// A move made by hand: the whole traffic at once, no bake, no capacity matching and no verification
/// beyond the health gate (Green), within five minutes.
fn by_hand(application: &str, mode: Mode) -> Plan {
    Plan {
        application: application.to_string(),
        mode,
        staged: None,
        production_cname: None,
        domain: None,
        steps: vec![100],
        step_bake: Duration::ZERO,
        bake: None,
        match_capacity: false,
        verify: None,
        resolve: None,
        min_health: HealthGate::Green,
        timeout: Duration::from_secs(300),
    }
}
