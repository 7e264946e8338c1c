//! `max_drawdown(pnl, ts)`: the deepest fall of cumulative P&L from its
//! running peak, with the P&L taken in time order. Equity starts at 0, so a
//! losing first trade is a drawdown. Rows with a NULL value or time are
//! skipped; no rows is NULL. Ties in time are taken in value order, so the
//! answer does not depend on how rows were split across partitions.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The `max_drawdown` aggregate, for registering in a session.
pub fn max_drawdown_udaf() -> AggregateUDF {
    create_udaf(
        "max_drawdown",
        vec![DataType::Float64, ts_type()],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<Drawdown>::default())),
        Arc::new(vec![
            DataType::new_list(DataType::Float64, true),
            DataType::new_list(ts_type(), true),
        ]),
    )
}

#[derive(Debug, Default)]
struct Drawdown {
    /// (time µs, value)
    points: Vec<(i64, f64)>,
}

fn wrong_type(what: &str, array: &ArrayRef) -> DataFusionError {
    DataFusionError::Internal(format!(
        "max_drawdown: {what} is {}, not the declared type",
        array.data_type()
    ))
}

impl Drawdown {
    fn push(&mut self, values: &ArrayRef, times: &ArrayRef) -> Result<()> {
        let v = values
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| wrong_type("the value", values))?;
        let t = times
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| wrong_type("the time", times))?;
        for i in 0..v.len() {
            if v.is_valid(i) && t.is_valid(i) {
                self.points.push((t.value(i), v.value(i)));
            }
        }
        Ok(())
    }
}

impl Accumulator for Drawdown {
    fn update_batch(&mut self, columns: &[ArrayRef]) -> Result<()> {
        match columns {
            [values, times] => self.push(values, times),
            _ => Err(DataFusionError::Internal(
                "max_drawdown takes (value, time)".into(),
            )),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, times] = states else {
            return Err(DataFusionError::Internal(
                "max_drawdown: state is (values, times)".into(),
            ));
        };
        let v = values
            .as_list_opt::<i32>()
            .ok_or_else(|| wrong_type("the state", values))?;
        let t = times
            .as_list_opt::<i32>()
            .ok_or_else(|| wrong_type("the state", times))?;
        for i in 0..v.len() {
            if v.is_valid(i) && t.is_valid(i) {
                self.push(&v.value(i), &t.value(i))?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .points
            .iter()
            .map(|p| ScalarValue::Float64(Some(p.1)))
            .collect();
        let times: Vec<ScalarValue> = self
            .points
            .iter()
            .map(|p| ScalarValue::TimestampMicrosecond(Some(p.0), Some("UTC".into())))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&times, &ts_type())),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.points.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        self.points
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        Ok(ScalarValue::Float64(Some(crate::analytics::max_drawdown(
            self.points.iter().map(|&(_, value)| value),
        ))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, TimestampMicrosecondArray};

    fn batch(values: &[f64], times: &[i64]) -> Vec<ArrayRef> {
        vec![
            Arc::new(Float64Array::from(values.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
        ]
    }

    #[test]
    fn drawdown_follows_time_not_arrival() {
        // In time order: 10, -5, 20, -15, 5 -> equity 10 5 25 10 15: deepest fall 15.
        let mut a = Drawdown::default();
        a.update_batch(&batch(&[20.0, 10.0], &[3, 1])).unwrap();
        let mut b = Drawdown::default();
        b.update_batch(&batch(&[5.0, -15.0, -5.0], &[5, 4, 2]))
            .unwrap();
        let state: Vec<ArrayRef> = b
            .state()
            .unwrap()
            .into_iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        a.merge_batch(&state).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Float64(Some(15.0)));
    }

    /// The SQL aggregate and the journal's trade statistics give one number.
    #[test]
    fn the_aggregate_equals_the_trade_statistics() {
        let returns: Vec<f64> = (0..500)
            .map(|i: i64| ((i * 7919) % 113 - 56) as f64 * 0.37)
            .collect();
        let times: Vec<i64> = (0..returns.len() as i64).rev().collect();
        // Arrival in reverse time order: the aggregate sorts by time.
        let mut reversed = returns.clone();
        reversed.reverse();
        let mut a = Drawdown::default();
        a.update_batch(&batch(&reversed, &times)).unwrap();
        let stats = crate::analytics::TradeStats::from_returns(&returns);
        assert!(stats.max_drawdown_bps > 0.0);
        assert_eq!(
            a.evaluate().unwrap(),
            ScalarValue::Float64(Some(stats.max_drawdown_bps))
        );
    }

    #[test]
    fn a_losing_start_counts_and_no_rows_is_null() {
        let mut a = Drawdown::default();
        a.update_batch(&batch(&[-3.0, -4.0, 10.0], &[1, 2, 3]))
            .unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Float64(Some(7.0)));
        assert_eq!(
            Drawdown::default().evaluate().unwrap(),
            ScalarValue::Float64(None)
        );
    }
}
