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
-- Each row counts the snapshots of its symbol up to it: the snapshot a
-- decision or trade falls after starts its group, so the group's first row
-- is that snapshot. (Running sums and first values are linear; a
-- last_value IGNORE NULLS over an unbounded frame is quadratic here.)
numbered AS (
    SELECT *,
           sum(CASE WHEN side = 0 THEN 1 ELSE 0 END) OVER (
               PARTITION BY symbol ORDER BY ts, side
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS snapshot
    FROM timeline
),
asof AS (
    SELECT side, source, id, kind, signal_id, symbol, ts,
           first_value(context_ts) OVER w AS context_ts,
           first_value(market_regime) OVER w AS market_regime,
           first_value(price) OVER w AS price,
           first_value(spread_bps) OVER w AS spread_bps,
           first_value(volatility) OVER w AS volatility,
           first_value(volume) OVER w AS volume
    FROM numbered
    WINDOW w AS (PARTITION BY symbol, snapshot ORDER BY ts, side
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT source, id, kind, signal_id, symbol, ts, CAST(ts AS DATE) AS day,
       context_ts,
       CAST(date_part('epoch', ts) - date_part('epoch', context_ts) AS DOUBLE) AS context_age_s,
       market_regime, price, spread_bps, volatility, volume
FROM asof
WHERE side = 1
