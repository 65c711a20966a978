//! Staging: launch the new ("blue") environment with the new version beside the live one, and wait until
//! it is Ready and healthy.
//!
//! The first invocation finds the live environment by its CNAME, then creates the new environment (or
//! adopts the one an earlier invocation of the same version created); later invocations, driven by the
//! continuation token, poll it with backoff and stream its Beanstalk events into the summary. The
//! decision what a poll means is [`assess`]: pure, so every path is unit-tested.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, Tag};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::beanstalk::BeanstalkApi;
use crate::beanstalk::{
    event_lines, poll_delay, Beanstalk, Environment, Event, Health, HealthGate, TAG_APPLICATION,
    TAG_VERSION,
};
use crate::clock::{from_unix_millis, unix_millis};
use crate::runner::ActionError;
use crate::Outcome;

/// The tag that ties an environment to the pipeline execution that staged it.
pub const TAG_PIPELINE_EXECUTION: &str = "beanswap:pipeline-execution";

/// One option setting, as UserParameters spell it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSetting {
    pub namespace: String,
    pub option_name: String,
    pub value: String,
}

/// What the new environment is made from when it is not cloned from the live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Clone the live environment's configuration (the usual case).
    CloneLive,
    Template(String),
    SolutionStack(String),
    PlatformArn(String),
}

/// What to do with an environment that failed to become healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Leave it running so someone can look at its logs (the message says so and how to remove it).
    #[default]
    Keep,
    Terminate,
}

/// Everything staging needs, validated (the function's UserParameters become this).
#[derive(Debug, Clone)]
pub struct Plan {
    pub application: String,
    pub version_label: String,
    /// How production is found: its CNAME (prefix or full) ...
    pub production_cname: Option<String>,
    /// ... or its environment name.
    pub production_environment: Option<String>,
    pub environment_name: String,
    /// The configuration when no live environment exists (first deployment), or always when set.
    pub first_source: Option<Source>,
    pub clone_live: bool,
    pub option_settings: Vec<OptionSetting>,
    pub tags: BTreeMap<String, String>,
    pub pipeline_execution: Option<String>,
    /// The least health to accept.
    pub health: HealthGate,
    pub timeout: Duration,
    pub on_failure: OnFailure,
    /// How long one invocation may keep polling before handing over with a continuation token.
    pub poll_budget: Duration,
}

/// Carried in the continuation token between invocations (short keys: the token holds 2048 chars).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The new environment's id and name.
    #[serde(rename = "i")]
    pub env_id: String,
    #[serde(rename = "n")]
    pub env_name: String,
    /// The environment that served production when staging began.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    /// Its CNAME, for the `LiveUrl` output (the smoke test checks the version in production against
    /// the database as the new version's migrations left it).
    #[serde(rename = "lc", default, skip_serializing_if = "Option::is_none")]
    pub live_cname: Option<String>,
    /// Events up to here (ms since epoch) have been shown.
    #[serde(rename = "c")]
    pub cursor_ms: u64,
    /// When staging began (ms since epoch), for the timeout.
    #[serde(rename = "s")]
    pub started_ms: u64,
    /// Polls so far, for backoff.
    #[serde(rename = "a")]
    pub attempt: u32,
    /// The configuration template made for the clone, deleted at the end.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// When the environment's status was last read (ms since epoch; 0 = never): between event-free
    /// polls it is read only every [`STATUS_EVERY`].
    #[serde(rename = "k", default)]
    pub status_checked_ms: u64,
    /// Its status and health as last read, for the progress summary.
    #[serde(rename = "st", default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub health: String,
    /// The last transient AWS trouble a poll met (throttling), shown in the progress summary; cleared
    /// by the next poll that gets through.
    #[serde(rename = "x", default, skip_serializing_if = "String::is_empty")]
    pub transient: String,
}

impl State {
    /// Whether the environment exists (or was adopted): otherwise staging has still to begin.
    pub fn begun(&self) -> bool {
        !self.env_id.is_empty()
    }
}

/// The longest an event-free wait goes without reading the environment's status: Beanstalk announces
/// every launch step, failure and enhanced-health transition as an event, so a poll is one
/// DescribeEvents, and DescribeEnvironments follows only when something happened, or this often in case
/// a change came without an event (basic health reporting).
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

/// After a poll that brought events but no verdict, the status is read again this soon.
pub const RECHECK: Duration = Duration::from_secs(10);

/// A poll's conclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Waiting,
    Failed(String),
}

/// What a poll of the new environment means. `events` are the new ones since the last poll.
pub fn assess(
    env: &Environment,
    events: &[Event],
    gate: HealthGate,
    elapsed: Duration,
    timeout: Duration,
) -> Verdict {
    if let Some(e) = events.iter().find(|e| e.is_error()) {
        return Verdict::Failed(format!(
            "Beanstalk reported {} for {}: {}",
            e.severity, env.name, e.message
        ));
    }
    if env.is_terminated() {
        return Verdict::Failed(format!(
            "{} went {} instead of becoming Ready (the launch failed)",
            env.name, env.status
        ));
    }
    if env.is_ready() {
        if gate.passes(&env.health) {
            return Verdict::Healthy;
        }
        if env.health == Health::Red {
            return Verdict::Failed(format!(
                "{} is Ready but its health is Red ({})",
                env.name,
                env.health_status.as_deref().unwrap_or("no detail")
            ));
        }
    }
    if elapsed >= timeout {
        return Verdict::Failed(format!(
            "{} was not Ready with {gate} health within {} (status {}, health {})",
            env.name,
            humantime::format_duration(Duration::from_secs(timeout.as_secs())),
            env.status,
            env.health
        ));
    }
    Verdict::Waiting
}

/// Beanstalk's environment name rule: 4 to 40 letters, digits and hyphens, no hyphen at either end.
pub fn valid_environment_name(name: &str) -> bool {
    (4..=40).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The new environment's name from a template with `{app}`, `{version}` and `{id}` (8 hex characters
/// derived from the version label, so a re-invocation computes the same name), fitted to Beanstalk's rule.
pub fn environment_name(template: &str, application: &str, version_label: &str) -> String {
    let id: String = hex::encode(Sha256::digest(version_label.as_bytes()))
        .chars()
        .take(8)
        .collect();
    let clean = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            };
            if !(c == '-' && out.ends_with('-')) {
                out.push(c);
            }
        }
        out.trim_matches('-').to_string()
    };
    let app = clean(application);
    let version = clean(version_label);
    // Keep the id whole: it is what makes the name unique; shorten the rest to fit 40.
    let room = 40usize.saturating_sub(id.len() + 1);
    let shorten = |s: &str, max: usize| -> String {
        s.chars()
            .take(max)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    };
    let name = template
        .replace("{app}", &shorten(&app, room))
        .replace("{version}", &shorten(&version, room))
        .replace("{id}", &id);
    let mut name = clean(&name);
    if name.len() > 40 {
        // Keep the end (where the id usually is) when the template's text is too long.
        name = name[name.len() - 40..].trim_start_matches('-').to_string();
    }
    while name.len() < 4 {
        name.push('0');
    }
    name
}

/// The result of staging, for output variables.
fn succeeded(env: &Environment, live: Option<&str>, live_cname: Option<&str>) -> Outcome<State> {
    let note = if live == Some(env.name.as_str()) {
        "; it already serves production, so there is nothing to swap"
    } else {
        ""
    };
    Outcome::succeeded(format!(
        "{} is Ready and {} with version {} at {}{note}",
        env.name,
        env.health,
        env.version_label.as_deref().unwrap_or("?"),
        env.url()
    ))
    .with_variable("EnvironmentName", env.name.clone())
    .with_variable("EnvironmentId", env.id.clone())
    .with_variable("Cname", env.cname.clone())
    .with_variable("Url", env.url())
    .with_variable("LiveEnvironmentName", live.unwrap_or_default().to_string())
    // Empty when nothing else serves production (the first deployment, or this version already
    // live): there is no other version to check against the migrated database.
    .with_variable(
        "LiveUrl",
        live_cname
            .filter(|c| live != Some(env.name.as_str()) && !c.is_empty())
            .map(|c| format!("http://{c}/"))
            .unwrap_or_default(),
    )
}

/// One invocation of the stage action: begins (finds production, creates or adopts the environment)
/// when nothing has begun yet, then polls until a verdict or the poll budget is spent.
///
/// Transient AWS trouble (throttling, AWS unavailable) is never a verdict while staging can wait: a
/// begin that meets it hands over with a token that begins again (begin is idempotent: it adopts what
/// an earlier attempt created), and a poll that meets it is skipped with backoff. Only the staging
/// timeout ends the wait.
pub async fn run(
    eb: &Beanstalk,
    plan: &Plan,
    state: Option<State>,
) -> Result<Outcome<State>, ActionError> {
    let state = match state {
        Some(state) if state.begun() => state,
        earlier => match begin(eb, plan).await {
            Ok(Outcome::InProgress { state, .. }) => state,
            Ok(other) => return Ok(other),
            Err(e) if e.is_transient() => {
                let mut state = earlier.unwrap_or_else(|| State {
                    started_ms: unix_millis(SystemTime::now()),
                    ..State::default()
                });
                let elapsed = from_unix_millis(state.started_ms)
                    .elapsed()
                    .unwrap_or_default();
                if elapsed >= plan.timeout {
                    return Err(ActionError::new(
                        e.kind,
                        format!(
                            "Staging version {} could not begin within {}: AWS kept refusing for a moment ({})",
                            plan.version_label,
                            humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                            e.message
                        ),
                    ));
                }
                state.attempt += 1;
                state.transient = e.message.clone();
                return Ok(Outcome::InProgress {
                    summary: format!(
                        "Waiting to begin staging version {}: {} (trying again)",
                        plan.version_label, e.message
                    ),
                    percent: 1,
                    state,
                });
            }
            Err(e) => return Err(e),
        },
    };
    resume(eb, plan, state).await
}

/// The first invocation: find production, then create (or adopt) the new environment.
pub async fn begin(eb: &Beanstalk, plan: &Plan) -> Result<Outcome<State>, ActionError> {
    let environments = eb.environments(&plan.application).await?;
    let live = match (&plan.production_cname, &plan.production_environment) {
        (Some(cname), _) => environments.iter().find(|e| e.holds_cname(cname)).cloned(),
        (None, Some(name)) => environments.iter().find(|e| &e.name == name).cloned(),
        (None, None) => None,
    };
    let started = SystemTime::now();

    // Idempotency: the name is derived from the version, so an earlier invocation's environment is
    // found by name; its tags say whether beanswap made it for this version.
    if let Some(existing) = environments
        .iter()
        .find(|e| e.name == plan.environment_name)
    {
        let tags = eb.tags(&existing.arn).await?;
        let ours = tags.get(TAG_APPLICATION) == Some(&plan.application)
            && tags.get(TAG_VERSION) == Some(&plan.version_label);
        if !ours {
            return Err(ActionError::config(format!(
                "an environment named {} already exists and beanswap did not create it for version {} (tags {TAG_APPLICATION}/{TAG_VERSION} missing or different); choose another `environment_name` template",
                existing.name, plan.version_label
            )));
        }
        // It holds production when an earlier invocation launched the first environment on the
        // production CNAME, or when this version is already live. Either way it is judged like an
        // environment this invocation created: polled until it is Ready with the health gate, or its
        // launch fails (a retry after a crash, or a Retry pressed after a Red verdict, must never
        // pass an environment that is still Launching, or Red, off as staged).
        let holds_production = live.as_ref().is_some_and(|l| l.id == existing.id);
        // The earlier invocation, cloning the live configuration, made the configuration template
        // before CreateEnvironment and may have died before deleting it: remember it so the end of
        // staging deletes it like any clone's (cleanup tolerates its absence).
        let template = (live.is_some() && plan.clone_live && !holds_production)
            .then(|| clone_template_name(plan));
        return Ok(Outcome::InProgress {
            summary: format!(
                "{} for version {} already exists (an earlier invocation created it{}); it is {} / {}, checking it like a new launch",
                existing.name,
                plan.version_label,
                if holds_production { ", and it holds production" } else { "" },
                existing.status,
                existing.health
            ),
            percent: 10,
            state: State {
                env_id: existing.id.clone(),
                env_name: existing.name.clone(),
                live_cname: live.as_ref().map(|l| l.cname.clone()),
            live: live.map(|l| l.name),
                cursor_ms: adopted_cursor(existing, &tags, plan, started),
                started_ms: unix_millis(started),
                attempt: 0,
                template,
                ..State::default()
            },
        });
    }

    let client = eb.client();
    let mut create = client
        .create_environment()
        .application_name(&plan.application)
        .environment_name(&plan.environment_name)
        .version_label(&plan.version_label)
        .description(format!("beanswap: version {}", plan.version_label));

    // CNAME: the first environment takes the production CNAME itself, so there is nothing to swap;
    // later ones take a free prefix of their own.
    match (&live, &plan.production_cname) {
        (None, Some(cname)) if !cname.contains('.') => {
            if !eb.cname_available(cname).await? {
                return Err(ActionError::config(format!(
                    "no environment of {} holds the production CNAME {cname}, yet it is taken (by another application or account?); check `production_cname`",
                    plan.application
                )));
            }
            create = create.cname_prefix(cname);
        }
        _ => {
            let prefix = plan.environment_name.to_ascii_lowercase();
            if eb.cname_available(&prefix).await? {
                create = create.cname_prefix(prefix);
            }
        }
    }

    // Configuration: clone the live one, or the named source for a first deployment.
    let mut template = None;
    let source = match (&live, plan.clone_live, &plan.first_source) {
        (Some(_), true, _) => Source::CloneLive,
        (_, _, Some(source)) => source.clone(),
        (None, _, None) => {
            return Err(ActionError::config(format!(
                "no live environment found for {} (by {}), so this is a first deployment: give `solution_stack`, `platform_arn` or `template_name` to create it",
                plan.application,
                describe_production(plan)
            )))
        }
        (Some(_), false, None) => {
            return Err(ActionError::config(
                "`clone_live` is false but no `solution_stack`, `platform_arn` or `template_name` says what to create instead",
            ))
        }
    };
    create = match source {
        Source::CloneLive => {
            let Some(live) = &live else {
                return Err(ActionError::failed(
                    "internal: clone without a live environment",
                ));
            };
            let name = clone_template_name(plan);
            let made = client
                .create_configuration_template()
                .application_name(&plan.application)
                .template_name(&name)
                .environment_id(&live.id)
                .description(format!(
                    "beanswap: configuration of {} cloned for {}",
                    live.name, plan.environment_name
                ))
                .send()
                .await;
            match made {
                Ok(_) => {}
                // A retried first invocation made it already: use it.
                Err(e)
                    if aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata::message(&e)
                        .is_some_and(|m| m.contains("already exists")) => {}
                Err(e) => return Err(Beanstalk::error("CreateConfigurationTemplate", e).into()),
            }
            template = Some(name.clone());
            create.template_name(name)
        }
        Source::Template(name) => create.template_name(name),
        Source::SolutionStack(stack) => create.solution_stack_name(stack),
        Source::PlatformArn(arn) => create.platform_arn(arn),
    };
    for o in &plan.option_settings {
        create = create.option_settings(
            ConfigurationOptionSetting::builder()
                .namespace(&o.namespace)
                .option_name(&o.option_name)
                .value(&o.value)
                .build(),
        );
    }
    let mut tags: BTreeMap<String, String> = plan.tags.clone();
    tags.insert(TAG_APPLICATION.into(), plan.application.clone());
    tags.insert(TAG_VERSION.into(), plan.version_label.clone());
    if let Some(execution) = &plan.pipeline_execution {
        tags.insert(TAG_PIPELINE_EXECUTION.into(), execution.clone());
    }
    for (key, value) in tags {
        create = create.tags(Tag::builder().key(key).value(value).build());
    }
    let created = create
        .send()
        .await
        .map_err(|e| Beanstalk::error("CreateEnvironment", e))?;
    let env_id = created.environment_id().unwrap_or_default().to_string();
    let cname = created.cname().unwrap_or_default().to_string();
    Ok(Outcome::InProgress {
        summary: format!(
            "Creating {} with version {} ({}){}",
            plan.environment_name,
            plan.version_label,
            cname,
            live.as_ref()
                .map(|l| format!(", configuration cloned from {}", l.name))
                .unwrap_or_else(|| " as the first environment, on the production CNAME".into())
        ),
        percent: 5,
        state: State {
            env_id,
            env_name: plan.environment_name.clone(),
            live_cname: live.as_ref().map(|l| l.cname.clone()),
            live: live.map(|l| l.name),
            cursor_ms: unix_millis(started).saturating_sub(1000),
            started_ms: unix_millis(started),
            attempt: 0,
            template,
            ..State::default()
        },
    })
}

/// Where an adopted environment's events are read from. An environment this pipeline execution made
/// (a Lambda retry, or Retry pressed on the failed action: both keep the execution id) is judged on
/// every event since its creation, so an ERROR the earlier invocation saw fails this one too. One an
/// earlier execution made (the version is being staged again, perhaps long after) is judged on what
/// happens from now: its launch's events are history, not this deployment's.
fn adopted_cursor(
    existing: &Environment,
    tags: &BTreeMap<String, String>,
    plan: &Plan,
    now: SystemTime,
) -> u64 {
    let made_by_another_execution =
        match (&plan.pipeline_execution, tags.get(TAG_PIPELINE_EXECUTION)) {
            (Some(ours), Some(theirs)) => ours != theirs,
            _ => false,
        };
    match existing.created {
        Some(created) if !made_by_another_execution => unix_millis(created),
        _ => unix_millis(now).saturating_sub(1000),
    }
}

/// The configuration template a clone is launched from: one per new environment, deleted once
/// staging ends.
fn clone_template_name(plan: &Plan) -> String {
    format!("beanswap-{}", plan.environment_name)
}

fn describe_production(plan: &Plan) -> String {
    match (&plan.production_cname, &plan.production_environment) {
        (Some(c), _) => format!("CNAME {c}"),
        (None, Some(n)) => format!("environment name {n}"),
        (None, None) => {
            "nothing: neither production_cname nor production_environment is set".into()
        }
    }
}

/// A later invocation: poll with backoff until a verdict or the poll budget is spent.
///
/// Each poll asks for the new events (one call) and reads the environment only when there were some,
/// when [`STATUS_EVERY`] has passed, or at the timeout: half the calls of a tool that reads both every
/// 10 s, and as quick to notice a failure, since [`poll_delay`] never waits longer than such a tool.
pub async fn resume(
    eb: &Beanstalk,
    plan: &Plan,
    mut state: State,
) -> Result<Outcome<State>, ActionError> {
    let started = from_unix_millis(state.started_ms);
    let invocation_began = std::time::Instant::now();
    let mut seen: Vec<Event> = vec![];
    loop {
        let polled = eb
            .events_since(&state.env_id, Some(from_unix_millis(state.cursor_ms)), 100)
            .await;
        let events: Vec<Event> = skip_transient(polled, &mut state)?.unwrap_or_default();
        if let Some(last) = events.last() {
            state.cursor_ms = unix_millis(last.date) + 1;
        }
        seen.extend(events.iter().cloned());
        let elapsed = started.elapsed().unwrap_or_default();
        let now_ms = unix_millis(SystemTime::now());
        let status_due = !events.is_empty()
            || now_ms.saturating_sub(state.status_checked_ms) >= STATUS_EVERY.as_millis() as u64
            || elapsed >= plan.timeout;
        let read = if status_due {
            let read = skip_transient(eb.environment(&state.env_id).await, &mut state)?;
            if read.is_none() {
                // Skipped: the events that made it due are consumed, so keep it due for the next poll.
                state.status_checked_ms = 0;
            }
            read
        } else {
            None
        };
        if status_due && read.is_none() && elapsed >= plan.timeout {
            return Err(ActionError::new(
                crate::FailureKind::SystemUnavailable,
                format!(
                    "Staging version {}: {} could not be read at the timeout ({}): {}",
                    plan.version_label,
                    state.env_name,
                    humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                    state.transient
                ),
            ));
        }
        if let Some(env) = read {
            let env = env.ok_or_else(|| {
                ActionError::failed(format!(
                    "environment {} ({}) no longer exists",
                    state.env_name, state.env_id
                ))
            })?;
            state.status_checked_ms = now_ms;
            state.status = env.status.to_string();
            state.health = env.health.to_string();
            match assess(&env, &events, plan.health, elapsed, plan.timeout) {
                Verdict::Healthy => {
                    cleanup_template(eb, plan, &state).await;
                    return Ok(succeeded(
                        &env,
                        state.live.as_deref(),
                        state.live_cname.as_deref(),
                    ));
                }
                Verdict::Failed(reason) => {
                    return Err(fail(eb, plan, &state, &env, &reason).await);
                }
                // Beanstalk may announce a step a moment before DescribeEnvironments shows it (the
                // launch's last event before Ready): read the status again within RECHECK even if no
                // further event comes, not only after STATUS_EVERY.
                Verdict::Waiting if !events.is_empty() => {
                    state.status_checked_ms =
                        now_ms.saturating_sub((STATUS_EVERY - RECHECK).as_millis() as u64);
                }
                Verdict::Waiting => {}
            }
        }
        state.attempt += 1;
        let delay = poll_delay(state.attempt);
        if invocation_began.elapsed() + delay > plan.poll_budget {
            let percent =
                (elapsed.as_secs_f64() / plan.timeout.as_secs_f64() * 100.0).clamp(5.0, 95.0) as u8;
            let latest = if seen.is_empty() {
                "no new events".to_string()
            } else {
                event_lines(&seen, 8)
            };
            let trouble = if state.transient.is_empty() {
                String::new()
            } else {
                format!(" (AWS: {}; waiting it out)", state.transient)
            };
            return Ok(Outcome::InProgress {
                summary: format!(
                    "{} is {} / {} after {}s{trouble}\n{latest}",
                    state.env_name,
                    or_unknown(&state.status),
                    or_unknown(&state.health),
                    elapsed.as_secs()
                ),
                percent,
                state,
            });
        }
        tokio::time::sleep(delay).await;
    }
}

/// [`crate::aws_error::unless_transient`], noting the trouble in the state for the progress summary
/// (and clearing the note once a poll gets through).
fn skip_transient<T>(
    answer: Result<T, crate::aws_error::AwsError>,
    state: &mut State,
) -> Result<Option<T>, ActionError> {
    if let Err(e) = &answer {
        state.transient = crate::outcome::truncate(&e.message, 200);
    }
    let value = crate::aws_error::unless_transient(answer)?;
    if value.is_some() {
        state.transient.clear();
    }
    Ok(value)
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "not read yet"
    } else {
        s
    }
}

async fn cleanup_template(eb: &Beanstalk, plan: &Plan, state: &State) {
    if let Some(template) = &state.template {
        // Best effort: a template left behind costs nothing and the next run reuses the name.
        match eb
            .client()
            .delete_configuration_template()
            .application_name(&plan.application)
            .template_name(template)
            .send()
            .await
        {
            Ok(_) => {}
            // Already gone (an adopted environment's invocation deleted it, or never made it).
            Err(e)
                if aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata::message(&e)
                    .is_some_and(|m| m.contains("No Configuration Template")) =>
            {
                tracing::debug!(template = %template, "the cloned configuration template is already gone");
            }
            Err(e) => {
                tracing::warn!(template = %template, error = %Beanstalk::error("DeleteConfigurationTemplate", e), "could not delete the cloned configuration template");
            }
        }
    }
}

/// How long a failure waits for Beanstalk to compile the tail logs.
const TAIL_LOGS_WAIT: Duration = Duration::from_secs(30);
/// The tail logs' share of CodePipeline's 5000-character failure message.
const TAIL_LOGS_CHARS: usize = 2400;

/// The failure message, with the environment's recent events and, when an instance's deployment failed,
/// the lines of its tail logs that say why; terminates it when asked to.
async fn fail(
    eb: &Beanstalk,
    plan: &Plan,
    state: &State,
    env: &Environment,
    reason: &str,
) -> ActionError {
    let recent = eb
        .events_since(
            &state.env_id,
            Some(from_unix_millis(state.started_ms.saturating_sub(1000))),
            100,
        )
        .await
        .map(|events| event_lines(&events, 15))
        .unwrap_or_else(|e| format!("(events unavailable: {e})"));
    // What the instances logged (a failed container command's output, a hook's stderr): asked for
    // only when Beanstalk reported a failed instance deployment, and only while the environment
    // still runs (a terminated one has no instances to tail).
    let instances = if recent.contains("Instance deployment failed") && !env.is_terminated() {
        match crate::tail_logs::fetch(eb, &state.env_id, TAIL_LOGS_WAIT).await {
            Ok(logs) => {
                let mut out = String::new();
                let per_instance = TAIL_LOGS_CHARS / logs.len().max(1);
                for (instance, text) in &logs {
                    let lines = crate::tail_logs::relevant(text, per_instance);
                    if !lines.is_empty() {
                        out.push_str(&format!("\nFrom the tail logs of {instance}:\n{lines}"));
                    }
                }
                out
            }
            Err(e) => format!("\n(tail logs unavailable: {e})"),
        }
    } else {
        String::new()
    };
    let what_now = match plan.on_failure {
        OnFailure::Keep => format!(
            "{} was kept for inspection (on_failure: keep); terminate it when done, e.g. `aws elasticbeanstalk terminate-environment --environment-id {}`",
            env.name, env.id
        ),
        OnFailure::Terminate if env.is_terminated() => format!("{} is already terminated", env.name),
        OnFailure::Terminate => match eb
            .client()
            .terminate_environment()
            .environment_id(&env.id)
            .force_terminate(true)
            .send()
            .await
        {
            Ok(_) => format!("{} is being terminated (on_failure: terminate)", env.name),
            Err(e) => format!(
                "terminating {} failed too: {}",
                env.name,
                Beanstalk::error("TerminateEnvironment", e)
            ),
        },
    };
    cleanup_template(eb, plan, state).await;
    ActionError::failed(format!(
        "Staging version {} failed: {reason}. {what_now}. Production is unchanged{}.{instances}\nRecent events of {}:\n{recent}",
        plan.version_label,
        state
            .live
            .as_deref()
            .map(|l| format!(" ({l} still serves it)"))
            .unwrap_or_default(),
        env.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(status: &str, health: &str) -> Environment {
        Environment {
            id: "e-1".into(),
            name: "shop-abc".into(),
            application: "shop".into(),
            version_label: Some("v2".into()),
            cname: "shop-abc.us-east-1.elasticbeanstalk.com".into(),
            status: status.into(),
            health: health.into(),
            health_status: Some("Severe".into()),
            arn: String::new(),
            created: None,
        }
    }

    fn event(severity: &str, message: &str) -> Event {
        Event {
            date: SystemTime::now(),
            severity: severity.into(),
            message: message.into(),
            environment: None,
        }
    }

    #[test]
    fn assess_covers_every_way_a_launch_ends() {
        let min = Duration::from_secs(60);
        let long = Duration::from_secs(1800);
        let cases: Vec<(Environment, Vec<Event>, &str, Duration, &str)> = vec![
            (env("Launching", "Grey"), vec![], "Green", min, "wait"),
            (env("Ready", "Green"), vec![], "Green", min, "healthy"),
            (env("Ready", "Yellow"), vec![], "Yellow", min, "healthy"),
            (env("Ready", "Yellow"), vec![], "Green", min, "wait"),
            (env("Ready", "Grey"), vec![], "Green", min, "wait"),
            (
                env("Ready", "Red"),
                vec![],
                "Green",
                min,
                "failed: health is Red",
            ),
            (
                env("Terminated", "Grey"),
                vec![],
                "Green",
                min,
                "failed: went Terminated",
            ),
            (
                env("Launching", "Grey"),
                vec![
                    event("INFO", "fine"),
                    event("ERROR", "Stack named x aborted"),
                ],
                "Green",
                min,
                "failed: Beanstalk reported ERROR for shop-abc: Stack named x aborted",
            ),
            (
                env("Launching", "Grey"),
                vec![event("WARN", "slow")],
                "Green",
                min,
                "wait",
            ),
            (
                env("Launching", "Grey"),
                vec![],
                "Green",
                long,
                "failed: was not Ready with Green health within 30m",
            ),
        ];
        for (env, events, gate, elapsed, expected) in cases {
            let gate = if gate == "Yellow" {
                HealthGate::Yellow
            } else {
                HealthGate::Green
            };
            let verdict = assess(&env, &events, gate, elapsed, Duration::from_secs(1800));
            let ok = match (&verdict, expected) {
                (Verdict::Healthy, "healthy") | (Verdict::Waiting, "wait") => true,
                (Verdict::Failed(m), e) => e
                    .strip_prefix("failed: ")
                    .is_some_and(|part| m.contains(part)),
                _ => false,
            };
            assert!(
                ok,
                "{} {} {gate}: expected {expected}, got {verdict:?}",
                env.status, env.health
            );
        }
    }

    #[test]
    fn an_adopted_environment_is_judged_on_this_executions_events_only() {
        let created = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let now = std::time::UNIX_EPOCH + Duration::from_secs(5_000);
        let existing = Environment {
            created: Some(created),
            ..env("Launching", "Grey")
        };
        let plan = |execution: Option<&str>| Plan {
            application: "shop".into(),
            version_label: "v2".into(),
            production_cname: Some("shop-prod".into()),
            production_environment: None,
            environment_name: "shop-abc".into(),
            first_source: None,
            clone_live: true,
            option_settings: vec![],
            tags: BTreeMap::new(),
            pipeline_execution: execution.map(str::to_string),
            health: HealthGate::Green,
            timeout: Duration::from_secs(1800),
            on_failure: OnFailure::Keep,
            poll_budget: Duration::from_secs(120),
        };
        let tagged = |execution: &str| {
            BTreeMap::from([(TAG_PIPELINE_EXECUTION.to_string(), execution.to_string())])
        };
        // Made by this execution (a retry): every event since its creation counts.
        assert_eq!(
            adopted_cursor(&existing, &tagged("exec-1"), &plan(Some("exec-1")), now),
            unix_millis(created)
        );
        // Unknown execution: the conservative reading, since creation.
        assert_eq!(
            adopted_cursor(&existing, &BTreeMap::new(), &plan(None), now),
            unix_millis(created)
        );
        // Made by an earlier execution: its launch is history; judged from now.
        assert_eq!(
            adopted_cursor(&existing, &tagged("exec-0"), &plan(Some("exec-1")), now),
            unix_millis(now) - 1000
        );
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        let a = environment_name("{app}-{id}", "shop", "v-2026-11-25-abc");
        assert_eq!(
            a,
            environment_name("{app}-{id}", "shop", "v-2026-11-25-abc")
        );
        assert_ne!(
            a,
            environment_name("{app}-{id}", "shop", "v-2026-11-25-abd")
        );
        assert!(a.starts_with("shop-") && a.len() == 13, "{a}");
        for (template, app, version) in [
            ("{app}-{id}", "My Shop_App!", "v1"),
            ("{app}-{id}", &"x".repeat(100) as &str, "v1"),
            ("{app}-{version}-{id}", "shop", &"v".repeat(90) as &str),
            ("{id}", "a", "b"),
            ("-{app}-", "shop", "v1"),
        ] {
            let name = environment_name(template, app, version);
            assert!(
                valid_environment_name(&name),
                "{template} {app} {version} -> {name}"
            );
        }
        assert_eq!(
            environment_name("{app}-{id}", "My Shop_App!", "v1")
                .split('-')
                .next(),
            Some("my")
        );
    }

    #[test]
    fn state_fits_a_continuation_token() {
        let state = State {
            env_id: "e-abcdefghij".into(),
            env_name: "x".repeat(40),
            live: Some("y".repeat(40)),
            live_cname: Some(format!("{}.us-east-1.elasticbeanstalk.com", "z".repeat(40))),
            cursor_ms: u64::MAX,
            started_ms: u64::MAX,
            attempt: 1000,
            template: Some(format!("beanswap-{}", "x".repeat(40))),
            status_checked_ms: u64::MAX / 2,
            status: "Launching".into(),
            health: "Grey".into(),
            transient: "x".repeat(200),
        };
        let token = crate::outcome::encode_state(&state).unwrap();
        assert!(token.len() < 600, "{token}");
        assert_eq!(
            crate::outcome::decode_state::<State>(&token).unwrap(),
            state
        );
    }
}
