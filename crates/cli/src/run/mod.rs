//! `beanswap run` and `beanswap demo`: the whole pipeline on the local default, with a load probe on the
//! production URL throughout and a report at the end.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::local::{Endpoints, LocalCloud};
use crate::pipeline::{self, Approval, RunOptions, RunResult, Ui};
use crate::probe::{self, Probe};
use crate::report;
use crate::template::{self, Stack};

mod releases;
mod setup;

pub use releases::{bad_release, changed_copy, next_release};
pub use setup::{
    cloud_options, dns_caching, ensure_binaries, local_parameters, probe_resolution, probe_target,
    provision, serve_domain, DNS_TTL, FUNCTIONS, NOT_CREATED_LOCALLY, PROBE_PATH,
};

pub struct Settings {
    pub root: PathBuf,
    pub template: PathBuf,
    pub sources: Vec<PathBuf>,
    pub parameters: BTreeMap<String, String>,
    pub approval: Approval,
    pub json: bool,
    pub bin_dir: PathBuf,
    pub launch_delay: Duration,
    pub probe_rate: u32,
    pub report_dir: PathBuf,
    pub continuation_pause: Duration,
    /// Servers already running to use instead of starting moto and local-aws.
    pub endpoints: Endpoints,
    /// Serve production on this custom domain through Route 53 (see [`serve_domain`]).
    pub domain: Option<String>,
    /// What the report calls the run (`beanswap demo`, ...).
    pub title: String,
    /// The time deployment windows are judged at; now when `None`.
    pub now: Option<std::time::SystemTime>,
}

/// What a whole run (one or more deployments) measured.
pub struct Outcome {
    pub runs: Vec<RunResult>,
    pub probe: probe::Summary,
    pub calls: BTreeMap<String, u64>,
    /// The text report.
    pub report: String,
    /// What the pictures show.
    pub data: report::Run,
    pub svg: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Its screenshot, when a Chromium was there to take it.
    pub png: Option<PathBuf>,
    pub ok: bool,
}

pub async fn run(settings: &Settings, ui: &Ui) -> Result<Outcome, String> {
    ensure_binaries(&settings.root, &settings.bin_dir, ui)?;
    std::fs::create_dir_all(&settings.report_dir)
        .map_err(|e| format!("{}: {e}", settings.report_dir.display()))?;
    // Checked before anything starts: a parameter CloudFormation would refuse ends the run at once.
    let mut parameters = settings.parameters.clone();
    Stack::load(&settings.template, &parameters).map_err(|e| e.to_string())?;
    let cloud = LocalCloud::start_using(
        &settings.root,
        cloud_options(settings.launch_delay),
        &settings.endpoints,
        &|m| ui.line(m),
    )
    .await
    .map_err(|e| e.to_string())?;
    let given = |yes: bool| if yes { " (already running)" } else { "" };
    ui.line(&format!(
        "local cloud: Beanstalk/CodePipeline {}, environments' router {}{}, S3/Route 53 (moto) {}{}",
        cloud.aws.endpoint(),
        cloud.aws.router_endpoint(),
        given(settings.endpoints.local_aws.is_some()),
        cloud.moto_endpoint(),
        given(settings.endpoints.moto.is_some()),
    ));
    let config = cloud.sdk_config().await;
    if let Some(domain) = &settings.domain {
        serve_domain(&cloud.route53(&config), domain, &mut parameters).await?;
        ui.line(&format!(
            "production domain: {} (hosted zone {} in moto's Route 53)",
            parameters["DomainName"], parameters["HostedZoneId"]
        ));
    }
    let stack = Stack::load(&settings.template, &parameters)
        .map_err(|e| e.to_string())?
        .without(NOT_CREATED_LOCALLY);
    let database = crate::database::start(&settings.report_dir, &cloud, &stack).await?;
    ui.line(&format!(
        "database: PostgreSQL on {}:{} (data in {}), database {} of RDS instance {}, credentials in secret {}",
        database.instance.host,
        database.instance.port,
        database.server.root().display(),
        database.instance.database,
        database.instance.id,
        database.secret_arn
    ));
    let stack = database.provide(stack).provide(
        "ArtifactBucket",
        template::Provided {
            reference: pipeline::ARTIFACT_BUCKET.into(),
            attributes: [(
                "Arn".to_string(),
                format!("arn:aws:s3:::{}", pipeline::ARTIFACT_BUCKET),
            )]
            .into(),
        },
    );
    let pipeline_def = stack.pipeline().map_err(|e| e.to_string())?;
    let eb = cloud.beanstalk(&config);
    provision(&stack, &eb).await?;
    // From here on every function calls AWS as its own role, held to the policies this stack gives it.
    let identities = stack.identities().map_err(|e| e.to_string())?;
    cloud.enforce(&identities.spec).await?;
    ui.line(&format!(
        "permissions: each function calls as its role ({}); the runner's own calls as the administrator",
        identities
            .function_roles
            .iter()
            .map(|(f, r)| format!("{f}: {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let production = parameters
        .get("ProductionCnamePrefix")
        .cloned()
        .unwrap_or_else(|| "shop-prod".into());
    let domain = parameters
        .get("DomainName")
        .filter(|d| !d.is_empty())
        .cloned();
    // What users reach: the custom domain when there is one, else the production CNAME.
    let host = domain
        .clone()
        .unwrap_or_else(|| format!("{production}.{}.elasticbeanstalk.com", template::REGION));
    let epoch = Instant::now();
    let probe = Probe::start_with(
        probe_resolution(&cloud),
        host.clone(),
        PROBE_PATH.into(),
        settings.probe_rate,
    );
    let mut runs = vec![];
    let mut deployments = vec![];
    let mut ok = true;
    for (i, source) in settings.sources.iter().enumerate() {
        ui.line(&format!(
            "\n== deployment {} of {}: {} ==",
            i + 1,
            settings.sources.len(),
            source.display()
        ));
        let options = RunOptions {
            pipeline: pipeline_def.clone(),
            source: source.clone(),
            bin_dir: settings.bin_dir.clone(),
            approval: settings.approval,
            json: settings.json,
            continuation_pause: settings.continuation_pause,
            action_timeout: Duration::from_secs(1800),
            log_dir: settings.report_dir.clone(),
            domain: domain.clone(),
            launch_delay: settings
                .endpoints
                .local_aws
                .is_none()
                .then_some(settings.launch_delay),
            now: settings.now,
            // A stage rollback runs with the last successful deployment's variables.
            previous: runs
                .iter()
                .rev()
                .find(|r: &&pipeline::RunResult| r.failure.is_none())
                .map(|r| r.variables.clone()),
            identities: Some(identities.clone()),
        };
        // Counted between the deployments, so each one's calls are its own.
        let before = cloud.calls().await.unwrap_or_default();
        let start = epoch.elapsed();
        let result = pipeline::run(&cloud, &options, ui, epoch).await;
        let calls = diff(&cloud.calls().await.unwrap_or_default(), &before);
        deployments.push(report::Deployment::from_run(
            i,
            source,
            &result,
            calls,
            (start, epoch.elapsed()),
        ));
        let failed = result.failure.is_some();
        runs.push(result);
        if failed {
            ok = false;
            break;
        }
    }
    // Keep probing a moment after the last swap, so its aftermath is measured too.
    ui.line("measuring production for one more second after the last deployment");
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(last) = runs.last_mut() {
        pipeline::later_events(&cloud, ui, last, epoch).await;
    }
    if probe.in_flight() > 0 {
        ui.line(&format!(
            "waiting for the probe's requests in flight to end ({})",
            probe.in_flight()
        ));
    }
    let timeline = probe.instances();
    let samples = probe.stop().await;
    let end = epoch.elapsed();
    let summary = probe::summarize(&samples);
    let calls = cloud.calls().await?;

    let events = runs.iter().flat_map(|r| r.events.iter().cloned()).collect();
    let data = report::Run::new(
        settings.title.clone(),
        probe_target(&host),
        samples,
        deployments,
        events,
        end,
    );
    let mut data = data;
    data.set_instances(timeline);
    let written = report::write(&data, &settings.report_dir)?;
    let svg = written.svg.clone();
    let cutovers: Vec<report::DeploymentSummary> = (0..data.deployments.len())
        .map(|i| data.summary(i))
        .collect();
    let png = screenshot(&data, &written.html, ui).await;

    let environments = eb
        .describe_environments()
        .include_deleted(true)
        .send()
        .await
        .map_err(|e| format!("DescribeEnvironments: {e}"))?;
    let versions = eb
        .describe_application_versions()
        .send()
        .await
        .map_err(|e| format!("DescribeApplicationVersions: {e}"))?;
    let mut text = String::new();
    let _ = writeln!(text, "\n== report ==");
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(text, "deployment {}:", i + 1);
        for a in &r.actions {
            let _ = writeln!(
                text,
                "  {} {:<26} {:>6.1}s  {}",
                if a.ok { "✔" } else { "✘" },
                format!("{} / {}", a.stage, a.action),
                a.end.saturating_sub(a.start).as_secs_f64(),
                a.summary
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(90)
                    .collect::<String>()
            );
        }
        for (stage, why) in &r.skipped {
            let _ = writeln!(text, "  ↷ {stage} skipped: {why}");
        }
        if let Some(f) = &r.failure {
            let _ = writeln!(text, "  stopped: {f}");
        }
        if let Some(rollback) = &r.rollback {
            let _ = writeln!(text, "  {rollback}");
        }
    }
    let _ = writeln!(
        text,
        "versions: {}",
        versions
            .application_versions()
            .iter()
            .filter_map(|v| v.version_label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(text, "environments:");
    for e in environments.environments() {
        let live = e.cname() == Some(host.as_str());
        let _ = writeln!(
            text,
            "  {:<16} {:<12} {:<6} {:<14} {}{}",
            e.environment_name().unwrap_or_default(),
            e.status().map(|s| s.as_str()).unwrap_or_default(),
            e.health().map(|s| s.as_str()).unwrap_or_default(),
            e.version_label()
                .unwrap_or_default()
                .chars()
                .take(14)
                .collect::<String>(),
            e.cname().unwrap_or_default(),
            if live { "  <- production" } else { "" }
        );
    }
    let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &calls {
        *per_service
            .entry(k.split('.').next().unwrap_or(k).to_string())
            .or_default() += v;
    }
    let _ = writeln!(
        text,
        "API calls: {}",
        per_service
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        text,
        "load probe on http://{host}{PROBE_PATH}: {} requests while production was up, {} failed, max latency {} ms ({} before the first deployment answered)",
        summary.requests,
        summary.failures,
        summary.max_latency.as_millis(),
        summary.before_up
    );
    for (i, c) in cutovers.iter().enumerate() {
        let _ = writeln!(
            text,
            "cutover of deployment {} ({}): {}",
            i + 1,
            dns_caching(),
            report::describe_cutover(c)
        );
    }
    let _ = writeln!(text, "report: {}", written.html.display());
    if let Some(png) = &png {
        let _ = writeln!(text, "screenshot: {}", png.display());
    }
    let migrations = database.migrations();
    let snapshots: Vec<String> = runs
        .iter()
        .filter_map(|r| r.variables.get("Backup.SnapshotId").cloned())
        .collect();
    let _ = writeln!(
        text,
        "database {} on {}:{}: migrations applied: {}; snapshots taken before Stage: {} (in {}; `beanswap restore --snapshot ID` restores one)",
        database.instance.database,
        database.instance.host,
        database.instance.port,
        if migrations.is_empty() { "none".to_string() } else { migrations.join(", ") },
        if snapshots.is_empty() { "none".to_string() } else { snapshots.join(", ") },
        crate::database::snapshot_dir(&settings.report_dir).display()
    );
    let _ = writeln!(text, "{}", live_checks(&runs));
    let _ = writeln!(text, "timeline: {}", svg.display());
    let _ = writeln!(
        text,
        "function logs: {}/<function>.log",
        settings.report_dir.display()
    );
    ui.event(json!({
        "event": "report",
        "ok": ok,
        "probe": {"requests": summary.requests, "failures": summary.failures, "max_latency_ms": summary.max_latency.as_millis() as u64},
        "calls": calls,
        "dns_ttl_s": DNS_TTL.as_secs(),
        "deployments": cutovers.iter().map(report::cutover_json).collect::<Vec<_>>(),
        "timeline": svg.display().to_string(),
        "html": written.html.display().to_string(),
        "screenshot": png.as_ref().map(|p| p.display().to_string()),
        "variables": runs.last().map(|r| json!(r.variables)).unwrap_or(Value::Null),
    }));
    Ok(Outcome {
        ok: ok && summary.failures == 0,
        runs,
        probe: summary,
        calls,
        report: text,
        data,
        svg,
        html: written.html,
        png,
    })
}

/// What opens a file for a person on `os` (`std::env::consts::OS`): `open` on macOS, `xdg-open`
/// elsewhere when there is a display; nothing without one.
pub fn opener(os: &str, display: bool) -> Option<&'static str> {
    match os {
        "macos" => Some("open"),
        _ if display => Some("xdg-open"),
        _ => None,
    }
}

/// Calls made between two counts.
pub fn diff(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// A screenshot of the page next to it (`report.png`), when a Chromium is there to take one.
pub async fn screenshot(data: &report::Run, html: &Path, ui: &Ui) -> Option<PathBuf> {
    let Some(chromium) = report::browser::find() else {
        ui.line("no screenshot of the report: no Chromium found (apt-get install chromium)");
        return None;
    };
    ui.line("waiting for Chromium to take the report's screenshot");
    let png = html.with_file_name("report.png");
    let (page, to, height) = (
        html.to_path_buf(),
        png.clone(),
        report::browser::page_height(data),
    );
    // On a thread of its own: the runtime still answers Ctrl-C meanwhile.
    let taken = tokio::task::spawn_blocking(move || {
        report::browser::screenshot(&chromium, &page, &to, height)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match taken {
        Ok(()) => Some(png),
        Err(e) => {
            ui.line(&format!("no screenshot of the report: {e}"));
            None
        }
    }
}

/// What SmokeTest's live check said of each deployment: whether the version in production passed the
/// smoke test's checks against the database as the new version's migrations left it (the smoke test's
/// own summary says so), in one line of the text report.
fn live_checks(runs: &[RunResult]) -> String {
    const PASSED: &str = "the version in production passed the same checks at ";
    let each: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let said = if let Some(at) = r
                .variables
                .get("SmokeTest.Summary")
                .and_then(|s| s.split_once(PASSED))
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
            {
                format!("passed at {at}")
            } else if r
                .failure
                .as_ref()
                .is_some_and(|f| f.to_string().contains("the migration broke the version in production"))
            {
                "FAILED: the migration broke the version in production (see the deployment's failure)".into()
            } else if r.variables.get("Stage.LiveUrl").is_some_and(String::is_empty) {
                "none, nothing else served production".into()
            } else {
                "not run".into()
            };
            format!("deployment {} {said}", i + 1)
        })
        .collect();
    format!(
        "live check of the version in production on the migrated database (SmokeTest, before the approval): {}",
        if each.is_empty() { "none".to_string() } else { each.join("; ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_whether_the_version_in_production_passed_the_live_check() {
        let run = |vars: &[(&str, &str)]| RunResult {
            variables: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RunResult::default()
        };
        let runs = [
            run(&[("Stage.LiveUrl", ""), ("SmokeTest.Summary", "3 rounds passed")]),
            run(&[
                ("Stage.LiveUrl", "http://shop-prod/"),
                (
                    "SmokeTest.Summary",
                    "3 rounds passed; the version in production passed them too, on the migrated database\n\
                     the version in production passed the same checks at http://shop-prod/ against the migrated database\ntable",
                ),
            ]),
            run(&[("Stage.LiveUrl", "http://shop-prod/")]),
        ];
        assert_eq!(
            live_checks(&runs),
            "live check of the version in production on the migrated database (SmokeTest, before the approval): \
             deployment 1 none, nothing else served production; deployment 2 passed at http://shop-prod/; deployment 3 not run"
        );
    }

    #[test]
    fn the_report_opens_with_the_desktops_opener_only_where_there_is_a_display() {
        assert_eq!(opener("linux", true), Some("xdg-open"));
        assert_eq!(opener("linux", false), None);
        assert_eq!(opener("freebsd", true), Some("xdg-open"));
        // macOS's `open` needs no DISPLAY.
        assert_eq!(opener("macos", false), Some("open"));
    }

    #[test]
    fn each_deployment_counts_only_the_calls_made_during_it() {
        let before: BTreeMap<String, u64> = [("S3.PutObject".to_string(), 3)].into();
        let after: BTreeMap<String, u64> = [
            ("S3.PutObject".to_string(), 5),
            ("ElasticBeanstalk.SwapEnvironmentCNAMEs".to_string(), 1),
        ]
        .into();
        let d = diff(&after, &before);
        assert_eq!(d["S3.PutObject"], 2);
        assert_eq!(d["ElasticBeanstalk.SwapEnvironmentCNAMEs"], 1);
        assert_eq!(diff(&before, &before), BTreeMap::new());
    }
}
