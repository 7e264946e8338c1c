//! The write-ahead log: the durability point of every event.
//!
//! `<data>/wal/` holds segments of records appended in sequence order, one
//! fsync per write call ([`Wal::append`]); the format is in [`record`], the file
//! names in [`segment`]. Sequence numbers are global and strictly increasing,
//! and a record written twice (after a failed write, into a new segment) is read
//! once.
//!
//! # Rules
//!
//! - **A name is used once.** Every segment is a new file with a unique name
//!   ([`segment`]); nothing is ever appended to a file that existed before.
//! - **A failed file is dead.** After a failed write or fsync the segment is
//!   closed and never written or fsynced again; the same records go to a new
//!   segment. A segment that never completed an fsync holds no acknowledged
//!   record and is removed at once.
//! - **Nothing is truncated.** A torn or corrupt record is skipped by readers
//!   (who resynchronize past it); the bytes stay until the whole segment is
//!   deleted.
//! - **Deletion needs every consumer.** A segment goes once the hot store, the
//!   lake and the journal all hold its last record ([`Wal::delete_through`]).
//!
//! Consumers read through the [`feed`]: recent records from memory, older ones
//! from these files, so a slow consumer never holds the writer back.

pub mod feed;
pub mod record;
pub mod segment;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;

use super::fsio::{self, FileSystem, FsFile};
use super::seq::SeqRanges;
use crate::event::Table;
pub use feed::{Fetched, WalCursor, WalFeed};
pub use segment::{SegmentFile, SegmentSummary};

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

impl WalError {
    /// The I/O error behind this one, if any.
    pub fn io(&self) -> Option<&io::Error> {
        match self {
            WalError::Io { source, .. } => Some(source),
            WalError::Encode(_) => None,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record read back from the WAL.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub table: Table,
    pub batch: RecordBatch,
}

/// What the startup scan of `<data>/wal/` found.
#[derive(Debug, Default)]
pub struct WalScan {
    /// The segments kept, by first sequence.
    pub segments: Vec<SegmentSummary>,
    /// Every sequence number with a valid record.
    pub coverage: SeqRanges,
    /// Segments holding bytes but no valid record, moved to quarantine: (from, to).
    pub quarantined: Vec<(PathBuf, PathBuf)>,
}

impl WalScan {
    /// Scans every segment. Empty segments (a crash between creating a file and
    /// its first write, or a power loss) are removed; segments with bytes but no
    /// valid record are moved to `quarantine_dir`, never deleted.
    pub fn run(dir: &Path, fs: &dyn FileSystem, quarantine_dir: &Path) -> Result<Self, WalError> {
        fsio::create_dir_durable(fs, dir).map_err(io_err(dir))?;
        let mut scan = WalScan::default();
        let mut removed = false;
        for file in segment::list(dir)? {
            let summary = segment::summarize(&file)?;
            if summary.bytes == 0 {
                tracing::info!(segment = %file.path.display(), "removing an empty WAL segment");
                fs.remove_file(&file.path).map_err(io_err(&file.path))?;
                removed = true;
                continue;
            }
            if summary.seqs.is_empty() {
                let name = file
                    .path
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                let target = quarantine_dir.join(name);
                fsio::create_dir_durable(fs, quarantine_dir).map_err(io_err(quarantine_dir))?;
                fs.rename(&file.path, &target).map_err(io_err(&file.path))?;
                fs.sync_dir(quarantine_dir)
                    .map_err(io_err(quarantine_dir))?;
                removed = true;
                tracing::error!(
                    segment = %file.path.display(),
                    moved_to = %target.display(),
                    bytes = summary.bytes,
                    "WAL segment holds no valid record; quarantined"
                );
                scan.quarantined.push((file.path, target));
                continue;
            }
            for &(offset, len) in &summary.skipped {
                tracing::warn!(
                    segment = %file.path.display(),
                    offset,
                    len,
                    "WAL segment has bytes that hold no valid record (a torn write or corruption)"
                );
            }
            for &(a, b) in &summary.seqs {
                scan.coverage.insert(a, b);
            }
            scan.segments.push(summary);
        }
        if removed {
            fs.sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(scan)
    }

    pub fn max_seq(&self) -> u64 {
        self.coverage.max().unwrap_or(0)
    }
}

#[derive(Debug)]
struct Closed {
    path: PathBuf,
    /// Highest sequence written (or attempted) in it.
    max_seq: u64,
}

struct Current {
    path: PathBuf,
    file: Box<dyn FsFile>,
    bytes: u64,
    /// Highest sequence an fsync covered, if any.
    synced_seq: Option<u64>,
}

/// The WAL's writer side. Owned by the writer thread.
pub struct Wal {
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    segment_bytes_max: u64,
    /// Segments not written any more, oldest first.
    closed: Vec<Closed>,
    current: Option<Current>,
    encode_buf: Vec<u8>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("closed", &self.closed.len())
            .finish()
    }
}

impl Wal {
    /// The writer over the segments `scan` found (kept until
    /// [`Wal::delete_through`] says they are no longer needed); new records go to
    /// a new segment.
    pub fn open(
        dir: &Path,
        fs: Arc<dyn FileSystem>,
        segment_bytes_max: u64,
        scan: &WalScan,
    ) -> Self {
        let closed = scan
            .segments
            .iter()
            .map(|s| Closed {
                path: s.file.path.clone(),
                max_seq: s.max_seq().unwrap_or(0),
            })
            .collect();
        Self {
            dir: dir.to_path_buf(),
            fs,
            segment_bytes_max,
            closed,
            current: None,
            encode_buf: Vec::with_capacity(1 << 20),
        }
    }

    /// Appends records (sequence numbers strictly increasing) and fsyncs once.
    /// Returns when they are durable. On error nothing is acknowledged and the
    /// caller retries the same records later.
    pub fn append(&mut self, records: &[(u64, Table, &RecordBatch)]) -> Result<(), WalError> {
        let (Some(&(first_seq, _, _)), Some(&(last_seq, _, _))) = (records.first(), records.last())
        else {
            return Ok(());
        };
        self.encode_buf.clear();
        for (seq, table, batch) in records {
            record::encode(&mut self.encode_buf, *seq, *table, batch)?;
        }
        match self.write_current(first_seq, last_seq) {
            Ok(()) => Ok(()),
            Err(first) => {
                // The failed segment is closed for good (see the rules): one
                // more try, in a fresh segment, before the error goes up.
                tracing::warn!(error = %first, "WAL write failed; retrying in a new segment");
                self.write_current(first_seq, last_seq)
            }
        }
    }

    fn open_segment(&mut self, first_seq: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment::segment_name(first_seq));
        let file = self.fs.create_new(&path).map_err(io_err(&path))?;
        self.current = Some(Current {
            path,
            file,
            bytes: 0,
            synced_seq: None,
        });
        // The segment's name must survive a power loss with its records.
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            self.fail_current(first_seq);
            return Err(io_err(&self.dir)(e));
        }
        Ok(())
    }

    /// Closes the current segment after a failure. One that never completed an
    /// fsync holds nothing acknowledged and goes at once.
    fn fail_current(&mut self, attempted_seq: u64) {
        let Some(cur) = self.current.take() else {
            return;
        };
        drop(cur.file);
        match cur.synced_seq {
            None if self.fs.remove_file(&cur.path).is_ok() => {}
            synced => self.closed.push(Closed {
                path: cur.path,
                max_seq: synced.unwrap_or(0).max(attempted_seq),
            }),
        }
    }

    fn write_current(&mut self, first_seq: u64, last_seq: u64) -> Result<(), WalError> {
        let roll = self
            .current
            .as_ref()
            .is_none_or(|c| c.bytes >= self.segment_bytes_max);
        if roll {
            if let Some(cur) = self.current.take() {
                self.closed.push(Closed {
                    path: cur.path,
                    max_seq: cur.synced_seq.unwrap_or(0),
                });
            }
            self.open_segment(first_seq)?;
        }
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        let result = cur
            .file
            .write_all(&self.encode_buf)
            .and_then(|()| cur.file.sync_data());
        match result {
            Ok(()) => {
                cur.bytes += self.encode_buf.len() as u64;
                cur.synced_seq = Some(last_seq);
                Ok(())
            }
            Err(e) => {
                let path = cur.path.clone();
                self.fail_current(last_seq);
                Err(io_err(&path)(e))
            }
        }
    }

    /// Deletes segments whose records all have `seq <= applied` (held by every
    /// consumer). Returns how many went.
    pub fn delete_through(&mut self, applied: u64) -> Result<usize, WalError> {
        let mut deleted = 0;
        let mut kept = Vec::with_capacity(self.closed.len());
        let mut result = Ok(());
        for seg in self.closed.drain(..) {
            if seg.max_seq > applied || result.is_err() {
                kept.push(seg);
                continue;
            }
            match self.fs.remove_file(&seg.path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => deleted += 1,
                Err(e) => {
                    result = Err(io_err(&seg.path)(e));
                    kept.push(seg);
                }
            }
        }
        self.closed = kept;
        // The current segment too, once everything in it is applied: the next
        // append opens a new one.
        if let Some(cur) = &self.current
            && cur.synced_seq.is_some_and(|s| s <= applied)
            && self.closed.is_empty()
            && result.is_ok()
        {
            let path = cur.path.clone();
            self.current = None;
            self.fs.remove_file(&path).map_err(io_err(&path))?;
            deleted += 1;
        }
        if deleted > 0 {
            self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        result.map(|()| deleted)
    }

    /// Number of segment files this writer knows.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + usize::from(self.current.is_some())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{EventHeader, Level, MarketContext, Regime, Ts};
    use crate::store::faultfs::{Errno, Fault, FaultConfig, FaultFs, Op};
    use crate::store::fsio::StdFs;

    pub(crate) fn batch(n: usize) -> RecordBatch {
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

    /// Every (seq, rows) a fresh reader sees from seq 1 on.
    pub(crate) fn read_all(dir: &Path) -> Vec<(u64, usize)> {
        let scan = WalScan::run(dir, &StdFs, &dir.join("q")).unwrap();
        let feed = WalFeed::new(dir, scan.max_seq(), 1 << 20);
        feed.close();
        let mut cursor = feed.cursor(1);
        let mut out = Vec::new();
        loop {
            match cursor.fetch(100, std::time::Duration::ZERO).unwrap() {
                Fetched::Records(rs) => out.extend(rs.iter().map(|r| (r.seq, r.batch.num_rows()))),
                Fetched::Gap { .. } => {}
                Fetched::Idle | Fetched::Closed => return out,
            }
        }
    }

    fn open(dir: &Path, fs: Arc<dyn FileSystem>, max: u64) -> Wal {
        let scan = WalScan::run(dir, fs.as_ref(), &dir.join("q")).unwrap();
        Wal::open(dir, fs, max, &scan)
    }

    #[test]
    fn append_read_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(3);
        let mut wal = open(dir.path(), Arc::new(StdFs), 1);
        wal.append(&[(1, Table::MarketContext, &b), (2, Table::MarketContext, &b)])
            .unwrap();
        wal.append(&[(3, Table::MarketContext, &b)]).unwrap();
        assert_eq!(read_all(dir.path()), vec![(1, 3), (2, 3), (3, 3)]);
        assert_eq!(wal.segment_count(), 2);
        wal.delete_through(2).unwrap();
        assert_eq!(wal.segment_count(), 1);
        assert_eq!(read_all(dir.path()), vec![(3, 3)]);
    }

    #[test]
    fn an_empty_segment_at_the_next_name_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2);
        let mut wal = open(dir.path(), Arc::new(StdFs), u64::MAX);
        wal.append(&[(1, Table::MarketContext, &b)]).unwrap();
        drop(wal);
        // A crash between creating the next segment and writing to it, in the
        // old naming scheme and the new one.
        std::fs::write(dir.path().join("00000000000000000002.wal"), b"").unwrap();
        std::fs::write(dir.path().join(segment::segment_name(2)), b"").unwrap();
        let mut wal = open(dir.path(), Arc::new(StdFs), u64::MAX);
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap();
        wal.append(&[(3, Table::MarketContext, &b)]).unwrap();
        // Cleanup of what the first segment held must not touch the live one.
        wal.delete_through(1).unwrap();
        assert_eq!(read_all(dir.path()), vec![(2, 2), (3, 2)]);
        drop(wal);
        assert_eq!(read_all(dir.path()), vec![(2, 2), (3, 2)]);
    }

    #[test]
    fn a_torn_tail_is_skipped_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(5);
        let mut wal = open(dir.path(), Arc::new(StdFs), u64::MAX);
        wal.append(&[(1, Table::MarketContext, &b)]).unwrap();
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap();
        drop(wal);
        let seg = segment::list(dir.path()).unwrap().remove(0);
        let len = std::fs::metadata(&seg.path).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .unwrap();
        f.set_len(len - 7).unwrap();
        assert_eq!(read_all(dir.path()), vec![(1, 5)]);
        // Appending after the torn record works; the old bytes stay.
        let mut wal = open(dir.path(), Arc::new(StdFs), u64::MAX);
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap();
        assert_eq!(read_all(dir.path()), vec![(1, 5), (2, 5)]);
        assert_eq!(std::fs::metadata(&seg.path).unwrap().len(), len - 7);
    }

    #[test]
    fn a_flipped_byte_costs_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2);
        let mut wal = open(dir.path(), Arc::new(StdFs), u64::MAX);
        wal.append(&[
            (1, Table::MarketContext, &b),
            (2, Table::MarketContext, &b),
            (3, Table::MarketContext, &b),
        ])
        .unwrap();
        drop(wal);
        let seg = segment::list(dir.path()).unwrap().remove(0);
        let mut bytes = std::fs::read(&seg.path).unwrap();
        let one = bytes.len() / 3;
        bytes[one + 30] ^= 0xff;
        std::fs::write(&seg.path, bytes).unwrap();
        assert_eq!(read_all(dir.path()), vec![(1, 2), (3, 2)]);
    }

    #[test]
    fn a_failed_fsync_moves_on_to_a_new_segment_and_never_touches_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        std::fs::create_dir(&dir).unwrap();
        let ffs = FaultFs::new(&dir, &tmp.path().join("graves"), FaultConfig::default()).unwrap();
        ffs.add_fault(Fault::once(Op::SyncFile, ".wal", 2, Errno::Io));
        let b = batch(2);
        let mut wal = open(&dir, Arc::new(ffs.clone()), u64::MAX);
        wal.append(&[(1, Table::MarketContext, &b)]).unwrap();
        wal.append(&[(2, Table::MarketContext, &b)]).unwrap(); // fails once, retried
        wal.append(&[(3, Table::MarketContext, &b)]).unwrap();
        assert!(ffs.violations().is_empty(), "{:?}", ffs.violations());
        assert_eq!(wal.segment_count(), 2);
        ffs.power_loss().unwrap();
        assert_eq!(read_all(&dir), vec![(1, 2), (2, 2), (3, 2)]);
    }
}
