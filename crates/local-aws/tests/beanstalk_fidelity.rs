//! local-aws against what AWS documents (FIDELITY.md): error codes and limits, the platform catalogue and
//! which platforms an account may launch, full option settings and clones that carry them, the router
//! answering 503 until an instance has been checked, enhanced health measured from real requests, health
//! transitions both ways, a tag change as an environment update, and every call counted before it is
//! validated. The new operations are driven through the AWS CLI, so botocore's own parser reads our XML.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, OptionSpecification};
use aws_sdk_elasticbeanstalk::Client;
use local_aws::beanstalk::{platforms, Options};
use local_aws::LocalAws;
use serde_json::Value;
use test_support::clients;
use test_support::moto::Moto;

use test_support::SOLUTION_STACK as STACK;
const OLD_STACK: &str = "64bit Amazon Linux 2023 v4.3.0 running Python 3.11";
const NODE18: &str =
    "arn:aws:elasticbeanstalk:us-east-1::platform/Node.js 18 running on 64bit Amazon Linux 2023/6.5.1";
const BUNDLES: &str = "bundles";

struct Bed {
    local: LocalAws,
    _moto: Moto,
    eb: Client,
    s3: aws_sdk_s3::Client,
}

async fn bed(options: Options) -> Bed {
    let (local, moto) = test_support::bed::servers(options).await;
    let eb = Client::from_conf(
        clients::beanstalk_config(&local.endpoint())
            .retry_config(aws_sdk_elasticbeanstalk::config::retry::RetryConfig::disabled())
            .build(),
    );
    let s3 = clients::s3(&moto.endpoint());
    s3.create_bucket().bucket(BUNDLES).send().await.unwrap();
    eb.create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    Bed {
        local,
        _moto: moto,
        eb,
        s3,
    }
}

impl Bed {
    async fn cli(&self, args: &[&str]) -> Result<Value, String> {
        test_support::aws_cli_json(&self.local.endpoint(), "elasticbeanstalk", args).await
    }

    async fn ok(&self, args: &[&str]) -> Value {
        self.cli(args)
            .await
            .unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
    }

    async fn wait_for(&self, id: &str, status: &str) {
        test_support::bed::wait_for_environment(&self.eb, id, Duration::from_secs(30), |e| {
            e.status().map(|s| s.as_str()) == Some(status)
        })
        .await;
    }

    async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.local.router_endpoint()))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn code<E: aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

fn setting(ns: &str, name: &str, value: &str) -> ConfigurationOptionSetting {
    ConfigurationOptionSetting::builder()
        .namespace(ns)
        .option_name(name)
        .value(value)
        .build()
}

/// Option settings as (namespace, name) -> value.
fn settings_of(json: &Value) -> BTreeMap<(String, String), String> {
    json["OptionSettings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                (
                    o["Namespace"].as_str().unwrap().to_string(),
                    o["OptionName"].as_str().unwrap().to_string(),
                ),
                o["Value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn get<'a>(s: &'a BTreeMap<(String, String), String>, ns: &str, name: &str) -> Option<&'a str> {
    s.get(&(ns.to_string(), name.to_string()))
        .map(String::as_str)
}

#[tokio::test]
async fn error_codes_and_limits_are_beanstalks() {
    let bed = bed(Options {
        max_environments: 2,
        max_applications: 2,
        max_configuration_templates: 1,
        ..Options::default()
    })
    .await;
    bed.eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("base")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();

    // TemplateName excludes SolutionStackName and PlatformArn; SolutionStackName excludes PlatformArn.
    let both = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-both")
        .template_name("base")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&both).0, "InvalidParameterCombination", "{both:?}");
    let both = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-both")
        .solution_stack_name(STACK)
        .platform_arn(platforms::by_stack(STACK).unwrap().arn())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&both).0, "InvalidParameterCombination");
    // Through the AWS CLI too: the code is what botocore reads.
    let err = bed
        .cli(&[
            "create-environment",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-both",
            "--template-name",
            "base",
            "--platform-arn",
            &platforms::by_stack(STACK).unwrap().arn(),
        ])
        .await
        .unwrap_err();
    assert!(err.contains("(InvalidParameterCombination)"), "{err}");

    // CNAME prefix rules: 4 to 63 letters, digits and hyphens.
    for prefix in ["abc", "shop_prod", &"a".repeat(64)] {
        let err = bed
            .eb
            .check_dns_availability()
            .cname_prefix(prefix)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err).0, "InvalidParameterValue", "{prefix}");
    }

    // Limits: environments, applications and saved configurations per region.
    for name in ["shop-one", "shop-two"] {
        bed.eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .solution_stack_name(STACK)
            .send()
            .await
            .unwrap();
    }
    let err = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-three")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "TooManyEnvironmentsException".into(),
            "You cannot have more than 2 Environments.".into()
        )
    );
    bed.eb
        .create_application()
        .application_name("blog")
        .send()
        .await
        .unwrap();
    let err = bed
        .eb
        .create_application()
        .application_name("wiki")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "TooManyApplicationsException");
    let err = bed
        .eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("second")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "TooManyConfigurationTemplatesException");
}

#[tokio::test]
async fn the_catalogue_and_which_platforms_an_account_may_launch() {
    let bed = bed(Options::default()).await;

    // What the account may launch: recommended versions of branches that are not retired.
    let stacks = bed.ok(&["list-available-solution-stacks"]).await;
    let names: Vec<&str> = stacks["SolutionStacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(names.contains(&STACK), "{names:?}");
    assert!(names.contains(&"64bit Amazon Linux 2023 v6.6.4 running Node.js 22"));
    assert!(
        !names.contains(&OLD_STACK),
        "a superseded version is not offered"
    );
    assert!(
        !names.iter().any(|n| n.ends_with("Node.js 18")),
        "a retired branch is not offered"
    );
    assert_eq!(
        stacks["SolutionStackDetails"][0]["SolutionStackName"],
        names[0]
    );
    assert!(stacks["SolutionStackDetails"][0]["PermittedFileTypes"].is_array());

    // Every version, with its branch's lifecycle, filtered as the model documents.
    let python311 = bed
        .ok(&[
            "list-platform-versions",
            "--filters",
            r#"[{"Type":"PlatformBranchName","Operator":"=","Values":["Python 3.11 running on 64bit Amazon Linux 2023"]}]"#,
        ])
        .await;
    let list = python311["PlatformSummaryList"].as_array().unwrap();
    let versions: Vec<&str> = list
        .iter()
        .map(|p| p["PlatformVersion"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["4.5.2", "4.5.1", "4.5.0", "4.3.0"]);
    assert_eq!(list[0]["PlatformLifecycleState"], "Recommended");
    assert!(list[1].get("PlatformLifecycleState").is_none());
    assert_eq!(list[0]["PlatformBranchLifecycleState"], "Supported");
    assert_eq!(list[0]["PlatformOwner"], "AWSElasticBeanstalk");
    let newer = bed
        .ok(&[
            "list-platform-versions",
            "--filters",
            r#"[{"Type":"PlatformBranchName","Operator":"begins_with","Values":["Python 3.11"]},
                {"Type":"PlatformVersion","Operator":">","Values":["4.5.0"]}]"#,
        ])
        .await;
    assert_eq!(newer["PlatformSummaryList"].as_array().unwrap().len(), 2);
    let branches = bed
        .ok(&[
            "list-platform-branches",
            "--filters",
            r#"[{"Attribute":"LifecycleState","Operator":"=","Values":["Retired"]}]"#,
        ])
        .await;
    assert_eq!(
        branches["PlatformBranchSummaryList"][0]["BranchName"],
        "Node.js 18 running on 64bit Amazon Linux 2023"
    );

    // A stack Beanstalk does not offer is refused as AWS refuses it; so is a superseded version the
    // account has not used, and a retired branch it does not run.
    for (stack, arn) in [
        (
            Some("64bit Amazon Linux 2023 v9.9.9 running Python 3.11"),
            None,
        ),
        (Some(OLD_STACK), None),
        (None, Some(NODE18)),
    ] {
        let mut args = vec![
            "create-environment",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-refused",
        ];
        match (stack, arn) {
            (Some(s), _) => args.extend(["--solution-stack-name", s]),
            (_, Some(a)) => args.extend(["--platform-arn", a]),
            _ => unreachable!(),
        }
        let err = bed.cli(&args).await.unwrap_err();
        let expected = match stack {
            Some(s) => format!("No Solution Stack named '{s}' found."),
            None => format!("No Platform named '{NODE18}' found."),
        };
        assert!(
            err.contains("(InvalidParameterValue)") && err.contains(&expected),
            "{err}"
        );
    }

    // A launched environment names its platform both ways.
    let created = bed
        .ok(&[
            "create-environment",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-green",
            "--solution-stack-name",
            STACK,
        ])
        .await;
    assert_eq!(
        created["PlatformArn"],
        "arn:aws:elasticbeanstalk:us-east-1::platform/Python 3.11 running on 64bit Amazon Linux 2023/4.5.2"
    );
    // No CNAMEPrefix: the name plus a random string; no VersionLabel: the sample application.
    let cname = created["CNAME"].as_str().unwrap().to_string();
    assert!(
        cname.starts_with("shop-green.") && cname.ends_with(".us-east-1.elasticbeanstalk.com"),
        "{cname}"
    );
    bed.wait_for(created["EnvironmentId"].as_str().unwrap(), "Ready")
        .await;
    let (code, body) = bed.get(&cname, "/").await;
    assert_eq!(code, 200);
    assert!(body.contains("sample application"), "{body}");
}

#[tokio::test]
async fn previous_versions_and_retired_branches_launch_only_as_aws_allows() {
    let old_arn = platforms::by_stack(OLD_STACK).unwrap().arn();
    // An account that runs the old version and the retired branch elsewhere, 14 days after retirement.
    let bed = bed(Options {
        account_platforms: vec![old_arn.clone(), NODE18.into()],
        ..Options::default()
    })
    .await;
    for (name, stack, arn) in [
        ("shop-old", Some(OLD_STACK), None),
        ("shop-node", None, Some(NODE18)),
    ] {
        let out = bed
            .eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .set_solution_stack_name(stack.map(str::to_string))
            .set_platform_arn(arn.map(str::to_string))
            .send()
            .await
            .unwrap();
        bed.wait_for(out.environment_id().unwrap(), "Ready").await;
    }
    let stacks = bed.ok(&["list-available-solution-stacks"]).await;
    assert!(
        stacks["SolutionStacks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == OLD_STACK),
        "a version the account used is available to it"
    );

    // 100 days after the retirement the grace period is over, even for an account running the branch.
    let late = bed_at("2025-11-19", vec![NODE18.into()]).await;
    let err = late
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-node")
        .platform_arn(NODE18)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).1, format!("No Platform named '{NODE18}' found."));
    // Before its retirement it was only deprecated: launchable by anyone, listed as such.
    let early = bed_at("2025-06-01", vec![]).await;
    early
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-node")
        .platform_arn(NODE18)
        .send()
        .await
        .unwrap();
    let branches = early
        .ok(&[
            "list-platform-branches",
            "--filters",
            r#"[{"Attribute":"BranchName","Operator":"=","Values":["Node.js 18 running on 64bit Amazon Linux 2023"]}]"#,
        ])
        .await;
    assert_eq!(
        branches["PlatformBranchSummaryList"][0]["LifecycleState"],
        "Deprecated"
    );
}

async fn bed_at(day: &str, account_platforms: Vec<String>) -> Bed {
    bed(Options {
        platform_date: platforms::date(day),
        account_platforms,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn configuration_settings_are_complete_and_clones_carry_them() {
    let bed = bed(Options::default()).await;
    let live = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-live")
        .solution_stack_name(STACK)
        .option_settings(setting("aws:autoscaling:asg", "MaxSize", "8"))
        .option_settings(setting(
            "aws:elasticbeanstalk:application:environment",
            "GREETING",
            "hello",
        ))
        .send()
        .await
        .unwrap();
    let settings = bed
        .ok(&[
            "describe-configuration-settings",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-live",
        ])
        .await;
    let live_settings = settings_of(&settings["ConfigurationSettings"][0]);
    // The platform's defaults ("General options for all environments", the Python platform's options) ...
    for (ns, name, value) in [
        ("aws:autoscaling:asg", "MinSize", "1"),
        (
            "aws:elasticbeanstalk:environment",
            "EnvironmentType",
            "LoadBalanced",
        ),
        (
            "aws:elasticbeanstalk:environment",
            "LoadBalancerType",
            "application",
        ),
        (
            "aws:elasticbeanstalk:environment:process:default",
            "HealthCheckPath",
            "/",
        ),
        (
            "aws:elasticbeanstalk:command",
            "DeploymentPolicy",
            "AllAtOnce",
        ),
        (
            "aws:elasticbeanstalk:healthreporting:system",
            "SystemType",
            "enhanced",
        ),
        (
            "aws:elasticbeanstalk:container:python",
            "WSGIPath",
            "application",
        ),
    ] {
        assert_eq!(get(&live_settings, ns, name), Some(value), "{ns} {name}");
    }
    // ... and the overrides.
    assert_eq!(
        get(&live_settings, "aws:autoscaling:asg", "MaxSize"),
        Some("8")
    );
    assert_eq!(
        get(
            &live_settings,
            "aws:elasticbeanstalk:application:environment",
            "GREETING"
        ),
        Some("hello")
    );

    // A saved configuration of the live environment carries all of it, so its clone is a clone.
    let template = bed
        .ok(&[
            "create-configuration-template",
            "--application-name",
            "shop",
            "--template-name",
            "live-config",
            "--environment-id",
            live.environment_id().unwrap(),
        ])
        .await;
    assert_eq!(settings_of(&template), live_settings);
    let clone = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-clone")
        .template_name("live-config")
        .option_settings(setting("aws:autoscaling:asg", "MinSize", "2"))
        .options_to_remove(
            OptionSpecification::builder()
                .namespace("aws:autoscaling:asg")
                .option_name("MaxSize")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(clone.solution_stack_name(), Some(STACK));
    let cloned = bed
        .ok(&[
            "describe-configuration-settings",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-clone",
        ])
        .await;
    let cloned = settings_of(&cloned["ConfigurationSettings"][0]);
    let mut expected = live_settings.clone();
    expected.insert(("aws:autoscaling:asg".into(), "MinSize".into()), "2".into());
    // A removed option goes back to the platform's default.
    expected.insert(("aws:autoscaling:asg".into(), "MaxSize".into()), "4".into());
    assert_eq!(cloned, expected);
}

/// Uploads the example app as version `label`.
async fn version(bed: &Bed, label: &str, extra: &[(&str, &str)]) {
    test_support::bed::upload_version(
        &bed.s3,
        &bed.eb,
        BUNDLES,
        label,
        test_support::app_bundle(label, extra),
    )
    .await;
}

#[tokio::test]
async fn nothing_answers_before_the_load_balancer_has_a_checked_instance() {
    // A launch long enough to look at: the app listens at once, the load balancer checks it only when
    // the instance's deployment is complete.
    let bed = bed(Options {
        launch_delay: Duration::from_millis(1500),
        health_window: Duration::from_secs(120),
        ..Options::default()
    })
    .await;
    version(&bed, "v1", &[]).await;
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-green")
        .cname_prefix("shop-green")
        .version_label("v1")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let id = created.environment_id().unwrap().to_string();
    let host = "shop-green.us-east-1.elasticbeanstalk.com";
    let mut launching_answers = 0;
    loop {
        let (code, body) = bed.get(host, "/version").await;
        let status = bed
            .eb
            .describe_environments()
            .environment_ids(&id)
            .send()
            .await
            .unwrap()
            .environments()[0]
            .status()
            .unwrap()
            .as_str()
            .to_string();
        if status != "Launching" {
            break;
        }
        // Still Launching after the request was answered: the load balancer refused it itself.
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains("503 Service Temporarily Unavailable"),
            "{body}"
        );
        launching_answers += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(launching_answers > 3, "the launch was watched");
    bed.wait_for(&id, "Ready").await;
    assert_eq!(bed.get(host, "/version").await, (200, "v1\n".into()));
    // The 503s were the load balancer's own: no instance saw them.
    let instances = bed
        .ok(&[
            "describe-instances-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "ApplicationMetrics",
        ])
        .await;
    let instance = &instances["InstanceHealthList"][0]["ApplicationMetrics"];
    let environment = bed
        .ok(&[
            "describe-environment-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "ApplicationMetrics",
        ])
        .await;
    let environment = &environment["ApplicationMetrics"];
    // The load balancer's own 503s count for the environment, not for the instance; StatusCodes are
    // percentages of the window's requests (API reference: StatusCodes).
    let total = environment["RequestCount"].as_u64().unwrap();
    let refused = total - instance["RequestCount"].as_u64().unwrap();
    assert!(refused >= launching_answers, "{environment} {instances}");
    assert_eq!(
        environment["StatusCodes"]["Status5xx"].as_u64().unwrap(),
        (refused as f64 * 100.0 / total as f64).round() as u64,
        "{environment}"
    );
    assert_eq!(instance["StatusCodes"]["Status5xx"], 0, "{instances}");

    // An instance whose health check fails still gets requests once checked: an ALB with no healthy
    // target fails open.
    let sick = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-sick")
        .cname_prefix("shop-sick")
        .version_label("v1")
        .solution_stack_name(STACK)
        .option_settings(setting(
            "aws:elasticbeanstalk:application",
            "Application Healthcheck URL",
            "/health",
        ))
        .option_settings(setting(
            "aws:elasticbeanstalk:application:environment",
            "HEALTH_STATUS",
            "500",
        ))
        .send()
        .await
        .unwrap();
    bed.wait_for(sick.environment_id().unwrap(), "Ready").await;
    assert_eq!(
        bed.get("shop-sick.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );
}

#[tokio::test]
async fn enhanced_health_is_measured_from_the_requests_the_router_served() {
    // A window long enough for the AWS CLI's calls on a busy machine (AWS's is 10 s: the unit tests
    // hold that default).
    let bed = bed(Options {
        launch_delay: Duration::from_secs(3),
        health_window: Duration::from_secs(120),
        ..Options::default()
    })
    .await;
    // /health answers 503 in this version, while the health check path stays `/`.
    version(&bed, "v1", &[]).await;
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-green")
        .cname_prefix("shop-green")
        .version_label("v1")
        .solution_stack_name(STACK)
        .option_settings(setting(
            "aws:elasticbeanstalk:application:environment",
            "HEALTH_STATUS",
            "503",
        ))
        .send()
        .await
        .unwrap();
    let id = created.environment_id().unwrap().to_string();
    let launching = bed
        .ok(&[
            "describe-environment-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "All",
        ])
        .await;
    assert_eq!(launching["HealthStatus"], "Pending");
    assert_eq!(launching["Color"], "Grey");
    bed.wait_for(&id, "Ready").await;

    let host = "shop-green.us-east-1.elasticbeanstalk.com";
    for _ in 0..6 {
        assert_eq!(bed.get(host, "/version").await.0, 200);
    }
    assert_eq!(bed.get(host, "/nowhere").await.0, 404);
    for _ in 0..3 {
        assert_eq!(bed.get(host, "/health").await.0, 503);
    }
    let health = bed
        .ok(&[
            "describe-environment-health",
            "--environment-name",
            "shop-green",
            "--attribute-names",
            "All",
        ])
        .await;
    assert_eq!(health["EnvironmentName"], "shop-green");
    assert_eq!(health["HealthStatus"], "Ok");
    assert_eq!(health["Status"], "Ready");
    assert_eq!(health["Color"], "Green");
    let metrics = &health["ApplicationMetrics"];
    assert_eq!(metrics["Duration"], 120);
    assert_eq!(metrics["RequestCount"], 10);
    assert_eq!(
        metrics["StatusCodes"],
        serde_json::json!({"Status2xx": 60, "Status3xx": 0, "Status4xx": 10, "Status5xx": 30}),
        "percentages of the 10 requests"
    );
    let latency = &metrics["Latency"];
    let p = |k: &str| latency[k].as_f64().unwrap();
    assert!(
        p("P999") >= p("P50") && p("P50") >= p("P10") && p("P10") >= 0.0,
        "{latency}"
    );
    assert_eq!(
        health["Causes"],
        serde_json::json!(["30.0 % of the requests are failing with HTTP 5xx."])
    );
    assert_eq!(health["InstancesHealth"]["Ok"], 1);
    assert_eq!(health["InstancesHealth"]["Severe"], 0);
    assert!(health["RefreshedAt"].is_string());
    // Without attribute names, only the name.
    let bare = bed
        .ok(&["describe-environment-health", "--environment-id", &id])
        .await;
    assert_eq!(bare, serde_json::json!({"EnvironmentName": "shop-green"}));

    let instances = bed
        .ok(&[
            "describe-instances-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "All",
        ])
        .await;
    let instance = &instances["InstanceHealthList"][0];
    let instance_id = instance["InstanceId"].as_str().unwrap();
    assert!(
        instance_id.starts_with("i-0") && instance_id.len() == 19,
        "{instance_id}"
    );
    assert_eq!(instance["HealthStatus"], "Ok");
    assert_eq!(instance["ApplicationMetrics"]["RequestCount"], 10);
    assert_eq!(instance["Deployment"]["VersionLabel"], "v1");
    assert_eq!(instance["Deployment"]["Status"], "Deployed");
    assert_eq!(instance["Deployment"]["DeploymentId"], 1);
    assert!(instance["LaunchedAt"].is_string());
    let bare = bed
        .ok(&["describe-instances-health", "--environment-id", &id])
        .await;
    assert_eq!(
        bare["InstanceHealthList"],
        serde_json::json!([{ "InstanceId": instance_id }])
    );

    // The resources behind it: the same instance, the ALB by ARN, the Auto Scaling group.
    let resources = bed
        .ok(&["describe-environment-resources", "--environment-id", &id])
        .await;
    let resources = &resources["EnvironmentResources"];
    assert_eq!(resources["Instances"][0]["Id"], instance_id);
    assert!(resources["LoadBalancers"][0]["Name"]
        .as_str()
        .unwrap()
        .starts_with(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/awseb-AWSEB-"
        ));
    assert!(resources["AutoScalingGroups"][0]["Name"]
        .as_str()
        .unwrap()
        .contains("-stack-AWSEBAutoScalingGroup-"));

    // A deployment counts as one more, and the window forgets nothing it should keep.
    version(&bed, "v2", &[]).await;
    bed.eb
        .update_environment()
        .environment_id(&id)
        .version_label("v2")
        .send()
        .await
        .unwrap();
    bed.wait_for(&id, "Ready").await;
    let events = bed
        .ok(&[
            "describe-events",
            "--environment-id",
            &id,
            "--max-items",
            "5",
        ])
        .await;
    let messages: Vec<&str> = events["Events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["Message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "Environment update is starting.",
            "Deploying new version to instance(s).",
            "Instance deployment completed successfully.",
            "New application version was deployed to running EC2 instances.",
            "Environment update completed successfully.",
        ]
    );
    let instances = bed
        .ok(&[
            "describe-instances-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "Deployment",
        ])
        .await;
    assert_eq!(
        instances["InstanceHealthList"][0]["Deployment"]["DeploymentId"],
        2
    );
    assert_eq!(
        instances["InstanceHealthList"][0]["Deployment"]["VersionLabel"],
        "v2"
    );

    // Basic health reporting: the operation is refused, as the model's documentation says.
    let basic = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-basic")
        .solution_stack_name(STACK)
        .option_settings(setting(
            "aws:elasticbeanstalk:healthreporting:system",
            "SystemType",
            "basic",
        ))
        .send()
        .await
        .unwrap();
    let err = bed
        .cli(&[
            "describe-environment-health",
            "--environment-id",
            basic.environment_id().unwrap(),
            "--attribute-names",
            "All",
        ])
        .await
        .unwrap_err();
    assert!(err.contains("(InvalidRequestException)"), "{err}");
}

#[tokio::test]
async fn health_transitions_and_failed_deployments_write_beanstalks_events() {
    let bed = bed(Options::default()).await;
    version(&bed, "v1", &[]).await;
    version(
        &bed,
        "broken",
        &[("Procfile", "web: echo 'no module named shop' >&2; exit 1\n")],
    )
    .await;
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-green")
        .version_label("v1")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let id = created.environment_id().unwrap().to_string();
    bed.wait_for(&id, "Ready").await;
    let started = Instant::now();
    bed.eb
        .update_environment()
        .environment_id(&id)
        .version_label("broken")
        .send()
        .await
        .unwrap();
    bed.wait_for(&id, "Ready").await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let events = bed
        .ok(&[
            "describe-events",
            "--environment-id",
            &id,
            "--max-items",
            "5",
        ])
        .await;
    let lines: Vec<String> = events["Events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            format!(
                "{} {}",
                e["Severity"].as_str().unwrap(),
                e["Message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        lines[0], "INFO Environment update is starting.",
        "{lines:#?}"
    );
    assert_eq!(lines[1], "INFO Deploying new version to instance(s).");
    assert!(
        lines[2].starts_with("ERROR Instance deployment failed."),
        "{lines:#?}"
    );
    assert_eq!(lines[3], "ERROR Failed to deploy application.");
    assert_eq!(
        lines[4],
        "WARN Environment health has transitioned from Ok to Severe. Instance deployment failed."
    );
    let health = bed
        .ok(&[
            "describe-environment-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "HealthStatus",
            "Causes",
            "InstancesHealth",
        ])
        .await;
    assert_eq!(health["HealthStatus"], "Severe");
    assert_eq!(
        health["Causes"],
        serde_json::json!(["Instance deployment failed."])
    );
    assert_eq!(health["InstancesHealth"]["Severe"], 1);
    let instances = bed
        .ok(&[
            "describe-instances-health",
            "--environment-id",
            &id,
            "--attribute-names",
            "Deployment",
        ])
        .await;
    assert_eq!(
        instances["InstanceHealthList"][0]["Deployment"]["Status"],
        "Failed"
    );
}

#[tokio::test]
async fn tags_templates_and_the_protocol_refuse_as_beanstalk_does() {
    let bed = bed(Options {
        launch_delay: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let env = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-green")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    // Reserved tag keys, and at most 50 tags a resource.
    for key in [
        "aws:cloudformation:stack-name",
        "elasticbeanstalk:environment-name",
    ] {
        let err = bed
            .eb
            .update_tags_for_resource()
            .resource_arn(local_aws::beanstalk::application_arn("shop"))
            .tags_to_add(
                aws_sdk_elasticbeanstalk::types::Tag::builder()
                    .key(key)
                    .value("x")
                    .build(),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err).0, "InvalidParameterValue", "{key}");
    }
    let mut many = bed
        .eb
        .update_tags_for_resource()
        .resource_arn(local_aws::beanstalk::application_arn("shop"));
    for i in 0..51 {
        many = many.tags_to_add(
            aws_sdk_elasticbeanstalk::types::Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build(),
        );
    }
    assert_eq!(
        code(&many.send().await.unwrap_err()).0,
        "TooManyTagsException"
    );
    // A saved configuration an environment is launching from can't be deleted meanwhile.
    bed.eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("base")
        .environment_id(env.environment_id().unwrap())
        .send()
        .await
        .unwrap();
    bed.eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-blue")
        .template_name("base")
        .send()
        .await
        .unwrap();
    let err = bed
        .eb
        .delete_configuration_template()
        .application_name("shop")
        .template_name("base")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "OperationInProgressFailure");
    let err = bed
        .eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("base")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "Configuration Template base already exists.".into()
        )
    );
    // A source bundle needs both its bucket and its key.
    let err = bed
        .eb
        .create_application_version()
        .application_name("shop")
        .version_label("half")
        .source_bundle(
            aws_sdk_elasticbeanstalk::types::S3Location::builder()
                .s3_bucket(BUNDLES)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "InvalidParameterValue");
    // The protocol: an unknown action or API version is InvalidAction.
    let http = reqwest::Client::new();
    for body in [
        "Action=RebuildTheWorld&Version=2010-12-01",
        "Action=DescribeEnvironments&Version=2099-01-01",
    ] {
        let r = http
            .post(bed.local.endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("<Type>Sender</Type><Code>InvalidAction</Code>"),
            "{text}"
        );
    }
}

/// The severity and message of an environment's newest `n` events, oldest first, through the AWS CLI.
async fn cli_events(bed: &Bed, id: &str, n: usize) -> Vec<String> {
    let events = bed
        .ok(&[
            "describe-events",
            "--environment-id",
            id,
            "--max-items",
            &n.to_string(),
        ])
        .await;
    events["Events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            format!(
                "{} {}",
                e["Severity"].as_str().unwrap(),
                e["Message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_aws_cli_changes_an_environments_tags_as_an_environment_update() {
    // An update delay long enough for the AWS CLI (a Python process per call) to look at the
    // environment while the tag change is under way.
    let bed = bed(Options {
        update_delay: Duration::from_secs(20),
        ..Options::default()
    })
    .await;
    let mut ids = vec![];
    for name in ["shop-green", "shop-blue"] {
        let created = bed
            .ok(&[
                "create-environment",
                "--application-name",
                "shop",
                "--environment-name",
                name,
                "--solution-stack-name",
                STACK,
            ])
            .await;
        ids.push(created["EnvironmentId"].as_str().unwrap().to_string());
    }
    for id in &ids {
        bed.wait_for(id, "Ready").await;
    }
    let id = &ids[0];
    let described = bed
        .ok(&["describe-environments", "--environment-ids", id])
        .await;
    let arn = described["Environments"][0]["EnvironmentArn"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = bed
        .ok(&[
            "update-tags-for-resource",
            "--resource-arn",
            &arn,
            "--tags-to-add",
            "Key=beanswap:retired-at,Value=now",
        ])
        .await;
    assert_eq!(answer, Value::Null, "UpdateTagsForResource has no output");
    let status = |d: &Value| d["Environments"][0]["Status"].as_str().unwrap().to_string();
    let described = bed
        .ok(&["describe-environments", "--environment-ids", id])
        .await;
    assert_eq!(status(&described), "Updating");
    // Meanwhile every operation that needs Ready is refused with Beanstalk's words.
    let refused =
        "Environment named shop-green is in an invalid state for this operation. Must be Ready.";
    for args in [
        vec![
            "update-tags-for-resource",
            "--resource-arn",
            &arn,
            "--tags-to-add",
            "Key=again,Value=1",
        ],
        vec![
            "swap-environment-cnames",
            "--source-environment-name",
            "shop-green",
            "--destination-environment-name",
            "shop-blue",
        ],
        vec![
            "update-environment",
            "--environment-id",
            id,
            "--option-settings",
            "Namespace=aws:elasticbeanstalk:application:environment,OptionName=A,Value=1",
        ],
    ] {
        let err = bed.cli(&args).await.unwrap_err();
        assert!(
            err.contains("(InvalidParameterValue)") && err.contains(refused),
            "{args:?}: {err}"
        );
    }
    // Still the one update: the refused calls changed nothing.
    let described = bed
        .ok(&["describe-environments", "--environment-ids", id])
        .await;
    assert_eq!(status(&described), "Updating");
    bed.wait_for(id, "Ready").await;
    let lines = cli_events(&bed, id, 2).await;
    assert_eq!(
        lines,
        [
            "INFO Environment update is starting.",
            "INFO Environment update completed successfully."
        ],
        "{lines:#?}"
    );
    let tags = bed
        .ok(&["list-tags-for-resource", "--resource-arn", &arn])
        .await;
    let tags: Vec<(&str, &str)> = tags["ResourceTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["Key"].as_str().unwrap(), t["Value"].as_str().unwrap()))
        .collect();
    assert!(tags.contains(&("beanswap:retired-at", "now")), "{tags:?}");
    assert!(!tags.iter().any(|(k, _)| *k == "again"), "{tags:?}");
}

/// An app whose health check path answers 503 from a request to `/sick` until one to `/well`.
const FLAKY: &str = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SICK = [False]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/sick":
            SICK[0] = True
        elif self.path == "/well":
            SICK[0] = False
        status = 503 if self.path == "/health" and SICK[0] else 200
        body = b"unhealthy\n" if status == 503 else b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[tokio::test]
async fn an_environment_that_degrades_and_recovers_logs_both_health_transitions() {
    let bed = bed(Options::default()).await;
    version(
        &bed,
        "flaky",
        &[("Procfile", "web: python3 flaky.py\n"), ("flaky.py", FLAKY)],
    )
    .await;
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-flaky")
        .cname_prefix("shop-flaky")
        .version_label("flaky")
        .solution_stack_name(STACK)
        .option_settings(setting(
            "aws:elasticbeanstalk:application",
            "Application Healthcheck URL",
            "/health",
        ))
        .send()
        .await
        .unwrap();
    let id = created.environment_id().unwrap().to_string();
    bed.wait_for(&id, "Ready").await;
    let host = "shop-flaky.us-east-1.elasticbeanstalk.com";
    let health = |bed: &Bed, id: &str, want: &'static str| {
        let (eb, id) = (bed.eb.clone(), id.to_string());
        async move {
            test_support::bed::wait_for_environment(&eb, &id, Duration::from_secs(30), |e| {
                e.health_status().map(|h| h.as_str()) == Some(want)
            })
            .await
        }
    };
    health(&bed, &id, "Ok").await;
    // The only instance fails its health checks: Severe (Red). The load balancer, with no healthy
    // target, fails open, so the request that heals the app still reaches it.
    assert_eq!(bed.get(host, "/sick").await.0, 200);
    let sick = health(&bed, &id, "Severe").await;
    assert_eq!(sick.health().map(|h| h.as_str()), Some("Red"));
    assert_eq!(bed.get(host, "/well").await.0, 200);
    let well = health(&bed, &id, "Ok").await;
    assert_eq!(well.health().map(|h| h.as_str()), Some("Green"));
    let lines = cli_events(&bed, &id, 2).await;
    assert!(
        lines[0].starts_with("WARN Environment health has transitioned from Ok to Severe. "),
        "{lines:#?}"
    );
    assert_eq!(
        lines[1], "INFO Environment health has transitioned from Severe to Ok.",
        "{lines:#?}"
    );
}

#[tokio::test]
async fn every_call_is_counted_before_it_is_validated() {
    let bed = bed(Options::default()).await;
    let calls = || async {
        let r = reqwest::get(format!("{}/_local/calls", bed.local.endpoint()))
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()
    };
    let count = |calls: &Value, op: &str| calls[op].as_u64().unwrap_or(0);
    let before = calls().await;
    // A name the model's constraints refuse, and a request naming nothing that exists: both refused
    // by validation, both counted (AWS throttles and bills what it receives).
    let err = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("x")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "InvalidParameterValue", "{err:?}");
    let err = bed
        .eb
        .update_environment()
        .environment_name("no-such-env")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "InvalidParameterValue", "{err:?}");
    let err = bed
        .cli(&[
            "delete-application-version",
            "--application-name",
            "shop",
            "--version-label",
            "none",
        ])
        .await
        .unwrap_err();
    assert!(err.contains("InvalidParameterValue"), "{err}");
    // RDS and CodePipeline calls too: an identifier against CreateDBSnapshot's rule, a job result
    // without its jobId.
    let http = reqwest::Client::new();
    let r = http
        .post(bed.local.endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=CreateDBSnapshot&Version=2014-10-31&DBSnapshotIdentifier=1-bad--id&DBInstanceIdentifier=shop-db")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "{}", r.text().await.unwrap());
    let r = http
        .post(bed.local.endpoint())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "CodePipeline_20150709.PutJobSuccessResult")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "{}", r.text().await.unwrap());
    let after = calls().await;
    for (op, n) in [
        ("ElasticBeanstalk.CreateEnvironment", 1),
        ("ElasticBeanstalk.UpdateEnvironment", 1),
        ("ElasticBeanstalk.DeleteApplicationVersion", 1),
        ("RDS.CreateDBSnapshot", 1),
        ("CodePipeline.PutJobSuccessResult", 1),
    ] {
        assert_eq!(count(&after, op) - count(&before, op), n, "{op}: {after}");
    }
}
