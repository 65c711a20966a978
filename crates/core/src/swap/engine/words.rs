//! What the swap sequence says: the summaries and failure messages, worded once for the Lambda and
//! the CLI.

use super::{Plan, Progress};
use crate::beanstalk::Environment;
use crate::swap::Mode;

/// The verdict's note for a summary, when there was a check.
pub(super) fn note(progress: &Progress) -> String {
    match &progress.verified {
        Some(Ok(seen)) => format!("verified: {seen}"),
        _ => "not verified over HTTP (no `verify` in UserParameters)".into(),
    }
}

/// How production came to be on the staged environment, for the summary.
pub(super) enum Moved {
    Now(String),
    Earlier(String),
    FirstRecord,
    Never,
}

impl Moved {
    pub(super) fn moved_now(&self) -> bool {
        matches!(self, Moved::Now(_))
    }

    pub(super) fn success(
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

    pub(super) fn failure(
        &self,
        plan: &Plan,
        staged: &Environment,
        host: &str,
        seen: &str,
    ) -> String {
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
