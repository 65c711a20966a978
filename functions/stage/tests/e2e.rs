//! The stage binary under a local Lambda Runtime API against local-aws (Beanstalk running the example
//! app for real) and moto (S3): every way a launch can end, driven through continuation tokens as
//! CodePipeline drives it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, EnvironmentDescription, Tag};
use beanswap_core::beanstalk::BeanstalkApi;
use beanswap_core::stage::environment_name;
use local_aws::beanstalk::Options;
use local_aws::faults::{Faults, Throttle};
use test_support::bed::{Bed, Driven};
use test_support::lambda::Function;

use test_support::SOLUTION_STACK as STACK;
const PLATFORM: &str =
    "arn:aws:elasticbeanstalk:us-east-1::platform/Python 3.11 running on 64bit Amazon Linux 2023/4.5.2";

async fn function(bed: &Bed) -> Function {
    bed.function(Path::new(env!("CARGO_BIN_EXE_stage"))).await
}

fn params(label: &str, extra: &str) -> String {
    format!(
        r#"{{"application":"shop","version_label":"{label}","production_cname":"shop-prod","solution_stack":"{STACK}","poll_seconds":0.3{extra}}}"#
    )
}

/// Beanstalk calls per operation since `before` (a snapshot of `call_counts`), zeros left out.
fn eb_calls_since(bed: &Bed, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    bed.local
        .call_counts()
        .into_iter()
        .filter_map(|(k, v)| {
            let op = k.strip_prefix("ElasticBeanstalk.")?.to_string();
            let n = v - before.get(&k).copied().unwrap_or(0);
            (n > 0).then_some((op, n))
        })
        .collect()
}

fn calls(expected: &[(&str, u64)]) -> BTreeMap<String, u64> {
    expected.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The polls of a driven stage job that brought new events (so stage read the environment's status
/// after them): the hand-overs whose summary lists events, and the final poll. With `poll_seconds` 0.3
/// (shorter than the first backoff) every invocation polls exactly once.
fn polls_with_events(run: &Driven) -> u64 {
    let handovers = &run.results[..run.results.len() - 1];
    handovers
        .iter()
        .filter(|r| {
            !r.request["executionDetails"]["summary"]
                .as_str()
                .unwrap()
                .ends_with("no new events")
        })
        .count() as u64
        + 1
}

/// UserParameters without a configuration source: `extra` (a JSON object) adds and replaces fields.
fn with(label: &str, extra: serde_json::Value) -> String {
    let mut p = serde_json::json!({"application":"shop","version_label":label,"poll_seconds":0.3});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p.to_string()
}

const ENV_NAMESPACE: &str = "aws:elasticbeanstalk:application:environment";

fn env_var(name: &str, value: &str) -> ConfigurationOptionSetting {
    ConfigurationOptionSetting::builder()
        .namespace(ENV_NAMESPACE)
        .option_name(name)
        .value(value)
        .build()
}

async fn describe(bed: &Bed, name: &str) -> EnvironmentDescription {
    bed.eb
        .describe_environments()
        .application_name("shop")
        .environment_names(name)
        .send()
        .await
        .unwrap()
        .environments()
        .first()
        .unwrap_or_else(|| panic!("no environment {name}"))
        .clone()
}

/// The environment's tags, read as anyone would: ListTagsForResource on its ARN.
async fn tags(bed: &Bed, name: &str) -> BTreeMap<String, String> {
    let arn = describe(bed, name)
        .await
        .environment_arn()
        .unwrap()
        .to_string();
    bed.eb
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .resource_tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

/// The environment's environment properties, from DescribeConfigurationSettings.
async fn properties(bed: &Bed, name: &str) -> BTreeMap<String, String> {
    let out = bed
        .eb
        .describe_configuration_settings()
        .application_name("shop")
        .environment_name(name)
        .send()
        .await
        .unwrap();
    out.configuration_settings()[0]
        .option_settings()
        .iter()
        .filter(|o| o.namespace() == Some(ENV_NAMESPACE))
        .map(|o| {
            (
                o.option_name().unwrap().to_string(),
                o.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn template_names(bed: &Bed) -> Vec<String> {
    let apps = bed.eb.describe_applications().send().await.unwrap();
    apps.applications()[0].configuration_templates().to_vec()
}

/// First deployment of v1: it takes the production CNAME itself.
async fn first_deploy(bed: &Bed, f: &mut Function) -> Driven {
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let run = bed.drive(f, &params("v1", ""), 50).await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    run
}

#[tokio::test]
async fn first_deployment_takes_the_production_cname_then_a_clone_launches_beside_it() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let before = bed.local.call_counts();
    let first = bed.drive(&mut f, &params("v1", ""), 50).await;
    let first_calls = eb_calls_since(&bed, &before);
    assert!(first.succeeded(), "{:?}", first.last().request);
    assert_eq!(
        first.variable("Cname"),
        "shop-prod.us-east-1.elasticbeanstalk.com"
    );
    assert_eq!(
        first.variable("Url"),
        "http://shop-prod.us-east-1.elasticbeanstalk.com/"
    );
    assert_eq!(first.variable("LiveEnvironmentName"), "");
    let first_name = first.variable("EnvironmentName");
    assert_eq!(first_name, environment_name("{app}-{id}", "shop", "v1"));
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );

    // Give production a setting the clone must inherit.
    bed.eb
        .update_environment()
        .environment_name(&first_name)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("ENVIRONMENT_NAME")
                .value("cloned-from-prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    bed.wait_env(&first_name, Duration::from_secs(20), |e| {
        e.status().map(|s| s.as_str()) == Some("Ready")
    })
    .await;

    bed.version("v2", test_support::app_bundle("v2", &[])).await;
    let before = bed.local.call_counts();
    let second = bed.drive(&mut f, &params("v2", ""), 50).await;
    let second_calls = eb_calls_since(&bed, &before);
    assert!(second.succeeded(), "{:?}", second.last().request);
    let blue = second.variable("EnvironmentName");
    assert_eq!(blue, environment_name("{app}-{id}", "shop", "v2"));
    assert_eq!(second.variable("LiveEnvironmentName"), first_name);
    let cname = second.variable("Cname");
    assert_eq!(cname, format!("{blue}.us-east-1.elasticbeanstalk.com"));
    assert_eq!(bed.get(&cname, "/version").await, (200, "v2\n".into()));
    let info = bed.get(&cname, "/api/info").await.1;
    assert!(
        info.contains("cloned-from-prod"),
        "configuration was cloned: {info}"
    );
    // Production still serves v1; the cloned template was cleaned up.
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );
    assert_eq!(template_names(&bed).await, Vec::<String>::new());
    let tags = tags(&bed, &blue).await;
    assert_eq!(
        tags.get("beanswap:application").map(String::as_str),
        Some("shop")
    );
    assert_eq!(tags.get("beanswap:version").map(String::as_str), Some("v2"));
    println!(
        "Beanstalk calls: first deployment {} over {} invocations {first_calls:?}, clone {} over {} invocations {second_calls:?}",
        first_calls.values().sum::<u64>(),
        first.invocations,
        second_calls.values().sum::<u64>(),
        second.invocations
    );
    // The budget, exactly (measured with a fast launch: 3 invocations, first deployment 8 calls, clone
    // 10): each extra invocation may add one DescribeEvents, nothing else.
    assert_eq!(
        first_calls,
        calls(&[
            ("CheckDNSAvailability", 1),
            ("CreateEnvironment", 1),
            ("DescribeEnvironments", 1 + polls_with_events(&first)),
            ("DescribeEvents", first.invocations as u64),
        ]),
        "first deployment, {}",
        bed.calls()
    );
    assert_eq!(
        second_calls,
        calls(&[
            ("CheckDNSAvailability", 1),
            ("CreateConfigurationTemplate", 1),
            ("CreateEnvironment", 1),
            ("DeleteConfigurationTemplate", 1),
            ("DescribeEnvironments", 1 + polls_with_events(&second)),
            ("DescribeEvents", second.invocations as u64),
        ]),
        "clone, {}",
        bed.calls()
    );
    // A launch brings two bursts of events (starting; deployed and Ready): the status is read for
    // those and for nothing else.
    assert!(polls_with_events(&first) <= 2 && polls_with_events(&second) <= 2);

    // Re-invoking after success creates nothing new.
    let creates = bed.local.call_counts()["ElasticBeanstalk.CreateEnvironment"];
    let again = bed.drive(&mut f, &params("v2", ""), 50).await;
    assert_eq!(again.variable("EnvironmentName"), blue);
    assert_eq!(
        bed.local.call_counts()["ElasticBeanstalk.CreateEnvironment"],
        creates
    );
    // And staging the version production already runs is a no-op that says so.
    let same = bed.drive(&mut f, &params("v1", ""), 50).await;
    assert_eq!(same.variable("EnvironmentName"), first_name);
    assert!(
        same.summary().contains("already serves production"),
        "{}",
        same.summary()
    );
}

/// A first invocation that died between CreateEnvironment and its first report left the clone's
/// configuration template behind; the retry adopts the environment and still deletes the template.
#[tokio::test]
async fn a_retry_adopting_the_environment_deletes_the_template_the_dead_invocation_made() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    first_deploy(&bed, &mut f).await;
    let live = describe(&bed, &environment_name("{app}-{id}", "shop", "v1")).await;
    bed.version("v2", test_support::app_bundle("v2", &[])).await;

    // What the dead invocation did, call for call.
    let blue = environment_name("{app}-{id}", "shop", "v2");
    let template = format!("beanswap-{blue}");
    bed.eb
        .create_configuration_template()
        .application_name("shop")
        .template_name(&template)
        .environment_id(live.environment_id().unwrap())
        .send()
        .await
        .unwrap();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    bed.eb
        .create_environment()
        .application_name("shop")
        .environment_name(&blue)
        .version_label("v2")
        .cname_prefix(&blue)
        .template_name(&template)
        .tags(tag("beanswap:application", "shop"))
        .tags(tag("beanswap:version", "v2"))
        .send()
        .await
        .unwrap();
    assert_eq!(template_names(&bed).await, [template.as_str()]);

    // The environment is recognised by its tags, read with the role's
    // elasticbeanstalk:ListTagsForResource (only a retry reads them, which the pipeline's run never
    // makes): refused, the refusal is the failure, naming the action, and nothing is created.
    let roles = bed.identities.clone().unwrap();
    bed.enforce(&roles.without("StageFunctionRole", "elasticbeanstalk:ListTagsForResource"));
    let refused = bed.drive(&mut f, &params("v2", ""), 50).await;
    assert_eq!(refused.failure_type(), "PermissionError");
    let message = refused.failure();
    assert!(
        message.contains("elasticbeanstalk:ListTagsForResource"),
        "{message}"
    );
    bed.enforce(&roles.spec);

    let creates = bed.local.call_counts()["ElasticBeanstalk.CreateEnvironment"];
    let run = bed.drive(&mut f, &params("v2", ""), 50).await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    assert_eq!(run.variable("EnvironmentName"), blue);
    assert_eq!(
        run.variable("LiveEnvironmentName"),
        live.environment_name().unwrap()
    );
    assert_eq!(
        bed.local.call_counts()["ElasticBeanstalk.CreateEnvironment"],
        creates
    );
    assert_eq!(template_names(&bed).await, Vec::<String>::new());
    assert_eq!(
        bed.get(&run.variable("Cname"), "/version").await,
        (200, "v2\n".into())
    );
}

/// A first deployment from a named saved configuration, with option overrides, the user's tags and
/// the pipeline execution's: each visible where anyone would look.
#[tokio::test]
async fn a_saved_configuration_with_overrides_and_tags_makes_the_first_environment() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    bed.eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("shop-saved")
        .solution_stack_name(STACK)
        .option_settings(env_var("ENVIRONMENT_NAME", "from-the-saved-configuration"))
        .option_settings(env_var("DATABASE_HOST", "db.internal"))
        .send()
        .await
        .unwrap();
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let run = bed
        .drive(
            &mut f,
            &with(
                "v1",
                serde_json::json!({
                    "production_cname": "shop-prod",
                    "template_name": "shop-saved",
                    "option_settings": [{"namespace": ENV_NAMESPACE, "option_name": "ENVIRONMENT_NAME", "value": "overridden-by-stage"}],
                    "tags": {"team": "payments", "cost-center": "42"},
                    "pipeline_execution": "3f1c9a1e-0d7b-4c55-9d0e-6f2a8b1c4d5e"
                }),
            ),
            50,
        )
        .await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    let name = run.variable("EnvironmentName");
    assert_eq!(
        run.variable("Cname"),
        "shop-prod.us-east-1.elasticbeanstalk.com"
    );

    let env = describe(&bed, &name).await;
    assert_eq!(env.template_name(), Some("shop-saved"));
    assert_eq!(env.solution_stack_name(), Some(STACK));
    let properties = properties(&bed, &name).await;
    assert_eq!(properties["ENVIRONMENT_NAME"], "overridden-by-stage");
    assert_eq!(properties["DATABASE_HOST"], "db.internal");
    let info = bed
        .get("shop-prod.us-east-1.elasticbeanstalk.com", "/api/info")
        .await;
    let mut info: serde_json::Value = serde_json::from_str(&info.1).unwrap();
    // The app reports the schema it expects, and that it cannot reach this made-up host.
    assert_eq!(info["schema"]["expected"], 1);
    assert!(info["schema"]["error"].is_string(), "{info}");
    info.as_object_mut().unwrap().remove("schema");
    assert_eq!(
        info,
        serde_json::json!({
            "version": "v1",
            "environment": "overridden-by-stage",
            "database": true,
            "database_status": "database at db.internal:5432"
        }),
        "{info:?}"
    );

    let tags = tags(&bed, &name).await;
    let expected: BTreeMap<String, String> = [
        ("team", "payments"),
        ("cost-center", "42"),
        ("beanswap:application", "shop"),
        ("beanswap:version", "v1"),
        (
            "beanswap:pipeline-execution",
            "3f1c9a1e-0d7b-4c55-9d0e-6f2a8b1c4d5e",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(tags, expected);
    // The user's saved configuration is theirs: only beanswap's own clones are deleted.
    assert_eq!(template_names(&bed).await, ["shop-saved"]);
}

/// Production found by its environment name (no CNAME given), on a platform named by its ARN: the
/// first environment launches on the platform with a CNAME of its own, the next is cloned from it.
#[tokio::test]
async fn production_found_by_environment_name_on_a_platform_arn() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    let live = environment_name("{app}-{id}", "shop", "v1");
    let params = |label: &str| {
        with(
            label,
            serde_json::json!({"production_environment": live, "platform_arn": PLATFORM}),
        )
    };
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let first = bed.drive(&mut f, &params("v1"), 50).await;
    assert!(first.succeeded(), "{:?}", first.last().request);
    assert_eq!(first.variable("EnvironmentName"), live);
    assert_eq!(first.variable("LiveEnvironmentName"), "");
    assert_eq!(
        first.variable("Cname"),
        format!("{live}.us-east-1.elasticbeanstalk.com")
    );
    let env = describe(&bed, &live).await;
    assert_eq!(env.platform_arn(), Some(PLATFORM));
    // Beanstalk describes a platform launched by ARN by its solution stack name too.
    assert_eq!(env.solution_stack_name(), Some(STACK));

    bed.version("v2", test_support::app_bundle("v2", &[])).await;
    let second = bed.drive(&mut f, &params("v2"), 50).await;
    assert!(second.succeeded(), "{:?}", second.last().request);
    let blue = second.variable("EnvironmentName");
    assert_eq!(blue, environment_name("{app}-{id}", "shop", "v2"));
    assert_eq!(second.variable("LiveEnvironmentName"), live);
    assert_eq!(
        second.variable("Cname"),
        format!("{blue}.us-east-1.elasticbeanstalk.com")
    );
    // Cloned from the live environment (its platform came with the configuration template, which
    // is gone again).
    let env = describe(&bed, &blue).await;
    assert_eq!(env.platform_arn(), Some(PLATFORM));
    assert_eq!(
        env.template_name(),
        Some(format!("beanswap-{blue}").as_str())
    );
    assert_eq!(template_names(&bed).await, Vec::<String>::new());
    assert_eq!(
        bed.get(&second.variable("Cname"), "/version").await,
        (200, "v2\n".into())
    );
}

/// An environment that comes up Yellow (local-aws fault `yellow`) passes `"health":"Yellow"`; the
/// default Green gate keeps waiting on it until the timeout.
#[tokio::test]
async fn a_yellow_environment_passes_the_yellow_gate_but_not_the_green_one() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    first_deploy(&bed, &mut f).await;
    let blue = environment_name("{app}-{id}", "shop", "v2");
    bed.local.set_faults(Faults {
        yellow: vec![blue.clone()],
        ..Faults::default()
    });
    bed.version("v2", test_support::app_bundle("v2", &[])).await;
    let run = bed
        .drive(&mut f, &params("v2", r#","health":"Yellow""#), 50)
        .await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    assert_eq!(run.variable("EnvironmentName"), blue);
    assert!(
        run.summary()
            .starts_with(&format!("{blue} is Ready and Yellow")),
        "{}",
        run.summary()
    );
    let env = describe(&bed, &blue).await;
    assert_eq!(
        (
            env.health().unwrap().as_str(),
            env.health_status().unwrap().as_str()
        ),
        ("Yellow", "Warning")
    );

    // The same environment under the Green gate: adopted, never good enough.
    let run = bed
        .drive(&mut f, &params("v2", r#","timeout_minutes":0.01"#), 50)
        .await;
    let message = run.failure();
    assert!(
        message.contains(&format!("{blue} was not Ready with Green health within"))
            && message.contains("(status Ready, health Yellow)"),
        "{message}"
    );
    assert!(message.contains("kept for inspection"), "{message}");
}

#[tokio::test]
async fn long_launches_continue_through_tokens_streaming_events() {
    let bed = Bed::start(Options {
        launch_delay: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    let mut f = function(&bed).await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let run = bed.drive(&mut f, &params("v1", ""), 50).await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    assert!(run.invocations >= 3, "{} invocations", run.invocations);
    let progress = &run.results[0].request;
    assert!(progress["continuationToken"]
        .as_str()
        .unwrap()
        .starts_with("v1:"));
    let summaries: Vec<&str> = run.results[..run.results.len() - 1]
        .iter()
        .map(|r| r.request["executionDetails"]["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.contains("INFO createEnvironment is starting.")),
        "{summaries:?}"
    );
    assert!(run.results[..run.results.len() - 1]
        .iter()
        .all(|r| r.request.get("outputVariables").is_none()));
}

#[tokio::test]
async fn a_failed_launch_fails_with_its_events_and_production_untouched() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    first_deploy(&bed, &mut f).await;
    bed.local.set_faults(Faults {
        fail_launch: vec!["*".into()],
        ..Faults::default()
    });
    bed.version("v2", test_support::app_bundle("v2", &[])).await;
    let run = bed.drive(&mut f, &params("v2", ""), 50).await;
    let message = run.failure();
    assert_eq!(run.failure_type(), "JobFailed");
    assert!(message.contains("Staging version v2 failed"), "{message}");
    assert!(message.contains("ERROR Stack named 'awseb-"), "{message}");
    assert!(message.contains("Production is unchanged"), "{message}");
    assert!(message.len() <= 5000);
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );
}

/// A migration (a leader-only container command) that fails: the deployment fails with Beanstalk's
/// events, stage fails naming the failed command and showing its output from the instance's tail logs
/// (RequestEnvironmentInfo/RetrieveEnvironmentInfo), and production keeps serving v1.
#[tokio::test]
async fn a_failing_migration_fails_staging_with_the_commands_output() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    first_deploy(&bed, &mut f).await;
    let migration = "container_commands:\n  01_migrate:\n    command: 'echo applying 0002_orders_note; echo \"ERROR: column note of relation orders already exists\" >&2; exit 1'\n    leader_only: true\n";
    bed.version(
        "v2",
        test_support::app_bundle("v2", &[(".ebextensions/migrate.config", migration)]),
    )
    .await;
    let run = bed.drive(&mut f, &params("v2", ""), 50).await;
    let message = run.failure();
    assert_eq!(run.failure_type(), "JobFailed");
    for expected in [
        "Beanstalk reported ERROR for",
        "Instance deployment failed. For details, see 'eb-engine.log'.",
        "\nFrom the tail logs of i-0",
        "[INFO] Command 01_migrate",
        "applying 0002_orders_note",
        "ERROR: column note of relation orders already exists",
        "[ERROR] Exited with error code 1",
        "[ERROR] Command 01_migrate (echo applying 0002_orders_note;",
        "Production is unchanged",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} not in:\n{message}"
        );
    }
    assert!(message.chars().count() <= 5000);
    let calls = bed.local.call_counts();
    assert_eq!(calls["ElasticBeanstalk.RequestEnvironmentInfo"], 1);
    assert!(calls["ElasticBeanstalk.RetrieveEnvironmentInfo"] >= 1);
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );
}

#[tokio::test]
async fn a_crashing_app_fails_and_on_failure_terminate_removes_it() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    first_deploy(&bed, &mut f).await;
    bed.version(
        "broken",
        test_support::app_bundle(
            "broken",
            &[(
                "Procfile",
                "web: echo 'ImportError: no module named shopdb' >&2; exit 1\n",
            )],
        ),
    )
    .await;
    let run = bed
        .drive(
            &mut f,
            &params("broken", r#","on_failure":"terminate""#),
            50,
        )
        .await;
    let message = run.failure();
    assert!(message.contains("Instance deployment failed"), "{message}");
    assert!(message.contains("no module named shopdb"), "{message}");
    assert!(
        message.contains("is being terminated (on_failure: terminate)"),
        "{message}"
    );
    let name = environment_name("{app}-{id}", "shop", "broken");
    bed.wait_env(&name, Duration::from_secs(20), |e| {
        e.status().map(|s| s.as_str()) == Some("Terminated")
    })
    .await;
}

#[tokio::test]
async fn a_launch_slower_than_the_timeout_fails_and_is_kept_for_inspection() {
    let bed = Bed::start(Options {
        launch_delay: Duration::from_secs(30),
        ..Options::default()
    })
    .await;
    let mut f = function(&bed).await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let run = bed
        .drive(&mut f, &params("v1", r#","timeout_minutes":0.01"#), 50)
        .await;
    let message = run.failure();
    assert!(
        message.contains("was not Ready with Green health within"),
        "{message}"
    );
    // A first environment is launched on the production CNAME: whatever on_failure says, stage
    // leaves what holds the production CNAME running, and says so.
    assert!(
        message.contains("holds the production CNAME, so stage leaves it running"),
        "{message}"
    );
}

/// Throttling on every second call of every operation stage makes, with the SDK's own retries off
/// (one attempt): each throttled call reaches the action, which waits it out with backoff and
/// continuation tokens instead of failing the deployment (issue 16.4).
#[tokio::test]
async fn throttling_on_every_second_call_still_stages() {
    let bed = Bed::start(Options::default()).await;
    let mut f = bed
        .function_with_env(
            Path::new(env!("CARGO_BIN_EXE_stage")),
            &[("AWS_MAX_ATTEMPTS", "1".to_string())],
        )
        .await;
    let operations = [
        "DescribeEnvironments",
        "DescribeEvents",
        "CheckDNSAvailability",
        "CreateEnvironment",
        "ListTagsForResource",
    ];
    bed.local.set_faults(Faults {
        throttle: operations
            .iter()
            .map(|op| Throttle {
                operation: op.to_string(),
                first: None,
                fraction: Some(0.5),
            })
            .collect(),
        ..Faults::default()
    });
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let run = bed.drive(&mut f, &params("v1", ""), 50).await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    assert_eq!(
        run.variable("Cname"),
        "shop-prod.us-east-1.elasticbeanstalk.com"
    );
    let throttled = bed.local.call_counts();
    assert!(
        run.results
            .iter()
            .any(|r| r.request["executionDetails"]["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("Throttling")),
        "the throttling reached the action and was reported while waiting: {throttled:?}"
    );
    // Still one environment: a begin retried after throttling adopts what an earlier one created.
    bed.local.set_faults(Faults::default());
    let environments = bed
        .eb
        .describe_environments()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    assert_eq!(environments.environments().len(), 1, "{throttled:?}");
}

#[tokio::test]
async fn bad_parameters_and_name_collisions_are_configuration_errors() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    for (params, part) in [
        (r#"{"application":"shop","version_label":"v1"}"#.to_string(), "production_cname"),
        (
            r##"{"application":"shop","version_label":"#{Package.VersionLabel}","production_cname":"shop-prod"}"##.to_string(),
            "was not substituted",
        ),
        (params("v1", r#","health":"Blue""#), "health"),
        (params("v1", r#","environment_name":"x""#), "environment_name"),
        (r#"{"application":"shop","version_label":"v1","production_cname":"shop-prod"}"#.to_string(), "first deployment"),
    ] {
        let run = bed.drive(&mut f, &params, 3).await;
        assert_eq!(run.failure_type(), "ConfigurationError", "{params}");
        assert!(run.failure().contains(part), "{part} in {}", run.failure());
    }
    // An environment with the name stage would use, that beanswap did not make.
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    bed.eb
        .create_environment()
        .application_name("shop")
        .environment_name(environment_name("{app}-{id}", "shop", "v1"))
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let run = bed.drive(&mut f, &params("v1", ""), 3).await;
    assert_eq!(run.failure_type(), "ConfigurationError");
    assert!(
        run.failure().contains("beanswap did not create it"),
        "{}",
        run.failure()
    );
}

/// Stage's event cursor reads every event since it, page by page. Beanstalk answers newest first, so one
/// page would hold only the newest events of a burst, and a cursor moved past them would never see the
/// older ones (an ERROR among them).
#[tokio::test]
async fn events_since_a_cursor_are_read_in_full_page_by_page() {
    let bed = Bed::start(Options::default()).await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-events")
        .version_label("v1")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let id = created.environment_id().unwrap().to_string();
    test_support::bed::wait_for_environment(&bed.eb, &id, Duration::from_secs(30), |e| {
        e.status().map(|s| s.as_str()) == Some("Ready")
    })
    .await;
    let eb = beanswap_core::beanstalk::Beanstalk::from_client(bed.eb.clone());
    let epoch = Some(std::time::UNIX_EPOCH);
    let all = eb.events_since(&id, epoch, 1000).await.unwrap();
    assert!(all.len() >= 3, "a launch tells more than that: {all:?}");
    assert!(
        all.windows(2).all(|w| w[0].date <= w[1].date),
        "oldest first"
    );
    let before = bed.local.call_counts();
    let paged = eb.events_since(&id, epoch, 1).await.unwrap();
    assert_eq!(paged, all);
    assert_eq!(
        eb_calls_since(&bed, &before),
        calls(&[("DescribeEvents", all.len() as u64)]),
        "one page per event"
    );
    // Without a cursor: the newest only, one page.
    let newest = eb.events_since(&id, None, 1).await.unwrap();
    assert_eq!(newest, all[all.len() - 1..]);
}

/// Invokes the function once with a fresh job (no continuation token), as a Lambda retry of the first
/// invocation or a Retry pressed in CodePipeline does, and returns what it reported.
async fn invoke_once(bed: &Bed, f: &mut Function, user_parameters: &str) -> serde_json::Value {
    let event = test_support::job_event(user_parameters);
    let id = event["CodePipeline.job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.invoke(event).await.unwrap();
    bed.local
        .job_results()
        .into_iter()
        .find(|r| r.job_id == id)
        .unwrap_or_else(|| panic!("job {id} reported nothing"))
        .request
}

/// A first deployment's environment holds the production CNAME from the moment it is created. A retry
/// that finds it still Launching must wait for it like a new launch, never call it staged (issue 16.1).
#[tokio::test]
async fn a_retry_adopting_a_first_environment_that_is_still_launching_waits_for_it() {
    let bed = Bed::start(Options {
        launch_delay: Duration::from_secs(3),
        ..Options::default()
    })
    .await;
    let mut f = function(&bed).await;
    bed.version("v1", test_support::app_bundle("v1", &[])).await;
    let first = invoke_once(&bed, &mut f, &params("v1", "")).await;
    assert!(first["continuationToken"].is_string(), "{first}");
    let name = environment_name("{app}-{id}", "shop", "v1");
    assert_eq!(
        describe(&bed, &name).await.status().unwrap().as_str(),
        "Launching"
    );

    // The retry: same parameters, no token. It must hand over, not succeed.
    let retry = invoke_once(&bed, &mut f, &params("v1", "")).await;
    assert!(
        retry["continuationToken"].is_string(),
        "a Launching environment was reported as staged: {retry}"
    );
    let summary = retry["executionDetails"]["summary"].as_str().unwrap();
    assert!(summary.contains("Launching"), "{summary}");
    assert!(!summary.contains("Ready"), "{summary}");

    // Driven to its end, it succeeds once the launch is really Ready and Green.
    let run = bed.drive(&mut f, &params("v1", ""), 50).await;
    assert!(run.succeeded(), "{:?}", run.last().request);
    assert!(
        run.summary().contains("is Ready and Green"),
        "{}",
        run.summary()
    );
    assert_eq!(
        describe(&bed, &name).await.status().unwrap().as_str(),
        "Ready"
    );
}

/// A first deployment that failed on Red health leaves its environment on the production CNAME. A retry
/// must fail the same way, not report the broken environment as staged (issue 16.1).
#[tokio::test]
async fn a_retry_after_a_red_first_deployment_fails_again() {
    let bed = Bed::start(Options::default()).await;
    let mut f = function(&bed).await;
    bed.version(
        "broken",
        test_support::app_bundle(
            "broken",
            &[(
                "Procfile",
                "web: echo 'no module named shopdb' >&2; exit 1\n",
            )],
        ),
    )
    .await;
    let p = params("broken", "");
    let run = bed.drive(&mut f, &p, 50).await;
    assert_eq!(run.failure_type(), "JobFailed");
    let run = bed.drive(&mut f, &p, 50).await;
    let message = run.failure();
    assert!(
        message.contains("Staging version broken failed"),
        "{message}"
    );
    assert!(message.contains("no module named shopdb"), "{message}");
}
