-- What if a gate's threshold moved? For each gate and mode, the threshold
-- moved by -20% .. +20% of its size, one gate at a time: the gate's pass rate,
-- how many signals would then pass every gate, and their P&L in bps (taken
-- trades' real P&L, blocked signals' shadow P&L; signals whose outcome is not
-- known yet count as trades but add no P&L).
WITH moves AS (
    SELECT * FROM (VALUES (-0.20), (-0.10), (-0.05), (0.0), (0.05), (0.10), (0.20)) AS m(delta)
),
moved AS (
    SELECT g.gate, g.mode, m.delta, g.threshold,
           g.threshold + m.delta * abs(g.threshold) AS moved_threshold,
           CASE WHEN g.direction = 'min' THEN g.value >= g.threshold + m.delta * abs(g.threshold)
                ELSE g.value <= g.threshold + m.delta * abs(g.threshold) END AS passes,
           o.failed_gates - CASE WHEN g.result = 'FAIL' THEN 1 ELSE 0 END AS other_failed_gates,
           o.pnl_bps
    FROM events.gate_decisions g
    JOIN analysis.signal_outcomes o ON o.signal_id = g.signal_id
    CROSS JOIN moves m
)
SELECT gate, mode, delta,
       avg(threshold) AS threshold,
       avg(moved_threshold) AS moved_threshold,
       count(*) AS decisions,
       avg(CASE WHEN passes THEN 1.0 ELSE 0.0 END) AS pass_rate,
       sum(CASE WHEN passes AND other_failed_gates = 0 THEN 1 ELSE 0 END) AS signals_traded,
       sum(CASE WHEN passes AND other_failed_gates = 0 THEN pnl_bps ELSE 0 END) AS pnl_bps
FROM moved
GROUP BY gate, mode, delta
ORDER BY gate, mode, delta
