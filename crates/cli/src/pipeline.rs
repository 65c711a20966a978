//! Runs the pipeline that pipeline-template.json defines, on one machine: the same stages and actions,
//! the same function binaries under a Lambda Runtime API, `#{Namespace.Var}` substitution, continuation
//! tokens re-invoked until done, artifacts in (local) S3, and Beanstalk on local-aws.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use local_aws::lambda::{Function, Invocation};
use serde_json::{json, Value};

use crate::build;
use crate::local::LocalCloud;
use crate::report::{self, Span};
use beanswap_core::alarms::AlarmsApi;

use crate::conditions::{ConditionResult, Rule};
use crate::template::{self, ActionDef, Pipeline, StageDef};

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
                summary: a.summary.clone(),
            })
            .collect()
    }
}

/// Prints progress for a person (spinners, lines) or a machine (`--json`: one JSON object per line).
pub struct Ui {
    pub json: bool,
}

impl Ui {
    pub fn line(&self, text: &str) {
        if self.json {
            println!("{}", json!({"event": "log", "message": text}));
        } else {
            eprintln!("{text}");
        }
    }

    pub fn event(&self, value: Value) {
        if self.json {
            println!("{value}");
        }
    }

    fn spinner(&self, label: &str) -> ProgressBar {
        let bar = if self.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        bar.set_style(spinner_style());
        bar.set_prefix(label.to_string());
        bar
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A long wait that reports how far it is: the job's percentComplete as the bar, the time so far and,
/// when known, the time it is expected to take.
pub struct Wait {
    pub percent: u8,
    pub elapsed: Duration,
    pub expected: Option<Duration>,
    /// What it is waiting for (the job's latest summary line).
    pub waiting_for: String,
}

impl Wait {
    /// The line beside the bar: `12% · 3s of ~2m expected (launch delay) · waiting for ...`.
    pub fn line(&self) -> String {
        let secs = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        let expected = match self.expected {
            Some(e) if self.elapsed > e => format!(
                " of ~{} expected (launch delay), {} over",
                secs(e),
                secs(self.elapsed - e)
            ),
            Some(e) => format!(" of ~{} expected (launch delay)", secs(e)),
            None => String::new(),
        };
        format!(
            "{}% · {}{expected} · waiting for: {}",
            self.percent.min(100),
            secs(self.elapsed),
            self.waiting_for
        )
    }

    /// The wait for `--json`.
    pub fn event(&self, action: &str) -> Value {
        json!({
            "event": "waiting",
            "action": action,
            "percent": self.percent.min(100),
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "expected_seconds": self.expected.map(|e| e.as_secs_f64()),
            "waiting_for": self.waiting_for,
        })
    }

    /// Turns `bar` into a progress bar at this wait's percent, saying what it waits for.
    pub fn show(&self, bar: &ProgressBar) {
        if bar.length() != Some(100) {
            bar.set_length(100);
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{bar:24}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
        }
        bar.set_position(u64::from(self.percent.min(100)));
        bar.set_message(self.line());
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

/// Shows and keeps the Beanstalk events that came after `result`'s run ended: a termination retire
/// began finishes later, and a running local-aws is asked at most once a second, so the last action's
/// last events can come after it.
pub async fn later_events(cloud: &LocalCloud, ui: &Ui, result: &mut RunResult, epoch: Instant) {
    let events = std::cell::RefCell::new(std::mem::take(&mut result.events));
    let cursor = std::cell::Cell::new(result.event_cursor);
    let seen = Seen {
        cursor: &cursor,
        events: &events,
        epoch,
    };
    show_events(cloud, ui, &seen, &ProgressBar::hidden()).await;
    result.events = events.take();
    result.event_cursor = cursor.get();
}

/// Reads one line from `input` on a thread of its own: a read blocked on the terminal must not hold up
/// the exit on Ctrl-C, as a runtime's blocking task would. `None` at the end of the input.
pub async fn read_line<R: std::io::BufRead + Send + 'static>(
    mut input: R,
) -> Result<Option<String>, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = input.read_line(&mut line).map(|n| (n > 0).then_some(line));
        let _ = answer.send(read);
    });
    answered
        .await
        .map_err(|e| format!("manual approval: {e}"))?
        .map_err(|e| format!("manual approval: reading the answer: {e}"))
}

/// The manual approval's outcome from the line typed at its prompt (`None`: the input ended).
pub fn decide(answer: Option<&str>) -> Result<String, String> {
    match answer.map(str::trim) {
        None => Err(
            "manual approval: no answer (the input ended); run with --approve to approve".into(),
        ),
        Some("y" | "Y" | "yes") => Ok("approved".into()),
        Some(_) => Err("rejected at the manual approval".into()),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Beanstalk's events as they are shown: where the last one shown is, and each one with when it was
/// seen, for the report.
struct Seen<'a> {
    cursor: &'a std::cell::Cell<u64>,
    events: &'a std::cell::RefCell<Vec<report::Event>>,
    epoch: Instant,
}

/// Prints Beanstalk events recorded since the cursor (read from an in-process local-aws directly: no API
/// call) and keeps them for the report. The last one, `environment: message`, if any came.
async fn show_events(
    cloud: &LocalCloud,
    ui: &Ui,
    seen: &Seen<'_>,
    spinner: &ProgressBar,
) -> Option<String> {
    let mut last = None;
    for (sequence, severity, environment, message) in cloud.events_after(seen.cursor.get()).await {
        last = Some(format!("{environment}: {message}"));
        seen.cursor.set(sequence);
        spinner.suspend(|| ui.line(&format!("    {environment}: {severity} {message}")));
        ui.event(json!({"event": "beanstalk", "environment": environment, "severity": severity, "message": message}));
        seen.events.borrow_mut().push(report::Event {
            at: seen.epoch.elapsed(),
            severity,
            environment,
            message,
        });
    }
    last
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

    async fn put_artifact(&mut self, name: &str, zip: Vec<u8>) -> Result<(), String> {
        let key = format!(
            "{}/{}/{}",
            self.options
                .pipeline
                .name
                .chars()
                .take(20)
                .collect::<String>(),
            name,
            &uuid::Uuid::new_v4().simple().to_string()[..7]
        );
        self.s3
            .put_object()
            .bucket(ARTIFACT_BUCKET)
            .key(&key)
            .body(zip.into())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "upload artifact {name}: {}",
                    beanswap_core::aws_error::describe(&e).1
                )
            })?;
        self.artifacts.insert(name.to_string(), key);
        Ok(())
    }

    async fn get_artifact(&self, name: &str) -> Result<Vec<u8>, String> {
        let key = self.artifacts.get(name).ok_or_else(|| {
            format!("input artifact {name} was not produced by an earlier action")
        })?;
        let object = self
            .s3
            .get_object()
            .bucket(ARTIFACT_BUCKET)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "download artifact {name}: {}",
                    beanswap_core::aws_error::describe(&e).1
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| format!("download artifact {name}: {e}"))?;
        Ok(bytes.into_bytes().to_vec())
    }

    fn set_variables(
        &mut self,
        namespace: Option<&str>,
        values: impl IntoIterator<Item = (String, String)>,
    ) {
        if let Some(ns) = namespace {
            for (k, v) in values {
                self.variables.insert(format!("{ns}.{k}"), v);
            }
        }
    }

    async fn source(&mut self, action: &ActionDef) -> Result<String, String> {
        let source = build::source(&self.options.source).map_err(|e| e.to_string())?;
        self.revision = source.commit.clone();
        let name = action
            .output_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Source".into());
        let size = source.zip.len();
        self.put_artifact(&name, source.zip).await?;
        let repository = action
            .configuration
            .get("FullRepositoryId")
            .map(template::text)
            .unwrap_or_default();
        self.set_variables(
            action.namespace.as_deref(),
            [
                ("CommitId".to_string(), source.commit.clone()),
                ("BranchName".to_string(), source.branch.clone()),
                ("FullRepositoryId".to_string(), repository),
                ("CommitMessage".to_string(), "local run".to_string()),
                (
                    "AuthorDate".to_string(),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                ),
                (
                    "ConnectionArn".to_string(),
                    "arn:aws:codeconnections:local".to_string(),
                ),
            ],
        );
        Ok(format!(
            "{} at {} ({} KiB)",
            self.options.source.display(),
            &source.commit[..12.min(source.commit.len())],
            size / 1024
        ))
    }

    async fn build(&mut self, action: &ActionDef, spinner: &ProgressBar) -> Result<String, String> {
        let input = action
            .input_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Source".into());
        let zip = self.get_artifact(&input).await?;
        let dir = tempfile::Builder::new()
            .prefix("beanswap-build-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        build::unpack(&zip, dir.path()).map_err(|e| e.to_string())?;
        spinner.set_message("waiting for buildspec.yml's commands (the CodeBuild stand-in)");
        let env = vec![
            (
                "CODEBUILD_RESOLVED_SOURCE_VERSION".to_string(),
                self.revision.clone(),
            ),
            (
                "CODEBUILD_SOURCE_VERSION".to_string(),
                self.revision.clone(),
            ),
            (
                "CODEBUILD_BUILD_ID".to_string(),
                format!("local:{}", self.execution),
            ),
            (
                "CODEBUILD_SRC_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            ("CODEBUILD_BUILD_SUCCEEDING".to_string(), "1".to_string()),
        ];
        let built = build::build(dir.path(), "buildspec.yml", &env)
            .await
            .map_err(|e| e.to_string())?;
        let name = action
            .output_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Build".into());
        self.put_artifact(&name, built.zip).await?;
        Ok(format!(
            "buildspec.yml ran; artifact {name} has {} files",
            built.files
        ))
    }

    async fn approve(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
    ) -> Result<String, String> {
        let note = action
            .configuration
            .get("CustomData")
            .map(|v| {
                template::substitute_variables(&template::text(v), &self.variables)
                    .unwrap_or_else(|_| template::text(v))
            })
            .unwrap_or_default();
        match self.options.approval {
            Approval::Auto => Ok(format!("approved (--approve). {note}")),
            Approval::Ask => {
                spinner.set_message("waiting for your answer (y and Enter to approve)");
                spinner.suspend(|| eprintln!("{note}\nApprove {}? [y/N] ", action.name));
                self.ui.event(
                    json!({"event": "approval-waiting", "action": action.name, "note": note}),
                );
                let answer = read_line(std::io::BufReader::new(std::io::stdin())).await?;
                decide(answer.as_deref())
            }
        }
    }

    async fn lambda(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
        lines: &mut Vec<(Duration, String)>,
    ) -> Result<(String, usize), String> {
        let binary_name = action
            .function
            .clone()
            .ok_or("the action has no FunctionName")?;
        let binary = self.options.bin_dir.join(&binary_name);
        if !binary.exists() {
            return Err(format!(
                "no function binary {}; build it: cargo build -p {binary_name}",
                binary.display()
            ));
        }
        if !self.functions.contains_key(&binary_name) {
            let mut env: Vec<(&str, String)> = self.cloud.env();
            // Environment CNAMEs (and a custom domain) reach local-aws's router, as DNS would send
            // them to the load balancer.
            let router = self.cloud.aws.router_addr();
            let mut rules = vec![format!("*.elasticbeanstalk.com={router}")];
            if let Some(domain) = &self.options.domain {
                rules.push(format!("{domain}={router}"));
            }
            env.push((
                beanswap_core::http_check::engine::RESOLVE_ENV,
                rules.join(","),
            ));
            // Each function calls AWS as its own role: an access key that names it. One the stack
            // gives no role gets a key that names none, and every call it makes is refused.
            if let Some(ids) = &self.options.identities {
                let key = ids
                    .function_keys
                    .get(&binary_name)
                    .cloned()
                    .unwrap_or_else(|| crate::template::NO_ROLE_KEY.to_string());
                env.push(("AWS_ACCESS_KEY_ID", key));
            }
            let log = self.options.log_dir.join(format!("{binary_name}.log"));
            let mut f = Function::start_logging_to(&binary, &env, Some(&log))
                .await
                .map_err(|e| e.to_string())?;
            if let Some(seconds) = action.function_timeout {
                f.timeout = Duration::from_secs(seconds);
            }
            self.functions.insert(binary_name.clone(), f);
        }
        let raw = action
            .configuration
            .get("UserParameters")
            .map(template::text)
            .unwrap_or_default();
        let user_parameters = template::substitute_variables(&raw, &self.variables)?;
        let location = |key: &str| json!({"type": "S3", "s3Location": {"bucketName": ARTIFACT_BUCKET, "objectKey": key}});
        let mut inputs = vec![];
        for name in &action.input_artifacts {
            let key = self.artifacts.get(name).ok_or_else(|| {
                format!("input artifact {name} was not produced by an earlier action")
            })?;
            inputs
                .push(json!({"name": name, "revision": self.revision, "location": location(key)}));
        }
        let mut outputs = vec![];
        for name in &action.output_artifacts {
            let key = format!(
                "{}/{}/{}",
                self.options
                    .pipeline
                    .name
                    .chars()
                    .take(20)
                    .collect::<String>(),
                name,
                &uuid::Uuid::new_v4().simple().to_string()[..7]
            );
            outputs.push(json!({"name": name, "revision": null, "location": location(&key)}));
            self.artifacts.insert(name.clone(), key);
        }
        // CodePipeline's artifact credentials are its own role's.
        let artifact_key = self
            .options
            .identities
            .as_ref()
            .and_then(|i| i.artifact_key.clone())
            .unwrap_or_else(|| beanswap_iam::identity::ADMIN_KEY.to_string());
        let started = Instant::now();
        let mut token: Option<String> = None;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        // Stage waits for a launch, and shows how far it is from the start: the local cloud's launch delay
        // says how long that should take. Other actions show a bar once their job reports a percentage.
        let mut waiting: Option<Wait> = (binary_name == "stage").then(|| Wait {
            percent: 0,
            elapsed: Duration::ZERO,
            expected: self.options.launch_delay,
            waiting_for: format!("{binary_name}'s first report"),
        });
        if let Some(wait) = &waiting {
            wait.show(spinner);
            self.ui.event(wait.event(&action.name));
        }
        for invocation in 1.. {
            self.invocations.set(invocation);
            match &mut waiting {
                Some(wait) => {
                    wait.elapsed = started.elapsed();
                    wait.show(spinner);
                }
                None => spinner.set_message(format!(
                    "waiting for {binary_name}'s answer (invocation {invocation})"
                )),
            }
            let job_id = uuid::Uuid::new_v4().to_string();
            let mut data = json!({
                "actionConfiguration": {"configuration": {"FunctionName": binary_name, "UserParameters": user_parameters}},
                "inputArtifacts": inputs,
                "outputArtifacts": outputs,
                "artifactCredentials": {"accessKeyId": artifact_key, "secretAccessKey": "local", "sessionToken": "local", "expirationTime": 4102444800000u64}
            });
            if let Some(t) = &token {
                data["continuationToken"] = json!(t);
            }
            let event = json!({"CodePipeline.job": {"id": job_id, "accountId": template::ACCOUNT, "data": data}});
            let answer = {
                let (cloud, ui) = (self.cloud, self.ui);
                let seen_events = Seen {
                    cursor: &self.event_cursor,
                    events: &self.events,
                    epoch: self.epoch,
                };
                let function = self
                    .functions
                    .get_mut(&binary_name)
                    .ok_or("function not started")?;
                let invoked = function.invoke(event);
                tokio::pin!(invoked);
                // While the function works, show Beanstalk's events as they happen.
                let answer = loop {
                    tokio::select! {
                        r = &mut invoked => break r,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            let latest = show_events(cloud, ui, &seen_events, spinner).await;
                            if let Some(wait) = &mut waiting {
                                wait.elapsed = started.elapsed();
                                if let Some(latest) = latest {
                                    wait.waiting_for = latest;
                                }
                                wait.show(spinner);
                            }
                        }
                    }
                };
                show_events(cloud, ui, &seen_events, spinner).await;
                answer
            };
            match answer.map_err(|e| e.to_string())? {
                Invocation::Response(_) => {}
                Invocation::Error(e) => {
                    return Err(format!("the function's invocation failed: {e}"))
                }
            }
            let result = self
                .cloud
                .job_result(&job_id)
                .await?
                .ok_or_else(|| format!("{binary_name} reported nothing for job {job_id}"))?;
            let request = &result.request;
            if result.operation == "PutJobFailureResult" {
                // With its type, as the console shows it: a PermissionError is the stack's roles'.
                return Err(format!(
                    "{}: {}",
                    template::text(&request["failureDetails"]["type"]),
                    template::text(&request["failureDetails"]["message"])
                ));
            }
            let summary = template::text(&request["executionDetails"]["summary"]);
            let reported = self.epoch.elapsed();
            for line in summary.lines().skip(1) {
                if seen.insert(line.to_string()) {
                    spinner.suspend(|| self.ui.line(&format!("    {line}")));
                    self.ui
                        .event(json!({"event": "progress", "action": action.name, "line": line}));
                    lines.push((reported, line.to_string()));
                }
            }
            match request["continuationToken"].as_str() {
                Some(t) => {
                    // Each new state the job waits in (its first line) is a progress line too.
                    let first = first_line(&summary);
                    if lines.last().map(|(_, l)| l.as_str()) != Some(first) {
                        lines.push((reported, first.to_string()));
                    }
                    // CodePipeline shows percentComplete as the job's progress; so does the bar.
                    let wait = Wait {
                        percent: request["executionDetails"]["percentComplete"]
                            .as_u64()
                            .map_or(0, |p| p.min(100) as u8),
                        elapsed: started.elapsed(),
                        expected: waiting.as_ref().and_then(|w| w.expected),
                        waiting_for: first_line(&summary).to_string(),
                    };
                    wait.show(spinner);
                    self.ui.event(wait.event(&action.name));
                    waiting = Some(wait);
                    if started.elapsed() > self.options.action_timeout {
                        return Err(format!(
                            "still in progress after {}s (local action timeout); last: {summary}",
                            started.elapsed().as_secs()
                        ));
                    }
                    token = Some(t.to_string());
                    tokio::time::sleep(self.options.continuation_pause).await;
                }
                None => {
                    let vars: Vec<(String, String)> = request["outputVariables"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), template::text(v)))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.set_variables(action.namespace.as_deref(), vars);
                    return Ok((summary, invocation));
                }
            }
        }
        Err("unreachable".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_shows_the_jobs_percent_its_time_against_the_launch_delay_and_what_it_waits_for() {
        let bar = ProgressBar::hidden();
        let mut wait = Wait {
            percent: 12,
            elapsed: Duration::from_millis(3_400),
            expected: Some(Duration::from_secs(120)),
            waiting_for: "shop-1a2b is Launching / Grey after 3s".into(),
        };
        wait.show(&bar);
        assert_eq!((bar.length(), bar.position()), (Some(100), 12));
        assert_eq!(
            bar.message(),
            "12% · 3s of ~2m expected (launch delay) · waiting for: shop-1a2b is Launching / Grey after 3s"
        );
        wait.elapsed = Duration::from_secs(150);
        wait.percent = 200;
        wait.show(&bar);
        assert_eq!(bar.position(), 100, "never past the end");
        assert!(
            bar.message()
                .starts_with("100% · 2m 30s of ~2m expected (launch delay), 30s over · "),
            "{}",
            bar.message()
        );
        wait.expected = None;
        assert!(wait.line().contains(" · 2m 30s · waiting for: shop-1a2b"));
    }

    #[tokio::test]
    async fn the_approval_reads_one_line_and_approves_only_on_yes() {
        let input = std::io::Cursor::new(b"y\nmore\n".to_vec());
        let line = read_line(input).await.unwrap();
        assert_eq!(line.as_deref(), Some("y\n"));
        assert_eq!(decide(line.as_deref()).unwrap(), "approved");
        assert_eq!(decide(Some("yes\n")).unwrap(), "approved");
        assert_eq!(
            decide(Some("\n")).unwrap_err(),
            "rejected at the manual approval"
        );
        assert_eq!(
            decide(Some("n\n")).unwrap_err(),
            "rejected at the manual approval"
        );
        let ended = read_line(std::io::Cursor::new(Vec::new())).await.unwrap();
        assert_eq!(ended, None);
        assert!(decide(ended.as_deref()).unwrap_err().contains("--approve"));
    }
}
