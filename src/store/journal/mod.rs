//! The trade journal (`<data>/journal.sqlite`): the current, mutable state of
//! every trade and shadow trade, with the features at entry and the outcome.
//!
//! The store keeps it up to date from `trades` and `shadow_trades` events (the
//! [`JournalFollower`] thread, fed from the WAL like the hot store), so the bot
//! logs once; [`Journal`]'s `record_*` methods are the same writes for callers
//! that use the journal directly. Every write is idempotent (keyed by trade and
//! shadow id), so a WAL replay after a crash applies nothing twice.
//!
//! | file | holds |
//! |---|---|
//! | [`change`] | the writes: trade entries and exits, shadow trades, and the change an event implies |
//! | `write` | applying changes, idempotently, in one transaction with the WAL sequence |
//! | [`read`] | reading trades and closed returns through a [`TradeFilter`] |
//! | [`follower`] | the thread that applies trade events from the WAL feed |

pub mod change;
pub mod follower;
pub mod read;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::sqlite::{self, Migration, SqliteError};
pub use change::{
    Applied, JournalChange, ShadowEntry, ShadowResolution, TradeEntry, TradeExit, parse_features,
};
pub use follower::{JournalFollower, JournalShared};
pub use read::{ClosedReturn, TradeFilter};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../../sql/journal/0001_init.sql"),
}];

/// A connection to the journal.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    /// How long a write waits for another connection's lock before giving up.
    pub busy_wait_max: Duration,
    busy_retries: Arc<AtomicU64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating and migrating) the journal for writing.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        Ok(Self {
            conn: sqlite::open_rw(path, MIGRATIONS)?,
            path: path.to_path_buf(),
            busy_wait_max: Duration::from_secs(60),
            busy_retries: Arc::default(),
        })
    }

    /// Opens an existing journal for reading only (works while another process
    /// writes to it).
    pub fn open_read_only(path: &Path) -> Result<Self, SqliteError> {
        Ok(Self {
            conn: sqlite::open_ro(path)?,
            path: path.to_path_buf(),
            busy_wait_max: Duration::ZERO,
            busy_retries: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Times a write found the database locked and waited again.
    pub fn busy_retries(&self) -> u64 {
        self.busy_retries.load(Ordering::Relaxed)
    }

    /// The last WAL sequence whose events the journal holds.
    pub fn applied_seq(&self) -> Result<u64, SqliteError> {
        self.conn
            .query_row(
                "SELECT value FROM _quiver_state WHERE key = 'applied_seq'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .map_err(|source| self.sql_err("reading applied_seq", source))
    }

    fn sql_err(&self, step: &'static str, source: rusqlite::Error) -> SqliteError {
        SqliteError::Sql {
            path: self.path.clone(),
            step,
            source,
        }
    }

    /// `PRAGMA integrity_check`: "ok" for a sound file.
    pub fn integrity_check(&self) -> Result<String, SqliteError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.sql_err("integrity_check", e))
    }
}
