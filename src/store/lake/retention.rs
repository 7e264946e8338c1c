//! Lake retention: whole day partitions of a table removed once they are
//! older than its policy, as one lake commit, their files deleted after a
//! grace, every removal logged and recorded ([`deletions`](super::deletions)).
//!
//! # The rule
//!
//! A table with a policy of `N` days (`[retention] lake_days`; a table
//! without one keeps everything forever):
//!
//! ```text
//! newest    = the largest ts of the table in the lake's committed files
//!             (their footers' statistics) and in the hot store
//! reference = min(now, newest)          now: the store's Clock
//! cutoff    = reference - N * 24 h
//! keep_from = the UTC date of cutoff
//! day D (every symbol) is removed  <=>  D < keep_from
//!                                  <=>  D + 1 day at 00:00 UTC <= cutoff
//! ```
//!
//! That is, a day goes once its whole span, up to its last microsecond, is
//! older than the cutoff: with `cutoff = 2026-03-10T00:00:00Z` the day
//! 2026-03-09 goes; with one microsecond less it stays.
//!
//! **Why min(now, newest)** (QuestDB's rule for its TTL): measured from the
//! newest event alone, one row dated in the future would move the cutoff
//! past every real day and wipe the table; measured from now alone, a bot
//! that stopped logging would see its last days expire while it is idle.
//! The minimum does neither: a future-dated row leaves the reference at now,
//! and an idle table keeps its last `N` days. A table with no row at all has
//! no reference and loses nothing.
//!
//! **What is never removed.** Only whole committed day partitions: no row is
//! deleted from a Parquet file. Nothing above `lake_seq` (rows still in the
//! WAL, pending in the lake thread or only in the hot store: a late row for
//! an expired day reaches the lake with the next roll and goes at the next
//! pass). No pass runs while `holes_clear` is false: until the lake has been
//! checked whole against the hot store, the hole check may still be writing
//! rows back, and what it writes must be judged with the rest (compaction
//! waits for it for the same reason). Nothing while the log is poisoned.
//!
//! **The removal.** First the hot store's copies of the expired days (rows
//! at or below `lake_seq`, which its own window would prune anyway) are
//! deleted, so `hot.*` never shows a row `events.*` no longer has. Then one
//! commit with `CommitOp::Retention` removes every
//! expired file of every table at once and records each table's `keep_from`
//! in the log (it only moves forward): readers of `events.*` stop seeing the
//! files atomically, and the hole check never writes an expired day back
//! from the hot store. The files stay on disk for `lake.retired_file_grace`
//! (the same grace as compacted files, for the same reason: a query planned
//! on the older snapshot may still read them), then are deleted; a restart
//! deletes them at once (recovery deletes files a retention commit
//! tombstoned). Before the commit, each file is written to the deletion
//! history as pending; after it, committed; after the delete, its
//! `deleted_ts` is set; a start reconciles pending entries with the log.
//!
//! **The hot store** keeps its own window (`hot.retention`) from the same
//! clock, measured from now (see [`crate::store::hot::window_cutoff`]). A lake
//! policy must be longer than that window (the config refuses otherwise), so
//! a removed day is one the hot store has pruned or is about to.
//!
//! **When.** The lake thread runs a pass when it starts and then every
//! `check_interval` (default 1 h); `quiver retention` runs one on request, or
//! only plans it (`--dry-run`, also `system.retention_plan` at scan time).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;

use super::{LakeError, LakeFile};
use crate::event::{Table, Ts};
use crate::store::hot::{HotShared, window_cutoff};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The longest policy: 100 years.
pub const LAKE_DAYS_MAX: u32 = 36_525;

/// Each table's policy and how the lake thread applies them (the file form
/// is `config::RetentionSection`, which validates into this).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Whole days each table's lake keeps; a table not here keeps everything.
    pub lake_days: BTreeMap<Table, u32>,
    /// Time between two passes of the lake thread. Default 1 h.
    pub check_interval: Duration,
    /// Deletion records kept in the history; the oldest finished ones go
    /// beyond it. Default 100 000.
    pub history_max: u64,
    /// Whether the lake thread runs passes on its own. `quiver retention`
    /// turns it off and runs (or only plans) one itself.
    pub automatic: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            lake_days: BTreeMap::new(),
            check_interval: Duration::from_secs(3600),
            history_max: 100_000,
            automatic: true,
        }
    }
}

/// `reference - days`.
pub fn cutoff(reference: Ts, days: u32) -> Ts {
    Ts(reference
        .0
        .saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY)))
}

/// The first day kept under `cutoff`: the UTC date the cutoff falls on.
pub fn keep_from(cutoff: Ts) -> NaiveDate {
    super::partition::date_of_day(cutoff.0.div_euclid(MICROS_PER_DAY))
}

/// Whether day `date` is removed under `cutoff` (its whole span is older).
pub fn expired(date: NaiveDate, cutoff: Ts) -> bool {
    date < keep_from(cutoff)
}

/// The reference: min(now, newest), or none for a table without rows.
pub fn reference(now: Ts, newest: Option<Ts>) -> Option<Ts> {
    newest.map(|n| n.min(now))
}

/// The expired files of one day of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct DayPlan {
    pub date: NaiveDate,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// What a pass does (or would do) to one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    pub table: Table,
    /// The policy; `None`: kept forever.
    pub lake_days: Option<u32>,
    pub newest: Option<Ts>,
    pub reference: Option<Ts>,
    pub cutoff: Option<Ts>,
    pub keep_from: Option<NaiveDate>,
    /// The days that go, oldest first.
    pub days: Vec<DayPlan>,
    /// The hot window's cutoff, and the rows past it that its next pruning
    /// deletes (those already in the lake).
    pub hot_cutoff: Ts,
    pub hot_rows_past_window: u64,
}

impl TablePlan {
    pub fn files(&self) -> u64 {
        self.days.iter().map(|d| d.files).sum()
    }
    pub fn rows(&self) -> u64 {
        self.days.iter().map(|d| d.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.days.iter().map(|d| d.bytes).sum()
    }
}

/// A pass over every table.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPlan {
    pub now: Ts,
    /// The lake version planned against.
    pub version: u64,
    /// Why no pass may run now (`holes_clear` false), if so.
    pub blocked: Option<String>,
    pub tables: Vec<TablePlan>,
}

impl RetentionPlan {
    pub fn files(&self) -> u64 {
        self.tables.iter().map(TablePlan::files).sum()
    }
}

/// The part of a table's plan that reads nothing: its days to go, given its
/// newest row. `files` are the lake's committed files (any table).
pub fn plan_table(
    table: Table,
    lake_days: Option<u32>,
    newest: Option<Ts>,
    now: Ts,
    files: &[LakeFile],
) -> TablePlan {
    let reference = lake_days.and_then(|_| reference(now, newest));
    let cut = reference.zip(lake_days).map(|(r, d)| cutoff(r, d));
    let mut days: BTreeMap<NaiveDate, DayPlan> = BTreeMap::new();
    if let Some(cut) = cut {
        for f in files
            .iter()
            .filter(|f| f.table == table && expired(f.date, cut))
        {
            let day = days.entry(f.date).or_insert(DayPlan {
                date: f.date,
                files: 0,
                rows: 0,
                bytes: 0,
            });
            day.files += 1;
            day.rows += f.rows;
            day.bytes += f.bytes;
        }
    }
    TablePlan {
        table,
        lake_days,
        newest,
        reference,
        cutoff: cut,
        keep_from: cut.map(keep_from),
        days: days.into_values().collect(),
        hot_cutoff: Ts(0),
        hot_rows_past_window: 0,
    }
}

/// The newest ts of `table` in the lake's committed files and the hot store.
/// The lake's is read from the footers of its newest day's files; a file
/// without statistics counts as the start of its day (earlier, so never a
/// later cutoff than the truth).
pub fn newest(table: Table, files: &[LakeFile], hot: &HotShared) -> Result<Option<Ts>, LakeError> {
    let mut newest = hot
        .ts_max(table)
        .map_err(|e| LakeError::Hot(Box::new(e)))?
        .map(Ts);
    let last_day = files
        .iter()
        .filter(|f| f.table == table)
        .map(|f| f.date)
        .max();
    if let Some(day) = last_day {
        for f in files.iter().filter(|f| f.table == table && f.date == day) {
            let start = i64::from(super::partition::day_of_date(day)) * MICROS_PER_DAY;
            let ts = super::parquet::ts_max(&f.path)?.unwrap_or(start);
            newest = Some(newest.map_or(Ts(ts), |n| n.max(Ts(ts))));
        }
    }
    Ok(newest)
}

/// What the lake, the hot store and the clock say a pass would do now.
pub struct PlanInputs<'a> {
    pub config: &'a RetentionConfig,
    pub hot_window: Duration,
    pub now: Ts,
    pub files: &'a [LakeFile],
    pub lake_seq: u64,
    pub version: u64,
    pub holes_clear: bool,
    pub hot: &'a HotShared,
}

/// Plans a pass over every table (reads footers and the hot store; changes
/// nothing).
pub fn plan(inputs: &PlanInputs<'_>) -> Result<RetentionPlan, LakeError> {
    let hot_cutoff = window_cutoff(inputs.now, inputs.hot_window);
    let mut tables = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        let days = inputs.config.lake_days.get(table).copied();
        let newest = match days {
            Some(_) => newest(*table, inputs.files, inputs.hot)?,
            None => None,
        };
        let mut plan = plan_table(*table, days, newest, inputs.now, inputs.files);
        plan.hot_cutoff = hot_cutoff;
        plan.hot_rows_past_window = if inputs.holes_clear {
            inputs
                .hot
                .rows_before(*table, hot_cutoff.0, inputs.lake_seq)
                .map_err(|e| LakeError::Hot(Box::new(e)))?
        } else {
            0
        };
        tables.push(plan);
    }
    Ok(RetentionPlan {
        now: inputs.now,
        version: inputs.version,
        blocked: (!inputs.holes_clear).then(|| {
            "the lake has not yet been checked whole against the hot store (holes_clear is \
             false); no retention pass runs until it has"
                .to_string()
        }),
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn at(s: &str) -> Ts {
        Ts(chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros())
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn file(table: Table, date: &str, rows: u64) -> LakeFile {
        LakeFile {
            table,
            date: day(date),
            symbol: "BTC".into(),
            path: PathBuf::from(format!("/l/{date}/{rows}.parquet")),
            bytes: rows * 10,
            rows,
            seq_from: 1,
            seq_to: 1,
        }
    }

    /// A day goes exactly when its end is at or before the cutoff.
    #[test]
    fn a_day_goes_once_its_last_microsecond_is_older_than_the_cutoff() {
        let d = day("2026-03-09");
        assert!(expired(d, at("2026-03-10T00:00:00Z")));
        assert!(!expired(d, Ts(at("2026-03-10T00:00:00Z").0 - 1)));
        assert!(expired(d, at("2026-03-10T23:59:59Z")));
        assert!(!expired(
            day("2026-03-10"),
            at("2026-03-10T23:59:59.999999Z")
        ));
        assert_eq!(keep_from(at("2026-03-10T05:00:00Z")), day("2026-03-10"));
        // Before the epoch the date still floors.
        assert_eq!(keep_from(Ts(-1)), day("1969-12-31"));
    }

    #[test]
    fn the_cutoff_is_the_reference_minus_whole_days() {
        assert_eq!(
            cutoff(at("2026-03-10T12:00:00Z"), 3),
            at("2026-03-07T12:00:00Z")
        );
        assert_eq!(cutoff(Ts(i64::MIN + 5), 3), Ts(i64::MIN));
    }

    /// min(now, newest): a future row leaves the reference at now; an idle
    /// table is measured from its last row; no row, no reference.
    #[test]
    fn the_reference_is_the_earlier_of_now_and_the_newest_row() {
        let now = at("2026-03-10T00:00:00Z");
        assert_eq!(reference(now, Some(at("2030-01-01T00:00:00Z"))), Some(now));
        let idle = at("2026-02-01T00:00:00Z");
        assert_eq!(reference(now, Some(idle)), Some(idle));
        assert_eq!(reference(now, None), None);
    }

    #[test]
    fn a_plan_lists_whole_days_on_each_side_of_the_boundary() {
        let files = [
            file(Table::MarketContext, "2026-03-06", 5),
            file(Table::MarketContext, "2026-03-06", 7),
            file(Table::MarketContext, "2026-03-07", 11),
            file(Table::Signal, "2026-03-01", 13),
        ];
        // cutoff = 03-10T00:00 - 3 days = 03-07T00:00: 03-06 goes, 03-07 stays.
        let newest = Some(at("2026-03-10T00:00:00Z"));
        let now = at("2026-03-11T00:00:00Z");
        let p = plan_table(Table::MarketContext, Some(3), newest, now, &files);
        assert_eq!(p.keep_from, Some(day("2026-03-07")));
        assert_eq!(
            p.days,
            vec![DayPlan {
                date: day("2026-03-06"),
                files: 2,
                rows: 12,
                bytes: 120
            }]
        );
        // One microsecond earlier, 03-06 is not yet wholly older.
        let p = plan_table(
            Table::MarketContext,
            Some(3),
            Some(Ts(at("2026-03-10T00:00:00Z").0 - 1)),
            now,
            &files,
        );
        assert!(p.days.is_empty(), "{p:?}");
        // Without a policy, nothing goes and nothing is computed.
        let p = plan_table(Table::Signal, None, newest, now, &files);
        assert!(p.days.is_empty() && p.reference.is_none());
    }
}
