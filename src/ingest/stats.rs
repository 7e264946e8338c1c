//! Counters the logger and writer keep, shared with readers through atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::event::{Level, Table};

/// The number of event tables.
pub(crate) const TABLES: usize = Table::ALL.len();

/// One counter per level, DEBUG..CRITICAL. Aligned to its own cache lines so
/// producers bumping it do not contend with the writer's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LevelCounters([AtomicU64; 5]);

impl LevelCounters {
    pub(crate) fn incr(&self, level: Level) {
        self.0[level.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LevelCounts {
        LevelCounts(std::array::from_fn(|i| self.0[i].load(Relaxed)))
    }
}

/// Per-level counts, indexed by [`Level::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelCounts(pub [u64; 5]);

impl LevelCounts {
    pub fn get(&self, level: Level) -> u64 {
        self.0[level.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: LevelCounters,
    pub(crate) rejected_invalid: LevelCounters,
    pub(crate) dropped_debug_shed: AtomicU64,
    pub(crate) dropped_kill_switch: LevelCounters,
    pub(crate) dropped_queue_full: LevelCounters,
    pub(crate) dropped_closed: LevelCounters,
    pub(crate) overflow_accepted: AtomicU64,
    pub(crate) kill_switch_trips: AtomicU64,
    /// Rows that came through [`Logger::ingest`](super::Logger::ingest).
    pub(crate) ingest_accepted: AtomicU64,
    pub(crate) writer: WriterCounters,
}

/// Counters only the writer thread updates, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WriterCounters {
    pub(crate) batches_written: AtomicU64,
    pub(crate) rows_written: AtomicU64,
    /// `rows_written` by table, indexed by [`Table::index`](crate::event::Table::index).
    pub(crate) rows_written_by_table: [AtomicU64; TABLES],
    pub(crate) write_errors: AtomicU64,
    /// Wall-clock time of the last successful write, µs since the epoch (0: never).
    pub(crate) last_write_us: AtomicI64,
}

/// A point-in-time copy of the logger's state, for `system.*` and the API.
#[derive(Debug, Clone, Default)]
pub struct LoggerStats {
    pub queue_len: usize,
    pub overflow_len: usize,
    pub queue_capacity: usize,
    /// Network ingest rows waiting in their own lane (not in `queue_len`).
    pub ingest_queue_len: usize,
    pub ingest_queue_capacity: usize,
    /// Rows taken through the network lane; `accepted` counts them too.
    pub ingest_accepted: u64,
    pub accepted: LevelCounts,
    pub rejected_invalid: LevelCounts,
    pub dropped_debug_shed: u64,
    pub dropped_kill_switch: LevelCounts,
    pub dropped_queue_full: LevelCounts,
    pub dropped_closed: LevelCounts,
    pub overflow_accepted: u64,
    pub kill_switch_tripped: bool,
    pub kill_switch_trips: u64,
    /// When the kill switch last tripped, µs since the epoch.
    pub kill_switch_tripped_at_us: Option<i64>,
    pub batches_written: u64,
    pub rows_written: u64,
    /// `rows_written` by table, indexed by [`Table::index`](crate::event::Table::index).
    pub rows_written_by_table: [u64; TABLES],
    pub write_errors: u64,
    pub last_write_us: Option<i64>,
}

impl LoggerStats {
    /// Queue fill as a fraction of capacity.
    pub fn fill(&self) -> f64 {
        self.queue_len as f64 / self.queue_capacity.max(1) as f64
    }

    /// Everything dropped, at every level, for any reason but validation.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_debug_shed
            + self.dropped_kill_switch.total()
            + self.dropped_queue_full.total()
            + self.dropped_closed.total()
    }

    /// Drops of one level for any reason but validation.
    pub fn dropped(&self, level: Level) -> u64 {
        let shed = if level == Level::Debug {
            self.dropped_debug_shed
        } else {
            0
        };
        shed + self.dropped_kill_switch.get(level)
            + self.dropped_queue_full.get(level)
            + self.dropped_closed.get(level)
    }
}
