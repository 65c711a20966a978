//! package's sequence without a server, in two halves on the in-memory fakes and an injected clock:
//! the version half ([`Versions`] on FakeBeanstalk and FakeS3's checksums) from the point where the
//! bundle is stored, in the order `run.rs` calls it (the label looked up; if free, the bundle stored
//! and the version created; continuations waiting for processing), and the storing of the bundle
//! (`storing`: server-side copy, upload, multipart upload on FakeS3). What joins them, reading the
//! input artifact with the job's credentials ([`crate::artifacts`]), still goes through the SDK, so
//! a whole first invocation is tested end to end only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use super::version::{StoredBundle, Versions};
use super::{PackageError, Settings, State};
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::ApplicationVersion;
use crate::bundle::{Limits, Normalise};
use crate::clock::{Clock as _, FakeClock};
use crate::fakes::{environment, FakeBeanstalk, FakeS3};
use crate::outcome::{FailureKind, Outcome};
use crate::runner::ActionError;

const BUCKET: &str = "bundles";
const TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long one continuation polls (run.rs's INLINE_POLL).
const BUDGET: Duration = Duration::from_secs(120);

fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

fn settings(process: bool, prune_keep: Option<u32>) -> Settings {
    Settings {
        application: "shop".into(),
        artifact: None,
        bucket: Some(BUCKET.into()),
        key_prefix: String::new(),
        version_label: None,
        description: Some("commit 4f2a9c1".into()),
        process,
        process_timeout: TIMEOUT,
        create_application: false,
        prune_keep,
        require_entry_point: false,
        limits: Limits::default(),
        normalise: Normalise {
            flatten: true,
            drop_os_metadata: true,
            fix_backslashes: true,
        },
    }
}

/// A version of `shop` made `minute` minutes into the fakes' history, its bundle at shop/<label>.zip.
fn version(label: &str, minute: u64, status: &str) -> ApplicationVersion {
    ApplicationVersion {
        label: label.into(),
        created: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(minute * 60)),
        status: status.into(),
        bundle: Some((BUCKET.into(), format!("shop/{label}.zip"))),
    }
}

#[derive(Default)]
struct Bed {
    eb: FakeBeanstalk,
    s3: FakeS3,
    clock: FakeClock,
}

impl Bed {
    /// The application `shop` exists, with no versions yet.
    fn new() -> Self {
        let bed = Bed::default();
        bed.eb.add_application("shop");
        bed
    }

    fn versions<'a>(
        &'a self,
        settings: &'a Settings,
    ) -> Versions<'a, FakeBeanstalk, FakeS3, FakeClock> {
        Versions {
            beanstalk: &self.eb,
            bundles: &self.s3,
            clock: &self.clock,
            settings,
        }
    }

    /// The first invocation from its plan on, as `run.rs` orders it: the label looked up and judged
    /// when taken; else the bundle (`sha256`) stored at shop/<label>.zip and the version created.
    async fn package(
        &self,
        settings: &Settings,
        label: &str,
        sha256: &str,
    ) -> Result<Outcome<State>, PackageError> {
        let versions = self.versions(settings);
        let notes = vec![format!("bundle of 3 files, 512 bytes, sha256 {sha256}")];
        if let Some(found) = versions.found(label, sha256, &notes).await? {
            return Ok(found);
        }
        let key = format!("shop/{label}.zip");
        self.s3.put_bundle(BUCKET, &key, sha256);
        let stored = StoredBundle {
            label,
            bucket: BUCKET,
            key: &key,
            sha256,
        };
        versions.create(&stored, notes).await
    }

    /// A continuation: the processing wait of one invocation.
    async fn wait(
        &self,
        settings: &Settings,
        state: State,
        budget: Duration,
    ) -> Result<Outcome<State>, PackageError> {
        self.versions(settings).wait(state, budget).await
    }
}

fn succeeded(outcome: Outcome<State>) -> (String, std::collections::BTreeMap<String, String>) {
    match outcome {
        Outcome::Succeeded { summary, variables } => (summary, variables),
        other => panic!("not succeeded: {other:?}"),
    }
}

fn in_progress(outcome: Outcome<State>) -> (State, String, u8) {
    match outcome {
        Outcome::InProgress {
            state,
            summary,
            percent,
        } => (state, summary, percent),
        other => panic!("not in progress: {other:?}"),
    }
}

fn failure(result: Result<Outcome<State>, PackageError>) -> ActionError {
    match result {
        Err(e) => ActionError::from(e),
        Ok(outcome) => panic!("did not fail: {outcome:?}"),
    }
}

fn throttled(operation: &'static str) -> AwsError {
    AwsError::answered(
        Service::ElasticBeanstalk,
        operation,
        "Throttling",
        "Rate exceeded",
    )
}

#[tokio::test]
async fn a_label_holding_the_same_bundle_creates_nothing() {
    let bed = Bed::new();
    bed.eb.add_version("shop", version("v1", 1, "Processed"));
    bed.s3.put_bundle(BUCKET, "shop/v1.zip", &sha('a'));

    let (summary, variables) = succeeded(
        bed.package(&settings(true, None), "v1", &sha('a'))
            .await
            .unwrap(),
    );
    assert!(
        summary.starts_with(
            "version `v1` of `shop` already exists with this bundle (s3://bundles/shop/v1.zip); nothing created: bundle of 3 files"
        ),
        "{summary}"
    );
    assert!(
        summary.ends_with("; processed by Elastic Beanstalk"),
        "{summary}"
    );
    assert_eq!(variables["VersionLabel"], "v1");
    assert_eq!(variables["BundleKey"], "shop/v1.zip");
    assert_eq!(variables["BundleSha256"], sha('a'));
    assert_eq!(bed.eb.calls(), ["DescribeApplicationVersions"]);
    assert_eq!(bed.s3.calls(), ["HeadObject"]);
    assert!(bed.eb.created_versions().is_empty());

    // Made earlier without `process`: Beanstalk will never process it; done, and the summary says so.
    bed.eb.add_version("shop", version("v2", 2, ""));
    bed.s3.put_bundle(BUCKET, "shop/v2.zip", &sha('b'));
    let (summary, _) = succeeded(
        bed.package(&settings(true, None), "v2", &sha('b'))
            .await
            .unwrap(),
    );
    assert!(
        summary.ends_with("note: that version was created without processing, so Elastic Beanstalk has not validated it"),
        "{summary}"
    );
    assert!(bed.eb.created_versions().is_empty());
}

#[tokio::test]
async fn a_label_holding_another_bundle_is_a_conflict_that_names_both() {
    let bed = Bed::new();
    bed.eb.add_version("shop", version("v1", 1, "Processed"));
    bed.s3.put_bundle(BUCKET, "shop/v1.zip", &sha('a'));

    let e = failure(bed.package(&settings(false, None), "v1", &sha('b')).await);
    assert_eq!(e.kind, FailureKind::ConfigurationError, "{}", e.message);
    assert_eq!(
        e.message,
        format!(
            "version label `v1` already exists in application `shop` with a different bundle: the existing version's bundle s3://bundles/shop/v1.zip has sha256 {}, this job's bundle has sha256 {}. Versions are immutable: give this build another `version_label`, or delete the existing version if it is unused",
            sha('a'),
            sha('b')
        )
    );
    assert_eq!(bed.eb.count("CreateApplicationVersion"), 0);

    // The version's bundle is gone from S3: a conflict too, saying so.
    bed.eb.add_version("shop", version("v2", 2, "Processed"));
    let e = failure(bed.package(&settings(false, None), "v2", &sha('b')).await);
    assert_eq!(e.kind, FailureKind::ConfigurationError, "{}", e.message);
    assert!(
        e.message
            .contains("s3://bundles/shop/v2.zip has sha256 (none: the bundle object is missing)"),
        "{}",
        e.message
    );
    assert_eq!(bed.eb.count("CreateApplicationVersion"), 0);
}

#[tokio::test]
async fn a_version_another_invocation_created_meanwhile_is_adopted() {
    let bed = Bed::new();
    // The other invocation of this job stored the same bundle at the same key and created `v1`
    // between this one's lookup and its CreateApplicationVersion.
    bed.eb.race_version("shop", version("v1", 1, "Processed"));

    let (summary, variables) = succeeded(
        bed.package(&settings(false, None), "v1", &sha('a'))
            .await
            .unwrap(),
    );
    assert!(
        summary.starts_with("version `v1` of `shop` already exists with this bundle"),
        "{summary}"
    );
    assert_eq!(variables["VersionLabel"], "v1");
    assert_eq!(
        bed.eb.calls(),
        [
            "DescribeApplicationVersions",
            "CreateApplicationVersion",
            "DescribeApplicationVersions"
        ]
    );
    assert!(bed.eb.created_versions().is_empty());
    assert_eq!(bed.eb.version_labels("shop"), ["v1"]);

    // What the other invocation made holds another bundle: judged by the same rule, a conflict.
    let bed = Bed::new();
    let mut theirs = version("v1", 1, "Processed");
    theirs.bundle = Some((BUCKET.into(), "shop/theirs.zip".into()));
    bed.s3.put_bundle(BUCKET, "shop/theirs.zip", &sha('c'));
    bed.eb.race_version("shop", theirs);
    let e = failure(bed.package(&settings(false, None), "v1", &sha('a')).await);
    assert_eq!(e.kind, FailureKind::ConfigurationError, "{}", e.message);
    assert!(
        e.message.contains(&format!(
            "s3://bundles/shop/theirs.zip has sha256 {}",
            sha('c')
        )),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_new_version_is_created_with_its_checksum_tag() {
    let bed = Bed::new();
    let (summary, variables) = succeeded(
        bed.package(&settings(false, None), "v1", &sha('a'))
            .await
            .unwrap(),
    );
    assert_eq!(
        summary,
        format!(
            "created version `v1` of `shop`: bundle of 3 files, 512 bytes, sha256 {}",
            sha('a')
        )
    );
    assert_eq!(variables["BundleBucket"], BUCKET);
    let created = bed.eb.created_versions();
    assert_eq!(created.len(), 1);
    let new = &created[0];
    assert_eq!(
        (new.label.as_str(), new.bucket.as_str(), new.key.as_str()),
        ("v1", BUCKET, "shop/v1.zip")
    );
    assert_eq!(new.description.as_deref(), Some("commit 4f2a9c1"));
    assert!(!new.process && !new.auto_create_application);
    assert_eq!(
        new.tags,
        [(super::TAG_SHA256.to_string(), sha('a'))],
        "the tag retried jobs and retire read"
    );

    // An application that does not exist, without `create_application`: the setup to fix.
    let bed = Bed::default();
    let e = failure(bed.package(&settings(false, None), "v1", &sha('a')).await);
    assert_eq!(e.kind, FailureKind::ConfigurationError, "{}", e.message);
    assert!(
        e.message.ends_with(
            "create the application first or set UserParameters `create_application` to true"
        ),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn at_the_version_limit_prune_keep_deletes_the_oldest_unused_versions_then_creates() {
    let bed = Bed::new();
    for (minute, label) in ["old1", "old2", "old3", "old4", "old5"].iter().enumerate() {
        bed.eb
            .add_version("shop", version(label, minute as u64, "Processed"));
    }
    // old2 serves: never pruned, however old.
    bed.eb
        .add(environment("shop", "shop-a", "shop-prod", "old2"));
    bed.eb.set_version_limit(5);

    let (summary, _) = succeeded(
        bed.package(&settings(false, Some(2)), "v9", &sha('a'))
            .await
            .unwrap(),
    );
    assert!(
        summary.contains(
            "the account was at its version limit: pruned 2 old unused versions of `shop` (old3, old1)"
        ),
        "{summary}"
    );
    assert_eq!(
        bed.eb.version_labels("shop"),
        ["old2", "old4", "old5", "v9"]
    );
    assert_eq!(
        bed.eb.calls(),
        [
            "DescribeApplicationVersions",
            "CreateApplicationVersion",
            "DescribeApplicationVersions",
            "DescribeEnvironments",
            "DeleteApplicationVersion",
            "DeleteApplicationVersion",
            "CreateApplicationVersion"
        ]
    );
    // Only Beanstalk's versions go: their bundles stay in S3.
    assert!(bed.s3.calls().is_empty());
}

#[tokio::test]
async fn at_the_version_limit_without_prune_keep_the_job_fails_saying_what_to_do() {
    let bed = Bed::new();
    for (minute, label) in ["old1", "old2", "old3"].iter().enumerate() {
        bed.eb
            .add_version("shop", version(label, minute as u64, "Processed"));
    }
    bed.eb.set_version_limit(3);

    let e = failure(bed.package(&settings(false, None), "v9", &sha('a')).await);
    assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
    assert_eq!(
        e.message,
        "Elastic Beanstalk refused to create version `v9` of `shop` because the account is at its application version limit (TooManyApplicationVersionsException: You cannot have more than 3 Application Versions.). Run the retire action with version pruning to delete old versions, or set UserParameters `prune_keep` so package prunes this application's oldest unused versions itself"
    );
    assert_eq!(bed.eb.count("DeleteApplicationVersion"), 0);
    assert_eq!(bed.eb.version_labels("shop"), ["old1", "old2", "old3"]);

    // With prune_keep, but nothing beyond the newest `keep` to prune: the same failure, saying why.
    let e = failure(
        bed.package(&settings(false, Some(3)), "v9", &sha('a'))
            .await,
    );
    assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
    assert!(
        e.message
            .contains("`shop` has no unused version beyond the newest 3 to prune."),
        "{}",
        e.message
    );
    assert_eq!(bed.eb.count("DeleteApplicationVersion"), 0);
}

#[tokio::test]
async fn processing_is_waited_for_across_invocations_until_processed() {
    let bed = Bed::new();
    let settings = settings(true, None);
    let (state, summary, percent) =
        in_progress(bed.package(&settings, "v1", &sha('a')).await.unwrap());
    assert_eq!(
        summary,
        "version `v1` is Processing; waiting for Elastic Beanstalk to process it"
    );
    assert_eq!(percent, 50);
    assert!(bed.eb.created_versions()[0].process);
    assert_eq!(
        state.since,
        crate::clock::unix_seconds(bed.clock.now()),
        "the wait counts from the creation"
    );

    // The first continuation polls for its whole budget, then hands back a token.
    let (state, summary, percent) = in_progress(bed.wait(&settings, state, BUDGET).await.unwrap());
    assert!(
        summary.starts_with("version `v1` is Processing after"),
        "{summary}"
    );
    assert!(percent > 50);
    let slept: Duration = bed.clock.slept().iter().sum();
    assert!(slept <= BUDGET && slept > BUDGET / 2, "{slept:?}");
    assert_eq!(state.status.as_deref(), Some("Processing"));
    assert!(state.polls > 3, "{}", state.polls);

    // The next finds it processed: done, with the first invocation's summary.
    bed.eb
        .script_version_status("shop", "v1", &["Processing", "Processed"]);
    let (summary, variables) = succeeded(bed.wait(&settings, state, BUDGET).await.unwrap());
    assert!(
        summary.starts_with("created version `v1` of `shop`"),
        "{summary}"
    );
    assert!(
        summary.ends_with("; processed by Elastic Beanstalk"),
        "{summary}"
    );
    assert_eq!(variables["VersionLabel"], "v1");
    assert_eq!(variables["BundleSha256"], sha('a'));
}

#[tokio::test]
async fn a_failed_processing_fails_the_job_with_the_versions_events() {
    let bed = Bed::new();
    let settings = settings(true, None);
    let (state, _, _) = in_progress(bed.package(&settings, "v1", &sha('a')).await.unwrap());
    bed.eb
        .add_version_event("shop", "v1", "INFO", "Processing version v1.");
    bed.eb
        .add_version_event("shop", "v1", "ERROR", "Invalid source bundle: no Procfile.");
    bed.eb.script_version_status("shop", "v1", &["Failed"]);

    let e = failure(bed.wait(&settings, state.clone(), BUDGET).await);
    assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
    assert_eq!(
        e.message,
        "Elastic Beanstalk could not process version `v1` of `shop`: status Failed. Events:\nINFO Processing version v1.\nERROR Invalid source bundle: no Procfile."
    );

    // Not allowed to read why: that is the failure to fix first.
    bed.eb.fail_next(
        "DescribeEvents",
        AwsError::answered(
            Service::ElasticBeanstalk,
            "DescribeEvents",
            "AccessDenied",
            "not authorized to perform: elasticbeanstalk:DescribeEvents",
        ),
    );
    let e = failure(bed.wait(&settings, state.clone(), BUDGET).await);
    assert_eq!(e.kind, FailureKind::PermissionError, "{}", e.message);
    assert!(
        e.message.contains(
            "version `v1` of `shop` could not be processed (status Failed), and reading why was refused"
        ),
        "{}",
        e.message
    );

    // Events unavailable for another reason: the processing's failure, saying so.
    bed.eb
        .fail_next("DescribeEvents", throttled("DescribeEvents"));
    let e = failure(bed.wait(&settings, state, BUDGET).await);
    assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
    assert!(
        e.message.contains("Events:\n(events unavailable: "),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_throttled_poll_is_waited_out_or_handed_over_never_a_verdict() {
    let bed = Bed::new();
    let settings = settings(true, None);
    let (state, _, _) = in_progress(bed.package(&settings, "v1", &sha('a')).await.unwrap());

    // No time left in this invocation: a continuation, the poll counted for the backoff.
    bed.eb.fail_next(
        "DescribeApplicationVersions",
        throttled("DescribeApplicationVersions"),
    );
    let (next, summary, _) = in_progress(
        bed.wait(&settings, state.clone(), Duration::ZERO)
            .await
            .unwrap(),
    );
    assert_eq!(
        summary,
        "version `v1`: Elastic Beanstalk asked us to slow down; still waiting for it to be processed"
    );
    assert_eq!(next.polls, state.polls + 1);
    assert_eq!(next.status, None);

    // With time left, the throttled poll is skipped and the next one answers.
    bed.eb.fail_next(
        "DescribeApplicationVersions",
        throttled("DescribeApplicationVersions"),
    );
    bed.eb.script_version_status("shop", "v1", &["Processed"]);
    let (summary, _) = succeeded(bed.wait(&settings, next, BUDGET).await.unwrap());
    assert!(
        summary.ends_with("; processed by Elastic Beanstalk"),
        "{summary}"
    );
}

#[tokio::test]
async fn past_process_timeout_the_wait_fails() {
    let bed = Bed::new();
    let settings = settings(true, None);
    let (state, _, _) = in_progress(bed.package(&settings, "v1", &sha('a')).await.unwrap());
    bed.clock.advance(TIMEOUT + Duration::from_secs(1));

    let e = failure(bed.wait(&settings, state.clone(), BUDGET).await);
    assert_eq!(e.kind, FailureKind::JobFailed, "{}", e.message);
    assert_eq!(
        e.message,
        "version `v1` of `shop` is still Processing after 10 minutes (UserParameters `process_timeout_minutes`)"
    );

    // Every poll of the wait throttled: AWS's trouble, not the version's.
    bed.eb.fail_next(
        "DescribeApplicationVersions",
        throttled("DescribeApplicationVersions"),
    );
    let e = failure(bed.wait(&settings, state, BUDGET).await);
    assert_eq!(e.kind, FailureKind::SystemUnavailable, "{}", e.message);
    assert!(
        e.message
            .starts_with("version `v1` of `shop` could not be seen processed within 10 minutes"),
        "{}",
        e.message
    );
}

// --- the bundle's S3 side: storing it (copy, upload, multipart) on FakeS3 ------------------------

mod storing {
    use std::io::{Cursor, Write};
    use std::sync::Arc;

    use aws_config::SdkConfig;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::super::multipart::PART_BYTES;
    use super::super::s3::{Stored, Target};
    use super::super::Packager;
    use super::*;
    use crate::bundle::{self, Plan, Spooled};
    use crate::job::Artifact;

    type Fakes = Packager<FakeBeanstalk, FakeClock, FakeS3>;

    fn packager() -> Fakes {
        Packager::with(
            &SdkConfig::builder().build(),
            FakeBeanstalk::default(),
            FakeS3::default(),
            FakeClock::default(),
        )
    }

    /// A zip of these stored (uncompressed) files.
    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        for (name, body) in files {
            w.start_file(*name, stored).unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// The artifact (in the fake, at s3://artifacts/shop-pipeline/BuildOut/Gx7hQ2d), spooled and
    /// planned as the first invocation does.
    fn spool(s3: &FakeS3, zip: &[u8]) -> (Artifact, Arc<Spooled>, Arc<Plan>) {
        let artifact = Artifact {
            name: "BuildOut".into(),
            revision: None,
            bucket: "artifacts".into(),
            key: "shop-pipeline/BuildOut/Gx7hQ2d".into(),
        };
        s3.put(&artifact.bucket, &artifact.key);
        let spooled = Spooled::from_reader(zip, u64::MAX).unwrap();
        let plan = bundle::inspect(&spooled, &Limits::default(), &Normalise::default()).unwrap();
        (artifact, Arc::new(spooled), Arc::new(plan))
    }

    /// What the bundle will be once stored: the artifact itself, or its rewrite.
    fn planned(spooled: &Arc<Spooled>, plan: &Arc<Plan>) -> (u64, String) {
        if !plan.needs_rewrite() {
            return (spooled.size, spooled.sha256.clone());
        }
        let w = bundle::write_normalised(spooled, plan, std::io::sink()).unwrap();
        (w.size, w.sha256)
    }

    const KEY: &str = "shop/v1.zip";

    fn target(sha256: &str) -> Target<'_> {
        Target {
            bucket: BUCKET,
            key: KEY,
            sha256,
        }
    }

    #[tokio::test]
    async fn an_unchanged_bundle_is_copied_server_side_with_its_checksum() {
        let p = packager();
        let (artifact, spooled, plan) = spool(
            &p.s3,
            &zip_of(&[("Procfile", b"web: ./app"), ("app", b"#!")]),
        );
        assert!(!plan.needs_rewrite());
        let (_, sha256) = planned(&spooled, &plan);

        let stored = p
            .store(&artifact, &spooled, &plan, &target(&sha256))
            .await
            .unwrap();
        assert!(matches!(stored, Stored::Copied));
        assert_eq!(p.s3.calls(), ["CopyObject"]);
        assert_eq!(p.s3.sha256_of(BUCKET, KEY), Some(sha256));
    }

    #[tokio::test]
    async fn a_copy_the_role_may_not_make_sends_the_spooled_bundle_instead() {
        let p = packager();
        let (artifact, spooled, plan) = spool(
            &p.s3,
            &zip_of(&[("Procfile", b"web: ./app"), ("app", b"#!")]),
        );
        let (size, sha256) = planned(&spooled, &plan);
        p.s3.fail_next(
            "CopyObject",
            AwsError::answered(Service::S3, "CopyObject", "AccessDenied", "Access Denied"),
        );

        let Stored::Uploaded(written) = p
            .store(&artifact, &spooled, &plan, &target(&sha256))
            .await
            .unwrap()
        else {
            panic!("not uploaded")
        };
        assert_eq!(
            (written.size, written.sha256.as_str()),
            (size, sha256.as_str())
        );
        assert_eq!(p.s3.calls(), ["CopyObject", "PutObject"]);
        assert_eq!(p.s3.size_of(BUCKET, KEY), Some(size));
        assert_eq!(p.s3.sha256_of(BUCKET, KEY), Some(sha256));

        // Any other refusal is the job's answer (run.rs makes Beanstalk's bucket on NoSuchBucket).
        p.s3.fail_next(
            "CopyObject",
            AwsError::answered(Service::S3, "CopyObject", "NoSuchBucket", "no bucket"),
        );
        let Err(PackageError::Aws(e)) = p.store(&artifact, &spooled, &plan, &target("x")).await
        else {
            panic!("not an AWS error")
        };
        assert_eq!(e.code.as_deref(), Some("NoSuchBucket"));
    }

    #[tokio::test]
    async fn a_rewritten_bundle_is_streamed_in_one_put_or_in_parts() {
        // All in one top-level folder: flattened, so rewritten.
        let p = packager();
        let (artifact, spooled, plan) = spool(
            &p.s3,
            &zip_of(&[("site/Procfile", b"web: ./app"), ("site/app", b"#!")]),
        );
        assert!(plan.needs_rewrite());
        let (size, sha256) = planned(&spooled, &plan);
        let Stored::Uploaded(written) = p
            .store(&artifact, &spooled, &plan, &target(&sha256))
            .await
            .unwrap()
        else {
            panic!("not uploaded")
        };
        assert_eq!(
            (written.size, written.sha256.as_str()),
            (size, sha256.as_str())
        );
        assert_eq!(p.s3.calls(), ["PutObject"]);

        // Larger than two parts: a multipart upload, completed with every part.
        let p = packager();
        let big: Vec<u8> = (0..PART_BYTES * 2 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        let (artifact, spooled, plan) = spool(
            &p.s3,
            &zip_of(&[("site/Procfile", b"web: ./app"), ("site/data", &big)]),
        );
        let (size, sha256) = planned(&spooled, &plan);
        let Stored::Uploaded(written) = p
            .store(&artifact, &spooled, &plan, &target(&sha256))
            .await
            .unwrap()
        else {
            panic!("not uploaded")
        };
        assert_eq!(written.sha256, sha256);
        assert_eq!(
            p.s3.calls(),
            [
                "CreateMultipartUpload",
                "UploadPart",
                "UploadPart",
                "UploadPart",
                "CompleteMultipartUpload"
            ]
        );
        assert_eq!(p.s3.size_of(BUCKET, KEY), Some(size));
        assert_eq!(p.s3.sha256_of(BUCKET, KEY), Some(sha256));
        assert_eq!(p.s3.open_uploads(), 0);
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload_and_stores_nothing() {
        let p = packager();
        let big: Vec<u8> = (0..PART_BYTES * 2 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        let (artifact, spooled, plan) = spool(
            &p.s3,
            &zip_of(&[("site/Procfile", b"web: ./app"), ("site/data", &big)]),
        );
        let (_, sha256) = planned(&spooled, &plan);
        p.s3.fail_next(
            "UploadPart",
            AwsError::answered(Service::S3, "UploadPart", "InternalError", "try again"),
        );

        let e = failure_of(p.store(&artifact, &spooled, &plan, &target(&sha256)).await);
        assert_eq!(e.kind, FailureKind::SystemUnavailable, "{}", e.message);
        assert!(e.message.contains("UploadPart"), "{}", e.message);
        assert_eq!(
            p.s3.calls(),
            [
                "CreateMultipartUpload",
                "UploadPart",
                "AbortMultipartUpload"
            ]
        );
        assert_eq!(p.s3.open_uploads(), 0);
        assert!(!p.s3.exists(BUCKET, KEY));
    }

    fn failure_of(result: Result<Stored, PackageError>) -> ActionError {
        match result {
            Err(e) => ActionError::from(e),
            Ok(_) => panic!("stored"),
        }
    }
}
