//! Runs the pipeline that pipeline-template.json defines, on one machine: the same stages and actions,
//! the same function binaries under a Lambda Runtime API, `#{Namespace.Var}` substitution, continuation
//! tokens re-invoked until done, artifacts in (local) S3, and Beanstalk on local-aws.
//!
//! This file runs the stages in order (conditions, rollbacks, the report's spans); `actions` runs each
//! action, `ui` shows the run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;
use local_aws::lambda::Function;
use serde_json::json;

use crate::local::LocalCloud;
use crate::report::{self, Span};
use beanswap_core::alarms::AlarmsApi;

use crate::conditions::{ConditionResult, Rule};
use crate::template::{ActionDef, Pipeline, StageDef};

mod actions;
mod ui;

pub use ui::{decide, later_events, read_line, Ui, Wait};

/// The bucket that plays the pipeline's artifact store.
pub const ARTIFACT_BUCKET: &str = "beanswap-local-artifacts";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{stage} / {action} failed: {message}")]
    Action {
        stage: String,
        action: String,
        message: String,
    },
    #[error("{stage} was not entered: {message}")]
    Entry { stage: String, message: String },
    #[error("{stage} succeeded, but its success condition failed: {message}")]
    Success { stage: String, message: String },
    #[error("{0}")]
    Setup(String),
}

/// What a stage rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// The stage ran again with the previous successful execution's variables, and succeeded.
    Done,
    Failed(String),
    Impossible(String),
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rollback::Done => f.write_str("rolled back: the stage ran again with the previous successful execution's variables and succeeded"),
            Rollback::Failed(e) => write!(f, "the rollback failed: {e}"),
            Rollback::Impossible(why) => write!(f, "not rolled back: {why}"),
        }
    }
}

/// How the manual approval is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// `--approve`: approve without asking.
    Auto,
    /// Ask: a line on stdin, `y` to approve (a terminal, or a pipe from a script).
    Ask,
}

pub struct RunOptions {
    pub pipeline: Pipeline,
    pub source: PathBuf,
    /// Where the function binaries are (the CLI's own target directory).
    pub bin_dir: PathBuf,
    pub approval: Approval,
    pub json: bool,
    /// How long to wait before re-invoking an action that answered with a continuation token.
    pub continuation_pause: Duration,
    /// Give up on one action after this long.
    pub action_timeout: Duration,
    /// The custom domain production is served on, if any (resolved to the router too).
    pub domain: Option<String>,
    /// Where each function's own log (its JSON lines) is written.
    pub log_dir: PathBuf,
    /// How long an environment takes to launch here, when known: what stage's wait is expected to take.
    pub launch_delay: Option<Duration>,
    /// The time deployment windows are judged at (a fake clock for tests); now when `None`.
    pub now: Option<SystemTime>,
    /// The previous successful execution's variables: what a stage rollback runs with.
    pub previous: Option<BTreeMap<String, String>>,
    /// Who each function is (its role's access key) when the local cloud enforces the stack's
    /// policies; none: every process signs as the administrator and nothing is checked.
    pub identities: Option<crate::template::RunIdentities>,
}

/// What one action did.
#[derive(Debug, Clone)]
pub struct ActionRun {
    pub stage: String,
    pub action: String,
    pub ok: bool,
    pub summary: String,
    pub invocations: usize,
    pub start: Duration,
    pub end: Duration,
    /// The progress lines its reports added (what it waited on, a weighted step baking...), each when it
    /// was reported.
    pub lines: Vec<(Duration, String)>,
    /// The continuation tokens it handed over (its state between invocations), each when reported:
    /// what the report reads a swap's bakes from.
    pub states: Vec<(Duration, String)>,
}

#[derive(Debug, Default)]
pub struct RunResult {
    pub actions: Vec<ActionRun>,
    /// Beanstalk's events as the run saw them, when it saw them.
    pub events: Vec<report::Event>,
    /// Where the events shown end: [`later_events`] goes on from here.
    pub event_cursor: u64,
    /// `Namespace.Variable` -> value, everything the run produced.
    pub variables: BTreeMap<String, String>,
    pub failure: Option<PipelineError>,
    /// Stages an entry condition skipped, and why.
    pub skipped: Vec<(String, String)>,
    /// The stage rollback a failure (or a success condition) engaged.
    pub rollback: Option<Rollback>,
}

impl RunResult {
    pub fn spans(&self) -> Vec<Span> {
        self.actions
            .iter()
            .map(|a| Span {
                name: format!("{} / {}", a.stage, a.action),
                lane: a.action.clone(),
                start: a.start,
                end: a.end,
                ok: a.ok,
                invocations: a.invocations,
                lines: a.lines.clone(),
                states: a.states.clone(),
                summary: a.summary.clone(),
            })
            .collect()
    }
}

struct Runner<'a> {
    cloud: &'a LocalCloud,
    options: &'a RunOptions,
    ui: &'a Ui,
    s3: aws_sdk_s3::Client,
    functions: BTreeMap<String, Function>,
    /// Artifact name -> object key in [`ARTIFACT_BUCKET`].
    artifacts: BTreeMap<String, String>,
    variables: BTreeMap<String, String>,
    revision: String,
    execution: String,
    /// The last Beanstalk event shown.
    event_cursor: std::cell::Cell<u64>,
    /// Every Beanstalk event shown, when it was seen.
    events: std::cell::RefCell<Vec<report::Event>>,
    epoch: Instant,
    /// Invocations of the action under way (kept for the report when it fails).
    invocations: std::cell::Cell<usize>,
    /// The continuation tokens of the action under way, each when reported.
    states: std::cell::RefCell<Vec<(Duration, String)>>,
}

/// Runs every stage in order; stops at the first failure with the action's message.
pub async fn run(cloud: &LocalCloud, options: &RunOptions, ui: &Ui, epoch: Instant) -> RunResult {
    let config = cloud.sdk_config().await;
    let s3 = cloud.s3(&config);
    let mut result = RunResult::default();
    if let Err(e) = ensure_bucket(&s3).await {
        result.failure = Some(e);
        return result;
    }
    let execution = uuid::Uuid::new_v4().to_string();
    let mut runner = Runner {
        cloud,
        options,
        ui,
        s3,
        functions: BTreeMap::new(),
        artifacts: BTreeMap::new(),
        variables: [(
            "codepipeline.PipelineExecutionId".to_string(),
            execution.clone(),
        )]
        .into(),
        revision: String::new(),
        event_cursor: std::cell::Cell::new(cloud.event_cursor().await),
        events: Default::default(),
        epoch,
        invocations: Default::default(),
        states: Default::default(),
        execution,
    };
    ui.line(&format!(
        "pipeline {} (execution {})",
        options.pipeline.name, runner.execution
    ));
    for stage in &options.pipeline.stages {
        // Entry conditions: every rule must pass, else FAIL or SKIP (CodePipeline's stage conditions).
        match runner.entry(stage).await {
            Ok(None) => {}
            Ok(Some(skipped)) => {
                ui.line(&format!("↷ {} skipped: {skipped}", stage.name));
                ui.event(json!({"event": "stage-skipped", "stage": stage.name, "reason": skipped}));
                result.skipped.push((stage.name.clone(), skipped));
                continue;
            }
            Err(message) => {
                ui.line(&format!("✘ {} not entered: {message}", stage.name));
                result.failure = Some(PipelineError::Entry {
                    stage: stage.name.clone(),
                    message,
                });
                break;
            }
        }
        let failure = match runner.stage(stage, &mut result, "").await {
            Err(failure) => Some(failure),
            Ok(()) => runner
                .success_check(stage)
                .await
                .map(|message| PipelineError::Success {
                    stage: stage.name.clone(),
                    message,
                }),
        };
        let Some(failure) = failure else { continue };
        let roll_back = match &failure {
            PipelineError::Success { .. } => true,
            _ => stage.conditions.rollback_on_failure,
        };
        if roll_back {
            let rolled = runner.roll_back(stage, &mut result).await;
            result.rollback = Some(rolled);
        }
        result.failure = Some(failure);
        break;
    }
    result.events = runner.events.take();
    result.event_cursor = runner.event_cursor.get();
    result.variables = runner.variables;
    result
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

async fn ensure_bucket(s3: &aws_sdk_s3::Client) -> Result<(), PipelineError> {
    if s3
        .head_bucket()
        .bucket(ARTIFACT_BUCKET)
        .send()
        .await
        .is_ok()
    {
        return Ok(());
    }
    s3.create_bucket()
        .bucket(ARTIFACT_BUCKET)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            PipelineError::Setup(format!(
                "create the artifact bucket: {}",
                beanswap_core::aws_error::describe(&e).1
            ))
        })
}

impl Runner<'_> {
    /// Runs one action: `(summary, invocations)` or the failure message; its progress lines, each with
    /// when it came, go to `lines`.
    /// Runs the stage's actions in order; the first failure ends it. `suffix` names a rollback's re-run
    /// in the report.
    async fn stage(
        &mut self,
        stage: &StageDef,
        result: &mut RunResult,
        suffix: &str,
    ) -> Result<(), PipelineError> {
        let (ui, epoch) = (self.ui, self.epoch);
        for action in &stage.actions {
            let start = epoch.elapsed();
            let stage_name = format!("{}{suffix}", stage.name);
            let label = format!("{stage_name} / {}", action.name);
            let spinner = ui.spinner(&label);
            ui.event(
                json!({"event": "action-started", "stage": stage_name, "action": action.name}),
            );
            let mut lines = vec![];
            let outcome = self.action(action, &spinner, &mut lines).await;
            spinner.finish_and_clear();
            let end = epoch.elapsed();
            let took = end.saturating_sub(start).as_secs_f64();
            match outcome {
                Ok((summary, invocations)) => {
                    ui.line(&format!("✔ {label} ({took:.1}s) {}", first_line(&summary)));
                    ui.event(json!({"event": "action-succeeded", "stage": stage_name, "action": action.name, "seconds": took, "summary": summary, "invocations": invocations}));
                    result.actions.push(ActionRun {
                        stage: stage_name,
                        action: action.name.clone(),
                        ok: true,
                        summary,
                        invocations,
                        start,
                        end,
                        lines,
                        states: self.states.take(),
                    });
                }
                Err(message) => {
                    ui.line(&format!("✘ {label} ({took:.1}s)\n{message}"));
                    ui.event(json!({"event": "action-failed", "stage": stage_name, "action": action.name, "seconds": took, "message": message}));
                    result.actions.push(ActionRun {
                        stage: stage_name.clone(),
                        action: action.name.clone(),
                        ok: false,
                        summary: message.clone(),
                        invocations: self.invocations.get(),
                        start,
                        end,
                        lines,
                        states: self.states.take(),
                    });
                    return Err(PipelineError::Action {
                        stage: stage_name,
                        action: action.name.clone(),
                        message,
                    });
                }
            }
        }
        Ok(())
    }

    /// The stage's entry conditions: `Ok(None)` to enter, `Ok(Some(why))` to skip it, `Err(why)` to fail.
    async fn entry(&self, stage: &StageDef) -> Result<Option<String>, String> {
        for condition in &stage.conditions.before_entry {
            if let Some(failed) = self.failing_rule(&condition.rules).await? {
                return match condition.result {
                    ConditionResult::Skip => Ok(Some(failed)),
                    _ => Err(failed),
                };
            }
        }
        Ok(None)
    }

    /// After the stage succeeded: why a success condition engages its ROLLBACK, if one does.
    async fn success_check(&self, stage: &StageDef) -> Option<String> {
        for condition in &stage.conditions.on_success {
            match self.failing_rule(&condition.rules).await {
                Ok(None) => {}
                Ok(Some(failed)) => return Some(failed),
                Err(e) => return Some(e),
            }
        }
        None
    }

    /// The first rule that does not pass, said as CodePipeline's console would; `Err` when a rule
    /// cannot be checked (never a pass).
    async fn failing_rule(&self, rules: &[Rule]) -> Result<Option<String>, String> {
        let now = self.options.now.unwrap_or_else(SystemTime::now);
        for rule in rules {
            match rule {
                Rule::DeploymentWindow { name, cron } => {
                    if !cron.allows(now) {
                        return Ok(Some(format!(
                            "rule {name}: {} is outside the deployment window `{}` (UTC)",
                            humantime::format_rfc3339_seconds(now),
                            cron.text()
                        )));
                    }
                }
                Rule::CloudWatchAlarm { name, alarm } => {
                    let config = self.cloud.sdk_config().await;
                    let found = self
                        .cloud
                        .cloudwatch(&config)
                        .alarms(std::slice::from_ref(alarm))
                        .await
                        .map_err(|e| format!("rule {name}: {e}"))?;
                    match found.first() {
                        None => {
                            return Err(format!(
                                "rule {name}: CloudWatch alarm `{alarm}` does not exist"
                            ))
                        }
                        Some(a) if a.state == beanswap_core::alarms::AlarmState::Alarm => {
                            return Ok(Some(format!(
                                "rule {name}: CloudWatch alarm `{alarm}` is in ALARM ({})",
                                a.reason
                            )))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(None)
    }

    /// A stage rollback: the stage's actions again, with the variables of the previous successful
    /// execution (CodePipeline re-runs the stage with that execution's artifacts and variables).
    async fn roll_back(&mut self, stage: &StageDef, result: &mut RunResult) -> Rollback {
        let Some(previous) = self.options.previous.clone() else {
            return Rollback::Impossible(
                "no earlier execution succeeded, so there is nothing to roll back to".into(),
            );
        };
        if let Some(action) = stage.actions.iter().find(|a| !a.input_artifacts.is_empty()) {
            return Rollback::Impossible(format!(
                "{} takes input artifacts, and the local run keeps no earlier execution's artifacts",
                action.name
            ));
        }
        self.ui.line(&format!(
            "↺ rolling {} back to the previous successful execution's variables",
            stage.name
        ));
        let current = std::mem::replace(&mut self.variables, previous);
        let outcome = self.stage(stage, result, " (rollback)").await;
        self.variables = current;
        match outcome {
            Ok(()) => Rollback::Done,
            Err(e) => Rollback::Failed(e.to_string()),
        }
    }

    async fn action(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
        lines: &mut Vec<(Duration, String)>,
    ) -> Result<(String, usize), String> {
        self.invocations.set(0);
        match (action.category.as_str(), action.provider.as_str()) {
            ("Source", _) => self.source(action).await.map(|s| (s, 1)),
            ("Build", "CodeBuild") => self.build(action, spinner).await.map(|s| (s, 1)),
            ("Invoke", "Lambda") => self.lambda(action, spinner, lines).await,
            ("Approval", "Manual") => self.approve(action, spinner).await.map(|s| (s, 0)),
            (category, provider) => Err(format!(
                "the local run does not support {category}/{provider} actions"
            )),
        }
    }
}
