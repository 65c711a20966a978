use super::multipart::{PartWriter, PART_BYTES};
use super::s3::copy_source;
use super::*;
use crate::aws_error::{AwsError, Service};
use crate::bundle::BundleError;
use crate::outcome::FailureKind;
use crate::runner::ActionError;
use std::io::Write;
use tokio::sync::mpsc;

fn vars(revision: Option<&str>) -> LabelVars {
    LabelVars {
        application: "shop".into(),
        revision: revision.map(str::to_string),
        artifact_id: "Gx7hQ2d".into(),
        job_id: "11111111-abcd-1111-abcd-111111abcdef".into(),
        sha256: "ab".repeat(32),
    }
}

#[test]
fn labels_are_derived_deterministically() {
    let long = "x".repeat(150);
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<&'a str, &'a str>);
    let cases: Vec<Case> = vec![
        (None, Some("4f2a9c1e0b7d99aa"), Ok("4f2a9c1e0b7d-Gx7hQ2d")),
        (None, None, Ok("Gx7hQ2d-abababababab")),
        (
            Some("{application}-{revision}"),
            Some("refs/heads/main@1"),
            Ok("shop-refs-heads-main-1"),
        ),
        (
            Some("v{job_id}"),
            None,
            Ok("v11111111-abcd-1111-abcd-111111abcdef"),
        ),
        (Some("build 42"), None, Ok("build 42")),
        (
            Some("{revision}"),
            None,
            Err("`{revision}` has no value for this job"),
        ),
        (
            Some("{commit}"),
            None,
            Err("unknown placeholder `{commit}`"),
        ),
        (Some("v{sha256"), None, Err("is never closed")),
        (Some("  "), None, Err("the label is empty")),
    ];
    for (template, revision, expected) in cases {
        let got = render_label(template, &vars(revision));
        match expected {
            Ok(label) => assert_eq!(got.as_deref(), Ok(label), "{template:?}"),
            Err(part) => {
                let err = got.unwrap_err();
                assert!(err.contains(part), "{template:?}: {err}");
            }
        }
    }
    let cut = render_label(Some(&long), &vars(None)).unwrap();
    assert_eq!(cut.chars().count(), MAX_LABEL);
    assert_eq!(cut, render_label(Some(&long), &vars(None)).unwrap());
    assert_ne!(
        cut,
        render_label(Some(&format!("{long}y")), &vars(None)).unwrap()
    );
    assert!(check_label_template("{artifact_id}-{sha256_short}").is_ok());
    assert!(check_label_template("{nope}").is_err());
}

#[test]
fn keys_buckets_and_copy_sources() {
    assert_eq!(bundle_key("", "shop", "v1"), "shop/v1.zip");
    let spaced = bundle_key("bundles", "shop", "v 1");
    assert!(spaced.starts_with("bundles/shop/v-1-"), "{spaced}");
    assert_ne!(spaced, bundle_key("bundles", "shop", "v-1"));
    assert_eq!(bundle_key("bundles", "shop", "v-1"), "bundles/shop/v-1.zip");
    assert_eq!(bundle_key("/a/b/", "shop", "v1"), "a/b/shop/v1.zip");
    assert_eq!(
        default_bucket("eu-west-1", "123456789012"),
        "elasticbeanstalk-eu-west-1-123456789012"
    );
    assert_eq!(
        copy_source("artifacts", "shop-pipeline/Build Out/a+b"),
        "artifacts/shop-pipeline/Build%20Out/a%2Bb"
    );
}

#[test]
fn failures_are_classified_for_codepipeline() {
    let s3 = |code: &str| {
        PackageError::Aws(AwsError::answered(Service::S3, "PutObject", code, "no").on("s3://b/k"))
    };
    let cases = [
        (
            s3("AccessDenied"),
            FailureKind::PermissionError,
            "S3 PutObject on s3://b/k failed: AccessDenied",
        ),
        (
            s3("NoSuchBucket"),
            FailureKind::ConfigurationError,
            "NoSuchBucket",
        ),
        (
            s3("InternalError"),
            FailureKind::SystemUnavailable,
            "InternalError",
        ),
        (
            PackageError::Bundle {
                artifact: "artifact `Build` (s3://a/k)".into(),
                source: BundleError::Empty,
            },
            FailureKind::ConfigurationError,
            "artifact `Build` (s3://a/k): the bundle has no files",
        ),
        (
            PackageError::Aws(AwsError::answered(
                Service::ElasticBeanstalk,
                "CreateApplicationVersion",
                "InsufficientPrivilegesException",
                "denied",
            )),
            FailureKind::PermissionError,
            "CreateApplicationVersion",
        ),
    ];
    for (error, kind, message) in cases {
        let action = ActionError::from(error);
        assert_eq!(action.kind, kind, "{}", action.message);
        assert!(action.message.contains(message), "{}", action.message);
    }
}

#[test]
fn the_part_writer_cuts_fixed_size_parts() {
    let (tx, mut rx) = mpsc::channel(8);
    let handle = std::thread::spawn(move || {
        let mut w = PartWriter {
            tx,
            buf: Vec::with_capacity(PART_BYTES),
        };
        w.write_all(&vec![7u8; PART_BYTES * 2 + 5]).unwrap();
        w.finish().unwrap();
    });
    handle.join().unwrap();
    let mut sizes = vec![];
    while let Ok(part) = rx.try_recv() {
        sizes.push(part.len());
    }
    assert_eq!(sizes, [PART_BYTES, PART_BYTES, 5]);
}
