//! The zip's central directory read from its bytes, without the zip library: the list of records that
//! [`check_names`](super::names::check_names) sees whole and [`inspect()`](super::inspect()) holds the zip
//! library's own listing against. Apart because it is a small zip parser of its own (end records, ZIP64,
//! name encodings), which nothing else in the bundle module needs to know about.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::{io_error, BundleError, DirectoryFault, READ_BUFFER};

/// One record of the central directory, as read by [`central_directory`].
#[derive(Debug)]
pub(super) struct Record {
    /// Where the record starts in the file: the zip library's entry at the same index must start there too.
    pub(super) offset: u64,
    /// The name as the zip library and Info-ZIP's unzip read it: the Info-ZIP Unicode Path extra field
    /// when there is one, else the header's bytes as UTF-8 (general purpose flag bit 11) or as CP437.
    pub(super) name: String,
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
/// other entry is never inspected, yet unzip may unpack it. Reading the records here lets [`check_names`](super::names::check_names)
/// see every one; [`inspect()`](super::inspect()) then checks that the library's entry `i` is record `i`, so entries are
/// inspected by their index in the central directory and none is missed.
///
/// The end record is the last `PK\5\6` signature whose comment fits in the file (ZIP64's end record when
/// its locator precedes it and the 32-bit fields are saturated, as the zip library does); the records it
/// counts must fill the central directory exactly, so nothing hides between them and the end record.
/// `archive_offset` is the zip library's count of bytes prepended to the zip (a self-extracting stub).
pub(super) fn central_directory(
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
