//! Point 1: cold start, from spawning the process to the first invocation answered, under a local Lambda
//! Runtime API; beside it a Python handler that imports boto3 and creates the same four clients.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use local_aws::lambda::{Function, Invocation};
use local_aws::LocalAws;

use crate::table::{ms, Table, Verdict};
use crate::Config;

const GOAL: Duration = Duration::from_millis(20);
const RATIO_GOAL: f64 = 10.0;
const PYTHON_HANDLER: &str = include_str!("../python/boto3_handler.py");

/// One cold start: spawn, invoke once with a job whose UserParameters are empty (every function parses
/// them, reports a ConfigurationError to CodePipeline, answers), stop. Returns the time and whether the
/// job was reported.
async fn once(local: &LocalAws, binary: &Path) -> Result<(Duration, bool), String> {
    let event = crate::fixtures::job_event("{}");
    let id = event["CodePipeline.job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let env = [
        ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
        ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", local.endpoint()),
        ("AWS_ENDPOINT_URL_S3", local.endpoint()),
        ("AWS_ENDPOINT_URL_ROUTE_53", local.endpoint()),
        ("RUST_LOG", "off".to_string()),
    ];
    let started = Instant::now();
    let mut function = Function::start(binary, &env)
        .await
        .map_err(|e| e.to_string())?;
    function.timeout = Duration::from_secs(30);
    let answer = function.invoke(event).await.map_err(|e| e.to_string())?;
    let took = started.elapsed();
    drop(function);
    if let Invocation::Error(e) = answer {
        return Err(format!("the invocation failed: {e}"));
    }
    let reported = local.job_results().iter().any(|r| r.job_id == id);
    Ok((took, reported))
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Option<Stats> {
    samples.sort();
    Some(Stats {
        median: *samples.get(samples.len() / 2)?,
        min: *samples.first()?,
        max: *samples.last()?,
    })
}

async fn measure(local: &LocalAws, binary: &Path, runs: usize) -> Result<(Stats, bool), String> {
    // One untimed run first: the binary's pages come from disk once, as they would be in Lambda's cache.
    once(local, binary).await?;
    let mut samples = vec![];
    let mut all_reported = true;
    for _ in 0..runs {
        let (took, reported) = once(local, binary).await?;
        all_reported &= reported;
        samples.push(took);
    }
    stats(samples)
        .map(|s| (s, all_reported))
        .ok_or_else(|| "no runs".to_string())
}

fn python_script(work: &Path, python: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let script = work.join("boto3_handler.py");
    let text = PYTHON_HANDLER.replacen(
        "#!/usr/bin/env python3",
        &format!("#!{}", python.display()),
        1,
    );
    std::fs::write(&script, text).map_err(|e| format!("{}: {e}", script.display()))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    Ok(script)
}

pub async fn run(config: &Config, work: &Path) -> Table {
    let mut table = Table::new(
        "1. Cold start: process spawn -> first invocation answered (local Lambda Runtime API)",
        &[
            "function",
            "median ms",
            "min ms",
            "max ms",
            "runs",
            "job reported",
        ],
    );
    let local = match LocalAws::start(([127, 0, 0, 1], 0).into()).await {
        Ok(l) => l,
        Err(e) => {
            table.note(format!("could not start local-aws: {e}"));
            table.goal("measured", Verdict::Missing);
            return table;
        }
    };
    let mut worst_ours: Option<Duration> = None;
    let mut all_ours = true;
    for name in crate::FUNCTIONS {
        let binary = config.bin_dir.join(name);
        if !binary.exists() {
            table.row(vec![name.to_string(), "not built".into()]);
            all_ours = false;
            continue;
        }
        crate::progress(&format!("cold start: {name}"));
        match measure(&local, &binary, config.cold_runs).await {
            Ok((s, reported)) => {
                worst_ours = Some(worst_ours.unwrap_or_default().max(s.median));
                table.row(vec![
                    name.to_string(),
                    ms(s.median),
                    ms(s.min),
                    ms(s.max),
                    config.cold_runs.to_string(),
                    if reported { "yes" } else { "no" }.into(),
                ]);
            }
            Err(e) => {
                all_ours = false;
                table.row(vec![name.to_string(), format!("error: {e}")]);
            }
        }
    }
    let mut python_median = None;
    let python = config.root.join(".venv/bin/python");
    match python_script(work, &python) {
        Ok(script) if python.exists() => {
            crate::progress("cold start: python + boto3");
            match measure(&local, &script, config.python_runs).await {
                Ok((s, reported)) => {
                    python_median = Some(s.median);
                    table.row(vec![
                        "python 3 + boto3 (4 clients)".into(),
                        ms(s.median),
                        ms(s.min),
                        ms(s.max),
                        config.python_runs.to_string(),
                        if reported { "yes" } else { "no" }.into(),
                    ]);
                }
                Err(e) => table.row(vec!["python + boto3".into(), format!("error: {e}")]),
            }
        }
        Ok(_) => table.note(format!(
            "{} missing: run scripts/test once to create .venv",
            python.display()
        )),
        Err(e) => table.note(e),
    }
    match worst_ours {
        Some(worst) => table.goal(
            format!(
                "every function's median under {} ms (slowest: {} ms)",
                GOAL.as_millis(),
                ms(worst)
            ),
            Verdict::of(all_ours && worst < GOAL),
        ),
        None => table.goal("our cold start measured", Verdict::Missing),
    }
    match (worst_ours, python_median) {
        (Some(ours), Some(python)) => {
            let ratio = python.as_secs_f64() / ours.as_secs_f64().max(1e-9);
            table.goal(
                format!("Python/boto3 at least {RATIO_GOAL}x slower than our slowest (ratio {ratio:.1}x)"),
                Verdict::of(ratio >= RATIO_GOAL),
            );
        }
        _ => table.goal("ratio to Python measured", Verdict::Missing),
    }
    table.note(format!(
        "binaries from {} (host build on this machine; Lambda runs the arm64 build of the same code); \
         each run starts a fresh process, one untimed run first warms the page cache; the job is a \
         configuration error, so each side does its init plus one PutJobFailureResult; the Python handler \
         creates all four clients (CodePipeline, Elastic Beanstalk, S3, Route 53), each of ours the ones it \
         uses: retire creates the same four, so its row is the like-for-like one",
        config.bin_dir.display()
    ));
    table
}
