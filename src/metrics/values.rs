//! What `metrics compute` writes: the lake tables `metric_values` and
//! `alerts`, one Parquet file per day (`<lake>/<table>/date=YYYY-MM-DD/`),
//! replaced whole on every run so a day is never counted twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::def::{AlertRule, MetricDef, Schedule, Status};
use crate::store::LakeConfig;
use crate::store::lake::{parquet, partition};
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{Datelike, NaiveDate, Weekday};

pub const METRIC_VALUES: &str = "metric_values";
pub const ALERTS: &str = "alerts";

/// Columns of a metric view that are not dimensions.
const FIXED_COLUMNS: &[&str] = &["metric", "day", "value", "unit", "status", "target"];

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `metric_values` as stored (the day is the partition column `date`).
pub fn metric_values_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("dimensions", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("unit", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("target", DataType::Float64, true),
        Field::new("computed_at", ts_type(), false),
    ]))
}

/// `alerts` as stored (the day is the partition column `date`).
pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("schedule", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, true),
        Field::new("dimensions", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("fired_at", ts_type(), false),
    ]))
}

/// One computed value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    pub metric: String,
    /// Dimension -> value, as text (JSON object when stored).
    pub dimensions: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub unit: String,
    pub status: String,
    pub target: Option<f64>,
}

impl MetricValue {
    pub fn dimensions_json(&self) -> String {
        serde_json::to_string(&self.dimensions).unwrap_or_else(|_| "{}".into())
    }
}

/// Reads a metric view's rows (metric, day, dimensions..., value, unit,
/// status, target).
pub fn read_metric_rows(batches: &[RecordBatch]) -> Result<Vec<MetricValue>, String> {
    let mut out = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let schema = batch.schema();
        let column = |name: &str| -> Result<&ArrayRef, String> {
            schema
                .index_of(name)
                .map(|i| batch.column(i))
                .map_err(|_| format!("the metric's result has no column `{name}`"))
        };
        let text = |name: &str| -> Result<Vec<String>, String> {
            let array =
                arrow::compute::cast(column(name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
            let array = array.as_string::<i32>();
            Ok((0..array.len())
                .map(|i| {
                    if array.is_valid(i) {
                        array.value(i).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect())
        };
        let float = |name: &str| -> Result<Float64Array, String> {
            let array = arrow::compute::cast(column(name)?, &DataType::Float64)
                .map_err(|e| e.to_string())?;
            Ok(array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone())
        };
        let metrics = text("metric")?;
        let units = text("unit")?;
        let statuses = text("status")?;
        let values = float("value")?;
        let targets = float("target")?;
        let mut dims = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if !FIXED_COLUMNS.contains(&field.name().as_str()) {
                let formatter = ArrayFormatter::try_new(batch.column(i).as_ref(), &options)
                    .map_err(|e| e.to_string())?;
                dims.push((field.name().clone(), formatter));
            }
        }
        for row in 0..batch.num_rows() {
            out.push(MetricValue {
                metric: metrics[row].clone(),
                dimensions: dims
                    .iter()
                    .map(|(name, f)| (name.clone(), f.value(row).to_string()))
                    .collect(),
                value: values.is_valid(row).then(|| values.value(row)),
                unit: units[row].clone(),
                status: statuses[row].clone(),
                target: targets.is_valid(row).then(|| targets.value(row)),
            });
        }
    }
    Ok(out)
}

/// The rows as a `metric_values` batch.
pub fn metric_values_batch(
    values: &[MetricValue],
    computed_at_us: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut metric = StringBuilder::new();
    let mut dimensions = StringBuilder::new();
    let mut value = Float64Builder::new();
    let mut unit = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut target = Float64Builder::new();
    for v in values {
        metric.append_value(&v.metric);
        dimensions.append_value(v.dimensions_json());
        value.append_option(v.value);
        unit.append_value(&v.unit);
        status.append_value(&v.status);
        target.append_option(v.target);
    }
    let computed_at =
        TimestampMicrosecondArray::from(vec![computed_at_us; values.len()]).with_timezone("UTC");
    RecordBatch::try_new(
        metric_values_schema(),
        vec![
            Arc::new(metric.finish()),
            Arc::new(dimensions.finish()),
            Arc::new(value.finish()),
            Arc::new(unit.finish()),
            Arc::new(status.finish()),
            Arc::new(target.finish()),
            Arc::new(computed_at),
        ],
    )
}

/// One fired alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: String,
    pub metric: String,
    pub severity: String,
    pub schedule: String,
    pub status: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub dimensions: String,
    pub message: String,
}

/// Whether `rule` is evaluated for `date`.
pub fn rule_applies(rule: &AlertRule, date: NaiveDate) -> bool {
    match rule.schedule {
        Schedule::Realtime | Schedule::Daily => true,
        Schedule::Weekly => date.weekday() == Weekday::Sun,
    }
}

fn parse_status(s: &str) -> Option<Status> {
    match s {
        "ok" => Some(Status::Ok),
        "warning" => Some(Status::Warning),
        "critical" => Some(Status::Critical),
        _ => None,
    }
}

/// The alerts `rules` fire on one day's values.
pub fn evaluate_alerts(
    rules: &[AlertRule],
    metrics: &[MetricDef],
    date: NaiveDate,
    values: &[MetricValue],
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for rule in rules.iter().filter(|r| rule_applies(r, date)) {
        let thresholds = metrics
            .iter()
            .find(|m| m.name == rule.metric)
            .and_then(|m| m.thresholds.as_ref());
        for v in values.iter().filter(|v| v.metric == *rule.metric) {
            let Some(status) = parse_status(&v.status) else {
                continue;
            };
            if status < rule.when {
                continue;
            }
            let threshold = thresholds.and_then(|t| match status {
                Status::Critical => t.critical.or(t.warning),
                _ => t.warning,
            });
            let dims = v.dimensions_json();
            let value_text = v.value.map_or_else(
                || "NULL".to_string(),
                |x| crate::analytics::format::with_unit(x, &v.unit),
            );
            let threshold_text = threshold.map_or_else(String::new, |t| {
                format!(
                    " (threshold {})",
                    crate::analytics::format::with_unit(t, &v.unit)
                )
            });
            let what = if rule.message.is_empty() {
                format!("{} is {}", rule.metric, status.as_str())
            } else {
                rule.message.clone()
            };
            alerts.push(Alert {
                rule: rule.name.clone(),
                metric: rule.metric.to_string(),
                severity: rule.severity.as_str().to_string(),
                schedule: rule.schedule.as_str().to_string(),
                status: status.as_str().to_string(),
                value: v.value,
                threshold,
                message: format!(
                    "{what}: {} = {value_text}{threshold_text} on {date} {dims}",
                    rule.metric
                ),
                dimensions: dims,
            });
        }
    }
    // Most severe first; within a severity, rule order.
    alerts.sort_by_key(|a| match a.severity.as_str() {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    });
    alerts
}

pub fn alerts_batch(
    alerts: &[Alert],
    fired_at_us: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let strings = |f: &dyn Fn(&Alert) -> &str| -> ArrayRef {
        Arc::new(
            alerts
                .iter()
                .map(|a| Some(f(a)))
                .collect::<arrow::array::StringArray>(),
        )
    };
    let floats = |f: &dyn Fn(&Alert) -> Option<f64>| -> ArrayRef {
        Arc::new(alerts.iter().map(f).collect::<Float64Array>())
    };
    RecordBatch::try_new(
        alerts_schema(),
        vec![
            strings(&|a| &a.rule),
            strings(&|a| &a.metric),
            strings(&|a| &a.severity),
            strings(&|a| &a.schedule),
            strings(&|a| &a.status),
            floats(&|a| a.value),
            floats(&|a| a.threshold),
            strings(&|a| &a.dimensions),
            strings(&|a| &a.message),
            Arc::new(
                TimestampMicrosecondArray::from(vec![fired_at_us; alerts.len()])
                    .with_timezone("UTC"),
            ),
        ],
    )
}

/// Replaces the day's file of `table` ([`partition::day_file`]) with
/// `batch`, with the lake's writer ([`parquet::write_replacing`]): a reader
/// sees the old day or the new one, never a mix or a torn file. Returns the
/// path written.
pub fn write_day(
    lake_root: &Path,
    lake: &LakeConfig,
    table: &str,
    date: NaiveDate,
    batch: &RecordBatch,
) -> Result<PathBuf, String> {
    let path = partition::day_file(lake_root, table, date);
    parquet::write_replacing(&path, batch, &parquet::derived_writer_properties(lake))
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::def::Severity;

    fn value(status: &str, v: f64) -> MetricValue {
        MetricValue {
            metric: "win_rate".into(),
            dimensions: BTreeMap::from([("mode".into(), "scalp".into())]),
            value: Some(v),
            unit: "ratio".into(),
            status: status.into(),
            target: None,
        }
    }

    #[test]
    fn rules_fire_on_their_status_or_worse_and_weekly_on_sundays() {
        let rule = |when, schedule| AlertRule {
            name: "r".into(),
            metric: crate::metrics::MetricName::parse("win_rate").unwrap(),
            when,
            severity: Severity::Warning,
            schedule,
            message: String::new(),
        };
        let values = [
            value("ok", 0.6),
            value("warning", 0.44),
            value("critical", 0.3),
        ];
        let monday = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let fired = evaluate_alerts(
            &[rule(Status::Warning, Schedule::Daily)],
            &[],
            monday,
            &values,
        );
        assert_eq!(fired.len(), 2);
        let fired = evaluate_alerts(
            &[rule(Status::Critical, Schedule::Daily)],
            &[],
            monday,
            &values,
        );
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].dimensions, r#"{"mode":"scalp"}"#);
        assert!(
            evaluate_alerts(
                &[rule(Status::Warning, Schedule::Weekly)],
                &[],
                monday,
                &values
            )
            .is_empty()
        );
        assert_eq!(
            evaluate_alerts(
                &[rule(Status::Warning, Schedule::Weekly)],
                &[],
                sunday,
                &values
            )
            .len(),
            2
        );
    }
}
