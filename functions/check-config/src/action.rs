use aws_config::SdkConfig;
use beanswap_core::artifacts::{ArtifactStore, MAX_ARTIFACT_BYTES};
use beanswap_core::params::ApplicationName;
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

/// The output variables a successful run sets (later actions read them as `#{Namespace.Name}`).
pub const OUTPUT_VARIABLES: &[&str] = &["Application", "ArtifactEntries"];

/// UserParameters of check-config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Beanstalk application the pipeline deploys; checked against Beanstalk's naming rules.
    pub application: ApplicationName,
    /// Which input artifact to open; the only one when left out.
    #[serde(default)]
    pub artifact: Option<String>,
    /// Fail on purpose with this message: lets a pipeline's failure path be tested end to end.
    #[serde(default)]
    pub fail_with: Option<String>,
    /// Panic on purpose: proves a crash still reaches the pipeline as a failure. Test builds only
    /// (feature `test-panic`); a deployed function refuses it as an unknown field.
    #[cfg(feature = "test-panic")]
    #[serde(default)]
    pub panic: bool,
    /// The first environment's Auto Scaling settings, checked here because CloudFormation's template
    /// Rules cannot compare numbers.
    #[serde(default)]
    pub scaling: Option<Scaling>,
}

/// Auto Scaling bounds and CPU thresholds as the pipeline template sets them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub min_instances: u32,
    /// At least `min_instances`.
    pub max_instances: u32,
    /// Add an instance above this average CPU.
    pub scale_up_cpu_percent: u32,
    /// Remove one below this; less than `scale_up_cpu_percent`, or the group would scale both ways at once.
    pub scale_down_cpu_percent: u32,
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r#"{"application":"shop"}"#;

    fn validate(&self) -> Result<(), ParamsError> {
        if let Some(s) = &self.scaling {
            if s.max_instances < s.min_instances {
                return Err(ParamsError::field("scaling.max_instances", format!(
                        "{} is less than scaling.min_instances ({}): the Auto Scaling maximum must be at least its minimum",
                        s.max_instances, s.min_instances
                    )));
            }
            if s.scale_down_cpu_percent >= s.scale_up_cpu_percent {
                return Err(ParamsError::field("scaling.scale_down_cpu_percent", format!(
                        "{} is not below scaling.scale_up_cpu_percent ({}): instances would be added and removed at the same load",
                        s.scale_down_cpu_percent, s.scale_up_cpu_percent
                    )));
            }
        }
        Ok(())
    }
}

pub struct CheckConfig {
    aws: SdkConfig,
    max_artifact_bytes: u64,
}

impl CheckConfig {
    pub fn new(aws: &SdkConfig) -> Self {
        CheckConfig {
            aws: aws.clone(),
            max_artifact_bytes: MAX_ARTIFACT_BYTES,
        }
    }

    /// Refuses artifacts larger than `max` instead of Elastic Beanstalk's 512 MB: lets a test reach
    /// the limit without a 512 MB object.
    pub fn with_max_artifact_bytes(mut self, max: u64) -> Self {
        self.max_artifact_bytes = max;
        self
    }
}

impl Action for CheckConfig {
    type Params = Params;
    type State = ();

    async fn run(
        &self,
        job: &Job,
        params: Params,
        _state: Option<()>,
    ) -> Result<Outcome<()>, ActionError> {
        #[cfg(feature = "test-panic")]
        if params.panic {
            panic!("check-config was asked to panic (UserParameters `panic`: true)");
        }
        if let Some(message) = params.fail_with {
            return Err(ActionError::failed(message));
        }
        let mut summary = format!(
            "UserParameters are valid for application `{}`",
            params.application
        );
        let mut outcome_files = 0;
        if !job.input_artifacts.is_empty() {
            let artifact = job
                .input_artifact(params.artifact.as_deref())
                .ok_or_else(|| {
                    let names: Vec<&str> = job
                        .input_artifacts
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect();
                    ActionError::config(format!(
                    "UserParameters field `artifact`: name one of the input artifacts {names:?}"
                ))
                })?;
            // Streamed to a temporary file and opened from there: only the zip's central directory is
            // in memory, so a build output larger than the function's memory is checked all the same.
            let zip = ArtifactStore::for_job(&self.aws, job)
                .read_zip(artifact, self.max_artifact_bytes)
                .await?;
            outcome_files = zip.len();
            summary.push_str(&format!(
                "; artifact `{}` is a zip with {} entries",
                artifact.name,
                zip.len()
            ));
        }
        Ok(Outcome::succeeded(summary)
            .with_variable("Application", params.application)
            .with_variable("ArtifactEntries", outcome_files.to_string()))
    }
}
