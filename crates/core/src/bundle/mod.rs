//! Source-bundle checks and normalisation: everything `package` decides about a zip, with no I/O beyond
//! the local spool file.
//!
//! The bundle is never held in memory: it is spooled to a temporary file while its SHA-256 is computed
//! ([`Spool`]), inspected from there ([`inspect`]: every entry is decompressed once, counted and
//! CRC-checked, never stored), and when it has to change it is rewritten entry by entry with the
//! compressed data copied raw into any [`Write`] ([`write_normalised`]), e.g. a multipart upload.
//! Memory stays at a few buffers plus the zip's central directory, whatever the bundle's size.
//!
//! Entries are listed from the central directory record by record ([`central_directory`]), not through
//! the zip library's map of names, so a repeated name cannot hide an entry from the checks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
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
    /// Move everything up when all files sit in one top-level folder, or in a chain of folders each
    /// holding nothing but the next (`outer/inner/`): out of the deepest folder that holds everything.
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
    /// Two entries that would be unpacked to the same place. Both are named by their raw names and their
    /// numbers in the central directory (counted from 1), because identical names alone do not say which
    /// records they are.
    #[error(
        "entries `{first}` (number {n1} in the zip) and `{second}` (number {n2}) {clash}",
        n1 = .first_index + 1,
        n2 = .second_index + 1
    )]
    Duplicate {
        first: String,
        first_index: usize,
        second: String,
        second_index: usize,
        clash: Clash,
    },
    /// The central directory cannot be listed unambiguously, so some entry might escape inspection.
    #[error("the bundle's list of entries (the zip's central directory) {fault}; refusing a zip whose contents depend on which program unpacks it")]
    Directory { fault: DirectoryFault },
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

/// How two entries of a bundle collide.
///
/// Every entry of a bundle must unpack to a path of its own: when two land on the same path `unzip` keeps
/// one of them, and which one depends on the unzip program and its options, so the entry that was inspected
/// need not be the one that ships (a zip bomb or a symlink to `/etc/passwd` followed by a harmless entry of
/// the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// Byte for byte the same name (as decoded: two records the zip library files under one name).
    SameName,
    /// The same path once `\` is read as a separator and `.` and empty parts are dropped (`a\b` and
    /// `a/b`, `x` and `./x`). `\` counts whatever `fix_backslashes` says, as in [`check_path`]: some unzip
    /// programs honour it (Info-ZIP's unzip does for zips made on Windows), so the two may meet on disk.
    SamePath,
    /// A file (or symlink) and a folder with the same path (`a` and `a/`).
    FileAndFolder,
    /// The same path but for letter case, ASCII or Unicode (`Config.py` and `config.py`, `Ä` and `ä`),
    /// compared with Unicode lowercasing.
    ///
    /// Refused on purpose although Elastic Beanstalk unpacks on Linux, whose file systems keep both: the
    /// bundle is often built, unpacked or inspected on macOS or Windows, whose default file systems are
    /// case-insensitive and keep only one of the two, so the same bundle would mean different things in
    /// different places. An app that needs both names is better off renaming one. (Unicode normalisation,
    /// `é` composed vs decomposed, which macOS also treats as one name, is not compared.)
    Case,
    /// The second entry lies inside the first, which is a file or symlink, not a folder (`lib` and
    /// `lib/x.py`, in any letter case): it cannot be unpacked, or is unpacked through a symlink.
    InsideFile,
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clash::SameName => "have the same name: unzip would unpack one over the other, and which one is kept depends on the unzip program, so the entry checked may not be the one shipped",
            Clash::SamePath => "name the same path once `\\` is read as a folder separator and `.` and empty parts are dropped: unzip would unpack one over the other",
            Clash::FileAndFolder => "are a file and a folder at the same path: they cannot both be unpacked",
            Clash::Case => "differ only in letter case: macOS and Windows file systems treat them as one file, so wherever the bundle is built or unpacked on one of those, one entry silently replaces the other",
            Clash::InsideFile => "clash: the second lies inside the first, which is not a folder, so it cannot be unpacked as it is",
        })
    }
}

/// Why the central directory (the zip's list of entries) cannot be trusted to list every entry once.
///
/// The bundle's entries are listed twice, by beanswap (see [`central_directory`]) and by the zip library
/// that reads their contents; any difference means one reader sees an entry the other does not, and an
/// unzip on an instance could unpack an entry nobody inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryFault {
    /// No end-of-central-directory record in the last 64 KiB.
    NoEndRecord,
    /// The zip says it spans several disks (a split archive).
    Split,
    /// The ZIP64 end record the locator points at is not there.
    NoZip64EndRecord { offset: u64 },
    /// The records run out (reach the end record or the end of the file) before the count does.
    Truncated { index: usize },
    /// A record does not start with the central directory header signature.
    BadRecord { index: usize, offset: u64 },
    /// The records counted by the end record do not reach it: something sits between them and the end
    /// record (more records, which a reader that walks signatures would find and unpack).
    Size {
        count: usize,
        expected_end: u64,
        actual_end: u64,
    },
    /// The zip library starts the central directory elsewhere (the zip has more than one plausible end record).
    Start { ours: u64, library: u64 },
    /// The zip library counts another number of entries.
    Count { ours: usize, library: usize },
    /// The zip library's entry at this index is another record or has another name.
    Entry {
        index: usize,
        ours: String,
        library: String,
    },
}

impl fmt::Display for DirectoryFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryFault::NoEndRecord => write!(f, "has no end record in the file's last 64 KiB"),
            DirectoryFault::Split => write!(f, "says the zip is split across several disks"),
            DirectoryFault::NoZip64EndRecord { offset } => write!(f, "points to a ZIP64 end record at byte {offset}, and there is none there"),
            DirectoryFault::Truncated { index } => write!(f, "runs out before the record of entry number {}, which its end record counts", index + 1),
            DirectoryFault::BadRecord { index, offset } => write!(f, "has no valid record for entry number {} at byte {offset}", index + 1),
            DirectoryFault::Size { count, expected_end, actual_end } => write!(f, "does not end where the next record begins: the entries its end record counts ({count}) end at byte {actual_end}, not {expected_end} (bytes in between can hold entries that a reader walking the list would unpack)"),
            DirectoryFault::Start { ours, library } => write!(f, "starts at byte {ours} by its last end record but at byte {library} for the zip library (the zip has more than one end record)"),
            DirectoryFault::Count { ours, library } => write!(f, "holds {ours} entries but the zip library sees {library}"),
            DirectoryFault::Entry { index, ours, library } => write!(f, "names entry number {} `{ours}`, the zip library `{library}`", index + 1),
        }
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

    fn archive(&self) -> Result<ZipArchive<BufReader<File>>, BundleError> {
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
    /// The folder everything was moved up out of: a top-level folder (`shop`) or a chain of folders each
    /// holding nothing but the next (`outer/inner`), `/` separated without a trailing `/`.
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
            let under = if folder.contains('/') {
                format!("the folders `{folder}/`, each holding nothing but the next")
            } else {
                format!("the top-level folder `{folder}/`")
            };
            out.push(format!(
                "flattened: every file sat under {under}, which Elastic Beanstalk would not look into; moved everything up out of `{folder}/` to the root"
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

/// One record of the central directory, as read by [`central_directory`].
#[derive(Debug)]
struct Record {
    /// Where the record starts in the file: the zip library's entry at the same index must start there too.
    offset: u64,
    /// The name as the zip library and Info-ZIP's unzip read it: the Info-ZIP Unicode Path extra field
    /// when there is one, else the header's bytes as UTF-8 (general purpose flag bit 11) or as CP437.
    name: String,
}

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
/// Info-ZIP Unicode Path extra field: a UTF-8 name that replaces the header's.
const UNICODE_PATH_FIELD: u16 = 0x7075;
/// General purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// Every record of the central directory, in order, read from the bytes without the zip library.
///
/// Why: `zip::ZipArchive` files its entries in a map keyed by name, so of two records with the same name it
/// keeps one (the later record's data at the earlier one's index) and `len()` counts names, not records: the
/// other entry is never inspected, yet unzip may unpack it. Reading the records here lets [`check_names`]
/// see every one; [`inspect`] then checks that the library's entry `i` is record `i`, so entries are
/// inspected by their index in the central directory and none is missed.
///
/// The end record is the last `PK\5\6` signature whose comment fits in the file (ZIP64's end record when
/// its locator precedes it and the 32-bit fields are saturated, as the zip library does); the records it
/// counts must fill the central directory exactly, so nothing hides between them and the end record.
/// `archive_offset` is the zip library's count of bytes prepended to the zip (a self-extracting stub).
fn central_directory(
    reader: &mut (impl Read + Seek),
    file_len: u64,
    archive_offset: u64,
    max_entries: usize,
) -> Result<(u64, Vec<Record>), BundleError> {
    let fault = |fault| BundleError::Directory { fault };
    let tail_len = file_len.min((EOCD_LEN + usize::from(u16::MAX)) as u64);
    let tail_start = file_len - tail_len;
    let mut tail = vec![0u8; tail_len as usize];
    reader
        .seek(SeekFrom::Start(tail_start))
        .map_err(io_error("seek"))?;
    reader.read_exact(&mut tail).map_err(io_error("read"))?;
    let at = (0..=tail.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&p| {
            p + EOCD_LEN <= tail.len()
                && le32(&tail, p) == EOCD_SIGNATURE
                && p + EOCD_LEN + usize::from(le16(&tail, p + 20)) <= tail.len()
        })
        .ok_or(fault(DirectoryFault::NoEndRecord))?;
    let eocd = &tail[at..at + EOCD_LEN];
    let eocd_offset = tail_start + at as u64;
    let (disk, cd_disk) = (le16(eocd, 4), le16(eocd, 6));
    let (on_disk, total) = (le16(eocd, 8), le16(eocd, 10));
    let (cd_size, cd_offset) = (le32(eocd, 12), le32(eocd, 16));
    let saturated =
        on_disk == u16::MAX || total == u16::MAX || cd_size == u32::MAX || cd_offset == u32::MAX;
    let locator = at
        .checked_sub(ZIP64_LOCATOR_LEN)
        .map(|l| &tail[l..l + ZIP64_LOCATOR_LEN])
        .filter(|l| le32(l, 0) == ZIP64_LOCATOR_SIGNATURE);
    // The central directory ends where the next structure starts: ZIP64's end record, or the end record.
    let (count, cd_start, cd_end) = match locator {
        Some(locator) if saturated => {
            let offset = le64(locator, 8).saturating_add(archive_offset);
            let mut record = [0u8; ZIP64_EOCD_LEN];
            let read = reader
                .seek(SeekFrom::Start(offset))
                .and_then(|_| reader.read_exact(&mut record));
            if read.is_err() || le32(&record, 0) != ZIP64_EOCD_SIGNATURE {
                return Err(fault(DirectoryFault::NoZip64EndRecord { offset }));
            }
            let (disk, cd_disk) = (le32(&record, 16), le32(&record, 20));
            let (on_disk, total) = (le64(&record, 24), le64(&record, 32));
            if disk != 0 || cd_disk != 0 || on_disk != total || le32(locator, 16) > 1 {
                return Err(fault(DirectoryFault::Split));
            }
            (
                total,
                le64(&record, 48).saturating_add(archive_offset),
                offset,
            )
        }
        _ => {
            if disk != 0 || cd_disk != 0 || on_disk != total {
                return Err(fault(DirectoryFault::Split));
            }
            let start = u64::from(cd_offset) + archive_offset;
            (u64::from(total), start, eocd_offset)
        }
    };
    if count > max_entries as u64 {
        return Err(BundleError::TooManyEntries {
            count: usize::try_from(count).unwrap_or(usize::MAX),
            max: max_entries,
        });
    }
    let count = count as usize;
    reader
        .seek(SeekFrom::Start(cd_start))
        .map_err(io_error("seek"))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut records = Vec::with_capacity(count);
    let mut offset = cd_start;
    let mut header = [0u8; CENTRAL_LEN];
    for index in 0..count {
        let truncated = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => fault(DirectoryFault::Truncated { index }),
            _ => io_error("read")(e),
        };
        if offset >= cd_end {
            return Err(fault(DirectoryFault::Truncated { index }));
        }
        reader.read_exact(&mut header).map_err(truncated)?;
        if le32(&header, 0) != CENTRAL_SIGNATURE {
            return Err(fault(DirectoryFault::BadRecord { index, offset }));
        }
        let flags = le16(&header, 8);
        let name_len = usize::from(le16(&header, 28));
        let extra_len = usize::from(le16(&header, 30));
        let comment_len = usize::from(le16(&header, 32));
        let mut variable = vec![0u8; name_len + extra_len + comment_len];
        reader.read_exact(&mut variable).map_err(truncated)?;
        let (raw_name, extra) = variable[..name_len + extra_len].split_at(name_len);
        records.push(Record {
            offset,
            name: decode_name(raw_name, flags, extra),
        });
        offset += (CENTRAL_LEN + variable.len()) as u64;
    }
    if offset != cd_end {
        return Err(fault(DirectoryFault::Size {
            count,
            expected_end: cd_end,
            actual_end: offset,
        }));
    }
    Ok((cd_start, records))
}

/// An entry's name as the zip library decodes it (Info-ZIP's unzip reads the Unicode Path field too).
fn decode_name(raw: &[u8], flags: u16, extra: &[u8]) -> String {
    let mut unicode = None;
    let mut at = 0;
    while at + 4 <= extra.len() {
        let (id, len) = (le16(extra, at), usize::from(le16(extra, at + 2)));
        let Some(data) = extra.get(at + 4..at + 4 + len) else {
            break;
        };
        // Version (1 byte), CRC-32 of the header's name (4 bytes; the zip library refuses the zip when it
        // does not match, so it need not be checked again here), then the UTF-8 name.
        if id == UNICODE_PATH_FIELD && data.len() >= 5 {
            unicode = Some(&data[5..]);
        }
        at += 4 + len;
    }
    match unicode {
        Some(name) => String::from_utf8_lossy(name).into_owned(),
        None if flags & FLAG_UTF8 != 0 => String::from_utf8_lossy(raw).into_owned(),
        None => raw.iter().map(|&b| cp437(b)).collect(),
    }
}

/// IBM code page 437 above ASCII: the encoding of zip names without the UTF-8 flag (APPNOTE appendix D).
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn cp437(b: u8) -> char {
    match b {
        0..=0x7f => char::from(b),
        _ => CP437_HIGH
            .chars()
            .nth(usize::from(b - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER),
    }
}

/// Where an entry unpacks to, for comparing entries: `\` read as a separator (see [`Clash::SamePath`]),
/// `.` and empty parts dropped, letter case folded (see [`Clash::Case`]).
fn path_key(name: &str) -> String {
    components(name, true).join("/").to_lowercase()
}

fn is_folder_name(name: &str) -> bool {
    name.ends_with('/') || name.ends_with('\\')
}

/// Checks every record's path ([`check_path`]) and refuses any two that would unpack to the same place.
fn check_names(records: &[Record]) -> Result<(), BundleError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        check_path(&record.name)?;
        let key = path_key(&record.name);
        if let Some(&first) = seen.get(&key) {
            let (a, b) = (&records[first].name, &record.name);
            let exact = |n: &str| components(n, true).join("/");
            let clash = if a == b {
                Clash::SameName
            } else if exact(a) != exact(b) {
                Clash::Case
            } else if is_folder_name(a) != is_folder_name(b) {
                Clash::FileAndFolder
            } else {
                Clash::SamePath
            };
            return Err(BundleError::Duplicate {
                first: a.clone(),
                first_index: first,
                second: b.clone(),
                second_index: index,
                clash,
            });
        }
        seen.insert(key, index);
    }
    Ok(())
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
    let mut archive = bundle.archive()?;
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
    let chain = if normalise.flatten {
        folder_chain(&kept)
    } else {
        vec![]
    };
    let strip = chain.len();
    let flattened = (!chain.is_empty()).then(|| chain.join("/"));
    let mut entries = vec![];
    let mut backslash_names = 0;
    let mut files = 0;
    for (s, parts) in kept {
        let rest = parts.get(strip..).unwrap_or_default();
        if rest.is_empty() {
            // A folder of the flattened chain itself.
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
    check_nesting(&entries)?;
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

/// The chain of folders every entry sits in, each holding nothing but the next (`outer/inner/...` with
/// nothing else at any level): Elastic Beanstalk looks for the app at the root, so everything is moved up
/// out of the deepest folder that still holds everything. Empty when the root holds more than one thing.
/// The chain stops before a folder that means something at the root (`.ebextensions`, `WEB-INF`, ...),
/// which must stay a folder.
fn folder_chain(kept: &[(Seen, Vec<String>)]) -> Vec<String> {
    let mut chain: Vec<String> = vec![];
    loop {
        let depth = chain.len();
        // The next folder: named by any entry below this depth (a file needs at least depth + 2 parts).
        let Some(next) = kept
            .iter()
            .find(|(s, parts)| {
                parts.len() > depth + 1 || (s.kind == Kind::Dir && parts.len() > depth)
            })
            .map(|(_, parts)| parts[depth].clone())
        else {
            return chain;
        };
        let holds_everything = kept.iter().all(|(s, parts)| {
            // A folder of the chain itself, or an entry inside `next` (`next/` itself is a folder).
            (s.kind == Kind::Dir && parts.len() <= depth)
                || (parts.get(depth) == Some(&next)
                    && (parts.len() > depth + 1 || s.kind == Kind::Dir))
        });
        if !holds_everything || MEANINGFUL_ROOT_FOLDERS.contains(&next.as_str()) {
            return chain;
        }
        chain.push(next);
    }
}

/// No entry may lie inside a file or symlink (`lib` and `lib/x.py`), in any letter case (see
/// [`Clash::Case`]): such a bundle cannot be unpacked as it is. Runs after [`check_symlinks`], which names
/// the exact-case symlink case in its own words.
fn check_nesting(entries: &[PlannedEntry]) -> Result<(), BundleError> {
    let not_folders: HashMap<String, &PlannedEntry> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir)
        .map(|e| (path_key(&e.name), e))
        .collect();
    for entry in entries {
        let key = path_key(&entry.name);
        let mut parents = key.match_indices('/').map(|(at, _)| &key[..at]);
        if let Some(parent) = parents.find_map(|p| not_folders.get(p)) {
            return Err(BundleError::Duplicate {
                first: parent.original.clone(),
                first_index: parent.index,
                second: entry.original.clone(),
                second_index: entry.index,
                clash: Clash::InsideFile,
            });
        }
    }
    Ok(())
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
    let mut archive = bundle.archive()?;
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
mod tests;
