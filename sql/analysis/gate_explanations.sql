-- Every gate decision explained: the reason in words (the explain templates
-- of configs/gates.yaml), the margin from the threshold (in the gate's unit,
-- and as % of the threshold), the signal's P&L (the closed trade's, or the
-- resolved shadow trade's had it been traded), the verdict (good_block,
-- bad_block, good_pass, bad_pass, pending) and, for a rejection, what would
-- have passed. analysis.market_context_asof has each decision's market.
WITH traded AS (
    SELECT signal_id, max(pnl_bps) AS pnl_bps
    FROM events.trades WHERE kind = 'CLOSE' GROUP BY signal_id
),
shadow AS (
    SELECT signal_id, max(outcome_pnl_bps) AS pnl_bps
    FROM events.shadow_trades WHERE kind = 'RESOLVED' GROUP BY signal_id
),
explained AS (
    SELECT d.decision_id, d.signal_id, d.trace_id, d.ts, d.date, d.symbol, d.gate, d.result,
           d.value, d.threshold, d.direction, d.mode, d.regime,
           coalesce(t.pnl_bps, s.pnl_bps) AS outcome_pnl_bps,
           t.pnl_bps IS NOT NULL AS traded,
           explain_gate(d.gate, d.result, d.value, d.threshold, d.direction, d.mode, d.regime,
                        coalesce(t.pnl_bps, s.pnl_bps), t.pnl_bps IS NOT NULL) AS e
    FROM events.gate_decisions d
    LEFT JOIN traded t ON t.signal_id = d.signal_id
    LEFT JOIN shadow s ON s.signal_id = d.signal_id
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
