//! `metrics compute` as a job: for each day, every metric's view, then the
//! alert rules over the values, written to the lake tables `metric_values`
//! and `alerts` (replacing the day's files, so a re-run never duplicates).
//! Runs on the data dir or through the server that holds it; the caller
//! reports progress and results.

use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use datafusion::common::ScalarValue;

use super::{Load, Session};
use crate::config::Config;
use crate::metrics::values::{
    self, ALERTS, Alert, METRIC_VALUES, MetricValue, evaluate_alerts, read_metric_rows,
};
use crate::metrics::{Definitions, MetricDef};
use crate::query::param;
use crate::store::{LakeConfig, Layout};

/// What one day came to.
#[derive(Debug)]
pub enum DayOutcome {
    /// Every metric answered; values and alerts are in the lake.
    Written {
        values: Vec<MetricValue>,
        alerts: Vec<Alert>,
        values_path: PathBuf,
    },
    /// Some metrics failed; nothing of the day was written.
    Failed { errors: Vec<String> },
}

pub struct MetricsJob {
    session: Session,
    definitions: Definitions,
    lake_root: PathBuf,
    /// The lake's writer settings (compression, row groups).
    lake: LakeConfig,
    jobs: usize,
}

impl MetricsJob {
    /// Opens a session on the data dir (or `server`, or the server holding
    /// the dir) with the definitions compiled; `jobs` metrics run at a time.
    pub async fn open(config: &Config, server: Option<&str>, jobs: usize) -> anyhow::Result<Self> {
        let session = Session::open(config, server, Load::Required).await?;
        // On the data dir, the definitions the engine compiled; through a
        // server, the local file names the metrics and holds the alert rules
        // (the server's own views answer).
        let definitions = match &session {
            Session::Local { engine, .. } => engine.definitions().definitions.clone(),
            Session::Remote { .. } => Definitions::load(&config.definition_paths())?,
        };
        Ok(Self {
            session,
            definitions,
            lake_root: Layout::new(&config.data_dir).lake(),
            lake: config.store_config().lake,
            jobs,
        })
    }

    pub fn metrics(&self) -> &[MetricDef] {
        &self.definitions.metrics.metrics
    }

    /// The server's URL, if the job runs through one.
    pub fn server_url(&self) -> Option<&str> {
        self.session.server_url()
    }

    /// Computes `day`: `done` is called once per metric of the file (a
    /// snapshot metric belongs to today only, and counts as done on other
    /// days).
    pub async fn compute_day(
        &mut self,
        day: NaiveDate,
        done: impl Fn(),
    ) -> anyhow::Result<DayOutcome> {
        let today = Utc::now().date_naive();
        let todo: Vec<MetricDef> = self
            .metrics()
            .iter()
            .filter(|def| !def.is_snapshot() || day == today)
            .cloned()
            .collect();
        for _ in todo.len()..self.metrics().len() {
            done();
        }
        let sqls: Vec<(String, Vec<ScalarValue>)> = todo
            .iter()
            .map(|def| {
                // The view's name is a `MetricName` (an identifier, checked when
                // made), quoted; the day is bound.
                (
                    format!("SELECT * FROM metrics.\"{}\" WHERE day = $1", def.name),
                    vec![param::date(day)],
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let mut results = self.session.query_all(sqls.clone(), self.jobs, done).await;
        // Queries in flight together share the memory pool; one that ran out
        // (a percentile holds its values) gets a second go on its own.
        for ((sql, params), result) in sqls.into_iter().zip(results.iter_mut()) {
            if result.is_err() {
                *result = self.session.query_with(&sql, params).await;
            }
        }
        tracing::debug!(%day, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "metrics computed");
        let mut day_values: Vec<MetricValue> = Vec::new();
        let mut errors = Vec::new();
        for (def, result) in todo.iter().zip(results) {
            match result {
                Ok(batches) => match read_metric_rows(&batches) {
                    Ok(rows) => day_values.extend(rows),
                    Err(e) => errors.push(format!("{}: {e}", def.name)),
                },
                Err(e) => errors.push(format!("{}: {e:#}", def.name)),
            }
        }
        if !errors.is_empty() {
            return Ok(DayOutcome::Failed { errors });
        }
        let alerts = evaluate_alerts(
            &self.definitions.metrics.alerts,
            self.metrics(),
            day,
            &day_values,
        );
        let now_us = Utc::now().timestamp_micros();
        // Parquet encoding and fsyncs: off the async runtime.
        let values_batch = values::metric_values_batch(&day_values, now_us)?;
        let alerts_batch = values::alerts_batch(&alerts, now_us)?;
        let (root, lake) = (self.lake_root.clone(), self.lake.clone());
        let values_path = tokio::task::spawn_blocking(move || {
            let path = values::write_day(&root, &lake, METRIC_VALUES, day, &values_batch)?;
            values::write_day(&root, &lake, ALERTS, day, &alerts_batch)?;
            Ok::<_, String>(path)
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        Ok(DayOutcome::Written {
            values: day_values,
            alerts,
            values_path,
        })
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.session.close().await
    }
}
