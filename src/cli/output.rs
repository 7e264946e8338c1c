//! Printing query results as a table, CSV or JSON.
//!
//! Tables are for people: floats are shown rounded ([`human_number`]), and a
//! metric's `value`, `target` and thresholds in its `unit` ([`in_unit`]:
//! ratios as percentages, bps with two decimals). CSV and JSON stay exact.

pub use crate::analytics::format::{human_number, in_unit};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

pub fn print(batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            use std::io::Write;
            let human = batches
                .iter()
                .map(for_people)
                .collect::<Result<Vec<_>, _>>()?;
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&human)?
            )?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            use std::io::Write;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Whether the batches hold no rows (a table of them would print `++`).
pub fn is_empty(batches: &[RecordBatch]) -> bool {
    batches.iter().all(|b| b.num_rows() == 0)
}

/// Prints `batches`, or in a table `(message)` when there are no rows (CSV
/// and JSON print their empty form, which programs expect).
pub fn print_or_say(batches: &[RecordBatch], format: Format, message: &str) -> anyhow::Result<()> {
    match format {
        Format::Table if is_empty(batches) => {
            println!("  ({message})");
            Ok(())
        }
        _ => print(batches, format),
    }
}

/// The columns a metric view shows in its `unit`.
const IN_UNIT: &[&str] = &["value", "target", "warning", "critical", "threshold"];

/// The batch with its float columns as text for people.
fn for_people(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let units = batch
        .column_by_name("unit")
        .and_then(|c| arrow::compute::cast(c, &DataType::Utf8).ok())
        .and_then(|c| c.as_string_opt::<i32>().cloned());
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !matches!(field.data_type(), DataType::Float64 | DataType::Float32) {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let floats = arrow::compute::cast(column, &DataType::Float64)?;
        let floats = floats.as_primitive::<Float64Type>();
        let unit_of = |row: usize| {
            units
                .as_ref()
                .filter(|_| IN_UNIT.contains(&field.name().as_str()))
                .filter(|u| u.is_valid(row))
                .map(|u| u.value(row))
        };
        let text: StringArray = (0..floats.len())
            .map(|row| {
                floats.is_valid(row).then(|| {
                    let v = floats.value(row);
                    match unit_of(row) {
                        Some(unit) => in_unit(v, unit),
                        None => human_number(v),
                    }
                })
            })
            .collect();
        fields.push(Field::new(
            field.name(),
            DataType::Utf8,
            field.is_nullable(),
        ));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_metrics_in_their_unit_and_leave_other_columns() {
        let batch = RecordBatch::try_from_iter([
            (
                "metric",
                Arc::new(StringArray::from(vec!["win_rate", "avg_pnl_bps", "n"])) as ArrayRef,
            ),
            (
                "value",
                Arc::new(arrow::array::Float64Array::from(vec![
                    Some(0.5033503509891513),
                    Some(-5506.47000000001),
                    None,
                ])),
            ),
            (
                "unit",
                Arc::new(StringArray::from(vec!["ratio", "bps", "trades"])),
            ),
            (
                "other",
                Arc::new(arrow::array::Float64Array::from(vec![0.123456, 2.0, 3.25])),
            ),
        ])
        .unwrap();
        let shown = arrow::util::pretty::pretty_format_batches(&[for_people(&batch).unwrap()])
            .unwrap()
            .to_string();
        for cell in ["50.34%", "-5506.47", "0.1235", "3.25"] {
            assert!(shown.contains(cell), "{cell} in\n{shown}");
        }
        assert!(!shown.contains("0.50335"), "{shown}");
    }
}
