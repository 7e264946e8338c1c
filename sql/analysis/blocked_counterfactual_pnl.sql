-- What would the blocked signals have made? Per day, blocking gate and mode:
-- signals blocked, how many have resolved, and their counterfactual P&L in
-- bps beside the P&L of the trades actually taken that day.
WITH blocked AS (
    SELECT b.date AS day, b.blocked_by AS gate, b.mode,
           count(*) AS blocked_signals,
           count(r.outcome_pnl_bps) AS resolved,
           sum(r.outcome_pnl_bps) AS counterfactual_pnl_bps,
           avg(r.outcome_pnl_bps) AS avg_counterfactual_pnl_bps
    FROM events.shadow_trades b
    LEFT JOIN events.shadow_trades r
      ON r.shadow_id = b.shadow_id AND r.kind = 'RESOLVED'
    WHERE b.kind = 'BLOCKED'
    GROUP BY b.date, b.blocked_by, b.mode
),
taken AS (
    SELECT date AS day, mode, sum(pnl_bps) AS actual_pnl_bps, count(*) AS trades
    FROM events.trades
    WHERE kind = 'CLOSE'
    GROUP BY date, mode
)
SELECT b.day, b.gate, b.mode, b.blocked_signals, b.resolved,
       b.counterfactual_pnl_bps, b.avg_counterfactual_pnl_bps,
       t.trades AS trades_taken, t.actual_pnl_bps
FROM blocked b
LEFT JOIN taken t ON t.day = b.day AND t.mode = b.mode
ORDER BY b.day, b.gate, b.mode
