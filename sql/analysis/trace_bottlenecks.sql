-- Where does decision time go? Per trace step: how often the step took more
-- than 20% of its trace's total (a bottleneck), its average and p95
-- milliseconds, and its average share of the total.
SELECT s.step,
       count(*) AS traces,
       sum(CASE WHEN s.duration_ms > 0.2 * t.total_ms THEN 1 ELSE 0 END) AS bottleneck_traces,
       avg(CASE WHEN s.duration_ms > 0.2 * t.total_ms THEN 1.0 ELSE 0.0 END) AS bottleneck_rate,
       avg(s.duration_ms) AS avg_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.duration_ms) AS p95_ms,
       avg(s.duration_ms / nullif(t.total_ms, 0)) AS avg_share_of_total
FROM events.trace_steps s
JOIN analysis.trace_totals t ON t.trace_id = s.trace_id
GROUP BY s.step
ORDER BY avg_share_of_total DESC
