//! The learning reports: per day, the calibration of the labelled
//! predictions and the training done; per model, its calibration overall
//! (computed by [`crate::analytics::Calibration`], which is pure) and per
//! day. Calibration reads the `predictions` events, so these go through a
//! session.

use arrow::array::RecordBatch;
use chrono::NaiveDate;

use super::Session;
use super::rows::opt_floats;
use crate::analytics::Calibration;
use crate::query::param;

/// The reliability diagram's bins: the SQL aggregate's.
pub const BINS: usize = crate::metrics::CALIBRATION_BINS;

/// The last 30 days of `learning.daily_summary`.
const RECENT_DAYS: &str = "SELECT * FROM learning.daily_summary \
     WHERE day >= current_date - INTERVAL '30 days' ORDER BY day";
/// Day `$1` of `learning.daily_summary`.
const DAY_SUMMARY: &str = "SELECT * FROM learning.daily_summary WHERE day = $1";
/// The calibration of each model on day `$1`, the most samples first.
const DAY_PER_MODEL: &str = "SELECT model_id, samples, ece, mce, brier FROM learning.calibration \
     WHERE day = $1 ORDER BY samples DESC";
/// The calibration of model `$1` per day.
const MODEL_PER_DAY: &str = "SELECT day, samples, ece, mce, brier FROM learning.calibration \
     WHERE model_id = $1 ORDER BY day";
/// The labelled predictions of model `$1`.
const MODEL_OUTCOMES: &str = "SELECT predicted_prob, CAST(label AS DOUBLE) AS label \
     FROM learning.prediction_outcomes WHERE model_id = $1";

// The tables below are kept as the engine's batches rather than decoded:
// they are printed as they come (table, CSV or JSON), column types and all.

/// The last 30 days of the learning summary, oldest first.
pub async fn recent_days(session: &mut Session) -> anyhow::Result<Vec<RecordBatch>> {
    session.query(RECENT_DAYS).await
}

/// One day of learning.
#[derive(Debug, Clone)]
pub struct Day {
    /// The day's row of `learning.daily_summary`.
    pub summary: Vec<RecordBatch>,
    /// Each model's calibration that day: model_id, samples, ece, mce,
    /// brier; the most samples first.
    pub per_model: Vec<RecordBatch>,
}

/// The learning summary of `day`, and each model's calibration that day.
pub async fn day(session: &mut Session, day: NaiveDate) -> anyhow::Result<Day> {
    let on_day = || vec![param::date(day)];
    let summary = session.query_with(DAY_SUMMARY, on_day()).await?;
    let per_model = session.query_with(DAY_PER_MODEL, on_day()).await?;
    Ok(Day { summary, per_model })
}

/// One model's calibration.
#[derive(Debug, Clone)]
pub struct ModelCalibration {
    /// Over all its labelled predictions, in [`BINS`] bins; `None` when it
    /// has none.
    pub overall: Option<Calibration>,
    /// Per day: day, samples, ece, mce, brier; oldest first.
    pub per_day: Vec<RecordBatch>,
}

/// The calibration of model `model_id` (a full id, resolved by the
/// caller), overall and per day.
pub async fn model_calibration(
    session: &mut Session,
    model_id: &str,
) -> anyhow::Result<ModelCalibration> {
    let per_day = session
        .query_with(MODEL_PER_DAY, vec![param::text(model_id)])
        .await?;
    let overall = calibration(session, model_id).await?;
    Ok(ModelCalibration { overall, per_day })
}

/// The calibration of model `model_id` over all its labelled predictions,
/// in [`BINS`] bins; `None` when it has none.
pub async fn calibration(
    session: &mut Session,
    model_id: &str,
) -> anyhow::Result<Option<Calibration>> {
    let batches = session
        .query_with(MODEL_OUTCOMES, vec![param::text(model_id)])
        .await?;
    Ok(Calibration::compute(&outcome_pairs(&batches)?, BINS))
}

/// (probability, outcome) pairs from `predicted_prob, label` rows; a row
/// with either NULL, or a label other than 0 or 1, is left out (as the SQL
/// aggregate `calibration` does).
fn outcome_pairs(batches: &[RecordBatch]) -> anyhow::Result<Vec<(f64, bool)>> {
    let mut pairs = Vec::new();
    for batch in batches {
        let p = opt_floats(batch, "predicted_prob")?;
        let y = opt_floats(batch, "label")?;
        pairs.extend(p.into_iter().zip(y).filter_map(|(p, y)| match (p?, y?) {
            (p, y) if y == 0.0 || y == 1.0 => Some((p, y == 1.0)),
            _ => None,
        }));
    }
    Ok(pairs)
}
