//! CI's run of the benchmarks: `beanswap-bench --short` (small bundle, one-second launches) on the debug
//! binaries, so the harness can't rot. Figures of a debug build say nothing about speed; what must hold
//! in any build is checked: every table is there, zero failed requests through the swaps, memory within
//! bounds, package ahead of the scripted alternative, failures noticed no later than a 10 s poller.

use std::path::Path;
use std::process::Command;

fn goal<'a>(output: &'a str, starts_with: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("goal: {starts_with}")))
        .unwrap_or_else(|| panic!("no goal line `{starts_with}` in:\n{output}"))
}

/// The first bytes of an aarch64 ELF executable: what point 2 reads to refuse a stale host-built zip.
fn arm64_elf_header() -> Vec<u8> {
    let mut head = vec![0u8; 64];
    head[..4].copy_from_slice(b"\x7fELF");
    head[4] = 2; // 64-bit
    head[5] = 1; // little endian
    head[6] = 1; // ELF version
    head[16] = 2; // an executable
    head[18] = 0xb7; // EM_AARCH64
    head
}

#[test]
fn the_short_benchmark_runs_every_point_and_its_goals_hold() {
    let binary = Path::new(env!("CARGO_BIN_EXE_beanswap-bench"));
    let bin_dir = binary
        .parent()
        .expect("the bench binary sits in a directory");
    // CI builds no Lambda zips (that takes cargo-lambda and zig): stand-ins with an arm64 `bootstrap`
    // let point 2 read, check and judge every zip as it does the real ones.
    let zips = tempfile::tempdir().expect("temp dir");
    for function in beanswap_cli::run::FUNCTIONS {
        let dir = zips.path().join(function);
        std::fs::create_dir_all(&dir).expect("zip dir");
        let file = std::fs::File::create(dir.join("bootstrap.zip")).expect("zip file");
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file("bootstrap", zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        std::io::Write::write_all(&mut zip, &arm64_elf_header()).expect("zip write");
        zip.finish().expect("zip finish");
    }
    let report = tempfile::tempdir().expect("report dir");
    let out = Command::new(binary)
        .arg("--report-dir")
        .arg(report.path())
        .args(["--short", "--bin-dir"])
        .arg(bin_dir)
        .arg("--lambda-dir")
        .arg(zips.path())
        // Through Route 53, so every service of point 5 is exercised (the CLI's tests cover CNAME swaps).
        .args(["--domain", "www.shop.test"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("beanswap-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for title in [
        "== 1. Cold start",
        "== 2. Size",
        "== 3. Memory",
        "== 4. Packaging throughput",
        "== 5. API calls per deployment",
        "== 6. Downtime",
        "== 7. A bad release",
        "== 8. An under-provisioned clone",
    ] {
        assert!(
            stdout.contains(title),
            "{title} missing:\n{stdout}\n{stderr}"
        );
    }
    for (which, verdict) in [
        ("zero failed requests (0 failed)", "PASS"),
        ("package under 128 MB", "PASS"),
        ("check-config under 64 MB", "PASS"),
        ("every other function under 40 MB", "PASS"),
        ("every zip under 4 MB", "PASS"),
        ("0 failed requests with MatchCapacity", "PASS"),
        (
            "production back on the previous version within 30 s",
            "PASS",
        ),
        ("package faster than the scripted alternative", "PASS"),
        ("no loss of reaction time to failure", "PASS"),
    ] {
        let line = goal(&stdout, which);
        assert!(line.ends_with(verdict), "{line}\n\n{stdout}\n{stderr}");
    }
    // Retire never terminated an environment within a TTL of its last request (with --domain v1's
    // environment keeps the production CNAME, so nothing may be terminated at all: n/a, never FAIL).
    let idle = goal(
        &stdout,
        "retire never terminated an environment that served a request in the last TTL",
    );
    assert!(!idle.ends_with("FAIL"), "{idle}\n\n{stdout}");
    // Both sides of the cold-start comparison really ran and reported their job.
    let python = stdout
        .lines()
        .find(|l| l.starts_with("| python"))
        .unwrap_or_else(|| panic!("no Python row:\n{stdout}\n{stderr}"));
    assert!(python.trim_end().ends_with("yes |"), "{python}");
    let reported = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && l.trim_end().ends_with("yes |"))
        .count();
    assert!(reported >= 7, "{stdout}");
    // The v1 -> v2 deployment's calls were counted, by service, Route 53's among them.
    let measured = stdout
        .lines()
        .find(|l| l.starts_with("| #2 v1 -> v2") && l.contains("beanswap (measured)"))
        .unwrap_or_else(|| panic!("no measured v1 -> v2 row:\n{stdout}"));
    let header = stdout
        .lines()
        .find(|l| l.starts_with("| deployment") && l.contains("Route53"))
        .unwrap_or_else(|| panic!("no calls header:\n{stdout}"));
    let column = header
        .split('|')
        .position(|c| c.trim() == "Route53")
        .unwrap();
    let route53: u64 = measured
        .split('|')
        .nth(column)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(route53 > 0, "{measured}");
    // The deployment points write the run's page: both deployments, and the failures the downtime
    // table counts (zero, as its goal says).
    let page = std::fs::read_to_string(report.path().join("report.html"))
        .unwrap_or_else(|e| panic!("no report.html ({e}):\n{stderr}"));
    assert!(
        page.contains(r#"<span class="value" data-metric="failures">0</span>"#),
        "{page}"
    );
    for d in ["#1", "#2"] {
        assert!(
            page.contains(&format!(r#"<tr data-deployment="{d}">"#)),
            "{page}"
        );
    }
    assert!(
        page.contains(r#"class="marker" data-kind="swap""#),
        "{page}"
    );
    assert!(report.path().join("timeline.svg").exists());
}
