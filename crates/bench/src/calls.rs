//! Point 5: the calls each deployment of [`crate::deploy::demo`] made, against a tool that polls every
//! 10 s through the same timeline, and stage's reaction time to a launch that fails halfway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use local_aws::beanstalk::Options;
use local_aws::faults::Faults;
use local_aws::lambda::Invocation;
use test_support::bed::Bed;

use crate::deploy::{swap_mode, DemoRun, Deployment};
use crate::table::{Table, Verdict};
use crate::Config;

/// The polling interval of the common tools (`eb deploy`, `aws elasticbeanstalk wait`... ask every 10 s
/// or more often) that point 5 compares against.
const POLL: Duration = Duration::from_secs(10);

/// Functions whose actions wait on Beanstalk (a polling tool would poll through them), and the calls such
/// a tool makes per poll: the version's status while package waits for Beanstalk to process it; the
/// environment and its new events (as `eb` streams them) while the others wait.
const WAITING: &[(&str, u64)] = &[("package", 1), ("stage", 2), ("swap", 2), ("retire", 2)];

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
