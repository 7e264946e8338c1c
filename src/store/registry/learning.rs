//! The learning tracker: training sessions and the feature importance of
//! each, in the registry file but queried as schema `learning`.

use arrow::array::RecordBatch;
use rusqlite::params;
use rusqlite::types::Value;

use super::ids::{AsModelId, ModelId};
use super::{Registry, RegistryError, check_json_object};

/// The registry file's relations that belong to schema `learning`; the rest
/// are schema `registry`.
pub const LEARNING_RELATIONS: &[&str] = &[
    "training_sessions",
    "feature_importance",
    "v_feature_importance_evolution",
    "v_daily_training",
    "v_learning_curve",
];

/// One training run, for the learning tracker.
#[derive(Debug, Clone)]
pub struct TrainingSession {
    pub session_id: String,
    pub model_id: Option<ModelId>,
    pub started_ts: i64,
    pub duration_s: f64,
    pub samples: i64,
    pub auc: Option<f64>,
    pub logloss: Option<f64>,
    /// JSON object.
    pub metrics: String,
}

impl Registry {
    /// A model's training sessions and their feature importance.
    pub fn feature_importance_of(
        &self,
        model_id: &(impl AsModelId + ?Sized),
    ) -> Result<Vec<RecordBatch>, RegistryError> {
        let model_id = &*model_id.as_model_id()?;
        self.query(
            "SELECT feature, importance, rank, importance_change FROM v_feature_importance_evolution
             WHERE model_id = ?1 ORDER BY rank",
            &[Value::Text(model_id.to_string())],
            "v_feature_importance_evolution",
        )
    }

    /// Training sessions started in [from, to) (µs), oldest first.
    pub fn training_between(&self, from: i64, to: i64) -> Result<Vec<RecordBatch>, RegistryError> {
        self.query(
            "SELECT session_id, model_id, started_ts, duration_s, samples, auc, logloss
             FROM training_sessions WHERE started_ts >= ?1 AND started_ts < ?2
             ORDER BY started_ts",
            &[Value::Integer(from), Value::Integer(to)],
            "training_sessions",
        )
    }

    /// Records a training run and its feature importance (ranked by value).
    pub fn record_training(
        &mut self,
        session: &TrainingSession,
        importance: &[(String, f64)],
    ) -> Result<(), RegistryError> {
        let metrics = check_json_object("metrics", &session.metrics)?;
        let mut ranked: Vec<(String, f64)> = importance.to_vec();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO training_sessions (session_id, model_id, started_ts,
                     duration_s, samples, auc, logloss, metrics)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    session.session_id,
                    session.model_id.as_deref(),
                    session.started_ts,
                    session.duration_s.max(0.0),
                    session.samples.max(0),
                    session.auc,
                    session.logloss,
                    metrics
                ],
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO feature_importance (session_id, feature, importance, rank)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (rank, (feature, value)) in ranked.iter().enumerate() {
                stmt.execute(params![session.session_id, feature, value, rank as i64 + 1])?;
            }
            Ok(())
        })
    }
}
