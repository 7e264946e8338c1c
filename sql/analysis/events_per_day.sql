-- How much did the bot log? Events per day and table.
SELECT date AS day, 'signals' AS table_name, count(*) AS events FROM events.signals GROUP BY date
UNION ALL SELECT date, 'gate_decisions', count(*) FROM events.gate_decisions GROUP BY date
UNION ALL SELECT date, 'trades', count(*) FROM events.trades GROUP BY date
UNION ALL SELECT date, 'shadow_trades', count(*) FROM events.shadow_trades GROUP BY date
UNION ALL SELECT date, 'trace_steps', count(*) FROM events.trace_steps GROUP BY date
UNION ALL SELECT date, 'model_events', count(*) FROM events.model_events GROUP BY date
UNION ALL SELECT date, 'market_context', count(*) FROM events.market_context GROUP BY date
UNION ALL SELECT date, 'predictions', count(*) FROM events.predictions GROUP BY date
