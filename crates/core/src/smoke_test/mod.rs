//! smoke-test's decisions, without I/O: what one warm-up attempt means (judge the rounds, retry after a
//! pause, hand over with a continuation token, or give up), which round runs next, and what the rounds
//! mean (the verdict, its summary and its failure message). [`exec`] runs the checks through
//! [`crate::http_check`], asks these functions, and reports.
//!
//! The rules:
//! - every check (and the version check, last) runs in every round, and all rounds must pass, so one
//!   healthy instance behind the load balancer cannot hide a broken one; the rounds stop at the first
//!   that fails;
//! - a round that fails only the way a starting environment fails (nothing listening, a name not
//!   resolving yet, the load balancer's `warmup.statuses`) is waited out: a few retries per invocation
//!   with a doubling pause, then a continuation token carrying the window's start, until the warm-up
//!   window has passed; anything else (a 500 from the app, a timeout, TLS, a wrong version) is a verdict
//!   at once;
//! - a failure message names the round, the first failing check in full and the others by name, then
//!   as many rows of the per-check table as fit CodePipeline's 5000 characters.

pub mod exec;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::http_check::{eval, CheckSpec, Options, Round, VersionCheck};
use crate::outcome::{limits, truncate};
use crate::{FailureKind, Outcome};

/// The output variables a successful run sets (later actions read them as `#{SmokeTest.Passed}`).
pub const OUTPUT_VARIABLES: &[&str] = &["Passed", "Summary"];

/// Longest a single invocation spends waiting between warm-up attempts, whatever the retries say.
pub const MAX_WAIT_PER_INVOCATION: Duration = Duration::from_secs(60);
/// Longest pause between two warm-up attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Everything a smoke test needs, validated (the function's UserParameters become this).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every check path is appended to it.
    pub base: Url,
    /// The checks of every round (never empty together with `version`).
    pub checks: Vec<CheckSpec>,
    /// Run last in every round.
    pub version: Option<VersionCheck>,
    /// Consecutive rounds of all checks that must pass.
    pub rounds: u32,
    pub warmup: Warmup,
    /// How requests are sent; `not_ready` holds the statuses a warm-up waits out.
    pub options: Options,
    /// Once the staged environment passes, the version still in production is checked too.
    pub live: Option<Live>,
}

/// The check of the environment still serving production, after the staged one passed: the new
/// version's migrations ran against the database both share, so the old version must still work on
/// it before anyone approves the swap (an expand-only schema change passes; a rename or a drop the
/// old code relies on fails here, not in production after the approval).
#[derive(Debug, Clone)]
pub struct Live {
    /// Its URL; `None` when nothing else serves production (the first deployment).
    pub base: Option<Url>,
    /// What to request: the staged environment's checks unless given (never the version check: it is
    /// the old version).
    pub checks: Vec<CheckSpec>,
    /// What migrated the database (the new version), for the message.
    pub migration: Option<String>,
    /// The snapshot taken before Stage (`#{Backup.SnapshotId}`), for the message.
    pub snapshot: Option<String>,
}

/// What the live environment's round means, once the staged environment passed (`staged`): success
/// with the live check added to the summary, or the failure that stops the pipeline before the swap,
/// naming the migration and the snapshot to restore from.
pub fn live_verdict(live: &Live, staged: Outcome<WarmingUp>, round: &Round) -> Outcome<WarmingUp> {
    let Some(base) = &live.base else {
        return staged;
    };
    let table = eval::summary_table(std::slice::from_ref(round));
    if !round.passed() {
        let migration = live
            .migration
            .as_deref()
            .map(|m| format!("the migrations of {m}"))
            .unwrap_or_else(|| "the new version's migrations".into());
        let snapshot = live
            .snapshot
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                format!(
                    "restore the database from snapshot {s}, taken by the backup action before Stage (README, \"Restore the database\"; locally `beanswap restore --snapshot {s}`), or deploy a version that fixes it"
                )
            })
            .unwrap_or_else(|| {
                "no snapshot was named to restore from; deploy a version that fixes it".into()
            });
        let head = format!(
            "the migration broke the version in production: {base} (the live environment, still on the old version) fails the smoke test against the database as {migration} left it, while the staged environment passed. The pipeline stops here, before the approval and the swap; production runs its old version on the migrated schema: {snapshot}.\n{}",
            describe_round(round)
        );
        return Outcome::failed(FailureKind::JobFailed, fit(&head, &table));
    }
    match staged {
        Outcome::Succeeded {
            summary,
            mut variables,
        } => {
            let note = format!(
                "\nthe version in production passed the same checks at {base} against the migrated database\n{table}"
            );
            // The first line (what a console shows) says it too.
            let first = "; the version in production passed them too, on the migrated database";
            let with_first = |text: &str| match text.split_once('\n') {
                Some((head, rest)) => format!("{head}{first}\n{rest}{note}"),
                None => format!("{text}{first}{note}"),
            };
            if let Some(s) = variables.get_mut("Summary") {
                *s = with_first(s);
            }
            Outcome::Succeeded {
                summary: truncate(&with_first(&summary), limits::SUMMARY),
                variables,
            }
        }
        other => other,
    }
}

/// Waiting for an environment that does not answer yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmup {
    /// From the first attempt; after it, not answering is a failure. Zero: no waiting at all.
    pub window: Duration,
    /// Extra attempts per invocation before handing over with a continuation token.
    pub retries: u32,
    /// Pause before the first retry; doubles each time, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// Carried in the continuation token while the environment warms up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmingUp {
    /// The first attempt: the warm-up window counts from here (Unix milliseconds in the token).
    #[serde(rename = "since_ms", with = "unix_ms")]
    pub since: SystemTime,
    /// Rounds tried so far, over all invocations.
    pub attempts: u32,
}

impl WarmingUp {
    /// Nothing tried yet; the window starts `now` (to the millisecond, as the token carries it).
    pub fn starting(now: SystemTime) -> Self {
        WarmingUp {
            since: unix_ms::from_ms(unix_ms::to_ms(now)),
            attempts: 0,
        }
    }

    /// Time since the first attempt (zero if the clock went back).
    pub fn waited(&self, now: SystemTime) -> Duration {
        now.duration_since(self.since).unwrap_or_default()
    }
}

/// A timestamp as Unix milliseconds, the token's (and JSON's) way of writing it.
mod unix_ms {
    use super::*;

    pub fn to_ms(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn from_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(UNIX_EPOCH)
    }

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_ms(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(from_ms)
    }
}

/// What is left of this invocation's warm-up retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub retries_left: u32,
    /// The next pause (before it is cut to the window's end).
    pub backoff: Duration,
}

impl Budget {
    pub fn new(warmup: &Warmup) -> Self {
        Budget {
            retries_left: warmup.retries,
            backoff: warmup.backoff,
        }
    }

    /// After one retry: one fewer left, the pause doubled up to [`MAX_BACKOFF`].
    fn spent_one(self) -> Self {
        Budget {
            retries_left: self.retries_left.saturating_sub(1),
            backoff: (self.backoff * 2).min(MAX_BACKOFF),
        }
    }
}

/// What a warm-up attempt (a first round) means.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The environment answers (rightly or wrongly): run the other rounds and judge them.
    Answered,
    /// Not answering yet: wait `pause`, then try again with `budget`.
    Retry { pause: Duration, budget: Budget },
    /// This invocation ends here: a continuation token (still in the window), or the failure (the
    /// window has passed).
    Report(Outcome<WarmingUp>),
}

/// What the first round of an attempt means. `warm` counts this attempt; `spent` is this invocation's
/// time so far; `budget` what is left of its retries.
pub fn after_attempt(
    plan: &Plan,
    warm: &WarmingUp,
    budget: Budget,
    round: &Round,
    now: SystemTime,
    spent: Duration,
) -> Attempt {
    if !round.not_answering() {
        return Attempt::Answered;
    }
    let base = plan.base.as_str();
    let window = plan.warmup.window;
    let waited = warm.waited(now);
    if waited >= window {
        return Attempt::Report(Outcome::failed(
            FailureKind::JobFailed,
            fit(
                &format!(
                    "the environment at {base} did not answer within the warm-up window of {} s ({} attempts over {} s); the last attempt:\n{}",
                    window.as_secs(),
                    warm.attempts,
                    waited.as_secs(),
                    describe_round(round),
                ),
                &eval::summary_table(std::slice::from_ref(round)),
            ),
        ));
    }
    let pause = budget.backoff.min(window - waited);
    if budget.retries_left == 0 || spent + pause > MAX_WAIT_PER_INVOCATION {
        let problem = round
            .first_failure()
            .map(|r| format!("{} {}: {}", r.method, r.url, r.problems.join("; ")))
            .unwrap_or_default();
        let percent = (waited.as_millis() * 100 / window.as_millis().max(1)).min(99);
        return Attempt::Report(Outcome::InProgress {
            summary: format!(
                "waiting for {base} to answer: attempt {} after {} s of a {} s warm-up window; {problem}",
                warm.attempts,
                waited.as_secs(),
                window.as_secs()
            ),
            percent: u8::try_from(percent).unwrap_or(99),
            state: warm.clone(),
        });
    }
    Attempt::Retry {
        pause,
        budget: budget.spent_one(),
    }
}

/// The round to run next (its number), or `None` when the rounds are done: all ran, or the last failed.
pub fn next_round(plan: &Plan, rounds: &[Round]) -> Option<u32> {
    let last = rounds.last()?;
    let ran = u32::try_from(rounds.len()).unwrap_or(u32::MAX);
    (last.passed() && ran < plan.rounds).then_some(ran + 1)
}

/// What the rounds mean: success with `Passed` and `Summary`, or the failure naming the round and the
/// first failing check. `warm` says how the environment was waited for; `spent` is this invocation's
/// time.
pub fn verdict(
    plan: &Plan,
    warm: &WarmingUp,
    rounds: &[Round],
    now: SystemTime,
    spent: Duration,
) -> Outcome<WarmingUp> {
    let base = plan.base.as_str();
    let table = eval::summary_table(rounds);
    match rounds.last() {
        None => Outcome::failed(
            FailureKind::JobFailed,
            format!("smoke test against {base}: no round ran"),
        ),
        Some(last) if !last.passed() => {
            let mut head = format!(
                "smoke test failed in round {} of {} against {base}",
                last.number, plan.rounds
            );
            if last.number > 1 {
                head.push_str(&format!(
                    " (rounds 1 to {} passed: some instance behind the load balancer answers differently)",
                    last.number - 1
                ));
            }
            head.push_str(":\n");
            head.push_str(&describe_round(last));
            Outcome::failed(FailureKind::JobFailed, fit(&head, &table))
        }
        Some(last) => {
            let warmed = if warm.attempts > 1 {
                format!(
                    "; it answered after {} warm-up attempts over {} s",
                    warm.attempts - 1,
                    warm.waited(now).as_secs()
                )
            } else {
                String::new()
            };
            let summary = format!(
                "smoke test passed: {} checks x {} rounds against {base} in {} ms{warmed}\n{table}",
                last.results.len(),
                rounds.len(),
                spent.as_millis()
            );
            Outcome::succeeded(truncate(&summary, limits::SUMMARY))
                .with_variable("Passed", "true")
                .with_variable("Summary", summary)
        }
    }
}

/// The first failing check in full, and the names of the others that failed.
pub fn describe_round(round: &Round) -> String {
    let failed: Vec<_> = round.results.iter().filter(|r| !r.passed()).collect();
    let Some(first) = failed.first() else {
        return String::new();
    };
    let mut out = first.describe();
    if failed.len() > 1 {
        let others: Vec<String> = failed[1..]
            .iter()
            .map(|r| format!("`{}`", r.name))
            .collect();
        out.push_str(&format!(
            "  also failing in this round: {}\n",
            others.join(", ")
        ));
    }
    out
}

/// `head` and then as many whole table rows as fit CodePipeline's 5000 characters.
pub fn fit(head: &str, table: &str) -> String {
    let budget = limits::FAILURE_MESSAGE - 100;
    let head = eval::clip(head, budget - 200);
    let mut out = format!("{head}\nchecks:\n");
    let rows: Vec<&str> = table.lines().collect();
    for (i, row) in rows.iter().enumerate() {
        if out.chars().count() + row.chars().count() + 1 > budget {
            out.push_str(&format!(
                "({} more rows in the function's log)\n",
                rows.len() - i
            ));
            break;
        }
        out.push_str(row);
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests;
