//! Reading the journal: trades (open and closed) and closed returns, filtered
//! by a [`TradeFilter`] whose values are bound as parameters.

use arrow::array::RecordBatch;
use rusqlite::types::Value;

use super::Journal;
use crate::event::{Mode, Regime, Ts};
use crate::store::sqlite::{self, SqliteError};

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

impl Journal {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Side;
    use crate::store::journal::{TradeEntry, TradeExit};

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
}
