//! The trade journal (`<data>/journal.sqlite`): the current, mutable state of
//! every trade and shadow trade, with the features at entry and the outcome.
//!
//! The store keeps it up to date from `trades` and `shadow_trades` events (the
//! [`JournalFollower`] thread, fed from the WAL like the hot store), so the bot
//! logs once; [`Journal`]'s `record_*` methods are the same writes for callers
//! that use the journal directly. Every write is idempotent (keyed by trade and
//! shadow id), so a WAL replay after a crash applies nothing twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::hot::{HotError, HotShared};
use super::sqlite::{self, Migration, SqliteError};
use super::status::{Hole, HoleStatus, StoreStatus};
use super::wal::{Fetched, WalCursor, WalFeed, WalRecord};
use crate::event::{Event, Gate, Mode, Regime, ShadowKind, Side, Table, TradeKind, Ts};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../sql/journal/0001_init.sql"),
}];

/// A trade at entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeEntry {
    pub trade_id: String,
    pub signal_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub mode: Mode,
    pub regime: Regime,
    pub qty: f64,
    pub entry_ts: Ts,
    pub entry_price: f64,
    pub fees_bps: f64,
}

/// A trade's exit and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeExit {
    pub trade_id: String,
    pub exit_ts: Ts,
    pub exit_price: f64,
    /// Net of fees.
    pub pnl_bps: f64,
    pub fees_bps: f64,
    pub duration_s: f64,
    /// Maximum adverse excursion (<= 0).
    pub mae_bps: Option<f64>,
    /// Maximum favourable excursion (>= 0).
    pub mfe_bps: Option<f64>,
}

/// A blocked signal, followed as if traded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowEntry {
    pub shadow_id: String,
    pub signal_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub mode: Mode,
    pub regime: Regime,
    pub blocked_by: Gate,
    pub blocked_ts: Ts,
    pub hypothetical_entry: f64,
}

/// What a shadow trade would have made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowResolution {
    pub shadow_id: String,
    pub resolved_ts: Ts,
    pub outcome_pnl_bps: f64,
}

/// One write to the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalChange {
    Entry(TradeEntry, Vec<(String, f64)>),
    Exit(TradeExit),
    Shadow(ShadowEntry),
    Resolve(ShadowResolution),
}

impl JournalChange {
    /// The journal write a trade or shadow-trade event implies, if any.
    pub fn from_event(event: &Event) -> Option<JournalChange> {
        match event {
            Event::Trade(t) => Some(match t.kind {
                TradeKind::Open => JournalChange::Entry(
                    TradeEntry {
                        trade_id: t.trade_id.clone(),
                        signal_id: Some(t.signal_id.clone()),
                        symbol: t.header.symbol.clone(),
                        side: t.side,
                        mode: t.mode,
                        regime: t.regime,
                        qty: t.qty,
                        entry_ts: t.header.ts,
                        entry_price: t.price,
                        fees_bps: t.fees_bps,
                    },
                    t.features
                        .as_deref()
                        .map(parse_features)
                        .unwrap_or_default(),
                ),
                TradeKind::Close => JournalChange::Exit(TradeExit {
                    trade_id: t.trade_id.clone(),
                    exit_ts: t.header.ts,
                    exit_price: t.price,
                    pnl_bps: t.pnl_bps?,
                    fees_bps: t.fees_bps,
                    duration_s: t.duration_s.unwrap_or(0.0),
                    mae_bps: t.mae_bps,
                    mfe_bps: t.mfe_bps,
                }),
            }),
            Event::ShadowTrade(s) => Some(match s.kind {
                ShadowKind::Blocked => JournalChange::Shadow(ShadowEntry {
                    shadow_id: s.shadow_id.clone(),
                    signal_id: Some(s.signal_id.clone()),
                    symbol: s.header.symbol.clone(),
                    side: s.side,
                    mode: s.mode,
                    regime: s.regime,
                    blocked_by: s.blocked_by,
                    blocked_ts: s.header.ts,
                    hypothetical_entry: s.hypothetical_entry,
                }),
                ShadowKind::Resolved => JournalChange::Resolve(ShadowResolution {
                    shadow_id: s.shadow_id.clone(),
                    resolved_ts: s.header.ts,
                    outcome_pnl_bps: s.outcome_pnl_bps?,
                }),
            }),
            _ => None,
        }
    }
}

/// The numeric features of a JSON object (booleans as 0/1); other values and
/// malformed JSON give no features rather than losing the trade.
pub fn parse_features(json: &str) -> Vec<(String, f64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Number(n) => n.as_f64().map(|x| (k, x)),
            serde_json::Value::Bool(b) => Some((k, f64::from(u8::from(b)))),
            _ => None,
        })
        .collect()
}

/// How a batch of changes went: writes that referred to a trade or shadow
/// trade the journal does not hold are counted, not failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub changes: u64,
    pub orphans: u64,
}

/// Which trades to read.
#[derive(Debug, Default, Clone)]
pub struct TradeFilter {
    pub mode: Option<Mode>,
    pub regime: Option<Regime>,
    pub symbol: Option<String>,
    pub min_return_bps: Option<f64>,
    pub max_return_bps: Option<f64>,
    /// Entry at or after.
    pub since: Option<Ts>,
    /// Entry before.
    pub until: Option<Ts>,
    pub limit: Option<usize>,
}

impl TradeFilter {
    /// The WHERE clause (fixed text, values bound as parameters).
    fn where_clause(&self) -> (String, Vec<Value>) {
        let mut terms: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(m) = self.mode {
            terms.push("mode = ?");
            values.push(Value::Text(m.as_str().into()));
        }
        if let Some(r) = self.regime {
            terms.push("regime = ?");
            values.push(Value::Text(r.as_str().into()));
        }
        if let Some(s) = &self.symbol {
            terms.push("symbol = ?");
            values.push(Value::Text(s.clone()));
        }
        if let Some(x) = self.min_return_bps {
            terms.push("pnl_bps >= ?");
            values.push(Value::Real(x));
        }
        if let Some(x) = self.max_return_bps {
            terms.push("pnl_bps <= ?");
            values.push(Value::Real(x));
        }
        if let Some(t) = self.since {
            terms.push("entry_ts >= ?");
            values.push(Value::Integer(t.0));
        }
        if let Some(t) = self.until {
            terms.push("entry_ts < ?");
            values.push(Value::Integer(t.0));
        }
        let clause = if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        };
        (clause, values)
    }
}

/// A closed trade's return, as the statistics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedReturn {
    pub mode: String,
    pub regime: String,
    pub symbol: String,
    pub exit_ts: i64,
    pub pnl_bps: f64,
}

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

    pub fn record_entry(
        &mut self,
        entry: &TradeEntry,
        features: &[(String, f64)],
    ) -> Result<Applied, SqliteError> {
        self.apply(
            &[JournalChange::Entry(entry.clone(), features.to_vec())],
            None,
        )
    }

    /// Adds features to a trade already recorded.
    pub fn record_features(
        &mut self,
        trade_id: &str,
        features: &[(String, f64)],
    ) -> Result<Applied, SqliteError> {
        let path = self.path.clone();
        let retries = self.busy_retries.clone();
        sqlite::write(
            &mut self.conn,
            &path,
            self.busy_wait_max,
            |w| report_busy(&retries, &path, w),
            |tx| {
                let Some(key) = trade_key(tx, trade_id)? else {
                    return Ok(Applied {
                        changes: 0,
                        orphans: 1,
                    });
                };
                insert_features(tx, key, features)?;
                Ok(Applied {
                    changes: 1,
                    orphans: 0,
                })
            },
        )
    }

    pub fn record_exit(&mut self, exit: &TradeExit) -> Result<Applied, SqliteError> {
        self.apply(&[JournalChange::Exit(exit.clone())], None)
    }

    pub fn record_shadow(&mut self, shadow: &ShadowEntry) -> Result<Applied, SqliteError> {
        self.apply(&[JournalChange::Shadow(shadow.clone())], None)
    }

    pub fn resolve_shadow(&mut self, r: &ShadowResolution) -> Result<Applied, SqliteError> {
        self.apply(&[JournalChange::Resolve(r.clone())], None)
    }

    /// Applies `changes` in one transaction, recording `seq` (the WAL sequence
    /// they came from) in the same transaction.
    pub fn apply(
        &mut self,
        changes: &[JournalChange],
        seq: Option<u64>,
    ) -> Result<Applied, SqliteError> {
        let path = self.path.clone();
        let retries = self.busy_retries.clone();
        let now = sqlite::now_us();
        sqlite::write(
            &mut self.conn,
            &path,
            self.busy_wait_max,
            |w| report_busy(&retries, &path, w),
            |tx| {
                let mut applied = Applied::default();
                for change in changes {
                    let (changed, orphan) = apply_one(tx, change, now)?;
                    applied.changes += u64::from(changed);
                    applied.orphans += u64::from(orphan);
                }
                if let Some(seq) = seq {
                    tx.execute(
                        "INSERT INTO _quiver_state (key, value) VALUES ('applied_seq', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                        [seq as i64],
                    )?;
                }
                Ok(applied)
            },
        )
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

    /// Trades (open and closed, with outcomes) matching `filter`, newest first.
    pub fn trades(&self, filter: &TradeFilter) -> Result<Vec<RecordBatch>, SqliteError> {
        let relations = sqlite::relations(&self.conn, &self.path)?;
        let Some(view) = relations.into_iter().find(|r| r.name == "v_trades") else {
            return Err(self.sql_err(
                "finding v_trades",
                rusqlite::Error::InvalidParameterName("v_trades".into()),
            ));
        };
        let (clause, mut values) = filter.where_clause();
        let mut sql = format!("SELECT * FROM v_trades{clause} ORDER BY entry_ts DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(" LIMIT ?");
            values.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
        }
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.sql_err("reading trades", e))?;
        let mut out = Vec::new();
        sqlite::read_batches(
            &mut stmt,
            &values,
            &view.schema,
            8192,
            &self.path,
            "v_trades",
            |b| {
                out.push(b);
                true
            },
        )?;
        Ok(out)
    }

    /// Closed trades matching `filter`, in exit order: the input of
    /// [`crate::analytics::TradeStats`].
    pub fn closed_returns(&self, filter: &TradeFilter) -> Result<Vec<ClosedReturn>, SqliteError> {
        let (clause, values) = filter.where_clause();
        let sql = format!(
            "SELECT mode, regime, symbol, exit_ts, pnl_bps FROM v_closed_trades{clause} \
             ORDER BY exit_ts"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.sql_err("reading returns", e))?;
        stmt.query_map(rusqlite::params_from_iter(values.iter()), |r| {
            Ok(ClosedReturn {
                mode: r.get(0)?,
                regime: r.get(1)?,
                symbol: r.get(2)?,
                exit_ts: r.get(3)?,
                pnl_bps: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql_err("reading returns", e))
    }

    /// `PRAGMA integrity_check`: "ok" for a sound file.
    pub fn integrity_check(&self) -> Result<String, SqliteError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.sql_err("integrity_check", e))
    }
}

fn report_busy(retries: &AtomicU64, path: &Path, waited: Duration) {
    retries.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        path = %path.display(),
        waited_s = waited.as_secs_f64(),
        "journal is locked by another connection; retrying the write"
    );
}

/// The integer key of a trade, if the journal holds it.
fn trade_key(tx: &rusqlite::Transaction<'_>, trade_id: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached("SELECT trade_key FROM trades WHERE trade_id = ?1")?
        .query_row([trade_id], |r| r.get(0))
        .optional()
}

fn insert_features(
    tx: &rusqlite::Transaction<'_>,
    key: i64,
    features: &[(String, f64)],
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO trade_features (trade_key, feature, value) VALUES (?1, ?2, ?3)",
    )?;
    for (name, value) in features {
        stmt.execute(params![key, name, value.is_finite().then_some(*value)])?;
    }
    Ok(())
}

/// Applies one change; returns (changed anything, referred to an unknown id).
fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    change: &JournalChange,
    now: i64,
) -> rusqlite::Result<(bool, bool)> {
    match change {
        JournalChange::Entry(e, features) => {
            let n = tx.prepare_cached(
                "INSERT OR IGNORE INTO trades (trade_id, signal_id, symbol, side, mode, regime, qty,
                     entry_ts, entry_price, fees_bps, recorded_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                e.trade_id,
                e.signal_id,
                e.symbol,
                e.side.as_str(),
                e.mode.as_str(),
                e.regime.as_str(),
                e.qty,
                e.entry_ts.0,
                e.entry_price,
                e.fees_bps,
                now
            ])?;
            if n > 0 {
                // Features come with the entry; a replayed entry adds none.
                insert_features(tx, tx.last_insert_rowid(), features)?;
            }
            Ok((n > 0, false))
        }
        JournalChange::Exit(x) => {
            let Some(key) = trade_key(tx, &x.trade_id)? else {
                return Ok((false, true));
            };
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO trade_outcomes (trade_key, exit_ts, exit_price, pnl_bps,
                         fees_bps, duration_s, mae_bps, mfe_bps)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    key,
                    x.exit_ts.0,
                    x.exit_price,
                    x.pnl_bps,
                    x.fees_bps,
                    x.duration_s.max(0.0),
                    x.mae_bps,
                    x.mfe_bps
                ])?;
            if n > 0 {
                tx.prepare_cached("UPDATE trades SET status = 'CLOSED' WHERE trade_key = ?1")?
                    .execute([key])?;
            }
            Ok((n > 0, false))
        }
        JournalChange::Shadow(s) => {
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO shadow_trades (shadow_id, signal_id, symbol, side, mode,
                         regime, blocked_by, blocked_ts, hypothetical_entry)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    s.shadow_id,
                    s.signal_id,
                    s.symbol,
                    s.side.as_str(),
                    s.mode.as_str(),
                    s.regime.as_str(),
                    s.blocked_by.as_str(),
                    s.blocked_ts.0,
                    s.hypothetical_entry
                ])?;
            Ok((n > 0, false))
        }
        JournalChange::Resolve(r) => {
            let n = tx
                .prepare_cached(
                    "UPDATE shadow_trades SET resolved_ts = ?2, outcome_pnl_bps = ?3
                     WHERE shadow_id = ?1 AND resolved_ts IS NULL",
                )?
                .execute(params![r.shadow_id, r.resolved_ts.0, r.outcome_pnl_bps])?;
            if n > 0 {
                return Ok((true, false));
            }
            let known: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM shadow_trades WHERE shadow_id = ?1")?
                .query_row([&r.shadow_id], |r| r.get(0))
                .optional()?;
            Ok((false, known.is_none()))
        }
    }
}

/// What the follower thread shares with the store.
#[derive(Debug, Default)]
pub struct JournalShared {
    /// Every WAL sequence up to this one is in the journal (or held nothing for it).
    pub applied_seq: AtomicU64,
    /// The part of `applied_seq` recorded in journal.sqlite, where the next start
    /// resumes: WAL segments may go only up to here.
    pub persisted_seq: AtomicU64,
    pub changes: AtomicU64,
    pub orphans: AtomicU64,
    pub busy_retries: AtomicU64,
    pub errors: AtomicU64,
}

/// The thread that keeps the journal up to date from trade events, reading the
/// WAL feed like the hot store (a locked journal is lag, never back-pressure).
pub struct JournalFollower {
    pub journal: Journal,
    pub shared: Arc<JournalShared>,
    /// Where trade events the WAL no longer has are read back from.
    pub hot: Arc<HotShared>,
    pub status: Arc<StoreStatus>,
}

/// Records read from the feed in one go (most are other tables', only counted).
const FETCH_RECORDS_MAX: usize = 1024;
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often progress over records without trade events is recorded.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Attempts once the store is closing, before the rows are left to the WAL.
const CLOSING_ATTEMPTS_MAX: u32 = 3;

impl JournalFollower {
    pub fn run(mut self, mut cursor: WalCursor) {
        // Writes wait for a lock a while, then back off: a batch is never
        // skipped, because the sequence only advances past what was applied.
        self.journal.busy_wait_max = Duration::from_secs(5);
        let mut last_persist = std::time::Instant::now();
        loop {
            // Progress over records without trade events is recorded now and
            // then, so a restart does not read the WAL again for it.
            if last_persist.elapsed() >= PERSIST_EVERY {
                last_persist = std::time::Instant::now();
                self.persist_progress();
            }
            let fetched = cursor.fetch(FETCH_RECORDS_MAX, Duration::from_millis(200));
            let (records, last) = match fetched {
                Ok(Fetched::Records(records)) => {
                    let last = records.last().map_or(0, |r| r.seq);
                    (records, last)
                }
                Ok(Fetched::Gap { from, to }) => {
                    let records = self.read_back(from, to, cursor.feed());
                    if records.is_empty() && cursor.feed().is_closed() {
                        self.persist_progress();
                        return; // the gap is not recorded as applied: the next start retries
                    }
                    (records, to)
                }
                Ok(Fetched::Idle) => continue,
                Ok(Fetched::Closed) => {
                    self.persist_progress();
                    return;
                }
                Err(e) => {
                    self.status
                        .journal
                        .stalled("journal", &format!("reading the WAL: {e}"));
                    if cursor.feed().is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let mut changes: Vec<JournalChange> = Vec::new();
            for r in records
                .iter()
                .filter(|r| matches!(r.table, Table::Trade | Table::ShadowTrade))
            {
                match r.table.read_events(&r.batch) {
                    Ok(events) => {
                        changes.extend(events.iter().filter_map(JournalChange::from_event))
                    }
                    Err(e) => {
                        // The batch passed validation before the WAL; this is a bug.
                        tracing::error!(error = %e, seq = r.seq, "journal: unreadable batch");
                        self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if changes.is_empty() {
                self.shared.applied_seq.fetch_max(last, Ordering::AcqRel);
                continue;
            }
            if !self.apply_with_retry(&changes, last, cursor.feed()) {
                return;
            }
        }
    }

    /// Records `applied_seq` in journal.sqlite if it is ahead of what is there
    /// (a failure is tried again later: the WAL keeps what the journal needs).
    fn persist_progress(&mut self) {
        let applied = self.shared.applied_seq.load(Ordering::Acquire);
        if applied > self.shared.persisted_seq.load(Ordering::Acquire)
            && self.journal.apply(&[], Some(applied)).is_ok()
        {
            self.shared
                .persisted_seq
                .fetch_max(applied, Ordering::AcqRel);
        }
    }

    /// Trade events of sequences the WAL no longer has, from the hot store,
    /// once the hot store has passed them (it applies the same WAL, so what it
    /// lacks then is lost). A failed read is retried, never taken as a loss.
    fn read_back(&self, from: u64, to: u64, feed: &WalFeed) -> Vec<WalRecord> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let hot_done = self.hot.applied_seq.load(Ordering::Acquire) >= to;
            let result = if hot_done {
                self.hot
                    .read_seq_range(from, to, &[Table::Trade, Table::ShadowTrade])
            } else {
                Err(HotError::NotYet)
            };
            match result {
                Ok(records) => {
                    let rows: u64 = records.iter().map(|r| r.batch.num_rows() as u64).sum();
                    self.status.hole(Hole {
                        component: "journal",
                        table: None,
                        seq_from: from,
                        seq_to: to,
                        rows: Some(rows),
                        status: HoleStatus::Refilled,
                        detected_at_us: Ts::now().0,
                        detail: "not in the WAL; trade events read back from the hot store".into(),
                    });
                    return records;
                }
                Err(e) if feed.is_closed() => {
                    tracing::warn!(error = %e, from, to, "journal: closing before sequences missing from the WAL were read back; the next start tries again");
                    return Vec::new();
                }
                Err(e) => {
                    if !matches!(e, HotError::NotYet) {
                        tracing::warn!(error = %e, "journal: reading missing sequences from the hot store; retrying");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Applies changes in one transaction that records `seq`, retrying with
    /// backoff. Returns false if the store closed before they could be applied.
    fn apply_with_retry(&mut self, changes: &[JournalChange], seq: u64, feed: &WalFeed) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            let before = self.journal.busy_retries();
            let result = self.journal.apply(changes, Some(seq));
            self.shared
                .busy_retries
                .fetch_add(self.journal.busy_retries() - before, Ordering::Relaxed);
            let reason = match result {
                Ok(applied) => {
                    self.shared
                        .changes
                        .fetch_add(applied.changes, Ordering::Relaxed);
                    if applied.orphans > 0 {
                        tracing::warn!(
                            orphans = applied.orphans,
                            "journal: exits or resolutions for unknown trades"
                        );
                        self.shared
                            .orphans
                            .fetch_add(applied.orphans, Ordering::Relaxed);
                    }
                    self.shared.applied_seq.fetch_max(seq, Ordering::AcqRel);
                    self.shared.persisted_seq.fetch_max(seq, Ordering::AcqRel);
                    self.status.journal.ok("journal");
                    return true;
                }
                Err(SqliteError::Busy { waited, .. }) => {
                    self.shared.busy_retries.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "locked by another connection (waited {:.1} s)",
                        waited.as_secs_f64()
                    )
                }
                Err(e) => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                    e.describe()
                }
            };
            attempts += 1;
            self.status.journal.stalled("journal", &reason);
            if feed.is_closed() && attempts >= CLOSING_ATTEMPTS_MAX {
                tracing::error!(
                    seq,
                    reason,
                    "journal write failed at close; the rows stay in the WAL"
                );
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, mode: Mode, ts: i64) -> TradeEntry {
        TradeEntry {
            trade_id: id.into(),
            signal_id: Some(format!("s-{id}")),
            symbol: "BTC-USD".into(),
            side: Side::Buy,
            mode,
            regime: Regime::Trend,
            qty: 1.0,
            entry_ts: Ts(ts),
            entry_price: 100.0,
            fees_bps: 5.0,
        }
    }

    fn exit(id: &str, pnl: f64, ts: i64) -> TradeExit {
        TradeExit {
            trade_id: id.into(),
            exit_ts: Ts(ts),
            exit_price: 101.0,
            pnl_bps: pnl,
            fees_bps: 5.0,
            duration_s: 60.0,
            mae_bps: Some(-3.0),
            mfe_bps: Some(12.0),
        }
    }

    #[test]
    fn entry_features_exit_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        let f = vec![("spread_bps".to_string(), 2.5)];
        assert_eq!(
            j.record_entry(&entry("a", Mode::Scalp, 1), &f)
                .unwrap()
                .changes,
            1
        );
        j.record_entry(&entry("b", Mode::Runner, 2), &[]).unwrap();
        // Idempotent: the same entry again changes nothing.
        assert_eq!(
            j.record_entry(&entry("a", Mode::Scalp, 1), &f)
                .unwrap()
                .changes,
            0
        );
        assert_eq!(j.record_exit(&exit("a", 10.0, 5)).unwrap().changes, 1);
        assert_eq!(j.record_exit(&exit("a", 10.0, 5)).unwrap().changes, 0);
        assert_eq!(j.record_exit(&exit("zz", 1.0, 5)).unwrap().orphans, 1);
        let rows = |filter: &TradeFilter| -> usize {
            j.trades(filter).unwrap().iter().map(|b| b.num_rows()).sum()
        };
        assert_eq!(rows(&TradeFilter::default()), 2);
        let scalp = TradeFilter {
            mode: Some(Mode::Scalp),
            ..Default::default()
        };
        assert_eq!(rows(&scalp), 1);
        let winners = TradeFilter {
            min_return_bps: Some(5.0),
            ..Default::default()
        };
        assert_eq!(rows(&winners), 1);
        let later = TradeFilter {
            since: Some(Ts(2)),
            ..Default::default()
        };
        assert_eq!(rows(&later), 1);
        let status: String = j
            .connection()
            .query_row("SELECT status FROM trades WHERE trade_id = 'a'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(status, "CLOSED");
        let n: i64 = j
            .connection()
            .query_row("SELECT count(*) FROM trade_features", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let returns = j.closed_returns(&TradeFilter::default()).unwrap();
        assert_eq!(returns.len(), 1);
        assert_eq!(returns[0].pnl_bps, 10.0);
    }

    #[test]
    fn shadow_trades_resolve_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        let s = ShadowEntry {
            shadow_id: "x".into(),
            signal_id: None,
            symbol: "ETH-USD".into(),
            side: Side::Sell,
            mode: Mode::Scalp,
            regime: Regime::Range,
            blocked_by: Gate::SpreadGate,
            blocked_ts: Ts(1),
            hypothetical_entry: 10.0,
        };
        j.record_shadow(&s).unwrap();
        let r = ShadowResolution {
            shadow_id: "x".into(),
            resolved_ts: Ts(9),
            outcome_pnl_bps: -4.0,
        };
        assert_eq!(j.resolve_shadow(&r).unwrap().changes, 1);
        assert_eq!(j.resolve_shadow(&r).unwrap(), Applied::default());
        let (good, blocked): (i64, i64) = j
            .connection()
            .query_row(
                "SELECT good_blocks, blocked FROM v_shadow_trades_summary",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((good, blocked), (1, 1));
    }

    #[test]
    fn features_keep_numbers_and_survive_bad_json() {
        let f = parse_features(r#"{"a": 1.5, "b": true, "c": "x", "d": null}"#);
        assert_eq!(f, [("a".to_string(), 1.5), ("b".to_string(), 1.0)]);
        assert!(parse_features("{not json").is_empty());
        assert!(parse_features("[1, 2]").is_empty());
    }
}
