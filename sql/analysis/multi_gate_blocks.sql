-- Which signals were blocked by several gates at once? Per combination of
-- failing gates: how many signals, their share of all blocked signals, and
-- their average shadow P&L in bps.
WITH failing AS (
    SELECT signal_id,
           count(*) AS failed_gates,
           array_to_string(array_agg(gate ORDER BY gate), ' + ') AS gates
    FROM events.gate_decisions
    WHERE result = 'FAIL'
    GROUP BY signal_id
)
SELECT f.gates, f.failed_gates,
       count(*) AS signals,
       CAST(count(*) AS DOUBLE) / sum(count(*)) OVER () AS share_of_blocked,
       avg(o.pnl_bps) AS avg_shadow_pnl_bps
FROM failing f
LEFT JOIN analysis.signal_outcomes o ON o.signal_id = f.signal_id
GROUP BY f.gates, f.failed_gates
ORDER BY signals DESC
