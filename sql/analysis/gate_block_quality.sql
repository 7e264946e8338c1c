-- Were the gates right to block? Per blocking gate and mode, from resolved
-- shadow trades: good blocks (the trade would have lost or broken even), bad
-- blocks (it would have won), the P&L the good blocks saved and the bad ones
-- missed, in bps.
SELECT blocked_by AS gate,
       mode,
       count(*) AS resolved_blocks,
       sum(CASE WHEN outcome_pnl_bps <= 0 THEN 1 ELSE 0 END) AS good_blocks,
       sum(CASE WHEN outcome_pnl_bps > 0 THEN 1 ELSE 0 END) AS bad_blocks,
       avg(CASE WHEN outcome_pnl_bps <= 0 THEN 1.0 ELSE 0.0 END) AS good_block_rate,
       sum(CASE WHEN outcome_pnl_bps <= 0 THEN -outcome_pnl_bps ELSE 0 END) AS saved_bps,
       sum(CASE WHEN outcome_pnl_bps > 0 THEN outcome_pnl_bps ELSE 0 END) AS missed_bps,
       -sum(outcome_pnl_bps) AS net_saved_bps
FROM events.shadow_trades
WHERE kind = 'RESOLVED' AND outcome_pnl_bps IS NOT NULL
GROUP BY blocked_by, mode
ORDER BY gate, mode
