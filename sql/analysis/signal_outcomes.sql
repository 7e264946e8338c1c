-- What became of each signal? One row per signal that reached the gates: how
-- many gates failed it, the gate that blocked it, and its P&L in bps (the
-- closed trade's, or the resolved shadow trade's if it was blocked).
WITH decisions AS (
    SELECT signal_id, min(mode) AS mode, min(regime) AS regime, min(date) AS date,
           sum(CASE WHEN result = 'FAIL' THEN 1 ELSE 0 END) AS failed_gates
    FROM events.gate_decisions
    GROUP BY signal_id
),
traded AS (
    SELECT signal_id, max(pnl_bps) AS pnl_bps
    FROM events.trades WHERE kind = 'CLOSE' GROUP BY signal_id
),
shadow AS (
    SELECT signal_id, min(blocked_by) AS blocked_by, max(outcome_pnl_bps) AS pnl_bps
    FROM events.shadow_trades WHERE kind = 'RESOLVED' GROUP BY signal_id
)
SELECT d.signal_id, d.date, d.mode, d.regime, d.failed_gates,
       s.blocked_by,
       coalesce(t.pnl_bps, s.pnl_bps) AS pnl_bps,
       t.pnl_bps IS NOT NULL AS traded
FROM decisions d
LEFT JOIN traded t ON t.signal_id = d.signal_id
LEFT JOIN shadow s ON s.signal_id = d.signal_id
