//! The swap action's sequence, in one place for the Lambda and the CLI: [`observe`] reads what AWS shows
//! now ([`View`]), [`decide`] (pure) says what to do next ([`Step`]) from that view, what this invocation
//! has done ([`Progress`]) and the time, and [`run`] performs that one step, then looks again, until the
//! job is done, has failed, or hands over with a continuation token.
//!
//! Because every step is decided from what AWS shows, a retried invocation (Lambda retries, a person
//! presses Retry) finds what an earlier one did and is judged by the same rules: production already on
//! the staged environment is verified (and moved back when it fails) exactly like a move made now.
//!
//! Nothing on the path that moves production depends on a write that makes an environment busy
//! without waiting for Ready after it (a tag change is an environment update on Beanstalk): the staged
//! environment's one tag change is waited out before the move, and the old environment is marked out
//! of service only after the verified move.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{
    bake_left, check_health, check_preconditions, next_step, rollback_target, serving_environment,
    share_of, simple_record, weighted_records, Check, Domain, Mode, RecordType, Shift, SwapError,
    Verify, TAG_PREVIOUS_ENVIRONMENT, TAG_RESTORED_FROM,
};
use crate::aws_error::unless_transient;
use crate::beanstalk::{
    event_lines, poll_delay, BeanstalkApi, Environment, TAG_OUT_OF_SERVICE_SINCE,
};
use crate::clock::{from_unix_seconds, rfc3339, unix_seconds, Clock};
use crate::route53::{changes_to, Pointer, Record, Route53Api};
use crate::runner::ActionError;
use crate::Outcome;

/// The output variables a final success sets.
pub const OUTPUT_VARIABLES: &[&str] = &["LiveEnvironmentName", "PreviousEnvironmentName", "Mode"];

/// What production must serve after the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySpec {
    pub path: String,
    /// The version the body must be; the environment's version label when `None`.
    pub expected: Option<String>,
    /// Retry this long (DNS caches, resolvers that hold the old answer).
    pub timeout: Duration,
}

/// A swap, validated (the function's UserParameters and `beanswap swap`/`rollback` become this).
#[derive(Debug, Clone)]
pub struct Plan {
    pub application: String,
    pub mode: Mode,
    /// The environment to put into production; in rollback mode, the one to return to (else the live
    /// one's [`TAG_PREVIOUS_ENVIRONMENT`]).
    pub staged: Option<String>,
    /// Production's CNAME, as a prefix or in full.
    pub production_cname: Option<String>,
    pub domain: Option<Domain>,
    /// Weighted mode: percent on the new environment after each step.
    pub steps: Vec<u8>,
    /// Weighted mode: how long each step runs, healthy, before the next.
    pub bake: Duration,
    pub verify: Option<VerifySpec>,
    /// Reach every checked host at this address (`ip:port`), like curl --resolve.
    pub resolve: Option<String>,
    /// `Green` or `Yellow`: the staged environment's health now.
    pub min_health: String,
    /// How long a CNAME swap or a Route 53 change may take to show, and how long a busy environment is
    /// waited for (counted from the job's start).
    pub timeout: Duration,
}

/// Carried between invocations (short keys: the token holds at most 2048 characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the job began (Unix seconds): waiting for a busy environment counts from here.
    #[serde(rename = "s")]
    pub started: u64,
    /// Weighted mode: the shift in progress.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
}

/// What AWS shows now, as far as the decision needs it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The application's environments that are not terminated.
    pub environments: Vec<Environment>,
    /// The staged environment (forward modes), when it exists.
    pub staged: Option<Environment>,
    pub staged_tags: BTreeMap<String, String>,
    /// The environment serving production, when one does (the CNAME's holder, or the domain's records'
    /// largest share other than the staged one; the staged one when it has everything).
    pub live: Option<Environment>,
    pub live_tags: BTreeMap<String, String>,
    /// The domain's records (domain modes).
    pub records: Option<Vec<Record>>,
}

impl View {
    fn named(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Replaces an environment with a fresher reading of it, wherever the view holds it.
    pub fn update(&mut self, env: Environment) {
        for slot in self
            .environments
            .iter_mut()
            .chain(self.staged.iter_mut())
            .chain(self.live.iter_mut())
        {
            if slot.id == env.id {
                *slot = env.clone();
            }
        }
    }

    /// The staged environment's share of the domain (domain modes).
    fn staged_share(&self) -> i64 {
        match (&self.records, &self.staged) {
            (Some(records), Some(staged)) => share_of(records, &staged.cname),
            _ => 0,
        }
    }
}

/// What this invocation has done so far (a new invocation starts afresh and looks at AWS).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Production moved from this environment now.
    pub moved_from: Option<Environment>,
    /// The records before this invocation changed them (route53 mode restores exactly these).
    pub before: Option<Vec<Record>>,
    /// The version check's verdict: `Ok(what it saw)` or `Err(what it saw)`.
    pub verified: Option<Result<String, String>>,
    /// Production was moved back, because of this.
    pub moved_back: Option<String>,
    /// The environment production left is marked out of service.
    pub marked: bool,
    /// Rollback: the restored environment's tags say so.
    pub restored_tagged: bool,
    /// The staged environment's tags were written now.
    pub prepared: bool,
    /// Weighted mode: the step applied now.
    pub shifted: Option<u8>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Wait until these environments are Ready (busy for a moment: a tag change, an update).
    AwaitReady {
        waiting_for: Vec<String>,
    },
    /// One tag change on the staged environment: where it comes from, no out-of-service mark.
    Prepare {
        staged: Environment,
        from: String,
    },
    /// SwapEnvironmentCNAMEs, then wait until `to` holds production.
    SwapCnames {
        from: Environment,
        to: Environment,
    },
    /// Make the domain's records exactly these, in one batch, and wait for INSYNC.
    Point {
        records: Vec<Record>,
        comment: String,
    },
    /// Production back from `from` to `to` because of `reason`: a CNAME swap, or these records.
    MoveBack {
        from: Environment,
        to: Environment,
        reason: String,
        records: Option<Vec<Record>>,
    },
    /// Weighted mode: this share on the new environment.
    Shift {
        old: Environment,
        new: Environment,
        percent: u8,
    },
    /// Check what production (or the new environment) serves.
    Verify(Check),
    /// Mark the environment production left as out of service (retire's grace period counts from it).
    MarkOutOfService(Environment),
    /// Rollback: the restored environment forgets where it came from and says where it was restored
    /// from, so a repeated rollback does nothing.
    TagRestored {
        env: Environment,
        from: String,
    },
    /// Hand over: look again in the next invocation (baking a weighted step, waiting for Ready).
    HandOver {
        summary: String,
        percent: u8,
    },
    Done {
        summary: String,
        live: String,
        previous: String,
    },
    Fail(String),
    /// Fail because the environment's health does not pass: the message gets its latest events.
    Unhealthy {
        message: String,
        env: Environment,
    },
}

/// The check of `host` expecting `env`'s version (or the plan's).
fn check(plan: &Plan, host: &str, env: &Environment) -> Option<Check> {
    let v = plan.verify.as_ref()?;
    Some(Check {
        base: format!("http://{}", host.trim_end_matches('.')),
        path: v.path.clone(),
        resolve: plan.resolve.clone(),
        expected: v
            .expected
            .clone()
            .or_else(|| env.version_label.clone())
            .unwrap_or_default(),
        timeout: v.timeout,
    })
}

/// The name production is served under: the domain in domain modes, else the production CNAME.
fn production_host(plan: &Plan, live: &Environment) -> String {
    match &plan.domain {
        Some(d) => d.name.clone(),
        None => live.cname.clone(),
    }
}

/// The verdict's note for a summary, when there was a check.
fn note(progress: &Progress) -> String {
    match &progress.verified {
        Some(Ok(seen)) => format!("verified: {seen}"),
        _ => "not verified over HTTP (no `verify` in UserParameters)".into(),
    }
}

/// The next step. Pure: every path has a unit test.
pub fn decide(
    plan: &Plan,
    view: &View,
    progress: &Progress,
    state: &State,
    now: SystemTime,
) -> Step {
    match plan.mode {
        Mode::Rollback => decide_rollback(plan, view, progress, state, now),
        Mode::Weighted if state.shift.is_some() || progress.shifted.is_some() => {
            decide_shifting(plan, view, progress, state, now)
        }
        _ => decide_forward(plan, view, progress, state, now),
    }
}

/// How long a busy environment may keep the job waiting, from its start.
fn waited_too_long(plan: &Plan, state: &State, now: SystemTime) -> bool {
    now.duration_since(from_unix_seconds(state.started))
        .unwrap_or_default()
        >= plan.timeout
}

/// Waits for `envs` to be Ready, or fails when that has taken too long; `None` when all are Ready.
fn await_ready(
    plan: &Plan,
    state: &State,
    now: SystemTime,
    envs: &[(&'static str, &Environment)],
) -> Option<Step> {
    let busy: Vec<&(&str, &Environment)> = envs.iter().filter(|(_, e)| !e.is_ready()).collect();
    let (role, first) = busy.first()?;
    // Only a moment's business is waited for; a launch, a termination or a failure is not.
    if busy.iter().all(|(_, e)| e.status == "Updating") && !waited_too_long(plan, state, now) {
        return Some(Step::AwaitReady {
            waiting_for: busy.iter().map(|(_, e)| e.name.clone()).collect(),
        });
    }
    Some(Step::Fail(
        SwapError::NotReady {
            role,
            name: first.name.clone(),
            status: if first.status == "Updating" {
                format!("still Updating after {}s", plan.timeout.as_secs())
            } else {
                first.status.clone()
            },
        }
        .to_string(),
    ))
}

/// cname, route53 and the start of weighted: production moves to the staged environment.
fn decide_forward(
    plan: &Plan,
    view: &View,
    progress: &Progress,
    state: &State,
    now: SystemTime,
) -> Step {
    let Some(staged) = &view.staged else {
        return Step::Fail(
            SwapError::StagedMissing {
                application: plan.application.clone(),
                name: plan.staged.clone().unwrap_or_default(),
            }
            .to_string(),
        );
    };
    // Moved back in this invocation: mark the environment that failed, then report.
    if let Some(reason) = &progress.moved_back {
        if !progress.marked {
            return Step::MarkOutOfService(staged.clone());
        }
        return Step::Fail(reason.clone());
    }
    let Some(live) = &view.live else {
        return Step::Fail(match (&plan.domain, &plan.production_cname) {
            (Some(d), _) => SwapError::NoRecord {
                domain: d.name.clone(),
                zone: d.zone.clone(),
            }
            .to_string(),
            (None, production) => SwapError::NoLive {
                application: plan.application.clone(),
                production: production.clone().unwrap_or_default(),
            }
            .to_string(),
        });
    };
    let on_staged =
        live.id == staged.id || (plan.mode == Mode::Weighted && view.staged_share() >= 100);
    if on_staged {
        return decide_settled(plan, view, progress, staged);
    }
    if let Some(wait) = await_ready(plan, state, now, &[("staged", staged), ("live", live)]) {
        return wait;
    }
    if let Err(e) = check_preconditions(staged, live, &plan.application, &plan.min_health) {
        return fail_for(e, staged);
    }
    let prepared = view.staged_tags.get(TAG_PREVIOUS_ENVIRONMENT) == Some(&live.name)
        && !view.staged_tags.contains_key(TAG_OUT_OF_SERVICE_SINCE);
    if !prepared {
        if progress.prepared {
            // Written, but not what it reads back: never loop on it.
            return Step::Fail(format!(
                "the tags of `{}` do not read back as written; nothing was swapped",
                staged.name
            ));
        }
        return Step::Prepare {
            staged: staged.clone(),
            from: live.name.clone(),
        };
    }
    match (plan.mode, &plan.domain) {
        (Mode::Cname, _) | (_, None) => Step::SwapCnames {
            from: live.clone(),
            to: staged.clone(),
        },
        (Mode::Weighted, Some(_)) => Step::Shift {
            old: live.clone(),
            new: staged.clone(),
            percent: next_step(&plan.steps, view.staged_share()).unwrap_or(100),
        },
        (_, Some(domain)) => match simple_record(domain, staged) {
            Ok(record) => Step::Point {
                records: vec![record],
                comment: format!("beanswap swap: {} -> {}", live.name, staged.name),
            },
            Err(e) => Step::Fail(e.to_string()),
        },
    }
}

/// Production is on the staged environment: moved now, by an earlier invocation, or launched there as
/// the first environment. Judged the same way each time: the domain's first record when there is
/// none, the version check, then the old environment marked out of service, or the move undone.
fn decide_settled(plan: &Plan, view: &View, progress: &Progress, staged: &Environment) -> Step {
    // The first deployment to a custom domain: no record yet, it gets one.
    if let (Some(domain), Some(records)) = (&plan.domain, &view.records) {
        if records.is_empty() {
            if let Err(e) = check_health(staged, &plan.min_health) {
                return fail_for(e, staged);
            }
            return match simple_record(domain, staged) {
                Ok(record) => Step::Point {
                    records: vec![record],
                    comment: format!(
                        "beanswap: first deployment, {} serves the domain",
                        staged.name
                    ),
                },
                Err(e) => Step::Fail(e.to_string()),
            };
        }
    }
    let previous_name = view.staged_tags.get(TAG_PREVIOUS_ENVIRONMENT).cloned();
    let previous = previous_name.as_deref().and_then(|n| view.named(n));
    let host = production_host(plan, staged);
    if progress.verified.is_none() {
        if let Some(check) = check(plan, &host, staged) {
            return Step::Verify(check);
        }
    }
    let how = match (&progress.moved_from, &previous_name) {
        (Some(from), _) => Moved::Now(from.name.clone()),
        (None, Some(from)) => Moved::Earlier(from.clone()),
        (None, None) if progress.before.as_ref().is_some_and(Vec::is_empty) => Moved::FirstRecord,
        (None, None) => Moved::Never,
    };
    match &progress.verified {
        Some(Err(seen)) => {
            let what = how.failure(plan, staged, &host, seen);
            match previous {
                // Judged like a move made now: production goes back where it came from.
                Some(prev) if prev.is_ready() => match back_records(plan, progress, staged, prev) {
                    Ok(records) => Step::MoveBack {
                        from: staged.clone(),
                        to: prev.clone(),
                        reason: what,
                        records,
                    },
                    Err(e) => Step::Fail(format!("{what}. Moving back failed: {e}")),
                },
                _ => Step::Fail(format!(
                    "{what}; there is no Ready environment to move production back to"
                )),
            }
        }
        _ => {
            if let Some(prev) = previous {
                let unmarked = !progress.marked && how.moved_now();
                if unmarked && prev.id != staged.id {
                    return Step::MarkOutOfService(prev.clone());
                }
            }
            Step::Done {
                summary: how.success(plan, staged, &host, progress),
                live: staged.name.clone(),
                previous: previous_name.unwrap_or_default(),
            }
        }
    }
}

/// How production came to be on the staged environment, for the summary.
enum Moved {
    Now(String),
    Earlier(String),
    FirstRecord,
    Never,
}

impl Moved {
    fn moved_now(&self) -> bool {
        matches!(self, Moved::Now(_))
    }

    fn success(
        &self,
        plan: &Plan,
        staged: &Environment,
        host: &str,
        progress: &Progress,
    ) -> String {
        let note = note(progress);
        match (self, plan.mode, &plan.domain) {
            (Moved::Now(from), Mode::Cname, _) | (Moved::Now(from), _, None) => format!(
                "swapped CNAMEs: `{}` now serves `{host}` (was `{from}`); {note}",
                staged.name
            ),
            (Moved::Now(from), Mode::Weighted, Some(d)) => format!(
                "all of `{}` on `{}` (was `{from}`), in steps {:?}; {note}",
                d.name, staged.name, plan.steps
            ),
            (Moved::Now(from), _, Some(d)) => format!(
                "`{}` now points at `{}` (was `{from}`), in sync; {note}",
                d.name, staged.name
            ),
            (Moved::FirstRecord, _, Some(d)) => format!(
                "first deployment: created `{}` pointing at `{}`, in sync; {note}",
                d.name, staged.name
            ),
            (Moved::Earlier(from), _, _) => format!(
                "`{}` already serves production (an earlier invocation moved it there from `{from}`); nothing changed; {note}",
                staged.name
            ),
            _ => format!(
                "`{}` already serves production (it was launched on the production CNAME as the first environment, so there was nothing to move); nothing changed; {note}",
                staged.name
            ),
        }
    }

    fn failure(&self, plan: &Plan, staged: &Environment, host: &str, seen: &str) -> String {
        match (self, plan.mode, &plan.domain) {
            (Moved::Now(_), Mode::Cname, _) | (Moved::Now(_), _, None) => {
                format!("verification failed after the CNAME swap: {seen}")
            }
            (Moved::Now(_), Mode::Weighted, _) => format!("verification failed at 100%: {seen}"),
            (Moved::Now(_), _, Some(d)) => format!(
                "verification failed after pointing `{}` at `{}`: {seen}",
                d.name, staged.name
            ),
            (Moved::FirstRecord, _, Some(d)) => format!(
                "created `{}` pointing at `{}` (the first deployment: no record existed), but the version check failed: {seen}",
                d.name, staged.name
            ),
            _ => format!(
                "`{}` serves production at `{host}`, but the version check failed: {seen}",
                staged.name
            ),
        }
    }
}

/// How production returns from `staged` to `previous`: `None` for a CNAME swap, else the records.
fn back_records(
    plan: &Plan,
    progress: &Progress,
    staged: &Environment,
    previous: &Environment,
) -> Result<Option<Vec<Record>>, SwapError> {
    match (&plan.domain, plan.mode) {
        (None, _) | (_, Mode::Cname) => Ok(None),
        (Some(domain), Mode::Weighted) => {
            Ok(Some(weighted_records(domain, staged, previous, 100)?))
        }
        (Some(domain), _) => Ok(Some(match &progress.before {
            Some(before) if !before.is_empty() => before.clone(),
            _ => vec![simple_record(domain, previous)?],
        })),
    }
}

/// A failed precondition: health failures carry the environment, for its events.
fn fail_for(e: SwapError, env: &Environment) -> Step {
    match e {
        SwapError::Unhealthy { .. } => Step::Unhealthy {
            message: e.to_string(),
            env: env.clone(),
        },
        e => Step::Fail(e.to_string()),
    }
}

/// The report after production went back to `previous` because of `reason`.
pub fn moved_back_report(
    plan: &Plan,
    reason: &str,
    staged: &Environment,
    previous: &Environment,
) -> String {
    match (&plan.domain, plan.mode) {
        (None, _) | (_, Mode::Cname) => format!(
            "{reason}. Swapped back: `{}` serves `{}` again and `{}` is out of service",
            previous.name,
            staged.cname,
            staged.name
        ),
        (Some(d), Mode::Weighted) => format!(
            "{reason}. Shifted all weight back: `{}` has 100% of `{}` again, `{}` 0% and out of service",
            previous.name, d.name, staged.name
        ),
        (Some(d), _) => format!(
            "{reason}. Restored the previous records: `{}` serves `{}` again and `{}` is out of service",
            previous.name, d.name, staged.name
        ),
    }
}

/// Weighted mode after its first step: bake, check, and the next step (or all weight back).
fn decide_shifting(
    plan: &Plan,
    view: &View,
    progress: &Progress,
    state: &State,
    now: SystemTime,
) -> Step {
    let Some(shift) = &state.shift else {
        return Step::Fail("internal: weighted mode without a shift".into());
    };
    if let Some(reason) = &progress.moved_back {
        if !progress.marked {
            if let Some(new) = view.named(&shift.new) {
                return Step::MarkOutOfService(new.clone());
            }
        }
        return Step::Fail(reason.clone());
    }
    let (Some(old), Some(new)) = (view.named(&shift.old), view.named(&shift.new)) else {
        return Step::Fail(format!(
            "weighted shift from `{}` to `{}` at {}%: one of them no longer exists; records left as they are",
            shift.old, shift.new, shift.percent
        ));
    };
    if shift.percent >= 100 {
        // The last step is applied: production is the new environment's.
        let staged_view = View {
            staged: Some(new.clone()),
            live: Some(new.clone()),
            ..view.clone()
        };
        let mut p = progress.clone();
        if p.moved_from.is_none() {
            p.moved_from = Some(old.clone());
        }
        return decide_settled(plan, &staged_view, &p, new);
    }
    let domain = plan
        .domain
        .as_ref()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    // A step applied now bakes before it is judged.
    if progress.shifted.is_some() {
        return Step::HandOver {
            summary: format!(
                "{}% of `{domain}` on `{}`, {}% on `{}`; baking {}s",
                shift.percent,
                new.name,
                100 - shift.percent,
                old.name,
                plan.bake.as_secs()
            ),
            percent: shift.percent,
        };
    }
    let shift_back = |reason: String| match plan.domain.as_ref() {
        Some(domain) => match weighted_records(domain, new, old, 100) {
            Ok(records) => Step::MoveBack {
                from: new.clone(),
                to: old.clone(),
                reason,
                records: Some(records),
            },
            Err(e) => Step::Fail(format!(
                "{reason}. Shifting the weight back FAILED ({e}); run `beanswap rollback`"
            )),
        },
        None => Step::Fail(reason),
    };
    if let Err(e) = check_health(new, &plan.min_health) {
        let reason = match e {
            SwapError::Unhealthy { health, detail, .. } => format!(
                "at {}% `{}` turned unhealthy: health {health}{detail}",
                shift.percent, new.name
            ),
            e => format!("at {}% on `{}`: {e}", shift.percent, new.name),
        };
        return shift_back(reason);
    }
    match &progress.verified {
        None => {
            if let Some(check) = check(plan, &new.cname, new) {
                return Step::Verify(check);
            }
        }
        Some(Err(seen)) => {
            return shift_back(format!(
                "at {}% the version check of `{}` failed: {seen}",
                shift.percent, new.name
            ))
        }
        Some(Ok(_)) => {}
    }
    let left = bake_left(shift, plan.bake, unix_seconds(now));
    if left > 0 {
        return Step::HandOver {
            summary: format!(
                "{}% of `{domain}` on `{}`, healthy; {left}s of baking left",
                shift.percent, new.name
            ),
            percent: shift.percent,
        };
    }
    Step::Shift {
        old: old.clone(),
        new: new.clone(),
        percent: next_step(&plan.steps, i64::from(shift.percent)).unwrap_or(100),
    }
}

/// Rollback: production back to the environment it came from.
fn decide_rollback(
    plan: &Plan,
    view: &View,
    progress: &Progress,
    state: &State,
    now: SystemTime,
) -> Step {
    let Some(live) = &view.live else {
        return Step::Fail(
            SwapError::NoRollbackTarget(
                "no environment serves production (check `production_cname`, or `domain` and `hosted_zone_id`)".into(),
            )
            .to_string(),
        );
    };
    if let Some(from) = &progress.moved_from {
        if !progress.restored_tagged {
            if let Some(w) = await_ready(plan, state, now, &[("restored", live)]) {
                return w;
            }
            return Step::TagRestored {
                env: live.clone(),
                from: from.name.clone(),
            };
        }
        if !progress.marked {
            return Step::MarkOutOfService(from.clone());
        }
        let how = match (&plan.domain, &view.records) {
            (Some(d), Some(records)) if records.iter().any(|r| r.weight.is_some()) => format!(
                "`{}` weighted records: all weight on `{}`",
                d.name, live.name
            ),
            (Some(d), _) => format!("`{}` points at `{}` again", d.name, live.name),
            (None, _) => format!(
                "CNAME swap: `{}` holds `{}` again",
                live.name,
                plan.production_cname.clone().unwrap_or_default()
            ),
        };
        let summary = format!(
            "rolled production back from `{}` to `{}` ({how}); `{}` is out of service since now",
            from.name, live.name, from.name
        );
        if progress.verified.is_none() {
            if let Some(check) = check(plan, &production_host(plan, live), live) {
                return Step::Verify(check);
            }
        }
        return match &progress.verified {
            Some(Err(seen)) => {
                Step::Fail(format!("{summary}; but the version check failed: {seen}"))
            }
            _ => Step::Done {
                summary: format!("{summary}; {}", note(progress)),
                live: live.name.clone(),
                previous: from.name.clone(),
            },
        };
    }
    // Already rolled back (a retried job, a second click): the restored environment says so.
    if plan.staged.is_none() && !view.live_tags.contains_key(TAG_PREVIOUS_ENVIRONMENT) {
        if let Some(from) = view.live_tags.get(TAG_RESTORED_FROM) {
            if view.named(from).is_some() {
                return Step::Done {
                    summary: format!(
                        "production is already back on `{}` (rolled back from `{from}`); nothing changed",
                        live.name
                    ),
                    live: live.name.clone(),
                    previous: from.clone(),
                };
            }
        }
    }
    let target = match rollback_target(
        live,
        view.live_tags
            .get(TAG_PREVIOUS_ENVIRONMENT)
            .map(String::as_str),
        plan.staged.as_deref(),
        &view.environments,
    ) {
        Ok(t) => t.clone(),
        Err(e) => return Step::Fail(e.to_string()),
    };
    if let Some(w) = await_ready(plan, state, now, &[("previous", &target), ("live", live)]) {
        return w;
    }
    match (&plan.domain, &view.records) {
        (Some(domain), Some(records)) => {
            // Keep the record type production already has (an alias stays an alias, a CNAME a CNAME).
            let mut domain = domain.clone();
            match records.first().map(|r| &r.pointer) {
                Some(Pointer::Cname { ttl, .. }) => {
                    domain.record_type = RecordType::Cname;
                    domain.ttl = *ttl;
                }
                Some(Pointer::Alias { .. }) => domain.record_type = RecordType::Alias,
                None => {}
            }
            let weighted = records.iter().any(|r| r.weight.is_some());
            let desired = if weighted {
                weighted_records(&domain, live, &target, 100)
            } else {
                simple_record(&domain, &target).map(|r| vec![r])
            };
            match desired {
                Ok(records) => Step::Point {
                    records,
                    comment: format!("beanswap rollback: {} -> {}", live.name, target.name),
                },
                Err(e) => Step::Fail(e.to_string()),
            }
        }
        _ => Step::SwapCnames {
            from: live.clone(),
            to: target,
        },
    }
}

/// The clients a swap uses.
pub struct Clients<'a, B, R, V, C> {
    pub eb: &'a B,
    pub r53: &'a R,
    pub verifier: &'a V,
    pub clock: &'a C,
}

/// Reads what [`decide`] needs.
pub async fn observe<B: BeanstalkApi, R: Route53Api>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    state: &State,
) -> Result<View, SwapError> {
    let environments = eb.environments(&plan.application).await?;
    let records = match &plan.domain {
        Some(d) => Some(
            r53.records(&d.zone, &d.name)
                .await?
                .into_iter()
                .map(|e| e.record)
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let staged = match plan.mode {
        Mode::Rollback => None,
        _ => plan
            .staged
            .as_deref()
            .and_then(|n| environments.iter().find(|e| e.name == n))
            .cloned(),
    };
    let live = live_of(
        plan,
        &environments,
        records.as_deref(),
        staged.as_ref(),
        state,
    )?;
    let staged_tags = match &staged {
        Some(s) => eb.tags(&s.arn).await?,
        None => BTreeMap::new(),
    };
    let live_tags = match (&live, plan.mode) {
        (Some(l), Mode::Rollback) => eb.tags(&l.arn).await?,
        _ => BTreeMap::new(),
    };
    Ok(View {
        environments,
        staged,
        staged_tags,
        live,
        live_tags,
        records,
    })
}

/// The environment serving production. By the CNAME without a domain; with one, by the records: the
/// largest share other than the staged environment's (the staged one when it has all of it); before the
/// domain has any record, the production CNAME's holder.
pub fn live_of(
    plan: &Plan,
    environments: &[Environment],
    records: Option<&[Record]>,
    staged: Option<&Environment>,
    state: &State,
) -> Result<Option<Environment>, SwapError> {
    let by_cname = || {
        plan.production_cname.as_deref().and_then(|p| {
            environments
                .iter()
                .find(|e| !e.is_terminated() && e.holds_cname(p))
                .cloned()
        })
    };
    let (Some(records), Some(domain)) = (records, &plan.domain) else {
        return Ok(by_cname());
    };
    if records.is_empty() {
        return Ok(by_cname());
    }
    // While shifting, the old environment stays "live" until the last step.
    let except = match (&state.shift, staged) {
        (Some(_), _) => None,
        (None, Some(s)) if share_of(records, &s.cname) < 100 => Some(s.cname.as_str()),
        _ => None,
    };
    let serving = serving_environment(records, environments, except).map_err(|target| {
        SwapError::UnknownTarget {
            domain: domain.name.clone(),
            target,
            application: plan.application.clone(),
        }
    })?;
    Ok(serving.cloned())
}

/// One invocation: observe, decide, perform, until done, failed or handed over. `budget` is how long
/// this invocation may keep waiting for busy environments before it hands over.
pub async fn run<B, R, V, C>(
    clients: &Clients<'_, B, R, V, C>,
    plan: &Plan,
    state: Option<State>,
    budget: Duration,
) -> Result<Outcome<State>, ActionError>
where
    B: BeanstalkApi,
    R: Route53Api,
    V: Verify,
    C: Clock,
{
    let Clients {
        eb,
        r53,
        verifier,
        clock,
    } = clients;
    let began = clock.now();
    let mut state = state.unwrap_or_else(|| State {
        started: unix_seconds(began),
        shift: None,
    });
    let mut progress = Progress::default();
    let mut attempt = 0u32;
    // Far more than any sequence needs; only a bug could loop forever, and a job must always report.
    // What AWS shows, kept up to date by the steps that know what they changed; `None` when it must be
    // read again. Fewer calls than reading everything before every step (AWS throttles Beanstalk).
    let mut known: Option<View> = None;
    for _ in 0..200 {
        let observed = match known.take() {
            Some(view) => Some(Ok(view)),
            None => unless_transient(observe_aws(*eb, *r53, plan, &state).await)?,
        };
        let mut view = match observed {
            Some(view) => view?,
            None => {
                attempt += 1;
                if clock.since(began) + poll_delay(attempt) > budget {
                    return Ok(Outcome::InProgress {
                        summary: "AWS asked us to slow down; looking again shortly".into(),
                        percent: 1,
                        state,
                    });
                }
                clock.sleep(poll_delay(attempt)).await;
                continue;
            }
        };
        let step = decide(plan, &view, &progress, &state, clock.now());
        tracing::debug!(?step, "swap step");
        match step {
            Step::Done {
                summary,
                live,
                previous,
            } => {
                return Ok(Outcome::succeeded(summary)
                    .with_variable(OUTPUT_VARIABLES[0], live)
                    .with_variable(OUTPUT_VARIABLES[1], previous)
                    .with_variable(OUTPUT_VARIABLES[2], plan.mode.as_str()))
            }
            Step::Fail(message) => return Err(ActionError::failed(message)),
            Step::HandOver { summary, percent } => {
                return Ok(Outcome::InProgress {
                    summary,
                    percent,
                    state,
                })
            }
            Step::AwaitReady { waiting_for } => {
                attempt += 1;
                let delay = poll_delay(attempt).min(Duration::from_secs(5));
                if clock.since(began) + delay > budget {
                    return Ok(Outcome::InProgress {
                        summary: format!(
                            "waiting for {} to be Ready again (busy for a moment: an update or a tag change is being applied)",
                            waiting_for.join(" and ")
                        ),
                        percent: 5,
                        state,
                    });
                }
                clock.sleep(delay).await;
                // Read only the environments waited for, not everything again.
                for name in &waiting_for {
                    let Some(id) = view.named(name).map(|e| e.id.clone()) else {
                        continue;
                    };
                    if let Some(Some(now)) = unless_transient(eb.environment(&id).await)? {
                        view.update(now);
                    }
                }
                known = Some(view);
            }
            Step::Prepare { staged, from } => {
                eb.retag(
                    &staged.arn,
                    &[(TAG_PREVIOUS_ENVIRONMENT, from.clone())],
                    &[TAG_OUT_OF_SERVICE_SINCE],
                )
                .await
                .map_err(SwapError::from)?;
                progress.prepared = true;
                // What was written, and what it does: an environment update (FIDELITY.md).
                view.staged_tags
                    .insert(TAG_PREVIOUS_ENVIRONMENT.to_string(), from);
                view.staged_tags.remove(TAG_OUT_OF_SERVICE_SINCE);
                view.update(Environment {
                    status: "Updating".into(),
                    ..staged
                });
                known = Some(view);
            }
            Step::Unhealthy { message, env } => {
                let events = latest_events(*eb, &env).await;
                let events = if events.is_empty() {
                    events
                } else {
                    format!(". Latest events:\n{events}")
                };
                return Err(ActionError::failed(format!("{message}{events}")));
            }
            Step::SwapCnames { from, to } => {
                let production = match plan.mode {
                    Mode::Rollback => from.cname.clone(),
                    _ => plan
                        .production_cname
                        .clone()
                        .unwrap_or_else(|| from.cname.clone()),
                };
                let now_to =
                    swap_cnames(*eb, *clock, &from, &to, &production, plan.timeout).await?;
                // The two CNAMEs changed places; nothing else did.
                view.update(Environment {
                    cname: to.cname.clone(),
                    ..from.clone()
                });
                view.update(now_to.clone());
                view.live = Some(now_to);
                progress.moved_from = Some(from);
                known = Some(view);
            }
            Step::Point { records, comment } => {
                let Some(domain) = &plan.domain else {
                    return Err(ActionError::failed(
                        "internal: a record change without a domain",
                    ));
                };
                let before = view.records.clone().unwrap_or_default();
                point(*r53, domain, &records, &comment, plan.timeout).await?;
                if progress.before.is_none() {
                    progress.before = Some(before);
                }
                if plan.mode == Mode::Rollback {
                    progress.moved_from = view.live.clone();
                } else if let (Some(live), Some(staged)) = (&view.live, &view.staged) {
                    if live.id != staged.id {
                        progress.moved_from = Some(live.clone());
                    }
                }
            }
            Step::MoveBack {
                from,
                to,
                reason,
                records,
            } => {
                let moved = match (&records, &plan.domain) {
                    (Some(records), Some(domain)) => {
                        let comment = format!("beanswap: back to {}", to.name);
                        point(*r53, domain, records, &comment, plan.timeout).await
                    }
                    _ => {
                        let production = from.cname.clone();
                        swap_cnames(*eb, *clock, &from, &to, &production, plan.timeout)
                            .await
                            .map(|_| ())
                    }
                };
                if let Err(e) = moved {
                    let what = match (plan.mode, &plan.domain) {
                        (Mode::Cname, _) | (_, None) => format!(
                            "Swapping back FAILED ({e}): production is still on `{}`",
                            from.name
                        ),
                        (Mode::Weighted, _) => format!("Shifting the weight back FAILED ({e})"),
                        _ => format!("Restoring the previous records FAILED ({e})"),
                    };
                    return Err(ActionError::failed(format!(
                        "{reason}. {what}; run `beanswap rollback`"
                    )));
                }
                progress.moved_back = Some(moved_back_report(plan, &reason, &from, &to));
            }
            Step::Shift { old, new, percent } => {
                let Some(domain) = &plan.domain else {
                    return Err(ActionError::failed(
                        "internal: a weighted shift without a domain",
                    ));
                };
                let records = weighted_records(domain, &old, &new, percent)?;
                point(
                    *r53,
                    domain,
                    &records,
                    &format!("beanswap weighted: {percent}% on {}", new.name),
                    plan.timeout,
                )
                .await?;
                state.shift = Some(Shift {
                    old: old.name.clone(),
                    new: new.name.clone(),
                    percent,
                    since: unix_seconds(clock.now()),
                });
                progress.shifted = Some(percent);
                progress.verified = None;
                known = Some(view);
            }
            Step::Verify(check) => {
                progress.verified = Some(verifier.verify(&check).await);
                known = Some(view);
            }
            Step::MarkOutOfService(env) => {
                // After the move: nothing that moves production waits on it. Best effort when
                // production was moved back (the move back is what matters).
                let marked = eb
                    .retag(
                        &env.arn,
                        &[(TAG_OUT_OF_SERVICE_SINCE, rfc3339(clock.now()))],
                        &[],
                    )
                    .await;
                match marked {
                    Ok(()) => {}
                    Err(e) if progress.moved_back.is_some() => {
                        tracing::warn!(error = %e, environment = %env.name, "could not mark the environment moved away from as out of service");
                    }
                    Err(e) => return Err(SwapError::from(e).into()),
                }
                progress.marked = true;
                known = Some(view);
            }
            Step::TagRestored { env, from } => {
                eb.retag(
                    &env.arn,
                    &[(TAG_RESTORED_FROM, from)],
                    &[TAG_PREVIOUS_ENVIRONMENT, TAG_OUT_OF_SERVICE_SINCE],
                )
                .await
                .map_err(SwapError::from)?;
                progress.restored_tagged = true;
                known = Some(view);
            }
        }
    }
    Err(ActionError::failed(
        "internal: the swap sequence did not settle within 200 steps; nothing more was changed",
    ))
}

/// [`observe`], its errors kept as AWS errors so transient ones can be told apart.
async fn observe_aws<B: BeanstalkApi, R: Route53Api>(
    eb: &B,
    r53: &R,
    plan: &Plan,
    state: &State,
) -> Result<Result<View, SwapError>, crate::aws_error::AwsError> {
    match observe(eb, r53, plan, state).await {
        Err(SwapError::Aws(e)) => Err(e),
        other => Ok(other),
    }
}

/// SwapEnvironmentCNAMEs, then polls until DescribeEnvironments shows `production` on `to`.
async fn swap_cnames<B: BeanstalkApi, C: Clock>(
    eb: &B,
    clock: &C,
    from: &Environment,
    to: &Environment,
    production: &str,
    timeout: Duration,
) -> Result<Environment, SwapError> {
    eb.swap_cnames(&from.id, &to.id).await?;
    let started = clock.now();
    let mut attempt = 0;
    loop {
        let now = unless_transient(eb.environment(&to.id).await)?;
        if let Some(env) = now.flatten().filter(|e| e.holds_cname(production)) {
            return Ok(env);
        }
        if clock.since(started) >= timeout {
            let holder = eb
                .environments(&to.application)
                .await?
                .into_iter()
                .find(|e| e.holds_cname(production))
                .map(|e| e.name)
                .unwrap_or_else(|| "no environment".into());
            return Err(SwapError::SwapNotVisible {
                production: production.to_string(),
                holder,
                seconds: timeout.as_secs(),
            });
        }
        clock
            .sleep(poll_delay(attempt).min(Duration::from_secs(5)))
            .await;
        attempt += 1;
    }
}

/// Makes the domain's records exactly `desired` in one batch and waits for INSYNC.
async fn point<R: Route53Api>(
    r53: &R,
    domain: &Domain,
    desired: &[Record],
    comment: &str,
    timeout: Duration,
) -> Result<(), SwapError> {
    let existing = r53.records(&domain.zone, &domain.name).await?;
    let planned = changes_to(&existing, desired);
    let change = r53
        .apply(&domain.zone, &existing, &planned, comment)
        .await?;
    if !r53.wait_in_sync(&change, timeout).await? {
        return Err(SwapError::NotInSync {
            change,
            domain: domain.name.clone(),
            seconds: timeout.as_secs(),
        });
    }
    Ok(())
}

/// The staged environment's recent events, for a failure message about its health.
pub async fn latest_events<B: BeanstalkApi>(eb: &B, env: &Environment) -> String {
    eb.events_since(&env.id, None, 20)
        .await
        .map(|e| event_lines(&e, 5))
        .unwrap_or_default()
}
