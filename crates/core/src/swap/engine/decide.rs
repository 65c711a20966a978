//! [`decide`]: what to do next, from what AWS shows, what this invocation did and the time. Pure.

use std::time::{Duration, SystemTime};

use super::words::Moved;
use super::{Plan, Progress, State, Step, View};
use crate::beanstalk::{Environment, TAG_OUT_OF_SERVICE_SINCE};
use crate::clock::{from_unix_seconds, unix_seconds};
use crate::route53::Record;
use crate::swap::bake::{breach_reason, judge, Bake};
use crate::swap::capacity::{need, Need};
use crate::swap::{
    bake_left, check_health, check_preconditions, next_step, simple_record, weighted_records,
    Check, Mode, SwapError, TAG_PREVIOUS_ENVIRONMENT,
};

/// The check of `host` expecting `env`'s version (or the plan's).
pub(super) fn check(plan: &Plan, host: &str, env: &Environment) -> Option<Check> {
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
pub(super) fn production_host(plan: &Plan, live: &Environment) -> String {
    match &plan.domain {
        Some(d) => d.name.clone(),
        None => live.cname.clone(),
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
        Mode::Rollback => super::rollback::decide_rollback(plan, view, progress, state, now),
        Mode::Weighted if state.shift.is_some() || progress.shifted.is_some() => {
            decide_shifting(plan, view, progress, state, now)
        }
        _ => decide_forward(plan, view, progress, state, now),
    }
}

/// How long a busy environment may keep the job waiting, from its start.
fn waited_too_long(plan: &Plan, state: &State, now: SystemTime) -> bool {
    // An update that launches instances for the move (a raised MinSize) gets their time too.
    let allowance = match state.raised {
        Some(_) => plan.timeout + CAPACITY_TIMEOUT,
        None => plan.timeout,
    };
    now.duration_since(from_unix_seconds(state.started))
        .unwrap_or_default()
        >= allowance
}

/// Waits for `envs` to be Ready, or fails when that has taken too long; `None` when all are Ready.
pub(super) fn await_ready(
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
                first.status.to_string()
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
        return decide_settled(plan, view, progress, state, now, staged);
    }
    if let Some(wait) = await_ready(plan, state, now, &[("staged", staged), ("live", live)]) {
        return wait;
    }
    if let Err(e) = check_preconditions(staged, live, &plan.application, plan.min_health) {
        return fail_for(e, staged);
    }
    if plan.match_capacity {
        if let Some(step) = decide_capacity(plan, progress, state, now, live, staged) {
            return step;
        }
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

/// How long the staged environment's new instances may take to turn healthy after its MinSize was
/// raised (instances launch and pass their health checks in minutes on AWS).
pub const CAPACITY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Capacity before the move: `None` when the staged environment runs enough healthy instances.
fn decide_capacity(
    plan: &Plan,
    progress: &Progress,
    state: &State,
    now: SystemTime,
    live: &Environment,
    staged: &Environment,
) -> Option<Step> {
    let Some((live_size, staged_size)) = &progress.sizes else {
        return Some(Step::ReadCapacity {
            live: live.clone(),
            staged: staged.clone(),
        });
    };
    match need(live_size, staged_size, state.raised.as_ref()) {
        Need::Enough => None,
        Need::Raise { to } => {
            let configured = state
                .raised
                .as_ref()
                .map_or((staged_size.min, staged_size.max), |r| (r.min, r.max));
            Some(Step::RaiseCapacity {
                staged: staged.clone(),
                min: to,
                max: staged_size.max.max(to),
                configured,
            })
        }
        Need::Wait { target } => {
            let waited = now
                .duration_since(from_unix_seconds(state.started))
                .unwrap_or_default();
            if waited >= plan.timeout + CAPACITY_TIMEOUT {
                return Some(Step::Fail(format!(
                    "the staged environment `{}` runs {} healthy of the {target} instances the live `{}` runs, after {} s; nothing was swapped",
                    staged.name,
                    staged_size.healthy,
                    live.name,
                    waited.as_secs()
                )));
            }
            Some(Step::AwaitCapacity {
                summary: format!(
                    "waiting for `{}` to run {target} healthy instances as the live `{}` does ({} of them healthy now) before production moves",
                    staged.name, live.name, staged_size.healthy
                ),
            })
        }
    }
}

/// Production is on the staged environment: moved now, by an earlier invocation, or launched there as
/// the first environment. Judged the same way each time: the domain's first record when there is
/// none, the version check, then the old environment marked out of service, or the move undone.
fn decide_settled(
    plan: &Plan,
    view: &View,
    progress: &Progress,
    state: &State,
    now: SystemTime,
    staged: &Environment,
) -> Step {
    // The first deployment to a custom domain: no record yet, it gets one.
    if let (Some(domain), Some(records)) = (&plan.domain, &view.records) {
        if records.is_empty() {
            if let Err(e) = check_health(staged, plan.min_health) {
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
    let how = match (&progress.moved_from, &previous_name, &state.baking) {
        (Some(from), _, _) => Moved::Now(from.name.clone()),
        // This job moved it (its state says so) and has been baking since.
        (None, _, Some(baking)) => Moved::Now(baking.from.clone()),
        (None, Some(from), None) => Moved::Earlier(from.clone()),
        (None, None, None) if progress.before.as_ref().is_some_and(Vec::is_empty) => {
            Moved::FirstRecord
        }
        (None, None, None) => Moved::Never,
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
            let mut baked = None;
            if let (Some(bake), Some(prev), true) = (&plan.bake, previous, how.moved_now()) {
                if !bake.duration.is_zero() && prev.id != staged.id {
                    match decide_bake(plan, bake, progress, state, now, staged, prev) {
                        Ok(passed) => baked = Some(passed),
                        Err(step) => return *step,
                    }
                }
            }
            if let Some(prev) = previous {
                let unmarked = !progress.marked && how.moved_now();
                if unmarked && prev.id != staged.id {
                    return Step::MarkOutOfService(prev.clone());
                }
            }
            if let (Some(raised), None) = (&state.raised, &progress.size_restored) {
                if raised.environment == staged.name {
                    return Step::RestoreCapacity {
                        env: staged.clone(),
                        min: raised.min,
                        max: raised.max,
                    };
                }
            }
            let bake = match (&baked, &plan.bake) {
                (Some(passed), _) => format!("passed: {passed}"),
                (None, Some(b)) if !b.duration.is_zero() && how.moved_now() => {
                    "none: there is no previous environment to move back to".into()
                }
                _ => "none".into(),
            };
            let mut summary = how.success(plan, staged, &host, progress);
            match (&state.raised, &progress.size_restored) {
                (Some(r), Some(Ok(()))) => summary.push_str(&format!(
                    "; `{}` ran {} instances for the move, its MinSize is {} again",
                    staged.name, r.target, r.min
                )),
                (Some(r), Some(Err(e))) => summary.push_str(&format!(
                    "; restoring `{}`'s MinSize to {} FAILED ({e}): set it by hand",
                    staged.name, r.min
                )),
                _ => {}
            }
            if let Some(passed) = baked {
                summary.push_str("; ");
                summary.push_str(&passed);
            }
            Step::Done {
                summary,
                live: staged.name.clone(),
                previous: previous_name.unwrap_or_default(),
                bake,
            }
        }
    }
}

/// The bake after the move: `Ok(what it saw)` once it passed, else the step it needs now (start it,
/// take a reading, move production back on a breach, wait for the next reading).
#[allow(clippy::too_many_arguments)]
fn decide_bake(
    plan: &Plan,
    bake: &Bake,
    progress: &Progress,
    state: &State,
    now: SystemTime,
    staged: &Environment,
    previous: &Environment,
) -> Result<String, Box<Step>> {
    let Some(baking) = &state.baking else {
        return Err(Box::new(Step::StartBake {
            previous: previous.name.clone(),
        }));
    };
    let Some(reading) = &progress.reading else {
        return Err(Box::new(Step::Watch(staged.clone())));
    };
    if let Some(breach) = judge(bake, reading) {
        let reason = breach_reason(&staged.name, &breach, reading);
        if !previous.is_ready() {
            return Err(Box::new(Step::Fail(format!(
                "{reason}; `{}` is {}, not Ready, so production stays on `{}`: run `beanswap rollback` when it is",
                previous.name, previous.status, staged.name
            ))));
        }
        return Err(Box::new(
            match back_records(plan, progress, staged, previous) {
                Ok(records) => Step::MoveBack {
                    from: staged.clone(),
                    to: previous.clone(),
                    reason,
                    records,
                },
                Err(e) => Step::Fail(format!("{reason}. Moving back failed: {e}")),
            },
        ));
    }
    let elapsed = now
        .duration_since(from_unix_seconds(baking.since))
        .unwrap_or_default();
    if elapsed < bake.duration {
        let left = bake.duration - elapsed;
        let done = elapsed.as_secs_f64() / bake.duration.as_secs_f64().max(1.0);
        return Err(Box::new(Step::BakeWait {
            summary: format!(
                "`{}` serves production; baking, {} s left (latest: {}); `{}` stays in service until the bake passes",
                staged.name,
                left.as_secs(),
                reading.figures.line(),
                previous.name
            ),
            percent: (50.0 + 49.0 * done).clamp(50.0, 99.0) as u8,
            left,
        }));
    }
    Ok(baking.passed(bake))
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
        return decide_settled(plan, &staged_view, &p, state, now, new);
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
                plan.step_bake.as_secs()
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
    if let Err(e) = check_health(new, plan.min_health) {
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
    let left = bake_left(shift, plan.step_bake, unix_seconds(now));
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
