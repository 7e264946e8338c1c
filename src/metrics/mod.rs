//! Metric definitions (`configs/metrics.yaml`) and SQL analyses
//! (`sql/analysis/*.sql`): read, validated, and compiled into DataFusion plans
//! that the query engine serves as the `metrics` and `analysis` schemas.
//!
//! Nothing here pastes text into SQL: a formula is parsed as one expression,
//! checked against an allowlist, resolved against its source's schema, and
//! the view is built as a plan; its SQL is the unparser's rendering of that
//! plan.

pub mod analysis;
pub mod compile;
pub mod def;
mod drawdown;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};

pub use analysis::Analysis;
pub use compile::{CompiledMetric, check_expr, compile_metrics, plan_analyses, plan_sql};
pub use def::{AlertRule, MetricDef, MetricSource, MetricsFile, Schedule, Severity, Status};
pub use drawdown::max_drawdown_udaf;

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

/// Where the definitions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionPaths {
    /// `metrics.yaml`; a missing file means no metrics.
    pub metrics_file: PathBuf,
    /// `*.sql` analyses; a missing directory means no analyses.
    pub analysis_dir: PathBuf,
    /// `gates.yaml`, whose `explain` templates `explain_gate` fills; a
    /// missing file means the built-in one.
    pub gates_file: PathBuf,
}

/// Every definition, read and validated (not yet compiled: that needs the
/// engine's catalog).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    pub metrics: MetricsFile,
    pub analyses: Vec<Analysis>,
    /// The gates file read (`None`: the built-in one).
    pub gates: Option<crate::gates::GatesConfig>,
}

impl Definitions {
    /// Reads both; all or nothing. Missing paths are empty definitions.
    pub fn load(paths: &DefinitionPaths) -> Result<Definitions, MetricsError> {
        let metrics = if paths.metrics_file.exists() {
            MetricsFile::load(&paths.metrics_file)?
        } else {
            MetricsFile {
                path: paths.metrics_file.clone(),
                ..MetricsFile::default()
            }
        };
        let analyses = if paths.analysis_dir.exists() {
            analysis::load_dir(&paths.analysis_dir)?
        } else {
            Vec::new()
        };
        let gates = if paths.gates_file.exists() {
            Some(
                crate::gates::GatesConfig::load(&paths.gates_file)
                    .map_err(|e| MetricsError::file(&paths.gates_file, e.message))?,
            )
        } else {
            None
        };
        Ok(Definitions {
            metrics,
            analyses,
            gates,
        })
    }
}
