//! The write-ahead log: the durability point of every event.
//!
//! `<data>/wal/<first_seq>.wal` segments hold records appended in sequence order,
//! one fsync per write call. A record is
//!
//! ```text
//! magic "QWAL" (4) | payload length u32 LE | CRC32 of payload u32 LE | payload
//! payload = seq u64 LE | table name length u8 | table name | Arrow IPC stream (schema + 1 batch)
//! ```
//!
//! Each record carries its own schema so a segment mixes tables and survives
//! additive schema changes. Replay stops a segment at the first record that is
//! short or fails its CRC (a torn tail from a crash) and truncates the tail of the
//! last segment there. Sequence numbers are global and strictly increasing, so a
//! record written twice (after a failed fsync, into a new segment) is applied once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use super::fsio::sync_dir;
use crate::event::Table;

const MAGIC: &[u8; 4] = b"QWAL";
const HEADER_BYTES: usize = 12;
/// A record longer than this is treated as corruption.
const RECORD_BYTES_MAX: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encoding a WAL record")]
    Encode(#[source] arrow::error::ArrowError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record read back from the WAL.
#[derive(Debug)]
pub struct WalRecord {
    pub seq: u64,
    pub table: Table,
    pub batch: RecordBatch,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last_seq: u64,
}

/// The WAL's writer side. Owned by the writer thread.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    current: Option<(Segment, File, u64)>,
    encode_buf: Vec<u8>,
}

impl Wal {
    /// Opens `dir` for appending. Existing segments are kept (until
    /// [`Wal::delete_through`] says they are no longer needed) and new records go
    /// to a new segment.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> Result<Self, WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut closed = Vec::new();
        for (path, _) in list_segments(dir)? {
            let last_seq = scan_segment(&path, |_| Ok(()))?.last_seq;
            closed.push(Segment { path, last_seq });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes_max,
            closed,
            current: None,
            encode_buf: Vec::with_capacity(1 << 20),
        })
    }

    /// Appends records (sequence numbers strictly increasing) and fsyncs once.
    /// Returns when they are durable.
    pub fn append(&mut self, records: &[(u64, Table, &RecordBatch)]) -> Result<(), WalError> {
        let Some(&(first_seq, _, _)) = records.first() else {
            return Ok(());
        };
        self.encode_buf.clear();
        for (seq, table, batch) in records {
            encode_record(&mut self.encode_buf, *seq, *table, batch)?;
        }
        let last_seq = records.last().map_or(first_seq, |r| r.0);
        match self.write_current(first_seq, last_seq) {
            Ok(()) => Ok(()),
            Err(first) => {
                // A failed write or fsync: the segment's state on disk is unknown and
                // its descriptor must not be fsynced again. Close it and write the
                // same records into a fresh segment; replay skips repeated seqs.
                tracing::warn!(error = %first, "WAL write failed; rolling to a new segment");
                if let Some((seg, _, _)) = self.current.take() {
                    self.closed.push(seg);
                }
                self.write_current(first_seq, last_seq)
            }
        }
    }

    fn write_current(&mut self, first_seq: u64, last_seq: u64) -> Result<(), WalError> {
        let roll = self
            .current
            .as_ref()
            .is_none_or(|(_, _, bytes)| *bytes >= self.segment_bytes_max);
        if roll {
            if let Some((seg, _, _)) = self.current.take() {
                self.closed.push(seg);
            }
            let path = self.dir.join(format!("{first_seq:020}.wal"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            self.current = Some((
                Segment {
                    path,
                    last_seq: first_seq,
                },
                file,
                0,
            ));
        }
        let Some((seg, file, bytes)) = self.current.as_mut() else {
            return Ok(());
        };
        file.write_all(&self.encode_buf)
            .map_err(io_err(&seg.path))?;
        file.sync_data().map_err(io_err(&seg.path))?;
        *bytes += self.encode_buf.len() as u64;
        seg.last_seq = last_seq;
        Ok(())
    }

    /// Deletes closed segments whose records all have `seq <= seq_applied`
    /// (held by both the hot store and the lake).
    pub fn delete_through(&mut self, seq_applied: u64) -> Result<usize, WalError> {
        let mut deleted = 0;
        while let Some(seg) = self.closed.first() {
            if seg.last_seq > seq_applied {
                break;
            }
            fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            self.closed.remove(0);
            deleted += 1;
        }
        // The current segment too, once everything in it is applied: the next
        // append opens a new one.
        if let Some((seg, _, _)) = &self.current
            && seg.last_seq <= seq_applied
            && self.closed.is_empty()
        {
            let path = seg.path.clone();
            self.current = None;
            fs::remove_file(&path).map_err(io_err(&path))?;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(deleted)
    }

    /// Number of segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + usize::from(self.current.is_some())
    }
}

fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    table: Table,
    batch: &RecordBatch,
) -> Result<(), WalError> {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    let name = table.name().as_bytes();
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    {
        let mut writer =
            StreamWriter::try_new(&mut *out, &batch.schema()).map_err(WalError::Encode)?;
        writer.write(batch).map_err(WalError::Encode)?;
        writer.finish().map_err(WalError::Encode)?;
    }
    let payload = &out[start + HEADER_BYTES..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn list_segments(dir: &Path) -> Result<Vec<(PathBuf, u64)>, WalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push((path, first));
        }
    }
    segments.sort_by_key(|(_, first)| *first);
    Ok(segments)
}

struct ScanSummary {
    last_seq: u64,
    valid_bytes: u64,
    torn: bool,
}

/// Reads a segment's records in order, stopping at the first torn or corrupt one.
fn scan_segment(
    path: &Path,
    mut on_record: impl FnMut(WalRecord) -> Result<(), WalError>,
) -> Result<ScanSummary, WalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut summary = ScanSummary {
        last_seq: 0,
        valid_bytes: 0,
        torn: false,
    };
    let mut header = [0u8; HEADER_BYTES];
    let mut payload = Vec::new();
    loop {
        match read_full(&mut reader, &mut header).map_err(io_err(path))? {
            0 => break,
            n if n < HEADER_BYTES => {
                summary.torn = true;
                break;
            }
            _ => {}
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if &header[..4] != MAGIC || !(9..=RECORD_BYTES_MAX).contains(&len) {
            summary.torn = true;
            break;
        }
        payload.resize(len, 0);
        if read_full(&mut reader, &mut payload).map_err(io_err(path))? < len
            || crc32fast::hash(&payload) != crc
        {
            summary.torn = true;
            break;
        }
        let Some(record) = decode_payload(&payload) else {
            summary.torn = true;
            break;
        };
        summary.last_seq = record.seq;
        summary.valid_bytes += (HEADER_BYTES + len) as u64;
        on_record(record)?;
    }
    Ok(summary)
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

fn decode_payload(payload: &[u8]) -> Option<WalRecord> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let name_len = *payload.get(8)? as usize;
    let name = std::str::from_utf8(payload.get(9..9 + name_len)?).ok()?;
    let table = Table::from_name(name)?;
    let mut reader = StreamReader::try_new(payload.get(9 + name_len..)?, None).ok()?;
    let batch = reader.next()?.ok()?;
    Some(WalRecord { seq, table, batch })
}

/// Replays every record with `seq > after`, in sequence order, skipping repeats.
/// A torn tail in the newest segment is truncated away. Returns the highest
/// sequence number seen in the WAL (0 if empty).
pub fn replay(
    dir: &Path,
    after: u64,
    mut on_record: impl FnMut(WalRecord) -> Result<(), WalError>,
) -> Result<u64, WalError> {
    if !dir.exists() {
        return Ok(0);
    }
    let segments = list_segments(dir)?;
    let mut max_seq = 0u64;
    let newest = segments.len().saturating_sub(1);
    for (i, (path, _)) in segments.iter().enumerate() {
        let summary = scan_segment(path, |record| {
            if record.seq > max_seq {
                max_seq = record.seq;
                if record.seq > after {
                    return on_record(record);
                }
            }
            Ok(())
        })?;
        if summary.torn {
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = summary.valid_bytes,
                "WAL segment has a torn or corrupt tail"
            );
            if i == newest {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                file.set_len(summary.valid_bytes).map_err(io_err(path))?;
                file.sync_all().map_err(io_err(path))?;
            }
        }
    }
    Ok(max_seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventHeader, Level, MarketContext, Regime, Ts};

    fn batch(n: usize) -> RecordBatch {
        let rows: Vec<_> = (0..n)
            .map(|i| MarketContext {
                header: EventHeader {
                    event_id: format!("e{i}"),
                    ts: Ts(1_700_000_000_000_000),
                    symbol: "BTC".into(),
                    level: Level::Info,
                },
                price: 1.0 + i as f64,
                spread_bps: 1.0,
                volume: 1.0,
                volatility: 0.1,
                regime: Regime::Range,
            })
            .collect();
        MarketContext::to_batch(&rows).unwrap()
    }

    fn collect(dir: &Path, after: u64) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        replay(dir, after, |r| {
            out.push((r.seq, r.batch.num_rows()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn append_replay_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(3);
        let mut wal = Wal::open(dir.path(), 1).unwrap();
        wal.append(&[(1, Table::MarketContext, &b), (2, Table::MarketContext, &b)])
            .unwrap();
        wal.append(&[(3, Table::MarketContext, &b)]).unwrap();
        assert_eq!(collect(dir.path(), 0), vec![(1, 3), (2, 3), (3, 3)]);
        assert_eq!(collect(dir.path(), 2), vec![(3, 3)]);
        assert_eq!(wal.segment_count(), 2);
        wal.delete_through(2).unwrap();
        assert_eq!(wal.segment_count(), 1);
        assert_eq!(collect(dir.path(), 0), vec![(3, 3)]);
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(5);
        let mut wal = Wal::open(dir.path(), u64::MAX).unwrap();
        wal.append(&[(1, Table::MarketContext, &b)]).unwrap();
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap();
        drop(wal);
        let (path, _) = list_segments(dir.path()).unwrap().remove(0);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 7).unwrap();
        assert_eq!(collect(dir.path(), 0), vec![(1, 5)]);
        // Appending after the truncation works and replays.
        let mut wal = Wal::open(dir.path(), u64::MAX).unwrap();
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap();
        assert_eq!(collect(dir.path(), 0), vec![(1, 5), (2, 5)]);
    }

    #[test]
    fn flipped_byte_stops_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2);
        let mut wal = Wal::open(dir.path(), u64::MAX).unwrap();
        wal.append(&[(1, Table::MarketContext, &b), (2, Table::MarketContext, &b)])
            .unwrap();
        drop(wal);
        let (path, _) = list_segments(dir.path()).unwrap().remove(0);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert_eq!(collect(dir.path(), 0), vec![(1, 2)]);
    }
}
