-- How long did each decision take end to end? One row per decision trace:
-- its steps, total milliseconds and slowest step.
SELECT trace_id,
       min(signal_id) AS signal_id,
       min(symbol) AS symbol,
       min(ts) AS ts,
       min(date) AS date,
       count(*) AS steps,
       sum(duration_ms) AS total_ms,
       max(duration_ms) AS slowest_step_ms
FROM events.trace_steps
GROUP BY trace_id
