//! Application versions in memory: the versions of each application, their processing as the test
//! scripts it, the account's version limit, a race with another invocation, and the events of a
//! version.

use std::time::{Duration, SystemTime};

use super::{lock, FakeBeanstalk};
use crate::aws_error::{AwsError, Service};
use crate::beanstalk::{ApplicationVersion, Event, NewVersion, VersionsApi};

impl FakeBeanstalk {
    /// Registers an application version.
    pub fn add_version(&self, application: &str, version: ApplicationVersion) {
        lock(&self.eb)
            .versions
            .entry(application.to_string())
            .or_default()
            .push(version);
    }

    /// The labels of the application's versions, in the order they were added.
    pub fn version_labels(&self, application: &str) -> Vec<String> {
        lock(&self.eb)
            .versions
            .get(application)
            .map(|v| v.iter().map(|v| v.label.clone()).collect())
            .unwrap_or_default()
    }

    /// An application that exists (with no versions or environments yet).
    pub fn add_application(&self, application: &str) {
        lock(&self.eb).applications.insert(application.to_string());
    }

    /// The version `label` of `application` as it is now.
    pub fn version(&self, application: &str, label: &str) -> Option<ApplicationVersion> {
        lock(&self.eb)
            .versions
            .get(application)
            .and_then(|v| v.iter().find(|v| v.label == label).cloned())
    }

    /// What reads of the version give as its status from now on: these in turn, then the last one
    /// again (as Beanstalk's processing moves it on).
    pub fn script_version_status(&self, application: &str, label: &str, statuses: &[&str]) {
        lock(&self.eb).version_statuses.insert(
            (application.to_string(), label.to_string()),
            statuses.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// The account may hold at most `limit` versions (TooManyApplicationVersionsException beyond).
    pub fn set_version_limit(&self, limit: usize) {
        lock(&self.eb).version_limit = Some(limit);
    }

    /// Every CreateApplicationVersion request that created a version, in order.
    pub fn created_versions(&self) -> Vec<NewVersion> {
        lock(&self.eb).created_versions.clone()
    }

    /// An event of the version, as DescribeEvents with VersionLabel gives it.
    pub fn add_version_event(&self, application: &str, label: &str, severity: &str, message: &str) {
        let mut eb = lock(&self.eb);
        let events = eb
            .version_events
            .entry((application.to_string(), label.to_string()))
            .or_default();
        events.push(Event {
            date: SystemTime::UNIX_EPOCH + Duration::from_secs(events.len() as u64),
            severity: severity.to_string(),
            message: message.to_string(),
            environment: None,
        });
    }

    /// What CreateStorageLocation names as Beanstalk's bucket.
    pub fn set_storage_bucket(&self, bucket: &str) {
        lock(&self.eb).storage_bucket = Some(bucket.to_string());
    }

    /// Another invocation creates `version` of `application` just before this one's next
    /// CreateApplicationVersion, which then finds the label taken.
    pub fn race_version(&self, application: &str, version: ApplicationVersion) {
        lock(&self.eb).racing = Some((application.to_string(), version));
    }
}

impl VersionsApi for FakeBeanstalk {
    async fn application_versions(
        &self,
        application: &str,
        _page_size: i32,
    ) -> Result<Vec<ApplicationVersion>, AwsError> {
        let eb = self.call("DescribeApplicationVersions")?;
        Ok(eb.versions.get(application).cloned().unwrap_or_default())
    }
    /// Refused for a version a running environment uses, as Beanstalk refuses it.
    async fn delete_application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<(), AwsError> {
        let mut eb = self.call("DeleteApplicationVersion")?;
        if let Some(env) = eb.environments.iter().find(|e| {
            e.application == application
                && !e.is_terminated()
                && e.version_label.as_deref() == Some(label)
        }) {
            return Err(AwsError::answered(
                Service::ElasticBeanstalk,
                "DeleteApplicationVersion",
                "InvalidParameterValue",
                format!(
                    "Unable to delete application version {label} because it is being deployed to running environment {}.",
                    env.name
                ),
            ));
        }
        if let Some(versions) = eb.versions.get_mut(application) {
            versions.retain(|v| v.label != label);
        }
        Ok(())
    }
    /// The version as [`FakeBeanstalk::script_version_status`] moves it on.
    async fn application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        let mut eb = self.call("DescribeApplicationVersions")?;
        let key = (application.to_string(), label.to_string());
        let status = eb.version_statuses.get_mut(&key).and_then(|queue| {
            if queue.len() > 1 {
                queue.pop_front()
            } else {
                queue.front().cloned()
            }
        });
        let version = eb
            .versions
            .get_mut(application)
            .and_then(|v| v.iter_mut().find(|v| v.label == label));
        Ok(version.map(|v| {
            if let Some(status) = status {
                v.status = status;
            }
            v.clone()
        }))
    }
    /// Refused as Beanstalk refuses it: a label that exists, an application that does not (without
    /// AutoCreateApplication), a version beyond the account's limit. A new version is Processing
    /// with Process, else Unprocessed, and newer than every other.
    async fn create_application_version(
        &self,
        new: &NewVersion,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        let mut eb = self.call("CreateApplicationVersion")?;
        let refuse = |code: &str, message: String| {
            AwsError::answered(
                Service::ElasticBeanstalk,
                "CreateApplicationVersion",
                code,
                message,
            )
        };
        if eb
            .racing
            .as_ref()
            .is_some_and(|(app, _)| *app == new.application)
        {
            if let Some((app, version)) = eb.racing.take() {
                eb.versions.entry(app).or_default().push(version);
            }
        }
        let versions = eb.versions.get(&new.application);
        if versions.is_some_and(|v| v.iter().any(|v| v.label == new.label)) {
            return Err(refuse(
                "InvalidParameterValue",
                format!("Application Version {} already exists.", new.label),
            ));
        }
        let exists = versions.is_some_and(|v| !v.is_empty())
            || eb.applications.contains(&new.application)
            || eb
                .environments
                .iter()
                .any(|e| e.application == new.application);
        if !exists && !new.auto_create_application {
            return Err(refuse(
                "InvalidParameterValue",
                format!("No Application named '{}' found.", new.application),
            ));
        }
        let held: usize = eb.versions.values().map(Vec::len).sum();
        if let Some(limit) = eb.version_limit {
            if held >= limit {
                return Err(refuse(
                    "TooManyApplicationVersionsException",
                    format!("You cannot have more than {limit} Application Versions."),
                ));
            }
        }
        let newest = eb
            .versions
            .values()
            .flatten()
            .filter_map(|v| v.created)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let version = ApplicationVersion {
            label: new.label.clone(),
            created: Some(newest + Duration::from_secs(1)),
            status: if new.process {
                "Processing"
            } else {
                "Unprocessed"
            }
            .into(),
            bundle: Some((new.bucket.clone(), new.key.clone())),
        };
        eb.applications.insert(new.application.clone());
        eb.versions
            .entry(new.application.clone())
            .or_default()
            .push(version.clone());
        eb.created_versions.push(new.clone());
        Ok(Some(version))
    }
    async fn create_storage_location(&self) -> Result<Option<String>, AwsError> {
        let eb = self.call("CreateStorageLocation")?;
        Ok(Some(eb.storage_bucket.clone().unwrap_or_else(|| {
            "elasticbeanstalk-us-east-1-123456789012".into()
        })))
    }
    async fn version_events(
        &self,
        application: &str,
        label: &str,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        let eb = self.call("DescribeEvents")?;
        let mut events = eb
            .version_events
            .get(&(application.to_string(), label.to_string()))
            .cloned()
            .unwrap_or_default();
        let keep = usize::try_from(max.max(0)).unwrap_or(0);
        Ok(events.split_off(events.len().saturating_sub(keep)))
    }
}
