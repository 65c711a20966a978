//! package: the build artifact becomes an Elastic Beanstalk application version.
//!
//! One invocation reads the input artifact into a temporary file (hashing it on the way), checks and
//! plans it ([`crate::bundle`]), decides the version label, and then either finds that label already
//! holding the same bundle (nothing is created) or stores the bundle and creates the version. The bundle
//! is copied server-side when it needs no change, and streamed to S3 as a multipart upload when it is
//! rewritten, so memory stays bounded. With `process`, later invocations (continuation token) wait until
//! Beanstalk has processed the version.
//!
//! The parts, by concern: `run.rs` is the sequence of one invocation (artifact, plan, label, store,
//! create); `label.rs` the names it derives (version label, bundle key, default bucket); `s3.rs` the
//! bundle's way in and out of S3 (download, server-side copy, checksum of what is stored) and
//! `multipart.rs` the streamed upload of a rewritten bundle; `version.rs` the version half, over the
//! narrow traits only ([`crate::beanstalk::BeanstalkApi`], [`BundleStore`], [`crate::clock::Clock`]):
//! a label found taken judged, the version created (pruned for at the version limit, adopted when
//! another invocation made it); `process.rs` the wait for Beanstalk to process the version across
//! invocations; `error.rs` why packaging stops and how CodePipeline hears it.

mod error;
mod label;
mod multipart;
mod process;
mod run;
mod s3;
mod version;

use std::time::Duration;

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::artifacts::s3_config;
use crate::beanstalk::{Beanstalk, BeanstalkApi};
use crate::bundle::{Limits, Normalise};
use crate::clock::{Clock, SystemClock};

pub use error::{LabelConflict, PackageError};
pub use label::{
    bundle_key, check_label_template, default_bucket, render_label, LabelVars, LABEL_PLACEHOLDERS,
    MAX_LABEL,
};
pub use s3::BundleStore;
use version::Versions;

/// The S3 object metadata key (`x-amz-meta-beanswap-sha256`) holding a bundle's SHA-256.
pub const METADATA_SHA256: &str = "beanswap-sha256";
/// The tag on the application version holding its bundle's SHA-256.
pub const TAG_SHA256: &str = "beanswap:bundle-sha256";

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
    /// The status the wait's latest answered poll saw; `None` while no poll has been answered (every
    /// one throttled): the timeout then is AWS's trouble, not the version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The package action's AWS side: S3 with the function's own role for bundles, the job's artifact
/// credentials for the input, Elastic Beanstalk for versions (the SDK's clients by default; tests give
/// the in-memory [`crate::fakes::FakeBeanstalk`] and [`crate::fakes::FakeS3`]), and the clock the
/// processing wait reads and sleeps on.
pub struct Packager<B = Beanstalk, C = SystemClock, S = aws_sdk_s3::Client> {
    aws: SdkConfig,
    s3: S,
    beanstalk: B,
    clock: C,
}

impl Packager {
    pub fn new(aws: &SdkConfig) -> Self {
        Packager::with(
            aws,
            Beanstalk::new(aws),
            aws_sdk_s3::Client::from_conf(s3_config(aws).build()),
            SystemClock,
        )
    }
}

impl<B: BeanstalkApi, C: Clock, S: BundleStore> Packager<B, C, S> {
    /// With the caller's Beanstalk, bundle store and clock (tests: the fakes); `aws` still gives the
    /// region for the default bucket and reads the input artifact with the job's credentials.
    pub fn with(aws: &SdkConfig, beanstalk: B, s3: S, clock: C) -> Self {
        Packager {
            aws: aws.clone(),
            s3,
            beanstalk,
            clock,
        }
    }

    /// The version half of this packaging, over this packager's clients.
    fn versions<'a>(&'a self, settings: &'a Settings) -> Versions<'a, B, S, C> {
        Versions {
            beanstalk: &self.beanstalk,
            bundles: &self.s3,
            clock: &self.clock,
            settings,
        }
    }
}

#[cfg(test)]
mod sequence_tests;
#[cfg(test)]
mod tests;
