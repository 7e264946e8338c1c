//! `win_rate(pnl)`: the share of rows whose P&L is a win
//! ([`crate::analytics::is_win`]: above zero). NULL P&L is skipped; no rows
//! is NULL. The same definition [`crate::analytics::TradeStats`] uses.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

use crate::analytics::{is_win, win_rate};

/// The `win_rate` aggregate, for registering in a session.
pub fn win_rate_udaf() -> AggregateUDF {
    create_udaf(
        "win_rate",
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<WinRate>::default())),
        Arc::new(vec![DataType::UInt64, DataType::UInt64]),
    )
}

#[derive(Debug, Default)]
struct WinRate {
    wins: u64,
    trades: u64,
}

fn wrong_type(array: &ArrayRef) -> DataFusionError {
    DataFusionError::Internal(format!(
        "win_rate: got {}, not the declared type",
        array.data_type()
    ))
}

impl Accumulator for WinRate {
    fn update_batch(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let [pnl] = columns else {
            return Err(DataFusionError::Internal("win_rate takes (pnl)".into()));
        };
        let pnl = pnl
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| wrong_type(pnl))?;
        for p in pnl.iter().flatten() {
            self.trades += 1;
            self.wins += u64::from(is_win(p));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [wins, trades] = states else {
            return Err(DataFusionError::Internal(
                "win_rate: state is (wins, trades)".into(),
            ));
        };
        let wins = wins
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| wrong_type(wins))?;
        let trades = trades
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| wrong_type(trades))?;
        self.wins += wins.iter().flatten().sum::<u64>();
        self.trades += trades.iter().flatten().sum::<u64>();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::UInt64(Some(self.wins)),
            ScalarValue::UInt64(Some(self.trades)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(win_rate(self.wins, self.trades)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn nulls_are_skipped_break_even_is_not_a_win_and_partitions_merge() {
        let mut a = WinRate::default();
        let batch: ArrayRef = Arc::new(Float64Array::from(vec![Some(3.0), None, Some(0.0)]));
        a.update_batch(&[batch]).unwrap();
        let mut b = WinRate::default();
        let batch: ArrayRef = Arc::new(Float64Array::from(vec![-1.0, 2.5]));
        b.update_batch(&[batch]).unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Float64(Some(0.5)));
        assert_eq!(
            WinRate::default().evaluate().unwrap(),
            ScalarValue::Float64(None)
        );
    }
}
