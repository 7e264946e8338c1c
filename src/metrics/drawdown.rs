//! `max_drawdown(pnl, ts)`: the deepest fall of cumulative P&L from its
//! running peak, with the P&L taken in time order. Equity starts at 0, so a
//! losing first trade is a drawdown. Rows with a NULL value or time are
//! skipped; no rows is NULL. Ties in time are taken in value order, so the
//! answer does not depend on how rows were split across partitions.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
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

impl Drawdown {
    fn push(&mut self, values: &ArrayRef, times: &ArrayRef) {
        let values = values.as_primitive::<Float64Type>();
        let times = times.as_primitive::<TimestampMicrosecondType>();
        for i in 0..values.len() {
            if values.is_valid(i) && times.is_valid(i) {
                self.points.push((times.value(i), values.value(i)));
            }
        }
    }
}

impl Accumulator for Drawdown {
    fn update_batch(&mut self, columns: &[ArrayRef]) -> Result<()> {
        if let [values, times] = columns {
            self.push(values, times);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if let [values, times] = states {
            let values = values.as_list::<i32>();
            let times = times.as_list::<i32>();
            for i in 0..values.len() {
                if values.is_valid(i) && times.is_valid(i) {
                    self.push(&values.value(i), &times.value(i));
                }
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
        let (mut equity, mut peak, mut deepest) = (0.0f64, 0.0f64, 0.0f64);
        for &(_, value) in &self.points {
            equity += value;
            peak = peak.max(equity);
            deepest = deepest.max(peak - equity);
        }
        Ok(ScalarValue::Float64(Some(deepest)))
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
