//! Points 3 (every function but package), 5 and 6: the pipeline of pipeline-template.json run on
//! local-aws twice (v1, then v1 -> v2) with a simulated launch delay and a steady load on production,
//! as `beanswap demo` runs it, but with the call counts read between the deployments so the v1 -> v2
//! deployment is counted on its own. Also the reaction time to a failed launch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use beanswap_cli::local::LocalCloud;
use beanswap_cli::pipeline::{self, Approval, RunOptions, RunResult, Ui};
use beanswap_cli::probe::{self, Probe, Sample};
use beanswap_cli::template::{self, Stack};
use local_aws::beanstalk::Options;
use local_aws::faults::Faults;
use local_aws::lambda::Invocation;
use test_support::bed::Bed;

use crate::table::{ms, Table, Verdict};
use crate::Config;

/// The polling interval of the common tools (`eb deploy`, `aws elasticbeanstalk wait`... ask every 10 s
/// or more often) that point 5 compares against.
const POLL: Duration = Duration::from_secs(10);

/// Functions whose actions wait on Beanstalk (a polling tool would poll through them), and the calls such
/// a tool makes per poll: the version's status while package waits for Beanstalk to process it; the
/// environment and its new events (as `eb` streams them) while the others wait.
const WAITING: &[(&str, u64)] = &[("package", 1), ("stage", 2), ("swap", 2), ("retire", 2)];

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

pub async fn demo(config: &Config, work: &Path) -> Result<DemoRun, String> {
    demo_of(config, work, false).await
}

/// `beanswap demo --bad-release`'s three deployments: v3 answers 5 % of requests with 500 and the swap's
/// bake moves production back to v2 (its deployment ends failed at Swap, as it should).
pub async fn bad_release(config: &Config, work: &Path) -> Result<DemoRun, String> {
    demo_of(config, work, true).await
}

async fn demo_of(config: &Config, work: &Path, bad: bool) -> Result<DemoRun, String> {
    let root = &config.root;
    let work = &work.join(if bad { "bad-release" } else { "demo" });
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let v1 = root.join("examples/app");
    // v2 changes the schema (expand only), as the demo's does: the swap is measured with a migration.
    let v2 =
        beanswap_cli::run::next_release(&v1, work, "second release\n", "0002_orders_note.sql")?;
    let mut releases = vec![v1, v2.clone()];
    if bad {
        releases.push(beanswap_cli::run::bad_release(&v2, work)?);
    }
    let count = releases.len();
    let ui = Ui { json: false };
    crate::progress(&format!(
        "deployments: local cloud with a {} launch delay",
        humantime::format_duration(config.launch_delay)
    ));
    let cloud = LocalCloud::start(
        root,
        beanswap_cli::run::cloud_options(config.launch_delay),
        &|m| crate::progress(m),
    )
    .await
    .map_err(|e| e.to_string())?;
    let sdk = cloud.sdk_config().await;
    let mut parameters = beanswap_cli::run::local_parameters();
    // No previous environment kept: retire terminates v1's after the swap, so the run measures that it
    // waits for the old environment to go idle (and the cutover is watched to its end).
    parameters.insert("KeepPreviousEnvironments".into(), "0".into());
    if let Some(domain) = &config.domain {
        beanswap_cli::run::serve_domain(&cloud.route53(&sdk), domain, &mut parameters).await?;
    }
    let stack = Stack::load(&root.join("pipeline-template.json"), &parameters)
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
        config.probe_rate,
    );
    let mut deployments = vec![];
    let mut pictured = vec![];
    let mut failure = None;
    for (i, source) in releases.into_iter().enumerate() {
        crate::progress(&format!(
            "deployment {} of {count}: {}",
            i + 1,
            source.display()
        ));
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
        // The bad release is meant to fail, at Swap, moved back by the bake; anything else is a failure.
        let expected = bad
            && i == 2
            && run
                .failure
                .as_ref()
                .is_some_and(|f| f.to_string().contains("the bake caught"));
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
    let samples = probe.stop().await;
    let peaks_kib = sampler.peaks();
    drop(sampler);
    let events = deployments
        .iter()
        .flat_map(|d: &Deployment| d.run.events.iter().cloned())
        .collect();
    let mut data = beanswap_cli::report::Run::new(
        format!("beanswap-bench deployments ({})", swap_mode(config)),
        format!("http://{production}/version"),
        samples.clone(),
        pictured,
        events,
        epoch.elapsed(),
    );
    data.instances = timeline;
    let cutovers = (0..data.deployments.len())
        .map(|i| data.summary(i))
        .collect();
    let report_dir = if bad {
        config.report_dir.join("bad-release")
    } else {
        config.report_dir.clone()
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

/// How production moves in this run.
fn swap_mode(config: &Config) -> String {
    match &config.domain {
        Some(domain) => format!("route53 swap of {domain}"),
        None => "Beanstalk CNAME swap".into(),
    }
}

fn service(operation: &str) -> &str {
    operation.split('.').next().unwrap_or(operation)
}

/// What a tool polling every 10 s would call for the same timeline: the same one-off calls as ours
/// (every call but Beanstalk's Describe*/List* reads and CodePipeline's job reports), one job report
/// per action, and the polls of [`WAITING`] every 10 s through every wait.
fn polling_tool(d: &Deployment) -> (BTreeMap<String, u64>, Duration) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (op, n) in &d.calls {
        let read = op.starts_with("ElasticBeanstalk.Describe")
            || op.starts_with("ElasticBeanstalk.List")
            || op.starts_with("CodePipeline.");
        if !read {
            *counts.entry(service(op).to_string()).or_default() += n;
        }
    }
    let mut waited = Duration::ZERO;
    for a in &d.run.actions {
        let Some(function) = d.functions.get(&a.action) else {
            continue;
        };
        *counts.entry("CodePipeline".into()).or_default() += 1;
        if let Some((_, per_poll)) = WAITING.iter().find(|(f, _)| f == function) {
            let wait = a.end.saturating_sub(a.start);
            waited += wait;
            let polls = wait.as_secs().div_ceil(POLL.as_secs()).max(1);
            *counts.entry("ElasticBeanstalk".into()).or_default() += per_poll * polls;
        }
    }
    (counts, waited)
}

const SERVICES: &[&str] = &["ElasticBeanstalk", "S3", "Route53", "CodePipeline"];

fn per_service(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (op, n) in calls {
        *out.entry(service(op).to_string()).or_default() += n;
    }
    out
}

pub fn calls_table(
    config: &Config,
    demo: &Result<DemoRun, String>,
    reactions: &[Reaction],
) -> Table {
    let mut header = vec!["deployment", "who"];
    header.extend(SERVICES);
    header.extend(["total", "waited s"]);
    let mut table = Table::new(
        &format!(
            "5. API calls per deployment (launch delay {}, {}, measured on local-aws + moto)",
            humantime::format_duration(config.launch_delay),
            swap_mode(config)
        ),
        &header,
    );
    let demo = match demo {
        Ok(d) => d,
        Err(e) => {
            table.note(format!("not measured: {e}"));
            table.goal("fewer calls than a 10 s poller", Verdict::Missing);
            return table;
        }
    };
    let mut v2 = None;
    for (i, d) in demo.deployments.iter().enumerate() {
        let label = if i == 0 {
            "#1 first (v1)"
        } else {
            "#2 v1 -> v2"
        };
        let ours = per_service(&d.calls);
        let (theirs, waited) = polling_tool(d);
        let mut row = |who: &str, counts: &BTreeMap<String, u64>| {
            let mut cells = vec![label.to_string(), who.to_string()];
            let mut total = 0;
            for s in SERVICES {
                let n = counts.get(*s).copied().unwrap_or(0);
                total += n;
                cells.push(n.to_string());
            }
            // Anything outside the four services (there should be none) still counts.
            total += counts
                .iter()
                .filter(|(k, _)| !SERVICES.contains(&k.as_str()))
                .map(|(_, v)| v)
                .sum::<u64>();
            cells.push(total.to_string());
            cells.push(format!("{:.0}", waited.as_secs_f64()));
            table.row(cells);
            total
        };
        let o = row("beanswap (measured)", &ours);
        let t = row("poll every 10 s (computed)", &theirs);
        if i == 1 {
            v2 = Some((o, t));
        }
    }
    match v2 {
        // A launch of a second or two leaves a poller nothing to poll: only the full run's minutes-long
        // launch compares the two ways of waiting.
        Some((ours, theirs)) if config.short => table.goal(
            format!(
                "v1 -> v2: fewer calls than a 10 s poller ({ours} vs {theirs}; not judged with --short's \
                 {} launch, see the full run)",
                humantime::format_duration(config.launch_delay)
            ),
            Verdict::Missing,
        ),
        Some((ours, theirs)) => table.goal(
            format!("v1 -> v2: fewer calls than a 10 s poller ({ours} vs {theirs})"),
            Verdict::of(ours < theirs),
        ),
        None => table.goal("v1 -> v2 measured", Verdict::Missing),
    }
    // A 10 s poller notices a failure up to 10 s after it (5 s on average); run as a pipeline action it
    // also waits for CodePipeline to invoke it again. Ours must be no later, in every case measured.
    let worst = beanswap_core::beanstalk::poll_delay(u32::MAX);
    let bound = POLL + config.continuation_pause;
    let mut seen = vec![];
    let mut verdict = Verdict::of(worst <= POLL && !reactions.is_empty());
    for r in reactions {
        match &r.measured {
            Ok(d) => {
                seen.push(format!(
                    "failing {:.0} s in: {:.1} s",
                    r.failed_after.as_secs_f64(),
                    d.as_secs_f64()
                ));
                if *d > bound {
                    verdict = Verdict::Fail;
                }
            }
            Err(e) => {
                seen.push(format!(
                    "failing {:.0} s in: not measured ({e})",
                    r.failed_after.as_secs_f64()
                ));
                if verdict == Verdict::Pass {
                    verdict = Verdict::Missing;
                }
            }
        }
    }
    table.goal(
        format!(
            "no loss of reaction time to failure: reported after the ERROR event within a 10 s poller's \
             worst case plus CodePipeline's pause ({:.1} s): {}; our longest gap between polls is {} s \
             (core::beanstalk::poll_delay cap)",
            bound.as_secs_f64(),
            seen.join(", "),
            worst.as_secs()
        ),
        verdict,
    );
    table.note(
        "ours: every call local-aws (Beanstalk, CodePipeline) and the counting proxy in front of moto \
         (S3, Route 53) answered during that deployment, by the functions and by the local pipeline \
         runner (artifact uploads). The poller is credited with the same one-off calls, none of our \
         lookups (Describe*/List*), one CodePipeline job report per action instead of one per \
         continuation, and every 10 s for as long as ours took: DescribeApplicationVersions while package \
         waits for the version to be processed, DescribeEnvironments + DescribeEvents while stage, swap \
         and retire wait on environments (the status alone would make half those calls, but could not \
         say why a launch failed, which our reports do)",
    );
    for (i, d) in demo.deployments.iter().enumerate() {
        table.note(format!(
            "deployment #{} calls: {}",
            i + 1,
            d.calls
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    table
}

pub fn downtime_table(config: &Config, demo: &Result<DemoRun, String>) -> Table {
    let mut table = Table::new(
        &format!(
            "6. Downtime: a steady {} req/s on the production URL through the deployments ({}; \
             {} clients caching DNS answers for the TTL, 60 s scaled to {} s, {:.0} % of them for {}x)",
            config.probe_rate,
            swap_mode(config),
            probe::Crowd::default().clients,
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
        "the load probe of `beanswap demo` (GET /api/orders, a database write and read, 5 s timeout) from clients that \
         resolve the production name through local-aws's DNS and connect to the load balancer it answers with, \
         keeping each answer for its TTL; every environment runs the template's MinInstances (2) instances; \
         {} requests before production first answered are not counted",
        overall.before_up
    ));
    table
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

/// One failing launch: how far in it failed, and how long after its ERROR event stage reported it.
pub struct Reaction {
    pub failed_after: Duration,
    pub measured: Result<Duration, String>,
}

/// stage on launches that fail halfway: time from the ERROR event to the job's failure report. Two
/// launches: one failing while stage's first invocation still polls, one failing after that invocation
/// handed back its continuation token (2.5 times as long), so the pause between invocations counts too.
pub async fn reaction(config: &Config) -> Vec<Reaction> {
    let mut out = vec![];
    for launch in [config.reaction_launch, config.reaction_launch * 5 / 2] {
        out.push(Reaction {
            failed_after: launch / 2,
            measured: reaction_inner(config, launch).await,
        });
    }
    out
}

async fn reaction_inner(config: &Config, launch: Duration) -> Result<Duration, String> {
    let binary: PathBuf = config.bin_dir.join("stage");
    if !binary.exists() {
        return Err(format!("{} not built", binary.display()));
    }
    crate::progress(&format!(
        "reaction time: stage on a launch that fails {} in",
        humantime::format_duration(launch / 2)
    ));
    let bed = Bed::start_unenforced(Options {
        launch_delay: launch,
        terminate_delay: Duration::from_millis(500),
        faults: Faults {
            fail_launch: vec!["*".into()],
            ..Faults::default()
        },
        ..Options::default()
    }, "a benchmark of reaction time: it measures how long stage takes, and the enforced runs are the tests")
    .await;
    let bundle = crate::fixtures::app_bundle(&config.root, "v1")?;
    bed.version("v1", bundle).await;
    let mut f = bed.function(&binary).await;
    let params = r#"{"application":"shop","version_label":"v1","production_cname":"shop-prod","solution_stack":"64bit Amazon Linux 2023 v4.5.2 running Python 3.11"}"#;
    let mut token: Option<String> = None;
    let mut outcome = None;
    for _ in 0..500 {
        let mut event = crate::fixtures::job_event(params);
        if let Some(t) = &token {
            tokio::time::sleep(config.continuation_pause).await;
            event["CodePipeline.job"]["data"]["continuationToken"] = serde_json::json!(t);
        }
        let id = event["CodePipeline.job"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Invocation::Error(e) = f.invoke(event).await.map_err(|e| e.to_string())? {
            return Err(format!("stage's invocation failed: {e}"));
        }
        let result = bed
            .local
            .job_results()
            .into_iter()
            .find(|r| r.job_id == id)
            .ok_or("stage reported nothing")?;
        token = result.request["continuationToken"]
            .as_str()
            .map(str::to_string);
        if token.is_none() {
            outcome = Some(result.operation);
            break;
        }
    }
    let reported = SystemTime::now();
    match outcome.as_deref() {
        Some("PutJobFailureResult") => {}
        Some(other) => return Err(format!("the failing launch was reported with {other}")),
        None => return Err("stage still continuing after 500 invocations".into()),
    }
    let events = bed
        .eb
        .describe_events()
        .application_name("shop")
        .send()
        .await
        .map_err(|e| format!("DescribeEvents: {e}"))?;
    let failed = events
        .events()
        .iter()
        .filter(|e| e.severity().map(|s| s.as_str()) == Some("ERROR"))
        .filter_map(|e| e.event_date())
        .filter_map(|d| SystemTime::try_from(*d).ok())
        .min()
        .ok_or("no ERROR event")?;
    reported
        .duration_since(failed)
        .map_err(|e| format!("clock: {e}"))
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
