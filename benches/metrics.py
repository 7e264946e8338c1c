"""`metrics compute` benchmark (run on demand with a release build; see benches/README.md).

One day of simulated bot data (10M events by default, all on today's date),
then in this one script:

1. `quiver metrics compute --date D`: the whole job (open the data dir,
   every metric of configs/metrics.yaml for the day, metric_values and alerts
   written), wall-clock seconds, median of --runs.
2. The same generated SQL (what `quiver metrics show NAME` prints) run by
   DuckDB in-process over the same Parquet files, with the same day filter:
   every metric DuckDB can run, and beside it Quiver's time for exactly those
   metrics through its Flight SQL server (ADBC), so the ratio compares the
   same work.

    python benches/metrics.py [--quiver target/release/quiver] [--events 10000000] [--data DIR]
"""

import argparse
import glob
import os
import statistics
import subprocess
import tempfile
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb

from flight import env, start_server  # benches/flight.py, beside this script

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ["signals", "gate_decisions", "trades", "shadow_trades", "trace_steps",
          "model_events", "market_context", "predictions"]

# The `learning` views metrics read (src/query/learning.rs), for DuckDB.
LEARNING = {
    "prediction_outcomes": """
        SELECT p.model_id, p.signal_id, p.symbol, p.ts AS predicted_ts,
               p.date AS day, p.predicted_prob, l.label, l.ts AS labeled_ts
        FROM events.predictions p
        JOIN events.predictions l
          ON l.signal_id = p.signal_id AND l.model_id = p.model_id
         AND l.kind = 'LABELED' AND l.label IS NOT NULL
        WHERE p.kind = 'PREDICTED' AND p.predicted_prob BETWEEN 0.0 AND 1.0""",
    "calibration_bins": """
        SELECT model_id, day, CAST(least(floor(predicted_prob * 10), 9) AS INT) AS bin,
               count(*) AS samples, avg(predicted_prob) AS avg_predicted,
               avg(CAST(label AS DOUBLE)) AS observed_rate,
               avg(power(predicted_prob - label, 2)) AS brier
        FROM learning.prediction_outcomes
        GROUP BY model_id, day, CAST(least(floor(predicted_prob * 10), 9) AS INT)""",
    "calibration": """
        SELECT model_id, day, sum(samples) AS samples,
               sum(samples * abs(avg_predicted - observed_rate)) / sum(samples) AS ece,
               max(abs(avg_predicted - observed_rate)) AS mce,
               sum(brier * samples) / sum(samples) AS brier
        FROM learning.calibration_bins GROUP BY model_id, day""",
}


def quiver(binary, data, *args, check=True):
    return subprocess.run([binary, "--data-dir", data, *args], env=env(), cwd=REPO,
                          capture_output=True, text=True, check=check)


def ensure_lake(binary, data, events):
    """Simulates `events` events into `data` (then compacts) unless its lake has trades."""
    if not glob.glob(f"{data}/lake/trades/*/*/*.parquet"):
        started = time.perf_counter()
        quiver(binary, data, "simulate", "--events", str(events), "--quiet")
        quiver(binary, data, "compact")
        print(f"simulated {events:,} events in {time.perf_counter() - started:.0f} s -> {data}")


def metric_sql(binary, data, name):
    out = quiver(binary, data, "metrics", "show", name).stdout
    return out.split("compiles to:\n", 1)[1].strip().rstrip(";")


def bench_args(name):
    """The options every data-dir benchmark takes, and its data dir."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiver", default=os.path.join(REPO, "target/release/quiver"))
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--data", help="reuse (or create) this data dir")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    return args, args.data or tempfile.mkdtemp(prefix=f"quiver-{name}-bench-")


def main():
    args, data = bench_args("metrics")
    lake = os.path.join(data, "lake")

    ensure_lake(args.quiver, data, args.events)

    duck = duckdb.connect()
    for schema in ("events", "learning", "analysis"):
        duck.execute(f"CREATE SCHEMA {schema}")
    for table in TABLES:
        duck.execute(f"CREATE VIEW events.{table} AS SELECT * FROM read_parquet("
                     f"'{lake}/{table}/*/*/*.parquet', hive_partitioning = true)")
    for name, sql in LEARNING.items():
        duck.execute(f"CREATE VIEW learning.{name} AS {sql}")
    # DuckDB spells DataFusion's percentile_cont(x, p) quantile_cont(x, p).
    duck.execute("CREATE MACRO percentile_cont(x, p) AS quantile_cont(x, p)")
    pending = sorted(glob.glob(os.path.join(REPO, "sql/analysis/*.sql")))
    while pending:
        failed = {}
        for path in pending:
            name = os.path.basename(path)[:-4]
            try:
                duck.execute(f"CREATE VIEW analysis.{name} AS {open(path).read()}")
            except duckdb.Error as e:
                failed[path] = str(e).splitlines()[0]
        if len(failed) == len(pending):
            for path, why in failed.items():
                print(f"DuckDB cannot create analysis.{os.path.basename(path)[:-4]}: {why}")
            break
        pending = list(failed)
    day, events = duck.execute(
        "SELECT CAST(date AS VARCHAR), count(*) FROM events.trace_steps GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()
    total = sum(duck.execute(f"SELECT count(*) FROM events.{t} WHERE date = DATE '{day}'").fetchone()[0]
                for t in TABLES)
    print(f"day {day}: {total:,} events")

    listing = quiver(args.quiver, data, "metrics", "list", "--format", "csv").stdout.splitlines()[1:]
    names = [line.split(",", 1)[0] for line in listing if "(snapshot)" not in line]
    sqls = {name: metric_sql(args.quiver, data, name) for name in names}
    runnable = {}
    for name, sql in sqls.items():
        query = f"SELECT * FROM ({sql}) WHERE day = DATE '{day}'"
        try:
            duck.execute(query).to_arrow_table()
            runnable[name] = query
        except duckdb.Error as e:
            print(f"  DuckDB cannot run {name}: {str(e).splitlines()[0][:100]}")

    # 1. The whole job beside DuckDB running the same SQL, interleaved run by
    # run (this machine's speed drifts by tens of percent over minutes).
    ratios = []
    for run in range(args.runs):
        started = time.perf_counter()
        out = quiver(args.quiver, data, "metrics", "compute", "--date", day)
        job = time.perf_counter() - started
        started = time.perf_counter()
        for query in runnable.values():
            duck.execute(query).to_arrow_table()
        baseline = time.perf_counter() - started
        ratios.append(job / baseline)
        print(f"run {run + 1}: quiver metrics compute {job:.2f} s ({len(sqls)} daily metrics and the "
              f"snapshots, files written); DuckDB, the {len(runnable)} it can run: {baseline:.2f} s; "
              f"ratio {job / baseline:.2f}")
    summary = [line for line in out.stdout.splitlines() if line.startswith(day)]
    print(f"median ratio {statistics.median(ratios):.2f}; {summary[0] if summary else out.stdout}")

    # 2. The same generated SQL, metric by metric: DuckDB and Quiver (via Flight SQL).
    server, url = start_server(args.quiver, data, cwd=REPO)
    try:
        conn = flight_sql.connect(url)
        duck_times, quiver_times = {}, {}
        for name, query in runnable.items():
            started = time.perf_counter()
            duck.execute(query).to_arrow_table()
            duck_times[name] = time.perf_counter() - started
            cur = conn.cursor()
            started = time.perf_counter()
            cur.execute(f"SELECT * FROM metrics.{name} WHERE day = DATE '{day}'")
            cur.fetch_arrow_table()
            quiver_times[name] = time.perf_counter() - started
            cur.close()
        conn.close()
    finally:
        server.terminate()
        server.wait()
    q, d = sum(quiver_times.values()), sum(duck_times.values())
    print(f"the same {len(duck_times)} metrics one by one, Quiver through its Flight SQL server: "
          f"{q:.2f} s; DuckDB in-process: {d:.2f} s; ratio {q / d:.2f}")
    slowest = sorted(quiver_times, key=lambda n: quiver_times[n] / max(duck_times[n], 1e-6), reverse=True)[:5]
    for name in slowest:
        print(f"  {name}: quiver {quiver_times[name]:.3f} s, duckdb {duck_times[name]:.3f} s")


if __name__ == "__main__":
    main()
