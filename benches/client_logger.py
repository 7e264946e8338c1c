"""The Python client's logger (clients/python, run on demand; see benches/README.md).

- `log()` latency in CPython: `time.perf_counter_ns()` around each of N calls
  (default 200,000) of gate_decisions events (14 columns, string-heavy, as the
  Rust benches use), against a real `quiver serve` so the batcher and shipper
  threads run meanwhile; beside a bare `queue.Queue.put_nowait` of the same
  objects in the same script. p50 / p99 / p99.9 / max. The queue capacity is
  raised to 2N (the trip fill is 95%) so every call is an accepted one, not a cheap drop.
- Sustained: N events (default 500,000) logged as fast as one thread can,
  then `flush()`: events/s from the first `log()` to the flush's return (the
  rows durable and queryable on the server), and the producer's own rate.

    cargo build --release && .venv/bin/pip install ./clients/python && \\
        .venv/bin/python benches/client_logger.py [--quiver target/release/quiver]
"""

import argparse
import datetime as dt
import json
import os
import queue
import re
import statistics
import subprocess
import tempfile
import time

from quiver_client import GateDecision, Logger


def quiver(binary, work):
    data = os.path.join(work, "data")
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write("[flight]\n")
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


def events(n):
    """n distinct gate decisions, built before any timing, stamped 10 µs
    apart up to now as a bot logging 100,000 a second stamps them. (One `ts`
    for all would make every batch's duplicate check on the server scan every
    row stored so far: it looks ids up among the stored rows of the batch's
    time range.)"""
    first = dt.datetime.now(dt.timezone.utc) - dt.timedelta(microseconds=10 * n)
    gates = ["meta_label", "cost_gate", "confidence_gate", "regime_gate", "spread_gate", "volume_gate"]
    return [
        GateDecision(
            symbol=("BTC-USD", "ETH-USD", "SOL-USD")[i % 3],
            ts=first + dt.timedelta(microseconds=10 * i),
            decision_id=f"d-{i}",
            signal_id=f"s-{i // 6}",
            trace_id=f"t-{i // 6}",
            gate=gates[i % 6],
            result="PASS" if i % 4 else "FAIL",
            value=float(i % 97),
            threshold=50.0,
            direction="max",
            mode="scalp",
            regime="TREND",
            inputs=json.dumps({"spread_bps": i % 13}),
        )
        for i in range(n)
    ]


def percentiles(samples_ns):
    s = sorted(samples_ns)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1000  # noqa: E731
    return pick(0.50), pick(0.99), pick(0.999), s[-1] / 1000


def latency(url, pool, n):
    clock = time.perf_counter_ns
    logger = Logger(url, queue_capacity=2 * n)
    samples = []
    for i in range(n):
        e = pool[i % len(pool)]
        t0 = clock()
        logger.log(e)
        samples.append(clock() - t0)
    logger.flush(timeout=600)
    stats = logger.stats()
    logger.close()
    assert sum(stats.accepted.values()) == n, stats

    q = queue.Queue()
    base = []
    for i in range(n):
        e = pool[i % len(pool)]
        t0 = clock()
        q.put_nowait(e)
        base.append(clock() - t0)
    return percentiles(samples), percentiles(base)


def sustained(url, pool, n, in_flight):
    logger = Logger(url, queue_capacity=2 * n, **({} if in_flight is None else {"ingests_in_flight": in_flight}))
    started = time.perf_counter()
    for i in range(n):
        logger.log(pool[i % len(pool)])
    produced = time.perf_counter() - started
    logger.flush(timeout=600)
    elapsed = time.perf_counter() - started
    stats = logger.stats()
    logger.close()
    assert stats.rows_sent == n, stats
    return n / elapsed, n / produced, elapsed, stats.batches_sent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiver", default="target/release/quiver")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ingests-in-flight", type=int, default=None, help="the sustained runs' LoggerConfig.ingests_in_flight (default: its default)"
    )
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="quiver-bench-client-")
    proc, url = quiver(args.quiver, work)
    try:
        print(f"log() latency, {args.calls:,} calls per run, gate_decisions, µs")
        print(f"{'run':>4} {'':28} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>9}")
        for run in range(args.runs):
            ours, base = latency(url, events(args.calls), args.calls)
            print(f"{run:>4} {'Logger.log':28} {ours[0]:7.2f} {ours[1]:7.2f} {ours[2]:7.2f} {ours[3]:9.1f}")
            print(f"{'':>4} {'queue.Queue.put_nowait':28} {base[0]:7.2f} {base[1]:7.2f} {base[2]:7.2f} {base[3]:9.1f}")
        print(f"\nsustained, {args.events:,} gate_decisions per run, log() then flush(), ingests_in_flight={args.ingests_in_flight or 'default'}")
        rates = []
        for run in range(args.runs):
            rate, produced, elapsed, batches = sustained(url, events(args.events), args.events, args.ingests_in_flight)
            rates.append(rate)
            print(f"{run:>4} {rate:12,.0f} events/s durable ({elapsed:.2f} s, {batches} batches); log() alone {produced:12,.0f} events/s")
        print(f"median {statistics.median(rates):,.0f} events/s")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
