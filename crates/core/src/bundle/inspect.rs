//! [`inspect()`]: every entry of a spooled bundle checked before anything is trusted: the central
//! directory against the zip library's view, encryption and compression methods, sizes and expansion
//! ratios, overlapping data, and the real (decompressed, CRC-checked) size of each entry. Apart because it
//! is the one step that reads the whole bundle; its result goes to [`plan`].

use std::fs::File;
use std::io::{self, BufReader, Read};

use zip::{CompressionMethod, ZipArchive};

use super::directory::central_directory;
use super::names::check_names;
use super::plan::{plan, Kind, Plan};
use super::spool::Spooled;
use super::{BundleError, DirectoryFault, Limits, Normalise};

/// Longest symlink target read from a bundle; real ones are a few dozen bytes.
const MAX_SYMLINK_TARGET: u64 = 4096;

/// One entry as read from the central directory and checked.
pub(super) struct Seen {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) kind: Kind,
    size: u64,
    header_start: u64,
    data_end: u64,
    pub(super) symlink_target: Option<String>,
}

/// Checks every entry (paths, sizes, ratios, overlaps, CRCs, symlinks) and plans the normalisation.
pub fn inspect(
    bundle: &Spooled,
    limits: &Limits,
    normalise: &Normalise,
) -> Result<Plan, BundleError> {
    if bundle.size > limits.max_bundle_bytes {
        return Err(BundleError::TooLarge {
            size: bundle.size,
            max: limits.max_bundle_bytes,
        });
    }
    let mut archive = bundle.zip()?;
    let (cd_start, records) = central_directory(
        &mut bundle.reader()?,
        bundle.size,
        archive.offset(),
        limits.max_entries,
    )?;
    check_names(&records)?;
    // From here on the library's entry `i` is record `i`: every entry is inspected by its index.
    let directory = |fault| BundleError::Directory { fault };
    if cd_start != archive.central_directory_start() {
        return Err(directory(DirectoryFault::Start {
            ours: cd_start,
            library: archive.central_directory_start(),
        }));
    }
    if archive.len() != records.len() {
        return Err(directory(DirectoryFault::Count {
            ours: records.len(),
            library: archive.len(),
        }));
    }
    let mut seen: Vec<Seen> = Vec::with_capacity(records.len());
    let mut total: u64 = 0;
    for (index, record) in records.iter().enumerate() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| BundleError::NotZip {
                reason: format!("entry #{index}: {e}"),
            })?;
        if entry.central_header_start() != record.offset || entry.name() != record.name {
            return Err(directory(DirectoryFault::Entry {
                index,
                ours: record.name.clone(),
                library: entry.name().to_string(),
            }));
        }
        let name = entry.name().to_string();
        let dir_name = name.ends_with('/') || (normalise.fix_backslashes && name.ends_with('\\'));
        let kind = if entry.is_symlink() {
            Kind::Symlink
        } else if entry.is_dir() || (dir_name && entry.size() == 0) {
            Kind::Dir
        } else {
            Kind::File
        };
        if entry.encrypted() {
            return Err(BundleError::Encrypted { entry: name });
        }
        let method = entry.compression();
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(BundleError::UnsupportedCompression {
                entry: name,
                method: method.to_string(),
            });
        }
        let (size, compressed) = (entry.size(), entry.compressed_size());
        if size >= limits.ratio_floor_bytes {
            let ratio = size / compressed.max(1);
            if ratio > limits.max_ratio {
                return Err(BundleError::Ratio {
                    entry: name,
                    ratio,
                    size,
                    compressed,
                    max: limits.max_ratio,
                });
            }
        }
        total = total.saturating_add(size);
        if total > limits.max_uncompressed_bytes {
            return Err(BundleError::TooMuchUncompressed {
                entry: name,
                max: limits.max_uncompressed_bytes,
            });
        }
        let header_start = entry.header_start();
        let data_end = entry.data_start().saturating_add(compressed);
        seen.push(Seen {
            index,
            name,
            kind,
            size,
            header_start,
            data_end,
            symlink_target: None,
        });
    }
    // Before anything is decompressed: overlapping entries make a small zip expand without bound.
    check_overlaps(&seen, archive.central_directory_start())?;
    for s in &mut seen {
        if s.kind != Kind::Dir {
            s.symlink_target = read_checked(
                &mut archive,
                s.index,
                &s.name,
                s.size,
                s.kind == Kind::Symlink,
            )?;
        }
    }
    plan(seen, total, normalise)
}

/// Decompresses one entry, checking its real size against the declared one (and the CRC, which the zip
/// reader verifies at the end). Returns the content for symlinks.
fn read_checked(
    archive: &mut ZipArchive<BufReader<File>>,
    index: usize,
    name: &str,
    declared: u64,
    keep: bool,
) -> Result<Option<String>, BundleError> {
    let corrupt = |e: &dyn std::fmt::Display| BundleError::Corrupt {
        entry: name.to_string(),
        reason: e.to_string(),
    };
    let mut file = archive.by_index(index).map_err(|e| corrupt(&e))?;
    let mut limited = (&mut file).take(declared.saturating_add(1));
    if keep {
        if declared > MAX_SYMLINK_TARGET {
            return Err(BundleError::Corrupt {
                entry: name.to_string(),
                reason: format!("a symlink target of {declared} bytes"),
            });
        }
        let mut target = Vec::new();
        limited.read_to_end(&mut target).map_err(|e| corrupt(&e))?;
        if target.len() as u64 != declared {
            return Err(BundleError::SizeMismatch {
                entry: name.to_string(),
                declared,
                actual: target.len() as u64,
            });
        }
        return Ok(Some(String::from_utf8_lossy(&target).into_owned()));
    }
    let actual = io::copy(&mut limited, &mut io::sink()).map_err(|e| corrupt(&e))?;
    if actual != declared {
        return Err(BundleError::SizeMismatch {
            entry: name.to_string(),
            declared,
            actual,
        });
    }
    Ok(None)
}

/// Entries whose data ranges overlap each other or the central directory: the non-recursive zip bomb.
fn check_overlaps(seen: &[Seen], central_start: u64) -> Result<(), BundleError> {
    let mut order: Vec<&Seen> = seen.iter().collect();
    order.sort_by_key(|s| s.header_start);
    for pair in order.windows(2) {
        if pair[0].data_end > pair[1].header_start {
            return Err(BundleError::Overlapping {
                entry: pair[1].name.clone(),
                other: pair[0].name.clone(),
            });
        }
    }
    if let Some(last) = order.last() {
        if last.data_end > central_start {
            return Err(BundleError::Overlapping {
                entry: last.name.clone(),
                other: "the central directory".into(),
            });
        }
    }
    Ok(())
}
