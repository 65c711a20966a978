//! Elastic Beanstalk (2010-12-01, awsQuery), following botocore's
//! `elasticbeanstalk/2010-12-01/service-2.json`: member names, list wrapping and error codes as the
//! model gives them, error messages as the service words them.
//!
//! Implemented so far: applications and application versions. Environments, templates, events, swap and
//! terminate come next (issue 3).

mod applications;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::query::{Params, QueryError};

pub const NAMESPACE: &str = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/";
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// Settings a test or the binary chooses at start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Application versions allowed per region before TooManyApplicationVersionsException (AWS: 1000).
    pub max_application_versions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_application_versions: 1000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub description: Option<String>,
    pub created: SystemTime,
    pub updated: SystemTime,
}

#[derive(Debug, Clone)]
pub struct ApplicationVersion {
    pub application: String,
    pub label: String,
    pub description: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub status: &'static str,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Creation order, for newest-first listing even within one clock tick.
    pub sequence: u64,
}

/// Everything Elastic Beanstalk holds for one region.
#[derive(Debug, Default)]
pub struct Store {
    pub options: Options,
    pub applications: BTreeMap<String, Application>,
    /// Keyed by (application, version label).
    pub versions: BTreeMap<(String, String), ApplicationVersion>,
    pub next_sequence: u64,
    /// Tags per resource ARN.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
}

/// Runs one operation against the store; `Ok(None)` for operations whose model has no output.
pub fn handle(
    store: &mut Store,
    operation: &str,
    params: &Params,
) -> Result<Option<String>, QueryError> {
    match operation {
        "CreateApplication" => applications::create_application(store, params).map(Some),
        "DescribeApplications" => applications::describe_applications(store, params).map(Some),
        "CreateApplicationVersion" => applications::create_version(store, params).map(Some),
        "DescribeApplicationVersions" => applications::describe_versions(store, params).map(Some),
        "DeleteApplicationVersion" => applications::delete_version(store, params).map(|()| None),
        other => Err(QueryError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-12-01"),
        )),
    }
}

pub fn application_arn(name: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:application/{name}")
}

pub fn version_arn(application: &str, label: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:applicationversion/{application}/{label}")
}
