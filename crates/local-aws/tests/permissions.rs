//! Once the local run registers identities, local-aws and the proxy in front of moto refuse what the
//! caller's policies do not allow, in each service's own error shape (checked with the AWS CLI, whose
//! botocore parses it): Elastic Beanstalk's InsufficientPrivilegesException, CodePipeline's
//! AccessDeniedException, S3's and Route 53's AccessDenied; the message names the action and resource.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup is a failed test

use beanswap_iam::identity::{role_key, IdentitiesSpec, RoleSpec, ADMIN_KEY};
use beanswap_iam::Identities;
use local_aws::proxy::CountingProxy;
use serde_json::json;
use test_support::moto::Moto;

const ENV_ARN: &str = "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/*";

fn identities() -> Identities {
    Identities::from_spec(&IdentitiesSpec {
        admin_keys: vec![ADMIN_KEY.into()],
        roles: vec![RoleSpec {
            key: role_key("ReaderRole"),
            logical_id: "ReaderRole".into(),
            arn: "arn:aws:iam::123456789012:role/beanswap-local-ReaderRole-LOCAL".into(),
            policies: vec![(
                "read".into(),
                json!({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "elasticbeanstalk:DescribeEnvironments",
                     "Resource": ["arn:aws:elasticbeanstalk:us-east-1:123456789012:application/shop", ENV_ARN]},
                    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bundles/*"},
                    {"Effect": "Allow", "Action": "route53:ListResourceRecordSets", "Resource": "arn:aws:route53:::hostedzone/NOPE"}
                ]}),
            )],
        }],
        instance_profiles: Default::default(),
    })
    .unwrap()
}

/// `aws --endpoint-url E SERVICE ARGS` signed with access key `key`: (succeeded, stdout, stderr).
async fn cli(endpoint: &str, key: &str, service: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(test_support::aws_cli_path())
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
            service,
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn beanstalk_and_codepipeline_refuse_what_the_role_does_not_allow() {
    let aws = test_support::local_aws().await;
    let e = aws.endpoint();
    let reader = role_key("ReaderRole");
    // Nothing is checked before identities are registered.
    assert!(
        cli(
            &e,
            "anything",
            "elasticbeanstalk",
            &["describe-environments"]
        )
        .await
        .0
    );
    aws.set_identities(Some(identities()));

    let (ok, _, err) = cli(
        &e,
        &reader,
        "elasticbeanstalk",
        &["describe-environments", "--application-name", "shop"],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &e,
        &reader,
        "elasticbeanstalk",
        &["describe-environments", "--application-name", "other"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("(InsufficientPrivilegesException)")
            && err.contains("is not authorized to perform: elasticbeanstalk:DescribeEnvironments on resource: arn:aws:elasticbeanstalk:us-east-1:123456789012:application/other"),
        "{err}"
    );
    // The virtual action of a tag change, not the operation's name.
    let (ok, _, err) = cli(
        &e,
        &reader,
        "elasticbeanstalk",
        &[
            "update-tags-for-resource",
            "--resource-arn",
            "arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/a",
            "--tags-to-add",
            "Key=k,Value=v",
        ],
    )
    .await;
    assert!(!ok && err.contains("elasticbeanstalk:AddTags on resource: arn:aws:elasticbeanstalk:us-east-1:123456789012:environment/shop/a"), "{err}");
    // A key that names no role gets nothing; the administrator gets everything.
    let (ok, _, err) = cli(
        &e,
        "testing",
        "elasticbeanstalk",
        &["describe-environments", "--application-name", "shop"],
    )
    .await;
    assert!(!ok && err.contains("names no role"), "{err}");
    assert!(
        cli(
            &e,
            ADMIN_KEY,
            "elasticbeanstalk",
            &["describe-applications"]
        )
        .await
        .0
    );

    let job = "11111111-2222-3333-4444-555555555555";
    let (ok, _, err) = cli(
        &e,
        &reader,
        "codepipeline",
        &["put-job-success-result", "--job-id", job],
    )
    .await;
    assert!(
        !ok && err.contains("(AccessDeniedException)")
            && err.contains("codepipeline:PutJobSuccessResult on resource: *"),
        "{err}"
    );
}

#[tokio::test]
async fn s3_and_route53_behind_the_proxy_refuse_as_aws_does() {
    let moto = Moto::start().await;
    let proxy = CountingProxy::start(&moto.endpoint()).await.unwrap();
    let p = proxy.endpoint();
    proxy.set_identities(Some(identities()));
    let reader = role_key("ReaderRole");
    assert!(
        cli(
            &p,
            ADMIN_KEY,
            "s3api",
            &["create-bucket", "--bucket", "bundles"]
        )
        .await
        .0
    );
    let body = std::env::temp_dir().join(format!("perm-{}", std::process::id()));
    std::fs::write(&body, b"zip").unwrap();
    let (ok, _, err) = cli(
        &p,
        ADMIN_KEY,
        "s3api",
        &[
            "put-object",
            "--bucket",
            "bundles",
            "--key",
            "a.zip",
            "--body",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{err}");

    let out = body.with_extension("out");
    let (ok, _, err) = cli(
        &p,
        &reader,
        "s3api",
        &[
            "get-object",
            "--bucket",
            "bundles",
            "--key",
            "a.zip",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &p,
        &reader,
        "s3api",
        &[
            "put-object",
            "--bucket",
            "bundles",
            "--key",
            "b.zip",
            "--body",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        !ok && err.contains("(AccessDenied)")
            && err.contains("s3:PutObject on resource: arn:aws:s3:::bundles/b.zip"),
        "{err}"
    );
    // A missing key: 404 only with s3:ListBucket on the bucket, which this role lacks.
    let (ok, _, err) = cli(
        &p,
        &reader,
        "s3api",
        &[
            "get-object",
            "--bucket",
            "bundles",
            "--key",
            "missing",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        !ok && err.contains("(AccessDenied)")
            && err.contains("s3:ListBucket on resource: arn:aws:s3:::bundles"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &p,
        ADMIN_KEY,
        "s3api",
        &[
            "get-object",
            "--bucket",
            "bundles",
            "--key",
            "missing",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!ok && err.contains("NoSuchKey"), "{err}");

    let (ok, stdout, err) = cli(
        &p,
        ADMIN_KEY,
        "route53",
        &[
            "create-hosted-zone",
            "--name",
            "example.com",
            "--caller-reference",
            "perm",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let zone: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = zone["HostedZone"]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("/hostedzone/")
        .to_string();
    let (ok, _, err) = cli(
        &p,
        &reader,
        "route53",
        &["list-resource-record-sets", "--hosted-zone-id", &id],
    )
    .await;
    assert!(
        !ok && err.contains("(AccessDenied)")
            && err.contains(&format!(
                "route53:ListResourceRecordSets on resource: arn:aws:route53:::hostedzone/{id}"
            )),
        "{err}"
    );
    let _ = std::fs::remove_file(&body);
    let _ = std::fs::remove_file(&out);
}
