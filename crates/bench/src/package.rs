//! Points 3 (memory on a big artifact) and 4 (throughput): the package function on a bundle that needs
//! flattening (everything under one top-level folder), against `aws s3 cp` + `unzip` + `zip -r` +
//! `aws s3 cp` + `aws elasticbeanstalk create-application-version` on the same bundle, same local S3;
//! and check-config on that same artifact, for its memory beside package's.

use std::cell::Cell;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use local_aws::beanstalk::Options;
use local_aws::lambda::Invocation;
use serde_json::json;
use test_support::bed::{Bed, BUNDLES};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use crate::table::{self, Table, Verdict, MB, MIB};
use crate::Config;

const ARTIFACTS: &str = "codepipeline-artifacts";
const TOP: &str = "shop-1.0.0/";

/// One function's job on the big artifact.
pub struct Invoked {
    pub seconds: f64,
    /// Peak RSS (VmHWM) once its job was reported.
    pub peak_kib: Option<u64>,
    pub summary: String,
}

/// What points 3 and 4 measured on the big artifact: package (both points) and check-config (point 3),
/// each run or why not.
pub struct BigArtifact {
    pub bytes: u64,
    pub package: Result<Invoked, String>,
    pub check_config: Result<Invoked, String>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "def", "return", "self", "import", "from", "class", "if", "else", "for", "in", "request",
    "response", "user", "order", "price", "render", "template", "json", "status", "config",
    "database", "session", "=", "(", ")", ":", "{", "}", "None", "True", "False", "async", "await",
    "value", "item", "list",
];

/// Source-like text of about `size` bytes: what compresses in a real build output.
fn text(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 64);
    while out.len() < size {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(if rng.next() % 9 == 0 { b'\n' } else { b' ' });
    }
    out
}

/// The file a bundle is written to, remembering how far into it the writes reached: how much
/// text compresses to is only known once it is written, and the bundle must still come out at its size.
struct Reach<W> {
    inner: W,
    position: u64,
    furthest: Rc<Cell<u64>>,
}

impl<W: Write> Write for Reach<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.position += n as u64;
        self.furthest.set(self.furthest.get().max(self.position));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Seek> Seek for Reach<W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.position = self.inner.seek(to)?;
        Ok(self.position)
    }
}

/// A bundle of at least `bytes` (past it by the zip's central directory) under one top-level folder,
/// as `zip -r` of a build directory gives it: a Procfile, half the size as source-like files
/// (Deflated, 256 KiB each before compression), the rest as already-compressed assets (Stored, up to
/// 4 MiB each, the last one cut to land on the size).
pub fn write_bundle(path: &Path, bytes: u64) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let written = Rc::new(Cell::new(0));
    let mut zip = zip::ZipWriter::new(Reach {
        inner: std::io::BufWriter::new(file),
        position: 0,
        furthest: Rc::clone(&written),
    });
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    zip.start_file(format!("{TOP}Procfile"), deflated)
        .map_err(|e| err(&e))?;
    zip.write_all(b"web: python app.py\n")
        .map_err(|e| err(&e))?;
    let mut i = 0;
    while written.get() < bytes / 2 {
        let body = text(&mut rng, 256 * 1024);
        zip.start_file(format!("{TOP}src/module_{i:05}.py"), deflated)
            .map_err(|e| err(&e))?;
        zip.write_all(&body).map_err(|e| err(&e))?;
        i += 1;
    }
    let mut block = vec![0u8; (4 * MIB) as usize];
    let mut j = 0;
    while written.get() < bytes {
        let left = usize::try_from(bytes - written.get()).unwrap_or(usize::MAX);
        let block = &mut block[..left.min(4 * MIB as usize)];
        rng.fill(block);
        zip.start_file(format!("{TOP}static/asset_{j:04}.bin"), stored)
            .map_err(|e| err(&e))?;
        zip.write_all(block).map_err(|e| err(&e))?;
        j += 1;
    }
    zip.finish().map_err(|e| err(&e))?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| err(&e))
}

/// `function`'s binary on the artifact already uploaded as `key`: seconds, peak RSS and what it reported.
async fn invoke(
    config: &Config,
    bed: &Bed,
    function: &str,
    user_parameters: &str,
    key: &str,
) -> Result<Invoked, String> {
    let binary = config.bin_dir.join(function);
    if !binary.exists() {
        return Err(format!("{} not built", binary.display()));
    }
    let mut running = bed.function(&binary).await;
    running.timeout = Duration::from_secs(900);
    let pid = crate::procs::child_running(&binary);
    let mut event = crate::fixtures::job_event(user_parameters);
    event["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"] =
        json!({"bucketName": ARTIFACTS, "objectKey": key});
    let id = event["CodePipeline.job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = Instant::now();
    let answer = running.invoke(event).await.map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = pid.and_then(crate::procs::vm_hwm_kib);
    drop(running);
    if let Invocation::Error(e) = answer {
        return Err(format!("the invocation failed: {e}"));
    }
    let report = bed
        .local
        .job_results()
        .into_iter()
        .find(|r| r.job_id == id)
        .ok_or(format!("{function} reported nothing"))?;
    let summary = report.request["executionDetails"]["summary"]
        .as_str()
        .or(report.request["failureDetails"]["message"].as_str())
        .unwrap_or_default()
        .to_string();
    if report.operation != "PutJobSuccessResult" {
        return Err(format!("{function} failed: {summary}"));
    }
    Ok(Invoked {
        seconds,
        peak_kib,
        summary,
    })
}

struct Step {
    name: &'static str,
    seconds: f64,
}

/// What a user would script instead: download, unzip, zip the folder's content, upload, register.
async fn baseline(config: &Config, bed: &Bed, key: &str, work: &Path) -> Result<Vec<Step>, String> {
    let aws = config.root.join(".venv/bin/aws");
    if !aws.exists() {
        return Err(format!("{} missing (run scripts/test once)", aws.display()));
    }
    for tool in ["zip", "unzip"] {
        if !Path::new("/usr/bin").join(tool).exists() && which(tool).is_none() {
            return Err(format!(
                "`{tool}` is not installed (apt-get install zip unzip)"
            ));
        }
    }
    let dir = work.join("baseline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let moto = bed.moto.endpoint();
    let eb = bed.local.endpoint();
    let aws = aws.display().to_string();
    let bundle_key = "shop/baseline.zip";
    // The AWS CLI against a local endpoint, with these arguments.
    let cli = |endpoint: &str, args: &[&str]| -> Vec<String> {
        [aws.as_str(), "--endpoint-url", endpoint]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let copy = |from: &str, to: &str| cli(&moto, &["s3", "cp", "--only-show-errors", from, to]);
    let argv = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
    let out_zip = dir.join("out.zip").display().to_string();
    let source_bundle = format!("S3Bucket={BUNDLES},S3Key={bundle_key}");
    let steps: Vec<(&'static str, Vec<String>, std::path::PathBuf)> = vec![
        (
            "aws s3 cp (download)",
            copy(&format!("s3://{ARTIFACTS}/{key}"), "in.zip"),
            dir.clone(),
        ),
        (
            "unzip",
            argv(&["unzip", "-q", "in.zip", "-d", "x"]),
            dir.clone(),
        ),
        (
            "zip -r (flattened)",
            argv(&["zip", "-q", "-r", &out_zip, "."]),
            dir.join("x").join(TOP.trim_end_matches('/')),
        ),
        (
            "aws s3 cp (upload)",
            copy("out.zip", &format!("s3://{BUNDLES}/{bundle_key}")),
            dir.clone(),
        ),
        (
            "aws elasticbeanstalk create-application-version",
            cli(
                &eb,
                &[
                    "elasticbeanstalk",
                    "create-application-version",
                    "--application-name",
                    "shop",
                    "--version-label",
                    "baseline",
                    "--source-bundle",
                    &source_bundle,
                    "--output",
                    "text",
                ],
            ),
            dir.clone(),
        ),
    ];
    let mut measured = vec![];
    for (name, argv, cwd) in steps {
        let started = Instant::now();
        let output = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&cwd)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{name} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        measured.push(Step {
            name,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(measured)
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.exists())
    })
}

/// Runs both and returns point 4's table plus package's and check-config's measurements for point 3.
pub async fn run(config: &Config, work: &Path) -> (Table, Result<BigArtifact, String>) {
    let mut table = Table::new(
        "4. Packaging throughput: a bundle under one top-level folder (needs flattening), same local S3",
        &["how", "seconds", "MB/s", "bundle MB"],
    );
    let result = run_inner(config, work, &mut table).await;
    let not_measured = match &result {
        Ok(big) => big.package.as_ref().err(),
        Err(e) => Some(e),
    };
    if let Some(e) = not_measured {
        table.note(format!("not measured: {e}"));
        table.goal(
            "package faster than unzip + zip -r + aws s3 cp",
            Verdict::Missing,
        );
    }
    (table, result)
}

async fn run_inner(config: &Config, work: &Path, table: &mut Table) -> Result<BigArtifact, String> {
    crate::progress(&format!(
        "packaging: writing a {} MB bundle",
        config.bundle_mb
    ));
    let path = work.join("bundle.zip");
    let bytes = write_bundle(&path, config.bundle_mb * MB)?;
    // Its baseline steps are a person's commands (aws CLI with their own credentials), which no role
    // of the template stands for.
    let bed = Bed::start_unenforced(
        Options::default(),
        "a benchmark of packaging throughput against a person's commands with their own credentials",
    )
    .await;
    bed.s3
        .create_bucket()
        .bucket(ARTIFACTS)
        .send()
        .await
        .map_err(|e| format!("create bucket: {e}"))?;
    let key = "shop-pipeline/BuildOutpu/bench";
    bed.s3
        .put_object()
        .bucket(ARTIFACTS)
        .key(key)
        .body(
            ByteStream::from_path(&path)
                .await
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| format!("upload the bundle: {e}"))?;
    let _ = std::fs::remove_file(&path);

    crate::progress("packaging: the package function");
    let package = invoke(
        config,
        &bed,
        "package",
        &format!(r#"{{"application":"shop","bucket":"{BUNDLES}"}}"#),
        key,
    )
    .await;
    crate::progress("memory: check-config on the same artifact");
    let check_config = invoke(
        config,
        &bed,
        "check-config",
        r#"{"application":"shop"}"#,
        key,
    )
    .await;
    if let Ok(ours) = &package {
        throughput(config, &bed, key, work, bytes, ours, table).await;
    }
    Ok(BigArtifact {
        bytes,
        package,
        check_config,
    })
}

/// Point 4's rows: package against the scripted alternative on the same artifact.
async fn throughput(
    config: &Config,
    bed: &Bed,
    key: &str,
    work: &Path,
    bytes: u64,
    ours: &Invoked,
    table: &mut Table,
) {
    let megabytes = bytes as f64 / 1e6;
    table.row(vec![
        "beanswap package (download, check, flatten, multipart upload, register)".into(),
        format!("{:.2}", ours.seconds),
        format!("{:.1}", megabytes / ours.seconds),
        table::mb(bytes),
    ]);
    crate::progress("packaging: unzip + zip -r + aws s3 cp");
    match baseline(config, bed, key, work).await {
        Ok(steps) => {
            let total: f64 = steps.iter().map(|s| s.seconds).sum();
            for s in &steps {
                table.row(vec![
                    format!("  {}", s.name),
                    format!("{:.2}", s.seconds),
                    String::new(),
                    String::new(),
                ]);
            }
            table.row(vec![
                "AWS CLI + unzip + zip -r, total".into(),
                format!("{total:.2}"),
                format!("{:.1}", megabytes / total),
                table::mb(bytes),
            ]);
            table.goal(
                format!(
                    "package faster than the scripted alternative ({:.1}x)",
                    total / ours.seconds
                ),
                Verdict::of(ours.seconds < total),
            );
        }
        Err(e) => {
            table.note(format!("baseline not measured: {e}"));
            table.goal(
                "package faster than the scripted alternative",
                Verdict::Missing,
            );
        }
    }
    table.note(format!(
        "MB/s = 10^6 bytes of bundle per second, end to end from the artifact in S3 to a registered \
         application version; half the bundle is source-like text (Deflated), half incompressible assets \
         (Stored); zip -r uses its default level 6; package said: {}",
        ours.summary.lines().next().unwrap_or_default()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_comes_out_at_its_size_with_everything_under_one_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bundle.zip");
        let asked = 4 * MB;
        let bytes = write_bundle(&path, asked).expect("bundle written");
        // At least the size asked, past it by no more than the central directory and a header.
        assert!(bytes >= asked, "{bytes} < {asked}");
        assert!(bytes < asked + asked / 100, "{bytes} is far past {asked}");
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).expect("open")).expect("zip");
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        assert!(names.iter().all(|n| n.starts_with(TOP)), "{names:?}");
        assert!(
            names.iter().any(|n| n.ends_with(".py")) && names.iter().any(|n| n.ends_with(".bin"))
        );
        let mut stored = 0;
        for i in 0..zip.len() {
            let entry = zip.by_index(i).expect("entry");
            if entry.compression() == CompressionMethod::Stored {
                stored += entry.compressed_size();
            }
        }
        // The incompressible half really is about half.
        assert!(
            stored > asked * 2 / 5 && stored < asked * 3 / 5,
            "stored {stored} of {bytes}"
        );
    }
}
