//! Moving production traffic from the live environment to the staged one, and back.
//!
//! This file holds the rules, with no I/O: preconditions, which environment a domain's records serve,
//! the next weight step, what a rollback returns to, and the state carried between invocations.
//! [`engine`] decides each step from what AWS shows and performs it against Elastic Beanstalk and
//! Route 53; [`bake`] judges the readings after the move, [`capacity`] the instances before it.

pub mod bake;
pub mod capacity;
pub mod engine;
mod http;

pub use http::HttpVerifier;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aws_error::AwsError;
use crate::beanstalk::{Environment, Health, HealthGate};
use crate::route53::{beanstalk_hosted_zone_id, region_of_cname, Pointer, Record};
use crate::runner::ActionError;

/// On the environment that took over production: the one it took over from. Rollback returns there.
pub const TAG_PREVIOUS_ENVIRONMENT: &str = "beanswap:previous-environment";
/// On an environment a rollback brought back into service: the one it was rolled back from. A repeated
/// rollback sees it and does nothing instead of swapping forward again.
pub const TAG_RESTORED_FROM: &str = "beanswap:restored-from";

/// Weighted mode's default steps: percent of traffic on the new environment.
pub const DEFAULT_STEPS: &[u8] = &[10, 50, 100];
/// At most this many steps (each costs invocations and a change batch).
pub const MAX_STEPS: usize = 10;

/// How production traffic is moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SwapEnvironmentCNAMEs between live and staged.
    #[default]
    Cname,
    /// UPSERT the custom domain's record to the staged environment.
    Route53,
    /// Shift Route 53 weighted records in steps with a bake time.
    Weighted,
    /// Return production to the previous environment.
    Rollback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Cname => "cname",
            Mode::Route53 => "route53",
            Mode::Weighted => "weighted",
            Mode::Rollback => "rollback",
        }
    }
}

/// How a custom domain points at an environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    /// `A` alias to the environment CNAME (works at a zone apex, no TTL to wait out).
    #[default]
    Alias,
    /// `CNAME` record with a TTL.
    Cname,
}

/// A custom domain in a hosted zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub zone: String,
    pub name: String,
    pub record_type: RecordType,
    /// TTL of CNAME records, seconds.
    pub ttl: i64,
}

/// Why production was not moved (or was moved back).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the staged environment `{name}` does not exist in application `{application}` (or it is terminated); nothing was swapped")]
    StagedMissing { application: String, name: String },
    #[error("no environment of application `{application}` holds the production CNAME `{production}`; nothing was swapped")]
    NoLive {
        application: String,
        production: String,
    },
    #[error("the {role} environment `{name}` is {status}, not Ready; nothing was swapped")]
    NotReady {
        role: &'static str,
        name: String,
        status: String,
    },
    #[error("the {role} environment `{name}` belongs to application `{actual}`, not `{expected}`; nothing was swapped")]
    WrongApplication {
        role: &'static str,
        name: String,
        actual: String,
        expected: String,
    },
    #[error("the staged environment `{name}` is not healthy now: health {health}{detail} (at least {gate} required); nothing was swapped{events}")]
    Unhealthy {
        name: String,
        health: String,
        detail: String,
        gate: String,
        events: String,
    },
    #[error("`{domain}` points at `{target}`, which is no environment of application `{application}`; nothing was changed")]
    UnknownTarget {
        domain: String,
        target: String,
        application: String,
    },
    #[error("`{domain}` has no A (alias) or CNAME record in hosted zone `{zone}`, and no `production_cname` says which environment is live; nothing was changed")]
    NoRecord { domain: String, zone: String },
    #[error("the environment CNAME `{cname}` is in region `{region}`, which has no known Elastic Beanstalk hosted zone for an alias record; use \"record_type\": \"cname\"")]
    UnknownRegion { cname: String, region: String },
    #[error("rollback: {0}")]
    NoRollbackTarget(String),
    #[error("SwapEnvironmentCNAMEs was accepted, but after {seconds}s `{production}` is still held by `{holder}`")]
    SwapNotVisible {
        production: String,
        holder: String,
        seconds: u64,
    },
    #[error("the Route 53 change {change} for `{domain}` was still PENDING after {seconds}s")]
    NotInSync {
        change: String,
        domain: String,
        seconds: u64,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl From<SwapError> for ActionError {
    fn from(e: SwapError) -> Self {
        match e {
            SwapError::Aws(e) => e.into(),
            e @ SwapError::UnknownRegion { .. } => ActionError::config(e.to_string()),
            e => ActionError::failed(e.to_string()),
        }
    }
}

/// Everything that must hold before production moves from `live` to `staged` (the staged
/// environment's health as read just now, not when it was staged).
pub fn check_preconditions(
    staged: &Environment,
    live: &Environment,
    application: &str,
    min_health: HealthGate,
) -> Result<(), SwapError> {
    for (role, env) in [("staged", staged), ("live", live)] {
        if env.application != application {
            return Err(SwapError::WrongApplication {
                role,
                name: env.name.clone(),
                actual: env.application.clone(),
                expected: application.to_string(),
            });
        }
        if !env.is_ready() {
            return Err(SwapError::NotReady {
                role,
                name: env.name.clone(),
                status: env.status.to_string(),
            });
        }
    }
    check_health(staged, min_health)
}

/// The environment's health passes the gate (`Green` or `Yellow`).
pub fn check_health(env: &Environment, min_health: HealthGate) -> Result<(), SwapError> {
    if env.is_ready() && min_health.passes(&env.health) {
        return Ok(());
    }
    let detail = match &env.health_status {
        Some(s) => format!(" ({s})"),
        None => String::new(),
    };
    let detail = if env.is_ready() {
        detail
    } else {
        format!("{detail}, status {}", env.status)
    };
    Err(SwapError::Unhealthy {
        name: env.name.clone(),
        health: if env.health == Health::Unknown {
            "unknown".into()
        } else {
            env.health.to_string()
        },
        detail,
        gate: min_health.to_string(),
        events: String::new(),
    })
}

/// Weight steps must rise strictly, stay within 1..=100 and end at 100.
pub fn validate_steps(steps: &[u8]) -> Result<(), String> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(format!(
            "must list 1 to {MAX_STEPS} percentages, got {}",
            steps.len()
        ));
    }
    if steps.iter().any(|s| !(1..=100).contains(s)) {
        return Err(format!(
            "every step must be 1 to 100 percent, got {steps:?}"
        ));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("steps must rise strictly, got {steps:?}"));
    }
    if steps.last() != Some(&100) {
        return Err(format!("the last step must be 100, got {steps:?}"));
    }
    Ok(())
}

/// The first step above the new environment's current share, if any is left.
pub fn next_step(steps: &[u8], current: i64) -> Option<u8> {
    steps.iter().copied().find(|s| i64::from(*s) > current)
}

/// (old weight, new weight) for `percent` on the new environment.
pub fn split(percent: u8) -> (i64, i64) {
    let p = i64::from(percent.min(100));
    (100 - p, p)
}

/// How a record of `domain` points at an environment with this CNAME.
pub fn pointer_for(domain: &Domain, cname: &str) -> Result<Pointer, SwapError> {
    match domain.record_type {
        RecordType::Cname => Ok(Pointer::Cname {
            value: cname.to_string(),
            ttl: domain.ttl,
        }),
        RecordType::Alias => {
            let region = region_of_cname(cname).unwrap_or_default();
            let zone_id =
                beanstalk_hosted_zone_id(region).ok_or_else(|| SwapError::UnknownRegion {
                    cname: cname.to_string(),
                    region: region.to_string(),
                })?;
            Ok(Pointer::Alias {
                dns_name: cname.to_string(),
                zone_id: zone_id.to_string(),
            })
        }
    }
}

/// The single (non-weighted) record pointing `domain` at `env`.
pub fn simple_record(domain: &Domain, env: &Environment) -> Result<Record, SwapError> {
    Ok(Record {
        name: crate::route53::fqdn(&domain.name),
        pointer: pointer_for(domain, &env.cname)?,
        set_identifier: None,
        weight: None,
    })
}

/// The two weighted records: `old` and `new`, identified by environment name, sharing 100.
pub fn weighted_records(
    domain: &Domain,
    old: &Environment,
    new: &Environment,
    percent: u8,
) -> Result<Vec<Record>, SwapError> {
    let (old_weight, new_weight) = split(percent);
    let record = |env: &Environment, weight: i64| -> Result<Record, SwapError> {
        Ok(Record {
            name: crate::route53::fqdn(&domain.name),
            pointer: pointer_for(domain, &env.cname)?,
            set_identifier: Some(env.name.clone()),
            weight: Some(weight),
        })
    };
    Ok(vec![record(old, old_weight)?, record(new, new_weight)?])
}

/// Each target of the domain's records with its share: a simple record takes everything; weighted
/// records share by weight (all-zero weights share equally, as Route 53 does).
pub fn shares(records: &[Record]) -> Vec<(String, i64)> {
    if let Some(simple) = records.iter().find(|r| r.weight.is_none()) {
        return vec![(simple.target(), 100)];
    }
    let total: i64 = records.iter().map(|r| r.weight.unwrap_or(0).max(0)).sum();
    records
        .iter()
        .map(|r| {
            let w = r.weight.unwrap_or(0).max(0);
            let share = match total {
                0 => 100 / i64::try_from(records.len()).unwrap_or(1).max(1),
                t => (w * 100 + t / 2) / t,
            };
            (r.target(), share)
        })
        .collect()
}

/// The share of traffic records give the environment with this CNAME.
pub fn share_of(records: &[Record], cname: &str) -> i64 {
    shares(records)
        .into_iter()
        .filter(|(t, _)| t.eq_ignore_ascii_case(cname))
        .map(|(_, s)| s)
        .sum()
}

/// The environment serving the largest share of the domain, other than `except` (the staged one).
pub fn serving_environment<'a>(
    records: &[Record],
    environments: &'a [Environment],
    except: Option<&str>,
) -> Result<Option<&'a Environment>, String> {
    let mut shares = shares(records);
    shares.retain(|(t, _)| except.is_none_or(|e| !t.eq_ignore_ascii_case(e)));
    shares.sort_by_key(|s| std::cmp::Reverse(s.1));
    let Some((target, _)) = shares.first() else {
        return Ok(None);
    };
    environments
        .iter()
        .find(|e| !e.is_terminated() && e.cname.eq_ignore_ascii_case(target))
        .map(Some)
        .ok_or_else(|| target.clone())
}

/// Where a rollback returns production: the explicitly named environment, else the live one's
/// [`TAG_PREVIOUS_ENVIRONMENT`]. It must still exist, be Ready and belong to the application.
pub fn rollback_target<'a>(
    live: &Environment,
    previous_tag: Option<&str>,
    explicit: Option<&str>,
    environments: &'a [Environment],
) -> Result<&'a Environment, SwapError> {
    let name = match (explicit, previous_tag) {
        (Some(n), _) => n,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(SwapError::NoRollbackTarget(format!(
                "`{}` serves production but has no `{TAG_PREVIOUS_ENVIRONMENT}` tag (it was not put there by a beanswap swap); name the environment to return to",
                live.name
            )))
        }
    };
    if name == live.name {
        return Err(SwapError::NoRollbackTarget(format!(
            "`{name}` already serves production"
        )));
    }
    let target = environments
        .iter()
        .find(|e| e.name == name && !e.is_terminated())
        .ok_or_else(|| {
            SwapError::NoRollbackTarget(format!(
                "the previous environment `{name}` no longer exists (retired?); production stays on `{}`",
                live.name
            ))
        })?;
    // Updating is a moment's business (the tag change that marked it out of service, minutes ago):
    // the caller waits for Ready before moving production. Anything else is not a place to return to.
    if !target.is_ready() && target.status != "Updating" {
        return Err(SwapError::NoRollbackTarget(format!(
            "the previous environment `{name}` is {}, not Ready; production stays on `{}`",
            target.status, live.name
        )));
    }
    Ok(target)
}

/// What weighted mode carries between invocations (short keys: the token holds at most 2048 chars).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    /// The environment traffic moves away from.
    #[serde(rename = "o")]
    pub old: String,
    /// The environment traffic moves to.
    #[serde(rename = "n")]
    pub new: String,
    /// Percent on `new` now.
    #[serde(rename = "p")]
    pub percent: u8,
    /// When that step was in sync (Unix seconds): bake time counts from here.
    #[serde(rename = "t")]
    pub since: u64,
}

/// Seconds left to bake the current step.
pub fn bake_left(shift: &Shift, bake: Duration, now: u64) -> u64 {
    (shift.since + bake.as_secs()).saturating_sub(now)
}

/// An HTTP check that production (or an environment) serves the expected version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `http://host`.
    pub base: String,
    /// `/version`.
    pub path: String,
    /// Connect here instead of resolving the URL's host (`ip:port`), like curl's --resolve.
    pub resolve: Option<String>,
    /// The body (trimmed) must equal this.
    pub expected: String,
    /// Keep retrying (DNS caches, in-flight swaps) this long.
    pub timeout: Duration,
}

/// Runs [`Check`]s: `Ok(what it saw)` when the expected version answered, `Err(what it saw)` when not.
pub trait Verify: Send + Sync {
    fn verify(&self, check: &Check) -> impl Future<Output = Result<String, String>> + Send;
}

#[cfg(test)]
mod tests;
