//! retire: out-of-service environments are terminated after a grace period, the most recent kept for
//! rollback, and old application versions pruned.
//!
//! The rules, safest first:
//! - an environment that serves production (holds the production CNAME, or is the target of the Route 53
//!   record) is `Live` and never touched, whatever its tags say;
//! - only environments tagged `beanswap:application=<application>` are candidates;
//! - an environment that never left production (no out-of-service tag) and was created after the live
//!   one is probably the next release being staged: it is left alone;
//! - of the rest, the `keep` most recently out of service are kept for rollback; the others are
//!   terminated once out of service for the grace period, unless they are in a transitional state
//!   (Launching, Updating, ...), which is reported and never forced;
//! - and even then only once it is idle: its load balancer has served no request for at least the
//!   production name's DNS TTL (enhanced health's RequestCount), since clients keep cached answers and
//!   some resolvers keep them longer than the TTL ([`idle`]).
//!
//! "Out of service since" is the `beanswap:out-of-service-since` tag swap sets. Without it (environments
//! from before beanswap, or swapped by hand), the environment's last update (else its creation) stands in:
//! never earlier than the real moment, so the grace period can only come out longer.
//!
//! The parts: `plan.rs` holds the decisions, without I/O (which environments to terminate, keep or leave
//! alone and why, which versions to prune); [`exec`] gathers the facts from AWS (`facts.rs`), asks the
//! plan, and acts on it with the safety re-checks; `report.rs` says what a run found and did, for a
//! person (the summary) and for the pipeline (the output variables' values).
//! `tests.rs` tests the decisions; `sequence_tests.rs` the sequence, on the in-memory fakes.

pub mod exec;
mod facts;
mod plan;
mod prune;
mod report;

pub use plan::{
    format_time, idle, live_by, live_targets, normalize_host, parse_time, plan, plan_pruning,
    versions_in_use, Decision, EnvFacts, EnvPlan, Plan, PlanError, Policy, PrunePlan, RecordTarget,
    SinceBasis, SkipReason, Traffic, VersionDeletion, BUSY_RECHECK,
};

#[cfg(test)]
mod sequence_tests;
#[cfg(test)]
mod tests;
