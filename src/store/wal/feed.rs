//! How consumers (the hot store, the lake, the journal) read the WAL without
//! ever holding the writer back.
//!
//! The writer [`WalFeed::publish`]es each durable write: the records go into a
//! ring of recent records bounded in bytes (`bytes_max`; the oldest fall out) and
//! `durable_seq` moves on. Publishing takes a short lock and never waits for a
//! consumer. Each consumer owns a [`WalCursor`] at the next sequence it needs:
//! while that sequence is still in the ring it is served from memory, and once
//! the consumer has fallen behind the ring it is read back from the segment
//! files (which are kept until every consumer holds them), until the cursor
//! catches up with the ring again. A slow consumer is therefore lag, never
//! back-pressure.
//!
//! A sequence number that is durable but found nowhere in the WAL (a corrupt
//! record, or segments lost from disk) comes back as [`Fetched::Gap`], so the
//! consumer can fill it from elsewhere or report it; it is never skipped
//! silently.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::segment::{self, SegmentFile, SegmentReader};
use super::{WalError, WalRecord};

struct Inner {
    recent: VecDeque<WalRecord>,
    recent_bytes: usize,
    durable_seq: u64,
    closed: bool,
}

/// The durable end of the WAL and its recent records. See the module docs.
pub struct WalFeed {
    dir: PathBuf,
    bytes_max: usize,
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl std::fmt::Debug for WalFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalFeed")
            .field("dir", &self.dir)
            .field("durable_seq", &self.durable_seq())
            .finish()
    }
}

impl WalFeed {
    /// A feed whose durable end is `durable_seq` (what the WAL and the consumers
    /// already hold), reading older records from the segments in `dir`.
    pub fn new(dir: &Path, durable_seq: u64, bytes_max: usize) -> Arc<Self> {
        Arc::new(Self {
            dir: dir.to_path_buf(),
            bytes_max,
            inner: Mutex::new(Inner {
                recent: VecDeque::new(),
                recent_bytes: 0,
                durable_seq,
                closed: false,
            }),
            cond: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records just made durable, in sequence order, continuing from the
    /// durable end. Never blocks on a consumer.
    pub fn publish(&self, records: impl IntoIterator<Item = WalRecord>) {
        let mut inner = self.lock();
        for record in records {
            if record.seq <= inner.durable_seq {
                continue;
            }
            inner.durable_seq = record.seq;
            inner.recent_bytes += record.batch.get_array_memory_size();
            inner.recent.push_back(record);
        }
        while inner.recent_bytes > self.bytes_max
            && let Some(old) = inner.recent.pop_front()
        {
            inner.recent_bytes -= old.batch.get_array_memory_size();
        }
        drop(inner);
        self.cond.notify_all();
    }

    pub fn durable_seq(&self) -> u64 {
        self.lock().durable_seq
    }

    /// Bytes of batches held in memory for consumers.
    pub fn recent_bytes(&self) -> usize {
        self.lock().recent_bytes
    }

    /// No more records will come: cursors drain what is durable, then report
    /// [`Fetched::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.cond.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Wakes every consumer waiting in [`WalCursor::fetch`] (for a request that
    /// is not a record, such as a lake roll).
    pub fn wake(&self) {
        self.cond.notify_all();
    }

    /// A cursor whose first record will be `next`.
    pub fn cursor(self: &Arc<Self>, next: u64) -> WalCursor {
        WalCursor {
            feed: self.clone(),
            next,
            reader: None,
        }
    }
}

/// What [`WalCursor::fetch`] found.
#[derive(Debug)]
pub enum Fetched {
    /// The next records, consecutive, starting at the cursor's position.
    Records(Vec<WalRecord>),
    /// Durable sequences `from..=to` are in no WAL segment; the cursor has moved
    /// past them.
    Gap { from: u64, to: u64 },
    /// Nothing new within the wait.
    Idle,
    /// The feed is closed and everything durable has been read.
    Closed,
}

struct FileReader {
    segment: SegmentFile,
    reader: SegmentReader,
    /// A record read past the range asked for, served next.
    pending: Option<WalRecord>,
}

/// One consumer's position in the WAL.
pub struct WalCursor {
    feed: Arc<WalFeed>,
    next: u64,
    reader: Option<FileReader>,
}

impl WalCursor {
    /// The sequence the next record will have.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn feed(&self) -> &Arc<WalFeed> {
        &self.feed
    }

    /// Up to `max_records` records from the cursor on, waiting up to `wait`
    /// for one to become durable.
    pub fn fetch(&mut self, max_records: usize, wait: Duration) -> Result<Fetched, WalError> {
        let max_records = max_records.max(1);
        let feed = self.feed.clone();
        let mut inner = feed.lock();
        if inner.durable_seq < self.next && !inner.closed && !wait.is_zero() {
            inner = match feed.cond.wait_timeout(inner, wait) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if inner.durable_seq < self.next {
            return Ok(if inner.closed {
                Fetched::Closed
            } else {
                Fetched::Idle
            });
        }
        let durable = inner.durable_seq;
        let ring_front = inner.recent.front().map(|r| r.seq);
        if let Some(front) = ring_front
            && front <= self.next
        {
            let start = (self.next - front) as usize;
            let out: Vec<WalRecord> = inner
                .recent
                .iter()
                .skip(start)
                .take(max_records)
                .cloned()
                .collect();
            self.next += out.len() as u64;
            self.reader = None;
            return Ok(Fetched::Records(out));
        }
        drop(inner);
        // Behind the ring: read the files up to where the ring starts.
        let upto = ring_front.map_or(durable, |f| f - 1).min(durable);
        self.read_files(max_records, upto)
    }

    fn read_files(&mut self, max_records: usize, upto: u64) -> Result<Fetched, WalError> {
        let mut out: Vec<WalRecord> = Vec::new();
        while out.len() < max_records && self.next <= upto {
            let record = self.next_from_files()?;
            let found = match &record {
                Some(r) if r.seq < self.next => continue,
                Some(r) if r.seq == self.next => true,
                _ => false,
            };
            if found {
                self.next += 1;
                out.extend(record);
                continue;
            }
            // `next` is not where the files' order says it should be: the
            // records from `next` to the one found (or to `upto`) are missing.
            if let Some(r) = record {
                self.hold(r);
            }
            if !out.is_empty() {
                break;
            }
            // Before calling it a gap, look in every segment that could hold
            // it (a failed segment and its retry share a first sequence).
            if let Some(r) = self.scan_all_for(self.next)? {
                self.next += 1;
                out.push(r);
                continue;
            }
            let from = self.next;
            let to = self.held_seq().map_or(upto, |s| (s - 1).min(upto));
            self.next = to + 1;
            return Ok(Fetched::Gap { from, to });
        }
        Ok(if out.is_empty() {
            Fetched::Idle
        } else {
            Fetched::Records(out)
        })
    }

    fn held_seq(&self) -> Option<u64> {
        self.reader.as_ref()?.pending.as_ref().map(|r| r.seq)
    }

    /// The record `seq` from any segment opened at or before it; the cursor
    /// reads on from there if found.
    fn scan_all_for(&mut self, seq: u64) -> Result<Option<WalRecord>, WalError> {
        for seg in segment::list(&self.feed.dir)? {
            if seg.first_seq > seq {
                break;
            }
            let mut reader = SegmentReader::open(&seg.path)?;
            while let Some(r) = reader.next(&|| false)? {
                if r.seq == seq {
                    self.reader = Some(FileReader {
                        segment: seg,
                        reader,
                        pending: None,
                    });
                    return Ok(Some(r));
                }
                if r.seq > seq {
                    break;
                }
            }
        }
        Ok(None)
    }

    fn hold(&mut self, record: WalRecord) {
        if let Some(r) = self.reader.as_mut() {
            r.pending = Some(record);
        }
    }

    /// The next record in file order at or after the cursor, moving from
    /// segment to segment.
    fn next_from_files(&mut self) -> Result<Option<WalRecord>, WalError> {
        loop {
            if self.reader.is_none() {
                let segments = segment::list(&self.feed.dir)?;
                // The last segment opened for a sequence at or before `next`
                // holds it, unless that segment failed; then a later one does.
                let start = segments
                    .iter()
                    .rposition(|s| s.first_seq <= self.next)
                    .unwrap_or(0);
                let Some(first) = segments.get(start) else {
                    return Ok(None);
                };
                self.reader = Some(FileReader {
                    segment: first.clone(),
                    reader: SegmentReader::open(&first.path)?,
                    pending: None,
                });
            }
            let Some(r) = self.reader.as_mut() else {
                return Ok(None);
            };
            if let Some(rec) = r.pending.take() {
                return Ok(Some(rec));
            }
            let dir = &self.feed.dir;
            let current = &r.segment;
            let is_live = || {
                segment::list(dir)
                    .map(|segs| segs.last() == Some(current))
                    .unwrap_or(true)
            };
            if let Some(rec) = r.reader.next(&is_live)? {
                return Ok(Some(rec));
            }
            // The end of this segment: on to the next one, if there is one.
            let segments = segment::list(&self.feed.dir)?;
            let Some(after) = segments.iter().find(|s| **s > r.segment).cloned() else {
                return Ok(None);
            };
            r.reader = SegmentReader::open(&after.path)?;
            r.segment = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Table;
    use crate::store::fsio::StdFs;
    use crate::store::wal::tests::batch;
    use crate::store::wal::{Wal, WalScan};

    /// A WAL over an empty dir, with segments of `segment_bytes_max`.
    fn open_wal(dir: &Path, segment_bytes_max: u64) -> Wal {
        let scan = WalScan::run(dir, &StdFs, &dir.join("q")).unwrap();
        Wal::open(dir, Arc::new(StdFs), segment_bytes_max, &scan)
    }

    fn records(wal: &mut Wal, feed: &WalFeed, seqs: std::ops::RangeInclusive<u64>) {
        let b = batch(10);
        let rs: Vec<(u64, Table, &arrow::array::RecordBatch)> = seqs
            .clone()
            .map(|s| (s, Table::MarketContext, &b))
            .collect();
        wal.append(&rs).unwrap();
        feed.publish(seqs.map(|seq| WalRecord {
            seq,
            table: Table::MarketContext,
            batch: b.clone(),
        }));
    }

    fn drain(cursor: &mut WalCursor) -> (Vec<u64>, Vec<(u64, u64)>) {
        let (mut seqs, mut gaps) = (Vec::new(), Vec::new());
        loop {
            match cursor.fetch(7, Duration::ZERO).unwrap() {
                Fetched::Records(rs) => seqs.extend(rs.iter().map(|r| r.seq)),
                Fetched::Gap { from, to } => gaps.push((from, to)),
                Fetched::Idle | Fetched::Closed => return (seqs, gaps),
            }
        }
    }

    #[test]
    fn a_consumer_behind_the_ring_reads_the_files_then_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = open_wal(dir.path(), 4096);
        // A ring that holds only a few batches.
        let one = batch(10).get_array_memory_size();
        let feed = WalFeed::new(dir.path(), 0, one * 5);
        let mut slow = feed.cursor(1);
        records(&mut wal, &feed, 1..=40);
        records(&mut wal, &feed, 41..=45);
        let (seqs, gaps) = drain(&mut slow);
        assert_eq!(seqs, (1..=45).collect::<Vec<_>>());
        assert!(gaps.is_empty());
        records(&mut wal, &feed, 46..=46);
        assert_eq!(drain(&mut slow).0, vec![46]);
    }

    #[test]
    fn a_missing_range_is_reported_as_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = open_wal(dir.path(), 1);
        let feed = WalFeed::new(dir.path(), 0, 0);
        records(&mut wal, &feed, 1..=3);
        records(&mut wal, &feed, 4..=6);
        records(&mut wal, &feed, 7..=9);
        // Lose the middle segment.
        let segs = segment::list(dir.path()).unwrap();
        std::fs::remove_file(&segs[1].path).unwrap();
        let mut cursor = feed.cursor(2);
        assert_eq!(drain(&mut cursor), (vec![2, 3, 7, 8, 9], vec![(4, 6)]));
        // Everything durable but nothing on disk: one gap up to the end.
        let feed = WalFeed::new(&dir.path().join("nothing"), 12, 0);
        let mut cursor = feed.cursor(10);
        assert_eq!(drain(&mut cursor), (vec![], vec![(10, 12)]));
    }

    #[test]
    fn a_record_missing_just_before_the_ring_is_a_gap_not_a_stall() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = open_wal(dir.path(), 1);
        let one = batch(10).get_array_memory_size();
        let feed = WalFeed::new(dir.path(), 0, one * 4);
        records(&mut wal, &feed, 1..=3);
        records(&mut wal, &feed, 4..=4);
        records(&mut wal, &feed, 5..=8); // the ring now starts at 5
        let segs = segment::list(dir.path()).unwrap();
        std::fs::remove_file(&segs[1].path).unwrap();
        let mut cursor = feed.cursor(1);
        assert_eq!(
            drain(&mut cursor),
            ((1..=8).filter(|s| *s != 4).collect(), vec![(4, 4)])
        );
    }

    #[test]
    fn a_closed_feed_drains_then_says_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = open_wal(dir.path(), 1 << 20);
        let feed = WalFeed::new(dir.path(), 0, 1 << 20);
        let mut cursor = feed.cursor(1);
        records(&mut wal, &feed, 1..=2);
        feed.close();
        assert!(
            matches!(cursor.fetch(10, Duration::ZERO).unwrap(), Fetched::Records(r) if r.len() == 2)
        );
        assert!(matches!(
            cursor.fetch(10, Duration::from_millis(5)).unwrap(),
            Fetched::Closed
        ));
    }
}
