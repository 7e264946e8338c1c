"""SQL over `events.*` beside DuckDB (run on demand with a release build; see benches/README.md).

A fixed set of queries a quant runs (aggregates by mode, regime and gate, joins
of signals and decisions, per-minute buckets, a running drawdown, filters on
symbol and date, wide scans, and "the last N events"), each run by Quiver
through its Flight SQL server (ADBC, results fetched as Arrow) and by DuckDB
in-process over the same Parquet files, interleaved query by query, best of
--runs. Prints each ratio (Quiver / DuckDB) and the geometric mean, and checks
that both engines return the same number of rows.

    python benches/sql.py [--quiver target/release/quiver] [--events 10000000] [--data DIR]
"""

import argparse
import math
import os
import subprocess
import tempfile
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb

from flight import env, start_server  # benches/flight.py, beside this script

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

TABLES = ["signals", "gate_decisions", "trades", "shadow_trades", "trace_steps",
          "model_events", "market_context", "predictions"]

# (name, Quiver SQL, DuckDB SQL or None when the text is the same). {day} is
# the busiest day of the data set.
QUERIES = [
    ("trades by mode and regime",
     "SELECT mode, regime, count(*) AS n, avg(pnl_bps) AS avg_bps, sum(pnl_bps) AS sum_bps "
     "FROM trades WHERE kind = 'CLOSE' GROUP BY mode, regime ORDER BY mode, regime", None),
    ("gate pass rate",
     "SELECT gate, avg(CASE WHEN result = 'PASS' THEN 1.0 ELSE 0.0 END) AS pass_rate, count(*) AS n "
     "FROM gate_decisions GROUP BY gate ORDER BY gate", None),
    ("gate pass rate by mode and regime",
     "SELECT gate, mode, regime, avg(CASE WHEN result = 'PASS' THEN 1.0 ELSE 0.0 END) AS pass_rate, "
     "count(*) AS n FROM gate_decisions GROUP BY gate, mode, regime ORDER BY 1, 2, 3", None),
    ("rejections per signal mode (join)",
     "SELECT s.mode, d.gate, count(*) AS n FROM signals s JOIN gate_decisions d "
     "ON d.signal_id = s.signal_id WHERE d.result = 'FAIL' GROUP BY s.mode, d.gate ORDER BY 1, 2", None),
    ("pnl by signal strength (join)",
     "SELECT round(s.strength, 1) AS strength, count(*) AS n, avg(t.pnl_bps) AS avg_bps "
     "FROM trades t JOIN signals s ON s.signal_id = t.signal_id WHERE t.kind = 'CLOSE' "
     "GROUP BY 1 ORDER BY 1", None),
    ("market per minute",
     "SELECT date_trunc('minute', ts) AS minute, count(*) AS n, avg(price) AS price, "
     "max(spread_bps) AS spread FROM market_context GROUP BY 1 ORDER BY 1", None),
    ("trades per hour of day",
     "SELECT extract(hour FROM ts) AS hour, count(*) AS n, avg(pnl_bps) AS avg_bps "
     "FROM trades WHERE kind = 'CLOSE' GROUP BY 1 ORDER BY 1", None),
    ("running drawdown per mode (window)",
     "SELECT mode, min(cum - peak) AS max_drawdown_bps FROM ("
     " SELECT mode, cum, max(cum) OVER (PARTITION BY mode ORDER BY ts, trade_id ROWS UNBOUNDED PRECEDING) AS peak"
     " FROM (SELECT mode, ts, trade_id, sum(pnl_bps) OVER (PARTITION BY mode ORDER BY ts, trade_id"
     " ROWS UNBOUNDED PRECEDING) AS cum FROM trades WHERE kind = 'CLOSE') c) p GROUP BY mode ORDER BY mode", None),
    ("one symbol, one day",
     "SELECT count(*) AS n, avg(spread_bps) AS spread, max(volatility) AS vol FROM market_context "
     "WHERE symbol = 'BTC-USD' AND date = DATE '{day}'", None),
    ("one symbol's rejections by gate",
     "SELECT gate, count(*) AS n, avg(value - threshold) AS margin FROM gate_decisions "
     "WHERE symbol = 'ETH-USD' AND result = 'FAIL' GROUP BY gate ORDER BY gate", None),
    ("rejections per day and gate",
     "SELECT date, gate, count(*) AS n FROM gate_decisions WHERE result = 'FAIL' "
     "GROUP BY date, gate ORDER BY 1, 2", None),
    ("step latency percentiles",
     "SELECT step, count(*) AS n, avg(duration_ms) AS avg_ms, "
     "approx_percentile_cont(duration_ms, 0.95) AS p95_ms FROM trace_steps GROUP BY step ORDER BY step",
     "SELECT step, count(*) AS n, avg(duration_ms) AS avg_ms, "
     "approx_quantile(duration_ms, 0.95) AS p95_ms FROM trace_steps GROUP BY step ORDER BY step"),
    ("shadow trades by blocking gate",
     "SELECT blocked_by, count(*) AS n, avg(outcome_pnl_bps) AS avg_bps, "
     "sum(CASE WHEN outcome_pnl_bps > 0 THEN 1 ELSE 0 END) AS bad_blocks FROM shadow_trades "
     "WHERE kind = 'RESOLVED' GROUP BY blocked_by ORDER BY blocked_by", None),
    ("distinct signals per regime",
     "SELECT regime, count(DISTINCT signal_id) AS signals FROM signals GROUP BY regime ORDER BY regime", None),
    ("symbols by volume",
     "SELECT symbol, sum(volume) AS volume, avg(volatility) AS vol FROM market_context "
     "GROUP BY symbol ORDER BY volume DESC", None),
    ("wide scan of gate decisions",
     "SELECT count(*) AS n, sum(length(inputs)) AS input_bytes, avg(value) AS v, "
     "min(ts) AS first, max(ts) AS last, count(DISTINCT trace_id) AS traces FROM gate_decisions", None),
    ("calibration by model (self join)",
     "SELECT p.model_id, count(*) AS n, avg(p.predicted_prob) AS predicted, avg(l.label) AS observed "
     "FROM predictions p JOIN predictions l ON l.signal_id = p.signal_id AND l.model_id = p.model_id "
     "AND l.kind = 'LABELED' WHERE p.kind = 'PREDICTED' GROUP BY p.model_id ORDER BY p.model_id", None),
]

LAST_N = [
    ("last 100 gate decisions",
     "SELECT * FROM gate_decisions ORDER BY ts DESC LIMIT 100", None),
    ("last 100 gate decisions of one symbol",
     "SELECT * FROM gate_decisions WHERE symbol = 'BTC-USD' ORDER BY ts DESC LIMIT 100", None),
    ("last 1000 market snapshots",
     "SELECT * FROM market_context ORDER BY ts DESC LIMIT 1000", None),
]


def duck_connection(data):
    con = duckdb.connect()
    con.execute("SET threads = 2")
    for t in TABLES:
        glob = os.path.join(data, "lake", t, "*", "*", "*.parquet")
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{glob}', "
                    "hive_partitioning = true, union_by_name = true)")
    return con


def best(run, runs):
    times, rows = [], None
    for _ in range(runs):
        t = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - t)
    return min(times), rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quiver", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "quiver"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--data", help="an existing data dir (default: simulate into a temp dir)")
    args = ap.parse_args()
    data = args.data
    if not data:
        data = os.path.join(tempfile.mkdtemp(prefix="quiver-bench-sql-"), "data")
        print(f"simulating {args.events:,} events into {data} ...", flush=True)
        subprocess.run([args.quiver, "--data-dir", data, "simulate", "--events", str(args.events),
                        "--quiet"], check=True, env=env(), stdout=subprocess.DEVNULL)
        subprocess.run([args.quiver, "--data-dir", data, "compact"], check=True, env=env(),
                       stdout=subprocess.DEVNULL)
    duck = duck_connection(data)
    day = duck.sql("SELECT date FROM market_context GROUP BY date ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    proc, url = start_server(args.quiver, data)
    try:
        conn = flight_sql.connect(url)

        def quiver(sql):
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table().num_rows

        def duck_run(sql):
            result = duck.sql(sql).arrow()  # a reader since DuckDB 1.4, a table before
            return (result.read_all() if hasattr(result, "read_all") else result).num_rows

        quiver("SELECT 1")  # warm the connection
        ratios = {}
        for group, queries in (("queries", QUERIES), ("last N", LAST_N)):
            print(f"\n{group} (best of {args.runs}, interleaved)")
            print(f"{'query':<40} {'Quiver s':>9} {'DuckDB s':>9} {'ratio':>6}  rows")
            for name, sql, duck_sql in queries:
                q_sql = sql.format(day=day)
                d_sql = (duck_sql or sql).format(day=day)
                qt, qrows = best(lambda: quiver(q_sql), 1)
                dt, drows = best(lambda: duck_run(d_sql), 1)
                for _ in range(args.runs - 1):
                    qt = min(qt, best(lambda: quiver(q_sql), 1)[0])
                    dt = min(dt, best(lambda: duck_run(d_sql), 1)[0])
                ratio = qt / dt
                ratios.setdefault(group, []).append(ratio)
                agree = "" if qrows == drows else f"  ROWS DIFFER: Quiver {qrows}, DuckDB {drows}"
                print(f"{name:<40} {qt:>9.3f} {dt:>9.3f} {ratio:>6.2f}  {qrows}{agree}", flush=True)
        for group, rs in ratios.items():
            geo = math.exp(sum(math.log(r) for r in rs) / len(rs))
            print(f"{group}: geomean {geo:.2f}, worst {max(rs):.2f} over {len(rs)} queries")
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
