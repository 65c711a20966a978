//! One invocation of package, as a sequence: the first reads the artifact, checks and plans the bundle,
//! decides the label, and then finds that label already holding the same bundle or stores the bundle and
//! creates the version; continuations only wait for processing (`process.rs`). Everything the steps do
//! against AWS is in the files beside this one; this file says in which order, and what the job reports.

use std::sync::Arc;
use std::time::Duration;

use super::label::{bundle_key, default_bucket, render_label, LabelVars};
use super::s3::{Stored, Target};
use super::version::StoredBundle;
use super::{BundleStore, PackageError, Packager, Settings, State};
use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::BeanstalkApi;
use crate::bundle::{self, BundleError, Plan};
use crate::clock::Clock;
use crate::job::{Artifact, Job};
use crate::outcome::Outcome;

/// How long one continuation invocation polls a processing version before handing back a token (less
/// when Lambda's deadline is nearer): every hand-over costs a job report and CodePipeline's pause.
const INLINE_POLL: Duration = Duration::from_secs(120);

impl<B: BeanstalkApi, C: Clock, S: BundleStore> Packager<B, C, S> {
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
                    .waiting_budget()
                    .map_or(INLINE_POLL, |left| left.min(INLINE_POLL));
                Box::pin(self.versions(settings).wait(state, budget)).await
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
        let spooled = ArtifactStore::for_job(&self.aws, job)
            .spool(artifact, settings.limits.max_bundle_bytes)
            .await
            .map_err(|e| input_error(e, bundle_error))?;
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

        let versions = self.versions(settings);
        if let Some(found) = versions.found(&label, &sha256, &notes).await? {
            return Ok(found);
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
                versions.create_storage_location(&bucket, e).await?;
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

        let stored = StoredBundle {
            label: &label,
            bucket: &bucket,
            key: &key,
            sha256: &sha256,
        };
        versions.create(&stored, notes).await
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

/// A failure reading the input artifact as package reports it: S3's refusal as the S3 call it is, the
/// artifact's size or the temporary file as the bundle's.
fn input_error(
    e: ArtifactError,
    bundle_error: impl Fn(BundleError) -> PackageError,
) -> PackageError {
    match e {
        ArtifactError::Read {
            bucket,
            key,
            reason,
            code,
            status,
            ..
        } => PackageError::Aws(AwsError {
            service: Service::S3,
            operation: "GetObject",
            on: Some(format!("s3://{bucket}/{key}")),
            code,
            message: reason,
            status,
            source: None,
        }),
        ArtifactError::TooLarge { size, max, .. } => {
            bundle_error(BundleError::TooLarge { size, max })
        }
        ArtifactError::NotZip { reason, .. } => bundle_error(BundleError::NotZip { reason }),
        ArtifactError::TempFile { action, reason, .. } => {
            bundle_error(BundleError::Io { action, reason })
        }
        // Reading never writes.
        other @ ArtifactError::Write { .. } => PackageError::Internal(other.to_string()),
    }
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
