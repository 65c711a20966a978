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
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod decide;
mod observe;
mod rollback;
mod run;
#[cfg(test)]
mod tests;
mod throttle;
mod words;

pub use decide::decide;
pub use observe::{latest_events, live_of, observe};
pub use run::{run, Clients};
pub use words::moved_back_report;

use super::bake::{Bake, Baking, Reading};
use super::capacity::{Capacity, Raised};
use super::{share_of, Check, Domain, Mode, Shift};
use crate::beanstalk::{Environment, HealthGate};
use crate::route53::Record;

/// The output variables a final success sets.
pub const OUTPUT_VARIABLES: &[&str] = &[
    "LiveEnvironmentName",
    "PreviousEnvironmentName",
    "Mode",
    "Bake",
];

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
    pub step_bake: Duration,
    /// After production moved (every mode): watch it this long, and move it back on a breach.
    pub bake: Option<Bake>,
    /// Before the move: the staged environment runs at least as many healthy instances as the live one
    /// (its MinSize raised for the move, restored once production settled).
    pub match_capacity: bool,
    pub verify: Option<VerifySpec>,
    /// Reach every checked host at this address (`ip:port`), like curl --resolve.
    pub resolve: Option<String>,
    /// The least health the staged environment must have now.
    pub min_health: HealthGate,
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
    /// The bake after the move, once production moved.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub baking: Option<Baking>,
    /// The staged environment's MinSize as raised for the move, and what to restore.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub raised: Option<Raised>,
    /// A poll AWS has turned away (throttling) without a break, across invocations: past the plan's
    /// timeout that ends the job, so persistent throttling is never waited out forever.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Throttled>,
}

/// Which of swap's polls AWS has been turning away, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttled {
    /// Unix seconds of the first poll turned away in this run.
    #[serde(rename = "s")]
    pub since: u64,
    /// The poll: [`POLL_OBSERVE`], [`POLL_CAPACITY`] or [`POLL_BAKE`]. Only its own answer ends the
    /// run (the bake's reading keeps being throttled even while the environments read fine).
    #[serde(rename = "p")]
    pub poll: String,
}

/// The environments, tags and records read before every decision.
pub const POLL_OBSERVE: &str = "o";
/// The live and staged environments' capacity, before the move.
pub const POLL_CAPACITY: &str = "c";
/// The bake's reading: enhanced health and the alarms.
pub const POLL_BAKE: &str = "b";

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
    pub fn named(&self, name: &str) -> Option<&Environment> {
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
    pub fn staged_share(&self) -> i64 {
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
    /// The bake's latest reading in this invocation (cleared before the next).
    pub reading: Option<Reading>,
    /// The live and the staged environments' capacity, read in this invocation (cleared after a change).
    pub sizes: Option<(Capacity, Capacity)>,
    /// The staged environment's MinSize/MaxSize were restored now (or restoring failed: why).
    pub size_restored: Option<Result<(), String>>,
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
    /// Read both environments' instances and the staged one's Auto Scaling bounds.
    ReadCapacity {
        live: Environment,
        staged: Environment,
    },
    /// Raise the staged environment's MinSize (and MaxSize when lower) to `min` before the move.
    RaiseCapacity {
        staged: Environment,
        min: u32,
        max: u32,
        /// The configured bounds, restored after the move.
        configured: (u32, u32),
    },
    /// Wait for the staged environment's new instances to be healthy (or hand over).
    AwaitCapacity {
        summary: String,
    },
    /// Production settled: the staged environment gets its configured MinSize/MaxSize back.
    RestoreCapacity {
        env: Environment,
        min: u32,
        max: u32,
    },
    /// Production moved away from `previous` (kept in service meanwhile): the bake begins.
    StartBake {
        previous: String,
    },
    /// Read the new live environment's enhanced health and the bake's alarms.
    Watch(Environment),
    /// Nothing breached; look again after the bake's poll interval (or hand over).
    BakeWait {
        summary: String,
        percent: u8,
        left: Duration,
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
        /// The bake's verdict, for the `Bake` output variable.
        bake: String,
    },
    Fail(String),
    /// Fail because the environment's health does not pass: the message gets its latest events.
    Unhealthy {
        message: String,
        env: Environment,
    },
}
