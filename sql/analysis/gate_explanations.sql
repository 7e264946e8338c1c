-- Every gate decision explained: the reason in words (the explain templates
-- of configs/gates.yaml), the margin from the threshold (in the gate's unit,
-- and as % of the threshold), the signal's P&L (the closed trade's, or the
-- resolved shadow trade's had it been traded), the verdict (good_block,
-- bad_block, good_pass, bad_pass, pending) and, for a rejection, what would
-- have passed. analysis.market_context_asof has each decision's market.
--
-- The outcomes reach their decisions through a window over signal_id, not a
-- join: DataFusion 54 charges a hash join's build side once per slice of an
-- aggregate's output (apache/datafusion#22526), which made the join fail its
-- memory budget at 10M events; a sort can spill.
WITH timeline AS (
    SELECT signal_id, 1 AS is_decision, decision_id, trace_id, ts, date, symbol, gate, result,
           value, threshold, direction, mode, regime,
           CAST(NULL AS DOUBLE) AS traded_pnl, CAST(NULL AS DOUBLE) AS shadow_pnl
    FROM events.gate_decisions
    UNION ALL
    SELECT signal_id, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           pnl_bps, NULL
    FROM events.trades WHERE kind = 'CLOSE'
    UNION ALL
    SELECT signal_id, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, outcome_pnl_bps
    FROM events.shadow_trades WHERE kind = 'RESOLVED'
),
outcomes AS (
    SELECT *,
           max(traded_pnl) OVER (PARTITION BY signal_id) AS signal_traded_pnl,
           max(shadow_pnl) OVER (PARTITION BY signal_id) AS signal_shadow_pnl
    FROM timeline
),
explained AS (
    SELECT decision_id, signal_id, trace_id, ts, date, symbol, gate, result,
           value, threshold, direction, mode, regime,
           coalesce(signal_traded_pnl, signal_shadow_pnl) AS outcome_pnl_bps,
           signal_traded_pnl IS NOT NULL AS traded,
           explain_gate(gate, result, value, threshold, direction, mode, regime,
                        coalesce(signal_traded_pnl, signal_shadow_pnl),
                        signal_traded_pnl IS NOT NULL) AS e
    FROM outcomes
    WHERE is_decision = 1
)
SELECT decision_id, signal_id, trace_id, ts, date, symbol, gate, result, value, threshold,
       direction, mode, regime,
       e['reason'] AS reason,
       e['margin'] AS margin,
       e['margin_pct'] AS margin_pct,
       outcome_pnl_bps,
       traded,
       e['verdict'] AS verdict,
       e['outcome'] AS outcome,
       e['suggestion'] AS suggestion
FROM explained
