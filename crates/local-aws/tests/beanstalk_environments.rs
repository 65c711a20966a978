//! Environments on local-aws, end to end: the unmodified SDK (and the AWS CLI) create, clone, swap and
//! terminate environments whose bundles come from moto's S3 and run for real behind the router.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::operation::create_environment::CreateEnvironmentOutput;
use aws_sdk_elasticbeanstalk::types::{
    ConfigurationOptionSetting, EnvironmentDescription, EventSeverity, S3Location, Tag,
};
use aws_sdk_elasticbeanstalk::Client;
use local_aws::beanstalk::Options;
use local_aws::faults::{Faults, Throttle};
use local_aws::LocalAws;
use test_support::clients;
use test_support::moto::Moto;

use test_support::SOLUTION_STACK as STACK;

struct Bed {
    local: LocalAws,
    moto: Moto,
    eb: Client,
    s3: aws_sdk_s3::Client,
    http: reqwest::Client,
}

async fn bed(options: Options) -> Bed {
    let (local, moto) = test_support::bed::servers(options).await;
    // No retries: these tests look at the errors local-aws answers with, not at the SDK recovering from them.
    let eb = Client::from_conf(
        clients::beanstalk_config(&local.endpoint())
            .retry_config(aws_sdk_elasticbeanstalk::config::retry::RetryConfig::disabled())
            .build(),
    );
    let s3 = clients::s3(&moto.endpoint());
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    eb.create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    Bed {
        local,
        moto,
        eb,
        s3,
        http: reqwest::Client::new(),
    }
}

impl Bed {
    async fn version(&self, label: &str, bundle: Vec<u8>) {
        test_support::bed::upload_version(&self.s3, &self.eb, "bundles", label, bundle).await;
    }

    async fn env(&self, id: &str) -> EnvironmentDescription {
        self.eb
            .describe_environments()
            .environment_ids(id)
            .send()
            .await
            .unwrap()
            .environments()[0]
            .clone()
    }

    /// Polls until the environment reaches `status` (a poll, not a sleep: done as soon as it is).
    async fn wait_for(&self, id: &str, status: &str) -> EnvironmentDescription {
        let timeout = Duration::from_secs(30);
        test_support::bed::wait_for_environment(&self.eb, id, timeout, |e| {
            e.status().map(|s| s.as_str()) == Some(status)
        })
        .await
    }

    async fn messages(&self, id: &str) -> Vec<String> {
        self.eb
            .describe_events()
            .environment_id(id)
            .send()
            .await
            .unwrap()
            .events()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.severity().map(|s| s.as_str()).unwrap_or_default(),
                    e.message().unwrap_or_default()
                )
            })
            .collect()
    }

    /// GET through the router, as a browser resolving the CNAME would.
    async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.local.router_endpoint()))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn create(&self, name: &str, prefix: &str, label: &str) -> CreateEnvironmentOutput {
        self.eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK)
            .tags(
                Tag::builder()
                    .key("beanswap:application")
                    .value("shop")
                    .build(),
            )
            .send()
            .await
            .unwrap()
    }
}

fn code<E: aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

fn bundle(version: &str) -> Vec<u8> {
    test_support::app_bundle(version, &[])
}

#[tokio::test]
async fn an_environment_launches_runs_its_bundle_swaps_and_terminates() {
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;
    bed.version("v2", bundle("v2")).await;

    let created = bed.create("shop-green", "shop-prod", "v1").await;
    assert_eq!(created.status().unwrap().as_str(), "Launching");
    assert_eq!(created.health().unwrap().as_str(), "Grey");
    assert_eq!(
        created.cname(),
        Some("shop-prod.us-east-1.elasticbeanstalk.com")
    );
    let green_id = created.environment_id().unwrap().to_string();
    assert!(
        green_id.starts_with("e-") && green_id.len() == 12,
        "{green_id}"
    );
    let green = bed.wait_for(&green_id, "Ready").await;
    assert_eq!(green.health().unwrap().as_str(), "Green");
    assert_eq!(
        green.health_status().unwrap().as_str(),
        "Ok",
        "{:?}",
        bed.messages(&green_id).await
    );
    // The launch's events, oldest first, as Beanstalk writes them (FIDELITY.md, "Events").
    let mut events = bed.messages(&green_id).await;
    events.reverse();
    let resources: Vec<String> = events
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(e).to_string())
        .collect();
    assert_eq!(
        resources,
        [
            "INFO createEnvironment is starting.",
            "INFO Using elasticbeanstalk-us-east-1-123456789012 as Amazon S3 storage bucket for environment data.",
            "INFO Created security group named",
            "INFO Created target group named",
            "INFO Created load balancer named",
            "INFO Created Auto Scaling group named",
            "INFO Waiting for EC2 instances to launch. This may take a few minutes.",
            "INFO Instance deployment completed successfully.",
            "INFO Application available at shop-prod.us-east-1.elasticbeanstalk.com.",
            "INFO Successfully launched environment",
            "INFO Environment health has transitioned from Pending to Ok.",
        ],
        "{events:#?}"
    );
    assert!(
        events[4].contains(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/awseb-AWSEB-"
        ),
        "{}",
        events[4]
    );
    let prod = "shop-prod.us-east-1.elasticbeanstalk.com";
    assert_eq!(bed.get(prod, "/version").await, (200, "v1\n".into()));

    // Clone the live configuration, as stage does, and launch v2 beside it.
    bed.eb
        .update_environment()
        .environment_id(&green_id)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("ENVIRONMENT_NAME")
                .value("from-live")
                .build(),
        )
        .send()
        .await
        .unwrap();
    bed.wait_for(&green_id, "Ready").await;
    let template = bed
        .eb
        .create_configuration_template()
        .application_name("shop")
        .template_name("shop-live-config")
        .environment_id(&green_id)
        .send()
        .await
        .unwrap();
    assert_eq!(template.solution_stack_name(), Some(STACK));
    assert!(template
        .option_settings()
        .iter()
        .any(|o| o.option_name() == Some("ENVIRONMENT_NAME") && o.value() == Some("from-live")));
    let free = bed
        .eb
        .check_dns_availability()
        .cname_prefix("shop-prod")
        .send()
        .await
        .unwrap();
    assert_eq!(free.available(), Some(false));
    let free = bed
        .eb
        .check_dns_availability()
        .cname_prefix("shop-blue-1")
        .send()
        .await
        .unwrap();
    assert_eq!(free.available(), Some(true));
    assert_eq!(
        free.fully_qualified_cname(),
        Some("shop-blue-1.us-east-1.elasticbeanstalk.com")
    );
    let blue = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-blue")
        .cname_prefix("shop-blue-1")
        .version_label("v2")
        .template_name("shop-live-config")
        .send()
        .await
        .unwrap();
    let blue_id = blue.environment_id().unwrap().to_string();
    bed.wait_for(&blue_id, "Ready").await;
    let blue_host = "shop-blue-1.us-east-1.elasticbeanstalk.com";
    assert_eq!(bed.get(blue_host, "/version").await, (200, "v2\n".into()));
    let info = bed.get(blue_host, "/api/info").await.1;
    assert!(info.contains("\"environment\": \"from-live\""), "{info}");
    let settings = bed
        .eb
        .describe_configuration_settings()
        .application_name("shop")
        .environment_name("shop-blue")
        .send()
        .await
        .unwrap();
    assert_eq!(
        settings.configuration_settings()[0]
            .deployment_status()
            .map(|d| d.as_str()),
        Some("deployed")
    );

    // Filters and paging.
    let by_version = bed
        .eb
        .describe_environments()
        .application_name("shop")
        .version_label("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(by_version.environments().len(), 1);
    let first_page = bed
        .eb
        .describe_environments()
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(first_page.environments().len(), 1);
    let second_page = bed
        .eb
        .describe_environments()
        .max_records(1)
        .next_token(first_page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        second_page.environments()[0].environment_name(),
        Some("shop-blue")
    );
    assert!(second_page.next_token().is_none());

    // The swap: production traffic moves in one step.
    let before_swap =
        aws_sdk_elasticbeanstalk::primitives::DateTime::from(std::time::SystemTime::now());
    bed.eb
        .swap_environment_cnames()
        .source_environment_name("shop-green")
        .destination_environment_name("shop-blue")
        .send()
        .await
        .unwrap();
    assert_eq!(bed.get(prod, "/version").await, (200, "v2\n".into()));
    assert_eq!(bed.get(blue_host, "/version").await, (200, "v1\n".into()));
    assert_eq!(bed.env(&blue_id).await.cname(), Some(prod));
    let since = bed
        .eb
        .describe_events()
        .environment_name("shop-blue")
        .start_time(before_swap)
        .send()
        .await
        .unwrap();
    let texts: Vec<&str> = since.events().iter().filter_map(|e| e.message()).collect();
    let blue_endpoint = bed.env(&blue_id).await.endpoint_url().unwrap().to_string();
    assert_eq!(
        texts,
        [
            "Completed swapping CNAMEs for environments 'shop-green' and 'shop-blue'.".to_string(),
            format!("'{prod}' now points to '{blue_endpoint}'."),
            "Swapping CNAMEs for environments 'shop-green' and 'shop-blue'.".to_string(),
            "swapEnvironmentCNAMEs is starting.".to_string(),
        ]
    );
    let request_id = since.events()[0].request_id().unwrap().to_string();
    let by_request = bed
        .eb
        .describe_events()
        .request_id(&request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_request.events().len(),
        8,
        "both environments' swap events"
    );
    let paged = bed
        .eb
        .describe_events()
        .application_name("shop")
        .max_records(3)
        .send()
        .await
        .unwrap();
    assert_eq!(paged.events().len(), 3);
    assert!(paged.next_token().is_some());
    let errors = bed
        .eb
        .describe_events()
        .severity(EventSeverity::Error)
        .send()
        .await
        .unwrap();
    assert!(errors.events().is_empty(), "{:?}", errors.events());

    // Tags and resources.
    let arn = bed
        .env(&green_id)
        .await
        .environment_arn()
        .unwrap()
        .to_string();
    assert_eq!(
        arn,
        "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/shop-green"
    );
    bed.eb
        .update_tags_for_resource()
        .resource_arn(&arn)
        .tags_to_add(
            Tag::builder()
                .key("beanswap:retired-at")
                .value("now")
                .build(),
        )
        .tags_to_remove("beanswap:application")
        .send()
        .await
        .unwrap();
    // A tag change on an environment is an environment update (FIDELITY.md): Updating, and operations
    // that need Ready (another tag change, a CNAME swap, a termination) are refused until it is over.
    assert_eq!(
        bed.env(&green_id).await.status().unwrap().as_str(),
        "Updating"
    );
    let refused = bed
        .eb
        .update_tags_for_resource()
        .resource_arn(&arn)
        .tags_to_add(Tag::builder().key("again").value("1").build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().message()),
        Some("Environment named shop-green is in an invalid state for this operation. Must be Ready.")
    );
    let refused = bed
        .eb
        .terminate_environment()
        .environment_id(&green_id)
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("invalid state for this operation. Must be Ready."),
        "{refused:?}"
    );
    bed.wait_for(&green_id, "Ready").await;
    let events = bed
        .eb
        .describe_events()
        .environment_id(&green_id)
        .max_records(5)
        .send()
        .await
        .unwrap();
    let messages: Vec<_> = events.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(
        messages[..2],
        [
            "Environment update completed successfully.",
            "Environment update is starting."
        ],
        "{messages:?}"
    );
    let tags = bed
        .eb
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = tags
        .resource_tags()
        .iter()
        .filter_map(|t| t.key())
        .collect();
    assert_eq!(keys, ["beanswap:retired-at"]);
    let resources = bed
        .eb
        .describe_environment_resources()
        .environment_id(&green_id)
        .send()
        .await
        .unwrap();
    let resources = resources.environment_resources().unwrap();
    assert_eq!(resources.instances().len(), 1);
    assert_eq!(resources.load_balancers().len(), 1);

    // Terminate the old one: its app stops and it disappears unless deleted ones are asked for.
    let green_port_before = bed.get(blue_host, "/version").await;
    assert_eq!(green_port_before.0, 200);
    let terminating = bed
        .eb
        .terminate_environment()
        .environment_id(&green_id)
        .send()
        .await
        .unwrap();
    assert_eq!(terminating.status().unwrap().as_str(), "Terminating");
    bed.wait_for(&green_id, "Terminated").await;
    assert_eq!(bed.get(blue_host, "/version").await.0, 502);
    let live = bed
        .eb
        .describe_environments()
        .application_name("shop")
        .include_deleted(false)
        .send()
        .await
        .unwrap();
    assert_eq!(live.environments().len(), 1);
    let all = bed
        .eb
        .describe_environments()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    assert_eq!(
        all.environments().len(),
        2,
        "deleted ones are included by default"
    );
    let later = aws_sdk_elasticbeanstalk::primitives::DateTime::from(
        std::time::SystemTime::now() + Duration::from_secs(60),
    );
    let recent = bed
        .eb
        .describe_environments()
        .included_deleted_back_to(later)
        .send()
        .await
        .unwrap();
    assert_eq!(recent.environments().len(), 1);
    assert!(bed
        .messages(&green_id)
        .await
        .contains(&"INFO terminateEnvironment completed successfully.".to_string()));
    bed.eb
        .delete_configuration_template()
        .application_name("shop")
        .template_name("shop-live-config")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_requests_get_beanstalks_error_codes_and_messages() {
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;
    let first = bed.create("shop-green", "shop-prod", "v1").await;
    let first_id = first.environment_id().unwrap();

    let cases: Vec<(&str, &str, &str)> = vec![
        ("ab", "shop-x-1", "v1"),
        ("shop_green", "shop-x-2", "v1"),
        ("shop-green", "shop-x-3", "v1"),
        ("shop-other", "shop-prod", "v1"),
        ("shop-other", "shop-x-4", "v9"),
    ];
    let mut messages = vec![];
    for (name, prefix, label) in cases {
        let err = bed
            .eb
            .create_environment()
            .application_name("shop")
            .environment_name(name)
            .cname_prefix(prefix)
            .version_label(label)
            .solution_stack_name(STACK)
            .send()
            .await
            .unwrap_err();
        let (code, message) = code(&err);
        assert_eq!(code, "InvalidParameterValue", "{message}");
        messages.push(message);
    }
    assert!(
        messages[0].contains("must have length between 4 and 40"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("only letters, digits, and the dash"),
        "{}",
        messages[1]
    );
    assert_eq!(messages[2], "Environment shop-green already exists.");
    assert_eq!(
        messages[3],
        "DNS name (shop-prod.us-east-1.elasticbeanstalk.com) is not available."
    );
    assert_eq!(messages[4], "No Application Version named 'v9' found.");

    // Still launching: no swap, no update.
    bed.version("v2", bundle("v2")).await;
    let second = bed.create("shop-blue", "shop-blue-1", "v2").await;
    let err = bed
        .eb
        .swap_environment_cnames()
        .source_environment_name("shop-green")
        .destination_environment_name("shop-blue")
        .send()
        .await
        .unwrap_err();
    let (code_, message) = code(&err);
    assert_eq!(code_, "InvalidParameterValue");
    assert!(
        message.ends_with("is in an invalid state for this operation. Must be Ready."),
        "{message}"
    );
    let err = bed
        .eb
        .update_environment()
        .environment_id(first_id)
        .version_label("v2")
        .send()
        .await
        .unwrap_err();
    assert!(code(&err).1.contains("Must be Ready"));

    bed.wait_for(first_id, "Ready").await;
    bed.wait_for(second.environment_id().unwrap(), "Ready")
        .await;

    // Both Ready, but in two applications: no swap, and neither CNAME moves.
    bed.eb
        .create_application()
        .application_name("blog")
        .send()
        .await
        .unwrap();
    bed.eb
        .create_application_version()
        .application_name("blog")
        .version_label("v1")
        .source_bundle(
            S3Location::builder()
                .s3_bucket("bundles")
                // shop's v2 bundle: it answers /version with v2, so routing tells the two apart.
                .s3_key("shop/v2.zip")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let blog = bed
        .eb
        .create_environment()
        .application_name("blog")
        .environment_name("blog-green")
        .cname_prefix("blog-prod")
        .version_label("v1")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let blog_id = blog.environment_id().unwrap();
    bed.wait_for(blog_id, "Ready").await;
    let err = bed
        .eb
        .swap_environment_cnames()
        .source_environment_name("shop-green")
        .destination_environment_name("blog-green")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "Environments shop-green and blog-green must belong to the same application to swap CNAMEs."
                .into()
        )
    );
    // By id, the other way round: the same refusal.
    let err = bed
        .eb
        .swap_environment_cnames()
        .source_environment_id(blog_id)
        .destination_environment_id(first_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "Environments blog-green and shop-green must belong to the same application to swap CNAMEs."
                .into()
        )
    );
    assert_eq!(
        bed.env(first_id).await.cname(),
        Some("shop-prod.us-east-1.elasticbeanstalk.com")
    );
    assert_eq!(
        bed.env(blog_id).await.cname(),
        Some("blog-prod.us-east-1.elasticbeanstalk.com")
    );
    for id in [first_id, blog_id] {
        let events = bed.messages(id).await;
        assert!(
            !events.iter().any(|e| e.contains("swapEnvironmentCNAMEs")),
            "{events:?}"
        );
    }
    // The router still sends each CNAME to its own environment's app.
    assert_eq!(
        bed.get("shop-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".to_string())
    );
    assert_eq!(
        bed.get("blog-prod.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v2\n".to_string())
    );

    bed.eb
        .update_environment()
        .environment_id(first_id)
        .version_label("v2")
        .send()
        .await
        .unwrap();
    let err = bed
        .eb
        .update_environment()
        .environment_id(first_id)
        .version_label("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "Environment named shop-green is in an invalid state for this operation. Must be Ready."
                .into()
        )
    );
    let err = bed
        .eb
        .terminate_environment()
        .environment_name("shop-nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "No Environment found for EnvironmentName = 'shop-nope'.".into()
        )
    );
    let err = bed
        .eb
        .list_tags_for_resource()
        .resource_arn("arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/none")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "ResourceNotFoundException");
}

#[tokio::test]
async fn faults_throttle_delay_fail_launches_and_turn_environments_red_or_yellow() {
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;

    // Throttling the first two calls, set through the admin endpoint as another process would.
    let faults = Faults {
        throttle: vec![Throttle {
            operation: "DescribeEnvironments".into(),
            first: Some(2),
            fraction: None,
        }],
        delay_ms: [("CheckDNSAvailability".to_string(), 300)].into(),
        fail_launch: vec!["shop-doomed".into()],
        red_after_seconds: [("shop-fading".to_string(), 0.3)].into(),
        yellow: vec!["shop-degraded".into()],
    };
    let put = bed
        .http
        .put(format!("{}/_local/faults", bed.local.endpoint()))
        .body(serde_json::to_string(&faults).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 204);
    for _ in 0..2 {
        let err = bed.eb.describe_environments().send().await.unwrap_err();
        assert_eq!(code(&err), ("Throttling".into(), "Rate exceeded".into()));
    }
    bed.eb.describe_environments().send().await.unwrap();
    let started = Instant::now();
    bed.eb
        .check_dns_availability()
        .cname_prefix("abcd")
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A launch that fails: Launching -> Terminated, with the stack's error in the events.
    let doomed = bed.create("shop-doomed", "shop-doomed", "v1").await;
    let doomed_id = doomed.environment_id().unwrap();
    bed.wait_for(doomed_id, "Terminated").await;
    let events = bed.messages(doomed_id).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ERROR Stack named 'awseb-")),
        "{events:?}"
    );

    // Red after a while, with an event that says why.
    let fading = bed.create("shop-fading", "shop-fading", "v1").await;
    let fading_id = fading.environment_id().unwrap();
    bed.wait_for(fading_id, "Ready").await;
    wait_health(&bed, fading_id, "Red").await;
    assert!(bed
        .messages(fading_id)
        .await
        .iter()
        .any(|e| e.starts_with("WARN Environment health has transitioned from Ok to Severe.")));

    // Ready but Yellow/Warning, with enhanced health's event; checked again at the end, after the
    // monitor has looked at it many times: it stays Yellow (neither Green nor Red).
    let degraded = bed.create("shop-degraded", "shop-degraded", "v1").await;
    let degraded_id = degraded.environment_id().unwrap();
    let env = bed.wait_for(degraded_id, "Ready").await;
    assert_eq!(env.health().unwrap().as_str(), "Yellow");
    assert_eq!(env.health_status().unwrap().as_str(), "Warning");
    assert!(bed.messages(degraded_id).await.iter().any(
        |e| e.starts_with("WARN Environment health has transitioned from Pending to Warning.")
    ));
    assert_eq!(
        bed.get("shop-degraded.us-east-1.elasticbeanstalk.com", "/version")
            .await,
        (200, "v1\n".into())
    );

    // An app that crashes at start: Ready but Red, and the events carry its last output.
    bed.version(
        "crash",
        test_support::app_bundle(
            "crash",
            &[(
                "Procfile",
                "web: echo 'missing module shopdb' >&2; exit 3\n",
            )],
        ),
    )
    .await;
    let crash = bed.create("shop-crash", "shop-crash", "crash").await;
    let crash_id = crash.environment_id().unwrap();
    let env = bed.wait_for(crash_id, "Ready").await;
    assert_eq!(env.health().unwrap().as_str(), "Red");
    assert_eq!(env.health_status().unwrap().as_str(), "Severe");
    let events = bed.messages(crash_id).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ERROR Instance deployment failed.")
                && e.contains("exited (exit status: 3)")
                && e.contains("missing module shopdb")),
        "{events:?}"
    );

    // A health path that fails, and an app that dies later.
    let sick = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-sick")
        .cname_prefix("shop-sick")
        .version_label("v1")
        .solution_stack_name(STACK)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application")
                .option_name("Application Healthcheck URL")
                .value("/health")
                .build(),
        )
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("HEALTH_STATUS")
                .value("500")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sick_id = sick.environment_id().unwrap();
    bed.wait_for(sick_id, "Ready").await;
    wait_health(&bed, sick_id, "Red").await;
    assert!(bed
        .messages(sick_id)
        .await
        .iter()
        .any(|e| e.contains("Health check GET /health answered HTTP 500")));

    let dying = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-dying")
        .cname_prefix("shop-dying")
        .version_label("v1")
        .solution_stack_name(STACK)
        .option_settings(
            ConfigurationOptionSetting::builder()
                .namespace("aws:elasticbeanstalk:application:environment")
                .option_name("EXIT_AFTER_SECONDS")
                .value("0.5")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dying_id = dying.environment_id().unwrap();
    bed.wait_for(dying_id, "Ready").await;
    wait_health(&bed, dying_id, "Red").await;
    assert!(bed
        .messages(dying_id)
        .await
        .iter()
        .any(|e| e.contains("The web process exited (exit status: 1)")));
    let env = bed.env(degraded_id).await;
    assert_eq!(
        (
            env.status().unwrap().as_str(),
            env.health().unwrap().as_str()
        ),
        ("Ready", "Yellow")
    );
}

async fn wait_health(bed: &Bed, id: &str, health: &str) {
    let started = Instant::now();
    loop {
        let env = bed.env(id).await;
        if env.health().map(|h| h.as_str()) == Some(health) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{id} never turned {health}: {:?}",
            bed.messages(id).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_swap_under_steady_load_loses_no_request() {
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;
    bed.version("v2", bundle("v2")).await;
    let a = bed.create("shop-a", "shop-prod", "v1").await;
    let b = bed.create("shop-b", "shop-b", "v2").await;
    bed.wait_for(a.environment_id().unwrap(), "Ready").await;
    bed.wait_for(b.environment_id().unwrap(), "Ready").await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let v2_seen = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = vec![];
    for _ in 0..8 {
        let (stop, ok, v2_seen, failures) =
            (stop.clone(), ok.clone(), v2_seen.clone(), failures.clone());
        let url = format!("{}/version", bed.local.router_endpoint());
        let http = bed.http.clone();
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match http
                    .get(&url)
                    .header("host", "shop-prod.us-east-1.elasticbeanstalk.com")
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let body = r.text().await.unwrap_or_default();
                        ok.fetch_add(1, Ordering::Relaxed);
                        if body == "v2\n" {
                            v2_seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("HTTP {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    // Let load build up, swap in the middle of it, keep going after.
    while ok.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bed.eb
        .swap_environment_cnames()
        .source_environment_name("shop-a")
        .destination_environment_name("shop-b")
        .send()
        .await
        .unwrap();
    let after_swap = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < after_swap + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        v2_seen.load(Ordering::Relaxed) >= 100,
        "traffic moved to v2"
    );
    assert!(ok.load(Ordering::Relaxed) >= 200);
}

async fn cli(local: &LocalAws, args: &[&str]) -> serde_json::Value {
    test_support::aws_cli_json(&local.endpoint(), "elasticbeanstalk", args)
        .await
        .unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
}

#[tokio::test]
async fn the_aws_cli_drives_environments_swaps_and_events() {
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;
    bed.version("v2", bundle("v2")).await;
    let local = &bed.local;
    let created = cli(
        local,
        &[
            "create-environment", "--application-name", "shop", "--environment-name", "shop-green",
            "--cname-prefix", "shop-prod", "--version-label", "v1", "--solution-stack-name", STACK,
            "--option-settings", "Namespace=aws:elasticbeanstalk:application:environment,OptionName=ENVIRONMENT_NAME,Value=green",
            "--tags", "Key=beanswap:application,Value=shop",
        ],
    )
    .await;
    assert_eq!(created["Status"], "Launching");
    assert_eq!(created["CNAME"], "shop-prod.us-east-1.elasticbeanstalk.com");
    assert_eq!(created["Tier"]["Name"], "WebServer");
    let green_id = created["EnvironmentId"].as_str().unwrap().to_string();
    let blue = cli(
        local,
        &[
            "create-environment",
            "--application-name",
            "shop",
            "--environment-name",
            "shop-blue",
            "--cname-prefix",
            "shop-blue-1",
            "--version-label",
            "v2",
            "--solution-stack-name",
            STACK,
        ],
    )
    .await;
    let blue_id = blue["EnvironmentId"].as_str().unwrap().to_string();
    bed.wait_for(&green_id, "Ready").await;
    bed.wait_for(&blue_id, "Ready").await;

    let described = cli(
        local,
        &[
            "describe-environments",
            "--application-name",
            "shop",
            "--environment-names",
            "shop-green",
            "shop-blue",
        ],
    )
    .await;
    let envs = described["Environments"].as_array().unwrap();
    assert_eq!(envs.len(), 2);
    assert!(envs
        .iter()
        .all(|e| e["Status"] == "Ready" && e["Health"] == "Green"));
    assert!(envs[0]["DateCreated"].as_str().unwrap().starts_with("20"));

    let swapped = cli(
        local,
        &[
            "swap-environment-cnames",
            "--source-environment-name",
            "shop-green",
            "--destination-environment-name",
            "shop-blue",
        ],
    )
    .await;
    assert!(swapped.is_null(), "{swapped}");
    let described = cli(
        local,
        &["describe-environments", "--environment-ids", &blue_id],
    )
    .await;
    assert_eq!(
        described["Environments"][0]["CNAME"],
        "shop-prod.us-east-1.elasticbeanstalk.com"
    );

    let events = cli(
        local,
        &[
            "describe-events",
            "--environment-name",
            "shop-blue",
            "--severity",
            "INFO",
            "--max-items",
            "2",
        ],
    )
    .await;
    let list = events["Events"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0]["Message"],
        "Completed swapping CNAMEs for environments 'shop-green' and 'shop-blue'."
    );
    assert_eq!(list[0]["Severity"], "INFO");
    assert!(
        events["NextToken"].is_string(),
        "the CLI pages on: {events}"
    );
    let all = cli(
        local,
        &[
            "describe-events",
            "--application-name",
            "shop",
            "--start-time",
            "2020-01-01T00:00:00Z",
        ],
    )
    .await;
    assert!(all["Events"].as_array().unwrap().len() > 6);
}

#[tokio::test]
async fn the_binary_serves_until_stopped_and_takes_its_apps_with_it() {
    binary_takes_its_apps_with_it("TERM").await;
}

/// Even killed outright, local-aws leaves no app behind: each app's watcher ends its process group.
#[tokio::test]
async fn a_killed_binary_leaves_no_app_running() {
    binary_takes_its_apps_with_it("KILL").await;
}

async fn binary_takes_its_apps_with_it(signal: &str) {
    let moto = Moto::start().await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_local-aws"));
    let mut child = tokio::process::Command::new(&binary)
        .args([
            "--launch-delay",
            "100ms",
            "--s3-endpoint",
            &moto.endpoint(),
            "--faults",
            r#"{"delay_ms":{}}"#,
        ])
        .env("BEANSWAP_TEST_PARENT", std::process::id().to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = lines.next_line().await.unwrap().unwrap();
    let endpoints: serde_json::Value = serde_json::from_str(&first).unwrap();
    let endpoint = endpoints["endpoint"].as_str().unwrap().to_string();
    let router = endpoints["router"].as_str().unwrap().to_string();

    let eb = clients::beanstalk(&endpoint);
    let s3 = clients::s3(&moto.endpoint());
    s3.create_bucket().bucket("bundles").send().await.unwrap();
    s3.put_object()
        .bucket("bundles")
        .key("v1.zip")
        .body(bundle("v1").into())
        .send()
        .await
        .unwrap();
    eb.create_application_version()
        .application_name("shop")
        .auto_create_application(true)
        .version_label("v1")
        .source_bundle(
            S3Location::builder()
                .s3_bucket("bundles")
                .s3_key("v1.zip")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let env = eb
        .create_environment()
        .application_name("shop")
        .environment_name("shop-one")
        .cname_prefix("shop-one")
        .version_label("v1")
        .solution_stack_name(STACK)
        .send()
        .await
        .unwrap();
    let id = env.environment_id().unwrap().to_string();
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let r = http
            .get(format!("{router}/version"))
            .header("host", "shop-one.us-east-1.elasticbeanstalk.com")
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            assert_eq!(r.text().await.unwrap(), "v1\n");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "app never answered"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let resources = eb
        .describe_environment_resources()
        .environment_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resources.environment_resources().unwrap().instances().len(),
        1
    );
    assert!(!app_pids().is_empty(), "the app process runs");

    // SIGTERM: the binary exits cleanly and its app goes with it; SIGKILL: the app's watcher ends it.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.success(), signal == "TERM", "{status}");
    let started = Instant::now();
    while !app_pids().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "app outlived local-aws: {:?}",
            app_pids()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// PIDs of example-app processes this test's local-aws started (their cwd is under a local-aws- dir).
fn app_pids() -> Vec<u32> {
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let parent_is_me =
            String::from_utf8_lossy(&environ).contains(&format!("BEANSWAP_TEST_PARENT={me}"));
        if String::from_utf8_lossy(&cmdline).contains("app.py")
            && cwd.to_string_lossy().contains("local-aws-")
            && parent_is_me
        {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn processing_a_version_checks_its_bundle() {
    let bed = bed(Options::default()).await;
    for (key, body) in [
        ("shop/good.zip", bundle("good")),
        ("shop/bad.zip", b"this is not a zip".to_vec()),
    ] {
        bed.s3
            .put_object()
            .bucket("bundles")
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    for (label, key) in [
        ("good", "shop/good.zip"),
        ("bad", "shop/bad.zip"),
        ("gone", "shop/missing.zip"),
    ] {
        let out = bed
            .eb
            .create_application_version()
            .application_name("shop")
            .version_label(label)
            .source_bundle(
                S3Location::builder()
                    .s3_bucket("bundles")
                    .s3_key(key)
                    .build(),
            )
            .process(true)
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.application_version()
                .unwrap()
                .status()
                .unwrap()
                .as_str(),
            "Processing"
        );
    }
    let status = |label: &'static str| {
        let eb = bed.eb.clone();
        async move {
            let started = Instant::now();
            loop {
                let out = eb
                    .describe_application_versions()
                    .application_name("shop")
                    .version_labels(label)
                    .send()
                    .await
                    .unwrap();
                let status = out.application_versions()[0]
                    .status()
                    .unwrap()
                    .as_str()
                    .to_string();
                if status != "Processing" {
                    return status;
                }
                assert!(started.elapsed() < Duration::from_secs(10));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    assert_eq!(status("good").await, "Processed");
    assert_eq!(status("bad").await, "Failed");
    assert_eq!(status("gone").await, "Failed");
    let events = bed
        .eb
        .describe_events()
        .application_name("shop")
        .version_label("bad")
        .severity(EventSeverity::Error)
        .send()
        .await
        .unwrap();
    assert!(
        events.events()[0]
            .message()
            .unwrap()
            .contains("is not a valid zip file"),
        "{:?}",
        events.events()
    );
}

#[tokio::test]
async fn custom_domains_resolve_through_route53_records_alias_or_weighted() {
    use aws_sdk_route53::types::{
        AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType,
    };
    let bed = bed(Options::default()).await;
    bed.version("v1", bundle("v1")).await;
    bed.version("v2", bundle("v2")).await;
    let a = bed.create("shop-a", "shop-a", "v1").await;
    let b = bed.create("shop-b", "shop-b", "v2").await;
    bed.wait_for(a.environment_id().unwrap(), "Ready").await;
    bed.wait_for(b.environment_id().unwrap(), "Ready").await;

    let route53 = clients::route53(&bed.moto.endpoint());
    let zone = route53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("t1")
        .send()
        .await
        .unwrap();
    let zone_id = zone.hosted_zone().unwrap().id().to_string();
    let record = |name: &str, target: &str, weight: Option<i64>| {
        let mut r = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id("Z117KPS5GTRQ2G")
                    .dns_name(target)
                    .evaluate_target_health(false)
                    .build()
                    .unwrap(),
            );
        if let Some(w) = weight {
            r = r.set_identifier(target).weight(w);
        }
        Change::builder()
            .action(ChangeAction::Upsert)
            .resource_record_set(r.build().unwrap())
            .build()
            .unwrap()
    };
    route53
        .change_resource_record_sets()
        .hosted_zone_id(&zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(record(
                    "shop.example.com",
                    "shop-a.us-east-1.elasticbeanstalk.com",
                    None,
                ))
                .changes(record(
                    "www.example.com",
                    "shop-a.us-east-1.elasticbeanstalk.com",
                    Some(0),
                ))
                .changes(record(
                    "www.example.com",
                    "shop-b.us-east-1.elasticbeanstalk.com",
                    Some(100),
                ))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        bed.get("shop.example.com", "/version").await,
        (200, "v1\n".into())
    );
    for _ in 0..5 {
        assert_eq!(
            bed.get("www.example.com", "/version").await,
            (200, "v2\n".into())
        );
    }
    assert_eq!(bed.get("nowhere.example.com", "/").await.0, 502);
}
