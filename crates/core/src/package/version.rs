//! Elastic Beanstalk's side of a version: finding a label, creating the version (pruning this
//! application's oldest unused versions and retrying once when the account is at its version limit), and
//! creating Beanstalk's storage bucket on first use. Apart from the sequence because pruning deletes
//! things, and its rule (never a version an environment uses) should be read on its own.

use super::{PackageError, Packager, Settings, TAG_SHA256};
use crate::aws_error::AwsError;
use crate::beanstalk::{ApplicationVersion, BeanstalkApi, NewVersion};

impl Packager {
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
        application: &str,
        label: &str,
    ) -> Result<Option<ApplicationVersion>, PackageError> {
        Ok(self
            .beanstalk
            .application_version(application, label)
            .await?)
    }

    /// CreateApplicationVersion, pruning and retrying once when the account is at its version limit
    /// and `prune_keep` allows it.
    pub(super) async fn create(
        &self,
        settings: &Settings,
        label: &str,
        bucket: &str,
        key: &str,
        sha256: &str,
        notes: &mut Vec<String>,
    ) -> Result<ApplicationVersion, PackageError> {
        let mut pruned: Vec<String> = vec![];
        let new = NewVersion {
            application: settings.application.clone(),
            label: label.to_string(),
            description: settings.description.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            process: settings.process,
            auto_create_application: settings.create_application,
            tags: vec![(TAG_SHA256.to_string(), sha256.to_string())],
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
