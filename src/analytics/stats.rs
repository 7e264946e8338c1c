//! Trading statistics of a sequence of closed-trade returns.

use std::collections::BTreeMap;

use serde::Serialize;

/// The largest fall of the cumulative sum of `returns` from a previous peak,
/// the start (0) counting as a peak; a positive number, 0 without a fall.
/// The one definition of drawdown: [`TradeStats`] and the SQL aggregate
/// `max_drawdown(pnl, ts)` of the metrics both call it.
pub fn max_drawdown(returns: impl IntoIterator<Item = f64>) -> f64 {
    let (mut equity, mut peak, mut deepest) = (0.0_f64, 0.0_f64, 0.0_f64);
    for r in returns {
        equity += r;
        peak = peak.max(equity);
        deepest = deepest.max(peak - equity);
    }
    deepest
}

/// Whether a closed trade's net return counts as a win: above zero (break
/// even is not a win). The one definition: [`TradeStats`], the gate verdicts
/// and the SQL aggregate `win_rate(pnl)` of the metrics all call it.
pub fn is_win(pnl_bps: f64) -> bool {
    pnl_bps > 0.0
}

/// The share of `trades` that were wins; `None` without trades.
pub fn win_rate(wins: u64, trades: u64) -> Option<f64> {
    (trades > 0).then(|| wins as f64 / trades as f64)
}

/// Statistics of closed trades' net returns (bps), taken in exit order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeStats {
    pub trades: u64,
    pub wins: u64,
    /// Share of trades with a return above zero.
    pub win_rate: Option<f64>,
    pub avg_return_bps: Option<f64>,
    pub median_return_bps: Option<f64>,
    pub total_return_bps: f64,
    /// Sum of gains over the absolute sum of losses; None without losses.
    pub profit_factor: Option<f64>,
    /// Per-trade Sharpe ratio: mean over sample standard deviation (n - 1),
    /// not annualised; None below two trades or with zero spread.
    pub sharpe: Option<f64>,
    /// Largest fall of cumulative return (bps) from a previous peak, with the
    /// start (0) counted as a peak; reported as a positive number.
    pub max_drawdown_bps: f64,
}

impl TradeStats {
    /// Statistics of `returns` (bps, in exit order).
    pub fn from_returns(returns: &[f64]) -> Self {
        let n = returns.len();
        let wins = returns.iter().filter(|r| is_win(**r)).count() as u64;
        let total: f64 = returns.iter().sum();
        let mean = (n > 0).then(|| total / n as f64);
        let median = (n > 0).then(|| {
            let mut sorted = returns.to_vec();
            sorted.sort_by(f64::total_cmp);
            if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            }
        });
        let gains: f64 = returns.iter().filter(|r| **r > 0.0).sum();
        let losses: f64 = returns.iter().filter(|r| **r < 0.0).map(|r| -r).sum();
        let profit_factor = (losses > 0.0).then(|| gains / losses);
        let sharpe = mean.and_then(|m| {
            if n < 2 {
                return None;
            }
            let var = returns.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            let sd = var.sqrt();
            (sd > 0.0).then(|| m / sd)
        });
        Self {
            trades: n as u64,
            wins,
            win_rate: win_rate(wins, n as u64),
            avg_return_bps: mean,
            median_return_bps: median,
            total_return_bps: total,
            profit_factor,
            sharpe,
            max_drawdown_bps: max_drawdown(returns.iter().copied()),
        }
    }
}

/// Statistics per group, keeping each group's returns in the order given.
pub fn group_stats<'a>(
    rows: impl IntoIterator<Item = (&'a str, f64)>,
) -> BTreeMap<String, TradeStats> {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (key, r) in rows {
        groups.entry(key.to_string()).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(k, v)| (k, TradeStats::from_returns(&v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn hand_computed_figures() {
        // Returns 10, -5, 20, -15, 5 (bps), in exit order.
        let s = TradeStats::from_returns(&[10.0, -5.0, 20.0, -15.0, 5.0]);
        assert_eq!((s.trades, s.wins), (5, 3));
        assert_eq!(s.win_rate, Some(0.6));
        assert_eq!(s.total_return_bps, 15.0);
        assert_eq!(s.avg_return_bps, Some(3.0));
        assert_eq!(s.median_return_bps, Some(5.0));
        // Gains 35, losses 20.
        assert_eq!(s.profit_factor, Some(1.75));
        // Deviations 7, -8, 17, -18, 2; squares 49+64+289+324+4 = 730;
        // variance 730/4 = 182.5; sd 13.509256...; Sharpe 3/13.509256 = 0.22207 (to 5 places)
        assert!(close(s.sharpe.unwrap(), 3.0 / 182.5_f64.sqrt()));
        assert!(
            (s.sharpe.unwrap() - 0.222_07).abs() < 1e-5,
            "{:?}",
            s.sharpe
        );
        // Equity 10, 5, 25, 10, 15: peak 25, trough 10 after it: drawdown 15.
        assert_eq!(s.max_drawdown_bps, 15.0);
    }

    #[test]
    fn a_losing_start_counts_from_zero() {
        let s = TradeStats::from_returns(&[-4.0, -6.0, 3.0]);
        assert_eq!(s.max_drawdown_bps, 10.0);
        assert_eq!(s.median_return_bps, Some(-4.0));
        assert_eq!(s.profit_factor, Some(0.3));
    }

    #[test]
    fn edge_cases_give_none_not_nan() {
        let empty = TradeStats::from_returns(&[]);
        assert_eq!(empty.trades, 0);
        assert_eq!(empty.win_rate, None);
        assert_eq!(empty.sharpe, None);
        let wins_only = TradeStats::from_returns(&[2.0, 2.0]);
        assert_eq!(wins_only.profit_factor, None);
        assert_eq!(wins_only.sharpe, None);
        assert_eq!(wins_only.median_return_bps, Some(2.0));
        let even = TradeStats::from_returns(&[1.0, 4.0, 2.0, 3.0]);
        assert_eq!(even.median_return_bps, Some(2.5));
    }

    #[test]
    fn groups_keep_order() {
        let g = group_stats([("scalp", 1.0), ("runner", -2.0), ("scalp", -3.0)]);
        assert_eq!(g["scalp"].trades, 2);
        assert_eq!(g["scalp"].max_drawdown_bps, 3.0);
        assert_eq!(g["runner"].trades, 1);
    }
}
