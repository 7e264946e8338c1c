//! The retention history, `<data>/retention.sqlite`: one row per lake file
//! retention removed, read as `system.retention_deletions`.
//!
//! It lives beside the lake, not in its commit log, because the log forgets:
//! a checkpoint drops the commits it covers and the tombstones of files gone
//! from disk. SQLite (WAL mode, `synchronous=FULL`, `BEGIN IMMEDIATE`; see
//! [`crate::store::sqlite`]) makes each step durable:
//!
//! 1. before the retention commit, every file it will remove is written as
//!    `pending`, with the version the commit will get;
//! 2. after the commit, that version's rows become `committed` (`removed_ts`);
//! 3. once a file has left the disk, its `deleted_ts` is set.
//!
//! A start reconciles what a crash interrupted ([`DeletionLog::reconcile`]):
//! a pending row whose file the log still names was never committed and is
//! dropped; any other pending row was committed. The history keeps the
//! newest `history_max` rows; older ones go once their file is deleted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use rusqlite::Connection;

use super::log::LakeState;
use crate::store::sqlite::{self, Migration, SqliteError};

/// The table `system.retention_deletions` reads.
pub const DELETIONS_TABLE: &str = "retention_deletions";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "-- Read by sqlite::relations (every column here declares its type).
          CREATE TABLE _quiver_column_types (relation TEXT, column TEXT, type TEXT);
          CREATE TABLE retention_deletions (
              id INTEGER PRIMARY KEY,
              table_name TEXT NOT NULL,
              date TEXT NOT NULL,
              symbol TEXT NOT NULL,
              path TEXT NOT NULL,
              rows INTEGER NOT NULL,
              bytes INTEGER NOT NULL,
              lake_days INTEGER NOT NULL,
              reference_ts INTEGER NOT NULL,
              cutoff_ts INTEGER NOT NULL,
              commit_version INTEGER NOT NULL,
              state TEXT NOT NULL,
              removed_ts INTEGER,
              deleted_ts INTEGER
          );
          CREATE INDEX retention_deletions_path ON retention_deletions (path);
          CREATE INDEX retention_deletions_version ON retention_deletions (commit_version);",
}];

/// How long a write waits for the lock (only the lake thread writes).
const WRITE_WAIT_MAX: Duration = Duration::from_secs(30);

/// One file a retention commit removes.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub table: String,
    pub date: NaiveDate,
    pub symbol: String,
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
    pub lake_days: u32,
    pub reference_us: i64,
    pub cutoff_us: i64,
    pub version: u64,
}

/// The history, open for writing by the lake thread.
pub struct DeletionLog {
    conn: Connection,
    path: PathBuf,
    history_max: u64,
}

impl std::fmt::Debug for DeletionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeletionLog")
            .field("path", &self.path)
            .finish()
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl DeletionLog {
    /// Opens (creating and migrating) the history at `path`.
    pub fn open(path: &Path, history_max: u64) -> Result<Self, SqliteError> {
        Ok(Self {
            conn: sqlite::open_rw(path, MIGRATIONS)?,
            path: path.to_path_buf(),
            history_max: history_max.max(1),
        })
    }

    fn write<T>(
        &mut self,
        f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, SqliteError> {
        let path = self.path.clone();
        sqlite::write(&mut self.conn, &path, WRITE_WAIT_MAX, |_| {}, f)
    }

    /// Step 1: the files a commit is about to remove.
    pub fn add_pending(&mut self, rows: &[Deletion]) -> Result<(), SqliteError> {
        self.write(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO retention_deletions (table_name, date, symbol, path, rows, bytes, \
                 lake_days, reference_ts, cutoff_ts, commit_version, state) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            )?;
            for d in rows {
                stmt.execute(rusqlite::params![
                    d.table,
                    d.date.format("%Y-%m-%d").to_string(),
                    d.symbol,
                    d.path.to_string_lossy(),
                    i64_of(d.rows),
                    i64_of(d.bytes),
                    i64::from(d.lake_days),
                    d.reference_us,
                    d.cutoff_us,
                    i64_of(d.version),
                ])?;
            }
            Ok(())
        })
    }

    /// Step 2: the commit of `version` is durable.
    pub fn committed(&mut self, version: u64, at_us: i64) -> Result<(), SqliteError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE retention_deletions SET state = 'committed', removed_ts = ? \
                 WHERE commit_version = ? AND state = 'pending'",
                rusqlite::params![at_us, i64_of(version)],
            )
        })?;
        self.prune()
    }

    /// The commit of `version` did not happen: forget its pending rows.
    pub fn discard(&mut self, version: u64) -> Result<(), SqliteError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM retention_deletions WHERE commit_version = ? AND state = 'pending'",
                [i64_of(version)],
            )
        })
        .map(|_| ())
    }

    /// Step 3: `path` has left the disk.
    pub fn deleted(&mut self, paths: &[PathBuf], at_us: i64) -> Result<(), SqliteError> {
        if paths.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare(
                "UPDATE retention_deletions SET deleted_ts = ? \
                 WHERE path = ? AND deleted_ts IS NULL AND state = 'committed'",
            )?;
            for p in paths {
                stmt.execute(rusqlite::params![at_us, p.to_string_lossy()])?;
            }
            Ok(())
        })?;
        self.prune()
    }

    /// Keeps the newest `history_max` rows; an older row goes only once its
    /// file is deleted (until then the row is how the deletion is finished).
    fn prune(&mut self) -> Result<(), SqliteError> {
        let keep = i64_of(self.history_max);
        self.write(|tx| {
            tx.execute(
                "DELETE FROM retention_deletions WHERE deleted_ts IS NOT NULL AND id <= \
                 (SELECT max(id) FROM retention_deletions) - ?",
                [keep],
            )
        })
        .map(|_| ())
    }

    /// At start, after the lake's recovery: settles what a crash interrupted
    /// (see the module docs) and returns the removed files still on disk,
    /// for the lake thread to delete after their grace. A file recovery
    /// already deleted gets `deleted_ts = at_us` (the time it was found gone).
    pub fn reconcile(
        &mut self,
        state: &LakeState,
        at_us: i64,
    ) -> Result<Vec<PathBuf>, SqliteError> {
        let live: HashSet<String> = state
            .files
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        let open: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT id, path, state FROM retention_deletions \
                     WHERE state = 'pending' OR deleted_ts IS NULL",
                )
                .map_err(|source| SqliteError::Sql {
                    path: self.path.clone(),
                    step: "reading unfinished deletions",
                    source,
                })?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| SqliteError::Sql {
                    path: self.path.clone(),
                    step: "reading unfinished deletions",
                    source,
                })?
        };
        let mut on_disk = Vec::new();
        let mut settle: Vec<(i64, &'static str)> = Vec::new();
        for (id, path, row_state) in &open {
            if row_state == "pending" && live.contains(path) {
                settle.push((*id, "drop"));
                continue;
            }
            if row_state == "pending" {
                settle.push((*id, "commit"));
            }
            if Path::new(path).exists() {
                on_disk.push(PathBuf::from(path));
            } else {
                settle.push((*id, "gone"));
            }
        }
        if !settle.is_empty() {
            self.write(|tx| {
                for (id, what) in &settle {
                    match *what {
                        "drop" => {
                            tx.execute("DELETE FROM retention_deletions WHERE id = ?", [id])?;
                        }
                        "commit" => {
                            tx.execute(
                                "UPDATE retention_deletions SET state = 'committed', \
                                 removed_ts = coalesce(removed_ts, ?) WHERE id = ?",
                                [at_us, *id],
                            )?;
                        }
                        _ => {
                            tx.execute(
                                "UPDATE retention_deletions SET deleted_ts = ? WHERE id = ?",
                                [at_us, *id],
                            )?;
                        }
                    }
                }
                Ok(())
            })?;
            tracing::info!(
                settled = settle.len(),
                "retention history reconciled with the lake's log"
            );
        }
        self.prune()?;
        Ok(on_disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &Path, version: u64) -> Deletion {
        Deletion {
            table: "signals".into(),
            date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            symbol: "BTC".into(),
            path: path.to_path_buf(),
            rows: 3,
            bytes: 30,
            lake_days: 7,
            reference_us: 10,
            cutoff_us: 5,
            version,
        }
    }

    fn count(log: &DeletionLog, filter: &str) -> i64 {
        log.conn
            .query_row(
                &format!("SELECT count(*) FROM retention_deletions WHERE {filter}"),
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The history holds history_max rows, finished ones dropped first.
    #[test]
    fn the_history_is_bounded_at_history_max() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeletionLog::open(&dir.path().join("r.sqlite"), 3).unwrap();
        let paths: Vec<PathBuf> = (0..5).map(|i| dir.path().join(format!("f{i}"))).collect();
        for (i, p) in paths.iter().enumerate() {
            log.add_pending(&[row(p, i as u64 + 1)]).unwrap();
            log.committed(i as u64 + 1, 100).unwrap();
        }
        // Not yet deleted: all five kept.
        assert_eq!(count(&log, "1 = 1"), 5);
        log.deleted(&paths, 200).unwrap();
        assert_eq!(count(&log, "1 = 1"), 3);
        assert_eq!(count(&log, "path LIKE '%f4'"), 1);
    }

    /// After a crash: pending rows of a commit that happened become
    /// committed, those of one that did not are dropped.
    #[test]
    fn reconcile_settles_pending_rows_against_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DeletionLog::open(&dir.path().join("r.sqlite"), 100).unwrap();
        let kept = dir.path().join("kept.parquet");
        let gone = dir.path().join("gone.parquet");
        let lingering = dir.path().join("lingering.parquet");
        std::fs::write(&kept, b"x").unwrap();
        std::fs::write(&lingering, b"x").unwrap();
        log.add_pending(&[row(&kept, 9), row(&gone, 8), row(&lingering, 8)])
            .unwrap();
        let mut state = LakeState::default();
        state.files.push(crate::store::LakeFile {
            table: crate::event::Table::Signal,
            date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            symbol: "BTC".into(),
            path: kept.clone(),
            bytes: 1,
            rows: 1,
            seq_from: 1,
            seq_to: 1,
        });
        let on_disk = log.reconcile(&state, 500).unwrap();
        assert_eq!(on_disk, vec![lingering]);
        assert_eq!(count(&log, "state = 'pending'"), 0);
        assert_eq!(count(&log, "path LIKE '%kept.parquet'"), 0);
        assert_eq!(count(&log, "deleted_ts = 500 AND removed_ts = 500"), 1);
        assert_eq!(count(&log, "deleted_ts IS NULL"), 1);
    }
}
