//! WAL segment files: their names, a full scan at startup, and a sequential
//! reader for consumers that fall behind the in-memory feed.
//!
//! A segment is named `<first_seq:020>-<created_ns:020>-<nonce:08x>.wal`: the
//! first sequence it was opened for, when it was created and a random nonce, so
//! that a name is never used twice in the life of a data dir (an empty segment
//! left by a crash, or a file a power loss truncated to zero, would otherwise
//! carry the name the next append uses), and segments opened for the same first
//! sequence (a failed one and its retry) sort in the order they were written. A
//! segment is created with `O_EXCL`, written sequentially, and never written
//! again once a write or fsync on it failed. Names of the old form
//! `<first_seq:020>.wal` are still read.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::record::{self, HEADER_BYTES, Scanned};
use super::{WalError, WalRecord, io_err};

/// A segment file on disk, ordered by first sequence, then creation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentFile {
    pub first_seq: u64,
    /// Nanoseconds since the epoch when it was created (0 for old names).
    pub created_ns: u64,
    pub path: PathBuf,
}

/// A new segment's name (see the module docs).
pub(super) fn segment_name(first_seq: u64) -> String {
    let created_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    format!(
        "{first_seq:020}-{created_ns:020}-{:08x}.wal",
        rand::random::<u32>()
    )
}

/// The first sequence and creation time a segment name announces.
pub(super) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let mut parts = stem.split('-');
    let first = parts.next().filter(|f| f.len() == 20)?.parse().ok()?;
    let hex = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit());
    match (parts.next(), parts.next(), parts.next()) {
        (None, None, None) => Some((first, 0)),
        (Some(created), Some(nonce), None) if created.len() == 20 && hex(nonce, 8) => {
            Some((first, created.parse().ok()?))
        }
        _ => None,
    }
}

/// Every segment in `dir`, by first sequence (then name).
pub fn list(dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let mut segments = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let parsed = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_name);
        if let Some((first_seq, created_ns)) = parsed {
            segments.push(SegmentFile {
                first_seq,
                created_ns,
                path,
            });
        }
    }
    segments.sort();
    Ok(segments)
}

/// What a full scan of one segment found.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    pub file: SegmentFile,
    pub bytes: u64,
    /// Sequence numbers of its valid records, as inclusive ranges, in file order.
    pub seqs: Vec<(u64, u64)>,
    /// Byte ranges that hold no valid record: (offset, len).
    pub skipped: Vec<(u64, u64)>,
}

impl SegmentSummary {
    pub fn max_seq(&self) -> Option<u64> {
        self.seqs.iter().map(|r| r.1).max()
    }

    pub fn records(&self) -> u64 {
        self.seqs.iter().map(|(a, b)| b - a + 1).sum()
    }
}

/// Reads a whole segment and lists its records (by sequence) and bad ranges.
pub fn summarize(file: &SegmentFile) -> Result<SegmentSummary, WalError> {
    let bytes = fs::read(&file.path).map_err(io_err(&file.path))?;
    let mut seqs: Vec<(u64, u64)> = Vec::new();
    let mut skipped = Vec::new();
    for item in record::scan(&bytes) {
        match item {
            Scanned::Record { record, .. } => match seqs.last_mut() {
                Some(last) if record.seq == last.1 + 1 => last.1 = record.seq,
                _ => seqs.push((record.seq, record.seq)),
            },
            Scanned::Skipped { offset, len } => skipped.push((offset as u64, len as u64)),
        }
    }
    Ok(SegmentSummary {
        file: file.clone(),
        bytes: bytes.len() as u64,
        seqs,
        skipped,
    })
}

/// Reads one segment's records in order. It streams while records check out;
/// at a bad one it reads the rest of the file and resynchronizes.
pub(super) struct SegmentReader {
    path: PathBuf,
    reader: BufReader<File>,
    /// Records recovered past a bad one, served before anything else.
    resynced: std::vec::IntoIter<WalRecord>,
    done: bool,
}

impl SegmentReader {
    pub(super) fn open(path: &Path) -> Result<Self, WalError> {
        let file = File::open(path).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            resynced: Vec::new().into_iter(),
            done: false,
        })
    }

    /// The next valid record, or `None` at the end of what is on disk now.
    /// `live()` says the writer may still be appending: a short record at the end
    /// is then a write in progress, not corruption, and is left for later.
    pub(super) fn next(&mut self, live: &dyn Fn() -> bool) -> Result<Option<WalRecord>, WalError> {
        if let Some(r) = self.resynced.next() {
            return Ok(Some(r));
        }
        if self.done {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_BYTES];
        let got = read_full(&mut self.reader, &mut header).map_err(io_err(&self.path))?;
        if got == 0 {
            return Ok(None);
        }
        let mut consumed = header[..got].to_vec();
        if got == HEADER_BYTES
            && let Some(len) = record::header_len(&header)
        {
            let mut payload = vec![0u8; len];
            let n = read_full(&mut self.reader, &mut payload).map_err(io_err(&self.path))?;
            if n == len && crc32fast::hash(&payload) == record::header_crc(&header) {
                if let Some(r) = record::decode_payload(&payload) {
                    return Ok(Some(r));
                }
            } else if n < len && live() {
                return self.rewind(got + n);
            }
            consumed.extend_from_slice(&payload[..n]);
        } else if got < HEADER_BYTES && live() {
            return self.rewind(got);
        }
        // A bad record: recover what follows it.
        self.reader
            .read_to_end(&mut consumed)
            .map_err(io_err(&self.path))?;
        self.done = true;
        let skipped: Vec<WalRecord> = record::scan(&consumed[1..])
            .into_iter()
            .filter_map(|s| match s {
                Scanned::Record { record, .. } => Some(record),
                Scanned::Skipped { .. } => None,
            })
            .collect();
        tracing::error!(
            segment = %self.path.display(),
            recovered_after = skipped.len(),
            "WAL segment has a corrupt record; reading on past it"
        );
        self.resynced = skipped.into_iter();
        Ok(self.resynced.next())
    }
}

impl SegmentReader {
    /// A record still being written: step back to its start and try later.
    fn rewind(&mut self, bytes: usize) -> Result<Option<WalRecord>, WalError> {
        self.reader
            .seek_relative(-(bytes as i64))
            .map_err(io_err(&self.path))?;
        Ok(None)
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_in_both_forms_and_sort_by_creation() {
        let (a, b) = (segment_name(42), segment_name(42));
        assert_ne!(a, b);
        let (pa, pb) = (parse_name(&a).unwrap(), parse_name(&b).unwrap());
        assert_eq!((pa.0, pb.0), (42, 42));
        assert!(pa.1 <= pb.1);
        assert_eq!(parse_name("00000000000000000042.wal"), Some((42, 0)));
        assert_eq!(parse_name("42.wal"), None);
        assert_eq!(parse_name("00000000000000000042-zz.wal"), None);
        assert_eq!(parse_name(&format!("{a}.tmp")), None);
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(first in any::<u64>()) {
            prop_assert_eq!(parse_name(&segment_name(first)).map(|p| p.0), Some(first));
        }
    }
}
