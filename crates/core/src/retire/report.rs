//! What one invocation of retire found and did ([`RetireReport`]): the summary a person reads (what was
//! terminated, kept, skipped and why, or in a dry run what would be), the output variables' values and
//! the progress figure. Apart from the execution, which only fills the report in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::exec::Progress;
use super::{format_time, Decision, Plan, PrunePlan, SinceBasis};

/// What one invocation found and did.
#[derive(Debug, Clone)]
pub struct RetireReport {
    pub dry_run: bool,
    /// This invocation's plan, with decisions the re-checks changed.
    pub plan: Plan,
    /// Notes on kept environments (scaled down, already small, not scaled because ...), by name.
    pub kept_notes: Vec<(String, String)>,
    /// The pruning plan, when pruning ran (or would, in a dry run).
    pub prune: Option<PrunePlan>,
    /// Versions left to prune after this invocation's batch.
    pub prune_remaining: usize,
    /// Everything done so far in this job; the next invocation's continuation state.
    pub progress: Progress,
    /// Whether the job is finished; otherwise it continues (grace period, pruning batches).
    pub done: bool,
    pub now: SystemTime,
}

impl RetireReport {
    /// Names of environments terminated by this job.
    pub fn terminated(&self) -> String {
        self.progress.terminated.join(",")
    }

    pub fn kept(&self) -> String {
        self.plan
            .kept()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Version labels pruned by this job (`,+N more` when some did not fit in the token).
    pub fn pruned(&self) -> String {
        let mut s = self.progress.pruned.join(",");
        if self.progress.pruned_unlisted > 0 {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(&format!("+{} more", self.progress.pruned_unlisted));
        }
        s
    }

    /// How far along the job is: the grace period's elapsed share while waiting.
    pub fn percent(&self) -> u8 {
        let Some(until) = self.plan.wait_until() else {
            return 90;
        };
        let start = UNIX_EPOCH + Duration::from_secs(self.progress.started);
        let total = until
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64();
        let done = self
            .now
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64();
        if total <= 0.0 {
            return 0;
        }
        ((done / total) * 100.0).clamp(0.0, 99.0) as u8
    }

    /// The report a person reads: what was terminated, kept, skipped and why.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = vec![];
        if self.dry_run {
            parts.push("Dry run: nothing was changed.".into());
        }
        let list = |items: Vec<String>| -> String {
            if items.is_empty() {
                "none".into()
            } else {
                items.join("; ")
            }
        };
        let live: Vec<String> = self
            .plan
            .envs
            .iter()
            .filter_map(|e| match &e.decision {
                Decision::Live { by } => Some(format!("{} ({by})", e.name)),
                _ => None,
            })
            .collect();
        parts.push(format!("Live, untouched: {}.", list(live)));
        if self.dry_run {
            let would: Vec<String> = self
                .plan
                .to_terminate()
                .map(|e| format!("{}{}", e.name, since_note(e.since)))
                .collect();
            parts.push(format!("Would terminate: {}.", list(would)));
        } else {
            parts.push(format!(
                "Terminated: {}.",
                list(self.progress.terminated.clone())
            ));
        }
        let kept: Vec<String> = self
            .plan
            .kept()
            .map(|e| {
                let note = self
                    .kept_notes
                    .iter()
                    .find(|(n, _)| *n == e.name)
                    .map(|(_, note)| format!(", {note}"))
                    .unwrap_or_default();
                format!("{}{}{note}", e.name, since_note(e.since))
            })
            .collect();
        parts.push(format!("Kept for rollback: {}.", list(kept)));
        let waiting: Vec<String> = self
            .plan
            .envs
            .iter()
            .filter_map(|e| match e.decision {
                Decision::Wait { until } => Some(format!(
                    "{} (grace period ends {})",
                    e.name,
                    format_time(until)
                )),
                Decision::Busy { ref status, .. } => Some(format!(
                    "{} ({status}: busy for a moment, terminated once it is Ready)",
                    e.name
                )),
                Decision::Idling {
                    until,
                    traffic: Some(t),
                } if t.requests > 0 => Some(format!(
                    "{} (still served {} request{} in the last {} s: clients' cached DNS answers \
                     point at it; terminated once it has served none for the DNS TTL, {} at the \
                     earliest)",
                    e.name,
                    t.requests,
                    if t.requests == 1 { "" } else { "s" },
                    t.window.as_secs(),
                    format_time(until)
                )),
                Decision::Idling {
                    until,
                    traffic: Some(_),
                } => Some(format!(
                    "{} (no requests lately; terminated once it has served none for the DNS TTL, at {})",
                    e.name,
                    format_time(until)
                )),
                Decision::Idling {
                    until,
                    traffic: None,
                } => Some(format!(
                    "{} (enhanced health reports no request metrics, so its traffic cannot be seen: \
                     terminated one DNS TTL after the grace period, at {})",
                    e.name,
                    format_time(until)
                )),
                _ => None,
            })
            .collect();
        if !waiting.is_empty() {
            parts.push(format!("Waiting: {}.", waiting.join("; ")));
        }
        let skipped: Vec<String> = self
            .plan
            .envs
            .iter()
            .filter(|e| !self.progress.terminated.contains(&e.name))
            .filter_map(|e| match &e.decision {
                Decision::Skip(reason) => Some(format!("{} ({reason})", e.name)),
                _ => None,
            })
            .collect();
        if !skipped.is_empty() {
            parts.push(format!("Skipped: {}.", skipped.join("; ")));
        }
        if let Some(prune) = &self.prune {
            let kept = format!(
                "kept {} newest, {} in use{}",
                prune.newest.len(),
                prune.in_use.len(),
                if prune.busy.is_empty() {
                    String::new()
                } else {
                    format!(", {} still processing", prune.busy.len())
                }
            );
            if self.dry_run {
                let labels: Vec<&str> = prune.delete.iter().map(|d| d.label.as_str()).collect();
                parts.push(format!(
                    "Would prune {} versions ({kept}): {}.",
                    labels.len(),
                    if labels.is_empty() {
                        "none".into()
                    } else {
                        labels.join(", ")
                    }
                ));
            } else {
                let pruned = self.pruned();
                parts.push(format!(
                    "Pruned {} versions ({kept}): {}.",
                    self.progress.pruned.len() + self.progress.pruned_unlisted,
                    if pruned.is_empty() {
                        "none".into()
                    } else {
                        pruned.replace(',', ", ")
                    }
                ));
                if self.prune_remaining > 0 {
                    parts.push(format!(
                        "{} versions left to prune in the next invocation.",
                        self.prune_remaining
                    ));
                }
            }
        }
        parts.join(" ")
    }
}

fn since_note(since: Option<(SystemTime, SinceBasis)>) -> String {
    match since {
        Some((t, SinceBasis::Tag)) => format!(" (out of service since {})", format_time(t)),
        Some((t, SinceBasis::LastUpdate)) => {
            format!(" (no out-of-service tag; last updated {})", format_time(t))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::retire::{EnvPlan, SkipReason, VersionDeletion};

    fn env(name: &str, decision: Decision) -> EnvPlan {
        EnvPlan {
            name: name.into(),
            id: format!("e-{name}"),
            status: "Ready".into(),
            decision,
            since: None,
        }
    }

    fn report(dry_run: bool, decisions: Vec<EnvPlan>, terminated: &[&str]) -> RetireReport {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_600);
        RetireReport {
            dry_run,
            plan: Plan { envs: decisions },
            kept_notes: vec![("c".into(), "scaled to MinSize 1, MaxSize 1".into())],
            prune: Some(PrunePlan {
                delete: vec![VersionDeletion {
                    label: "v1".into(),
                    bundle: None,
                }],
                in_use: vec!["v2".into()],
                newest: vec!["v3".into()],
                busy: vec![],
            }),
            prune_remaining: 0,
            progress: Progress {
                started: 1_800_000_000,
                terminated: terminated.iter().map(|s| s.to_string()).collect(),
                pruned: if dry_run { vec![] } else { vec!["v1".into()] },
                ..Progress::default()
            },
            done: true,
            now,
        }
    }

    #[test]
    fn the_summary_says_what_was_done_and_why_and_a_dry_run_what_would_be() {
        let envs = || {
            vec![
                env(
                    "p",
                    Decision::Live {
                        by: "holds the production CNAME p.x".into(),
                    },
                ),
                env("a", Decision::Skip(SkipReason::Terminating)),
                env("b", Decision::Terminate),
                env("c", Decision::Keep),
                env(
                    "d",
                    Decision::Skip(SkipReason::Transitional("Updating".into())),
                ),
            ]
        };
        let done = report(false, envs(), &["a", "b"]).summary();
        assert_eq!(
            done,
            "Live, untouched: p (holds the production CNAME p.x). Terminated: a; b. Kept for rollback: \
             c, scaled to MinSize 1, MaxSize 1. Skipped: d (Updating: transitional state, not forced). \
             Pruned 1 versions (kept 1 newest, 1 in use): v1."
        );
        let dry = report(true, envs(), &[]).summary();
        assert!(dry.starts_with("Dry run: nothing was changed."), "{dry}");
        assert!(dry.contains("Would terminate: b."), "{dry}");
        assert!(
            dry.contains("Skipped: a (already terminating); d ("),
            "{dry}"
        );
        assert!(
            dry.contains("Would prune 1 versions (kept 1 newest, 1 in use): v1."),
            "{dry}"
        );
        let r = report(false, envs(), &["a", "b"]);
        assert_eq!(
            (r.terminated(), r.kept(), r.pruned()),
            ("a,b".into(), "c".into(), "v1".into())
        );
    }

    #[test]
    fn progress_is_the_elapsed_share_of_the_wait() {
        let until = UNIX_EPOCH + Duration::from_secs(1_800_001_200);
        let r = report(false, vec![env("a", Decision::Wait { until })], &[]);
        assert_eq!(r.percent(), 50);
        let mut unlisted = report(false, vec![], &[]);
        unlisted.progress.pruned_unlisted = 3;
        assert_eq!(unlisted.pruned(), "v1,+3 more");
    }

    #[test]
    fn an_environment_waiting_for_idle_says_how_much_it_still_served() {
        let until = UNIX_EPOCH + Duration::from_secs(1_800_000_660);
        let busy = Decision::Idling {
            until,
            traffic: Some(crate::beanstalk::Traffic {
                requests: 31,
                window: Duration::from_secs(10),
            }),
        };
        let r = report(false, vec![env("old", busy)], &[]);
        let summary = r.summary();
        assert!(
            summary.contains(
                "Waiting: old (still served 31 requests in the last 10 s: clients' cached DNS \
                 answers point at it; terminated once it has served none for the DNS TTL, \
                 2027-01-15T08:11:00Z at the earliest)"
            ),
            "{summary}"
        );
        let blind = Decision::Idling {
            until,
            traffic: None,
        };
        let summary = report(false, vec![env("old", blind)], &[]).summary();
        assert!(
            summary.contains("enhanced health reports no request metrics"),
            "{summary}"
        );
    }
}
