//! package: the build artifact becomes an Elastic Beanstalk application version.
//!
//! One invocation reads the input artifact into a temporary file (hashing it on the way), checks and
//! plans it ([`crate::bundle`]), decides the version label, and then either finds that label already
//! holding the same bundle (nothing is created) or stores the bundle and creates the version. The bundle
//! is copied server-side when it needs no change, and streamed to S3 as a multipart upload when it is
//! rewritten, so memory stays bounded. With `process`, later invocations (continuation token) wait until
//! Beanstalk has processed the version.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_elasticbeanstalk::types::{ApplicationVersionDescription, S3Location, Tag};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::artifacts::ArtifactStore;
use crate::aws_error::{AwsError, ErrorClass, HttpStatus, Service};
use crate::beanstalk::{poll_delay, Beanstalk};
use crate::bundle::{self, BundleError, Limits, Normalise, Plan, Spool, Spooled, Written};
use crate::job::{Artifact, Job};
use crate::outcome::{truncate, FailureKind, Outcome};
use crate::runner::ActionError;

/// The S3 object metadata key (`x-amz-meta-beanswap-sha256`) holding a bundle's SHA-256.
pub const METADATA_SHA256: &str = "beanswap-sha256";
/// The tag on the application version holding its bundle's SHA-256.
pub const TAG_SHA256: &str = "beanswap:bundle-sha256";
/// Elastic Beanstalk's limit on a version label.
pub const MAX_LABEL: usize = 100;
/// Multipart upload part size: three of these in flight is the upload's whole memory.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// How long one continuation invocation polls a processing version before handing back a token (less
/// when Lambda's deadline is nearer): every hand-over costs a job report and CodePipeline's pause.
const INLINE_POLL: Duration = Duration::from_secs(120);
/// Kept back from Lambda's deadline for a last call and the report.
const LAMBDA_RESERVE: Duration = Duration::from_secs(15);
/// Longest summary carried in the continuation state.
const SUMMARY_IN_STATE: usize = 1200;

/// What the package action was asked to do (its UserParameters, checked).
#[derive(Debug, Clone)]
pub struct Settings {
    pub application: String,
    /// The input artifact; the only one when `None`.
    pub artifact: Option<String>,
    /// Where bundles go; `elasticbeanstalk-<region>-<account>` when `None`.
    pub bucket: Option<String>,
    /// Prepended to `<application>/<label>.zip`.
    pub key_prefix: String,
    /// Version label template (see [`render_label`]); derived from the job when `None`.
    pub version_label: Option<String>,
    pub description: Option<String>,
    pub process: bool,
    pub process_timeout: Duration,
    pub create_application: bool,
    /// Prune this application's oldest unused versions, keeping this many, when the account is at its
    /// version limit.
    pub prune_keep: Option<u32>,
    pub require_entry_point: bool,
    pub limits: Limits,
    pub normalise: Normalise,
}

/// What a continuation carries while Beanstalk processes the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub label: String,
    pub bucket: String,
    pub key: String,
    pub sha256: String,
    /// The first invocation's summary, repeated at the end.
    pub summary: String,
    /// When waiting started (Unix seconds).
    pub since: u64,
    pub polls: u32,
}

/// A failed S3 call on s3://bucket/key.
fn s3_error<E, R>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + Send + Sync + 'static,
{
    AwsError::from_sdk(Service::S3, operation, e).on(format!("s3://{bucket}/{key}"))
}

/// An S3 call that broke off without an AWS answer (a body stream that ended early).
fn s3_other(operation: &'static str, bucket: &str, key: &str, message: String) -> AwsError {
    AwsError::other(Service::S3, operation, message).on(format!("s3://{bucket}/{key}"))
}

/// Why packaging stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{0}")]
    Config(String),
    /// `artifact` names the input artifact and its S3 object.
    #[error("{artifact}: {source}")]
    Bundle {
        artifact: String,
        source: BundleError,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    LabelConflict(Box<LabelConflict>),
    #[error("Elastic Beanstalk refused to create version `{label}` of `{application}` because the account is at its application version limit ({message}).{pruned} Run the retire action with version pruning to delete old versions, or set UserParameters `prune_keep` so package prunes this application's oldest unused versions itself")]
    VersionLimit {
        application: String,
        label: String,
        message: String,
        pruned: String,
    },
    #[error("Elastic Beanstalk could not process version `{label}` of `{application}`: status {status}. Events:\n{events}")]
    ProcessingFailed {
        application: String,
        label: String,
        status: String,
        events: String,
    },
    #[error("version `{label}` of `{application}` is still {status} after {minutes} minutes (UserParameters `process_timeout_minutes`)")]
    ProcessingTimeout {
        application: String,
        label: String,
        status: String,
        minutes: u64,
    },
    #[error("{0}")]
    Internal(String),
}

impl From<PackageError> for ActionError {
    fn from(e: PackageError) -> Self {
        if let PackageError::Aws(aws) = e {
            return aws.into();
        }
        let kind = match &e {
            PackageError::Config(_) | PackageError::LabelConflict(_) => {
                FailureKind::ConfigurationError
            }
            PackageError::Bundle { source, .. } if source.is_bundle_fault() => {
                FailureKind::ConfigurationError
            }
            _ => FailureKind::JobFailed,
        };
        ActionError::new(kind, e.to_string())
    }
}

/// A version label that already holds another bundle.
#[derive(Debug, thiserror::Error)]
#[error("version label `{label}` already exists in application `{application}` with a different bundle: the existing version's bundle s3://{existing_bucket}/{existing_key} has sha256 {existing_sha256}, this job's bundle has sha256 {sha256}. Versions are immutable: give this build another `version_label`, or delete the existing version if it is unused")]
pub struct LabelConflict {
    pub application: String,
    pub label: String,
    pub existing_bucket: String,
    pub existing_key: String,
    pub existing_sha256: String,
    pub sha256: String,
}

/// What a version label template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelVars {
    pub application: String,
    /// The input artifact's revision (a commit id for most sources).
    pub revision: Option<String>,
    /// The last segment of the artifact's object key: unique per pipeline execution.
    pub artifact_id: String,
    pub job_id: String,
    /// The final bundle's SHA-256.
    pub sha256: String,
}

/// Placeholders a `version_label` template may contain.
pub const LABEL_PLACEHOLDERS: &[&str] = &[
    "application",
    "revision",
    "revision_short",
    "artifact_id",
    "job_id",
    "sha256",
    "sha256_short",
];

/// Checks a template's placeholders without values (for UserParameters validation).
pub fn check_label_template(template: &str) -> Result<(), String> {
    render(template, &|_| Some(String::new())).map(|_| ())
}

fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{{` at `{}` is never closed", &rest[open..]))?;
        let name = &after[..close];
        if !LABEL_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; use one of {}",
                LABEL_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let v = value(name).ok_or_else(|| {
            format!("`{{{name}}}` has no value for this job (the input artifact has no revision)")
        })?;
        out.push_str(&v);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Keeps what is safe in a label and an S3 key; anything else becomes `-`.
fn label_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The version label: `template` with its placeholders filled, or by default
/// `{revision_short}-{artifact_id}` (`{artifact_id}-{sha256_short}` when the artifact has no revision).
/// Deterministic for a job, so a re-invoked job finds the version it created. Longer than 100
/// characters, it is cut and suffixed with a hash of the whole, so it stays unique.
pub fn render_label(template: Option<&str>, vars: &LabelVars) -> Result<String, String> {
    let default = match vars.revision {
        Some(_) => "{revision_short}-{artifact_id}",
        None => "{artifact_id}-{sha256_short}",
    };
    let template = template.unwrap_or(default);
    let value = |name: &str| -> Option<String> {
        Some(match name {
            "application" => label_safe(&vars.application),
            "revision" => label_safe(vars.revision.as_deref()?),
            "revision_short" => label_safe(
                &vars
                    .revision
                    .as_deref()?
                    .chars()
                    .take(12)
                    .collect::<String>(),
            ),
            "artifact_id" => label_safe(&vars.artifact_id),
            "job_id" => vars.job_id.clone(),
            "sha256" => vars.sha256.clone(),
            "sha256_short" => vars.sha256.chars().take(12).collect(),
            _ => return None,
        })
    };
    let label = render(template, &value)?;
    let label = label.trim().to_string();
    if label.is_empty() {
        return Err("the label is empty".into());
    }
    if label.chars().count() <= MAX_LABEL {
        return Ok(label);
    }
    let digest = hex::encode(Sha256::digest(label.as_bytes()));
    let head: String = label.chars().take(MAX_LABEL - 13).collect();
    Ok(format!("{head}-{}", &digest[..12]))
}

/// `<prefix><application>/<label>.zip`; the prefix gets a trailing `/` when it has none. A label with
/// characters unsafe in a key gets a short hash of itself, so two labels never share a bundle.
pub fn bundle_key(prefix: &str, application: &str, label: &str) -> String {
    let prefix = prefix.trim_start_matches('/');
    let sep = if prefix.is_empty() || prefix.ends_with('/') {
        ""
    } else {
        "/"
    };
    let mut name = label_safe(label);
    if name != label {
        let digest = hex::encode(Sha256::digest(label.as_bytes()));
        name = format!("{name}-{}", &digest[..8]);
    }
    format!("{prefix}{sep}{}/{name}.zip", label_safe(application))
}

/// `elasticbeanstalk-<region>-<account>`, the bucket Beanstalk itself uses.
pub fn default_bucket(region: &str, account: &str) -> String {
    format!("elasticbeanstalk-{region}-{account}")
}

/// CopyObject's `x-amz-copy-source`: bucket and key, URL-encoded except `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Where a bundle goes.
struct Target<'a> {
    bucket: &'a str,
    key: &'a str,
    sha256: &'a str,
}

/// How the bundle reached its bucket.
enum Stored {
    Copied,
    Uploaded(Written),
}

/// The package action's AWS side: S3 with the function's own role for bundles, the job's artifact
/// credentials for the input, Elastic Beanstalk for versions.
pub struct Packager {
    aws: SdkConfig,
    s3: aws_sdk_s3::Client,
    beanstalk: Beanstalk,
}

impl Packager {
    pub fn new(aws: &SdkConfig) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(aws);
        // A local S3 (moto) serves buckets by path, not by virtual host.
        if aws.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
            s3 = s3.force_path_style(true);
        }
        Packager {
            aws: aws.clone(),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            beanstalk: Beanstalk::new(aws),
        }
    }

    /// One invocation: the whole packaging on the first, a processing wait on continuations.
    pub async fn run(
        &self,
        job: &Job,
        settings: &Settings,
        state: Option<State>,
    ) -> Result<Outcome<State>, PackageError> {
        // Boxed: the packaging future is large and deep; keep it off the runtime's stack and types.
        match state {
            Some(state) => {
                let budget = job
                    .time_left(LAMBDA_RESERVE)
                    .map_or(INLINE_POLL, |left| left.min(INLINE_POLL));
                Box::pin(self.wait(settings, state, budget)).await
            }
            None => Box::pin(self.package(job, settings)).await,
        }
    }

    async fn package(
        &self,
        job: &Job,
        settings: &Settings,
    ) -> Result<Outcome<State>, PackageError> {
        let artifact = pick_artifact(job, settings.artifact.as_deref())?;
        let bucket = self.bucket(job, settings)?;
        let bundle_error = |source: BundleError| PackageError::Bundle {
            artifact: format!(
                "artifact `{}` (s3://{}/{})",
                artifact.name, artifact.bucket, artifact.key
            ),
            source,
        };
        let spooled = self
            .spool(job, artifact, settings.limits.max_bundle_bytes)
            .await?
            .map_err(bundle_error)?;
        let (limits, normalise) = (settings.limits.clone(), settings.normalise.clone());
        let (spooled, plan) = blocking(move || {
            let plan = bundle::inspect(&spooled, &limits, &normalise);
            (spooled, plan)
        })
        .await?;
        let plan = plan.map_err(bundle_error)?;
        if settings.require_entry_point && plan.entry_point.is_none() {
            return Err(bundle_error(BundleError::NoEntryPoint {
                looked_for: "Procfile and each platform's default".into(),
            }));
        }
        let (spooled, plan) = (Arc::new(spooled), Arc::new(plan));
        let (size, sha256) = if plan.needs_rewrite() {
            let (s, p) = (spooled.clone(), plan.clone());
            let written = blocking(move || bundle::write_normalised(&s, &p, std::io::sink()))
                .await?
                .map_err(bundle_error)?;
            (written.size, written.sha256)
        } else {
            (spooled.size, spooled.sha256.clone())
        };
        let vars = LabelVars {
            application: settings.application.clone(),
            revision: artifact.revision.clone().filter(|r| !r.trim().is_empty()),
            artifact_id: artifact
                .key
                .rsplit('/')
                .next()
                .unwrap_or(&artifact.key)
                .to_string(),
            job_id: job.id.clone(),
            sha256: sha256.clone(),
        };
        let label = render_label(settings.version_label.as_deref(), &vars).map_err(|e| {
            PackageError::Config(format!("UserParameters field `version_label`: {e}"))
        })?;
        let key = bundle_key(&settings.key_prefix, &settings.application, &label);
        let mut notes = describe_plan(&plan, size, &sha256);

        if let Some(existing) = self.version(&settings.application, &label).await? {
            return self
                .existing(settings, &label, &existing, &sha256, notes)
                .await;
        }

        let target = Target {
            bucket: &bucket,
            key: &key,
            sha256: &sha256,
        };
        let stored = match self.store(artifact, &spooled, &plan, &target).await {
            Err(PackageError::Aws(e))
                if e.code.as_deref() == Some("NoSuchBucket") && settings.bucket.is_none() =>
            {
                // Beanstalk's own bucket is made on first use of Beanstalk in a region; make it now.
                self.create_storage_location(&bucket, e).await?;
                notes.push(format!(
                    "created Elastic Beanstalk's storage bucket {bucket} (CreateStorageLocation)"
                ));
                self.store(artifact, &spooled, &plan, &target).await?
            }
            Err(PackageError::Aws(e)) if e.code.as_deref() == Some("NoSuchBucket") => {
                return Err(PackageError::Config(format!(
                    "{e}: the bucket in UserParameters field `bucket` does not exist"
                )))
            }
            other => other?,
        };
        drop(spooled);
        notes.push(match &stored {
            Stored::Copied => format!("copied server-side to s3://{bucket}/{key}"),
            Stored::Uploaded(w) => format!("uploaded {} bytes to s3://{bucket}/{key}", w.size),
        });
        if let Stored::Uploaded(w) = &stored {
            if w.sha256 != sha256 {
                return Err(PackageError::Internal(format!(
                    "the bundle uploaded to s3://{bucket}/{key} has sha256 {} but {sha256} was planned; nothing was created",
                    w.sha256
                )));
            }
        }

        let created = match self
            .create(settings, &label, &bucket, &key, &sha256, &mut notes)
            .await
        {
            Ok(v) => v,
            Err(PackageError::Aws(e)) if already_exists(&e) => {
                // Another invocation of this job created it meanwhile.
                match self.version(&settings.application, &label).await? {
                    Some(existing) => {
                        return self
                            .existing(settings, &label, &existing, &sha256, notes)
                            .await
                    }
                    None => return Err(PackageError::Aws(e)),
                }
            }
            Err(e) => return Err(e),
        };
        // Bounded: it rides in the continuation token (2048 characters with the rest of the state).
        let summary = truncate(
            &format!(
                "created version `{label}` of `{}`: {}",
                settings.application,
                notes.join("; ")
            ),
            SUMMARY_IN_STATE,
        );
        let state = State {
            label,
            bucket,
            key,
            sha256,
            summary,
            since: now_secs(),
            polls: 0,
        };
        self.settle(settings, state, status_of(&created)).await
    }

    /// Puts the bundle at the target: a server-side copy when it needs no change, else a stream.
    async fn store(
        &self,
        artifact: &Artifact,
        spooled: &Arc<Spooled>,
        plan: &Arc<Plan>,
        target: &Target<'_>,
    ) -> Result<Stored, PackageError> {
        let (bucket, key, sha256) = (target.bucket, target.key, target.sha256);
        if plan.needs_rewrite() {
            let (s, p) = (spooled.clone(), plan.clone());
            return self
                .upload(bucket, key, sha256, move |out| {
                    bundle::write_normalised(&s, &p, out)
                })
                .await;
        }
        match self.copy(artifact, bucket, key, sha256).await {
            Ok(()) => Ok(Stored::Copied),
            // The function's role may not read the artifact bucket (only the job's credentials can):
            // send the spooled copy instead.
            Err(e) if e.class() == ErrorClass::PermissionDenied => {
                tracing::info!(error = %e, "CopyObject refused; uploading the spooled bundle");
                let s = spooled.clone();
                self.upload(bucket, key, sha256, move |out| {
                    let mut hashing = bundle::HashingWriter::new(out);
                    std::io::copy(&mut s.reader()?, &mut hashing).map_err(|e| BundleError::Io {
                        action: "upload",
                        reason: e.to_string(),
                    })?;
                    Ok(hashing.finish())
                })
                .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// CreateStorageLocation, which makes `elasticbeanstalk-<region>-<account>`; fails with the original
    /// NoSuchBucket when it cannot, or when Beanstalk's bucket is another one.
    async fn create_storage_location(
        &self,
        bucket: &str,
        missing: AwsError,
    ) -> Result<(), PackageError> {
        let hint = "create it or set UserParameters field `bucket`";
        match self
            .beanstalk
            .client()
            .create_storage_location()
            .send()
            .await
        {
            Ok(out) if out.s3_bucket() == Some(bucket) => Ok(()),
            Ok(out) => Err(PackageError::Config(format!(
                "{missing}; Elastic Beanstalk's storage bucket is {}, not {bucket}: {hint}",
                out.s3_bucket().unwrap_or("(none)")
            ))),
            Err(e) => Err(PackageError::Config(format!(
                "{missing}; creating it failed: {}: {hint}",
                Beanstalk::error("CreateStorageLocation", e)
            ))),
        }
    }

    /// The label exists: the same bundle means done (nothing created), another bundle is a conflict.
    async fn existing(
        &self,
        settings: &Settings,
        label: &str,
        version: &ApplicationVersionDescription,
        sha256: &str,
        notes: Vec<String>,
    ) -> Result<Outcome<State>, PackageError> {
        let (bucket, key) = version
            .source_bundle()
            .map(|s| {
                (
                    s.s3_bucket().unwrap_or_default().to_string(),
                    s.s3_key().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or_default();
        let existing_sha256 = if bucket.is_empty() {
            "(none: the version has no S3 source bundle)".to_string()
        } else {
            self.bundle_sha256(&bucket, &key)
                .await?
                .unwrap_or_else(|| "(none: the bundle object is missing)".into())
        };
        if existing_sha256 != sha256 {
            return Err(PackageError::LabelConflict(Box::new(LabelConflict {
                application: settings.application.clone(),
                label: label.to_string(),
                existing_bucket: bucket,
                existing_key: key,
                existing_sha256,
                sha256: sha256.to_string(),
            })));
        }
        let summary = truncate(
            &format!(
                "version `{label}` of `{}` already exists with this bundle (s3://{bucket}/{key}); nothing created: {}",
                settings.application,
                notes.join("; ")
            ),
            SUMMARY_IN_STATE,
        );
        let status = status_of(version);
        let state = State {
            label: label.to_string(),
            bucket,
            key,
            sha256: sha256.to_string(),
            summary,
            since: now_secs(),
            polls: 0,
        };
        if settings.process && status == "Unprocessed" {
            // Created earlier without `process`: Beanstalk will never process it by itself.
            let mut done = finished(state, false);
            if let Outcome::Succeeded { summary, .. } = &mut done {
                summary.push_str("; note: that version was created without processing, so Elastic Beanstalk has not validated it");
            }
            return Ok(done);
        }
        self.settle(settings, state, status).await
    }

    /// Ends the job, or hands back a token while Beanstalk processes the version.
    async fn settle(
        &self,
        settings: &Settings,
        state: State,
        status: String,
    ) -> Result<Outcome<State>, PackageError> {
        if !settings.process || status == "Processed" {
            return Ok(finished(state, settings.process));
        }
        if status == "Failed" {
            return Err(self
                .processing_failed(settings, &state.label, &status)
                .await);
        }
        let summary = format!(
            "version `{}` is {status}; waiting for Elastic Beanstalk to process it",
            state.label
        );
        Ok(Outcome::InProgress {
            state,
            summary,
            percent: 50,
        })
    }

    /// A continuation: polls the version for a while, then ends the job or hands back a new token.
    async fn wait(
        &self,
        settings: &Settings,
        mut state: State,
        budget: Duration,
    ) -> Result<Outcome<State>, PackageError> {
        let started = Instant::now();
        loop {
            let polled = match self.version(&settings.application, &state.label).await {
                Err(PackageError::Aws(e)) => crate::aws_error::unless_transient(Err(e))?,
                other => Some(other?),
            };
            let Some(version) = polled else {
                if now_secs().saturating_sub(state.since) > settings.process_timeout.as_secs() {
                    return Err(PackageError::ProcessingTimeout {
                        application: settings.application.clone(),
                        label: state.label,
                        status: "unknown (Elastic Beanstalk throttled the last poll)".into(),
                        minutes: settings.process_timeout.as_secs() / 60,
                    });
                }
                state.polls += 1;
                let delay = poll_delay(state.polls);
                if started.elapsed() + delay > budget {
                    let summary = format!(
                        "version `{}`: Elastic Beanstalk asked us to slow down; still waiting for it to be processed",
                        state.label
                    );
                    return Ok(Outcome::InProgress {
                        state,
                        summary,
                        percent: 50,
                    });
                }
                tokio::time::sleep(delay).await;
                continue;
            };
            let version = version.ok_or_else(|| {
                PackageError::Internal(format!(
                    "version `{}` of `{}` disappeared while it was being processed",
                    state.label, settings.application
                ))
            })?;
            let status = status_of(&version);
            state.polls += 1;
            match status.as_str() {
                "Processed" => return Ok(finished(state, true)),
                "Failed" => {
                    return Err(self
                        .processing_failed(settings, &state.label, &status)
                        .await)
                }
                _ => {}
            }
            let waited = now_secs().saturating_sub(state.since);
            if waited > settings.process_timeout.as_secs() {
                return Err(PackageError::ProcessingTimeout {
                    application: settings.application.clone(),
                    label: state.label,
                    status,
                    minutes: settings.process_timeout.as_secs() / 60,
                });
            }
            // The backoff goes on across invocations (a long processing is polled every 10 s, not
            // quickly again after each hand-over).
            let delay = poll_delay(state.polls);
            if started.elapsed() + delay > budget {
                let summary = format!(
                    "version `{}` is {status} after {waited}s; still waiting for Elastic Beanstalk to process it",
                    state.label
                );
                let percent = 50 + (state.polls.min(45) as u8);
                return Ok(Outcome::InProgress {
                    state,
                    summary,
                    percent,
                });
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn processing_failed(
        &self,
        settings: &Settings,
        label: &str,
        status: &str,
    ) -> PackageError {
        let events = match self
            .beanstalk
            .client()
            .describe_events()
            .application_name(&settings.application)
            .version_label(label)
            .max_records(20)
            .send()
            .await
        {
            Ok(out) => {
                let mut lines: Vec<String> = out
                    .events()
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e.severity().map(|s| s.as_str()).unwrap_or("INFO"),
                            e.message().unwrap_or_default()
                        )
                    })
                    .collect();
                lines.reverse();
                if lines.is_empty() {
                    "(no events)".to_string()
                } else {
                    lines.join("\n")
                }
            }
            Err(e) => format!(
                "(events unavailable: {})",
                Beanstalk::error("DescribeEvents", e)
            ),
        };
        PackageError::ProcessingFailed {
            application: settings.application.clone(),
            label: label.to_string(),
            status: status.to_string(),
            events,
        }
    }

    fn bucket(&self, job: &Job, settings: &Settings) -> Result<String, PackageError> {
        if let Some(bucket) = &settings.bucket {
            return Ok(bucket.clone());
        }
        let region = self.aws.region().map(|r| r.as_ref().to_string());
        match (region, job.account_id.as_deref()) {
            (Some(region), Some(account)) => Ok(default_bucket(&region, account)),
            (None, _) => Err(PackageError::Config(
                "UserParameters field `bucket` is required: the function has no AWS region to derive elasticbeanstalk-<region>-<account> from".into(),
            )),
            (_, None) => Err(PackageError::Config(
                "UserParameters field `bucket` is required: the job carries no accountId to derive elasticbeanstalk-<region>-<account> from".into(),
            )),
        }
    }

    /// Downloads the artifact into a temporary file with the job's credentials. The outer error is
    /// S3's, the inner one the bundle's (too large).
    async fn spool(
        &self,
        job: &Job,
        artifact: &Artifact,
        max: u64,
    ) -> Result<Result<Spooled, BundleError>, PackageError> {
        let store = ArtifactStore::for_job(&self.aws, job);
        let (bucket, key) = (&artifact.bucket, &artifact.key);
        let mut object = store
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", bucket, key, e))?;
        let declared = object.content_length().unwrap_or(0).max(0) as u64;
        if declared > max {
            return Ok(Err(BundleError::TooLarge {
                size: declared,
                max,
            }));
        }
        let mut spool = match Spool::new(max) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|e| s3_other("GetObject", bucket, key, e.to_string()))?
        {
            if let Err(e) = spool.push(&chunk) {
                return Ok(Err(e));
            }
        }
        Ok(spool.finish())
    }

    async fn version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<Option<ApplicationVersionDescription>, PackageError> {
        let out = self
            .beanstalk
            .client()
            .describe_application_versions()
            .application_name(application)
            .version_labels(label)
            .send()
            .await
            .map_err(|e| Beanstalk::error("DescribeApplicationVersions", e))?;
        Ok(out
            .application_versions()
            .iter()
            .find(|v| v.version_label() == Some(label))
            .cloned())
    }

    /// The SHA-256 of a stored bundle: from its metadata when beanswap wrote it, else by reading it.
    /// `None` when the object does not exist.
    async fn bundle_sha256(&self, bucket: &str, key: &str) -> Result<Option<String>, PackageError> {
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(head) => {
                if let Some(sha) = head.metadata().and_then(|m| m.get(METADATA_SHA256)) {
                    return Ok(Some(sha.clone()));
                }
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None)
            }
            Err(e) => return Err(s3_error("HeadObject", bucket, key, e).into()),
        }
        let mut object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", bucket, key, e))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = object
            .body
            .try_next()
            .await
            .map_err(|e| s3_other("GetObject", bucket, key, e.to_string()))?
        {
            hasher.update(&chunk);
        }
        Ok(Some(hex::encode(hasher.finalize())))
    }

    /// Server-side copy of the unchanged artifact, with its checksum as metadata.
    async fn copy(
        &self,
        artifact: &Artifact,
        bucket: &str,
        key: &str,
        sha256: &str,
    ) -> Result<(), AwsError> {
        self.s3
            .copy_object()
            .copy_source(copy_source(&artifact.bucket, &artifact.key))
            .bucket(bucket)
            .key(key)
            .metadata_directive(MetadataDirective::Replace)
            .metadata(METADATA_SHA256, sha256)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|e| s3_error("CopyObject", bucket, key, e))?;
        Ok(())
    }

    /// Streams what `produce` writes to s3://bucket/key: one PutObject when it fits in a part, a
    /// multipart upload otherwise, never more than three parts in memory. `produce` runs on a blocking
    /// thread; the upload is completed only when it succeeded.
    async fn upload<F>(
        &self,
        bucket: &str,
        key: &str,
        sha256: &str,
        produce: F,
    ) -> Result<Stored, PackageError>
    where
        F: FnOnce(&mut dyn Write) -> Result<Written, BundleError> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
        let producer = tokio::task::spawn_blocking(move || {
            let mut parts = PartWriter {
                tx,
                buf: Vec::with_capacity(PART_BYTES),
            };
            let written = produce(&mut parts)?;
            parts.finish()?;
            Ok::<_, BundleError>(written)
        });
        let produced = |r: Result<Result<Written, BundleError>, tokio::task::JoinError>| match r {
            Ok(Ok(w)) => Ok(w),
            Ok(Err(e)) => Err(PackageError::Internal(format!(
                "could not write the bundle for s3://{bucket}/{key}: {e}"
            ))),
            Err(e) => Err(PackageError::Internal(format!(
                "the bundle writer for s3://{bucket}/{key} stopped: {e}"
            ))),
        };
        let first = rx.recv().await;
        let second = match first {
            Some(_) => rx.recv().await,
            None => None,
        };
        let (first, second) = match (first, second) {
            (Some(first), Some(second)) => (first, second),
            (first, _) => {
                let written = produced(producer.await)?;
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .metadata(METADATA_SHA256, sha256)
                    .content_type("application/zip")
                    .body(ByteStream::from(first.unwrap_or_default()))
                    .send()
                    .await
                    .map_err(|e| s3_error("PutObject", bucket, key, e))?;
                return Ok(Stored::Uploaded(written));
            }
        };
        let upload_id = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .metadata(METADATA_SHA256, sha256)
            .content_type("application/zip")
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", bucket, key, e))?
            .upload_id()
            .unwrap_or_default()
            .to_string();
        let result = async {
            let mut completed = vec![];
            let mut next = Some(first);
            let mut queued = Some(second);
            while let Some(body) = next.take() {
                let number = completed.len() as i32 + 1;
                let part = self
                    .s3
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .map_err(|e| s3_error("UploadPart", bucket, key, e))?;
                completed.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
                next = match queued.take() {
                    Some(b) => Some(b),
                    None => rx.recv().await,
                };
            }
            Ok::<_, PackageError>(completed)
        }
        .await;
        drop(rx);
        let written = produced(producer.await);
        let completed = match (result, written) {
            (Ok(parts), Ok(written)) => (parts, written),
            (Err(e), _) | (_, Err(e)) => {
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        self.s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed.0))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", bucket, key, e))?;
        Ok(Stored::Uploaded(completed.1))
    }

    /// CreateApplicationVersion, pruning and retrying once when the account is at its version limit
    /// and `prune_keep` allows it.
    async fn create(
        &self,
        settings: &Settings,
        label: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
        notes: &mut Vec<String>,
    ) -> Result<ApplicationVersionDescription, PackageError> {
        let mut pruned: Vec<String> = vec![];
        loop {
            let result = self
                .beanstalk
                .client()
                .create_application_version()
                .application_name(&settings.application)
                .version_label(label)
                .set_description(settings.description.clone())
                .source_bundle(S3Location::builder().s3_bucket(bucket).s3_key(key).build())
                .process(settings.process)
                .auto_create_application(settings.create_application)
                .tags(Tag::builder().key(TAG_SHA256).value(sha256).build())
                .send()
                .await
                .map_err(|e| Beanstalk::error("CreateApplicationVersion", e));
            let e = match result {
                Ok(out) => {
                    return out.application_version().cloned().ok_or_else(|| {
                        PackageError::Internal(format!(
                            "CreateApplicationVersion returned no version for `{label}`"
                        ))
                    })
                }
                Err(e) => e,
            };
            if e.code.as_deref() != Some("TooManyApplicationVersionsException") {
                if e.code.as_deref() == Some("InvalidParameterValue")
                    && e.message.contains("No Application named")
                {
                    return Err(PackageError::Config(format!(
                        "{e}; create the application first or set UserParameters `create_application` to true"
                    )));
                }
                return Err(e.into());
            }
            let keep = match settings.prune_keep {
                Some(keep) if pruned.is_empty() => keep,
                _ => {
                    let pruned = if pruned.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " package pruned {} old versions ({}) but that was not enough.",
                            pruned.len(),
                            some(&pruned)
                        )
                    };
                    return Err(PackageError::VersionLimit {
                        application: settings.application.clone(),
                        label: label.to_string(),
                        message: e.message,
                        pruned,
                    });
                }
            };
            pruned = self.prune(&settings.application, keep, label).await?;
            if pruned.is_empty() {
                return Err(PackageError::VersionLimit {
                    application: settings.application.clone(),
                    label: label.to_string(),
                    message: e.message,
                    pruned: format!(
                        " `{}` has no unused version beyond the newest {keep} to prune.",
                        settings.application
                    ),
                });
            }
            notes.push(format!(
                "the account was at its version limit: pruned {} old unused versions of `{}` ({})",
                pruned.len(),
                settings.application,
                some(&pruned)
            ));
        }
    }

    /// Deletes the application's versions beyond the newest `keep`, never one an environment uses
    /// (their bundles stay in S3). Returns the deleted labels.
    async fn prune(
        &self,
        application: &str,
        keep: u32,
        creating: &str,
    ) -> Result<Vec<String>, PackageError> {
        let mut versions: Vec<ApplicationVersionDescription> = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .beanstalk
                .client()
                .describe_application_versions()
                .application_name(application)
                .max_records(1000)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| Beanstalk::error("DescribeApplicationVersions", e))?;
            versions.extend(page.application_versions().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let in_use: Vec<String> = self
            .beanstalk
            .environments(application)
            .await?
            .into_iter()
            .filter_map(|e| e.version_label)
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.date_created().map(|d| d.as_nanos())));
        let mut deleted = vec![];
        for v in versions.iter().skip(keep as usize) {
            let Some(label) = v.version_label() else {
                continue;
            };
            if label == creating || in_use.iter().any(|l| l == label) {
                continue;
            }
            self.beanstalk
                .client()
                .delete_application_version()
                .application_name(application)
                .version_label(label)
                .delete_source_bundle(false)
                .send()
                .await
                .map_err(|e| Beanstalk::error("DeleteApplicationVersion", e))?;
            deleted.push(label.to_string());
        }
        Ok(deleted)
    }
}

/// The first few of a list, for a summary or a message.
fn some(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 10 {
        out.push_str(&format!(" and {} more", items.len() - 10));
    }
    out
}

fn already_exists(e: &AwsError) -> bool {
    e.code.as_deref() == Some("InvalidParameterValue") && e.message.contains("already exists")
}

fn status_of(v: &ApplicationVersionDescription) -> String {
    v.status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "Unprocessed".into())
}

fn finished(state: State, processed: bool) -> Outcome<State> {
    let summary = if processed {
        format!("{}; processed by Elastic Beanstalk", state.summary)
    } else {
        state.summary
    };
    Outcome::succeeded(summary)
        .with_variable("VersionLabel", state.label)
        .with_variable("BundleBucket", state.bucket)
        .with_variable("BundleKey", state.key)
        .with_variable("BundleSha256", state.sha256)
}

fn describe_plan(plan: &Plan, size: u64, sha256: &str) -> Vec<String> {
    let mut notes = vec![format!(
        "bundle of {} files, {size} bytes, sha256 {sha256}",
        plan.files
    )];
    notes.extend(plan.changes());
    notes.extend(plan.warnings());
    notes
}

fn pick_artifact<'a>(job: &'a Job, name: Option<&str>) -> Result<&'a Artifact, PackageError> {
    job.input_artifact(name).ok_or_else(|| {
        let names: Vec<&str> = job.input_artifacts.iter().map(|a| a.name.as_str()).collect();
        PackageError::Config(match (name, names.is_empty()) {
            (_, true) => "the action has no input artifact: give it the build output".to_string(),
            (Some(n), false) => format!(
                "UserParameters field `artifact`: `{n}` is not an input artifact; the inputs are {names:?}"
            ),
            (None, false) => format!(
                "UserParameters field `artifact`: the action has several input artifacts {names:?}; name the build output"
            ),
        })
    })
}

/// Runs CPU- and disk-bound work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PackageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PackageError::Internal(format!("bundle work stopped: {e}")))
}

/// Cuts what is written into parts and hands them to the uploader, waiting while it is busy.
struct PartWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl PartWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> Result<(), BundleError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send().map_err(|e| BundleError::Io {
            action: "upload",
            reason: e.to_string(),
        })
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART_BYTES - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
