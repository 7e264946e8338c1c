//! Reading query results back into values, by column name, and the shape
//! of an id a command accepts.

use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};

/// Ids (UUIDs by convention) are accepted in this shape only, so nothing
/// that could carry SQL reaches a query.
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Checks `id` with [`is_id`], naming `what` in the error.
pub fn check_id<'a>(what: &str, id: &'a str) -> anyhow::Result<&'a str> {
    anyhow::ensure!(
        is_id(id),
        "{id:?} is not a {what} (letters, digits, - _ . : only, at most 128)"
    );
    Ok(id)
}

pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .with_context(|| format!("the result has no column {name}"))
}

/// A column as text (NULL as an empty string).
pub fn strings(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<String>> {
    let array = arrow::compute::cast(column(batch, name)?, &DataType::Utf8)?;
    let array = array.as_string::<i32>();
    Ok((0..array.len())
        .map(|i| array.value(i).to_string())
        .collect())
}

/// A column as numbers, NULL as `None`.
pub fn opt_floats(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
    let array = arrow::compute::cast(column(batch, name)?, &DataType::Float64)?;
    let array = array.as_primitive::<Float64Type>();
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i)))
        .collect())
}

/// A column as numbers (NULL as 0: for columns that cannot be NULL).
pub fn floats(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<f64>> {
    Ok(opt_floats(batch, name)?
        .into_iter()
        .map(|v| v.unwrap_or(0.0))
        .collect())
}
