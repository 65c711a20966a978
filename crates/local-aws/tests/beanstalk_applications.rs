//! Applications and versions on local-aws, driven by the unmodified AWS SDK for Rust and by the AWS CLI
//! (botocore parses our XML with the service model, independently of our own client).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_elasticbeanstalk::types::{S3Location, Tag};
use aws_sdk_elasticbeanstalk::Client;
use local_aws::beanstalk::Options;
use local_aws::LocalAws;

async fn start(options: Options) -> (LocalAws, Client) {
    let local = LocalAws::start_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    // No retries: these tests look at the errors local-aws answers with.
    let config = test_support::clients::beanstalk_config(&local.endpoint())
        .retry_config(aws_sdk_elasticbeanstalk::config::retry::RetryConfig::disabled())
        .build();
    (local, Client::from_conf(config))
}

fn code<E: aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata>(e: &E) -> (String, String) {
    (
        e.code().unwrap_or_default().to_string(),
        e.message().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn applications_and_versions_round_trip_through_the_sdk() {
    let (local, eb) = start(Options::default()).await;
    eb.create_application()
        .application_name("shop")
        .description("the shop")
        .tags(Tag::builder().key("beanswap:managed").value("true").build())
        .send()
        .await
        .unwrap();
    let err = eb
        .create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "Application shop already exists.".into()
        )
    );

    for label in ["v1", "v2", "v3"] {
        let out = eb
            .create_application_version()
            .application_name("shop")
            .version_label(label)
            .source_bundle(
                S3Location::builder()
                    .s3_bucket("bundles")
                    .s3_key(format!("shop/{label}.zip"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let v = out.application_version().unwrap();
        assert_eq!(v.version_label(), Some(label));
        assert_eq!(v.status().map(|s| s.as_str()), Some("Unprocessed"));
        assert_eq!(
            v.source_bundle().and_then(|s| s.s3_key()),
            Some(format!("shop/{label}.zip").as_str())
        );
        assert!(v.date_created().is_some());
    }
    let err = eb
        .create_application_version()
        .application_name("shop")
        .version_label("v2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).1, "Application Version v2 already exists.");
    let err = eb
        .create_application_version()
        .application_name("nope")
        .version_label("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "InvalidParameterValue".into(),
            "No Application named 'nope' found.".into()
        )
    );

    let apps = eb
        .describe_applications()
        .application_names("shop")
        .send()
        .await
        .unwrap();
    let app = &apps.applications()[0];
    assert_eq!(app.description(), Some("the shop"));
    assert_eq!(app.versions(), ["v3", "v2", "v1"], "newest first");

    // Paging: two, then one, then no token.
    let first = eb
        .describe_application_versions()
        .application_name("shop")
        .max_records(2)
        .send()
        .await
        .unwrap();
    let labels: Vec<_> = first
        .application_versions()
        .iter()
        .filter_map(|v| v.version_label())
        .collect();
    assert_eq!(labels, ["v3", "v2"]);
    let token = first.next_token().unwrap().to_string();
    let second = eb
        .describe_application_versions()
        .application_name("shop")
        .max_records(2)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.application_versions().len(), 1);
    assert!(second.next_token().is_none());
    let filtered = eb
        .describe_application_versions()
        .version_labels("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.application_versions().len(), 1);

    eb.delete_application_version()
        .application_name("shop")
        .version_label("v1")
        .send()
        .await
        .unwrap();
    let err = eb
        .delete_application_version()
        .application_name("shop")
        .version_label("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, "InvalidParameterValue");
    let counts = local.call_counts();
    assert_eq!(
        counts.get("ElasticBeanstalk.CreateApplicationVersion"),
        Some(&5)
    );
}

#[tokio::test]
async fn the_version_cap_answers_too_many_application_versions() {
    let (_local, eb) = start(Options {
        max_application_versions: 2,
        ..Options::default()
    })
    .await;
    for label in ["a", "b"] {
        eb.create_application_version()
            .application_name("shop")
            .version_label(label)
            .auto_create_application(true)
            .send()
            .await
            .unwrap();
    }
    let err = eb
        .create_application_version()
        .application_name("shop")
        .version_label("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        (
            "TooManyApplicationVersionsException".into(),
            "You cannot have more than 2 Application Versions.".into()
        )
    );
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_too_many_application_versions_exception()));
    let err = eb
        .create_application_version()
        .application_name("x")
        .version_label("l".repeat(101))
        .send()
        .await
        .unwrap_err();
    assert!(
        code(&err)
            .1
            .contains("Member must have length between 1 and 100"),
        "{:?}",
        code(&err)
    );
}

/// Runs `aws elasticbeanstalk ARGS` against local-aws: (success, stdout, stderr).
async fn cli(local: &LocalAws, args: &[&str]) -> (bool, String, String) {
    test_support::aws_cli(&local.endpoint(), "elasticbeanstalk", args).await
}

#[tokio::test]
async fn the_aws_cli_parses_our_xml_with_the_service_model() {
    let (local, _eb) = start(Options::default()).await;
    let (ok, out, err) = cli(
        &local,
        &["create-application", "--application-name", "shop"],
    )
    .await;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["Application"]["ApplicationName"], "shop");

    let (ok, _, err) = cli(
        &local,
        &[
            "create-application-version",
            "--application-name",
            "shop",
            "--version-label",
            "v1",
            "--source-bundle",
            "S3Bucket=bundles,S3Key=shop/v1.zip",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        &local,
        &[
            "describe-application-versions",
            "--application-name",
            "shop",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let versions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(versions["ApplicationVersions"][0]["VersionLabel"], "v1");
    assert_eq!(
        versions["ApplicationVersions"][0]["SourceBundle"]["S3Key"],
        "shop/v1.zip"
    );
    assert_eq!(versions["ApplicationVersions"][0]["Status"], "Unprocessed");

    let (ok, out, err) = cli(&local, &["describe-applications"]).await;
    assert!(ok, "{err}");
    let apps: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        apps["Applications"][0]["Versions"],
        serde_json::json!(["v1"])
    );

    // Errors come back with their code and message, as botocore reads them.
    let (ok, _, err) = cli(
        &local,
        &["create-application", "--application-name", "shop"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("(InvalidParameterValue)") && err.contains("Application shop already exists."),
        "{err}"
    );
}
