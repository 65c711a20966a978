//! Points 6, 7 and 8: what production's users saw through the deployments of [`crate::deploy`]'s runs:
//! failed requests through a normal cutover, through a bad release moved back by the bake, and through a
//! swap to a clone smaller than the live environment, with and without capacity matching.

use std::time::Duration;

use beanswap_cli::probe::{self, Sample};

use crate::deploy::{swap_mode, DemoRun};
use crate::table::{ms, Table, Verdict};
use crate::Config;

/// Point 6's per-deployment cutover figures for `--json`, as `beanswap demo --json` reports them
/// ([`beanswap_cli::report::cutover_json`]): failed requests, the old version's answers after the swap
/// and until when, the 99 % and 100 % times, refusals by draining, instances over time.
pub fn downtime_json(demo: &Result<DemoRun, String>) -> serde_json::Value {
    let ttls = serde_json::json!({
        "point": 6,
        "dns_ttl_s": beanswap_cli::run::DNS_TTL.as_secs(),
        "aws_dns_ttl_s": local_aws::dns::AWS_CNAME_TTL.as_secs(),
    });
    let mut out = ttls;
    match demo {
        Ok(d) => {
            out["deployments"] = d
                .cutovers
                .iter()
                .map(beanswap_cli::report::cutover_json)
                .collect();
        }
        Err(e) => out["error"] = e.clone().into(),
    }
    out
}

pub fn downtime_table(config: &Config, demo: &Result<DemoRun, String>) -> Table {
    let mut table = Table::new(
        &format!(
            "6. Downtime: a steady {} req/s on the production URL through the deployments ({}; \
             {} clients caching DNS answers for the TTL, {} s scaled to {} s, {:.0} % of them for {}x)",
            config.probe_rate,
            swap_mode(config),
            probe::Crowd::default().clients,
            local_aws::dns::AWS_CNAME_TTL.as_secs(),
            beanswap_cli::run::DNS_TTL.as_secs(),
            probe::Crowd::default().stubborn_share * 100.0,
            probe::Crowd::default().stubborn_factor
        ),
        &[
            "window",
            "requests",
            "failed",
            "max latency ms",
            "swap actions",
        ],
    );
    let demo = match demo {
        Ok(d) => d,
        Err(e) => {
            table.note(format!("not measured: {e}"));
            table.goal("zero failed requests", Verdict::Missing);
            return table;
        }
    };
    let overall = probe::summarize(&demo.samples);
    // Counted from production's first good answer, as the probe does.
    let up_from = demo
        .samples
        .iter()
        .find(|s| s.ok())
        .map(|s| s.at)
        .unwrap_or_default();
    for (i, d) in demo.deployments.iter().enumerate() {
        let from = d.window.0.max(up_from);
        let inside: Vec<Sample> = demo
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at <= d.window.1)
            .cloned()
            .collect();
        let swaps = d
            .run
            .actions
            .iter()
            .filter(|a| a.stage == "Swap" && a.ok)
            .count();
        table.row(vec![
            format!("deployment #{} (from production up)", i + 1),
            inside.len().to_string(),
            inside.iter().filter(|s| !s.ok()).count().to_string(),
            ms(inside.iter().map(|s| s.latency).max().unwrap_or_default()),
            swaps.to_string(),
        ]);
    }
    table.row(vec![
        "whole run".into(),
        overall.requests.to_string(),
        overall.failures.to_string(),
        ms(overall.max_latency),
        String::new(),
    ]);
    table.goal(
        format!("zero failed requests ({} failed)", overall.failures),
        Verdict::of(overall.failures == 0 && overall.requests > 0),
    );
    // Retire must not terminate an environment that served a request within the last TTL: the old
    // version's last answer after each swap against the old environment's termination.
    let ttl = beanswap_cli::run::DNS_TTL;
    let mut idle_checks = vec![];
    let mut idle_ok = true;
    for (i, (d, c)) in demo.deployments.iter().zip(&demo.cutovers).enumerate() {
        let terminated = d
            .run
            .events
            .iter()
            .find(|e| e.message == "terminateEnvironment is starting.")
            .map(|e| e.at);
        match (c.old_until, terminated) {
            (Some(last), Some(t)) => {
                idle_checks.push(format!(
                    "#{}: last old answer {:.1} s, termination began {:.1} s",
                    i + 1,
                    last.as_secs_f64(),
                    t.as_secs_f64()
                ));
                idle_ok &= last + ttl <= t;
            }
            (None, Some(t)) => idle_checks.push(format!(
                "#{}: no old answer after the swap, termination began {:.1} s",
                i + 1,
                t.as_secs_f64()
            )),
            (_, None) => {}
        }
    }
    table.goal(
        format!(
            "retire never terminated an environment that served a request in the last TTL ({})",
            if idle_checks.is_empty() {
                "nothing terminated".to_string()
            } else {
                idle_checks.join("; ")
            }
        ),
        if idle_checks.is_empty() {
            Verdict::Missing
        } else {
            Verdict::of(idle_ok)
        },
    );
    for (i, c) in demo.cutovers.iter().enumerate() {
        table.note(format!(
            "deployment #{}: {}",
            i + 1,
            beanswap_cli::report::describe_cutover(c)
        ));
    }
    table.note(format!(
        "the load probe of `beanswap demo` (GET {}, a database write and read, 5 s timeout) from clients that \
         resolve the production name through local-aws's DNS and connect to the load balancer it answers with, \
         keeping each answer for its TTL; every environment runs the template's MinInstances (2) instances; \
         {} requests before production first answered are not counted",
        beanswap_cli::run::PROBE_PATH,
        overall.before_up
    ));
    table
}

/// Point 7: the bad release, from its first 500 until production is back on v2 (the last request v3
/// answered), and the failed requests in that window.
pub fn bad_release_table(config: &Config, run: &Result<DemoRun, String>) -> Table {
    let mut table = Table::new(
        &format!(
            "7. A bad release (v3 answers 5 % with 500) caught by the bake, {} req/s on production ({})",
            config.probe_rate,
            swap_mode(config)
        ),
        &[
            "first 500 at s",
            "back on v2 at s",
            "window s",
            "requests in window",
            "failed in window",
            "failed, share of the deployment's requests",
        ],
    );
    let goal_time = "production back on the previous version within 30 s of the first 500";
    let goal_share = "failed requests of the bad deployment under 2 % of its requests";
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            table.note(format!("not measured: {e}"));
            table.goal(goal_time, Verdict::Missing);
            table.goal(goal_share, Verdict::Missing);
            return table;
        }
    };
    let Some(third) = run.deployments.get(2) else {
        table.note("not measured: the third deployment did not run");
        table.goal(goal_time, Verdict::Missing);
        table.goal(goal_share, Verdict::Missing);
        return table;
    };
    let v3 = third
        .run
        .variables
        .get("SourceVariables.CommitId")
        .cloned()
        .unwrap_or_default();
    let by_v3: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.version.as_deref() == Some(v3.as_str()))
        .collect();
    let first_500 = by_v3.iter().find(|s| s.status >= 500).map(|s| s.at);
    let last_v3 = by_v3.last().map(|s| s.at);
    let (Some(first), Some(back)) = (first_500, last_v3) else {
        table.note(format!(
            "v3 ({v3}) answered {} requests and none with 500: nothing to measure",
            by_v3.len()
        ));
        table.goal(goal_time, Verdict::Missing);
        table.goal(goal_share, Verdict::Missing);
        return table;
    };
    let in_window: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.at >= first && s.at <= back)
        .collect();
    let failed = in_window.iter().filter(|s| !s.ok()).count();
    let deployment: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.at >= third.window.0 && s.at <= third.window.1)
        .collect();
    let deployment_failed = deployment.iter().filter(|s| !s.ok()).count();
    let share = 100.0 * deployment_failed as f64 / deployment.len().max(1) as f64;
    let window = back.saturating_sub(first);
    table.row(vec![
        format!("{:.1}", first.as_secs_f64()),
        format!("{:.1}", back.as_secs_f64()),
        format!("{:.1}", window.as_secs_f64()),
        in_window.len().to_string(),
        failed.to_string(),
        format!("{share:.2} % ({deployment_failed} of {})", deployment.len()),
    ]);
    table.goal(
        format!("{goal_time} ({:.1} s)", window.as_secs_f64()),
        Verdict::of(window <= Duration::from_secs(30)),
    );
    table.goal(
        format!("{goal_share} ({share:.2} %)"),
        Verdict::of(share < 2.0),
    );
    table.note(
        "the bake polls every 10 s at most (bake_poll_seconds); locally the bake is BakeMinutes=0.05 (3 s) \
         and enhanced health covers the last 10 s of the router's requests; inside the window v3 answers \
         every 20th request with 500 (5 %), so the share of failed requests there is about 5 % of v3's",
    );
    table
}

/// Point 8: production grown by load to [`crate::deploy::GROWN`] instances, the new version staged at
/// MinInstances (2): failed requests from the move to the end of the run, with capacity matching and
/// without it.
pub fn capacity_table(
    config: &Config,
    matched: &Result<DemoRun, String>,
    unmatched: &Result<DemoRun, String>,
) -> Table {
    let mut table = Table::new(
        &format!(
            "8. An under-provisioned clone: production grown by load to {} instances, the new version \
             staged at 2, {} req/s ({})",
            crate::deploy::GROWN,
            crate::deploy::LOADED_RATE,
            swap_mode(config)
        ),
        &[
            "MatchCapacity",
            "production before the move",
            "new environment at the move",
            "requests after the move",
            "failed after the move",
            "max latency ms",
            "the swap",
        ],
    );
    let goal = "0 failed requests with MatchCapacity";
    let mut matched_failed = None;
    for (label, run) in [("true", matched), ("false", unmatched)] {
        match run.as_ref().map_err(String::as_str).and_then(capacity_row) {
            Ok(row) => {
                if label == "true" {
                    matched_failed = Some(row.failed);
                }
                table.row(vec![
                    label.into(),
                    row.old_instances,
                    row.new_instances,
                    row.requests.to_string(),
                    row.failed.to_string(),
                    ms(row.max_latency),
                    row.outcome,
                ]);
            }
            Err(e) => table.note(format!("MatchCapacity={label} not measured: {e}")),
        }
    }
    match matched_failed {
        Some(failed) => table.goal(
            format!("{goal} ({failed} failed)"),
            Verdict::of(failed == 0),
        ),
        None => table.goal(goal, Verdict::Missing),
    }
    let latency = [matched, unmatched]
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find_map(median_good_latency);
    table.note(format!(
        "the app waits {} ms before each answer and an instance serves {} requests at once (503 beyond, as \
         an overloaded target answers){}; the scaling trigger adds an instance above {} req/s per instance; \
         the load starts at {} req/s and grows by {} once v1 serves production; instance counts are as the \
         probe sampled them (launching instances included); failed requests are counted from the move to \
         the end of the run (the probe runs on until every client's cached DNS answer expired)",
        crate::deploy::SLOW.as_millis(),
        crate::deploy::INSTANCE_CAPACITY,
        match latency {
            Some(l) => format!(
                ": answers took {} ms (median before the second deployment), so an instance carries about \
                 {:.0} req/s",
                ms(l),
                crate::deploy::INSTANCE_CAPACITY as f64 / l.as_secs_f64()
            ),
            None => String::new(),
        },
        crate::deploy::SCALE_UP_RATE,
        crate::deploy::LOADED_RATE - crate::deploy::SURGE,
        crate::deploy::SURGE,
    ));
    table
}

/// The median latency of good answers before the second deployment began.
fn median_good_latency(run: &DemoRun) -> Option<Duration> {
    let until = run.deployments.get(1)?.window.0;
    let mut good: Vec<Duration> = run
        .samples
        .iter()
        .filter(|s| s.ok() && s.at < until)
        .map(|s| s.latency)
        .collect();
    good.sort();
    good.get(good.len() / 2).copied()
}

struct CapacityRow {
    old_instances: String,
    new_instances: String,
    requests: usize,
    failed: usize,
    max_latency: Duration,
    outcome: String,
}

fn capacity_row(run: &DemoRun) -> Result<CapacityRow, &str> {
    let (Some(first), Some(second), Some(cutover)) = (
        run.deployments.first(),
        run.deployments.get(1),
        run.cutovers.get(1),
    ) else {
        return Err("the second deployment did not run");
    };
    let env = |d: &crate::deploy::Deployment| {
        d.run
            .variables
            .get("Stage.EnvironmentName")
            .cloned()
            .unwrap_or_default()
    };
    let (old, new) = (env(first), env(second));
    let moved = cutover.swap_at.ok_or("production never moved")?;
    // An environment's count at `at`: its last sample at or before then.
    let at = |name: &str, at: Duration| {
        cutover
            .instances
            .get(name)
            .and_then(|counts| counts.iter().rev().find(|(t, _)| *t <= at))
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let after: Vec<Sample> = run
        .samples
        .iter()
        .filter(|s| s.at >= moved)
        .cloned()
        .collect();
    let summary = probe::summarize(&after);
    let outcome = match &second.run.failure {
        None => "moved production".to_string(),
        Some(f) if f.to_string().contains("the bake caught") => {
            "moved production back (the bake caught the 5xx)".to_string()
        }
        Some(f) => format!("failed: {f}"),
    };
    Ok(CapacityRow {
        old_instances: at(&old, moved),
        new_instances: at(&new, moved),
        requests: summary.requests,
        failed: summary.failures,
        max_latency: summary.max_latency,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use beanswap_cli::report::DeploymentSummary;
    use std::collections::BTreeMap;

    #[test]
    fn point_6_as_json_has_every_cutover_figure() {
        let s = |n: u64| Some(Duration::from_millis(n));
        let cutover = DeploymentSummary {
            requests: 500,
            failures: 1,
            swap_at: s(8_000),
            old_after_swap: Some(120),
            old_until: s(20_500),
            to_99: s(4_500),
            cutover: s(12_000),
            refused_draining: 3,
            instances: BTreeMap::from([(
                "shop-a".to_string(),
                vec![(Duration::from_secs(1), 2), (Duration::from_secs(30), 0)],
            )]),
            ..DeploymentSummary::default()
        };
        let demo = Ok(DemoRun {
            deployments: vec![],
            samples: vec![],
            peaks_kib: BTreeMap::new(),
            cutovers: vec![DeploymentSummary::default(), cutover],
        });
        let json = downtime_json(&demo);
        assert_eq!(json["point"], 6);
        assert_eq!(json["aws_dns_ttl_s"], 60);
        let second = &json["deployments"][1];
        for (field, expected) in [
            ("failures", serde_json::json!(1)),
            ("swap_at_s", serde_json::json!(8.0)),
            ("old_after_swap", serde_json::json!(120)),
            ("old_until_s", serde_json::json!(20.5)),
            ("to_99_percent_s", serde_json::json!(4.5)),
            ("to_100_percent_s", serde_json::json!(12.0)),
            ("refused_draining", serde_json::json!(3)),
            (
                "instances",
                serde_json::json!({"shop-a": [[1.0, 2], [30.0, 0]]}),
            ),
        ] {
            assert_eq!(second[field], expected, "{field} in {second}");
        }
        let failed = downtime_json(&Err("no demo".into()));
        assert_eq!(failed["error"], "no demo");
    }
}
