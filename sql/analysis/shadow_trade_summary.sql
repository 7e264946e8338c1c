-- What happened to the signals the gates blocked? Per blocking gate: blocked,
-- resolved and pending shadow trades, the share that would have won, and
-- their average and total outcome in bps.
WITH blocked AS (
    SELECT shadow_id, blocked_by FROM events.shadow_trades WHERE kind = 'BLOCKED'
),
resolved AS (
    SELECT shadow_id, outcome_pnl_bps FROM events.shadow_trades WHERE kind = 'RESOLVED'
)
SELECT b.blocked_by AS gate,
       count(*) AS blocked,
       count(r.shadow_id) AS resolved,
       count(*) - count(r.shadow_id) AS pending,
       avg(CASE WHEN r.outcome_pnl_bps > 0 THEN 1.0 WHEN r.outcome_pnl_bps IS NOT NULL THEN 0.0 END) AS would_have_won_rate,
       avg(r.outcome_pnl_bps) AS avg_outcome_bps,
       sum(r.outcome_pnl_bps) AS total_outcome_bps
FROM blocked b
LEFT JOIN resolved r ON r.shadow_id = b.shadow_id
GROUP BY b.blocked_by
ORDER BY blocked DESC
