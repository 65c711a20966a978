//! [`VersionsApi`]: the application-version calls (package creates versions and waits for their
//! processing; package and retire prune them), apart from the environment calls of
//! [`super::BeanstalkApi`], which includes it. The SDK's implementation is here, the in-memory one in
//! [`crate::fakes`].

use std::future::Future;
use std::time::SystemTime;

use super::{eb_error, to_system_time, ApplicationVersion, Beanstalk, Event, NewVersion};
use crate::aws_error::AwsError;

/// The Elastic Beanstalk calls about application versions, narrow enough to fake.
pub trait VersionsApi: Send + Sync {
    /// Every version of the application, `page_size` per DescribeApplicationVersions call (1..=1000),
    /// following NextToken.
    fn application_versions(
        &self,
        application: &str,
        page_size: i32,
    ) -> impl Future<Output = Result<Vec<ApplicationVersion>, AwsError>> + Send;
    /// Deletes a version from Beanstalk only; its source bundle stays in S3.
    fn delete_application_version(
        &self,
        application: &str,
        label: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// One version of the application by label (DescribeApplicationVersions with VersionLabels);
    /// `None` when there is none.
    fn application_version(
        &self,
        application: &str,
        label: &str,
    ) -> impl Future<Output = Result<Option<ApplicationVersion>, AwsError>> + Send;
    /// CreateApplicationVersion: the version as Beanstalk answers it (`None` if the answer holds
    /// none). A label that exists is refused (InvalidParameterValue "... already exists"), as is a
    /// version beyond the account's limit (TooManyApplicationVersionsException).
    fn create_application_version(
        &self,
        new: &NewVersion,
    ) -> impl Future<Output = Result<Option<ApplicationVersion>, AwsError>> + Send;
    /// CreateStorageLocation: makes Beanstalk's bucket `elasticbeanstalk-<region>-<account>` if it
    /// does not exist, and names it.
    fn create_storage_location(
        &self,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// The newest `max` events of one application version (DescribeEvents with ApplicationName and
    /// VersionLabel), oldest first: why its processing failed.
    fn version_events(
        &self,
        application: &str,
        label: &str,
        max: i32,
    ) -> impl Future<Output = Result<Vec<Event>, AwsError>> + Send;
}

impl VersionsApi for Beanstalk {
    async fn application_versions(
        &self,
        application: &str,
        page_size: i32,
    ) -> Result<Vec<ApplicationVersion>, AwsError> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_application_versions()
                .application_name(application)
                .max_records(page_size.clamp(1, 1000))
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| eb_error("DescribeApplicationVersions", e))?;
            out.extend(
                page.application_versions()
                    .iter()
                    .map(ApplicationVersion::from_sdk),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
    async fn delete_application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<(), AwsError> {
        self.client
            .delete_application_version()
            .application_name(application)
            .version_label(label)
            .delete_source_bundle(false)
            .send()
            .await
            .map_err(|e| eb_error("DeleteApplicationVersion", e))?;
        Ok(())
    }
    async fn application_version(
        &self,
        application: &str,
        label: &str,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        let out = self
            .client
            .describe_application_versions()
            .application_name(application)
            .version_labels(label)
            .send()
            .await
            .map_err(|e| eb_error("DescribeApplicationVersions", e))?;
        Ok(out
            .application_versions()
            .iter()
            .find(|v| v.version_label() == Some(label))
            .map(ApplicationVersion::from_sdk))
    }
    async fn create_application_version(
        &self,
        new: &NewVersion,
    ) -> Result<Option<ApplicationVersion>, AwsError> {
        use aws_sdk_elasticbeanstalk::types::{S3Location, Tag};
        // One builder chain: the template test reads the members it sets (Tags) from it.
        let out = self
            .client
            .create_application_version()
            .application_name(&new.application)
            .version_label(&new.label)
            .set_description(new.description.clone())
            .source_bundle(
                S3Location::builder()
                    .s3_bucket(&new.bucket)
                    .s3_key(&new.key)
                    .build(),
            )
            .process(new.process)
            .auto_create_application(new.auto_create_application)
            .set_tags((!new.tags.is_empty()).then(|| {
                new.tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect()
            }))
            .send()
            .await
            .map_err(|e| eb_error("CreateApplicationVersion", e))?;
        Ok(out.application_version().map(ApplicationVersion::from_sdk))
    }
    async fn create_storage_location(&self) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .create_storage_location()
            .send()
            .await
            .map_err(|e| eb_error("CreateStorageLocation", e))?;
        Ok(out.s3_bucket().map(str::to_string))
    }
    async fn version_events(
        &self,
        application: &str,
        label: &str,
        max: i32,
    ) -> Result<Vec<Event>, AwsError> {
        let out = self
            .client
            .describe_events()
            .application_name(application)
            .version_label(label)
            .max_records(max.clamp(1, 1000))
            .send()
            .await
            .map_err(|e| eb_error("DescribeEvents", e))?;
        // Newest first from AWS; an event without a date (none has one in practice) is kept.
        let mut events: Vec<Event> = out
            .events()
            .iter()
            .map(|e| {
                let date = e.event_date().and_then(to_system_time);
                Event::dated(e, date.unwrap_or(SystemTime::UNIX_EPOCH))
            })
            .collect();
        events.reverse();
        Ok(events)
    }
}
