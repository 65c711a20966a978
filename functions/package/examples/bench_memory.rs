//! Peak memory and throughput of the package binary on a big bundle (run by scripts/bench-package-memory).
//!
//! Starts moto (S3) and local-aws (Elastic Beanstalk, CodePipeline job API) on free loopback ports,
//! writes a bundle of incompressible Stored entries, runs the given package binary under a local Lambda
//! Runtime API and reads the function process's VmHWM (peak resident set) from /proc once the job has
//! been reported. Two runs: `rewrite` (the bundle sits in one top-level folder, so it is flattened and
//! streamed as a multipart upload: the worst case) and `copy` (already flat: checked, then copied
//! server-side).
//!
//! Usage: bench_memory <package binary> [size in MB, default 300]

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use local_aws::beanstalk::Options;
use serde_json::{json, Value};
use test_support::lambda::Invocation;
use test_support::moto::Moto;
use test_support::{job_event, LocalAws};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const ARTIFACTS: &str = "codepipeline-artifacts";
const BUNDLES: &str = "elasticbeanstalk-us-east-1-111111111111";
const GOAL_MB: f64 = 128.0;
const MIB: u64 = 1024 * 1024;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn noise(seed: u64, out: &mut [u8]) {
    let mut state = seed | 1;
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// A bundle of `mb` MiB: a Procfile and 10 MiB Stored entries, under `prefix`.
fn write_bundle(path: &Path, mb: u64, prefix: &str) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    w.start_file(format!("{prefix}Procfile"), stored)?;
    w.write_all(b"web: ./server\n")?;
    let mut block = vec![0u8; (10 * MIB) as usize];
    for i in 0..mb.div_ceil(10) {
        noise(i + 1, &mut block);
        w.start_file(format!("{prefix}assets/blob-{i:03}.bin"), stored)?;
        w.write_all(&block)?;
    }
    w.finish()?;
    Ok(())
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Run {
    mode: &'static str,
    bundle_mb: f64,
    seconds: f64,
    peak_mb: f64,
    summary: String,
}

async fn run(
    binary: &Path,
    mode: &'static str,
    mb: u64,
    work: &Path,
    local: &LocalAws,
    moto: &Moto,
    s3: &aws_sdk_s3::Client,
) -> Result<Run> {
    let prefix = if mode == "rewrite" { "release/" } else { "" };
    let bundle = work.join(format!("{mode}.zip"));
    write_bundle(&bundle, mb, prefix)?;
    let size = std::fs::metadata(&bundle)?.len();
    let key = format!("bench/Build/{mode}");
    s3.put_object()
        .bucket(ARTIFACTS)
        .key(&key)
        .body(ByteStream::from_path(&bundle).await?)
        .send()
        .await?;
    std::fs::remove_file(&bundle)?;

    // The wrapper records its pid, then becomes the function (exec keeps the pid).
    let pid_file = work.join(format!("{mode}.pid"));
    let wrapper = work.join(format!("{mode}.sh"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec '{}'\n",
            pid_file.display(),
            binary.display()
        ),
    )?;
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()?;
    let mut function = test_support::lambda::start(
        &wrapper,
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", moto.endpoint()),
            ("RUST_LOG", "warn".to_string()),
        ],
    )
    .await;
    function.timeout = Duration::from_secs(900);
    let mut event = job_event(r#"{"application":"bench","create_application":true}"#);
    event["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]["objectKey"] =
        json!(key);
    let started = Instant::now();
    let answer = function.invoke(event.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    if answer != Invocation::Response(Value::Null) {
        return Err(format!("{mode}: the invocation failed: {answer:?}").into());
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    let peak_kb = vm_hwm_kb(pid).ok_or("the function process is gone: no VmHWM to read")?;
    let id = event["CodePipeline.job"]["id"].as_str().unwrap_or_default();
    let report = local
        .job_results()
        .into_iter()
        .find(|r| r.job_id == id)
        .ok_or("the function sent no report")?;
    if report.operation != "PutJobSuccessResult" {
        return Err(format!("{mode}: {} {}", report.operation, report.request).into());
    }
    Ok(Run {
        mode,
        bundle_mb: size as f64 / MIB as f64,
        seconds,
        peak_mb: peak_kb as f64 / 1024.0,
        summary: report.request["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = PathBuf::from(
        args.next()
            .ok_or("usage: bench_memory <package binary> [MB]")?,
    );
    let mb: u64 = match args.next() {
        Some(a) => a.parse()?,
        None => 300,
    };
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("{}: {e}", binary.display()))?;

    let moto = Moto::start().await;
    let local = LocalAws::start_with(
        "127.0.0.1:0".parse()?,
        Options {
            s3_endpoint: Some(moto.endpoint()),
            ..Options::default()
        },
    )
    .await?;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "bench",
            ))
            .build(),
    );
    for bucket in [ARTIFACTS, BUNDLES] {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    let work = tempfile::tempdir()?;

    let mut runs = vec![];
    for mode in ["rewrite", "copy"] {
        runs.push(run(&binary, mode, mb, work.path(), &local, &moto, &s3).await?);
    }
    println!("package memory benchmark: {}", binary.display());
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>14}  goal",
        "mode", "bundle MB", "seconds", "MB/s", "peak RSS MB"
    );
    let mut ok = true;
    for r in &runs {
        let pass = r.peak_mb < GOAL_MB;
        ok &= pass;
        println!(
            "{:<8} {:>10.1} {:>10.2} {:>10.1} {:>14.1}  {} (< {GOAL_MB} MB)",
            r.mode,
            r.bundle_mb,
            r.seconds,
            r.bundle_mb / r.seconds,
            r.peak_mb,
            if pass { "pass" } else { "FAIL" }
        );
    }
    for r in &runs {
        println!("{}: {}", r.mode, r.summary);
    }
    println!("(S3 is moto, a Python server on this machine: throughput is bounded by it, not by package)");
    if !ok {
        return Err(format!("peak RSS above the {GOAL_MB} MB goal").into());
    }
    Ok(())
}
