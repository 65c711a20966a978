//! The version half of package: from a label and a stored bundle (or a label found taken) to the
//! job's outcome, through Elastic Beanstalk, the stored bundles' checksums and the clock. Finding a
//! label and judging what it holds, creating the version (pruning this application's oldest unused
//! versions and retrying once when the account is at its version limit; adopting the version another
//! invocation made meanwhile), and creating Beanstalk's storage bucket on first use. Apart from the
//! sequence because it runs on the narrow traits alone (its unit tests are `sequence_tests.rs`), and
//! because pruning deletes things and its rule (never a version an environment uses) should be read on
//! its own.

use super::process::finished;
use super::{BundleStore, LabelConflict, PackageError, Settings, State, TAG_SHA256};
use crate::aws_error::AwsError;
use crate::beanstalk::{ApplicationVersion, BeanstalkApi, NewVersion};
use crate::clock::{unix_seconds, Clock};
use crate::outcome::{truncate, Outcome};

/// Longest summary carried in the continuation state.
const SUMMARY_IN_STATE: usize = 1200;

/// The version half over its clients: Beanstalk, the bundles' checksums and the clock.
pub(super) struct Versions<'a, B, S, C> {
    pub(super) beanstalk: &'a B,
    pub(super) bundles: &'a S,
    pub(super) clock: &'a C,
    pub(super) settings: &'a Settings,
}

/// Where a stored bundle is, and what it is.
pub(super) struct StoredBundle<'a> {
    pub(super) label: &'a str,
    pub(super) bucket: &'a str,
    pub(super) key: &'a str,
    pub(super) sha256: &'a str,
}

impl<B: BeanstalkApi, S: BundleStore, C: Clock> Versions<'_, B, S, C> {
    /// Before anything is stored: the job's outcome when the label already exists (the same bundle:
    /// done, nothing created; another bundle: a conflict), `None` when it does not.
    pub(super) async fn found(
        &self,
        label: &str,
        sha256: &str,
        notes: &[String],
    ) -> Result<Option<Outcome<State>>, PackageError> {
        match self.version(label).await? {
            Some(existing) => Ok(Some(self.existing(label, &existing, sha256, notes).await?)),
            None => Ok(None),
        }
    }

    /// The bundle is stored: creates its version (or adopts the one another invocation of this job
    /// created meanwhile), then ends the job or hands back a token while Beanstalk processes it.
    pub(super) async fn create(
        &self,
        stored: &StoredBundle<'_>,
        mut notes: Vec<String>,
    ) -> Result<Outcome<State>, PackageError> {
        let (label, sha256) = (stored.label, stored.sha256);
        let created = match self.create_version(stored, &mut notes).await {
            Ok(v) => v,
            Err(PackageError::Aws(e)) if already_exists(&e) => {
                // Another invocation of this job created it meanwhile.
                return match self.version(label).await? {
                    Some(existing) => self.existing(label, &existing, sha256, &notes).await,
                    None => Err(PackageError::Aws(e)),
                };
            }
            Err(e) => return Err(e),
        };
        // Bounded: it rides in the continuation token (2048 characters with the rest of the state).
        let summary = truncate(
            &format!(
                "created version `{label}` of `{}`: {}",
                self.settings.application,
                notes.join("; ")
            ),
            SUMMARY_IN_STATE,
        );
        let state = State {
            label: label.to_string(),
            bucket: stored.bucket.to_string(),
            key: stored.key.to_string(),
            sha256: sha256.to_string(),
            summary,
            since: unix_seconds(self.clock.now()),
            polls: 0,
            status: None,
        };
        self.settle(state, status_of(&created)).await
    }

    /// The label exists: the same bundle means done (nothing created), another bundle is a conflict.
    async fn existing(
        &self,
        label: &str,
        version: &ApplicationVersion,
        sha256: &str,
        notes: &[String],
    ) -> Result<Outcome<State>, PackageError> {
        let settings = self.settings;
        let (bucket, key) = version.bundle.clone().unwrap_or_default();
        let existing_sha256 = if bucket.is_empty() {
            "(none: the version has no S3 source bundle)".to_string()
        } else {
            self.bundles
                .bundle_sha256(&bucket, &key)
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
            since: unix_seconds(self.clock.now()),
            polls: 0,
            status: None,
        };
        if settings.process && status == "Unprocessed" {
            // Created earlier without `process`: Beanstalk will never process it by itself.
            let mut done = finished(state, false);
            if let Outcome::Succeeded { summary, .. } = &mut done {
                summary.push_str("; note: that version was created without processing, so Elastic Beanstalk has not validated it");
            }
            return Ok(done);
        }
        self.settle(state, status).await
    }

    /// CreateStorageLocation, which makes `elasticbeanstalk-<region>-<account>`; fails with the original
    /// NoSuchBucket when it cannot, or when Beanstalk's bucket is another one.
    pub(super) async fn create_storage_location(
        &self,
        bucket: &str,
        missing: AwsError,
    ) -> Result<(), PackageError> {
        let hint = "create it or set UserParameters field `bucket`";
        match self.beanstalk.create_storage_location().await {
            Ok(made) if made.as_deref() == Some(bucket) => Ok(()),
            Ok(made) => Err(PackageError::Config(format!(
                "{missing}; Elastic Beanstalk's storage bucket is {}, not {bucket}: {hint}",
                made.as_deref().unwrap_or("(none)")
            ))),
            Err(e) => {
                // The role's trouble, not the pipeline's setup: a PermissionError naming the action.
                if e.class() == crate::aws_error::ErrorClass::PermissionDenied {
                    return Err(PackageError::Aws(e));
                }
                Err(PackageError::Config(format!(
                    "{missing}; creating it failed: {e}: {hint}"
                )))
            }
        }
    }

    pub(super) async fn version(
        &self,
        label: &str,
    ) -> Result<Option<ApplicationVersion>, PackageError> {
        Ok(self
            .beanstalk
            .application_version(&self.settings.application, label)
            .await?)
    }

    /// CreateApplicationVersion, pruning and retrying once when the account is at its version limit
    /// and `prune_keep` allows it.
    async fn create_version(
        &self,
        stored: &StoredBundle<'_>,
        notes: &mut Vec<String>,
    ) -> Result<ApplicationVersion, PackageError> {
        let (settings, label) = (self.settings, stored.label);
        let mut pruned: Vec<String> = vec![];
        let new = NewVersion {
            application: settings.application.clone(),
            label: label.to_string(),
            description: settings.description.clone(),
            bucket: stored.bucket.to_string(),
            key: stored.key.to_string(),
            process: settings.process,
            auto_create_application: settings.create_application,
            tags: vec![(TAG_SHA256.to_string(), stored.sha256.to_string())],
        };
        loop {
            let result = self.beanstalk.create_application_version(&new).await;
            let e = match result {
                Ok(created) => {
                    return created.ok_or_else(|| {
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
        // Retire's pruning reads the versions the same way: one listing, every page.
        let mut versions = self
            .beanstalk
            .application_versions(application, 1000)
            .await?;
        let in_use: Vec<String> = self
            .beanstalk
            .environments(application)
            .await?
            .into_iter()
            .filter_map(|e| e.version_label)
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.created));
        let mut deleted = vec![];
        for v in versions.iter().skip(keep as usize) {
            let label = v.label.as_str();
            if label == creating || in_use.iter().any(|l| l == label) {
                continue;
            }
            self.beanstalk
                .delete_application_version(application, label)
                .await?;
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

pub(super) fn already_exists(e: &AwsError) -> bool {
    e.code.as_deref() == Some("InvalidParameterValue") && e.message.contains("already exists")
}

/// The version's status; Beanstalk's answer leaves it out for a version it has not processed.
pub(super) fn status_of(v: &ApplicationVersion) -> String {
    if v.status.is_empty() {
        "Unprocessed".into()
    } else {
        v.status.clone()
    }
}
