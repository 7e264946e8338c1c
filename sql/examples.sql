-- Win rate and average P&L by mode and regime (closed trades).
SELECT mode, regime, count(*) AS trades,
       round(win_rate(pnl_bps), 3) AS win_rate,
       round(avg(pnl_bps), 2) AS avg_pnl_bps
FROM trades WHERE kind = 'CLOSE'
GROUP BY mode, regime ORDER BY mode, regime;

-- Pass rate per gate and mode.
SELECT gate, mode, count(*) AS decisions,
       round(avg(CASE WHEN result = 'PASS' THEN 1.0 ELSE 0.0 END), 3) AS pass_rate
FROM gate_decisions GROUP BY gate, mode ORDER BY gate, mode;

-- Good and bad blocks: what blocked signals would have made.
SELECT blocked_by, count(*) AS resolved,
       round(avg(CASE WHEN outcome_pnl_bps <= 0 THEN 1.0 ELSE 0.0 END), 3) AS good_block_rate,
       round(sum(CASE WHEN outcome_pnl_bps > 0 THEN outcome_pnl_bps ELSE 0 END), 1) AS missed_bps
FROM shadow_trades WHERE kind = 'RESOLVED' GROUP BY blocked_by ORDER BY missed_bps DESC;

-- Where the decision time goes.
SELECT step, count(*) AS n, round(avg(duration_ms), 3) AS avg_ms,
       round(approx_percentile_cont(duration_ms, 0.95), 3) AS p95_ms
FROM trace_steps GROUP BY step ORDER BY avg_ms DESC;
