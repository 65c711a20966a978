//! Child processes seen through /proc: which of our children runs a given binary, and its peak
//! resident set (VmHWM), sampled while it lives (the pipeline runner starts and stops the functions
//! itself, so their peaks are read while they run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Peak resident set of `pid` in KiB, while it is alive.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces or parentheses, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Our live child processes and the binary each runs.
pub fn children() -> Vec<(u32, PathBuf)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent(*pid) == Some(me))
        .filter_map(|pid| Some((pid, std::fs::read_link(format!("/proc/{pid}/exe")).ok()?)))
        .collect()
}

/// Our child running `binary` (the newest, if several).
pub fn child_running(binary: &Path) -> Option<u32> {
    let binary = binary.canonicalize().ok()?;
    children()
        .into_iter()
        .filter(|(_, exe)| *exe == binary)
        .map(|(pid, _)| pid)
        .max()
}

/// Samples the peak RSS of every child running one of `binaries` (by file name) until dropped.
pub struct Sampler {
    peaks: Arc<Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(binaries: Vec<PathBuf>, every: Duration) -> Sampler {
        let peaks: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let wanted: Vec<(PathBuf, String)> = binaries
            .into_iter()
            .filter_map(|b| {
                let name = b.file_name()?.to_str()?.to_string();
                Some((b.canonicalize().ok()?, name))
            })
            .collect();
        let task = {
            let peaks = peaks.clone();
            tokio::spawn(async move {
                loop {
                    for (pid, exe) in children() {
                        let Some((_, name)) = wanted.iter().find(|(b, _)| *b == exe) else {
                            continue;
                        };
                        if let Some(kib) = vm_hwm_kib(pid) {
                            if let Ok(mut p) = peaks.lock() {
                                let entry = p.entry(name.clone()).or_default();
                                *entry = (*entry).max(kib);
                            }
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Sampler { peaks, task }
    }

    /// Peak RSS in KiB per binary name seen so far.
    pub fn peaks(&self) -> BTreeMap<String, u64> {
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
