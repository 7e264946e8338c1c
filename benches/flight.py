"""Flight SQL benchmarks (run on demand with a release build; see benches/README.md).

1. Streaming: a 10M-row result (the header columns of every event in the lake)
   to pyarrow over loopback, in MB/s of Arrow data received, beside two
   baselines in this same script: pyarrow's own C++ Flight server
   (benches/arrow_flight_server.py, a process of its own) serving the same
   rows from memory, and DuckDB in-process reading the same Parquet into Arrow.
2. Latency: client-observed time of a small aggregate through ADBC, median
   and p95 over repeated runs: over the live demo (`quiver demo` with its
   defaults: 30 minutes of backfill, then 500 events/s), and over the 10M-event
   data set of (1).

    python benches/flight.py [--quiver target/release/quiver] [--events 10000000]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import pyarrow.flight as flight

warnings.filterwarnings("ignore", message="Cannot disable autocommit")

HEADER = "event_id, ts, symbol, level"
TABLES = ["signals", "gate_decisions", "trades", "shadow_trades", "trace_steps",
          "model_events", "market_context", "predictions"]


def env():
    return {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}


SMALL = ("SELECT mode, count(*) AS n, avg(pnl_bps) AS avg_pnl_bps FROM trades "
         "WHERE kind = 'CLOSE' GROUP BY mode")


def start_server(binary, data, command=("serve",), cwd=None):
    log_path = os.path.join(data + ".log")
    log = open(log_path, "w")
    proc = subprocess.Popen([binary, "--data-dir", data, *command, "--listen", "127.0.0.1:0"],
                            env=env(), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        with open(log_path) as f:
            m = re.search(r"Flight SQL on (grpc://\S+)", f.read())
        if m:
            return proc, m.group(1)
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("quiver serve did not start")


def stream_flight(url, sql):
    client = flight.FlightClient(url)
    cmd = sql.encode()
    def field(n, payload):
        out, length = bytearray([(n << 3) | 2]), len(payload)
        while True:
            b = length & 0x7F
            length >>= 7
            out.append(b | (0x80 if length else 0))
            if not length:
                return bytes(out) + payload
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    descriptor = flight.FlightDescriptor.for_command(field(1, type_url) + field(2, field(1, cmd)))
    t = time.perf_counter()
    info = client.get_flight_info(descriptor)
    table = client.do_get(info.endpoints[0].ticket).read_all()
    return table, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quiver", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "quiver"))
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="quiver-bench-flight-")
    data = os.path.join(work, "data")
    print(f"simulating {args.events:,} events into {data} ...", flush=True)
    subprocess.run([args.quiver, "--data-dir", data, "simulate", "--events", str(args.events),
                    "--quiet"], check=True, env=env(), stdout=subprocess.DEVNULL)
    proc, url = start_server(args.quiver, data)
    try:
        sql = " UNION ALL ".join(f"SELECT {HEADER} FROM events.{t}" for t in TABLES)
        glob = os.path.join(data, "lake", "*", "*", "*", "*.parquet")
        duck_sql = f"SELECT {HEADER} FROM read_parquet('{glob}', union_by_name = true)"
        baseline = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "arrow_flight_server.py"), glob, HEADER],
            stdout=subprocess.PIPE, text=True)
        port = int(baseline.stdout.readline().split()[2])
        arrow_client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        for run in range(args.runs):
            table, secs = stream_flight(url, sql)
            mb = table.nbytes / 1e6
            t = time.perf_counter()
            base = arrow_client.do_get(flight.Ticket(b"all")).read_all()
            bsecs = time.perf_counter() - t
            bmb = base.nbytes / 1e6
            print(f"run {run}: pyarrow C++ Flight server {base.num_rows:,} rows, {bmb:,.0f} MB in "
                  f"{bsecs:.2f}s = {bmb / bsecs:,.0f} MB/s | Quiver / pyarrow server: "
                  f"{(mb / secs) / (bmb / bsecs):.2f}", flush=True)
            con = duckdb.connect()
            t = time.perf_counter()
            duck = con.sql(duck_sql).arrow()
            duck = duck.read_all() if hasattr(duck, "read_all") else duck
            dsecs = time.perf_counter() - t
            dmb = duck.nbytes / 1e6
            print(f"run {run}: Flight SQL {table.num_rows:,} rows, {mb:,.0f} MB in {secs:.2f}s = "
                  f"{mb / secs:,.0f} MB/s | DuckDB in-process {duck.num_rows:,} rows, {dmb:,.0f} MB "
                  f"in {dsecs:.2f}s = {dmb / dsecs:,.0f} MB/s | ratio {(mb / secs) / (dmb / dsecs):.2f}",
                  flush=True)

        baseline.terminate()
        latency(url, f"{args.events:,} simulated events")
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    demo, url = start_server(args.quiver, os.path.join(work, "demo"), ("demo",))
    try:
        time.sleep(30)  # backfilled and running live
        latency(url, "the live demo (30 min backfill + 500 events/s)")
    finally:
        demo.terminate()
        demo.wait(timeout=60)


def latency(url, what):
    conn = flight_sql.connect(url)
    times = []
    for i in range(110):
        t = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(SMALL)
            cur.fetch_arrow_table()
        if i >= 10:  # the first runs warm the connection and caches
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"small aggregate over {what}: median {statistics.median(times):.1f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.1f} ms ({len(times)} runs)", flush=True)
    conn.close()


if __name__ == "__main__":
    main()
