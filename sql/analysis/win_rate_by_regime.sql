-- How often does the bot win in each market regime? Closed trades per regime
-- and mode: win rate, average and total P&L in bps.
SELECT regime, mode,
       count(*) AS trades,
       win_rate(pnl_bps) AS win_rate,
       avg(pnl_bps) AS avg_pnl_bps,
       sum(pnl_bps) AS total_pnl_bps
FROM events.trades
WHERE kind = 'CLOSE'
GROUP BY regime, mode
ORDER BY regime, mode
