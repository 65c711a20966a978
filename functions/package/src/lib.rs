//! package as a library: the action, its UserParameters and the output variables it sets. The binary
//! (`main.rs`) runs it under Lambda; the work itself is in `beanswap_core::package` and
//! `beanswap_core::bundle`.

use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::bundle::{Limits, Normalise, MAX_BUNDLE_BYTES};
use beanswap_core::package::{check_label_template, Packager, Settings, State};
use beanswap_core::params::ApplicationName;
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

/// What a successful run sets, for `#{Package.VersionLabel}` and friends in later actions.
pub const OUTPUT_VARIABLES: &[&str] =
    &["VersionLabel", "BundleBucket", "BundleKey", "BundleSha256"];

/// UserParameters of package.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Elastic Beanstalk application the version belongs to.
    pub application: ApplicationName,
    /// Which input artifact is the build output; the only one when left out.
    #[serde(default)]
    pub artifact: Option<String>,
    /// Bucket for source bundles; default `elasticbeanstalk-<region>-<account>`.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Prefix of the bundle's key, before `<application>/<label>.zip`.
    #[serde(default)]
    pub key_prefix: String,
    /// Version label template with `{revision}`, `{revision_short}`, `{artifact_id}`, `{job_id}`,
    /// `{sha256}`, `{sha256_short}`, `{application}`; default `{revision_short}-{artifact_id}`.
    #[serde(default)]
    pub version_label: Option<String>,
    /// The version's description (at most 200 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Let Elastic Beanstalk process (validate) the version and wait until it is Processed.
    #[serde(default)]
    pub process: bool,
    /// How long processing may take before the job fails.
    #[serde(default = "default_process_timeout")]
    pub process_timeout_minutes: u32,
    /// Create the application if it does not exist.
    #[serde(default)]
    pub create_application: bool,
    /// At the account's version limit, delete this application's oldest versions no environment uses,
    /// keeping the newest `prune_keep`, then retry. Without it, the job fails and says so.
    #[serde(default)]
    pub prune_keep: Option<u32>,
    /// Move everything out of a single top-level folder.
    #[serde(default = "beanswap_core::params::yes")]
    pub flatten: bool,
    /// Drop `__MACOSX/` and `.DS_Store` entries.
    #[serde(default = "beanswap_core::params::yes")]
    pub drop_os_metadata: bool,
    /// Rewrite entry names that use `\` as the separator.
    #[serde(default = "beanswap_core::params::yes")]
    pub fix_backslashes: bool,
    /// Fail, rather than warn, when the bundle root has no Procfile or known entry point.
    #[serde(default)]
    pub require_entry_point: bool,
    /// Zip-bomb bound: everything the bundle expands to.
    #[serde(default = "default_max_uncompressed_mb")]
    pub max_uncompressed_mb: u64,
    /// Zip-bomb bound: largest expansion ratio of one entry of 1 MiB or more.
    #[serde(default = "default_max_ratio")]
    pub max_compression_ratio: u64,
    /// Most entries the bundle may have.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
}

fn default_process_timeout() -> u32 {
    20
}
fn default_max_uncompressed_mb() -> u64 {
    Limits::default().max_uncompressed_bytes / (1024 * 1024)
}
fn default_max_ratio() -> u64 {
    Limits::default().max_ratio
}
fn default_max_entries() -> usize {
    Limits::default().max_entries
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r#"{"application":"shop","process":true}"#;

    fn validate(&self) -> Result<(), ParamsError> {
        if let Some(bucket) = &self.bucket {
            let ok = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !ok {
                return Err(ParamsError::field(
                    "bucket",
                    format!("`{bucket}` is not an S3 bucket name (3 to 63 lowercase letters, digits, `-` and `.`)"),
                ));
            }
        }
        if self.key_prefix.len() > 512 {
            return Err(ParamsError::field(
                "key_prefix",
                "must be at most 512 bytes",
            ));
        }
        if let Some(template) = &self.version_label {
            check_label_template(template).map_err(|e| ParamsError::field("version_label", e))?;
        }
        if let Some(d) = &self.description {
            let len = d.chars().count();
            if len > 200 {
                return Err(ParamsError::field(
                    "description",
                    format!("must be at most 200 characters, got {len}"),
                ));
            }
        }
        if !(1..=1440).contains(&self.process_timeout_minutes) {
            return Err(ParamsError::field(
                "process_timeout_minutes",
                "must be 1 to 1440",
            ));
        }
        if self.max_uncompressed_mb == 0 {
            return Err(ParamsError::field("max_uncompressed_mb", "must be above 0"));
        }
        if self.max_compression_ratio < 2 {
            return Err(ParamsError::field(
                "max_compression_ratio",
                "must be at least 2",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_entries) {
            return Err(ParamsError::field("max_entries", "must be 1 to 1000000"));
        }
        Ok(())
    }
}

impl Params {
    /// The checked parameters as the core's package settings.
    pub fn settings(&self) -> Settings {
        Settings {
            application: self.application.to_string(),
            artifact: self.artifact.clone(),
            bucket: self.bucket.clone(),
            key_prefix: self.key_prefix.clone(),
            version_label: self.version_label.clone(),
            description: self.description.clone().filter(|d| !d.is_empty()),
            process: self.process,
            process_timeout: Duration::from_secs(u64::from(self.process_timeout_minutes) * 60),
            create_application: self.create_application,
            prune_keep: self.prune_keep,
            require_entry_point: self.require_entry_point,
            limits: Limits {
                max_bundle_bytes: MAX_BUNDLE_BYTES,
                max_uncompressed_bytes: self.max_uncompressed_mb.saturating_mul(1024 * 1024),
                max_ratio: self.max_compression_ratio,
                max_entries: self.max_entries,
                ..Limits::default()
            },
            normalise: Normalise {
                flatten: self.flatten,
                drop_os_metadata: self.drop_os_metadata,
                fix_backslashes: self.fix_backslashes,
            },
        }
    }
}

/// The package action; its clients are built once per cold start.
pub struct Package {
    packager: Packager,
}

impl Package {
    pub fn new(aws: &SdkConfig) -> Self {
        Package {
            packager: Packager::new(aws),
        }
    }
}

impl Action for Package {
    type Params = Params;
    type State = State;

    async fn run(
        &self,
        job: &Job,
        params: Params,
        state: Option<State>,
    ) -> Result<Outcome<State>, ActionError> {
        Ok(self.packager.run(job, &params.settings(), state).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("### package").expect("a package section")..];
        let start = section.find("```json").expect("an example") + "```json".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let p: Params = parse(Some(example.trim())).unwrap_or_else(|e| panic!("{example}: {e}"));
        assert!(p.process);
        assert_eq!(p.prune_keep, Some(200));
    }

    #[test]
    fn parameters_default_and_name_the_bad_field() {
        let p: Params = parse(Some(r#"{"application":"shop"}"#)).unwrap();
        let s = p.settings();
        assert!(s.normalise.flatten && s.normalise.drop_os_metadata && s.normalise.fix_backslashes);
        assert_eq!(s.limits, Limits::default());
        assert!(!s.process && !s.create_application && s.prune_keep.is_none());
        // What the pipeline template sends.
        let p: Params = parse(Some(
            r#"{"application":"shop","description":"commit 4f2a9c1, execution 0d1c","process":true}"#,
        ))
        .unwrap();
        assert!(p.settings().process);

        let cases = [
            (r#"{}"#, "field `application`: missing field"),
            (
                r#"{"application":""}"#,
                "field `application`: must be 1 to 100",
            ),
            (
                r#"{"application":"shop","bucket":"My_Bucket"}"#,
                "field `bucket`: `My_Bucket` is not an S3 bucket name",
            ),
            (
                r#"{"application":"shop","version_label":"{commit}"}"#,
                "field `version_label`: unknown placeholder `{commit}`",
            ),
            (
                r#"{"application":"shop","max_compression_ratio":1}"#,
                "field `max_compression_ratio`",
            ),
            (
                r#"{"application":"shop","process_timeout_minutes":0}"#,
                "field `process_timeout_minutes`",
            ),
            (
                r#"{"application":"shop","flaten":false}"#,
                "field `flaten`: unknown field",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse::<Params>(Some(raw)).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{raw}: expected {expected:?} in {err:?}"
            );
        }
    }
}
