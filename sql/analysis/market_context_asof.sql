-- Every gate decision and trade in its market: the latest
-- events.market_context snapshot of the same symbol at or before it (an
-- as-of join on time and symbol), and how old that snapshot was. `id` is the
-- decision_id or the trade_id, as `source` says; `kind` the gate, or the
-- trade's OPEN or CLOSE.
WITH timeline AS (
    SELECT symbol, ts, 0 AS side, CAST(NULL AS VARCHAR) AS source,
           CAST(NULL AS VARCHAR) AS id, CAST(NULL AS VARCHAR) AS kind,
           CAST(NULL AS VARCHAR) AS signal_id,
           ts AS context_ts, regime AS market_regime, price, spread_bps, volatility, volume
    FROM events.market_context
    UNION ALL
    SELECT symbol, ts, 1, 'gate_decisions', decision_id, gate, signal_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM events.gate_decisions
    UNION ALL
    SELECT symbol, ts, 1, 'trades', trade_id, kind, signal_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM events.trades
),
asof AS (
    SELECT side, source, id, kind, signal_id, symbol, ts,
           last_value(context_ts) IGNORE NULLS OVER w AS context_ts,
           last_value(market_regime) IGNORE NULLS OVER w AS market_regime,
           last_value(price) IGNORE NULLS OVER w AS price,
           last_value(spread_bps) IGNORE NULLS OVER w AS spread_bps,
           last_value(volatility) IGNORE NULLS OVER w AS volatility,
           last_value(volume) IGNORE NULLS OVER w AS volume
    FROM timeline
    WINDOW w AS (PARTITION BY symbol ORDER BY ts, side
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT source, id, kind, signal_id, symbol, ts, CAST(ts AS DATE) AS day,
       context_ts,
       CAST(date_part('epoch', ts) - date_part('epoch', context_ts) AS DOUBLE) AS context_age_s,
       market_regime, price, spread_bps, volatility, volume
FROM asof
WHERE side = 1
