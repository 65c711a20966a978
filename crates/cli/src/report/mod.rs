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
//!
//! This file holds the model and what it derives per sample and per second; `cutover` measures how
//! production moved, `marks` finds the markers, `html` and `svg` draw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::probe::{self, Sample};

pub mod browser;
mod cutover;
mod html;
mod layout;
mod marks;
mod svg;

pub use cutover::{
    cutover_json, describe_cutover, describe_instances, instance_changes, instance_series,
    time_to_99, CUTOVER_BUCKET,
};
pub use html::html;
pub use marks::marks;
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
    /// The continuation tokens it handed over, each when reported: the action's own state (swap's
    /// bakes are read from it).
    pub states: Vec<(Duration, String)>,
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
    /// A bake began: a weighted step's, or the one after the move.
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
    /// Good answers from this deployment's version before its Swap action began (before the swap
    /// could have moved anything), once another version served production: 0 unless production
    /// reached the new version early. `None` when no other version had answered by then (a first
    /// deployment: its environment takes the production CNAME itself) or the version is unknown.
    pub new_before_swap: Option<usize>,
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

    /// The instances per environment the probe sampled: kept for the summaries and drawn as one chart
    /// per environment.
    pub fn set_instances(&mut self, timeline: probe::InstanceTimeline) {
        self.series = instance_series(&timeline, self.end);
        self.instances = timeline;
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
        // The 99 % point is judged by slices: never after the exact 100 % one, and there whenever
        // that is (a run that ends within the slice of the last old answer has no slice after it).
        let to_99 = match (to_99, cutover) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Until the Swap action began (or the window's end, when the deployment stopped before it).
        let swap_began = d
            .actions
            .iter()
            .filter(|a| a.name.starts_with("Swap /"))
            .map(|a| a.start)
            .min()
            .unwrap_or(to);
        let new_before_swap = d.version.as_ref().and_then(|new| {
            let other_served = self.samples.iter().any(|s| {
                s.at < swap_began && s.ok() && s.version.as_ref().is_some_and(|v| v != new)
            });
            other_served.then(|| {
                inside
                    .iter()
                    .filter(|s| s.at < swap_began && s.ok() && s.version.as_ref() == Some(new))
                    .count()
            })
        });
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
            new_before_swap,
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
pub(crate) mod tests;
