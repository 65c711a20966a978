//! The end-of-run report: what a person sees after `beanswap demo`, `beanswap run` or the benchmarks'
//! deployments. One data model ([`Run`]) feeds both pictures: `report.html`, a self-contained page
//! (requests coloured by the version that answered, latency, markers, one lane per action, a summary
//! table per deployment), and `timeline.svg`, the same timeline as one image for READMEs and image
//! viewers.
//!
//! Truthfulness rules both follow: requests sent before production first answered are grey and labelled
//! as such, never failures (the probe's own rule, [`crate::probe::summarize`]); every failure after that
//! is red and counted; the counts shown are the run's.
//!
//! The model takes more series over time ([`Series`], e.g. instances per environment) and more markers
//! ([`MarkKind`]) without changing the pictures' code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::probe::{self, Sample};

pub mod browser;
mod html;
mod layout;
mod svg;

pub use html::html;
pub use svg::svg;

/// A stage's action on the timeline: one bar in its action's lane.
#[derive(Debug, Clone, Default)]
pub struct Span {
    /// `Stage / Action`.
    pub name: String,
    /// The lane it is drawn in: the action's name.
    pub lane: String,
    pub start: Duration,
    pub end: Duration,
    pub ok: bool,
    pub invocations: usize,
    /// Progress lines the action reported, each when it was reported.
    pub lines: Vec<(Duration, String)>,
    /// Its final summary or failure message.
    pub summary: String,
}

/// A Beanstalk event, when the run saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: Duration,
    pub severity: String,
    pub environment: String,
    pub message: String,
}

/// What a marker marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkKind {
    /// Production moved to the new environment.
    Swap,
    /// A weighted step began to bake.
    Bake,
    /// Production moved back.
    Rollback,
    /// An environment's termination began.
    Termination,
}

impl MarkKind {
    pub fn name(self) -> &'static str {
        match self {
            MarkKind::Swap => "swap",
            MarkKind::Bake => "bake",
            MarkKind::Rollback => "rollback",
            MarkKind::Termination => "termination",
        }
    }

    pub fn colour(self) -> &'static str {
        match self {
            MarkKind::Swap => "#1d4ed8",
            MarkKind::Bake => "#a16207",
            MarkKind::Rollback => "#b91c1c",
            MarkKind::Termination => "#57534e",
        }
    }
}

/// A moment worth a vertical line across the charts.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: Duration,
    pub kind: MarkKind,
    /// Short, drawn beside the line.
    pub label: String,
    /// Long, on hover.
    pub detail: String,
}

/// Another quantity over time (instances per environment, ...), drawn as a step line of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub unit: String,
    pub points: Vec<(Duration, f64)>,
}

/// One deployment of the run: one pipeline execution.
#[derive(Debug, Clone, Default)]
pub struct Deployment {
    /// `#1`, `#2`, ...
    pub label: String,
    /// What was deployed (a directory, a repository).
    pub source: String,
    /// The version its build stamps into the app (the source revision), which the app answers with.
    pub version: Option<String>,
    pub start: Duration,
    pub end: Duration,
    pub actions: Vec<Span>,
    /// Calls per `Service.Operation` made during this deployment.
    pub calls: BTreeMap<String, u64>,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
}

impl Deployment {
    /// A deployment as the pipeline runner recorded it.
    pub fn from_run(
        index: usize,
        source: &Path,
        run: &crate::pipeline::RunResult,
        calls: BTreeMap<String, u64>,
        window: (Duration, Duration),
    ) -> Deployment {
        Deployment {
            label: format!("#{}", index + 1),
            source: source.display().to_string(),
            version: run.variables.get("SourceVariables.CommitId").cloned(),
            start: window.0,
            end: window.1,
            actions: run.spans(),
            calls,
            failure: run.failure.as_ref().map(ToString::to_string),
        }
    }
}

/// Everything the pictures show.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// What ran (`beanswap demo`, ...).
    pub title: String,
    /// What the probe asked (`http://host/version`).
    pub target: String,
    pub samples: Vec<Sample>,
    pub deployments: Vec<Deployment>,
    pub events: Vec<Event>,
    pub marks: Vec<Mark>,
    pub series: Vec<Series>,
    /// When the probe stopped.
    pub end: Duration,
    /// Instances per environment as the probe sampled them (empty when it could not).
    pub instances: probe::InstanceTimeline,
}

/// Per deployment, what the summary table shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentSummary {
    /// Requests sent while production was up, in this deployment's window.
    pub requests: usize,
    pub failures: usize,
    /// Requests sent before production first answered (not requests, not failures).
    pub before_production: usize,
    /// When production moved to this deployment's environment: the swap's marker, or the first answer
    /// by this version if that came sooner (the marker is when the run saw the swap, a moment late).
    pub swap_at: Option<Duration>,
    /// Good answers from any other version after the swap.
    pub old_after_swap: Option<usize>,
    /// From the swap to the first answer by this version after which no other version answered.
    pub cutover: Option<Duration>,
    /// The last good answer by another version after the swap (clients whose cached DNS answers
    /// still pointed at the old environment), since the run began.
    pub old_until: Option<Duration>,
    /// From the swap until 99 % of the requests reached this version: the start of the first
    /// [`CUTOVER_BUCKET`] after which every bucket had at most 1 % of its answers from another version.
    pub to_99: Option<Duration>,
    /// Requests the old environment's load balancer refused while deregistering (terminated under
    /// clients that still reached it).
    pub refused_draining: usize,
    /// Instances per environment during the deployment: each environment's count when first seen and
    /// at every change, since the run began.
    pub instances: BTreeMap<String, Vec<(Duration, usize)>>,
    /// Calls per service.
    pub calls: BTreeMap<String, u64>,
}

/// The slices the 99 % cutover is judged over.
pub const CUTOVER_BUCKET: Duration = Duration::from_millis(500);

/// From `swap` until 99 % of the answers come from `new`: the start of the first bucket (of
/// [`CUTOVER_BUCKET`], from `swap`) after which no bucket had more than 1 % of its answers from
/// another version. `answers` are (sent at, answered by `new`), in any order.
pub fn time_to_99(answers: &[(Duration, bool)], swap: Duration) -> Option<Duration> {
    let mut buckets: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    for (at, new) in answers.iter().filter(|(at, _)| *at >= swap) {
        let b = ((*at - swap).as_nanos() / CUTOVER_BUCKET.as_nanos()) as u64;
        let e = buckets.entry(b).or_default();
        e.0 += 1;
        if !new {
            e.1 += 1;
        }
    }
    if buckets.is_empty() {
        return None;
    }
    // The last bucket with more than 1 % old answers; 99 % from the one after it.
    let last_bad = buckets
        .iter()
        .filter(|(_, (all, old))| *old as f64 > 0.01 * *all as f64)
        .map(|(b, _)| *b)
        .max();
    let first_good = last_bad.map_or(0, |b| b + 1);
    buckets
        .range(first_good..)
        .next()
        .map(|_| CUTOVER_BUCKET * u32::try_from(first_good).unwrap_or(u32::MAX))
}

/// Each environment's instance count when first seen and at every change, within `[from, to)`.
pub fn instance_changes(
    timeline: &probe::InstanceTimeline,
    from: Duration,
    to: Duration,
) -> BTreeMap<String, Vec<(Duration, usize)>> {
    let mut out: BTreeMap<String, Vec<(Duration, usize)>> = BTreeMap::new();
    for (at, counts) in timeline.iter().filter(|(at, _)| *at >= from && *at < to) {
        for (env, n) in counts {
            let seen = out.entry(env.clone()).or_default();
            if seen.last().is_none_or(|(_, last)| last != n) {
                seen.push((*at, *n));
            }
        }
    }
    out
}

/// A deployment's cutover in one line, for the text reports.
pub fn describe_cutover(s: &DeploymentSummary) -> String {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let mut parts = vec![format!("{} failed of {}", s.failures, s.requests)];
    if let Some(swap) = s.swap_at {
        parts.push(format!(
            "swap at {:.1} s; the old version answered {} requests after it{}",
            swap.as_secs_f64(),
            s.old_after_swap.unwrap_or(0),
            s.old_until
                .map(|u| format!(
                    ", until {:.1} s ({:.1} s after the swap)",
                    u.as_secs_f64(),
                    u.saturating_sub(swap).as_secs_f64()
                ))
                .unwrap_or_default()
        ));
        parts.push(format!(
            "99 % on the new version after {}, 100 % after {}",
            secs(s.to_99),
            secs(s.cutover)
        ));
    }
    parts.push(format!("{} refused by draining", s.refused_draining));
    if !s.instances.is_empty() {
        parts.push(format!("instances: {}", describe_instances(&s.instances)));
    }
    parts.join("; ")
}

/// The same as JSON.
pub fn cutover_json(s: &DeploymentSummary) -> serde_json::Value {
    let secs = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
    serde_json::json!({
        "requests": s.requests,
        "failures": s.failures,
        "swap_at_s": secs(s.swap_at),
        "old_after_swap": s.old_after_swap,
        "old_until_s": secs(s.old_until),
        "to_99_percent_s": secs(s.to_99),
        "to_100_percent_s": secs(s.cutover),
        "refused_draining": s.refused_draining,
        "instances": s.instances.iter().map(|(env, seen)| {
            (env.clone(), seen.iter().map(|(at, n)| serde_json::json!([secs(Some(*at)), n])).collect::<Vec<_>>())
        }).collect::<BTreeMap<_, _>>(),
    })
}

/// `shop-a 2 -> 3 (at 41.2 s) -> 2 (at 63.0 s)`: an environment's instance counts over time.
pub fn describe_instances(changes: &BTreeMap<String, Vec<(Duration, usize)>>) -> String {
    changes
        .iter()
        .map(|(env, seen)| {
            let steps: Vec<String> = seen
                .iter()
                .enumerate()
                .map(|(i, (at, n))| {
                    if i == 0 {
                        n.to_string()
                    } else {
                        format!("{n} (at {:.1} s)", at.as_secs_f64())
                    }
                })
                .collect();
            format!("{env} {}", steps.join(" -> "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a sample goes in the pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Sent before production first answered: grey.
    BeforeProduction,
    /// Answered, by the version at this index of [`Run::versions`] (or by one that did not say).
    Version(Option<usize>),
    Failed,
}

impl Run {
    /// The run from what it recorded; the markers are derived from the actions and the events.
    pub fn new(
        title: impl Into<String>,
        target: impl Into<String>,
        samples: Vec<Sample>,
        deployments: Vec<Deployment>,
        events: Vec<Event>,
        end: Duration,
    ) -> Run {
        let marks = marks(&deployments, &events);
        Run {
            title: title.into(),
            target: target.into(),
            samples,
            deployments,
            events,
            marks,
            series: vec![],
            end,
            instances: vec![],
        }
    }

    /// The whole run's counts, by the probe's rule.
    pub fn totals(&self) -> probe::Summary {
        probe::summarize(&self.samples)
    }

    /// When production first answered.
    pub fn production_from(&self) -> Option<Duration> {
        self.samples.iter().find(|s| s.ok()).map(|s| s.at)
    }

    /// The time the pictures span.
    pub fn span(&self) -> Duration {
        self.deployments
            .iter()
            .flat_map(|d| d.actions.iter().map(|a| a.end).chain([d.end]))
            .chain(self.samples.iter().map(|s| s.at))
            .chain(self.events.iter().map(|e| e.at))
            .chain(self.marks.iter().map(|m| m.at))
            .chain([self.end])
            .max()
            .unwrap_or_default()
            .max(Duration::from_secs(1))
    }

    pub fn ok(&self) -> bool {
        !self.deployments.is_empty()
            && self.deployments.iter().all(|d| d.failure.is_none())
            && self.totals().failures == 0
    }

    /// One line: PASS or FAIL, and why.
    pub fn verdict(&self) -> String {
        let totals = self.totals();
        if let Some(d) = self.deployments.iter().find(|d| d.failure.is_some()) {
            return format!(
                "FAIL: deployment {} stopped: {}",
                d.label,
                d.failure.as_deref().unwrap_or_default()
            );
        }
        if self.deployments.is_empty() {
            return "FAIL: nothing was deployed".into();
        }
        if totals.failures > 0 {
            return format!(
                "FAIL: {} of {} requests failed while production was up",
                totals.failures, totals.requests
            );
        }
        format!(
            "PASS: {} deployment{} reached production; 0 of {} requests failed",
            self.deployments.len(),
            if self.deployments.len() == 1 { "" } else { "s" },
            totals.requests
        )
    }

    /// Versions that answered, in the order they first did.
    pub fn versions(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for v in self.samples.iter().filter_map(|s| s.version.as_ref()) {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        out
    }

    /// The deployment that deployed `version`, if one of this run's did.
    pub fn deployment_of(&self, version: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.version.as_deref() == Some(version))
    }

    /// How `sample` is drawn.
    pub fn class(&self, sample: &Sample, versions: &[String]) -> Class {
        match self.production_from() {
            Some(up) if sample.at >= up => {
                if !sample.ok() {
                    Class::Failed
                } else {
                    Class::Version(
                        sample
                            .version
                            .as_ref()
                            .and_then(|v| versions.iter().position(|x| x == v)),
                    )
                }
            }
            _ => Class::BeforeProduction,
        }
    }

    /// The time deployment `i` accounts for: from its start (0 for the first) to the next one's start
    /// (the end of the run for the last), so the deployments' counts add up to the run's.
    pub fn window(&self, i: usize) -> (Duration, Duration) {
        let from = if i == 0 {
            Duration::ZERO
        } else {
            self.deployments[i].start
        };
        let to = self
            .deployments
            .get(i + 1)
            .map_or(Duration::MAX, |d| d.start);
        (from, to)
    }

    pub fn summary(&self, i: usize) -> DeploymentSummary {
        let d = &self.deployments[i];
        let (from, to) = self.window(i);
        let up = self.production_from();
        let inside: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .collect();
        let is_up = |s: &&&Sample| up.is_some_and(|u| s.at >= u);
        let requests = inside.iter().filter(is_up).count();
        let failures = inside.iter().filter(is_up).filter(|s| !s.ok()).count();
        let first_answer = inside
            .iter()
            .find(|s| s.ok() && s.version.is_some() && s.version == d.version)
            .map(|s| s.at);
        let swap_at = self
            .marks
            .iter()
            .find(|m| m.kind == MarkKind::Swap && m.at >= from && m.at < to)
            .map(|m| first_answer.map_or(m.at, |f| f.min(m.at)));
        let old_until = match (swap_at, &d.version) {
            (Some(at), Some(new)) => inside
                .iter()
                .filter(|s| s.at >= at && s.ok() && s.version.as_ref().is_some_and(|v| v != new))
                .map(|s| s.at)
                .max(),
            _ => None,
        };
        let to_99 = match (swap_at, &d.version) {
            (Some(at), Some(new)) => {
                let answers: Vec<(Duration, bool)> = inside
                    .iter()
                    .filter(|s| s.ok() && s.version.is_some())
                    .map(|s| (s.at, s.version.as_ref() == Some(new)))
                    .collect();
                time_to_99(&answers, at)
            }
            _ => None,
        };
        let refused_draining = inside
            .iter()
            .filter(|s| s.refused.as_deref() == Some("draining"))
            .count();
        let instances = instance_changes(&self.instances, from, to);
        let (old_after_swap, cutover) = match (swap_at, &d.version) {
            (Some(at), Some(new)) => {
                let after: Vec<&&Sample> = inside
                    .iter()
                    .filter(|s| s.at >= at && s.ok() && s.version.is_some())
                    .collect();
                let old = after
                    .iter()
                    .filter(|s| s.version.as_ref() != Some(new))
                    .count();
                // The first answer by the new version after the last answer by any other.
                let last_other = inside
                    .iter()
                    .filter(|s| s.ok() && s.version.is_some() && s.version.as_ref() != Some(new))
                    .map(|s| s.at)
                    .max();
                let full = inside
                    .iter()
                    .filter(|s| s.version.as_ref() == Some(new))
                    .filter(|s| last_other.is_none_or(|l| s.at > l))
                    .map(|s| s.at)
                    .min();
                (Some(old), full.map(|f| f.saturating_sub(at)))
            }
            _ => (None, None),
        };
        let mut calls: BTreeMap<String, u64> = BTreeMap::new();
        for (op, n) in &d.calls {
            *calls
                .entry(op.split('.').next().unwrap_or(op).to_string())
                .or_default() += n;
        }
        // The 99 % point is judged by slices: never after the exact 100 % one.
        let to_99 = match (to_99, cutover) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, _) => a,
        };
        DeploymentSummary {
            requests,
            failures,
            before_production: inside.len() - requests,
            swap_at,
            old_after_swap,
            cutover,
            old_until,
            to_99,
            refused_draining,
            instances,
            calls,
        }
    }

    /// Latency per whole second of the run, of requests sent while production was up:
    /// `(second, p50, p99)`.
    pub fn latency_per_second(&self) -> Vec<(u64, Duration, Duration)> {
        let Some(up) = self.production_from() else {
            return vec![];
        };
        let mut by_second: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.at >= up) {
            by_second.entry(s.at.as_secs()).or_default().push(s.latency);
        }
        by_second
            .into_iter()
            .map(|(second, mut l)| {
                l.sort();
                (second, percentile(&l, 50.0), percentile(&l, 99.0))
            })
            .collect()
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Beanstalk's message when a CNAME swap is done (AWS's wording, which local-aws follows).
const CNAME_SWAPPED: &str = "Completed swapping CNAMEs";
/// Beanstalk's message when a termination begins.
const TERMINATING: &str = "terminateEnvironment is starting";
/// How swap's reports say production went back (core::swap::engine::words::moved_back_report).
const MOVED_BACK: &[&str] = &[
    "Swapped back",
    "Shifted all weight back",
    "Restored the previous records",
];

/// The markers: each swap (Beanstalk's CNAME swap event within the Swap action, or, when production
/// moved by Route 53, the action's end), each rollback (a second CNAME swap in one action, or a swap
/// report saying it moved back), each weighted step baking, each termination Beanstalk began.
pub fn marks(deployments: &[Deployment], events: &[Event]) -> Vec<Mark> {
    let mut out = vec![];
    for d in deployments {
        for a in d.actions.iter().filter(|a| a.name.starts_with("Swap /")) {
            // Beanstalk records a CNAME swap once for each of its two environments: events seen within
            // a second of each other are one swap.
            let mut swaps: Vec<&Event> = vec![];
            for e in events
                .iter()
                .filter(|e| e.message.starts_with(CNAME_SWAPPED))
                .filter(|e| e.at >= a.start && e.at <= a.end + Duration::from_secs(1))
            {
                if swaps
                    .last()
                    .is_none_or(|s| e.at.saturating_sub(s.at) >= Duration::from_secs(1))
                {
                    swaps.push(e);
                }
            }
            let moved_back = MOVED_BACK.iter().any(|m| a.summary.contains(m));
            let nothing_moved = a.summary.contains("nothing changed");
            match swaps.first() {
                Some(e) => out.push(Mark {
                    at: e.at,
                    kind: MarkKind::Swap,
                    label: format!("swap {}", d.label),
                    detail: e.message.clone(),
                }),
                None if a.ok && !nothing_moved => out.push(Mark {
                    at: a.end,
                    kind: MarkKind::Swap,
                    label: format!("swap {}", d.label),
                    detail: first_line(&a.summary).to_string(),
                }),
                None => {}
            }
            if let Some(back) = swaps.get(1) {
                out.push(Mark {
                    at: back.at,
                    kind: MarkKind::Rollback,
                    label: format!("rollback {}", d.label),
                    detail: back.message.clone(),
                });
            } else if moved_back {
                out.push(Mark {
                    at: a.end,
                    kind: MarkKind::Rollback,
                    label: format!("rollback {}", d.label),
                    detail: first_line(&a.summary).to_string(),
                });
            }
            // A step's start says "; baking 60s" (core::swap::engine::decide), later polls "of baking left".
            for (at, line) in a.lines.iter().filter(|(_, l)| l.contains("; baking ")) {
                out.push(Mark {
                    at: *at,
                    kind: MarkKind::Bake,
                    label: format!("bake {}", d.label),
                    detail: line.clone(),
                });
            }
        }
    }
    for e in events.iter().filter(|e| e.message.starts_with(TERMINATING)) {
        out.push(Mark {
            at: e.at,
            kind: MarkKind::Termination,
            label: format!("terminate {}", e.environment),
            detail: format!("{}: {}", e.environment, e.message),
        });
    }
    out.sort_by_key(|m| (m.at, m.kind));
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Seconds for a person: `0.4s`, `12.3s`, `2m 05s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// A short span for a person: `35 ms` under a second, else as [`seconds`].
pub fn brief(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        seconds(d)
    }
}

/// The files a report is.
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    pub svg: PathBuf,
}

/// Writes `report.html` and `timeline.svg` into `dir`.
pub fn write(run: &Run, dir: &Path) -> Result<Written, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let written = Written {
        html: dir.join("report.html"),
        svg: dir.join("timeline.svg"),
    };
    std::fs::write(&written.html, html(run))
        .map_err(|e| format!("{}: {e}", written.html.display()))?;
    std::fs::write(&written.svg, svg(run))
        .map_err(|e| format!("{}: {e}", written.svg.display()))?;
    Ok(written)
}

/// Escapes text for HTML and SVG (content and attribute values).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(at: u64, status: u16, version: Option<&str>) -> Sample {
        Sample {
            at: ms(at),
            latency: ms(5),
            status,
            version: version.map(str::to_string),
            refused: None,
        }
    }

    fn span(name: &str, start: u64, end: u64) -> Span {
        Span {
            name: name.into(),
            lane: name.split(" / ").nth(1).unwrap_or(name).into(),
            start: ms(start),
            end: ms(end),
            ok: true,
            invocations: 1,
            ..Span::default()
        }
    }

    fn event(at: u64, env: &str, message: &str) -> Event {
        Event {
            at: ms(at),
            severity: "INFO".into(),
            environment: env.into(),
            message: message.into(),
        }
    }

    /// Two deployments: nothing answers until 2 s, v1 until the swap at 6.1 s, one old answer after it,
    /// one failure at 7 s; v1's environment terminated at 8 s.
    fn two_deployments() -> Run {
        let mut samples = vec![];
        for t in (0..10_000).step_by(100) {
            let s = match t {
                0..=1_999 => sample(t, 502, None),
                7_000 => sample(t, 503, None),
                2_000..=6_099 | 6_200 => sample(t, 200, Some("v1")),
                _ => sample(t, 200, Some("v2")),
            };
            samples.push(s);
        }
        let mut swap = span("Swap / Swap", 5_900, 6_500);
        swap.summary = "swapped CNAMEs: `shop-v2` now serves ...".into();
        let deployments = vec![
            Deployment {
                label: "#1".into(),
                version: Some("v1".into()),
                start: ms(0),
                end: ms(3_000),
                actions: vec![span("Stage / Stage", 500, 2_500)],
                calls: [
                    ("ElasticBeanstalk.CreateEnvironment".to_string(), 1),
                    ("ElasticBeanstalk.DescribeEvents".to_string(), 4),
                    ("S3.PutObject".to_string(), 2),
                ]
                .into(),
                ..Deployment::default()
            },
            Deployment {
                label: "#2".into(),
                version: Some("v2".into()),
                start: ms(3_000),
                end: ms(9_000),
                actions: vec![span("Stage / Stage", 3_100, 5_000), swap],
                ..Deployment::default()
            },
        ];
        let events = vec![
            event(
                6_100,
                "shop-v2",
                "Completed swapping CNAMEs for environments 'a' and 'b'.",
            ),
            event(8_000, "shop-v1", "terminateEnvironment is starting."),
        ];
        Run::new(
            "test",
            "http://shop/version",
            samples,
            deployments,
            events,
            ms(10_000),
        )
    }

    #[test]
    fn requests_before_production_are_neither_requests_nor_failures() {
        let run = two_deployments();
        let totals = run.totals();
        assert_eq!((totals.before_up, totals.failures), (20, 1));
        assert_eq!(run.production_from(), Some(ms(2_000)));
        let versions = run.versions();
        assert_eq!(versions, ["v1", "v2"]);
        assert_eq!(
            run.class(&run.samples[0], &versions),
            Class::BeforeProduction
        );
        assert_eq!(run.class(&run.samples[70], &versions), Class::Failed);
        assert_eq!(
            run.class(&run.samples[25], &versions),
            Class::Version(Some(0))
        );
        // The deployments' windows cover the run: their counts add up to the run's.
        let (a, b) = (run.summary(0), run.summary(1));
        assert_eq!(a.requests + b.requests, totals.requests);
        assert_eq!(a.failures + b.failures, totals.failures);
        assert_eq!(a.before_production + b.before_production, totals.before_up);
        assert_eq!((a.requests, a.before_production), (10, 20));
    }

    #[test]
    fn the_swap_the_old_answers_after_it_and_the_cutover_are_measured() {
        let run = two_deployments();
        let kinds: Vec<(MarkKind, &str)> = run
            .marks
            .iter()
            .map(|m| (m.kind, m.label.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (MarkKind::Swap, "swap #2"),
                (MarkKind::Termination, "terminate shop-v1")
            ]
        );
        let first = run.summary(0);
        assert_eq!(
            (first.swap_at, first.old_after_swap, first.cutover),
            (None, None, None)
        );
        assert_eq!(first.calls["ElasticBeanstalk"], 5);
        assert_eq!(first.calls["S3"], 2);
        let second = run.summary(1);
        assert_eq!(second.swap_at, Some(ms(6_100)));
        // 6.1 s (v2's first answer is at the swap) and 6.2 s (v1, once more) are after it.
        assert_eq!(second.old_after_swap, Some(1));
        // Full at 6.3 s, the first v2 answer after v1's last.
        assert_eq!(second.cutover, Some(ms(200)));
        assert_eq!(second.failures, 1);
        assert!(!run.ok());
        assert_eq!(
            run.verdict(),
            "FAIL: 1 of 80 requests failed while production was up"
        );
    }

    #[test]
    fn route53_swaps_rollbacks_and_bakes_are_marked_from_the_swap_action() {
        let mut weighted = span("Swap / Swap", 1_000, 9_000);
        weighted.lines = vec![
            (
                ms(2_000),
                "10% of `www` on `b`, 90% on `a`; baking 60s".into(),
            ),
            (
                ms(3_000),
                "10% of `www` on `b`, healthy; 50s of baking left".into(),
            ),
        ];
        weighted.summary = "all of `www` on `b` (was `a`), in steps [10, 100]; verified".into();
        let mut back = span("Swap / Swap", 10_000, 12_000);
        back.ok = false;
        back.summary = "verification failed at 100%: 500. Shifted all weight back: ...".into();
        let mut first = span("Swap / Swap", 100, 200);
        first.summary = "`a` already serves production (...); nothing changed; verified".into();
        let d = |label: &str, actions| Deployment {
            label: label.into(),
            actions,
            ..Deployment::default()
        };
        let marks = marks(
            &[
                d("#1", vec![first]),
                d("#2", vec![weighted]),
                d("#3", vec![back]),
            ],
            &[],
        );
        let got: Vec<(MarkKind, Duration, &str)> = marks
            .iter()
            .map(|m| (m.kind, m.at, m.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (MarkKind::Bake, ms(2_000), "bake #2"),
                (MarkKind::Swap, ms(9_000), "swap #2"),
                (MarkKind::Rollback, ms(12_000), "rollback #3"),
            ]
        );
    }

    #[test]
    fn a_cname_swap_recorded_for_both_environments_is_one_swap_and_a_second_one_a_rollback() {
        let swapped = "Completed swapping CNAMEs for environments 'a' and 'b'.";
        let mut swap = span("Swap / Swap", 1_000, 9_000);
        let d = |actions| Deployment {
            label: "#2".into(),
            actions,
            ..Deployment::default()
        };
        let once = [event(2_000, "a", swapped), event(2_004, "b", swapped)];
        let got: Vec<MarkKind> = marks(&[d(vec![swap.clone()])], &once)
            .iter()
            .map(|m| m.kind)
            .collect();
        assert_eq!(got, [MarkKind::Swap]);
        // Moved, verified badly, moved back: two swaps, the second a rollback.
        swap.ok = false;
        let twice = [
            event(2_000, "a", swapped),
            event(2_004, "b", swapped),
            event(5_000, "a", swapped),
            event(5_001, "b", swapped),
        ];
        let got: Vec<(MarkKind, Duration)> = marks(&[d(vec![swap])], &twice)
            .iter()
            .map(|m| (m.kind, m.at))
            .collect();
        assert_eq!(
            got,
            [(MarkKind::Swap, ms(2_000)), (MarkKind::Rollback, ms(5_000))]
        );
    }

    #[test]
    fn the_swap_is_the_first_answer_by_the_new_version_when_the_marker_was_seen_late() {
        let mut run = two_deployments();
        // The run saw the swap 300 ms after v2 first answered (at 6.1 s).
        run.marks[0].at = ms(6_400);
        let s = run.summary(1);
        assert_eq!(s.swap_at, Some(ms(6_100)));
        assert_eq!((s.old_after_swap, s.cutover), (Some(1), Some(ms(200))));
    }

    #[test]
    fn latency_percentiles_per_second_count_only_production_requests() {
        let mut run = two_deployments();
        for (i, s) in run.samples.iter_mut().enumerate() {
            s.latency = ms(i as u64 % 10 + 1);
        }
        let l = run.latency_per_second();
        assert_eq!(l.first().map(|x| x.0), Some(2), "before production: none");
        assert_eq!(l.len(), 8);
        assert!(l
            .iter()
            .all(|(_, p50, p99)| *p50 == ms(5) && *p99 == ms(10)));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3), ms(4)], 50.0), ms(2));
        assert_eq!(percentile(&[], 99.0), ms(0));
    }

    #[test]
    fn a_passing_run_says_so() {
        let mut run = two_deployments();
        for s in &mut run.samples {
            if s.status == 503 {
                s.status = 200;
                s.version = Some("v2".into());
            }
        }
        assert!(run.ok());
        assert_eq!(
            run.verdict(),
            "PASS: 2 deployments reached production; 0 of 80 requests failed"
        );
        run.deployments[1].failure = Some("SmokeTest / SmokeTest failed: no".into());
        assert_eq!(
            run.verdict(),
            "FAIL: deployment #2 stopped: SmokeTest / SmokeTest failed: no"
        );
    }

    pub(crate) fn fixture() -> Run {
        two_deployments()
    }

    #[test]
    fn the_99_percent_cutover_is_the_first_slice_after_which_old_answers_stay_under_1_percent() {
        let swap = ms(10_000);
        // Slice 0: half old; slice 1: 1 old in 200 (0.5 %); slice 2: 5 old in 100; slice 3 on: new.
        let mut answers = vec![];
        for i in 0..100u64 {
            answers.push((swap + ms(i * 5), i % 2 == 0));
            answers.push((swap + ms(500 + i * 2), i != 0));
            answers.push((swap + ms(500 + i * 2 + 1), true));
            answers.push((swap + ms(1000 + i * 5), i >= 5));
            answers.push((swap + ms(1500 + i * 5), true));
        }
        assert_eq!(time_to_99(&answers, swap), Some(ms(1500)));
        // All new from the start: at once.
        let clean: Vec<(Duration, bool)> = (0..10).map(|i| (swap + ms(i * 100), true)).collect();
        assert_eq!(time_to_99(&clean, swap), Some(Duration::ZERO));
        assert_eq!(time_to_99(&[], swap), None);
    }

    #[test]
    fn instance_counts_are_reported_when_they_change() {
        let at = |t: u64, a: usize, b: usize| {
            (
                ms(t),
                [("shop-a".to_string(), a), ("shop-b".to_string(), b)]
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let timeline = vec![
            at(0, 2, 2),
            at(250, 2, 2),
            at(500, 3, 2),
            at(750, 2, 2),
            at(2000, 1, 1),
        ];
        let changes = instance_changes(&timeline, ms(0), ms(1000));
        assert_eq!(changes["shop-a"], [(ms(0), 2), (ms(500), 3), (ms(750), 2)]);
        assert_eq!(
            describe_instances(&changes),
            "shop-a 2 -> 3 (at 0.5 s) -> 2 (at 0.8 s); shop-b 2"
        );
    }
}
