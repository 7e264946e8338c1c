//! `metrics.yaml`: serde mirror structs, then validation into [`MetricDef`]s
//! and [`AlertRule`]s. Only validated definitions reach the compiler.
//!
//! ```yaml
//! version: 1
//! metrics:
//!   - name: win_rate
//!     description: Share of closed trades that made money
//!     unit: ratio
//!     source: events.trades
//!     filter: "kind = 'CLOSE'"
//!     formula: "win_rate(pnl_bps)"
//!     dimensions: [mode]
//!     thresholds: { direction: below, warning: 0.45, critical: 0.40 }
//!     targets: { scalp: 0.55, runner: 0.45 }
//!   - name: expectancy_bps            # derived from other metrics
//!     inputs: [win_rate, avg_win_bps, avg_loss_bps]
//!     formula: "win_rate * avg_win_bps - (1 - win_rate) * avg_loss_bps"
//!     dimensions: [mode]
//! alerts:
//!   - { name: win_rate_low, metric: win_rate, when: critical, severity: critical, schedule: daily }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::MetricsError;
use super::name::{MetricName, is_identifier};

/// `metrics.yaml` larger than this is refused before parsing.
pub const FILE_BYTES_MAX: u64 = 4 << 20;
/// A formula or filter longer than this is refused before parsing.
pub const EXPR_BYTES_MAX: usize = 4096;
pub const METRICS_MAX: usize = 1000;
pub use super::name::RESERVED_NAMES;
/// Schemas a metric may read from.
pub const SOURCE_SCHEMAS: &[&str] = &[
    "events", "journal", "registry", "learning", "system", "analysis",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    version: u32,
    #[serde(default)]
    metrics: Vec<serde_yaml::Value>,
    #[serde(default)]
    alerts: Vec<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpec {
    name: String,
    #[serde(default)]
    description: String,
    unit: String,
    source: Option<String>,
    inputs: Option<Vec<String>>,
    formula: String,
    filter: Option<String>,
    /// The time column days are cut on (default `ts`); `none` for a snapshot
    /// of the present (system tables).
    time: Option<String>,
    #[serde(default)]
    dimensions: Vec<String>,
    thresholds: Option<ThresholdSpec>,
    #[serde(default)]
    targets: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdSpec {
    direction: Direction,
    warning: Option<f64>,
    critical: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertSpec {
    name: String,
    metric: String,
    when: Status,
    severity: Severity,
    schedule: Schedule,
    #[serde(default)]
    message: String,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Bad when the value rises to the threshold or above.
    Above,
    /// Bad when the value falls to the threshold or below.
    Below,
}

/// A metric value's state against its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// When an alert rule is evaluated by `metrics compute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every run, and the metric views show it live.
    Realtime,
    /// Every computed day.
    Daily,
    /// Computed days that are Sundays (the end of an ISO week).
    Weekly,
}

impl Schedule {
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Realtime => "realtime",
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub direction: Direction,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

/// Where a metric's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// One table or view, `schema.name`, cut into days on `time`
    /// (`None`: a snapshot of the present).
    Table {
        schema: String,
        table: String,
        time: Option<String>,
    },
    /// Other metrics, joined on day and dimensions.
    Derived { inputs: Vec<MetricName> },
}

/// One validated metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub name: MetricName,
    pub description: String,
    pub unit: String,
    pub source: MetricSource,
    pub formula: String,
    pub filter: Option<String>,
    pub dimensions: Vec<String>,
    pub thresholds: Option<Thresholds>,
    /// Per-mode targets (`scalp`, `runner`); only with the `mode` dimension.
    pub targets: BTreeMap<String, f64>,
}

impl MetricDef {
    pub fn is_snapshot(&self) -> bool {
        matches!(self.source, MetricSource::Table { time: None, .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub metric: MetricName,
    /// Fires on this status or worse.
    pub when: Status,
    pub severity: Severity,
    pub schedule: Schedule,
    pub message: String,
}

/// Everything in one `metrics.yaml`, validated, metrics in dependency order
/// (inputs before the metrics derived from them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsFile {
    pub path: PathBuf,
    pub metrics: Vec<MetricDef>,
    pub alerts: Vec<AlertRule>,
}

fn is_column_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && s.len() <= 63
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

impl MetricsFile {
    /// Reads and validates `path`: all or nothing.
    pub fn load(path: &Path) -> Result<MetricsFile, MetricsError> {
        let file_err = |message: String| MetricsError::file(path, message);
        let size = std::fs::metadata(path)
            .map_err(|e| file_err(format!("cannot read: {e}")))?
            .len();
        if size > FILE_BYTES_MAX {
            return Err(file_err(format!(
                "{size} bytes; a metrics file may have at most {FILE_BYTES_MAX}"
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<MetricsFile, MetricsError> {
        let file_err = |message: String| MetricsError::file(path, message);
        if text.len() as u64 > FILE_BYTES_MAX {
            return Err(file_err(format!(
                "{} bytes; a metrics file may have at most {FILE_BYTES_MAX}",
                text.len()
            )));
        }
        let spec: FileSpec = serde_yaml::from_str(text).map_err(|e| file_err(e.to_string()))?;
        if spec.version != 1 {
            return Err(MetricsError::key(
                path,
                None,
                "version",
                format!(
                    "version {} is not supported; this build reads version 1",
                    spec.version
                ),
            ));
        }
        if spec.metrics.len() > METRICS_MAX {
            return Err(file_err(format!(
                "{} metrics; at most {METRICS_MAX}",
                spec.metrics.len()
            )));
        }
        let mut metrics = Vec::with_capacity(spec.metrics.len());
        let mut seen = HashSet::new();
        for (i, value) in spec.metrics.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("#{}", i + 1), str::to_string);
            let spec: MetricSpec = serde_yaml::from_value(value)
                .map_err(|e| MetricsError::metric(path, &label, e.to_string()))?;
            let def = validate_metric(path, spec)?;
            if !seen.insert(def.name.clone()) {
                return Err(MetricsError::key(
                    path,
                    Some(&def.name),
                    "name",
                    "defined twice".into(),
                ));
            }
            metrics.push(def);
        }
        let metrics = order_by_inputs(path, metrics)?;
        let by_name: HashMap<&str, &MetricDef> =
            metrics.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut alerts = Vec::with_capacity(spec.alerts.len());
        let mut alert_names = HashSet::new();
        for (i, value) in spec.alerts.into_iter().enumerate() {
            let label = value
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("#{}", i + 1), str::to_string);
            let alert_err =
                |key: &str, message: String| MetricsError::alert(path, &label, key, message);
            let spec: AlertSpec =
                serde_yaml::from_value(value).map_err(|e| alert_err("", e.to_string()))?;
            if !is_identifier(&spec.name) {
                return Err(alert_err(
                    "name",
                    "use lower case letters, digits and _ (at most 63)".into(),
                ));
            }
            if !alert_names.insert(spec.name.clone()) {
                return Err(alert_err("name", "defined twice".into()));
            }
            let Some(metric) = by_name.get(spec.metric.as_str()) else {
                return Err(alert_err(
                    "metric",
                    format!("no metric is named `{}`", spec.metric),
                ));
            };
            if metric.thresholds.is_none() {
                return Err(alert_err(
                    "metric",
                    format!("metric `{}` has no thresholds to alert on", spec.metric),
                ));
            }
            if spec.when == Status::Ok {
                return Err(alert_err("when", "use warning or critical".into()));
            }
            alerts.push(AlertRule {
                name: spec.name,
                metric: metric.name.clone(),
                when: spec.when,
                severity: spec.severity,
                schedule: spec.schedule,
                message: spec.message,
            });
        }
        Ok(MetricsFile {
            path: path.to_path_buf(),
            metrics,
            alerts,
        })
    }

    pub fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// Validates one metric's spec into a [`MetricDef`]; an error names the key
/// that is wrong. The checks run key by key: name and unit, expression sizes,
/// dimensions, source, thresholds, targets.
fn validate_metric(path: &Path, spec: MetricSpec) -> Result<MetricDef, MetricsError> {
    let name = spec.name.clone();
    let err = |key: &str, message: String| MetricsError::key(path, Some(&name), key, message);
    let name = validate_name_and_unit(&spec, &err)?;
    validate_expr_sizes(&spec, &err)?;
    let dimensions = validate_dimensions(&spec.dimensions, &err)?;
    let source = validate_source(&spec, &err)?;
    let thresholds = spec
        .thresholds
        .map(|t| validate_thresholds(t, &err))
        .transpose()?;
    validate_targets(&spec.targets, &dimensions, &err)?;
    Ok(MetricDef {
        name,
        description: spec.description,
        unit: spec.unit,
        source,
        formula: spec.formula,
        filter: spec.filter,
        dimensions,
        thresholds,
        targets: spec.targets,
    })
}

/// The name is a [`MetricName`]; the unit is given and short.
fn validate_name_and_unit(
    spec: &MetricSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<MetricName, MetricsError> {
    let name = MetricName::parse(&spec.name).map_err(|e| err("name", e.to_string()))?;
    if spec.unit.trim().is_empty() || spec.unit.len() > 32 {
        return Err(err("unit", "give a unit of at most 32 characters".into()));
    }
    Ok(name)
}

/// The formula and the filter are not empty and at most [`EXPR_BYTES_MAX`]
/// long, checked before anything parses them.
fn validate_expr_sizes(
    spec: &MetricSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<(), MetricsError> {
    for (key, text) in [
        ("formula", Some(&spec.formula)),
        ("filter", spec.filter.as_ref()),
    ] {
        if let Some(text) = text {
            if text.len() > EXPR_BYTES_MAX {
                return Err(err(
                    key,
                    format!("{} bytes; at most {EXPR_BYTES_MAX}", text.len()),
                ));
            }
            if text.trim().is_empty() {
                return Err(err(key, "empty".into()));
            }
        }
    }
    Ok(())
}

/// The dimensions as column names, each once, without `day`.
fn validate_dimensions(
    listed: &[String],
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<Vec<String>, MetricsError> {
    let mut dimensions: Vec<String> = Vec::new();
    for dimension in listed {
        // Every metric is cut by day; naming it is allowed and changes nothing.
        if dimension == "day" {
            continue;
        }
        if !is_column_name(dimension) {
            return Err(err(
                "dimensions",
                format!("`{dimension}` is not a column name"),
            ));
        }
        if dimensions.contains(dimension) {
            return Err(err("dimensions", format!("`{dimension}` is listed twice")));
        }
        dimensions.push(dimension.clone());
    }
    Ok(dimensions)
}

/// Exactly one of `source` (a table) and `inputs` (other metrics).
fn validate_source(
    spec: &MetricSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<MetricSource, MetricsError> {
    match (&spec.source, &spec.inputs) {
        (Some(_), Some(_)) => Err(err(
            "inputs",
            "give either source (a table) or inputs (other metrics), not both".into(),
        )),
        (None, None) => Err(err(
            "source",
            "missing: give a source table or view, or inputs".into(),
        )),
        (Some(source), None) => table_source(source, spec, err),
        (None, Some(inputs)) => derived_source(inputs, spec, err),
    }
}

/// A table or view in one of [`SOURCE_SCHEMAS`], cut into days on `time`
/// (default `ts`; `none` for a snapshot).
fn table_source(
    source: &str,
    spec: &MetricSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<MetricSource, MetricsError> {
    let Some((schema, table)) = source.split_once('.') else {
        return Err(err(
            "source",
            format!("`{source}`: write schema.table, e.g. events.trades"),
        ));
    };
    if !SOURCE_SCHEMAS.contains(&schema) || !is_column_name(table) {
        return Err(err(
            "source",
            format!(
                "`{source}`: a source is a table or view in one of {}",
                SOURCE_SCHEMAS.join(", ")
            ),
        ));
    }
    let time = match spec.time.as_deref() {
        None => Some("ts".to_string()),
        Some("none") => None,
        Some(column) if is_column_name(column) => Some(column.to_string()),
        Some(column) => {
            return Err(err("time", format!("`{column}` is not a column name")));
        }
    };
    if spec.filter.is_some() && spec.filter.as_deref() == Some("") {
        return Err(err("filter", "empty".into()));
    }
    Ok(MetricSource::Table {
        schema: schema.to_string(),
        table: table.to_string(),
        time,
    })
}

/// Other metrics by name; the days and the rows come from them, so no filter
/// and no time column.
fn derived_source(
    inputs: &[String],
    spec: &MetricSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<MetricSource, MetricsError> {
    if inputs.is_empty() {
        return Err(err("inputs", "empty".into()));
    }
    if spec.filter.is_some() {
        return Err(err(
            "filter",
            "a derived metric has no filter; filter its inputs".into(),
        ));
    }
    if spec.time.is_some() {
        return Err(err(
            "time",
            "a derived metric takes its days from its inputs".into(),
        ));
    }
    let inputs = inputs
        .iter()
        .map(|input| {
            MetricName::parse(input)
                .map_err(|_| err("inputs", format!("`{input}` is not a metric name")))
        })
        .collect::<Result<_, _>>()?;
    Ok(MetricSource::Derived { inputs })
}

/// Warning, critical or both, finite, and in order for the bad direction.
fn validate_thresholds(
    t: ThresholdSpec,
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<Thresholds, MetricsError> {
    if t.warning.is_none() && t.critical.is_none() {
        return Err(err("thresholds", "give warning, critical or both".into()));
    }
    if t.warning.is_some_and(|v| !v.is_finite()) || t.critical.is_some_and(|v| !v.is_finite()) {
        return Err(err(
            "thresholds",
            "thresholds must be finite numbers".into(),
        ));
    }
    if let (Some(w), Some(c)) = (t.warning, t.critical) {
        let ordered = match t.direction {
            Direction::Above => w <= c,
            Direction::Below => w >= c,
        };
        if !ordered {
            return Err(err(
                "thresholds",
                format!(
                    "warning {w} must come before critical {c} when bad is {}",
                    match t.direction {
                        Direction::Above => "above",
                        Direction::Below => "below",
                    }
                ),
            ));
        }
    }
    Ok(Thresholds {
        direction: t.direction,
        warning: t.warning,
        critical: t.critical,
    })
}

/// Targets are per mode, so only with the `mode` dimension; each names a mode
/// and is finite.
fn validate_targets(
    targets: &BTreeMap<String, f64>,
    dimensions: &[String],
    err: &impl Fn(&str, String) -> MetricsError,
) -> Result<(), MetricsError> {
    if targets.is_empty() {
        return Ok(());
    }
    if !dimensions.iter().any(|d| d == "mode") {
        return Err(err(
            "targets",
            "targets are per mode: add mode to dimensions".into(),
        ));
    }
    for (mode, value) in targets {
        if mode.parse::<crate::event::Mode>().is_err() {
            return Err(err(
                "targets",
                format!("`{mode}` is not a mode (scalp, runner)"),
            ));
        }
        if !value.is_finite() {
            return Err(err(
                "targets",
                format!("target for {mode} must be a finite number"),
            ));
        }
    }
    Ok(())
}

/// Orders metrics so each comes after its inputs; an unknown input or a
/// cycle is an error that names it.
fn order_by_inputs(path: &Path, metrics: Vec<MetricDef>) -> Result<Vec<MetricDef>, MetricsError> {
    let index: HashMap<MetricName, usize> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    // 0 = not visited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; metrics.len()];
    let mut order = Vec::with_capacity(metrics.len());
    fn visit(
        i: usize,
        metrics: &[MetricDef],
        index: &HashMap<MetricName, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        trail: &mut Vec<usize>,
        path: &Path,
    ) -> Result<(), MetricsError> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = trail.iter().position(|&t| t == i).unwrap_or(0);
                let mut cycle: Vec<&str> = trail[start..]
                    .iter()
                    .map(|&t| metrics[t].name.as_str())
                    .collect();
                cycle.push(&metrics[i].name);
                return Err(MetricsError::key(
                    path,
                    Some(&metrics[i].name),
                    "inputs",
                    format!("cycle: {}", cycle.join(" -> ")),
                ));
            }
            _ => {}
        }
        state[i] = 1;
        trail.push(i);
        if let MetricSource::Derived { inputs } = &metrics[i].source {
            for input in inputs {
                let Some(&j) = index.get(input) else {
                    return Err(MetricsError::key(
                        path,
                        Some(&metrics[i].name),
                        "inputs",
                        format!("no metric is named `{input}`"),
                    ));
                };
                visit(j, metrics, index, state, order, trail, path)?;
                if metrics[j].dimensions != metrics[i].dimensions {
                    return Err(MetricsError::key(
                        path,
                        Some(&metrics[i].name),
                        "dimensions",
                        format!(
                            "must equal those of input `{input}` ([{}])",
                            metrics[j].dimensions.join(", ")
                        ),
                    ));
                }
                if metrics[j].is_snapshot() {
                    return Err(MetricsError::key(
                        path,
                        Some(&metrics[i].name),
                        "inputs",
                        format!("`{input}` is a snapshot (time: none); derive from daily metrics"),
                    ));
                }
            }
        }
        trail.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    let mut trail = Vec::new();
    for i in 0..metrics.len() {
        visit(
            i, &metrics, &index, &mut state, &mut order, &mut trail, path,
        )?;
    }
    let mut slots: Vec<Option<MetricDef>> = metrics.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricsFile, MetricsError> {
        MetricsFile::parse(Path::new("metrics.yaml"), text)
    }

    const BASE: &str = "version: 1\nmetrics:\n";

    fn metric(body: &str) -> String {
        format!("{BASE}  - name: m\n    unit: bps\n{body}")
    }

    #[test]
    fn a_valid_file_orders_inputs_first() {
        let file = parse(
            "version: 1
metrics:
  - { name: d, unit: bps, inputs: [a, b], formula: a - b }
  - { name: a, unit: bps, source: events.trades, formula: avg(pnl_bps) }
  - { name: b, unit: bps, source: events.trades, formula: avg(fees_bps),
      thresholds: { direction: above, warning: 1, critical: 2 } }
alerts:
  - { name: fees, metric: b, when: warning, severity: info, schedule: weekly }
",
        )
        .unwrap();
        let names: Vec<_> = file.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(file.alerts[0].schedule, Schedule::Weekly);
    }

    #[test]
    fn errors_name_the_file_the_metric_and_the_key() {
        let e = parse(&metric("    source: events.trades\n    formla: avg(x)\n")).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("metrics.yaml: metric `m`"), "{text}");
        assert!(text.contains("formla"), "{text}");

        let e = parse(&metric("    source: trades\n    formula: avg(x)\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metrics.yaml: metric `m`, key `source`: `trades`: write schema.table, e.g. events.trades"
        );
        let e = parse(&metric(
            "    source: events.trades\n    formula: avg(x)\n    targets: { scalp: 1 }\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("key `targets`"), "{e}");
        let e = parse(&metric(
            "    source: events.trades\n    formula: avg(x)\n    thresholds: { direction: below, warning: 1, critical: 2 }\n",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("warning 1 must come before critical 2"),
            "{e}"
        );
    }

    #[test]
    fn cycles_and_unknown_inputs_are_errors() {
        let e = parse(
            "version: 1
metrics:
  - { name: a, unit: x, inputs: [b], formula: b }
  - { name: b, unit: x, inputs: [c], formula: c }
  - { name: c, unit: x, inputs: [a], formula: a }
",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "metrics.yaml: metric `a`, key `inputs`: cycle: a -> b -> c -> a"
        );
        let e = parse("version: 1\nmetrics:\n  - { name: a, unit: x, inputs: [a], formula: a }\n")
            .unwrap_err();
        assert!(e.to_string().contains("cycle: a -> a"), "{e}");
        let e =
            parse("version: 1\nmetrics:\n  - { name: a, unit: x, inputs: [zz], formula: zz }\n")
                .unwrap_err();
        assert!(e.to_string().contains("no metric is named `zz`"), "{e}");
    }

    #[test]
    fn alias_bombs_and_huge_files_are_refused() {
        // A billion laughs inside a field that is read, so the aliases expand.
        let mut bomb = String::from(
            "version: 1\nmetrics:\n  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for i in 1..10 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "  - &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = parse(&bomb).unwrap_err();
        assert_eq!(e.to_string(), "metrics.yaml: repetition limit exceeded");

        let huge = "#".repeat(FILE_BYTES_MAX as usize + 1);
        let e = parse(&huge).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");

        let formula = format!("avg({})", "1+".repeat(600_000));
        let e = parse(&metric(&format!(
            "    source: events.trades\n    formula: \"{formula}\"\n"
        )))
        .unwrap_err();
        assert!(
            e.to_string().contains("key `formula`") && e.to_string().contains("at most 4096"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names_and_bad_alert_rules_are_errors() {
        let e = parse(
            "version: 1\nmetrics:\n  - { name: a, unit: x, source: events.trades, formula: count(*) }\n  - { name: a, unit: x, source: events.trades, formula: count(*) }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
        let e = parse(
            "version: 1\nmetrics:\n  - { name: a, unit: x, source: events.trades, formula: count(*) }\nalerts:\n  - { name: r, metric: a, when: critical, severity: info, schedule: daily }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no thresholds"), "{e}");
        let e = parse(
            "version: 1\nmetrics: []\nalerts:\n  - { name: r, metric: nope, when: critical, severity: loud, schedule: daily }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("alert `r`"), "{e}");
    }
}
