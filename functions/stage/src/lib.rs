//! stage: launch the new ("blue") environment with the version package made, beside the live one, and
//! wait (with continuation tokens) until it is Ready and healthy. See `beanswap_core::stage`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use beanswap_core::beanstalk::{Beanstalk, HealthGate};
use beanswap_core::params::ApplicationName;
use beanswap_core::route53::Route53;
use beanswap_core::stage::{self, OnFailure, OptionSetting, Plan, Source, State};
use beanswap_core::{Action, ActionError, Job, Outcome, ParamsError, UserParameters};
use serde::Deserialize;

/// The output variables stage sets on success, for `#{Stage.<Name>}` in later actions.
pub const OUTPUT_VARIABLES: &[&str] = &[
    "EnvironmentName",
    "EnvironmentId",
    "Cname",
    "Url",
    "LiveEnvironmentName",
    "LiveUrl",
];

/// UserParameters of stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The Beanstalk application.
    pub application: ApplicationName,
    /// The version to launch: `#{Package.VersionLabel}`.
    pub version_label: String,
    /// The production CNAME prefix (`shop-prod`) or full CNAME: how the live environment is found.
    #[serde(default)]
    pub production_cname: Option<String>,
    /// Or the live environment's name, when production is not identified by a Beanstalk CNAME.
    #[serde(default)]
    pub production_environment: Option<String>,
    /// With `domain` (Route 53 swaps): the hosted zone of the domain production is served under. The
    /// environment its record points at is the live one (once the record exists); the first
    /// environment keeps the production CNAME after later swaps, so the CNAME alone would find it.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// The domain production is served under, with `hosted_zone_id`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Name template with `{app}`, `{version}`, `{id}` (default `{app}-{id}`).
    #[serde(default)]
    pub environment_name: Option<String>,
    /// For the first deployment (no live environment yet): one of these says what to create.
    #[serde(default)]
    pub solution_stack: Option<String>,
    #[serde(default)]
    pub platform_arn: Option<String>,
    /// A saved configuration; used instead of cloning when `clone_live` is false.
    #[serde(default)]
    pub template_name: Option<String>,
    /// Clone the live environment's configuration (default true).
    #[serde(default = "beanswap_core::params::yes")]
    pub clone_live: bool,
    /// Option settings applied on top.
    #[serde(default)]
    pub option_settings: Vec<OptionSetting>,
    /// Extra tags for the new environment.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `#{codepipeline.PipelineExecutionId}`, recorded as a tag.
    #[serde(default)]
    pub pipeline_execution: Option<String>,
    /// The least health to accept: `Green` (default) or `Yellow`.
    #[serde(default)]
    pub health: HealthGate,
    /// Give up after this long (default 30).
    #[serde(default = "thirty")]
    pub timeout_minutes: f64,
    /// `keep` (default) leaves a failed environment for inspection; `terminate` removes it.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// How long one invocation keeps polling before handing over (default 120 s: fewer hand-overs mean
    /// fewer job reports and no CodePipeline pause to react through; keep it well under
    /// the function's timeout).
    #[serde(default = "two_minutes")]
    pub poll_seconds: f64,
}

fn thirty() -> f64 {
    30.0
}
fn two_minutes() -> f64 {
    120.0
}

impl UserParameters for Params {
    const EXAMPLE: &'static str = r##"{"application":"shop","version_label":"#{Package.VersionLabel}","production_cname":"shop-prod","solution_stack":"64bit Amazon Linux 2023 v4.5.2 running Python 3.11"}"##;

    fn validate(&self) -> Result<(), ParamsError> {
        if !(1..=100).contains(&self.version_label.chars().count()) {
            return Err(ParamsError::field(
                "version_label",
                "must be 1 to 100 characters",
            ));
        }
        if self.version_label.contains("#{") {
            return Err(ParamsError::field(
                "version_label",
                format!(
                    "`{}` was not substituted: is the package action's namespace `Package`?",
                    self.version_label
                ),
            ));
        }
        beanswap_core::params::production_record(&self.hosted_zone_id, &self.domain)?;
        match (&self.production_cname, &self.production_environment) {
            (None, None) => {
                return Err(ParamsError::field(
                    "production_cname",
                    "set it (or `production_environment`) so the live environment is found by its CNAME, never guessed",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ParamsError::field(
                    "production_environment",
                    "give either `production_cname` or `production_environment`, not both",
                ))
            }
            (Some(c), None) => {
                let prefix = c.split('.').next().unwrap_or_default();
                if !(4..=63).contains(&prefix.len())
                    || !prefix.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                {
                    return Err(ParamsError::field(
                        "production_cname",
                        format!("`{c}` is not a CNAME prefix (4 to 63 letters, digits, hyphens) or a full CNAME"),
                    ));
                }
            }
            (None, Some(_)) => {}
        }
        let sources = [
            &self.solution_stack,
            &self.platform_arn,
            &self.template_name,
        ]
        .iter()
        .filter(|s| s.is_some())
        .count();
        if sources > 1 {
            return Err(ParamsError::field(
                "solution_stack",
                "give at most one of `solution_stack`, `platform_arn` and `template_name`",
            ));
        }
        if !(self.timeout_minutes > 0.0 && self.timeout_minutes <= 24.0 * 60.0) {
            return Err(ParamsError::field(
                "timeout_minutes",
                "must be more than 0 and at most 1440",
            ));
        }
        if !(self.poll_seconds >= 0.0 && self.poll_seconds <= 600.0) {
            return Err(ParamsError::field(
                "poll_seconds",
                "must be between 0 and 600",
            ));
        }
        if let Some(template) = &self.environment_name {
            if !template.contains("{id}") && !template.contains("{version}") {
                return Err(ParamsError::field(
                    "environment_name",
                    format!("`{template}` must contain {{id}} or {{version}}, or every deployment would reuse one name"),
                ));
            }
        }
        let name = self.plan_name();
        if !stage::valid_environment_name(&name) {
            return Err(ParamsError::field(
                "environment_name",
                format!(
                    "gives `{name}`, which Beanstalk refuses (4 to 40 letters, digits and hyphens)"
                ),
            ));
        }
        for (i, o) in self.option_settings.iter().enumerate() {
            if o.namespace.is_empty() || o.option_name.is_empty() {
                return Err(ParamsError::field(
                    format!("option_settings[{i}]"),
                    "needs a namespace and an option_name",
                ));
            }
        }
        Ok(())
    }
}

impl Params {
    fn plan_name(&self) -> String {
        stage::environment_name(
            self.environment_name.as_deref().unwrap_or("{app}-{id}"),
            &self.application,
            &self.version_label,
        )
    }

    pub fn plan(&self) -> Plan {
        let first_source = self
            .template_name
            .clone()
            .map(Source::Template)
            .or_else(|| self.solution_stack.clone().map(Source::SolutionStack))
            .or_else(|| self.platform_arn.clone().map(Source::PlatformArn));
        Plan {
            application: self.application.to_string(),
            version_label: self.version_label.clone(),
            production_cname: self.production_cname.clone(),
            production_environment: self.production_environment.clone(),
            production_record: beanswap_core::params::production_record(
                &self.hosted_zone_id,
                &self.domain,
            )
            .unwrap_or_default(),
            environment_name: self.plan_name(),
            first_source,
            clone_live: self.clone_live,
            option_settings: self.option_settings.clone(),
            tags: self.tags.clone(),
            pipeline_execution: self.pipeline_execution.clone(),
            health: self.health,
            timeout: Duration::from_secs_f64(self.timeout_minutes * 60.0),
            on_failure: self.on_failure,
            poll_budget: Duration::from_secs_f64(self.poll_seconds),
        }
    }
}

pub struct Stage {
    beanstalk: Beanstalk,
    route53: Route53,
}

impl Stage {
    pub fn new(aws: &SdkConfig) -> Self {
        Stage {
            beanstalk: Beanstalk::new(aws),
            route53: Route53::new(aws),
        }
    }
}

impl Action for Stage {
    type Params = Params;
    type State = State;

    async fn run(
        &self,
        job: &Job,
        params: Params,
        state: Option<State>,
    ) -> Result<Outcome<State>, ActionError> {
        let mut plan = params.plan();
        // Never poll into Lambda's timeout: hand back a token while there is time to report it (a
        // function deployed with a shorter timeout than `poll_seconds` assumes still works).
        if let Some(left) = job.waiting_budget() {
            plan.poll_budget = plan.poll_budget.min(left);
        }
        stage::run(&self.beanstalk, &self.route53, &plan, state).await
    }
}
