-- How long does each decision step take? Per day and trace step: how many
-- times it ran, its mean, p50, p95, p99 and longest duration in milliseconds.
SELECT date AS day,
       step,
       count(*) AS steps,
       avg(duration_ms) AS avg_ms,
       percentile_cont(duration_ms, 0.5) AS p50_ms,
       percentile_cont(duration_ms, 0.95) AS p95_ms,
       percentile_cont(duration_ms, 0.99) AS p99_ms,
       max(duration_ms) AS max_ms
FROM events.trace_steps
GROUP BY date, step
