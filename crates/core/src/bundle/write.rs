//! The rewrite: [`write_normalised`] streams the planned bundle into any forward-only writer (a multipart
//! upload), copying each entry's compressed data as it is, and [`HashingWriter`] counts and hashes what
//! goes out. Apart because it is the only part that produces a zip, with the stream plumbing that takes.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::plan::{Kind, Plan};
use super::spool::Spooled;
use super::{io_error, BundleError};

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
pub(super) const SEEK_WINDOW: usize = 1024 * 1024;

/// A stream that keeps its last [`SEEK_WINDOW`] bytes so it can seek back into them, and sends everything
/// older downstream: lets the zip writer produce its output as a stream (e.g. a multipart upload).
pub(super) struct Windowed<W: Write> {
    inner: W,
    /// Bytes already sent downstream.
    sent: u64,
    /// The bytes after `sent`, still changeable.
    buf: Vec<u8>,
    /// The cursor, absolute.
    pos: u64,
}

impl<W: Write> Windowed<W> {
    pub(super) fn new(inner: W) -> Self {
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

    pub(super) fn into_inner(mut self) -> io::Result<W> {
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
