//! backup: a manual RDS snapshot of the stack's database before Stage runs the new version's migrations,
//! so a migration that breaks the version in production can be undone from a known point.
//!
//! The snapshot's identifier is derived from the pipeline execution (or the version), so a retried
//! invocation finds the snapshot an earlier one started instead of taking a second; its tags
//! (`beanswap:application`, `beanswap:version`, `beanswap:pipeline-execution`, `beanswap:kind=backup`)
//! say that beanswap took it, and only such snapshots of this instance are ever deleted: once the new
//! one is available, all but the newest `keep` are. RDS takes a snapshot in the background
//! (CreateDBSnapshot answers `creating`), so the action waits with continuation tokens until it is
//! `available`.
//!
//! [`decide`] says what a look at the snapshot means, [`to_delete`] which old ones go; [`run`] is the
//! sequence over the narrow [`RdsApi`] (the SDK's in the backup function, an in-memory fake in tests)
//! and an injected [`Clock`].

#[cfg(any(test, feature = "fakes"))]
pub mod fake;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aws_error::{unless_transient, AwsError, ErrorClass};
use crate::beanstalk::poll_delay;
use crate::clock::{from_unix_seconds, unix_seconds, Clock};
use crate::outcome::limits;
use crate::runner::ActionError;
use crate::{FailureKind, Outcome};

/// The output variables a successful backup sets (`#{Backup.SnapshotId}` in later actions).
pub const OUTPUT_VARIABLES: &[&str] = &["SnapshotId", "SnapshotArn"];

pub const TAG_APPLICATION: &str = crate::beanstalk::TAG_APPLICATION;
pub const TAG_VERSION: &str = crate::beanstalk::TAG_VERSION;
pub const TAG_PIPELINE_EXECUTION: &str = "beanswap:pipeline-execution";
/// What kind of snapshot beanswap took; only `backup` ones are pruned.
pub const TAG_KIND: &str = "beanswap:kind";
pub const KIND_BACKUP: &str = "backup";

/// A DB snapshot, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub instance: String,
    /// `creating`, `available`, `failed`, ...
    pub status: String,
    /// `manual` or `automated`.
    pub kind: String,
    pub created: Option<SystemTime>,
    pub percent: Option<i32>,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
}

/// The RDS calls the backup makes.
pub trait RdsApi: Send + Sync {
    /// DescribeDBSnapshots for one identifier; `None` when there is none (DBSnapshotNotFound).
    fn snapshot(&self, id: &str)
        -> impl Future<Output = Result<Option<Snapshot>, AwsError>> + Send;
    /// CreateDBSnapshot with tags.
    fn create_snapshot(
        &self,
        instance: &str,
        id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Snapshot, AwsError>> + Send;
    /// The instance's manual snapshots, every page.
    fn snapshots_of(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<Snapshot>, AwsError>> + Send;
    /// DeleteDBSnapshot.
    fn delete_snapshot(&self, id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Everything the backup needs, validated (the function's UserParameters become this).
#[derive(Debug, Clone)]
pub struct Plan {
    /// DBInstanceIdentifier of the stack's database.
    pub instance: String,
    pub application: String,
    pub version_label: String,
    pub pipeline_execution: Option<String>,
    /// The snapshot's identifier ([`snapshot_id`]).
    pub snapshot_id: String,
    /// How many of beanswap's backups of this instance to keep (the new one included).
    pub keep: usize,
    /// Give up waiting for `available` after this long.
    pub timeout: Duration,
    /// How long one invocation polls before handing over with a continuation token.
    pub poll_budget: Duration,
}

impl Plan {
    /// The tags the snapshot is created with.
    pub fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            (TAG_APPLICATION.to_string(), self.application.clone()),
            (TAG_VERSION.to_string(), self.version_label.clone()),
            (TAG_KIND.to_string(), KIND_BACKUP.to_string()),
        ];
        if let Some(e) = &self.pipeline_execution {
            tags.push((TAG_PIPELINE_EXECUTION.to_string(), e.clone()));
        }
        tags
    }

    /// Whether a snapshot is one beanswap took of this instance for this application.
    pub fn is_ours(&self, s: &Snapshot) -> bool {
        s.instance.eq_ignore_ascii_case(&self.instance)
            && s.tags.get(TAG_APPLICATION) == Some(&self.application)
            && s.tags.get(TAG_KIND).map(String::as_str) == Some(KIND_BACKUP)
    }
}

/// `beanswap-<application>-<8 hex of the execution id, or of the version>`: the same for every
/// invocation of one execution, so a retry adopts the snapshot instead of taking another, and within
/// RDS's rule (a letter first, letters, digits and single hyphens, at most 255).
pub fn snapshot_id(application: &str, version_label: &str, execution: Option<&str>) -> String {
    let seed = execution.unwrap_or(version_label);
    let hash: String = hex::encode(Sha256::digest(seed.as_bytes()))
        .chars()
        .take(8)
        .collect();
    let mut app = String::new();
    for c in application.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && (app.ends_with('-') || app.is_empty())) {
            app.push(c);
        }
    }
    let app: String = app.chars().take(100).collect();
    let app = app.trim_end_matches('-');
    if app.is_empty() {
        format!("beanswap-{hash}")
    } else {
        format!("beanswap-{app}-{hash}")
    }
}

/// Carried in the continuation token while RDS takes the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the backup began (Unix seconds), for the timeout and the reported time.
    #[serde(rename = "s")]
    pub started: u64,
    /// Polls so far, for backoff.
    #[serde(rename = "a")]
    pub attempt: u32,
    /// The last transient AWS trouble a poll met, for the progress summary.
    #[serde(rename = "x", default, skip_serializing_if = "String::is_empty")]
    pub transient: String,
}

/// What a look at the snapshot means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none yet: take it.
    Create,
    /// RDS is still taking it.
    Wait,
    /// It is available: keep the newest `keep` and report.
    Done,
    /// It failed, it is not ours, or it took too long.
    Fail(FailureKind, String),
}

/// The one rule for what the snapshot's state means. `elapsed` is the time since the backup began.
pub fn decide(plan: &Plan, found: Option<&Snapshot>, elapsed: Duration) -> Decision {
    let Some(s) = found else {
        return Decision::Create;
    };
    if !plan.is_ours(s) {
        return Decision::Fail(
            FailureKind::ConfigurationError,
            format!(
                "a DB snapshot named {} already exists and beanswap did not take it of {} for {} (tags {TAG_APPLICATION}/{TAG_KIND} missing or different, or another instance: {})",
                s.id, plan.instance, plan.application, s.instance
            ),
        );
    }
    match s.status.as_str() {
        "available" => Decision::Done,
        "creating" | "pending" | "copying" | "backing-up" if elapsed < plan.timeout => {
            Decision::Wait
        }
        "creating" | "pending" | "copying" | "backing-up" => Decision::Fail(
            FailureKind::JobFailed,
            format!(
                "the snapshot {} of {} was not available within {} (still {}{}); it is kept, and Stage did not run",
                s.id,
                plan.instance,
                humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                s.status,
                s.percent.map(|p| format!(", {p}%")).unwrap_or_default()
            ),
        ),
        other => Decision::Fail(
            FailureKind::JobFailed,
            format!(
                "the snapshot {} of {} is {other}, not available: without a backup the migration does not run",
                s.id, plan.instance
            ),
        ),
    }
}

/// Which of beanswap's backups of this instance to delete once `newest` is available: all but the
/// newest `keep` by creation time (the new one is always kept), never a snapshot without beanswap's
/// tags, of another application or instance, automated, or not available.
pub fn to_delete(plan: &Plan, snapshots: &[Snapshot], newest: &str) -> Vec<String> {
    let mut ours: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| plan.is_ours(s) && s.kind == "manual" && s.status == "available")
        .collect();
    // Newest first; the one just taken first of all, whatever the clocks say.
    ours.sort_by(|a, b| {
        (b.id == newest)
            .cmp(&(a.id == newest))
            .then(b.created.cmp(&a.created))
            .then(b.id.cmp(&a.id))
    });
    ours.iter()
        .skip(plan.keep.max(1))
        .map(|s| s.id.clone())
        .collect()
}

/// One invocation: look, create when there is nothing, wait (polls with backoff, transient AWS
/// trouble skipped) until the snapshot is available or the poll budget is spent, then prune and
/// report.
pub async fn run(
    rds: &impl RdsApi,
    clock: &impl Clock,
    plan: &Plan,
    state: Option<State>,
) -> Result<Outcome<State>, ActionError> {
    let invocation = clock.now();
    let mut state = state.unwrap_or_else(|| State {
        started: unix_seconds(invocation),
        ..State::default()
    });
    let began = from_unix_seconds(state.started);
    loop {
        let elapsed = clock.since(began);
        let looked = unless_transient(rds.snapshot(&plan.snapshot_id).await);
        let looked = match looked {
            Ok(v) => v,
            Err(e) => return Err(e.into()),
        };
        match looked {
            None => note(
                &mut state,
                "DescribeDBSnapshots was throttled or unavailable",
            ),
            Some(found) => {
                state.transient.clear();
                match decide(plan, found.as_ref(), elapsed) {
                    Decision::Create => {
                        match rds
                            .create_snapshot(&plan.instance, &plan.snapshot_id, &plan.tags())
                            .await
                        {
                            Ok(_) => {}
                            // An earlier invocation took it a moment ago: the next look adopts it.
                            Err(e) if e.code() == Some("DBSnapshotAlreadyExists") => {}
                            Err(e) if e.is_transient() => note(&mut state, &e.message),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Decision::Wait => {}
                    Decision::Done => {
                        let Some(s) = found else {
                            return Err(ActionError::failed("internal: done without a snapshot"));
                        };
                        return finish(rds, plan, &s, clock.since(began)).await;
                    }
                    Decision::Fail(kind, message) => {
                        return Err(ActionError::new(kind, message));
                    }
                }
            }
        }
        if clock.since(began) >= plan.timeout {
            return Err(ActionError::new(
                FailureKind::SystemUnavailable,
                format!(
                    "the snapshot {} of {} could not be read within {}: {}",
                    plan.snapshot_id,
                    plan.instance,
                    humantime::format_duration(Duration::from_secs(plan.timeout.as_secs())),
                    state.transient
                ),
            ));
        }
        state.attempt += 1;
        let delay = poll_delay(state.attempt);
        if clock.since(invocation) + delay > plan.poll_budget {
            let elapsed = clock.since(began);
            let percent =
                (elapsed.as_secs_f64() / plan.timeout.as_secs_f64() * 100.0).clamp(1.0, 95.0) as u8;
            let trouble = crate::aws_error::waiting_out(&state.transient);
            return Ok(Outcome::InProgress {
                summary: format!(
                    "RDS is taking snapshot {} of {} ({} s so far){trouble}",
                    plan.snapshot_id,
                    plan.instance,
                    elapsed.as_secs()
                ),
                percent,
                state,
            });
        }
        clock.sleep(delay).await;
    }
}

fn note(state: &mut State, trouble: &str) {
    state.transient = crate::outcome::truncate(trouble, 200);
}

/// The snapshot is available: delete beanswap's backups beyond the newest `keep` (a deletion that
/// fails is named in the summary and left for the next backup) and report. A permission refusal is
/// not left for next time: the role lacks what pruning needs and every later backup would be refused
/// too, so it fails the action as a PermissionError naming the action (the new snapshot stays).
async fn finish(
    rds: &impl RdsApi,
    plan: &Plan,
    s: &Snapshot,
    took: Duration,
) -> Result<Outcome<State>, ActionError> {
    let mut pruned = vec![];
    let mut kept_back = vec![];
    let refused = |e: AwsError| {
        let mut error = ActionError::from(e);
        error.message = format!(
            "snapshot {} of {} is available, but pruning the older backups was refused: {}",
            s.id, plan.instance, error.message
        );
        error
    };
    match rds.snapshots_of(&plan.instance).await {
        Ok(all) => {
            for id in to_delete(plan, &all, &s.id) {
                match rds.delete_snapshot(&id).await {
                    Ok(()) => pruned.push(id),
                    Err(e) if e.code() == Some("DBSnapshotNotFound") => pruned.push(id),
                    Err(e) if e.class() == ErrorClass::PermissionDenied => return Err(refused(e)),
                    Err(e) => kept_back.push(format!("{id} ({})", e.message)),
                }
            }
        }
        Err(e) if e.class() == ErrorClass::PermissionDenied => return Err(refused(e)),
        Err(e) => kept_back.push(format!(
            "the old backups could not be listed ({})",
            e.message
        )),
    }
    let mut summary = format!(
        "snapshot {} of {} is available after {} s; restore from it if the migration of {} goes wrong",
        s.id,
        plan.instance,
        took.as_secs(),
        plan.version_label
    );
    if !pruned.is_empty() {
        summary.push_str(&format!(
            "; deleted {} older backup{} beyond the newest {}: {}",
            pruned.len(),
            if pruned.len() == 1 { "" } else { "s" },
            plan.keep,
            pruned.join(", ")
        ));
    }
    if !kept_back.is_empty() {
        summary.push_str(&format!(
            "; not deleted this time: {}",
            kept_back.join("; ")
        ));
    }
    Ok(
        Outcome::succeeded(crate::outcome::truncate(&summary, limits::SUMMARY))
            .with_variable("SnapshotId", s.id.clone())
            .with_variable("SnapshotArn", s.arn.clone()),
    )
}
