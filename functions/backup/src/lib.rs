//! backup: an RDS snapshot of the stack's database before Stage, whose new environment runs the new
//! version's migrations (`.ebextensions` container commands) against the database production shares.
//! Waits with continuation tokens until the snapshot is available, sets `SnapshotId` for the smoke test's
//! and the approval's messages, and keeps only the newest `keep` of beanswap's backups of the instance.
//! The sequence is `beanswap_core::backup`; this crate is its UserParameters, `impl Action` and the RDS
//! client (the only function that links aws-sdk-rds).

pub mod rds;

use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::backup::{self, Plan, State};
use beanswap_core::clock::SystemClock;
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

pub use beanswap_core::backup::OUTPUT_VARIABLES;

/// UserParameters of backup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The DBInstanceIdentifier of the stack's database (`{"Ref": "Database"}` in the template).
    pub db_instance: String,
    pub application: String,
    /// `#{Package.VersionLabel}`: recorded as a tag, named in the summary.
    pub version_label: String,
    /// `#{codepipeline.PipelineExecutionId}`: the snapshot's identifier is derived from it, so every
    /// invocation of one execution finds the same snapshot.
    #[serde(default)]
    pub pipeline_execution: Option<String>,
    /// beanswap's backups of this instance to keep, the new one included (default 5).
    #[serde(default = "five")]
    pub keep: usize,
    /// Give up waiting for the snapshot after this long (default 60).
    #[serde(default = "sixty")]
    pub timeout_minutes: f64,
    /// How long one invocation polls before handing over (default 120).
    #[serde(default = "two_minutes")]
    pub poll_seconds: f64,
}

fn five() -> usize {
    5
}
fn sixty() -> f64 {
    60.0
}
fn two_minutes() -> f64 {
    120.0
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"db_instance":"shop-database","application":"shop","version_label":"#{Package.VersionLabel}","pipeline_execution":"#{codepipeline.PipelineExecutionId}","keep":5}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        let id = &self.db_instance;
        // DBInstanceIdentifier: 1 to 63 letters, digits or hyphens, a letter first, no hyphen at the end
        // or two in a row (RDS API Reference, CreateDBInstance).
        if !(1..=63).contains(&id.len())
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || !id.starts_with(|c: char| c.is_ascii_alphabetic())
            || id.ends_with('-')
            || id.contains("--")
        {
            return Err(ParamsError::field(
                "db_instance",
                format!("`{id}` is not a DB instance identifier (1 to 63 letters, digits and single hyphens, a letter first)"),
            ));
        }
        if !(1..=100).contains(&self.application.chars().count()) {
            return Err(ParamsError::field(
                "application",
                "must be 1 to 100 characters",
            ));
        }
        if self.version_label.is_empty() || self.version_label.contains("#{") {
            return Err(ParamsError::field(
                "version_label",
                format!("`{}` is empty or was not substituted: is the package action's namespace `Package`?", self.version_label),
            ));
        }
        if !(1..=100).contains(&self.keep) {
            return Err(ParamsError::field(
                "keep",
                "must be 1 to 100 (the new snapshot is always kept)",
            ));
        }
        if !(self.timeout_minutes > 0.0 && self.timeout_minutes <= 24.0 * 60.0) {
            return Err(ParamsError::field(
                "timeout_minutes",
                "must be more than 0 and at most 1440",
            ));
        }
        if !(0.0..=600.0).contains(&self.poll_seconds) {
            return Err(ParamsError::field(
                "poll_seconds",
                "must be between 0 and 600",
            ));
        }
        Ok(())
    }
}

impl Params {
    pub fn plan(&self) -> Plan {
        Plan {
            instance: self.db_instance.clone(),
            application: self.application.clone(),
            version_label: self.version_label.clone(),
            pipeline_execution: self.pipeline_execution.clone().filter(|e| !e.is_empty()),
            snapshot_id: backup::snapshot_id(
                &self.application,
                &self.version_label,
                self.pipeline_execution.as_deref().filter(|e| !e.is_empty()),
            ),
            keep: self.keep,
            timeout: Duration::from_secs_f64(self.timeout_minutes * 60.0),
            poll_budget: Duration::from_secs_f64(self.poll_seconds),
        }
    }
}

pub struct Backup {
    rds: rds::Rds,
}

impl Backup {
    pub fn new(aws: &SdkConfig) -> Self {
        Backup {
            rds: rds::Rds::new(aws),
        }
    }
}

/// Kept back from the Lambda deadline: one more RDS call and the report.
const LAMBDA_RESERVE: Duration = Duration::from_secs(15);

impl Action for Backup {
    type Params = Params;
    type State = State;

    async fn run(
        &self,
        job: &Job,
        params: Params,
        state: Option<State>,
    ) -> Result<Outcome<State>, ActionError> {
        let mut plan = params.plan();
        if let Some(left) = job.time_left(LAMBDA_RESERVE) {
            plan.poll_budget = plan.poll_budget.min(left);
        }
        backup::run(&self.rds, &SystemClock, &plan, state).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use beanswap_core::params::parse;

    #[test]
    fn the_example_parses_and_mistakes_name_the_field() {
        let p: Params = parse(Some(
            &Params::EXAMPLE
                .replace("#{Package.VersionLabel}", "v2")
                .replace("#{codepipeline.PipelineExecutionId}", "exec-1"),
        ))
        .unwrap();
        let plan = p.plan();
        assert_eq!(
            plan.snapshot_id,
            backup::snapshot_id("shop", "v2", Some("exec-1"))
        );
        assert_eq!(plan.keep, 5);
        for (raw, expected) in [
            (
                r#"{"application":"shop","version_label":"v"}"#,
                "missing field `db_instance`",
            ),
            (
                r#"{"db_instance":"9db","application":"shop","version_label":"v"}"#,
                "field `db_instance`",
            ),
            (
                r#"{"db_instance":"db","application":"shop","version_label":"v","keep":0}"#,
                "field `keep`",
            ),
            (
                r##"{"db_instance":"db","application":"shop","version_label":"#{Package.VersionLabel}"}"##,
                "field `version_label`",
            ),
            (
                r#"{"db_instance":"db","application":"shop","version_label":"v","snapshot":"x"}"#,
                "unknown field `snapshot`",
            ),
        ] {
            let e = parse::<Params>(Some(raw)).unwrap_err().to_string();
            assert!(e.contains(expected), "{raw}: {e}");
        }
    }
}
