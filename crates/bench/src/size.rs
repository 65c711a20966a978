//! Point 2: each function's Lambda zip (arm64, from `cargo lambda build`, as scripts/release-functions
//! builds it), with the host release binary beside it for reference.

use std::path::Path;

use crate::table::{mb, Table, Verdict, MB};
use crate::Config;

/// Issue 17's "every zip under 4 MB" (issue 11 asked for 6 MB), in bytes.
const GOAL_BYTES: u64 = 4 * MB;

/// The machine an ELF executable is for, from its header.
fn arch(head: &[u8]) -> &'static str {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return "not an executable";
    }
    match u16::from_le_bytes([head[18], head[19]]) {
        0xb7 => "aarch64",
        0x3e => "x86_64",
        _ => "other ELF",
    }
}

/// The zip's size, the uncompressed size of its `bootstrap`, and when it was built.
fn zip_facts(path: &Path) -> Result<(u64, u64, String), String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|_| "not built".to_string())?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    let mut entry = archive
        .by_name("bootstrap")
        .map_err(|_| "no bootstrap in the zip".to_string())?;
    let bootstrap = entry.size();
    let mut head = [0u8; 20];
    entry.read_exact(&mut head).map_err(|e| e.to_string())?;
    let arch = arch(&head);
    if arch != "aarch64" {
        return Err(format!("stale or stand-in zip: bootstrap is {arch}"));
    }
    let built = meta
        .modified()
        .ok()
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    Ok((meta.len(), bootstrap, built))
}

pub fn run(config: &Config) -> Table {
    let mut table = Table::new(
        "2. Size: each function's Lambda zip (arm64)",
        &[
            "function",
            "zip MB",
            "bootstrap MB",
            "host binary MB",
            "zip built",
        ],
    );
    let lambda_dir = &config.lambda_dir;
    let mut largest: Option<u64> = None;
    let mut complete = true;
    for name in crate::FUNCTIONS {
        let host = std::fs::metadata(config.bin_dir.join(name))
            .map(|m| mb(m.len()))
            .unwrap_or_else(|_| "-".into());
        match zip_facts(&lambda_dir.join(name).join("bootstrap.zip")) {
            Ok((zip, bootstrap, built)) => {
                largest = Some(largest.unwrap_or_default().max(zip));
                table.row(vec![name.to_string(), mb(zip), mb(bootstrap), host, built]);
            }
            Err(e) => {
                complete = false;
                table.row(vec![name.to_string(), "-".into(), "-".into(), host, e]);
            }
        }
    }
    match largest {
        Some(l) => table.goal(
            format!("every zip under 4 MB (largest: {} MB)", mb(l)),
            if complete {
                Verdict::of(l < GOAL_BYTES)
            } else {
                Verdict::Missing
            },
        ),
        None => table.goal("every zip under 4 MB", Verdict::Missing),
    }
    table.note(format!(
        "zips from {} (build them with `cargo lambda build --global cargo-lambda.toml -p <function>` or \
         scripts/release-functions); host binaries from {}",
        lambda_dir.display(),
        config.bin_dir.display()
    ));
    table
}
