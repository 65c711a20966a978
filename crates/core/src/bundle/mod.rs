//! Source-bundle checks and normalisation: everything `package` decides about a zip, with no I/O beyond
//! the local spool file.
//!
//! The bundle is never held in memory: it is spooled to a temporary file while its SHA-256 is computed
//! ([`Spool`]), inspected from there ([`inspect()`]: every entry is decompressed once, counted and
//! CRC-checked, never stored), and when it has to change it is rewritten entry by entry with the
//! compressed data copied raw into any [`Write`](std::io::Write) ([`write_normalised`]), e.g. a multipart
//! upload. Memory stays at a few buffers plus the zip's central directory, whatever the bundle's size.
//!
//! Entries are listed from the central directory record by record (`directory.rs`), not through the zip
//! library's map of names, so a repeated name cannot hide an entry from the checks.
//!
//! This file holds what callers see: the bounds ([`Limits`]), the switches ([`Normalise`]) and every
//! reason a bundle is refused ([`BundleError`]). The work is split by step, in the order a bundle meets
//! them: `spool.rs` (to disk, hashed), `directory.rs` (the zip's list of entries, read by hand),
//! `names.rs` (each name's path and the clashes between them), `inspect.rs` (sizes, ratios, overlaps,
//! CRCs), `plan.rs` (what normalisation changes, and the checks of the final layout) and `write.rs` (the
//! rewrite).

mod directory;
mod inspect;
mod names;
mod plan;
mod spool;
mod write;

use std::fmt;
use std::io;

pub use inspect::inspect;
pub use plan::{Kind, Plan, PlannedEntry};
pub use spool::{Spool, Spooled};
pub use write::{sha256_of, write_normalised, HashingWriter, Written};

const MIB: u64 = 1024 * 1024;

/// Elastic Beanstalk's own limit on a source bundle.
pub const MAX_BUNDLE_BYTES: u64 = 512 * MIB;
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
    /// `a/b`, `x` and `./x`). `\` counts whatever `fix_backslashes` says, as in [`check_path`](names::check_path): some unzip
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
/// The bundle's entries are listed twice, by beanswap (see [`central_directory`](directory::central_directory)) and by the zip library
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

#[cfg(test)]
mod tests;
