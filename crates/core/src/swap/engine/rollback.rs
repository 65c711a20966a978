//! [`decide`](super::decide) in rollback mode: production back to the environment it came from, once.
//! Pure.

use std::time::SystemTime;

use super::decide::{await_ready, check, production_host};
use super::words::note;
use super::{Plan, Progress, State, Step, View};
use crate::route53::Pointer;
use crate::swap::{
    rollback_target, simple_record, weighted_records, RecordType, SwapError,
    TAG_PREVIOUS_ENVIRONMENT, TAG_RESTORED_FROM,
};

/// Rollback: production back to the environment it came from.
pub(super) fn decide_rollback(
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
                bake: "none".into(),
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
                    bake: "none".into(),
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
