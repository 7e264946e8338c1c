//! Writing the journal: every change is idempotent (keyed by trade and shadow
//! id) and applied in one transaction that also records the WAL sequence it
//! came from, so a replay after a crash applies nothing twice.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{
    Applied, Journal, JournalChange, ShadowEntry, ShadowResolution, TradeEntry, TradeExit,
};
use crate::store::sqlite::{self, SqliteError};

impl Journal {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Gate, Mode, Regime, Side, Ts};

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
}
