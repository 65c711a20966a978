//! The bundle on local disk: [`Spool`] writes the downloaded artifact to an anonymous temporary file,
//! hashing and size-checking it on the way, and [`Spooled`] hands out readers of it (and the zip library's
//! view) to the steps that follow. Apart because it is the only part of the bundle module that owns a file.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::{io_error, BundleError, READ_BUFFER};

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
