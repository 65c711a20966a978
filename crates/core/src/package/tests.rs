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

// --- the processing wait, its polls scripted (no server) -----------------------------------------

mod processing_wait {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::super::process::{Wait, Waited};
    use super::super::{PackageError, State};
    use crate::aws_error::{AwsError, Service};
    use crate::clock::{unix_seconds, Clock, FakeClock};
    use crate::outcome::{FailureKind, Outcome};
    use crate::runner::ActionError;

    fn throttled() -> Result<Option<String>, PackageError> {
        Err(PackageError::Aws(AwsError::answered(
            Service::ElasticBeanstalk,
            "DescribeApplicationVersions",
            "Throttling",
            "Rate exceeded",
        )))
    }

    fn answered(status: &str) -> Result<Option<String>, PackageError> {
        Ok(Some(status.to_string()))
    }

    /// A wait that began `ago` seconds ago, whose polls so far saw `status`.
    fn state(ago: u64, status: Option<&str>) -> State {
        State {
            label: "v7".into(),
            bucket: "bundles".into(),
            key: "shop/v7.zip".into(),
            sha256: "ab".repeat(32),
            summary: "created version `v7`".into(),
            since: unix_seconds(FakeClock::default().now()) - ago,
            polls: 3,
            status: status.map(str::to_string),
        }
    }

    /// Runs one invocation's wait over these answers, in turn (the last one stays), with a 10-minute
    /// process_timeout and no time to sleep (the first poll that does not end the wait hands over).
    async fn wait(
        answers: Vec<Result<Option<String>, PackageError>>,
        state: State,
    ) -> Result<Waited, PackageError> {
        let answers = Mutex::new(VecDeque::from(answers));
        let poll = || {
            let mut answers = answers.lock().unwrap();
            let next = if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                match answers.front().unwrap() {
                    Ok(s) => Ok(s.clone()),
                    Err(_) => throttled(),
                }
            };
            async move { next }
        };
        Wait {
            application: "shop",
            timeout: Duration::from_secs(600),
            budget: Duration::ZERO,
            clock: &FakeClock::default(),
        }
        .run(poll, state)
        .await
    }

    #[tokio::test]
    async fn a_throttled_poll_within_the_timeout_hands_over() {
        let Ok(Waited::Over(Outcome::InProgress { state, summary, .. })) =
            wait(vec![throttled()], state(60, None)).await
        else {
            panic!("not handed over")
        };
        assert!(summary.contains("asked us to slow down"), "{summary}");
        assert_eq!(state.polls, 4);
    }

    #[tokio::test]
    async fn a_wait_that_only_saw_throttling_times_out_as_system_unavailable() {
        let Err(e) = wait(vec![throttled()], state(601, None)).await else {
            panic!("the wait did not end")
        };
        let e = ActionError::from(e);
        assert_eq!(e.kind, FailureKind::SystemUnavailable, "{}", e.message);
        assert_eq!(
            e.message,
            "version `v7` of `shop` could not be seen processed within 10 minutes (UserParameters `process_timeout_minutes`): every poll was turned away; the last: Elastic Beanstalk DescribeApplicationVersions failed: Throttling: Rate exceeded"
        );
    }

    #[tokio::test]
    async fn a_version_seen_processing_past_the_timeout_is_the_jobs_failure() {
        let Err(e) = wait(vec![answered("Processing")], state(601, None)).await else {
            panic!("the wait did not end")
        };
        let e = ActionError::from(e);
        assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
        assert_eq!(
            e.message,
            "version `v7` of `shop` is still Processing after 10 minutes (UserParameters `process_timeout_minutes`)"
        );
        // Seen Processing earlier in the wait, the last poll throttled: still the real timeout.
        let Err(e) = wait(vec![throttled()], state(601, Some("Processing"))).await else {
            panic!("the wait did not end")
        };
        let e = ActionError::from(e);
        assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
        assert!(
            e.message.contains(
                "is still Processing (Elastic Beanstalk throttled the last poll) after 10 minutes"
            ),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn processed_or_failed_end_the_wait() {
        let Ok(Waited::Over(Outcome::Succeeded { variables, .. })) =
            wait(vec![answered("Processed")], state(60, None)).await
        else {
            panic!("not processed")
        };
        assert_eq!(variables["VersionLabel"], "v7");
        let Ok(Waited::Failed { status, .. }) =
            wait(vec![answered("Failed")], state(60, None)).await
        else {
            panic!("not failed")
        };
        assert_eq!(status, "Failed");
    }
}
