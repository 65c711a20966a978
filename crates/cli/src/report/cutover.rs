//! How fast production moved, measured from the probe's answers: the time until 99 % and 100 % of the
//! answers came from the new version, the old version's answers after the swap, instance counts over
//! time; in one line for the text reports and as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{DeploymentSummary, Series};
use crate::probe;

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

/// Instances per environment over the whole run, one [`Series`] per environment for the page's charts:
/// its count when first seen and at every change (0 once it is no longer sampled, e.g. terminated),
/// held until `end`.
pub fn instance_series(timeline: &probe::InstanceTimeline, end: Duration) -> Vec<Series> {
    let mut names: Vec<&String> = timeline.iter().flat_map(|(_, c)| c.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|env| {
            let mut points: Vec<(Duration, f64)> = vec![];
            for (at, counts) in timeline {
                let n = match (counts.get(env), points.is_empty()) {
                    (Some(n), _) => *n as f64,
                    (None, true) => continue,
                    (None, false) => 0.0,
                };
                if points.last().is_none_or(|(_, last)| *last != n) {
                    points.push((*at, n));
                }
            }
            if let Some(&(at, n)) = points.last() {
                if at < end {
                    points.push((end, n));
                }
            }
            Series {
                name: env.clone(),
                unit: "instances".into(),
                points,
            }
        })
        .collect()
}

/// A deployment's cutover in one line, for the text reports.
pub fn describe_cutover(s: &DeploymentSummary) -> String {
    let secs =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let mut parts = vec![format!("{} failed of {}", s.failures, s.requests)];
    if let Some(n) = s.new_before_swap {
        parts.push(format!("answered by the new version before the swap: {n}"));
    }
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
        "new_before_swap": s.new_before_swap,
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
