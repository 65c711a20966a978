//! retire against AWS: gathers the facts (environments, their tags, the production Route 53 record,
//! application versions), asks the plan, and acts on it with the safety re-checks. Used by the retire
//! Lambda and by the CLI (`beanswap retire --dry-run` calls [`retire`] with `dry_run` set), both with
//! the SDK's clients ([`Clients::new`]). The calls go through the narrow traits
//! ([`BeanstalkApi`], [`Route53Api`], [`S3Api`]) and so is the clock ([`Clients::clock`]), so the sequence is
//! also tested on the in-memory fakes of [`crate::fakes`] (`sequence_tests.rs`).
//!
//! This file holds what a run is asked ([`Settings`]), what it carries between invocations
//! ([`Progress`]), why it stops ([`RetireError`]) and the acting itself; the facts are read in
//! `facts.rs` ([`gather`], [`record_targets`]), the outcome is written up in `report.rs`
//! ([`RetireReport`]), both re-exported here, and versions are pruned in `prune.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

pub use super::facts::{gather, record_targets};
use super::prune::{delete_versions, prune_plan};
pub use super::prune::{PRUNE_BATCH, VERSION_PAGE_SIZE};
pub use super::report::RetireReport;
use super::{idle, live_by, plan, Decision, PlanError, Policy, SkipReason};
use crate::artifacts::s3_config;
use crate::aws_error::{failure_kind, AwsError};
use crate::beanstalk::{Beanstalk, BeanstalkApi};
use crate::clock::{Clock, SystemClock};
use crate::route53::{Route53, Route53Api};
use crate::runner::ActionError;
use crate::s3::S3Api;

const ASG: &str = "aws:autoscaling:asg";

/// The clients retire uses, built once per cold start: the SDK's by default ([`Clients::new`]); the
/// in-memory fakes of [`crate::fakes`] in unit tests.
#[derive(Clone, Debug)]
pub struct Clients<B = Beanstalk, R = Route53, S = aws_sdk_s3::Client, C = SystemClock> {
    pub beanstalk: B,
    pub route53: R,
    pub s3: S,
    /// What "now" is, and how long this invocation has been at work (the pruning budget).
    pub clock: C,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Clients {
            beanstalk: Beanstalk::new(config),
            route53: Route53::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_config(config).build()),
            clock: SystemClock,
        }
    }
}

/// The production Route 53 record: a name in a hosted zone.
pub use crate::route53::RecordName as Record;

/// MinSize/MaxSize for kept environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    pub keep: usize,
    pub delete_bundles: bool,
}

/// What to retire and how; the retire function's UserParameters and the CLI's flags both become this.
#[derive(Debug, Clone)]
pub struct Settings {
    pub application: String,
    pub production_cname: String,
    pub record: Option<Record>,
    pub keep: usize,
    pub grace: Duration,
    pub scale_down_kept: Option<Scale>,
    pub prune: Option<Prune>,
    pub dry_run: bool,
    /// How long clients keep production's DNS answers (Beanstalk's CNAMEs: 60 s): an environment due
    /// for termination is terminated only once it has served no request for this long
    /// ([`super::idle`]).
    pub dns_ttl: Duration,
}

/// The DNS TTL Beanstalk gives environment CNAMEs (observed), the default of [`Settings::dns_ttl`].
pub const DEFAULT_DNS_TTL: Duration = Duration::from_secs(60);

/// Carried between invocations (the continuation token): only what cannot be seen again in AWS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// When the job started (Unix seconds).
    #[serde(rename = "s", default)]
    pub started: u64,
    /// Environments terminated so far.
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    pub terminated: Vec<String>,
    /// Kept environments already scaled down.
    #[serde(rename = "k", default, skip_serializing_if = "Vec::is_empty")]
    pub scaled: Vec<String>,
    /// Versions pruned so far.
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
    /// Versions pruned whose labels did not fit in the token.
    #[serde(rename = "n", default, skip_serializing_if = "is_zero")]
    pub pruned_unlisted: usize,
    /// Environments due for termination seen serving no request, and since when (Unix milliseconds):
    /// the idle rule's memory between invocations.
    #[serde(rename = "q", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quiet: BTreeMap<String, u64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Why retire stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("hosted zone {zone} has no A, AAAA or CNAME record named `{domain}`; check `domain` and `hosted_zone_id`")]
    RecordMissing { zone: String, domain: String },
    #[error(
        "could not terminate environment {name}: {source} (terminated before it: {terminated})"
    )]
    Terminate {
        name: String,
        source: AwsError,
        /// Environments this job terminated before the failure, or `none`.
        terminated: String,
    },
    #[error("could not scale down kept environment {name}: {source}")]
    ScaleDown { name: String, source: AwsError },
    #[error("could not delete application version `{label}`: {source}")]
    DeleteVersion { label: String, source: AwsError },
    #[error("could not delete the source bundle of application version `{label}` (the version is kept): {source}")]
    DeleteBundle { label: String, source: AwsError },
}

impl RetireError {
    /// The AWS error behind it, when there is one.
    pub fn aws(&self) -> Option<&AwsError> {
        match self {
            RetireError::Aws(source)
            | RetireError::Terminate { source, .. }
            | RetireError::ScaleDown { source, .. }
            | RetireError::DeleteVersion { source, .. }
            | RetireError::DeleteBundle { source, .. } => Some(source),
            RetireError::Plan(_) | RetireError::RecordMissing { .. } => None,
        }
    }
}

/// How long past the grace period retire keeps waiting out transient AWS trouble before it reports it.
pub const TRANSIENT_PATIENCE: Duration = Duration::from_secs(15 * 60);

/// One invocation of the retire action, as its Lambda and `beanswap run` make it: [`retire`], then
/// the outcome. Every invocation plans afresh from what AWS shows (terminations already made are seen
/// as such), so transient AWS trouble (throttling, AWS unavailable, an environment busy for a moment)
/// ends this invocation with a continuation token carrying the progress so far, and the next one
/// tries again, for at most the grace period plus [`TRANSIENT_PATIENCE`].
pub async fn run<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    state: Option<Progress>,
) -> Result<crate::Outcome<Progress>, ActionError> {
    let now = clients.clock.now();
    let report = match Box::pin(retire(clients, settings, state.clone())).await {
        Ok(report) => report,
        Err(e) => {
            let transient = e.aws().is_some_and(AwsError::is_transient);
            let progress = state.unwrap_or_else(|| Progress {
                started: unix(now),
                ..Progress::default()
            });
            let waited = Duration::from_secs(unix(now).saturating_sub(progress.started));
            if transient && waited < settings.grace + TRANSIENT_PATIENCE {
                return Ok(crate::Outcome::InProgress {
                    summary: format!("AWS refused for a moment, trying again shortly: {e}"),
                    percent: 1,
                    state: progress,
                });
            }
            return Err(e.into());
        }
    };
    let summary = report.summary();
    if !report.done {
        return Ok(crate::Outcome::InProgress {
            percent: report.percent(),
            state: report.progress,
            summary,
        });
    }
    let values = [report.terminated(), report.kept(), report.pruned()];
    let (terminated, kept, pruned) = if report.dry_run {
        // Nothing was terminated or pruned; the summary says what would have been.
        (String::new(), values[1].clone(), String::new())
    } else {
        (values[0].clone(), values[1].clone(), values[2].clone())
    };
    Ok(crate::Outcome::succeeded(summary)
        .with_variable(OUTPUT_VARIABLES[0], terminated)
        .with_variable(OUTPUT_VARIABLES[1], kept)
        .with_variable(OUTPUT_VARIABLES[2], pruned))
}

/// The output variables a final success sets.
pub const OUTPUT_VARIABLES: &[&str] = &["Terminated", "Kept", "PrunedVersions"];

impl From<RetireError> for ActionError {
    fn from(e: RetireError) -> Self {
        if let RetireError::Aws(aws) = e {
            return aws.into();
        }
        let kind = match &e {
            RetireError::Plan(_) | RetireError::RecordMissing { .. } => {
                crate::FailureKind::ConfigurationError
            }
            RetireError::Aws(source)
            | RetireError::Terminate { source, .. }
            | RetireError::ScaleDown { source, .. }
            | RetireError::DeleteVersion { source, .. }
            | RetireError::DeleteBundle { source, .. } => failure_kind(source.class()),
        };
        ActionError::new(kind, e.to_string())
    }
}

use crate::clock::unix_seconds as unix;

/// One invocation of retire: `progress` is `None` on the first. With `dry_run`, only Describe/List
/// calls are made and the report says what would happen.
pub async fn retire<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    progress: Option<Progress>,
) -> Result<RetireReport, RetireError> {
    let now = clients.clock.now();
    let mut progress = progress.unwrap_or_else(|| Progress {
        started: unix(now),
        ..Progress::default()
    });
    let facts = gather(&clients.beanstalk, &settings.application).await?;
    let targets = match &settings.record {
        Some(record) => record_targets(&clients.route53, record).await?,
        None => vec![],
    };
    let policy = Policy {
        application: &settings.application,
        production_cname: &settings.production_cname,
        record_targets: &targets,
        keep: settings.keep,
        grace: settings.grace,
        now,
        busy_patience: (!settings.dry_run).then(|| {
            UNIX_EPOCH + Duration::from_secs(progress.started) + settings.grace + TRANSIENT_PATIENCE
        }),
    };
    let mut plan = plan(&facts, &policy)?;
    // The idle rule: what each environment due for termination served lately decides whether it goes
    // now; `quiet` keeps since when it has served nothing.
    for e in plan
        .envs
        .iter_mut()
        .filter(|e| e.decision == Decision::Terminate)
    {
        let traffic = match clients.beanstalk.enhanced_health(&e.id).await {
            Ok(figures) => figures.traffic(),
            // "only available with AWS Elastic Beanstalk Enhanced Health": nobody can say.
            Err(err) if err.code() == Some("InvalidRequestException") => None,
            Err(err) => return Err(err.on(format!("environment {}", e.id)).into()),
        };
        let quiet = progress
            .quiet
            .get(&e.name)
            .map(|ms| UNIX_EPOCH + Duration::from_millis(*ms));
        let due = e.since.map_or(now, |(since, _)| since + settings.grace);
        let (decision, quiet) = idle(traffic, quiet, settings.dns_ttl, due, now);
        match quiet {
            Some(q) => {
                let ms = q.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
                progress
                    .quiet
                    .insert(e.name.clone(), u64::try_from(ms).unwrap_or(u64::MAX));
            }
            None => {
                progress.quiet.remove(&e.name);
            }
        }
        e.decision = decision;
    }
    let mut report = RetireReport {
        dry_run: settings.dry_run,
        plan: plan.clone(),
        kept_notes: vec![],
        prune: None,
        prune_remaining: 0,
        progress: Progress::default(),
        done: true,
        now,
    };
    // A kept environment busy for a moment (swap's own tag change on the old environment is an
    // environment update) is scaled down once it is Ready: the job goes on while the patience lasts,
    // instead of leaving it at full size until the next deployment.
    let mut kept_busy = false;
    if let Some(scale) = settings.scale_down_kept {
        for kept in plan.kept() {
            // The plan is made of the facts: every kept environment is among them.
            let Some(env) = facts.iter().map(|f| &f.env).find(|e| e.id == kept.id) else {
                continue;
            };
            let (note, busy) = scale_down(
                clients,
                settings,
                kept,
                env,
                scale,
                &mut progress,
                settings.dry_run,
            )
            .await?;
            kept_busy |= busy;
            report.kept_notes.push((kept.name.clone(), note));
        }
    }
    let kept_busy = kept_busy && policy.busy_patience.is_some_and(|patience| now < patience);
    if settings.dry_run {
        if let Some(prune) = settings.prune {
            report.prune = Some(prune_plan(clients, settings, &facts, prune).await?);
        }
        report.progress = progress;
        return Ok(report);
    }

    let due: Vec<usize> = plan
        .envs
        .iter()
        .enumerate()
        .filter(|(_, e)| e.decision == Decision::Terminate)
        .map(|(i, _)| i)
        .collect();
    for i in due {
        let (id, name) = (plan.envs[i].id.clone(), plan.envs[i].name.clone());
        match recheck(clients, settings, &id).await? {
            Some(reason) => plan.envs[i].decision = Decision::Skip(reason),
            None => match clients.beanstalk.terminate(&id).await {
                Ok(()) => {
                    tracing::info!(environment = %name, "terminated");
                    if !progress.terminated.contains(&name) {
                        progress.terminated.push(name);
                    }
                }
                // Lost a race with another change: report it, never force it.
                // Busy for a moment: looked at again while the job's patience lasts, never forced.
                Err(e) if e.is_busy() => {
                    plan.envs[i].decision = match policy.busy_patience {
                        Some(patience) if now < patience => Decision::Busy {
                            status: "not Ready".into(),
                            until: now + super::BUSY_RECHECK,
                        },
                        _ => Decision::Skip(SkipReason::ChangedState("not Ready".into())),
                    }
                }
                Err(source) => {
                    return Err(RetireError::Terminate {
                        name,
                        source,
                        terminated: if progress.terminated.is_empty() {
                            "none".into()
                        } else {
                            progress.terminated.join(", ")
                        },
                    })
                }
            },
        }
    }
    report.plan = plan;

    if report.plan.wait_until().is_some() {
        report.done = false;
    } else if let Some(prune) = settings.prune {
        let pruning = prune_plan(clients, settings, &facts, prune).await?;
        let deleted = delete_versions(clients, settings, &pruning, &mut progress).await?;
        report.prune_remaining = pruning.delete.len().saturating_sub(deleted);
        report.done = report.prune_remaining == 0;
        report.prune = Some(pruning);
    }
    if kept_busy {
        report.done = false;
    }
    report.progress = progress;
    Ok(report)
}

/// Just before TerminateEnvironment: why not to, if anything changed. Reads the environment again
/// (does it hold the production CNAME now? still Ready?) and the Route 53 record (is it its target now?).
async fn recheck<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    id: &str,
) -> Result<Option<SkipReason>, RetireError> {
    let Some(details) = clients.beanstalk.environment_detailed(id).await? else {
        return Ok(Some(SkipReason::ChangedState("gone".into())));
    };
    let targets = match &settings.record {
        Some(record) => record_targets(&clients.route53, record).await?,
        None => vec![],
    };
    let env = details.environment;
    if live_by(
        &env,
        details.endpoint_url.as_deref(),
        &settings.production_cname,
        &targets,
    )
    .is_some()
    {
        tracing::warn!(environment = %env.name, "serves production at termination time: skipped");
        return Ok(Some(SkipReason::BecameLive));
    }
    if !env.is_ready() {
        return Ok(Some(SkipReason::ChangedState(env.status.to_string())));
    }
    Ok(None)
}

/// Applies MinSize/MaxSize to a kept environment unless it already has them: the note for the summary,
/// and whether it was not scaled because it is busy (not Ready) now.
async fn scale_down<B: BeanstalkApi, R: Route53Api, S: S3Api, C: Clock>(
    clients: &Clients<B, R, S, C>,
    settings: &Settings,
    kept: &super::EnvPlan,
    env: &crate::beanstalk::Environment,
    scale: Scale,
    progress: &mut Progress,
    dry_run: bool,
) -> Result<(String, bool), RetireError> {
    let wanted = format!("MinSize {}, MaxSize {}", scale.min, scale.max);
    if progress.scaled.contains(&kept.name) {
        return Ok((format!("scaled to {wanted}"), false));
    }
    let err = |source| RetireError::ScaleDown {
        name: kept.name.clone(),
        source,
    };
    let current = clients
        .beanstalk
        .option_settings(&settings.application, &kept.name)
        .await
        .map_err(err)?;
    let get = |option: &str| current.get(&(ASG.to_string(), option.to_string())).cloned();
    let (min, max) = (scale.min.to_string(), scale.max.to_string());
    if get("MinSize").as_deref() == Some(min.as_str())
        && get("MaxSize").as_deref() == Some(max.as_str())
    {
        return Ok((format!("already at {wanted}"), false));
    }
    if kept.status != "Ready" {
        return Ok((
            format!("not scaled: {} (scaled once it is Ready)", kept.status),
            true,
        ));
    }
    if dry_run {
        return Ok((format!("would scale to {wanted}"), false));
    }
    // UpdateEnvironment of MinSize and MaxSize.
    clients
        .beanstalk
        .set_size(env, scale.min, scale.max)
        .await
        .map_err(err)?;
    progress.scaled.push(kept.name.clone());
    Ok((format!("scaled to {wanted}"), false))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aws_error::Service;

    #[test]
    fn errors_are_classified_for_the_pipeline() {
        let beanstalk = |code: &str| {
            AwsError::answered(
                Service::ElasticBeanstalk,
                "TerminateEnvironment",
                code,
                "no",
            )
        };
        let cases: Vec<(RetireError, crate::FailureKind)> = vec![
            (
                RetireError::RecordMissing {
                    zone: "Z".into(),
                    domain: "d".into(),
                },
                crate::FailureKind::ConfigurationError,
            ),
            (
                RetireError::Terminate {
                    name: "a".into(),
                    source: beanstalk("InsufficientPrivilegesException"),
                    terminated: "none".into(),
                },
                crate::FailureKind::PermissionError,
            ),
            (
                RetireError::Terminate {
                    name: "a".into(),
                    source: beanstalk("Throttling"),
                    terminated: "b".into(),
                },
                crate::FailureKind::SystemUnavailable,
            ),
            (
                RetireError::Aws(
                    AwsError::answered(
                        Service::Route53,
                        "ListResourceRecordSets",
                        "NoSuchHostedZone",
                        "gone",
                    )
                    .on("hosted zone Z"),
                ),
                crate::FailureKind::ConfigurationError,
            ),
            (
                RetireError::DeleteBundle {
                    label: "v1".into(),
                    source: AwsError::answered(Service::S3, "DeleteObject", "AccessDenied", "no")
                        .on("s3://b/k"),
                },
                crate::FailureKind::PermissionError,
            ),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let a: ActionError = e.into();
            assert_eq!((a.kind, a.message.as_str()), (kind, text.as_str()));
        }
        let e = RetireError::Terminate {
            name: "a".into(),
            source: beanstalk("Throttling"),
            terminated: "b".into(),
        };
        assert_eq!(
            e.to_string(),
            "could not terminate environment a: Elastic Beanstalk TerminateEnvironment failed: \
             Throttling: no (terminated before it: b)"
        );
    }
}
