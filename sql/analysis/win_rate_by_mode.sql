-- How often does each mode win? Closed trades per mode: win rate, average,
-- median and total P&L in bps.
SELECT mode,
       count(*) AS trades,
       win_rate(pnl_bps) AS win_rate,
       avg(pnl_bps) AS avg_pnl_bps,
       median(pnl_bps) AS median_pnl_bps,
       sum(pnl_bps) AS total_pnl_bps
FROM events.trades
WHERE kind = 'CLOSE'
GROUP BY mode
ORDER BY mode
