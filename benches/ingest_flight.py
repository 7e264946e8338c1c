"""Bulk ingest over Flight SQL (run on demand with a release build; see benches/README.md).

One request of N market_context rows (default 1,000,000, in batches of 50,000),
uploaded by pyarrow's Flight client with DoPut, to:

- the baseline: pyarrow's own C++ Flight server in a process of its own, which
  reads the upload into memory and answers (the cost of moving the same bytes
  over loopback gRPC, nothing stored);
- `quiver serve` on an empty data dir: rows with fresh event_ids (validated,
  deduplicated, WAL-fsynced, visible before the answer); the same rows resent
  (every row found in the ledger); the same without event_id (ids derived from
  each row's content);
- `quiver serve` with `ingest_dedup_window = "0s"`: the resend is checked
  against the stored tables instead (the path after a restart).

Each figure is the best of `--runs`; ratios are to the baseline.

    cargo build --release && .venv/bin/python benches/ingest_flight.py [--rows 1000000]
"""

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import pyarrow as pa
import pyarrow.flight as flight

INGEST_TYPE_URL = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementIngest"


def pb_bytes(field, payload):
    """A length-delimited protobuf field."""
    out, n = bytearray([(field << 3) | 2]), len(payload)
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out) + payload


def ingest_descriptor(table):
    """A packed Any of CommandStatementIngest(table), append mode."""
    options = bytes([0x08, 2, 0x10, 2])  # if_not_exist = FAIL, if_exists = APPEND
    command = pb_bytes(1, options) + pb_bytes(2, table.encode())
    return flight.FlightDescriptor.for_command(pb_bytes(1, INGEST_TYPE_URL) + pb_bytes(2, command))


def market_rows(n, ids=True):
    now = dt.datetime.now(dt.timezone.utc)
    columns = {
        "ts": pa.array([now - dt.timedelta(microseconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "symbol": pa.array(["BTC-USD", "ETH-USD", "SOL-USD"] * (n // 3) + ["BTC-USD"] * (n % 3)),
        "price": pa.array([100.0 + (i % 1000) * 0.01 for i in range(n)]),
        "spread_bps": pa.array([1.5] * n),
        "volume": pa.array([float(i) for i in range(n)]),
        "volatility": pa.array([0.2] * n),
        "regime": pa.array(["TREND"] * n),
    }
    if ids:
        columns = {"event_id": pa.array([str(uuid.uuid4()) for _ in range(n)]), **columns}
    return pa.table(columns)


def put(url, descriptor, table, batch_rows):
    """Uploads `table` in one DoPut; returns seconds until the answer."""
    client = flight.FlightClient(url)
    start = time.perf_counter()
    writer, reader = client.do_put(descriptor, table.schema)
    for batch in table.to_batches(max_chunksize=batch_rows):
        writer.write_batch(batch)
    writer.done_writing()
    reader.read()
    writer.close()
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


class Sink(flight.FlightServerBase):
    """The baseline: reads every upload into memory, keeps nothing."""

    def do_put(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.write(pa.py_buffer(b"\x08\x01"))


def serve_baseline():
    server = Sink("grpc://127.0.0.1:0")
    print(f"listening on {server.port}", flush=True)
    server.serve()


def start(args, name):
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        m = re.search(r"listening on (\d+)|Flight SQL on (grpc://\S+)", line)
        if m:
            return proc, m.group(2) or f"grpc://127.0.0.1:{m.group(1)}"
    raise SystemExit(f"{name} did not start")


def quiver(binary, work, name, flight_keys=""):
    data = os.path.join(work, name)
    config = os.path.join(work, f"{name}.toml")
    with open(config, "w") as f:
        f.write("[flight]\n" + flight_keys)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    args = [binary, "--config", config, "--data-dir", data, "serve", "--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        m = re.search(r"Flight SQL on (grpc://\S+)", line)
        if m:
            # Drain the log so the server never blocks on a full pipe.
            subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
            return proc, m.group(1)
    raise SystemExit("quiver serve did not start")


def best(runs, fn):
    return min(fn() for _ in range(runs))


def main():
    if sys.argv[1:] == ["--serve-baseline"]:
        return serve_baseline()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiver", default="target/release/quiver")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n, batch, runs = args.rows, args.batch, args.runs
    descriptor = ingest_descriptor("market_context")
    work = tempfile.mkdtemp(prefix="quiver-bench-ingest-")
    results = []

    base, url = start([sys.executable, __file__, "--serve-baseline"], "baseline")
    rows = market_rows(n)
    results.append(("pyarrow C++ Flight server, DoPut into memory", best(runs, lambda: put(url, descriptor, rows, batch))))
    base.kill()

    proc, url = quiver(args.quiver, work, "default")
    fresh = best(runs, lambda: put(url, descriptor, market_rows(n), batch))
    results.append(("quiver: fresh event_ids (stored)", fresh))
    rows = market_rows(n)
    put(url, descriptor, rows, batch)
    results.append(("quiver: the same rows resent (ledger)", best(runs, lambda: put(url, descriptor, rows, batch))))
    results.append(("quiver: no event_id (content ids, stored)", best(runs, lambda: put(url, descriptor, market_rows(n, ids=False), batch))))
    proc.terminate()
    proc.wait()

    proc, url = quiver(args.quiver, work, "no-ledger", 'ingest_dedup_window = "0s"\n')
    rows = market_rows(n)
    put(url, descriptor, rows, batch)
    results.append(("quiver, window 0: the same rows resent (stored-table lookup)", best(runs, lambda: put(url, descriptor, rows, batch))))
    proc.terminate()
    proc.wait()

    baseline = results[0][1]
    print(f"\n{n:,} market_context rows per request, batches of {batch:,}, best of {runs}")
    print(f"{'':64} {'s':>7} {'rows/s':>12} {'x baseline':>11}")
    for what, secs in results:
        print(f"{what:64} {secs:7.3f} {n / secs:12,.0f} {baseline / secs:11.2f}")


if __name__ == "__main__":
    main()
