//! The model comparison's queries: two models' feature importances (their
//! latest training sessions), their calibration on labelled predictions,
//! their predictions per regime, and the trades taken while each held an
//! alias. Values are bound; the side-by-side rows come from
//! [`crate::analytics::compare`] (which is pure). Every delta is B - A.

use anyhow::Context;
use arrow::array::RecordBatch;

use super::Session;
use super::rows::{opt_floats, strings};
use crate::analytics::compare::{Row, by_largest_change, calibration_rows, side_by_side};
use crate::query::param;

/// The feature importances of model `$1`'s latest training session.
const LATEST_IMPORTANCE: &str = "SELECT feature, importance \
     FROM learning.v_feature_importance_evolution \
     WHERE model_id = $1 AND started_ts = \
         (SELECT max(started_ts) FROM learning.training_sessions WHERE model_id = $1)";

/// Labelled predictions per regime, `$1` A and `$2` B.
const BY_REGIME: &str = "SELECT regime, \
            sum(CASE WHEN model_id = $1 THEN predictions END) AS predictions_a, \
            sum(CASE WHEN model_id = $2 THEN predictions END) AS predictions_b, \
            round(max(CASE WHEN model_id = $1 THEN win_rate END), 4) AS win_rate_a, \
            round(max(CASE WHEN model_id = $2 THEN win_rate END), 4) AS win_rate_b, \
            round(max(CASE WHEN model_id = $1 THEN brier END), 4) AS brier_a, \
            round(max(CASE WHEN model_id = $2 THEN brier END), 4) AS brier_b, \
            round(max(CASE WHEN model_id = $2 THEN brier END) \
              - max(CASE WHEN model_id = $1 THEN brier END), 4) AS brier_delta \
     FROM learning.performance_by_regime WHERE model_id IN ($1, $2) \
     GROUP BY regime ORDER BY regime";

/// Closed trades opened while each model held alias `$3`, per regime and
/// overall; `$1` A and `$2` B.
const WHILE_LIVE: &str = "WITH live AS ( \
         SELECT CASE WHEN model_id = $1 THEN 'A' ELSE 'B' END AS model, from_ts, to_ts \
         FROM registry.model_aliases \
         WHERE alias = $3 AND model_id IN ($1, $2)), \
     opened AS (SELECT trade_id, ts FROM events.trades WHERE kind = 'OPEN'), \
     closed AS (SELECT trade_id, regime, pnl_bps FROM events.trades WHERE kind = 'CLOSE'), \
     taken AS ( \
         SELECT l.model, c.regime, c.pnl_bps \
         FROM live l \
         JOIN opened o ON o.ts >= l.from_ts AND (l.to_ts IS NULL OR o.ts < l.to_ts) \
         JOIN closed c ON c.trade_id = o.trade_id) \
     SELECT model, regime, count(*) AS trades, \
            round(win_rate(pnl_bps), 4) AS win_rate, \
            round(avg(pnl_bps), 4) AS avg_pnl_bps, round(sum(pnl_bps), 4) AS total_pnl_bps \
     FROM taken GROUP BY GROUPING SETS ((model, regime), (model)) \
     ORDER BY model, regime NULLS LAST";

/// The change in feature importance between A's and B's latest training
/// sessions, the largest change first.
pub async fn feature_importance(
    session: &mut Session,
    a: &str,
    b: &str,
) -> anyhow::Result<Vec<Row>> {
    let fa = importances(
        &session
            .query_with(LATEST_IMPORTANCE, vec![param::text(a)])
            .await?,
    )?;
    let fb = importances(
        &session
            .query_with(LATEST_IMPORTANCE, vec![param::text(b)])
            .await?,
    )?;
    let mut rows = side_by_side(&fa, &fb);
    by_largest_change(&mut rows);
    Ok(rows)
}

/// (feature, importance) pairs; a NULL importance is left out.
fn importances(batches: &[RecordBatch]) -> anyhow::Result<Vec<(String, f64)>> {
    let mut v = Vec::new();
    for batch in batches {
        let names = strings(batch, "feature")?;
        let values = opt_floats(batch, "importance")?;
        v.extend(
            names
                .into_iter()
                .zip(values)
                .filter_map(|(n, x)| Some((n, x?))),
        );
    }
    Ok(v)
}

/// A's and B's calibration on their labelled predictions (the learning
/// report's, [`super::learning::calibration`]); no rows when neither has
/// any.
pub async fn calibration(session: &mut Session, a: &str, b: &str) -> anyhow::Result<Vec<Row>> {
    let ca = super::learning::calibration(session, a).await?;
    let cb = super::learning::calibration(session, b).await?;
    Ok(if ca.is_none() && cb.is_none() {
        Vec::new()
    } else {
        calibration_rows(ca.as_ref(), cb.as_ref())
    })
}

/// How A's and B's labelled predictions did per regime: predictions, win
/// rate and Brier score of each, and the Brier delta.
///
/// Kept as the engine's batches, like [`while_live`]: printed as they come.
pub async fn by_regime(
    session: &mut Session,
    a: &str,
    b: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    session
        .query_with(BY_REGIME, vec![param::text(a), param::text(b)])
        .await
}

/// The closed trades opened while A or B held `alias` (from the alias
/// history): per model and regime, and per model (regime NULL).
pub async fn while_live(
    session: &mut Session,
    a: &str,
    b: &str,
    alias: &str,
) -> anyhow::Result<Vec<RecordBatch>> {
    let params = vec![param::text(a), param::text(b), param::text(alias)];
    session
        .query_with(WHILE_LIVE, params)
        .await
        .context("trades while each model was live")
}
