//! Staging: launch the new ("blue") environment with the new version beside the live one, and wait until
//! it is Ready and healthy.
//!
//! The first invocation finds the live environment by its CNAME, then creates the new environment (or
//! adopts the one an earlier invocation of the same version created); later invocations, driven by the
//! continuation token, poll it with backoff and stream its Beanstalk events into the summary. The
//! decision what a poll means is [`assess`]: pure, so every path is unit-tested.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::beanstalk::BeanstalkApi;
use crate::beanstalk::{
    event_lines, poll_delay, Beanstalk, Environment, Event, Health, HealthGate, TAG_APPLICATION,
    TAG_VERSION,
};
use crate::clock::{from_unix_millis, unix_millis};
use crate::route53::{RecordName, Route53Api};
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
    /// With a custom domain (Route 53 swaps), production is the environment its record points at (the
    /// largest weight): the first environment keeps the production CNAME after later swaps move the
    /// domain, so the CNAME alone would clone a configuration that no longer serves. Before the record
    /// exists (the first deployment), the CNAME (or name) above decides.
    pub production_record: Option<RecordName>,
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

/// Where an adopted environment's events are read from. An environment this pipeline execution made
/// (a Lambda retry, or Retry pressed on the failed action: both keep the execution id) is judged on
/// every event since its creation, so an ERROR the earlier invocation saw fails this one too. One an
/// earlier execution made (the version is being staged again, perhaps long after) is judged on what
/// happens from now: its launch's events are history, not this deployment's.
pub(crate) fn adopted_cursor(
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

mod exec;
#[cfg(test)]
mod sequence_tests;
#[cfg(test)]
mod tests;

pub use exec::{begin, resume, run, run_on};
