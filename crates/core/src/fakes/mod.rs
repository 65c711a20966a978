//! In-memory stand-ins for the AWS traits ([`crate::beanstalk::BeanstalkApi`],
//! [`crate::route53::Route53Api`], [`crate::alarms::AlarmsApi`], [`crate::s3::S3Api`],
//! [`crate::package::BundleStore`]) and the version check
//! ([`crate::swap::Verify`]), so every path of a sequence has a unit test that needs no server (as mountpoint-s3
//! does with its mock client). Built for this crate's tests and, with the `fakes` feature, for other
//! crates' tests.
//!
//! They keep the AWS rules the sequences depend on, from FIDELITY.md: a tag change on an environment
//! is an environment update (Updating for a while; what needs Ready is refused meanwhile with "invalid
//! state ... Must be Ready"); SwapEnvironmentCNAMEs needs both environments Ready; a Route 53 batch is
//! atomic. Anything may be made to fail once with [`FakeBeanstalk::fail_next`].
//!
//! One file per service: `beanstalk` (environments, tags, events, enhanced health, capacity, application versions),
//! `route53` (hosted zones' records), `s3` (objects, package's bundles and multipart uploads), `verify` (the version check), `alarms` (CloudWatch).

use std::sync::{Mutex, MutexGuard};

use crate::aws_error::{AwsError, Service};

mod alarms;
mod beanstalk;
mod route53;
mod s3;
mod verify;

pub use alarms::FakeAlarms;
pub use beanstalk::{environment, figures, FakeBeanstalk};
pub use route53::FakeRoute53;
pub use s3::FakeS3;
pub use verify::FakeVerifier;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// "Environment named X is in an invalid state for this operation. Must be Ready.", as Beanstalk says
/// it.
pub fn not_ready(operation: &'static str, name: &str) -> AwsError {
    AwsError::answered(
        Service::ElasticBeanstalk,
        operation,
        "InvalidParameterValue",
        format!(
            "Environment named {name} is in an invalid state for this operation. Must be Ready."
        ),
    )
}
