-- How long did each decision take end to end? One row per decision trace:
-- its steps, total milliseconds and slowest step. (Grouped by date too, so a
-- filter on the day prunes files; a trace is logged with one timestamp.)
SELECT trace_id,
       date,
       min(signal_id) AS signal_id,
       min(symbol) AS symbol,
       min(ts) AS ts,
       count(*) AS steps,
       sum(duration_ms) AS total_ms,
       max(duration_ms) AS slowest_step_ms
FROM events.trace_steps
GROUP BY trace_id, date
