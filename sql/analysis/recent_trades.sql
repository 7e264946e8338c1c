-- What did the bot trade last? The 100 most recent closed trades, newest
-- first, with P&L, fees, hold time and excursions.
SELECT ts AS closed_at, trade_id, signal_id, symbol, mode, regime, side,
       pnl_bps, fees_bps, duration_s, mae_bps, mfe_bps
FROM events.trades
WHERE kind = 'CLOSE'
ORDER BY ts DESC, trade_id
LIMIT 100
