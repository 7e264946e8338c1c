//! The `learning` schema's views over events: calibration of the models'
//! predictions (per model and day, with reliability bins) and performance by
//! regime. Their SQL is Quiver's own, planned once when the engine starts.

use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::FutureExt;

use super::QueryError;

/// (name, SQL), in dependency order.
const VIEWS: &[(&str, &str)] = &[
    (
        // Each prediction with its label, once the label is known.
        "prediction_outcomes",
        // `day` is the partition column (the UTC date of `ts`), so a filter
        // on it prunes lake files.
        "SELECT p.model_id, p.signal_id, p.symbol, p.ts AS predicted_ts,
                p.date AS day, p.predicted_prob, l.label, l.ts AS labeled_ts
         FROM events.predictions p
         JOIN events.predictions l
           ON l.signal_id = p.signal_id AND l.model_id = p.model_id
          AND l.kind = 'LABELED' AND l.label IS NOT NULL
         WHERE p.kind = 'PREDICTED' AND p.predicted_prob BETWEEN 0.0 AND 1.0",
    ),
    (
        // Reliability diagram: 10 equal-width bins, the last one closed at 1.0.
        "calibration_bins",
        "SELECT model_id, day,
                CAST(least(floor(predicted_prob * 10), 9) AS INT) AS bin,
                count(*) AS samples,
                avg(predicted_prob) AS avg_predicted,
                avg(CAST(label AS DOUBLE)) AS observed_rate,
                calibration(predicted_prob, CAST(label AS DOUBLE))['brier'] AS brier
         FROM learning.prediction_outcomes
         GROUP BY model_id, day, CAST(least(floor(predicted_prob * 10), 9) AS INT)",
    ),
    (
        // ECE (sample-weighted gap), MCE (largest gap) and Brier per model
        // and day, by the `calibration` aggregate (analytics::CalibrationSums,
        // the definition `models compare` uses too).
        "calibration",
        "SELECT model_id, day, c['samples'] AS samples, c['ece'] AS ece,
                c['mce'] AS mce, c['brier'] AS brier
         FROM (SELECT model_id, day,
                      calibration(predicted_prob, CAST(label AS DOUBLE)) AS c
               FROM learning.prediction_outcomes
               GROUP BY model_id, day)",
    ),
    (
        // How well each model's predictions did in each regime.
        "performance_by_regime",
        "SELECT o.model_id, s.regime, count(*) AS predictions,
                avg(o.predicted_prob) AS avg_predicted,
                avg(CAST(o.label AS DOUBLE)) AS win_rate,
                calibration(o.predicted_prob, CAST(o.label AS DOUBLE))['brier'] AS brier
         FROM learning.prediction_outcomes o
         JOIN events.signals s ON s.signal_id = o.signal_id
         GROUP BY o.model_id, s.regime",
    ),
    (
        // Closed trades by the model that scored their signal, per regime.
        "trade_performance_by_model",
        "SELECT s.model_id, t.regime, count(*) AS trades,
                win_rate(t.pnl_bps) AS win_rate,
                avg(t.pnl_bps) AS avg_pnl_bps,
                sum(t.pnl_bps) AS total_pnl_bps
         FROM journal.v_closed_trades t
         JOIN events.signals s ON s.signal_id = t.signal_id
         GROUP BY s.model_id, t.regime",
    ),
    (
        // One row per day: how well calibrated the predictions were, and the
        // training done.
        "daily_summary",
        "SELECT c.day, c.models, c.labeled_predictions, c.ece, c.brier,
                coalesce(t.sessions, 0) AS training_sessions, t.samples AS training_samples,
                t.avg_auc, t.best_auc
         FROM (SELECT day, count(DISTINCT model_id) AS models, sum(samples) AS labeled_predictions,
                      sum(ece * samples) / sum(samples) AS ece,
                      sum(brier * samples) / sum(samples) AS brier
               FROM learning.calibration GROUP BY day) c
         LEFT JOIN learning.v_daily_training t ON CAST(t.day AS DATE) = c.day",
    ),
];

/// Plans each view and registers it in `schema`.
pub fn register_views(
    ctx: &SessionContext,
    schema: &Arc<MemorySchemaProvider>,
) -> Result<(), QueryError> {
    let state = ctx.state();
    for (name, sql) in VIEWS {
        // The views read only Quiver's own in-memory schemas (events,
        // journal, learning), so planning finishes at its first poll and the
        // engine's constructor stays synchronous. Polled once, not blocked
        // on: a provider that needed I/O would be an error here, not a hang.
        let plan = state
            .create_logical_plan(sql)
            .now_or_never()
            .ok_or_else(|| {
                QueryError::Catalog(DataFusionError::Plan(format!(
                    "learning.{name}: planning waited on I/O; its sources must be in memory"
                )))
            })?
            .map_err(QueryError::Catalog)?;
        schema
            .register_table(
                name.to_string(),
                Arc::new(ViewTable::new(plan, Some(sql.to_string()))),
            )
            .map_err(QueryError::Catalog)?;
    }
    Ok(())
}
