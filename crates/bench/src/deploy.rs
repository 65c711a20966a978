//! Points 3 (every function but package), 5, 6, 7 and 8: the pipeline of pipeline-template.json run on
//! local-aws (v1, then v1 -> v2, and the variants of [`Variant`]) with a simulated launch delay and a
//! steady load on production, as `beanswap demo` runs it, but with the call counts read between the
//! deployments so the v1 -> v2 deployment is counted on its own. The tables of point 5 are in
//! [`crate::calls`], of points 6-8 in [`crate::cutover`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use beanswap_cli::local::LocalCloud;
use beanswap_cli::pipeline::{self, Approval, RunOptions, RunResult, Ui};
use beanswap_cli::probe::{self, Probe, Sample};
use beanswap_cli::template::{self, Stack};

use crate::table::Table;
use crate::Config;

pub struct Deployment {
    pub run: RunResult,
    pub calls: BTreeMap<String, u64>,
    /// Which function each action ran (by action name).
    pub functions: BTreeMap<String, String>,
    /// Offsets from the probe's start.
    pub window: (Duration, Duration),
}

pub struct DemoRun {
    pub deployments: Vec<Deployment>,
    pub samples: Vec<Sample>,
    pub peaks_kib: BTreeMap<String, u64>,
    /// Per deployment: failures, the old version after the swap, the cutover, draining refusals,
    /// instances over time (the report module's reading of the probe).
    pub cutovers: Vec<beanswap_cli::report::DeploymentSummary>,
}

use beanswap_cli::run::diff;

/// Which run of the pipeline a point measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variant {
    /// `beanswap demo`: v1, then v1 -> v2 (points 3, 5, 6).
    Demo,
    /// `beanswap demo --bad-release`: then v3, which answers 5 % of requests with 500; the swap's bake
    /// moves production back to v2 (its deployment ends failed at Swap, as it should) (point 7).
    BadRelease,
    /// v1 grown by load to [`GROWN`] instances, then v2 staged at MinInstances (2), swapped with
    /// MatchCapacity on or off (point 8). The app takes [`SLOW`] per request and an instance serves
    /// [`INSTANCE_CAPACITY`] at once, so 2 instances cannot carry the load that grew v1 to 4.
    UnderProvisioned { match_capacity: bool },
}

/// Point 8's load, whatever `--probe-rate` says: the rate its goal is stated at. It starts at
/// `LOADED_RATE - SURGE`, which the first environment's 2 instances carry (a first deployment's new
/// environment takes production at its MinSize), and grows by [`SURGE`] once v1 serves production.
pub const LOADED_RATE: u32 = 300;
/// Point 8's added load after the first deployment: what makes Auto Scaling grow production.
pub const SURGE: u32 = 200;
/// Point 8's live size before the second deployment.
pub const GROWN: usize = 4;
/// Point 8's app: every answer waits this long first (the example app's SLOW_MS), so an instance's
/// concurrency is set by the load and hardly by how busy the machine is. Answers take about 45 ms more
/// here (measured: the app's own work and its two writes per answer).
pub const SLOW: Duration = Duration::from_millis(150);
/// Point 8's instance size: concurrent requests one instance serves before it answers 503. At about
/// 195 ms an answer, an instance carries about 110 req/s: 300 req/s keeps 4 instances two-thirds busy
/// and overloads 2 by a third.
pub const INSTANCE_CAPACITY: usize = 22;
/// Point 8's scaling trigger: above 80 req/s per instance one more instance, so 300 req/s grows the
/// live environment to 4 (75 req/s each) and keeps it there.
pub const SCALE_UP_RATE: f64 = 80.0;

impl Variant {
    fn dir(self) -> &'static str {
        match self {
            Variant::Demo => "demo",
            Variant::BadRelease => "bad-release",
            Variant::UnderProvisioned {
                match_capacity: true,
            } => "capacity-matched",
            Variant::UnderProvisioned {
                match_capacity: false,
            } => "capacity-unmatched",
        }
    }

    /// Whether deployment `i` (from 0) ending with `failure` is what this variant expects: the bad
    /// release is moved back by the bake; an unmatched small clone may be too (its overload is 5xx).
    fn expected_failure(self, i: usize, failure: &str) -> bool {
        let by_bake = failure.contains("the bake caught");
        match self {
            Variant::Demo => false,
            Variant::BadRelease => i == 2 && by_bake,
            Variant::UnderProvisioned { match_capacity } => !match_capacity && i == 1 && by_bake,
        }
    }
}

pub async fn demo(config: &Config, work: &Path) -> Result<DemoRun, String> {
    run(config, work, Variant::Demo).await
}

pub async fn run(config: &Config, work: &Path, variant: Variant) -> Result<DemoRun, String> {
    let root = &config.root;
    let work = &work.join(variant.dir());
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let v1 = root.join("examples/app");
    // v2 changes the schema (expand only), as the demo's does: the swap is measured with a migration.
    let v2 =
        beanswap_cli::run::next_release(&v1, work, "second release\n", "0002_orders_note.sql")?;
    let mut releases = vec![v1, v2.clone()];
    if variant == Variant::BadRelease {
        releases.push(beanswap_cli::run::bad_release(&v2, work)?);
    }
    let count = releases.len();
    let ui = Ui { json: false };
    crate::progress(&format!(
        "deployments: local cloud with a {} launch delay",
        humantime::format_duration(config.launch_delay)
    ));
    let mut options = beanswap_cli::run::cloud_options(config.launch_delay);
    let mut template_path = root.join("pipeline-template.json");
    if let Variant::UnderProvisioned { .. } = variant {
        options.instance_capacity = INSTANCE_CAPACITY;
        if let Some(scaling) = &mut options.scaling {
            scaling.upper = SCALE_UP_RATE;
        }
        template_path = slow_app_template(root, work)?;
    }
    let cloud = LocalCloud::start(root, options, &|m| crate::progress(m))
        .await
        .map_err(|e| e.to_string())?;
    let sdk = cloud.sdk_config().await;
    let mut parameters = beanswap_cli::run::local_parameters();
    // No previous environment kept: retire terminates v1's after the swap, so the run measures that it
    // waits for the old environment to go idle (and the cutover is watched to its end).
    parameters.insert("KeepPreviousEnvironments".into(), "0".into());
    if let Variant::UnderProvisioned { match_capacity } = variant {
        parameters.insert("MatchCapacity".into(), match_capacity.to_string());
    }
    if let Some(domain) = &config.domain {
        beanswap_cli::run::serve_domain(&cloud.route53(&sdk), domain, &mut parameters).await?;
    }
    let stack = Stack::load(&template_path, &parameters)
        .map_err(|e| e.to_string())?
        .without(beanswap_cli::run::NOT_CREATED_LOCALLY);
    // The real PostgreSQL the environments share, as `beanswap demo` runs it (stopped when this returns).
    let database = beanswap_cli::database::start(work, &cloud, &stack).await?;
    let stack = database.provide(stack);
    let pipeline_def = stack.pipeline().map_err(|e| e.to_string())?;
    let functions: BTreeMap<String, String> = pipeline_def
        .stages
        .iter()
        .flat_map(|s| s.actions.iter())
        .filter_map(|a| Some((a.name.clone(), a.function.clone()?)))
        .collect();
    let domain = parameters
        .get("DomainName")
        .filter(|d| !d.is_empty())
        .cloned();
    beanswap_cli::run::provision(&stack, &cloud.beanstalk(&sdk)).await?;
    // Beanstalk's own bucket, which package defaults to: AWS creates it on an account's first use of
    // Beanstalk (CreateStorageLocation); the local cloud has none until someone does.
    let storage = format!(
        "elasticbeanstalk-{}-{}",
        template::REGION,
        template::ACCOUNT
    );
    if let Err(e) = cloud.s3(&sdk).create_bucket().bucket(&storage).send().await {
        crate::progress(&format!("create bucket {storage}: {e}"));
    }
    let sampler = crate::procs::Sampler::start(
        crate::FUNCTIONS
            .iter()
            .map(|f| config.bin_dir.join(f))
            .collect(),
        Duration::from_millis(20),
    );
    // Users reach production by the custom domain when there is one.
    let production = domain
        .clone()
        .unwrap_or_else(|| format!("shop-prod.{}.elasticbeanstalk.com", template::REGION));
    let epoch = Instant::now();
    let probe = Probe::start_with(
        beanswap_cli::run::probe_resolution(&cloud),
        production.clone(),
        beanswap_cli::run::PROBE_PATH.into(),
        match variant {
            Variant::UnderProvisioned { .. } => LOADED_RATE - SURGE,
            _ => config.probe_rate,
        },
    );
    let mut surge: Option<Probe> = None;
    let mut deployments = vec![];
    let mut pictured = vec![];
    let mut failure = None;
    for (i, source) in releases.into_iter().enumerate() {
        crate::progress(&format!(
            "deployment {} of {count}: {}",
            i + 1,
            source.display()
        ));
        if let (Variant::UnderProvisioned { .. }, 1) = (variant, i) {
            surge = Some(Probe::start_with(
                beanswap_cli::run::probe_resolution(&cloud),
                production.clone(),
                beanswap_cli::run::PROBE_PATH.into(),
                SURGE,
            ));
            grown(&probe, GROWN).await?;
        }
        let before = cloud.call_counts();
        let start = probe.started.elapsed();
        let options = RunOptions {
            pipeline: pipeline_def.clone(),
            source,
            bin_dir: config.bin_dir.clone(),
            approval: Approval::Auto,
            json: false,
            continuation_pause: config.continuation_pause,
            action_timeout: Duration::from_secs(1800),
            domain: domain.clone(),
            log_dir: std::env::temp_dir(),
            launch_delay: Some(config.launch_delay),
            now: None,
            previous: deployments
                .iter()
                .rev()
                .find(|d: &&Deployment| d.run.failure.is_none())
                .map(|d| d.run.variables.clone()),
            identities: None,
        };
        let run = pipeline::run(&cloud, &options, &ui, epoch).await;
        let end = probe.started.elapsed();
        let calls = diff(&cloud.call_counts(), &before);
        pictured.push(beanswap_cli::report::Deployment::from_run(
            i,
            &options.source,
            &run,
            calls.clone(),
            (start, end),
        ));
        let expected = run
            .failure
            .as_ref()
            .is_some_and(|f| variant.expected_failure(i, &f.to_string()));
        if let (Some(f), false) = (&run.failure, expected) {
            failure = Some(format!("deployment {} failed: {f}", i + 1));
        }
        deployments.push(Deployment {
            run,
            calls,
            functions: functions.clone(),
            window: (start, end),
        });
        if failure.is_some() {
            break;
        }
    }
    // Keep probing after the last swap until every client's cached answer has expired (the stubborn
    // ones keep theirs 3 TTLs), so the cutover is measured to its end even when the old environment
    // stays (a route53 swap leaves it holding the production CNAME, so retire keeps it).
    let crowd = probe::Crowd::default();
    tokio::time::sleep(
        beanswap_cli::run::DNS_TTL.mul_f64(crowd.stubborn_factor) + Duration::from_secs(1),
    )
    .await;
    if let Some(last) = deployments.last_mut() {
        pipeline::later_events(&cloud, &ui, &mut last.run, epoch).await;
    }
    let timeline = probe.instances();
    let probe_started = probe.started;
    let mut samples = probe.stop().await;
    if let Some(surge) = surge {
        // On the main probe's clock, so the two loads read as one.
        let offset = surge.started.saturating_duration_since(probe_started);
        samples.extend(surge.stop().await.into_iter().map(|mut s| {
            s.at += offset;
            s
        }));
        samples.sort_by_key(|s| s.at);
    }
    let peaks_kib = sampler.peaks();
    drop(sampler);
    let events = deployments
        .iter()
        .flat_map(|d: &Deployment| d.run.events.iter().cloned())
        .collect();
    let mut data = beanswap_cli::report::Run::new(
        format!(
            "beanswap-bench deployments, {} ({})",
            variant.dir(),
            swap_mode(config)
        ),
        beanswap_cli::run::probe_target(&production),
        samples.clone(),
        pictured,
        events,
        epoch.elapsed(),
    );
    data.set_instances(timeline);
    let cutovers = (0..data.deployments.len())
        .map(|i| data.summary(i))
        .collect();
    let report_dir = match variant {
        Variant::Demo => config.report_dir.clone(),
        _ => config.report_dir.join(variant.dir()),
    };
    match beanswap_cli::report::write(&data, &report_dir) {
        Ok(written) => {
            crate::progress(&format!("deployments' report: {}", written.html.display()));
            if let Some(png) = beanswap_cli::run::screenshot(&data, &written.html, &ui).await {
                crate::progress(&format!("its screenshot: {}", png.display()));
            }
        }
        Err(e) => crate::progress(&format!("no report of the deployments: {e}")),
    }
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(DemoRun {
        deployments,
        samples,
        peaks_kib,
        cutovers,
    })
}

/// pipeline-template.json with the app slowed to [`SLOW`] per answer (an environment property of the
/// first environment's settings, which later environments clone), written into `work`.
fn slow_app_template(root: &Path, work: &Path) -> Result<PathBuf, String> {
    let path = root.join("pipeline-template.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut template: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let settings = template["Resources"]["FirstEnvironmentTemplate"]["Properties"]
        ["OptionSettings"]
        .as_array_mut()
        .ok_or("pipeline-template.json: FirstEnvironmentTemplate has no OptionSettings")?;
    settings.push(serde_json::json!({
        "Namespace": "aws:elasticbeanstalk:application:environment",
        "OptionName": "SLOW_MS",
        "Value": SLOW.as_millis().to_string(),
    }));
    let out = work.join("pipeline-template-slow-app.json");
    std::fs::write(&out, template.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

/// Waits until the probe has seen production's environment at `size` instances (the load grows it),
/// for at most two minutes.
async fn grown(probe: &Probe, size: usize) -> Result<(), String> {
    crate::progress(&format!(
        "waiting for the load to grow production to {size} instances"
    ));
    let started = Instant::now();
    loop {
        let now = probe.instances();
        let largest = now
            .last()
            .and_then(|(_, counts)| counts.values().max().copied())
            .unwrap_or_default();
        if largest >= size {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "production did not grow to {size} instances within 2 min (largest: {largest})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How production moves in this run.
pub fn swap_mode(config: &Config) -> String {
    match &config.domain {
        Some(domain) => format!("route53 swap of {domain}"),
        None => "Beanstalk CNAME swap".into(),
    }
}

/// Point 3 for every function but package: peak RSS sampled every 20 ms during the deployments. The
/// largest peak (KiB) and the functions never seen running.
pub fn memory_rows(
    table: &mut Table,
    demo: &Result<DemoRun, String>,
) -> Option<(u64, Vec<String>)> {
    let demo = match demo {
        Ok(d) => d,
        Err(e) => {
            table.note(format!("normal run not measured: {e}"));
            return None;
        }
    };
    let mut worst = 0;
    let mut unseen = vec![];
    for name in crate::FUNCTIONS {
        match demo.peaks_kib.get(*name) {
            Some(kib) => {
                if *name != "package" {
                    worst = worst.max(*kib);
                }
                table.row(vec![
                    name.to_string(),
                    "the demo's deployments".into(),
                    format!("{:.1}", (*kib * 1024) as f64 / 1e6),
                    if *name == "package" { "-" } else { "40" }.into(),
                ]);
            }
            None => {
                unseen.push(name.to_string());
                table.row(vec![name.to_string(), "not seen running".into()]);
            }
        }
    }
    Some((worst, unseen))
}
