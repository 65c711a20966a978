//! beanswap's benchmarks (issue 11): one table per point, each with its goal and PASS/FAIL, every figure
//! measured in this run on this machine, beside what users would pick instead.
//!
//!   cargo run --release -p beanswap-bench            # the full run recorded in docs/benchmarks.md
//!   cargo run --release -p beanswap-bench -- --short # small sizes, short delays (CI runs this)
//!   ... -- --only 6 --json  # and point 6's cutover figures per deployment as a last line of JSON
//!
//! Progress goes to stderr, the tables to stdout.

mod calls;
mod coldstart;
mod cutover;
mod deploy;
mod fixtures;
mod package;
mod procs;
mod size;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use table::{Table, Verdict};

/// Every Lambda function, in pipeline order.
pub const FUNCTIONS: &[&str] = beanswap_cli::run::FUNCTIONS;

#[derive(Parser)]
#[command(
    about = "beanswap's benchmarks: cold start, size, memory, throughput, API calls, downtime"
)]
struct Args {
    /// Small sizes and short delays (the CI version).
    #[arg(long)]
    short: bool,
    /// Where the function binaries are (default: target/release, target/debug with --short); missing ones
    /// are built with cargo.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where `cargo lambda build` left the zips (default: target/lambda).
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
    /// Size of the bundle for memory and throughput, in MB of 10^6 bytes (default 300, 8 with --short).
    #[arg(long)]
    bundle_mb: Option<u64>,
    /// Simulated launch delay of a Beanstalk environment (default 5m, 1s with --short).
    #[arg(long, value_parser = humantime::parse_duration)]
    launch_delay: Option<Duration>,
    /// Requests per second on production during the deployments (default 300, 50 with --short).
    #[arg(long)]
    probe_rate: Option<u32>,
    /// How long "CodePipeline" waits before invoking a continuation (default 1s, 200ms with --short).
    #[arg(long, value_parser = humantime::parse_duration)]
    continuation_pause: Option<Duration>,
    /// Serve production on this custom domain through Route 53 (as `beanswap demo --domain`), so points 5
    /// and 6 measure route53 swaps; the Beanstalk CNAME swap without it.
    #[arg(long)]
    domain: Option<String>,
    /// Only these points (e.g. `--only 1,2`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Also print point 6's per-deployment cutover figures as one line of JSON after the text (the
    /// figures `beanswap demo --json` reports).
    #[arg(long)]
    json: bool,
    /// Where the deployments' report (report.html, report.png, timeline.svg) goes.
    #[arg(long, default_value = "target/beanswap")]
    report_dir: PathBuf,
}

pub struct Config {
    pub root: PathBuf,
    pub bin_dir: PathBuf,
    pub lambda_dir: PathBuf,
    pub short: bool,
    pub cold_runs: usize,
    pub python_runs: usize,
    pub bundle_mb: u64,
    pub launch_delay: Duration,
    pub reaction_launch: Duration,
    pub probe_rate: u32,
    pub continuation_pause: Duration,
    pub domain: Option<String>,
    pub report_dir: PathBuf,
}

pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// Peak RSS as /proc reports it (KiB) in the goals' MB (10^6 bytes).
fn kib_to_mb(kib: u64) -> f64 {
    (kib * 1024) as f64 / 1e6
}

/// Point 3 on the big artifact: a row per function that ran on it and the goal it is held to. Both
/// read the same object: package's bundle to flatten is check-config's artifact to check.
fn big_artifact_rows(
    t: &mut Table,
    run: Option<&Result<package::BigArtifact, String>>,
) -> Vec<(String, Verdict)> {
    type Pick = fn(&package::BigArtifact) -> &Result<package::Invoked, String>;
    let functions: [(&str, &str, &str, f64, Pick); 2] = [
        ("package", "bundle", "to flatten", 128.0, |b| &b.package),
        ("check-config", "artifact", "to check", 64.0, |b| {
            &b.check_config
        }),
    ];
    let mut goals = vec![];
    for (function, what, doing, goal_mb, pick) in functions {
        let measured = match run {
            Some(Ok(big)) => pick(big)
                .as_ref()
                .map(|i| (big.bytes, i.peak_kib.map(kib_to_mb)))
                .map_err(String::clone),
            Some(Err(e)) => Err(e.clone()),
            None => Err("not run".into()),
        };
        let (bytes, peak) = match measured {
            Ok(m) => m,
            Err(e) => {
                t.note(format!("{function} on a big {what} not measured: {e}"));
                goals.push((
                    format!("{function} under {goal_mb:.0} MB"),
                    Verdict::Missing,
                ));
                continue;
            }
        };
        t.row(vec![
            function.into(),
            format!("{} MB {what} {doing}", table::mb(bytes)),
            peak.map(|p| format!("{p:.1}")).unwrap_or("not read".into()),
            format!("{goal_mb:.0}"),
        ]);
        let label = format!(
            "{function} under {goal_mb:.0} MB on a {} MB {what}",
            table::mb(bytes)
        );
        goals.push(match peak {
            Some(peak) => (label, Verdict::of(peak < goal_mb)),
            None => (label, Verdict::Missing),
        });
    }
    goals
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {memory} memory, Linux {}",
        kernel.trim()
    )
}

/// The checkout: the current directory when it is one (so a copied binary measures the checkout it
/// runs in), else where this crate was compiled.
fn workspace_root() -> PathBuf {
    let here = std::env::current_dir().unwrap_or_default();
    if here.join("pipeline-template.json").exists() && here.join("crates/bench").exists() {
        return here;
    }
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    compiled.canonicalize().unwrap_or(compiled)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root = workspace_root();
    // moto for test-support's bed (it would look beside the path it was compiled at).
    if std::env::var_os("MOTO_SERVER").is_none() {
        std::env::set_var("MOTO_SERVER", root.join(".venv/bin/moto_server"));
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        // Ctrl-C drops the run, and with it the local cloud, moto and the apps it started.
        Ok(runtime) => runtime.block_on(async {
            tokio::select! {
                code = run(args, root) => code,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("beanswap-bench: interrupted");
                    ExitCode::from(130)
                }
            }
        }),
        Err(e) => {
            eprintln!("beanswap-bench: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args, root: PathBuf) -> ExitCode {
    let short = args.short;
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        root.join("target")
            .join(if short { "debug" } else { "release" })
    });
    let config = Config {
        root: root.clone(),
        bin_dir,
        lambda_dir: args
            .lambda_dir
            .clone()
            .unwrap_or_else(|| root.join("target/lambda")),
        short,
        cold_runs: if short { 2 } else { 10 },
        python_runs: if short { 1 } else { 5 },
        bundle_mb: args.bundle_mb.unwrap_or(if short { 8 } else { 300 }),
        launch_delay: args.launch_delay.unwrap_or(if short {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(300)
        }),
        reaction_launch: if short {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(120)
        },
        probe_rate: args.probe_rate.unwrap_or(if short { 50 } else { 300 }),
        continuation_pause: args.continuation_pause.unwrap_or(if short {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        }),
        domain: args.domain.clone(),
        report_dir: args.report_dir.clone(),
    };
    let wants = |n: u8| args.only.is_empty() || args.only.contains(&n);

    let ui = beanswap_cli::pipeline::Ui { json: false };
    if let Err(e) = beanswap_cli::run::ensure_binaries(&config.root, &config.bin_dir, &ui) {
        progress(&format!("could not build the functions: {e}"));
    }
    let work = match tempfile::Builder::new().prefix("beanswap-bench-").tempdir() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("beanswap-bench: {e}");
            return ExitCode::from(2);
        }
    };

    let mut tables: Vec<(u8, Table)> = vec![];
    if wants(1) {
        tables.push((1, coldstart::run(&config, work.path()).await));
    }
    if wants(2) {
        tables.push((2, size::run(&config)));
    }
    let package_run = if wants(3) || wants(4) {
        let (t, run) = package::run(&config, work.path()).await;
        if wants(4) {
            tables.push((4, t));
        }
        Some(run)
    } else {
        None
    };
    let demo = if wants(3) || wants(5) || wants(6) {
        Some(deploy::demo(&config, work.path()).await)
    } else {
        None
    };
    if wants(3) {
        let mut t = Table::new(
            "3. Memory: peak RSS (VmHWM) of each function process",
            &["function", "workload", "peak RSS MB", "goal MB"],
        );
        let big_goals = big_artifact_rows(&mut t, package_run.as_ref());
        let others = match &demo {
            Some(d) => deploy::memory_rows(&mut t, d),
            None => None,
        };
        for (label, verdict) in big_goals {
            t.goal(label, verdict);
        }
        match others {
            Some((kib, unseen)) if unseen.is_empty() => t.goal(
                format!(
                    "every other function under 40 MB on a normal run (largest: {:.1} MB)",
                    kib_to_mb(kib)
                ),
                Verdict::of(kib > 0 && kib_to_mb(kib) < 40.0),
            ),
            // A function never seen running is not under the limit, it is unmeasured.
            Some((_, unseen)) => t.goal(
                format!(
                    "every other function under 40 MB ({} never seen running)",
                    unseen.join(", ")
                ),
                Verdict::Missing,
            ),
            None => t.goal("every other function under 40 MB", Verdict::Missing),
        }
        t.note(format!(
            "binaries from {}; on the big artifact (one object in the local S3, the same for both) \
             package's and check-config's peaks are read from /proc/<pid>/status after each one's job \
             was reported; on the demo's deployments every function's is sampled every 20 ms while \
             `beanswap demo`'s pipeline runs them",
            config.bin_dir.display()
        ));
        tables.push((3, t));
    }
    if wants(5) {
        let reactions = calls::reaction(&config).await;
        if let Some(d) = &demo {
            tables.push((5, calls::calls_table(&config, d, &reactions)));
        }
    }
    if wants(6) {
        if let Some(d) = &demo {
            tables.push((6, cutover::downtime_table(&config, d)));
        }
    }
    if wants(7) {
        let run = deploy::run(&config, work.path(), deploy::Variant::BadRelease).await;
        tables.push((7, cutover::bad_release_table(&config, &run)));
    }
    if wants(8) {
        let matched = deploy::run(
            &config,
            work.path(),
            deploy::Variant::UnderProvisioned {
                match_capacity: true,
            },
        )
        .await;
        let unmatched = deploy::run(
            &config,
            work.path(),
            deploy::Variant::UnderProvisioned {
                match_capacity: false,
            },
        )
        .await;
        tables.push((8, cutover::capacity_table(&config, &matched, &unmatched)));
    }
    tables.sort_by_key(|(n, _)| *n);

    println!(
        "beanswap benchmarks{}",
        if short { " (--short)" } else { "" }
    );
    println!("machine: {}", machine());
    println!();
    let (mut pass, mut fail, mut missing) = (0, 0, 0);
    for (_, t) in &tables {
        println!("{}", t.render());
        for v in t.verdicts() {
            match v {
                Verdict::Pass => pass += 1,
                Verdict::Fail => fail += 1,
                Verdict::Missing => missing += 1,
            }
        }
    }
    println!("summary: {pass} goals met, {fail} missed, {missing} not measured");
    if args.json {
        match &demo {
            Some(d) => println!("{}", cutover::downtime_json(d)),
            None => println!(
                "{}",
                serde_json::json!({"point": 6, "error": "not run (--only)"})
            ),
        }
    }
    ExitCode::SUCCESS
}
