//! Source-bundle checks and normalisation: everything `package` decides about a zip, with no I/O beyond
//! the local spool file.
//!
//! The bundle is never held in memory: it is spooled to a temporary file while its SHA-256 is computed
//! ([`Spool`]), inspected from there ([`inspect`]: every entry is decompressed once, counted and
//! CRC-checked, never stored), and when it has to change it is rewritten entry by entry with the
//! compressed data copied raw into any [`Write`] ([`write_normalised`]), e.g. a multipart upload.
//! Memory stays at a few buffers plus the zip's central directory, whatever the bundle's size.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const MIB: u64 = 1024 * 1024;

/// Elastic Beanstalk's own limit on a source bundle.
pub const MAX_BUNDLE_BYTES: u64 = 512 * MIB;
/// Longest symlink target read from a bundle; real ones are a few dozen bytes.
const MAX_SYMLINK_TARGET: u64 = 4096;
/// Read buffer for the spool file.
const READ_BUFFER: usize = 256 * 1024;

/// Bounds that make a bundle a zip bomb rather than an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The zip itself (Elastic Beanstalk refuses more than 512 MB).
    pub max_bundle_bytes: u64,
    /// Everything the bundle expands to.
    pub max_uncompressed_bytes: u64,
    /// Largest expansion ratio of one entry (uncompressed / compressed).
    pub max_ratio: u64,
    /// Entries smaller than this are not ratio-checked: a tiny file of zeros is no bomb.
    pub ratio_floor_bytes: u64,
    /// Entries in the central directory (each costs memory to list).
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bundle_bytes: MAX_BUNDLE_BYTES,
            max_uncompressed_bytes: 2048 * MIB,
            max_ratio: 200,
            ratio_floor_bytes: MIB,
            max_entries: 100_000,
        }
    }
}

/// Which normalisations may be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalise {
    /// Move everything up when all files sit in one top-level folder.
    pub flatten: bool,
    /// Drop `__MACOSX/` and `.DS_Store` entries that macOS's Finder adds.
    pub drop_os_metadata: bool,
    /// Treat `\` as a folder separator and rewrite such names with `/` (Windows' Compress-Archive).
    pub fix_backslashes: bool,
}

impl Default for Normalise {
    fn default() -> Self {
        Normalise {
            flatten: true,
            drop_os_metadata: true,
            fix_backslashes: true,
        }
    }
}

/// Why a bundle is refused. Every variant about an entry names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the bundle is {size} bytes; Elastic Beanstalk accepts source bundles of at most {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("the bundle is not a zip file: {reason}")]
    NotZip { reason: String },
    #[error("the bundle has no files")]
    Empty,
    #[error("the bundle has {count} entries; the bound is {max} (UserParameters `max_entries`)")]
    TooManyEntries { count: usize, max: usize },
    #[error(
        "entry `{entry}` {reason}: it would be unpacked outside the application folder (zip slip)"
    )]
    UnsafePath { entry: String, reason: &'static str },
    #[error("entry `{entry}` appears more than once in the bundle")]
    Duplicate { entry: String },
    #[error("symlink `{entry}` points to `{target}`, outside the bundle")]
    SymlinkEscapes { entry: String, target: String },
    #[error("entry `{entry}` goes through symlink `{link}`; entries and symlink targets may not pass through a symlink")]
    ThroughSymlink { entry: String, link: String },
    #[error("entry `{entry}` is encrypted; Elastic Beanstalk cannot unpack encrypted entries")]
    Encrypted { entry: String },
    #[error("entry `{entry}` is compressed with {method}; only Stored and Deflated entries are accepted")]
    UnsupportedCompression { entry: String, method: String },
    #[error("entry `{entry}` expands {ratio}:1 ({size} bytes from {compressed}); the bound is {max}:1 (UserParameters `max_compression_ratio`): the bundle looks like a zip bomb")]
    Ratio {
        entry: String,
        ratio: u64,
        size: u64,
        compressed: u64,
        max: u64,
    },
    #[error("the bundle expands to more than {max} bytes (passed at entry `{entry}`; UserParameters `max_uncompressed_mb`): the bundle looks like a zip bomb")]
    TooMuchUncompressed { entry: String, max: u64 },
    #[error("entries `{entry}` and `{other}` overlap in the zip (shared compressed data is a zip-bomb technique)")]
    Overlapping { entry: String, other: String },
    #[error("entry `{entry}` is corrupt: {reason}")]
    Corrupt { entry: String, reason: String },
    #[error("entry `{entry}` declares {declared} bytes but holds {actual}")]
    SizeMismatch {
        entry: String,
        declared: u64,
        actual: u64,
    },
    #[error("the bundle has no Procfile or known entry point at its root (looked for {looked_for}) and UserParameters `require_entry_point` is true")]
    NoEntryPoint { looked_for: String },
    #[error("could not {action} the bundle's temporary file: {reason}")]
    Io {
        action: &'static str,
        reason: String,
    },
}

impl BundleError {
    /// Whether the bundle itself is at fault (as opposed to this machine's disk).
    pub fn is_bundle_fault(&self) -> bool {
        !matches!(self, BundleError::Io { .. })
    }
}

fn io_error(action: &'static str) -> impl Fn(io::Error) -> BundleError {
    move |e| BundleError::Io {
        action,
        reason: e.to_string(),
    }
}

/// A bundle being written to a temporary file, hashed and size-checked on the way.
pub struct Spool {
    file: File,
    hasher: Sha256,
    len: u64,
    max: u64,
}

impl Spool {
    /// An anonymous temporary file (gone when dropped, even on a crash) in the system's temp dir.
    pub fn new(max: u64) -> Result<Self, BundleError> {
        let file = tempfile::tempfile().map_err(io_error("create"))?;
        Ok(Spool {
            file,
            hasher: Sha256::new(),
            len: 0,
            max,
        })
    }

    /// Appends a chunk; refuses to grow past the limit (whatever the object's Content-Length said).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BundleError> {
        let len = self.len + chunk.len() as u64;
        if len > self.max {
            return Err(BundleError::TooLarge {
                size: len,
                max: self.max,
            });
        }
        self.file.write_all(chunk).map_err(io_error("write"))?;
        self.hasher.update(chunk);
        self.len = len;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Spooled, BundleError> {
        self.file.flush().map_err(io_error("write"))?;
        Ok(Spooled {
            file: self.file,
            size: self.len,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// A complete bundle on local disk.
#[derive(Debug)]
pub struct Spooled {
    file: File,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Spooled {
    /// Spools everything `reader` yields (tests, local runs).
    pub fn from_reader(mut reader: impl Read, max: u64) -> Result<Self, BundleError> {
        let mut spool = Spool::new(max)?;
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let n = reader.read(&mut buf).map_err(io_error("read"))?;
            if n == 0 {
                break;
            }
            spool.push(&buf[..n])?;
        }
        spool.finish()
    }

    /// A reader positioned at the start (it shares the file position with other readers).
    pub fn reader(&self) -> Result<BufReader<File>, BundleError> {
        let mut file = self.file.try_clone().map_err(io_error("reopen"))?;
        file.seek(SeekFrom::Start(0)).map_err(io_error("seek"))?;
        Ok(BufReader::with_capacity(READ_BUFFER, file))
    }

    /// The bundle opened as a zip from the file: only its central directory is read into memory.
    pub fn zip(&self) -> Result<ZipArchive<BufReader<File>>, BundleError> {
        ZipArchive::new(self.reader()?).map_err(|e| BundleError::NotZip {
            reason: e.to_string(),
        })
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// An entry that stays in the bundle, under its final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub index: usize,
    pub original: String,
    /// The final name (`/` separated, `/`-terminated for folders).
    pub name: String,
    pub kind: Kind,
    /// A symlink's target.
    pub target: Option<String>,
}

/// The outcome of [`inspect`]: what the bundle holds and what normalisation will change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub entries: Vec<PlannedEntry>,
    /// The top-level folder everything was moved out of.
    pub flattened: Option<String>,
    /// Entries left out as OS metadata.
    pub dropped: Vec<String>,
    /// Entries whose names used `\` and were rewritten with `/`.
    pub backslash_names: usize,
    pub files: usize,
    pub uncompressed_bytes: u64,
    /// Which known entry point the root holds (`Procfile`, `package.json`, ...), if any.
    pub entry_point: Option<String>,
}

impl Plan {
    /// Whether the bundle must be rewritten; otherwise it can be copied as it is.
    pub fn needs_rewrite(&self) -> bool {
        self.flattened.is_some() || !self.dropped.is_empty() || self.backslash_names > 0
    }

    /// One sentence per change, for the summary.
    pub fn changes(&self) -> Vec<String> {
        let mut out = vec![];
        if let Some(folder) = &self.flattened {
            out.push(format!(
                "flattened: every file sat under the top-level folder `{folder}/`, which Elastic Beanstalk would not look into; moved its contents to the root"
            ));
        }
        if !self.dropped.is_empty() {
            out.push(format!(
                "dropped {} macOS metadata entries ({})",
                self.dropped.len(),
                sample(&self.dropped)
            ));
        }
        if self.backslash_names > 0 {
            out.push(format!(
                "rewrote {} entry names that used `\\` as the folder separator",
                self.backslash_names
            ));
        }
        out
    }

    /// Warnings for the summary.
    pub fn warnings(&self) -> Vec<String> {
        match self.entry_point {
            Some(_) => vec![],
            None => vec![format!(
                "warning: no Procfile or known entry point at the bundle root (looked for {}); the platform's default start command will be used and may not start this app",
                ENTRY_POINTS_TEXT
            )],
        }
    }
}

fn sample(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    if names.len() > 3 {
        s.push("...".into());
    }
    s.join(", ")
}

/// Root files that tell a Beanstalk platform how to start the app.
const ENTRY_POINT_FILES: &[&str] = &[
    "Procfile",
    "Dockerfile",
    "Dockerrun.aws.json",
    "docker-compose.yml",
    "docker-compose.yaml",
    "package.json",
    "app.js",
    "server.js",
    "application.py",
    "application",
    "application.go",
    "config.ru",
    "index.php",
    "composer.json",
    "aws-windows-deployment-manifest.json",
];
const ENTRY_POINTS_TEXT: &str = "Procfile, Dockerfile, Dockerrun.aws.json, docker-compose.yml, package.json, app.js, server.js, application.py, application, config.ru, index.php, composer.json, aws-windows-deployment-manifest.json, *.jar, *.war, WEB-INF/";

/// Top-level folders that mean something to Beanstalk at the root: never flattened away.
const MEANINGFUL_ROOT_FOLDERS: &[&str] = &[
    ".ebextensions",
    ".platform",
    ".elasticbeanstalk",
    "WEB-INF",
    "META-INF",
    "node_modules",
];

/// The entry point the root holds, if any.
fn entry_point(root_files: &[&str], root_dirs: &[&str]) -> Option<String> {
    root_files
        .iter()
        .find(|f| ENTRY_POINT_FILES.contains(f) || f.ends_with(".jar") || f.ends_with(".war"))
        .map(|f| f.to_string())
        .or_else(|| {
            root_dirs
                .iter()
                .find(|d| **d == "WEB-INF")
                .map(|d| format!("{d}/"))
        })
}

/// Checks a raw entry name as `unzip` would see it; `\` counts as a separator here whatever the
/// settings, because some unzip implementations honour it.
fn check_path(name: &str) -> Result<(), BundleError> {
    let unsafe_path = |reason| BundleError::UnsafePath {
        entry: name.to_string(),
        reason,
    };
    if name.contains('\0') {
        return Err(unsafe_path("contains a NUL byte"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(unsafe_path("is an absolute path"));
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(unsafe_path("starts with a Windows drive letter"));
    }
    let mut parts = name
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".");
    if parts.clone().any(|p| p == "..") {
        return Err(unsafe_path("climbs out of the bundle root with `..`"));
    }
    if parts.next().is_none() {
        return Err(unsafe_path("has an empty name"));
    }
    Ok(())
}

fn components(name: &str, backslash: bool) -> Vec<&str> {
    let split: Box<dyn Iterator<Item = &str>> = if backslash {
        Box::new(name.split(['/', '\\']))
    } else {
        Box::new(name.split('/'))
    };
    split.filter(|p| !p.is_empty() && *p != ".").collect()
}

fn is_os_metadata(parts: &[&str]) -> bool {
    parts.first() == Some(&"__MACOSX") || parts.last() == Some(&".DS_Store")
}

/// One entry as read from the central directory and checked.
struct Seen {
    index: usize,
    name: String,
    kind: Kind,
    size: u64,
    header_start: u64,
    data_end: u64,
    symlink_target: Option<String>,
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
    if archive.len() > limits.max_entries {
        return Err(BundleError::TooManyEntries {
            count: archive.len(),
            max: limits.max_entries,
        });
    }
    let mut seen: Vec<Seen> = Vec::with_capacity(archive.len());
    let mut names = HashSet::new();
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| BundleError::NotZip {
                reason: format!("entry #{index}: {e}"),
            })?;
        let name = entry.name().to_string();
        check_path(&name)?;
        let dir_name = name.ends_with('/') || (normalise.fix_backslashes && name.ends_with('\\'));
        let kind = if entry.is_symlink() {
            Kind::Symlink
        } else if entry.is_dir() || (dir_name && entry.size() == 0) {
            Kind::Dir
        } else {
            Kind::File
        };
        let key = components(&name, true).join("/");
        if !names.insert(key) {
            return Err(BundleError::Duplicate { entry: name });
        }
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

fn plan(seen: Vec<Seen>, total: u64, normalise: &Normalise) -> Result<Plan, BundleError> {
    let backslash = normalise.fix_backslashes;
    let mut dropped = vec![];
    let mut kept: Vec<(Seen, Vec<String>)> = vec![];
    for s in seen {
        let parts: Vec<String> = components(&s.name, backslash)
            .into_iter()
            .map(str::to_string)
            .collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if normalise.drop_os_metadata && is_os_metadata(&refs) {
            dropped.push(s.name);
        } else {
            kept.push((s, parts));
        }
    }
    if !kept.iter().any(|(s, _)| s.kind != Kind::Dir) {
        return Err(BundleError::Empty);
    }
    let flattened = if normalise.flatten {
        single_top_folder(&kept)
    } else {
        None
    };
    let strip = usize::from(flattened.is_some());
    let mut entries = vec![];
    let mut backslash_names = 0;
    let mut files = 0;
    for (s, parts) in kept {
        let rest = &parts[strip..];
        if rest.is_empty() {
            // The flattened folder itself.
            continue;
        }
        let mut name = rest.join("/");
        if s.kind == Kind::Dir {
            name.push('/');
        }
        if backslash && s.name.contains('\\') {
            backslash_names += 1;
        }
        if s.kind != Kind::Dir {
            files += 1;
        }
        entries.push(PlannedEntry {
            index: s.index,
            original: s.name,
            name,
            kind: s.kind,
            target: s.symlink_target,
        });
    }
    check_symlinks(&entries)?;
    let root_files: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir && !e.name.contains('/'))
        .map(|e| e.name.as_str())
        .collect();
    let root_dirs: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.split('/').next().filter(|_| e.name.contains('/')))
        .collect();
    let entry_point = entry_point(&root_files, &root_dirs);
    Ok(Plan {
        entries,
        flattened,
        dropped,
        backslash_names,
        files,
        uncompressed_bytes: total,
        entry_point,
    })
}

/// The one folder every entry sits in, when there is one and it is not meaningful at the root.
fn single_top_folder(kept: &[(Seen, Vec<String>)]) -> Option<String> {
    let first = kept.first()?.1.first()?.clone();
    let all_inside = kept.iter().all(|(s, parts)| {
        parts.first() == Some(&first) && (parts.len() >= 2 || s.kind == Kind::Dir)
    });
    (all_inside && !MEANINGFUL_ROOT_FOLDERS.contains(&first.as_str())).then_some(first)
}

/// Symlinks must resolve inside the (final) bundle without passing through another symlink, and no
/// entry may sit below a symlink (unpacking would write through it).
fn check_symlinks(entries: &[PlannedEntry]) -> Result<(), BundleError> {
    let links: BTreeMap<&str, &str> = entries
        .iter()
        .filter(|e| e.kind == Kind::Symlink)
        .map(|e| (e.name.trim_end_matches('/'), e.original.as_str()))
        .collect();
    if links.is_empty() {
        return Ok(());
    }
    for entry in entries {
        let target = &entry.target;
        let parts: Vec<&str> = entry.name.trim_end_matches('/').split('/').collect();
        for depth in 1..parts.len() {
            let prefix = parts[..depth].join("/");
            if let Some(link) = links.get(prefix.as_str()) {
                return Err(BundleError::ThroughSymlink {
                    entry: entry.original.clone(),
                    link: link.to_string(),
                });
            }
        }
        let Some(target) = target else { continue };
        let escapes = || BundleError::SymlinkEscapes {
            entry: entry.original.clone(),
            target: target.clone(),
        };
        if target.is_empty()
            || target.starts_with('/')
            || target.starts_with('\\')
            || target.as_bytes().get(1) == Some(&b':')
        {
            return Err(escapes());
        }
        let mut resolved: Vec<&str> = parts[..parts.len() - 1].to_vec();
        for part in target.split(['/', '\\']) {
            match part {
                "" | "." => {}
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(escapes());
                    }
                }
                other => {
                    resolved.push(other);
                    if let Some(link) = links.get(resolved.join("/").as_str()) {
                        // The last component may be a symlink only if it is this one (a loop is harmless
                        // to unzip); anything else chains symlinks, which defeats this check.
                        if *link != entry.original {
                            return Err(BundleError::ThroughSymlink {
                                entry: entry.original.clone(),
                                link: link.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// What [`write_normalised`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// Writes the planned bundle to `out`, copying each entry's compressed data as it is (no
/// recompression). `out` only ever moves forward, so it can be a network upload. Deterministic: the
/// same bundle and plan always give the same bytes.
pub fn write_normalised<W: Write>(
    bundle: &Spooled,
    plan: &Plan,
    out: W,
) -> Result<Written, BundleError> {
    let write_error = |e: zip::result::ZipError| BundleError::Io {
        action: "write",
        reason: e.to_string(),
    };
    let mut archive = bundle.zip()?;
    let mut writer = ZipWriter::new(Windowed::new(HashingWriter::new(out)));
    for entry in &plan.entries {
        let file = archive
            .by_index_raw(entry.index)
            .map_err(|e| BundleError::Corrupt {
                entry: entry.original.clone(),
                reason: e.to_string(),
            })?;
        if let (Kind::Symlink, Some(target)) = (entry.kind, &entry.target) {
            // A raw copy would lose the symlink bit (the zip writer masks permissions to 0o777).
            let mut options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .unix_permissions(file.unix_mode().map_or(0o777, |m| m & 0o777));
            if let Some(time) = file.last_modified().filter(|t| t.is_valid()) {
                options = options.last_modified_time(time);
            }
            drop(file);
            writer
                .add_symlink(entry.name.clone(), target.clone(), options)
                .map_err(write_error)?;
        } else if entry.kind == Kind::Dir {
            let mut options = SimpleFileOptions::default()
                .unix_permissions(file.unix_mode().map_or(0o755, |m| m & 0o7777));
            if let Some(time) = file.last_modified().filter(|t| t.is_valid()) {
                options = options.last_modified_time(time);
            }
            drop(file);
            writer
                .add_directory(entry.name.clone(), options)
                .map_err(write_error)?;
        } else {
            writer
                .raw_copy_file_rename(file, entry.name.clone())
                .map_err(write_error)?;
        }
    }
    let hashing = writer
        .finish()
        .map_err(write_error)?
        .into_inner()
        .map_err(io_error("write"))?;
    Ok(hashing.finish())
}

/// SHA-256 and size of everything `reader` yields, in lowercase hex.
pub fn sha256_of(mut reader: impl Read) -> io::Result<Written> {
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hashing)?;
    Ok(hashing.finish())
}

/// Counts and hashes what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    pub fn finish(self) -> Written {
        Written {
            size: self.len,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How far back the bundle writer may seek: the zip writer goes back to an entry's local header to
/// fill in its sizes, which only happens for the tiny entries it writes itself (folders, symlinks);
/// copied entries are written with their sizes up front.
const SEEK_WINDOW: usize = 1024 * 1024;

/// A stream that keeps its last [`SEEK_WINDOW`] bytes so it can seek back into them, and sends everything
/// older downstream: lets the zip writer produce its output as a stream (e.g. a multipart upload).
struct Windowed<W: Write> {
    inner: W,
    /// Bytes already sent downstream.
    sent: u64,
    /// The bytes after `sent`, still changeable.
    buf: Vec<u8>,
    /// The cursor, absolute.
    pos: u64,
}

impl<W: Write> Windowed<W> {
    fn new(inner: W) -> Self {
        Windowed {
            inner,
            sent: 0,
            buf: Vec::with_capacity(2 * SEEK_WINDOW),
            pos: 0,
        }
    }

    fn end(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    fn into_inner(mut self) -> io::Result<W> {
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(self.inner)
    }
}

impl<W: Write> Write for Windowed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let at = (self.pos - self.sent) as usize;
        let overlap = (self.buf.len() - at).min(data.len());
        self.buf[at..at + overlap].copy_from_slice(&data[..overlap]);
        self.buf.extend_from_slice(&data[overlap..]);
        self.pos += data.len() as u64;
        if self.pos == self.end() && self.buf.len() > 2 * SEEK_WINDOW {
            let old = self.buf.len() - SEEK_WINDOW;
            self.inner.write_all(&self.buf[..old])?;
            self.buf.drain(..old);
            self.sent += old as u64;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Seek for Windowed<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.end().checked_add_signed(d),
        };
        match target {
            Some(p) if p >= self.sent && p <= self.end() => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the bundle is written as a stream and cannot seek to {to:?} (only the last {SEEK_WINDOW} bytes are kept)"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Deflated(&'a str, Vec<u8>),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    fn zip_of(entries: &[E]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        for e in entries {
            match e {
                E::File(name, body) => {
                    w.start_file(*name, stored).unwrap();
                    w.write_all(body).unwrap();
                }
                E::Deflated(name, body) => {
                    w.start_file(*name, deflated).unwrap();
                    w.write_all(body).unwrap();
                }
                E::Dir(name) => w.add_directory(*name, stored).unwrap(),
                E::Link(name, target) => w.add_symlink(*name, *target, stored).unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    fn spooled(bytes: &[u8]) -> Spooled {
        Spooled::from_reader(bytes, MAX_BUNDLE_BYTES).unwrap()
    }

    fn check(bytes: &[u8]) -> Result<Plan, BundleError> {
        inspect(&spooled(bytes), &Limits::default(), &Normalise::default())
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.entries.iter().map(|e| e.name.as_str()).collect()
    }

    const PROCFILE: E = E::File("Procfile", b"web: python app.py\n");

    #[test]
    fn refuses_unsafe_bundles_naming_the_entry() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "dot-dot",
                zip_of(&[PROCFILE, E::File("../evil.sh", b"x")]),
                "entry `../evil.sh` climbs out of the bundle root with `..`",
            ),
            (
                "nested dot-dot",
                zip_of(&[PROCFILE, E::File("app/../../evil", b"x")]),
                "entry `app/../../evil` climbs out",
            ),
            (
                "backslash dot-dot",
                zip_of(&[PROCFILE, E::File("..\\evil.bat", b"x")]),
                "entry `..\\evil.bat` climbs out",
            ),
            (
                "absolute",
                zip_of(&[PROCFILE, E::File("/etc/cron.d/x", b"x")]),
                "entry `/etc/cron.d/x` is an absolute path",
            ),
            (
                "drive letter",
                zip_of(&[PROCFILE, E::File("C:/Windows/x", b"x")]),
                "entry `C:/Windows/x` starts with a Windows drive letter",
            ),
            (
                "absolute symlink",
                zip_of(&[PROCFILE, E::Link("passwd", "/etc/passwd")]),
                "symlink `passwd` points to `/etc/passwd`, outside the bundle",
            ),
            (
                "climbing symlink",
                zip_of(&[PROCFILE, E::Link("lib/data", "../../data")]),
                "symlink `lib/data` points to `../../data`",
            ),
            (
                "through symlink",
                zip_of(&[
                    PROCFILE,
                    E::Link("etc", "conf"),
                    E::File("etc/passwd", b"x"),
                ]),
                "entry `etc/passwd` goes through symlink `etc`",
            ),
            (
                "chained symlinks",
                zip_of(&[PROCFILE, E::Link("a", "b/.."), E::Link("b", "c")]),
                "entry `a` goes through symlink `b`",
            ),
            (
                "duplicate",
                zip_of(&[PROCFILE, E::File("x", b"1"), E::File("./x", b"2")]),
                "entry `./x` appears more than once",
            ),
            (
                "ratio",
                zip_of(&[PROCFILE, E::Deflated("zeros.bin", zeros)]),
                "entry `zeros.bin` expands",
            ),
            (
                "not a zip",
                b"PK but not really a zip".to_vec(),
                "the bundle is not a zip file",
            ),
            (
                "empty",
                zip_of(&[E::Dir("app/")]),
                "the bundle has no files",
            ),
        ];
        for (what, bytes, expected) in cases {
            let err = check(&bytes)
                .map(|p| format!("{p:?}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{what}: expected {expected:?} in {err:?}"
            );
        }
    }

    #[test]
    fn bounds_are_configurable() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..3 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let bundle = zip_of(&[PROCFILE, E::Deflated("a.txt", noise), E::File("b", b"x")]);
        let tight = |f: fn(&mut Limits)| {
            let mut limits = Limits::default();
            f(&mut limits);
            inspect(&spooled(&bundle), &limits, &Normalise::default())
                .unwrap_err()
                .to_string()
        };
        assert!(tight(|l| l.max_uncompressed_bytes = 1024 * 1024)
            .contains("expands to more than 1048576 bytes (passed at entry `a.txt`"));
        assert!(tight(|l| l.max_entries = 2).contains("has 3 entries; the bound is 2"));
        assert!(tight(|l| l.max_bundle_bytes = 100)
            .contains("Elastic Beanstalk accepts source bundles of at most 100 bytes"));
        assert!(tight(|l| {
            l.max_ratio = 0;
            l.ratio_floor_bytes = 0
        })
        .contains("entry `Procfile` expands"));
        // Within bounds it passes, ratio and all.
        assert!(check(&bundle).is_ok());
        // Spooling stops at the limit, however long the stream is.
        let err = Spooled::from_reader(&bundle[..], 100).unwrap_err();
        assert!(
            matches!(err, BundleError::TooLarge { max: 100, .. }),
            "{err}"
        );
    }

    #[test]
    fn corrupt_data_is_caught_by_its_crc() {
        let mut bytes = zip_of(&[PROCFILE, E::File("data.txt", b"hello world, hello world")]);
        let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
        bytes[at] = b'j';
        let err = check(&bytes).unwrap_err().to_string();
        assert!(err.contains("entry `data.txt` is corrupt"), "{err}");
    }

    #[test]
    fn overlapping_entries_are_a_bomb() {
        let mut bytes = zip_of(&[
            E::File("Procfile", b"web: x\n"),
            E::File("copy", b"web: x\n"),
        ]);
        // Point the second central directory record at the first entry's local header.
        let central: Vec<usize> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == [0x50, 0x4b, 0x01, 0x02])
            .map(|(i, _)| i)
            .collect();
        bytes[central[1] + 42..central[1] + 46].copy_from_slice(&0u32.to_le_bytes());
        let err = check(&bytes).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
    }

    #[test]
    fn plans_normalisation() {
        struct Case<'a> {
            what: &'a str,
            bundle: Vec<u8>,
            flattened: Option<&'a str>,
            names: Vec<&'a str>,
            dropped: usize,
            entry_point: Option<&'a str>,
        }
        let cases = vec![
            Case {
                what: "flat app",
                bundle: zip_of(&[PROCFILE, E::Dir("src/"), E::File("src/app.py", b"")]),
                flattened: None,
                names: vec!["Procfile", "src/", "src/app.py"],
                dropped: 0,
                entry_point: Some("Procfile"),
            },
            Case {
                what: "one top folder",
                bundle: zip_of(&[
                    E::Dir("shop/"),
                    E::File("shop/package.json", b"{}"),
                    E::File("shop/lib/a.js", b""),
                ]),
                flattened: Some("shop"),
                names: vec!["package.json", "lib/a.js"],
                dropped: 0,
                entry_point: Some("package.json"),
            },
            Case {
                what: "Finder zip",
                bundle: zip_of(&[
                    E::File("shop/Procfile", b"web: x"),
                    E::File("__MACOSX/shop/._Procfile", b""),
                    E::File("shop/.DS_Store", b""),
                ]),
                flattened: Some("shop"),
                names: vec!["Procfile"],
                dropped: 2,
                entry_point: Some("Procfile"),
            },
            Case {
                what: "Compress-Archive",
                bundle: zip_of(&[
                    E::File("site\\index.php", b""),
                    E::File("site\\lib\\a.php", b""),
                ]),
                flattened: Some("site"),
                names: vec!["index.php", "lib/a.php"],
                dropped: 0,
                entry_point: Some("index.php"),
            },
            Case {
                what: "only .ebextensions",
                bundle: zip_of(&[E::File(".ebextensions/a.config", b"")]),
                flattened: None,
                names: vec![".ebextensions/a.config"],
                dropped: 0,
                entry_point: None,
            },
            Case {
                what: "a jar",
                bundle: zip_of(&[E::File("app.jar", b"")]),
                flattened: None,
                names: vec!["app.jar"],
                dropped: 0,
                entry_point: Some("app.jar"),
            },
            Case {
                what: "war contents",
                bundle: zip_of(&[E::File("WEB-INF/web.xml", b""), E::File("index.jsp", b"")]),
                flattened: None,
                names: vec!["WEB-INF/web.xml", "index.jsp"],
                dropped: 0,
                entry_point: Some("WEB-INF/"),
            },
            Case {
                what: "no entry point",
                bundle: zip_of(&[E::File("main.py", b"")]),
                flattened: None,
                names: vec!["main.py"],
                dropped: 0,
                entry_point: None,
            },
            Case {
                what: "symlink inside",
                bundle: zip_of(&[
                    PROCFILE,
                    E::Link("current", "releases/1"),
                    E::File("releases/1/x", b""),
                ]),
                flattened: None,
                names: vec!["Procfile", "current", "releases/1/x"],
                dropped: 0,
                entry_point: Some("Procfile"),
            },
        ];
        for c in cases {
            let plan = check(&c.bundle).unwrap_or_else(|e| panic!("{}: {e}", c.what));
            assert_eq!(plan.flattened.as_deref(), c.flattened, "{}", c.what);
            assert_eq!(names(&plan), c.names, "{}", c.what);
            assert_eq!(plan.dropped.len(), c.dropped, "{}", c.what);
            assert_eq!(plan.entry_point.as_deref(), c.entry_point, "{}", c.what);
            assert_eq!(
                plan.warnings().is_empty(),
                c.entry_point.is_some(),
                "{}",
                c.what
            );
            assert_eq!(
                plan.needs_rewrite(),
                !plan.changes().is_empty(),
                "{}",
                c.what
            );
        }
    }

    #[test]
    fn switches_turn_normalisation_off() {
        let bundle = zip_of(&[
            E::File("shop/Procfile", b"web: x"),
            E::File("shop/.DS_Store", b""),
        ]);
        let off = Normalise {
            flatten: false,
            drop_os_metadata: false,
            fix_backslashes: false,
        };
        let plan = inspect(&spooled(&bundle), &Limits::default(), &off).unwrap();
        assert!(!plan.needs_rewrite());
        assert_eq!(names(&plan), ["shop/Procfile", "shop/.DS_Store"]);
        assert!(plan.warnings()[0].contains("no Procfile or known entry point"));
    }

    #[test]
    fn a_symlink_that_escapes_only_after_flattening_is_refused() {
        let bundle = zip_of(&[
            E::File("shop/Procfile", b"web: x"),
            E::Link("shop/data", "../shared"),
        ]);
        let err = check(&bundle).unwrap_err().to_string();
        assert!(
            err.contains("symlink `shop/data` points to `../shared`"),
            "{err}"
        );
    }

    #[test]
    fn rewriting_streams_a_valid_deterministic_zip() {
        let bundle = zip_of(&[
            E::Dir("shop/"),
            E::File("shop/Procfile", b"web: python app.py\n"),
            E::Deflated("shop/app.py", b"print('hello')\n".repeat(1000)),
            E::Link("shop/current", "app.py"),
            E::File("__MACOSX/shop/._app.py", b"junk"),
        ]);
        let source = spooled(&bundle);
        let plan = inspect(&source, &Limits::default(), &Normalise::default()).unwrap();
        assert!(plan.needs_rewrite());
        let mut out = Vec::new();
        let written = write_normalised(&source, &plan, &mut out).unwrap();
        assert_eq!(written.size, out.len() as u64);
        assert_eq!(written, sha256_of(&out[..]).unwrap());
        let again = write_normalised(&source, &plan, io::sink()).unwrap();
        assert_eq!(again, written, "the same plan gives the same bytes");

        let result = spooled(&out);
        assert_eq!(result.sha256, written.sha256);
        let replan = inspect(&result, &Limits::default(), &Normalise::default()).unwrap();
        assert!(!replan.needs_rewrite(), "{replan:?}");
        assert_eq!(names(&replan), ["Procfile", "app.py", "current"]);
        let mut archive = ZipArchive::new(Cursor::new(out)).unwrap();
        let mut app = String::new();
        archive
            .by_name("app.py")
            .unwrap()
            .read_to_string(&mut app)
            .unwrap();
        assert_eq!(app, "print('hello')\n".repeat(1000));
        assert!(archive.by_name("current").unwrap().is_symlink());
    }

    #[test]
    fn the_stream_writer_seeks_back_only_within_its_window() {
        let mut w = Windowed::new(Vec::new());
        w.write_all(b"abcdef").unwrap();
        assert_eq!(w.seek(SeekFrom::Start(1)).unwrap(), 1);
        w.write_all(b"XY").unwrap();
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 6);
        w.write_all(&vec![b'z'; 3 * SEEK_WINDOW]).unwrap();
        assert!(w.seek(SeekFrom::Start(0)).is_err(), "sent bytes are gone");
        let back = (3 * SEEK_WINDOW + 6 - 10) as u64;
        assert_eq!(w.seek(SeekFrom::Start(back)).unwrap(), back);
        w.write_all(b"!").unwrap();
        w.seek(SeekFrom::End(0)).unwrap();
        let out = w.into_inner().unwrap();
        assert_eq!(out.len(), 3 * SEEK_WINDOW + 6);
        assert_eq!(&out[..6], b"aXYdef");
        assert_eq!(out[back as usize], b'!');
    }
}
