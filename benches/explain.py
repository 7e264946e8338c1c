"""Explainability benchmark (run on demand with a release build; see benches/README.md).

Over one day of simulated bot data (10M events by default; reuses --data):

1. The CLI a user types, wall clock per new process, median of --runs:
   `quiver explain DECISION_ID`, `quiver explain --signal SIGNAL_ID`,
   `quiver insights --date D`, beside `quiver sql "SELECT 1"` (process start).
2. `analysis.market_context_asof` (every decision and trade with the latest
   market snapshot of its symbol) through Quiver's Flight SQL server, beside
   DuckDB's native ASOF JOIN over the same Parquet in this script; the two
   answers are compared.
3. `analysis.gate_explanations` (every decision explained) through Flight,
   beside DuckDB computing the same verdicts and margins in plain SQL (no
   sentences); counts and margins are compared.

    python benches/explain.py [--quiver target/release/quiver] [--events 10000000] [--data DIR]
"""

import os
import statistics
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb

from flight import start_server  # benches/flight.py, beside this script
from metrics import REPO, TABLES, bench_args, ensure_lake, quiver

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

ASOF_QUIVER = """
    SELECT source, count(*) AS n, count(context_ts) AS with_context,
           sum(spread_bps) AS spread, sum(volume) AS volume
    FROM analysis.market_context_asof GROUP BY source ORDER BY source"""
ASOF_DUCK = """
    WITH ev AS (SELECT 'gate_decisions' AS source, symbol, ts FROM events.gate_decisions
                UNION ALL SELECT 'trades', symbol, ts FROM events.trades)
    SELECT source, count(*) AS n, count(m.ts) AS with_context,
           sum(m.spread_bps) AS spread, sum(m.volume) AS volume
    FROM ev ASOF LEFT JOIN events.market_context m ON ev.symbol = m.symbol AND ev.ts >= m.ts
    GROUP BY source ORDER BY source"""
EXPLAIN_QUIVER = """
    SELECT verdict, count(*) AS n, sum(margin) AS margin
    FROM analysis.gate_explanations GROUP BY verdict ORDER BY verdict"""
EXPLAIN_DUCK = """
    WITH o AS (
        SELECT signal_id, max(t) AS t, max(s) AS s FROM (
            SELECT signal_id, pnl_bps AS t, NULL AS s FROM events.trades WHERE kind = 'CLOSE'
            UNION ALL
            SELECT signal_id, NULL, outcome_pnl_bps FROM events.shadow_trades WHERE kind = 'RESOLVED')
        GROUP BY signal_id)
    SELECT verdict, count(*) AS n, sum(margin) AS margin FROM (
        SELECT CASE WHEN direction = 'min' THEN value - threshold ELSE threshold - value END AS margin,
               CASE WHEN coalesce(o.t, o.s) IS NULL THEN 'pending'
                    WHEN result = 'FAIL' AND coalesce(o.t, o.s) > 0 THEN 'bad_block'
                    WHEN result = 'FAIL' THEN 'good_block'
                    WHEN coalesce(o.t, o.s) > 0 THEN 'good_pass'
                    ELSE 'bad_pass' END AS verdict
        FROM events.gate_decisions d LEFT JOIN o USING (signal_id))
    GROUP BY verdict ORDER BY verdict"""


def timed(run):
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def same(a, b):
    """Row by row, numbers within 1e-6 relative."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if isinstance(x, float) or isinstance(y, float):
                if abs(x - y) > 1e-6 * max(1.0, abs(x), abs(y)):
                    return False
            elif x != y:
                return False
    return True


def main():
    args, data = bench_args("explain")
    ensure_lake(args.quiver, data, args.events)
    lake = os.path.join(data, "lake")
    duck = duckdb.connect()
    duck.execute("CREATE SCHEMA events")
    for table in TABLES:
        duck.execute(f"CREATE VIEW events.{table} AS SELECT * FROM read_parquet("
                     f"'{lake}/{table}/*/*/*.parquet', hive_partitioning = true)")
    day, decisions = duck.execute(
        "SELECT CAST(date AS VARCHAR), count(*) FROM events.gate_decisions GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    decision, signal = duck.execute(
        f"SELECT decision_id, signal_id FROM events.gate_decisions WHERE date = DATE '{day}' "
        "AND result = 'FAIL' ORDER BY decision_id LIMIT 1").fetchone()
    print(f"day {day}: {decisions:,} gate decisions")

    # 1. The CLI, a new process per run, interleaved.
    commands = {
        "sql SELECT 1": ["sql", "SELECT 1"],
        "explain DECISION_ID": ["explain", decision],
        "explain --signal": ["explain", "--signal", signal],
        "insights --date": ["insights", "--date", day],
    }
    times = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            _, t = timed(lambda: quiver(args.quiver, data, *argv))
            times[name].append(t)
    for name, ts in times.items():
        print(f"quiver {name}: median {statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f})")

    # 2 and 3. Through the Flight SQL server, beside DuckDB, interleaved.
    server, url = start_server(args.quiver, data, cwd=REPO)
    try:
        conn = flight_sql.connect(url)

        def flight(sql):
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            cur.close()
            return rows

        for label, ours, theirs in [("as-of join", ASOF_QUIVER, ASOF_DUCK),
                                    ("explanations", EXPLAIN_QUIVER, EXPLAIN_DUCK)]:
            ratios = []
            for run in range(args.runs):
                q_rows, q = timed(lambda: flight(ours))
                d_rows, d = timed(lambda: duck.execute(theirs).fetchall())
                if not same(q_rows, d_rows):
                    raise SystemExit(f"{label}: Quiver and DuckDB disagree:\n{q_rows}\n{d_rows}")
                ratios.append(q / d)
                print(f"{label} run {run + 1}: Quiver (Flight) {q:.2f} s, DuckDB {d:.2f} s, ratio {q / d:.2f}")
            print(f"{label}: median ratio {statistics.median(ratios):.2f}; the answers agree: {q_rows}")
        conn.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
