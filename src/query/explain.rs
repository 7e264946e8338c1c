//! `explain_gate(gate, result, value, threshold, direction, mode, regime,
//! pnl_bps, traded)`: the gate explainer as a SQL function. It returns a
//! struct of `reason`, `margin`, `margin_pct`, `verdict`, `outcome` and
//! `suggestion`; `analysis.gate_explanations` calls it for every decision.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, StringBuilder, StructArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Float64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::analytics::explain::{Decision, Outcome, explain};
use crate::gates::{GatesConfig, GatesError};

pub const EXPLAIN_GATE: &str = "explain_gate";

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("reason", DataType::Utf8, true),
        Field::new("margin", DataType::Float64, true),
        Field::new("margin_pct", DataType::Float64, true),
        Field::new("verdict", DataType::Utf8, true),
        Field::new("outcome", DataType::Utf8, true),
        Field::new("suggestion", DataType::Utf8, true),
    ])
}

/// The function, explaining with `gates`' templates.
pub fn explain_gate_udf(gates: Arc<GatesConfig>) -> ScalarUDF {
    let inputs = vec![
        DataType::Utf8,    // gate
        DataType::Utf8,    // result
        DataType::Float64, // value
        DataType::Float64, // threshold
        DataType::Utf8,    // direction
        DataType::Utf8,    // mode
        DataType::Utf8,    // regime
        DataType::Float64, // pnl_bps: closed or resolved shadow trade
        DataType::Boolean, // traded
    ];
    create_udf(
        EXPLAIN_GATE,
        inputs,
        DataType::Struct(fields()),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            Ok(ColumnarValue::Array(explain_arrays(&gates, &arrays)?))
        }),
    )
}

/// The function with the built-in `configs/gates.yaml` templates.
pub fn builtin_explain_gate() -> std::result::Result<ScalarUDF, GatesError> {
    Ok(explain_gate_udf(Arc::new(GatesConfig::builtin()?)))
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| {
        DataFusionError::Execution(format!("{EXPLAIN_GATE}: {text:?} is not a {what}"))
    })
}

fn explain_arrays(gates: &GatesConfig, arrays: &[ArrayRef]) -> Result<ArrayRef> {
    let [
        gate,
        result,
        value,
        threshold,
        direction,
        mode,
        regime,
        pnl,
        traded,
    ] = arrays
    else {
        return Err(DataFusionError::Execution(format!(
            "{EXPLAIN_GATE} takes 9 arguments, got {}",
            arrays.len()
        )));
    };
    let strings = |a: &ArrayRef| {
        a.as_string_opt::<i32>().cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "{EXPLAIN_GATE}: expected text, got {}",
                a.data_type()
            ))
        })
    };
    let floats = |a: &ArrayRef| {
        a.as_primitive_opt::<Float64Type>().cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "{EXPLAIN_GATE}: expected a number, got {}",
                a.data_type()
            ))
        })
    };
    let (gate, result, direction, mode, regime) = (
        strings(gate)?,
        strings(result)?,
        strings(direction)?,
        strings(mode)?,
        strings(regime)?,
    );
    let (value, threshold, pnl) = (floats(value)?, floats(threshold)?, floats(pnl)?);
    let traded: &BooleanArray = traded
        .as_boolean_opt()
        .ok_or_else(|| DataFusionError::Internal(format!("{EXPLAIN_GATE}: expected a boolean")))?;
    let rows = gate.len();
    let mut reason = StringBuilder::with_capacity(rows, rows * 64);
    let mut margin = Float64Builder::with_capacity(rows);
    let mut margin_pct = Float64Builder::with_capacity(rows);
    let mut verdict = StringBuilder::with_capacity(rows, rows * 10);
    let mut outcome = StringBuilder::with_capacity(rows, rows * 48);
    let mut suggestion = StringBuilder::with_capacity(rows, rows * 48);
    let mut valid = Vec::with_capacity(rows);
    for i in 0..rows {
        let required: [&dyn Array; 7] = [
            &gate, &result, &value, &threshold, &direction, &mode, &regime,
        ];
        let explained = if required.iter().any(|a| a.is_null(i)) {
            None
        } else {
            let decision = Decision {
                gate: parse("gate", gate.value(i))?,
                result: parse("gate result (PASS or FAIL)", result.value(i))?,
                value: value.value(i),
                threshold: threshold.value(i),
                direction: parse("direction (min or max)", direction.value(i))?,
                mode: parse("mode", mode.value(i))?,
                regime: parse("regime", regime.value(i))?,
            };
            let pnl = pnl.is_valid(i).then(|| pnl.value(i));
            let traded = traded.is_valid(i) && traded.value(i);
            explain(gates, &decision, Outcome::from_parts(pnl, traded))
        };
        match explained {
            Some(e) => {
                reason.append_value(&e.reason);
                margin.append_value(e.margin);
                margin_pct.append_option(e.margin_pct);
                verdict.append_value(e.verdict.as_str());
                outcome.append_value(&e.outcome);
                suggestion.append_option(e.suggestion);
                valid.push(true);
            }
            None => {
                reason.append_null();
                margin.append_null();
                margin_pct.append_null();
                verdict.append_null();
                outcome.append_null();
                suggestion.append_null();
                valid.push(false);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(reason.finish()),
        Arc::new(margin.finish()),
        Arc::new(margin_pct.finish()),
        Arc::new(verdict.finish()),
        Arc::new(outcome.finish()),
        Arc::new(suggestion.finish()),
    ];
    let array = StructArray::try_new(fields(), columns, Some(NullBuffer::from(valid)))?;
    Ok(Arc::new(array))
}
