//! Metric definitions (`metrics.yaml`) and SQL analyses (`analysis/*.sql`):
//! read, validated, and compiled into DataFusion plans that the query engine
//! serves as the `metrics` and `analysis` schemas. They are read from the data
//! dir's own copy (`<data>/configs/`, seeded from [`builtin`]) unless the
//! config names other paths.
//!
//! Nothing here pastes text into SQL: a formula is parsed as one expression,
//! checked against an allowlist, resolved against its source's schema, and
//! the view is built as a plan; its SQL is the unparser's rendering of that
//! plan.

pub mod analysis;
pub mod builtin;
mod calibration;
pub mod compile;
pub mod def;
mod drawdown;
pub mod name;
pub mod values;
mod win_rate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use analysis::Analysis;
pub use calibration::{CALIBRATION_BINS, calibration_udaf};
pub use compile::{
    CompiledMetric, check_expr, compile_metrics, plan_analyses, plan_analysis, plan_sql,
};
pub use def::{AlertRule, MetricDef, MetricSource, MetricsFile, Schedule, Severity, Status};
pub use drawdown::max_drawdown_udaf;
pub use name::{BadMetricName, MetricName};
pub use win_rate::win_rate_udaf;

/// What a definition error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Metric(String),
    Alert(String),
    Analysis(String),
}

/// A definition error: names the file, the metric (or alert or analysis) and
/// the key, then says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MetricsError {
    pub file: PathBuf,
    pub item: Option<Item>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match &self.item {
            Some(Item::Metric(name)) => write!(f, ": metric `{name}`")?,
            Some(Item::Alert(name)) => write!(f, ": alert `{name}`")?,
            Some(Item::Analysis(name)) => write!(f, ": analysis `{name}`")?,
            None => {}
        }
        match &self.key {
            Some(key) if !key.is_empty() => {
                let sep = if self.item.is_some() { "," } else { ":" };
                write!(f, "{sep} key `{key}`")?
            }
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl MetricsError {
    pub fn file(file: &Path, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            item: None,
            key: None,
            message,
        }
    }

    pub fn metric(file: &Path, name: &str, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            item: Some(Item::Metric(name.to_string())),
            key: None,
            message,
        }
    }

    pub fn key(file: &Path, metric: Option<&str>, key: &str, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            item: metric.map(|m| Item::Metric(m.to_string())),
            key: Some(key.to_string()),
            message,
        }
    }

    pub fn alert(file: &Path, name: &str, key: &str, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            item: Some(Item::Alert(name.to_string())),
            key: Some(key.to_string()),
            message,
        }
    }

    pub fn analysis(file: &Path, name: &str, message: String) -> Self {
        Self {
            file: file.to_path_buf(),
            item: Some(Item::Analysis(name.to_string())),
            key: None,
            message,
        }
    }
}

/// Where the definitions live. Each must exist: a missing file is an error
/// naming it, never an empty catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionPaths {
    /// `metrics.yaml`.
    pub metrics_file: PathBuf,
    /// The directory of `*.sql` analyses.
    pub analysis_dir: PathBuf,
    /// `gates.yaml`, whose `explain` templates `explain_gate` fills.
    pub gates_file: PathBuf,
    /// The data dir whose `configs/` holds some of them: seeded with the
    /// built-in definitions before the first read ([`builtin::seed`]).
    pub data_dir: Option<crate::store::Layout>,
}

impl DefinitionPaths {
    /// The data dir's own copy.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let layout = crate::store::Layout::new(data_dir);
        Self {
            metrics_file: layout.metrics_file(),
            analysis_dir: layout.analysis_dir(),
            gates_file: layout.gates_file(),
            data_dir: Some(layout),
        }
    }

    /// Seeds the data dir's copy if it has none. Called by whoever opens the
    /// data dir for writing (a server, a local session); until then, reads
    /// of the dir's paths get the built-in definitions.
    pub fn prepare(&self) -> Result<(), MetricsError> {
        if let Some(layout) = &self.data_dir {
            let seeded = builtin::seed(layout).map_err(|e| {
                MetricsError::file(
                    &layout.configs(),
                    format!("writing the built-in definitions: {e}"),
                )
            })?;
            if seeded {
                tracing::info!(dir = %layout.configs().display(), "wrote the built-in definitions");
                builtin::warn_about_working_directory_copies(layout);
            }
        }
        Ok(())
    }

    /// Whether `path` is in a data dir's copy that is not written yet: then
    /// it reads as the built-in definition.
    fn is_unseeded(&self, path: &Path) -> bool {
        self.data_dir
            .as_ref()
            .is_some_and(|l| path.starts_with(l.configs()) && !l.configs().exists())
    }

    /// The gates whose `explain` templates the explainer fills.
    pub fn gates(&self) -> Result<crate::gates::GatesConfig, MetricsError> {
        let gates = if self.is_unseeded(&self.gates_file) {
            crate::gates::GatesConfig::builtin()
        } else {
            self.check_exists(&self.gates_file)?;
            crate::gates::GatesConfig::load(&self.gates_file)
        };
        gates.map_err(|e| MetricsError::file(&self.gates_file, e.message))
    }

    /// What to do about a definition file that is not there.
    fn missing_hint(&self, path: &Path) -> String {
        match &self.data_dir {
            Some(layout) if path.starts_with(layout.configs()) => format!(
                "not found in the data dir's definitions; restore it, or delete {} \
                 to get the built-in definitions back on the next start",
                layout.configs().display()
            ),
            _ => "not found; check the [metrics] paths of the config \
                  (unset, they are the data dir's own configs/)"
                .to_string(),
        }
    }

    /// The error for `path` if it is missing, else `None`.
    fn check_exists(&self, path: &Path) -> Result<(), MetricsError> {
        if path.exists() {
            Ok(())
        } else {
            Err(MetricsError::file(path, self.missing_hint(path)))
        }
    }
}

/// Every definition, read and validated (not yet compiled: that needs the
/// engine's catalog).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    pub metrics: MetricsFile,
    pub analyses: Vec<Analysis>,
    /// The gates file read (`None` only in definitions built by hand: then
    /// the built-in one).
    pub gates: Option<crate::gates::GatesConfig>,
}

impl Definitions {
    /// Reads all three; all or nothing. A missing file is an error naming
    /// it; a data dir whose copy is not written yet reads as the built-in
    /// definitions.
    pub fn load(paths: &DefinitionPaths) -> Result<Definitions, MetricsError> {
        let metrics = if paths.is_unseeded(&paths.metrics_file) {
            MetricsFile::parse(&paths.metrics_file, builtin::METRICS_YAML)?
        } else {
            paths.check_exists(&paths.metrics_file)?;
            MetricsFile::load(&paths.metrics_file)?
        };
        let analyses = if paths.is_unseeded(&paths.analysis_dir) {
            builtin::ANALYSES
                .iter()
                .map(|(file, sql)| {
                    let name = file.trim_end_matches(".sql");
                    analysis::parse(&paths.analysis_dir.join(file), name, sql)
                })
                .collect::<Result<_, _>>()?
        } else {
            paths.check_exists(&paths.analysis_dir)?;
            analysis::load_dir(&paths.analysis_dir)?
        };
        Ok(Definitions {
            metrics,
            analyses,
            gates: Some(paths.gates()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StructArray};
    use arrow::datatypes::{DataType, Field, Float64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::{CALIBRATION_BINS, calibration_udaf, win_rate_udaf};
    use crate::analytics::{Calibration, TradeStats};

    /// The SQL aggregates and the Rust definitions give one number each, over
    /// rows split across four partitions (so states are merged).
    #[tokio::test]
    async fn the_sql_aggregates_equal_the_analytics_definitions() {
        let n = 997;
        let pnl: Vec<f64> = (0..n)
            .map(|i| ((i * 7919) % 113 - 56) as f64 * 0.37)
            .collect();
        let prob: Vec<f64> = (0..n)
            .map(|i| ((i * 104_729) % 1001) as f64 / 1000.0)
            .collect();
        let label: Vec<f64> = (0..n)
            .map(|i| f64::from(((i * 31) % 7 < 3) as u8))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("pnl", DataType::Float64, true),
            Field::new("p", DataType::Float64, true),
            Field::new("label", DataType::Float64, true),
        ]));
        let partitions: Vec<Vec<RecordBatch>> = (0..4)
            .map(|k| {
                let part = |v: &[f64]| -> Arc<dyn Array> {
                    Arc::new(Float64Array::from(
                        v.iter().skip(k).step_by(4).copied().collect::<Vec<_>>(),
                    ))
                };
                vec![
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![part(&pnl), part(&prob), part(&label)],
                    )
                    .unwrap(),
                ]
            })
            .collect();
        let ctx = SessionContext::new();
        ctx.register_udaf(win_rate_udaf());
        ctx.register_udaf(calibration_udaf());
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(schema, partitions).unwrap()),
        )
        .unwrap();
        let batches = ctx
            .sql("SELECT win_rate(pnl) AS w, calibration(p, label) AS c FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = batches.iter().find(|b| b.num_rows() > 0).unwrap();
        let w = batch.column(0).as_primitive::<Float64Type>().value(0);
        let c: &StructArray = batch.column(1).as_struct();
        let field = |name: &str| {
            c.column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .value(0)
        };

        let stats = TradeStats::from_returns(&pnl);
        assert_eq!(Some(w), stats.win_rate);
        let pairs: Vec<(f64, bool)> = prob
            .iter()
            .zip(&label)
            .map(|(p, y)| (*p, *y == 1.0))
            .collect();
        let rust = Calibration::compute(&pairs, CALIBRATION_BINS).unwrap();
        assert!(rust.ece > 0.01 && rust.brier > 0.1, "{rust:?}");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            close(field("ece"), rust.ece),
            "{} vs {}",
            field("ece"),
            rust.ece
        );
        assert!(
            close(field("mce"), rust.mce),
            "{} vs {}",
            field("mce"),
            rust.mce
        );
        assert!(
            close(field("brier"), rust.brier),
            "{} vs {}",
            field("brier"),
            rust.brier
        );
        let samples = c.column_by_name("samples").unwrap();
        assert_eq!(
            samples
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            rust.samples as i64
        );
    }
}
