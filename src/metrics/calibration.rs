//! `calibration(prob, label)`: how well predicted probabilities match their
//! 0/1 labels, as a struct `{samples, ece, mce, brier}` over 10 equal-width
//! bins. The sums and the formulas are [`crate::analytics::CalibrationSums`]'s,
//! the same ones `models compare` and the learning report use. A probability
//! outside [0, 1], a NULL and a label other than 0 or 1 are skipped; no rows
//! is a NULL struct.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, UInt64Type};
use datafusion::common::ScalarValue;
use datafusion::common::scalar::ScalarStructBuilder;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};

use crate::analytics::CalibrationSums;

/// The bins of the SQL aggregate, as in `learning.calibration_bins`.
pub const CALIBRATION_BINS: usize = 10;

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("samples", DataType::Int64, true),
        Field::new("ece", DataType::Float64, true),
        Field::new("mce", DataType::Float64, true),
        Field::new("brier", DataType::Float64, true),
    ])
}

/// The `calibration` aggregate, for registering in a session.
pub fn calibration_udaf() -> AggregateUDF {
    let list = |t: DataType| DataType::new_list(t, true);
    create_udaf(
        "calibration",
        vec![DataType::Float64, DataType::Float64],
        Arc::new(DataType::Struct(fields())),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(Sums(CalibrationSums::new(CALIBRATION_BINS))))),
        Arc::new(vec![
            list(DataType::UInt64),
            list(DataType::Float64),
            list(DataType::Float64),
            DataType::Float64,
        ]),
    )
}

#[derive(Debug)]
struct Sums(CalibrationSums);

fn wrong_type(what: &str, array: &ArrayRef) -> DataFusionError {
    DataFusionError::Internal(format!(
        "calibration: {what} is {}, not the declared type",
        array.data_type()
    ))
}

fn floats<'a>(
    what: &str,
    array: &'a ArrayRef,
) -> Result<&'a arrow::array::PrimitiveArray<Float64Type>> {
    array
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| wrong_type(what, array))
}

impl Accumulator for Sums {
    fn update_batch(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let [prob, label] = columns else {
            return Err(DataFusionError::Internal(
                "calibration takes (probability, label)".into(),
            ));
        };
        let (prob, label) = (
            floats("the probability", prob)?,
            floats("the label", label)?,
        );
        for (p, y) in prob.iter().zip(label.iter()) {
            match (p, y) {
                (Some(p), Some(y)) if y == 0.0 || y == 1.0 => self.0.add(p, y == 1.0),
                _ => {}
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [count, predicted, observed, squared] = states else {
            return Err(DataFusionError::Internal(
                "calibration: the state has four parts".into(),
            ));
        };
        let list = |what: &str, a: &'_ ArrayRef| {
            a.as_list_opt::<i32>()
                .cloned()
                .ok_or_else(|| wrong_type(what, a))
        };
        let (count, predicted, observed) = (
            list("the counts", count)?,
            list("the predicted sums", predicted)?,
            list("the observed sums", observed)?,
        );
        let squared = floats("the squared error", squared)?;
        for i in 0..count.len() {
            if !count.is_valid(i) {
                continue;
            }
            let (c, p, o) = (count.value(i), predicted.value(i), observed.value(i));
            let c = c
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| wrong_type("a count", &c))?;
            let other = CalibrationSums {
                count: c.values().to_vec(),
                sum_predicted: floats("a predicted sum", &p)?.values().to_vec(),
                sum_observed: floats("an observed sum", &o)?.values().to_vec(),
                squared_error: squared.value(i),
            };
            self.0.merge(&other);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let s = &self.0;
        let list = |values: Vec<ScalarValue>, t: &DataType| {
            ScalarValue::List(ScalarValue::new_list_nullable(&values, t))
        };
        Ok(vec![
            list(
                s.count
                    .iter()
                    .map(|c| ScalarValue::UInt64(Some(*c)))
                    .collect(),
                &DataType::UInt64,
            ),
            list(
                s.sum_predicted
                    .iter()
                    .map(|v| ScalarValue::Float64(Some(*v)))
                    .collect(),
                &DataType::Float64,
            ),
            list(
                s.sum_observed
                    .iter()
                    .map(|v| ScalarValue::Float64(Some(*v)))
                    .collect(),
                &DataType::Float64,
            ),
            ScalarValue::Float64(Some(s.squared_error)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let Some(c) = self.0.finish() else {
            return Ok(ScalarStructBuilder::new_null(fields()));
        };
        let f = fields();
        ScalarStructBuilder::new()
            .with_scalar(f[0].clone(), ScalarValue::Int64(Some(c.samples as i64)))
            .with_scalar(f[1].clone(), ScalarValue::Float64(Some(c.ece)))
            .with_scalar(f[2].clone(), ScalarValue::Float64(Some(c.mce)))
            .with_scalar(f[3].clone(), ScalarValue::Float64(Some(c.brier)))
            .build()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.0.bins() * (8 + 8 + 8)
    }
}
