//! retire's decisions, without I/O: which of an application's environments to terminate, keep or leave
//! alone (and why), and which application versions to prune, by the rules in the module's documentation.
//! Apart because they are pure functions of the facts and the policy: `exec.rs` gathers the one and sets
//! the other, and every rule is tested here without AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

pub use crate::beanstalk::Traffic;
use crate::beanstalk::{
    ApplicationVersion, Environment, Status, TAG_APPLICATION, TAG_OUT_OF_SERVICE_SINCE, TAG_VERSION,
};

/// One environment as the plan sees it.
#[derive(Debug, Clone)]
pub struct EnvFacts {
    pub env: Environment,
    pub tags: BTreeMap<String, String>,
    /// DescribeEnvironments' DateUpdated.
    pub updated: Option<SystemTime>,
    /// DescribeEnvironments' EndpointURL (the load balancer), which a Route 53 alias may point at.
    pub endpoint_url: Option<String>,
}

/// Where an out-of-service time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinceBasis {
    /// The `beanswap:out-of-service-since` tag.
    Tag,
    /// No (readable) tag: the environment's last update or creation, the latest known moment it changed.
    LastUpdate,
}

/// Why an environment is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Missing or different `beanswap:application` tag.
    NotTagged,
    /// Launching, Updating, ...: never forced.
    Transitional(Status),
    /// Already Terminating.
    Terminating,
    /// Never out of service and newer than the live environment: the next release, probably.
    Pending,
    /// No tag and no date to count the grace period from.
    NoTime,
    /// The safety re-check before TerminateEnvironment found it serving production.
    BecameLive,
    /// The re-check found it gone or no longer Ready.
    ChangedState(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotTagged => write!(f, "not tagged {TAG_APPLICATION} for this application"),
            SkipReason::Transitional(status) => {
                write!(f, "{status}: transitional state, not forced")
            }
            SkipReason::Terminating => write!(f, "already terminating"),
            SkipReason::Pending => write!(
                f,
                "never out of service and newer than the live environment (the next release?)"
            ),
            SkipReason::NoTime => write!(f, "no out-of-service tag and no date to count from"),
            SkipReason::BecameLive => write!(f, "serves production at termination time"),
            SkipReason::ChangedState(status) => {
                write!(f, "{status} at termination time, not forced")
            }
        }
    }
}

/// What happens to one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serves production; `by` says how we know.
    Live {
        by: String,
    },
    Keep,
    Terminate,
    /// Out of service, but not yet for the grace period.
    Wait {
        until: SystemTime,
    },
    /// Out of service past the grace period, but not yet idle: it served requests within the last
    /// DNS TTL (clients whose cached answers still point at it), or enhanced health cannot say; looked
    /// at again, terminated once it has served none for the TTL (see [`idle`]). `traffic` is what it
    /// served lately, when known.
    Idling {
        until: SystemTime,
        traffic: Option<Traffic>,
    },
    /// Due, but busy for a moment (Updating: a tag change or an update someone started): looked at
    /// again at `until`, while the job's patience lasts; never forced.
    Busy {
        status: Status,
        until: SystemTime,
    },
    Skip(SkipReason),
}

/// One environment's line in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPlan {
    pub name: String,
    pub id: String,
    pub status: Status,
    pub decision: Decision,
    pub since: Option<(SystemTime, SinceBasis)>,
}

/// The plan for environments, in the order the facts came.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub envs: Vec<EnvPlan>,
}

impl Plan {
    fn with(&self, pred: impl Fn(&Decision) -> bool) -> impl Iterator<Item = &EnvPlan> {
        self.envs.iter().filter(move |e| pred(&e.decision))
    }
    pub fn to_terminate(&self) -> impl Iterator<Item = &EnvPlan> {
        self.with(|d| *d == Decision::Terminate)
    }
    pub fn kept(&self) -> impl Iterator<Item = &EnvPlan> {
        self.with(|d| *d == Decision::Keep)
    }
    pub fn live(&self) -> impl Iterator<Item = &EnvPlan> {
        self.with(|d| matches!(d, Decision::Live { .. }))
    }
    pub fn waiting(&self) -> impl Iterator<Item = &EnvPlan> {
        self.with(|d| {
            matches!(
                d,
                Decision::Wait { .. } | Decision::Busy { .. } | Decision::Idling { .. }
            )
        })
    }
    pub fn skipped(&self) -> impl Iterator<Item = &EnvPlan> {
        self.with(|d| matches!(d, Decision::Skip(_)))
    }
    /// When the last waiting environment's grace period ends.
    pub fn wait_until(&self) -> Option<SystemTime> {
        self.envs
            .iter()
            .filter_map(|e| match e.decision {
                Decision::Wait { until }
                | Decision::Busy { until, .. }
                | Decision::Idling { until, .. } => Some(until),
                _ => None,
            })
            .max()
    }
}

/// What the plan is asked.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    pub application: &'a str,
    /// Prefix (`shop-prod`) or full CNAME.
    pub production_cname: &'a str,
    /// Hostnames the production Route 53 record points at (alias DNS names, CNAME values).
    pub record_targets: &'a [String],
    pub keep: usize,
    pub grace: Duration,
    pub now: SystemTime,
    /// Until when a due environment that is busy for a moment (Updating) is waited for rather than
    /// skipped; `None` never waits (a dry run, `beanswap retire`).
    pub busy_patience: Option<SystemTime>,
}

/// How soon a busy environment is looked at again.
pub const BUSY_RECHECK: Duration = Duration::from_secs(10);

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no environment of application `{application}` holds the production CNAME `{cname}`{record}; refusing to retire anything (check `production_cname`)")]
    NoLiveEnvironment {
        application: String,
        cname: String,
        record: String,
    },
    #[error("the production Route 53 record points at {targets}, which is neither the CNAME nor the load balancer of any environment of application `{application}`; refusing to retire anything, since it may reach one of them in a way retire cannot see")]
    UnknownRecordTarget {
        application: String,
        targets: String,
    },
}

/// `shop-prod.us-east-1.elasticbeanstalk.com.` or `dualstack.shop-prod...` -> `shop-prod.us-east-1.elasticbeanstalk.com`.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    host.strip_prefix("dualstack.")
        .map(str::to_string)
        .unwrap_or(host)
}

/// Reads an RFC 3339 time as swap writes it (`2026-01-02T03:04:05Z`), also with `+00:00`.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .map(|rest| format!("{rest}Z"))
        .unwrap_or_else(|| s.to_string());
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(&s).ok())
}

/// `2026-01-02T03:04:05Z`.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn is_tagged(f: &EnvFacts, application: &str) -> bool {
    f.tags.get(TAG_APPLICATION).map(String::as_str) == Some(application)
}

/// Whether a Route 53 target names this environment: its CNAME or its load balancer.
fn is_target(env: &Environment, endpoint_url: Option<&str>, target: &str) -> bool {
    let target = normalize_host(target);
    [Some(env.cname.as_str()), endpoint_url]
        .into_iter()
        .flatten()
        .map(normalize_host)
        .any(|host| !host.is_empty() && host == target)
}

/// How an environment serves production, if it does.
pub fn live_by(
    env: &Environment,
    endpoint_url: Option<&str>,
    production_cname: &str,
    record_targets: &[String],
) -> Option<String> {
    if env.holds_cname(production_cname) {
        return Some(format!("holds the production CNAME {}", env.cname));
    }
    if record_targets
        .iter()
        .any(|t| is_target(env, endpoint_url, t))
    {
        return Some("target of the production Route 53 record".into());
    }
    None
}

/// When the environment left production, and how we know.
fn out_of_service_since(f: &EnvFacts) -> Option<(SystemTime, SinceBasis)> {
    if let Some(t) = f
        .tags
        .get(TAG_OUT_OF_SERVICE_SINCE)
        .and_then(|v| parse_time(v))
    {
        return Some((t, SinceBasis::Tag));
    }
    let latest = match (f.updated, f.env.created) {
        (Some(u), Some(c)) => Some(u.max(c)),
        (u, c) => u.or(c),
    };
    latest.map(|t| (t, SinceBasis::LastUpdate))
}

/// Decides every environment's fate.
pub fn plan(facts: &[EnvFacts], policy: &Policy) -> Result<Plan, PlanError> {
    let mut envs: Vec<EnvPlan> = facts
        .iter()
        .map(|f| EnvPlan {
            name: f.env.name.clone(),
            id: f.env.id.clone(),
            status: f.env.status.clone(),
            decision: Decision::Skip(SkipReason::NoTime),
            since: None,
        })
        .collect();
    let mut live_created: Option<SystemTime> = None;
    let mut any_live = false;
    let mut candidates: Vec<usize> = vec![];
    for (i, f) in facts.iter().enumerate() {
        let plan = &mut envs[i];
        if f.env.status == "Terminated" {
            plan.decision = Decision::Skip(SkipReason::Terminating);
            continue;
        }
        if let Some(by) = live_by(
            &f.env,
            f.endpoint_url.as_deref(),
            policy.production_cname,
            policy.record_targets,
        ) {
            plan.decision = Decision::Live { by };
            any_live = true;
            live_created = match (live_created, f.env.created) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            continue;
        }
        if !is_tagged(f, policy.application) {
            plan.decision = Decision::Skip(SkipReason::NotTagged);
        } else if f.env.status == "Terminating" {
            plan.decision = Decision::Skip(SkipReason::Terminating);
        } else {
            candidates.push(i);
        }
    }
    if !any_live {
        return Err(PlanError::NoLiveEnvironment {
            application: policy.application.to_string(),
            cname: policy.production_cname.to_string(),
            record: if policy.record_targets.is_empty() {
                String::new()
            } else {
                format!(
                    " and none is the Route 53 record's target ({})",
                    policy.record_targets.join(", ")
                )
            },
        });
    }
    // A record pointing somewhere we cannot match (CloudFront, a load balancer name we do not know) could
    // be pointing at one of these environments in a way we cannot see: do nothing rather than guess.
    let unknown: Vec<&str> = policy
        .record_targets
        .iter()
        .filter(|t| {
            !facts
                .iter()
                .any(|f| is_target(&f.env, f.endpoint_url.as_deref(), t))
        })
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(PlanError::UnknownRecordTarget {
            application: policy.application.to_string(),
            targets: unknown.join(", "),
        });
    }
    let mut ranked: Vec<(usize, SystemTime)> = vec![];
    for i in candidates {
        let f = &facts[i];
        let since = out_of_service_since(f);
        envs[i].since = since;
        let pending = since.is_some_and(|(_, basis)| basis == SinceBasis::LastUpdate)
            && matches!((f.env.created, live_created), (Some(c), Some(l)) if c > l);
        match since {
            _ if pending => envs[i].decision = Decision::Skip(SkipReason::Pending),
            None => envs[i].decision = Decision::Skip(SkipReason::NoTime),
            Some((t, _)) => ranked.push((i, t)),
        }
    }
    // Most recently out of service first: the best rollback targets are kept.
    ranked.sort_by(|(a, ta), (b, tb)| {
        tb.cmp(ta)
            .then_with(|| facts[*b].env.created.cmp(&facts[*a].env.created))
            .then_with(|| facts[*a].env.name.cmp(&facts[*b].env.name))
    });
    for (rank, (i, since)) in ranked.into_iter().enumerate() {
        let f = &facts[i];
        envs[i].decision = if rank < policy.keep {
            Decision::Keep
        } else {
            let until = since + policy.grace;
            let busy =
                f.env.status == "Updating" && policy.busy_patience.is_some_and(|p| policy.now < p);
            if policy.now < until {
                Decision::Wait { until }
            } else if busy {
                Decision::Busy {
                    status: f.env.status.clone(),
                    until: policy.now + BUSY_RECHECK,
                }
            } else if !f.env.is_ready() {
                Decision::Skip(SkipReason::Transitional(f.env.status.clone()))
            } else {
                Decision::Terminate
            }
        };
    }
    Ok(Plan { envs })
}

/// The idle rule, applied to an environment the plan would terminate: AWS's blue/green advice is not to
/// terminate the old environment until DNS changes have propagated and old records have expired, and
/// resolvers do not always honour TTLs; so beyond the grace period, an environment is terminated only
/// once its load balancer has served no request for at least `ttl` (the production name's DNS TTL).
///
/// `traffic` is what enhanced health reports now: no requests over its window means quiet since the
/// window began, at the latest; `quiet_since` is the earliest quiet moment an earlier look established
/// (carried between invocations), reset by any request. Without metrics (enhanced health off) nobody
/// can see the traffic: the environment waits one more `ttl` after `due` (when its grace period ended),
/// AWS's advice taken literally. Returns the decision and the quiet moment to carry.
pub fn idle(
    traffic: Option<Traffic>,
    quiet_since: Option<SystemTime>,
    ttl: Duration,
    due: SystemTime,
    now: SystemTime,
) -> (Decision, Option<SystemTime>) {
    let Some(t) = traffic else {
        let until = due + ttl;
        return if now >= until {
            (Decision::Terminate, None)
        } else {
            (
                Decision::Idling {
                    until,
                    traffic: None,
                },
                None,
            )
        };
    };
    if t.requests > 0 {
        return (
            Decision::Idling {
                until: now + ttl,
                traffic: Some(t),
            },
            None,
        );
    }
    let window_start = now.checked_sub(t.window).unwrap_or(now);
    let since = quiet_since.map_or(window_start, |q| q.min(window_start));
    if now.duration_since(since).unwrap_or_default() >= ttl {
        (Decision::Terminate, Some(since))
    } else {
        (
            Decision::Idling {
                until: since + ttl,
                traffic: Some(t),
            },
            Some(since),
        )
    }
}

/// One record of the production name in Route 53: where it points, and its weight when weighted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTarget {
    pub target: String,
    pub weight: Option<i64>,
}

/// The hostnames production traffic can reach: every target, except weighted records at weight 0 while
/// another record of the name carries weight (when all weights are 0, Route 53 answers with all of them).
pub fn live_targets(records: &[RecordTarget]) -> Vec<String> {
    let any_weight = records.iter().any(|r| r.weight.is_some_and(|w| w > 0));
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| !(any_weight && r.weight == Some(0)))
        .map(|r| normalize_host(&r.target))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Version labels environments use (their version label and beanswap's version tag).
pub fn versions_in_use(facts: &[EnvFacts]) -> BTreeSet<String> {
    facts
        .iter()
        .flat_map(|f| {
            f.env
                .version_label
                .iter()
                .chain(f.tags.get(TAG_VERSION))
                .cloned()
        })
        .collect()
}

/// One version to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDeletion {
    pub label: String,
    /// The source bundle to delete with it: only when asked, and no kept version shares it.
    pub bundle: Option<(String, String)>,
}

/// Which versions go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrunePlan {
    pub delete: Vec<VersionDeletion>,
    /// Kept because an environment uses them.
    pub in_use: Vec<String>,
    /// Kept as the newest `keep`.
    pub newest: Vec<String>,
    /// Kept because they are still being processed.
    pub busy: Vec<String>,
}

/// Keeps the newest `keep` versions (whatever uses them), every version an environment uses, and every
/// version still Processing/Building; the rest are deleted, oldest first. Bundles are deleted only when
/// `delete_bundles` and no kept version points at the same object.
pub fn plan_pruning(
    versions: &[ApplicationVersion],
    in_use: &BTreeSet<String>,
    keep: usize,
    delete_bundles: bool,
) -> PrunePlan {
    // Newest first; the API's own order (newest first) breaks ties within one clock tick.
    let mut order: Vec<(usize, &ApplicationVersion)> = versions.iter().enumerate().collect();
    order.sort_by(|(ia, a), (ib, b)| b.created.cmp(&a.created).then(ia.cmp(ib)));
    let mut plan = PrunePlan::default();
    let mut doomed: Vec<&ApplicationVersion> = vec![];
    let mut kept_bundles: BTreeSet<&(String, String)> = BTreeSet::new();
    for (rank, (_, v)) in order.into_iter().enumerate() {
        let keep_it = if rank < keep {
            plan.newest.push(v.label.clone());
            true
        } else if in_use.contains(&v.label) {
            plan.in_use.push(v.label.clone());
            true
        } else if matches!(v.status.as_str(), "Processing" | "Building") {
            plan.busy.push(v.label.clone());
            true
        } else {
            doomed.push(v);
            false
        };
        if keep_it {
            kept_bundles.extend(v.bundle.as_ref());
        }
    }
    doomed.reverse();
    plan.delete = doomed
        .into_iter()
        .map(|v| VersionDeletion {
            label: v.label.clone(),
            bundle: v
                .bundle
                .clone()
                .filter(|b| delete_bundles && !kept_bundles.contains(b)),
        })
        .collect();
    plan
}
