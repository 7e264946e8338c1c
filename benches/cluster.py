"""One node against a Ballista cluster on the same lake (run on demand with a
release build; see benches/README.md and the README's "Beyond one machine").

Simulated bot data (--events, all closed cleanly into the lake), then in this
one script, for each query shape, the median wall-clock of --runs:

- one node: `quiver sql "SQL"` on the data dir (opens it, plans, runs);
- cluster:  `quiver sql --cluster df://... "SQL"` against a scheduler and
  --executors executors started here on loopback (plans on the client,
  schedules, runs, fetches the results from the executors).

Both pay the same process start and definition compile, so the ratio is the
cluster's own cost on this machine. On one 2-core machine the cluster cannot
be faster (its executors share the cores); its figures say what a small
query pays for distribution, and how the gap narrows as the work grows.

    python benches/cluster.py [--quiver target/release/quiver] [--events 2000000] [--data DIR]
"""

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUERIES = {
    "point count": "SELECT count(*) FROM signals WHERE symbol = 'BTC-USD'",
    "group by day, symbol": (
        "SELECT date, symbol, count(*) AS n, avg(value) AS v "
        "FROM gate_decisions GROUP BY date, symbol ORDER BY date, symbol"),
    "metric view": "SELECT * FROM metrics.win_rate ORDER BY day",
    "explain_gate over every decision": (
        "SELECT verdict, count(*) FROM analysis.gate_explanations GROUP BY verdict ORDER BY verdict"),
    "shuffle join": (
        "SELECT s.symbol, count(*) AS n FROM signals s JOIN gate_decisions g "
        "ON s.signal_id = g.signal_id GROUP BY s.symbol ORDER BY s.symbol"),
}


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    e["RUST_LOG"] = "error"
    return e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the {what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the {what} did not listen on {port}")


def same_answer(a, b):
    """The same rows, in any order of ties, floats to 9 significant digits
    (the cluster sums in another order)."""
    def norm(text):
        rows = []
        for line in text.splitlines():
            cells = []
            for cell in line.split(","):
                try:
                    cells.append(f"{float(cell):.9g}" if "." in cell else cell)
                except ValueError:
                    cells.append(cell)
            rows.append(",".join(cells))
        return sorted(rows)
    return norm(a) == norm(b)


def timed(cmd, runs):
    times, out = [], None
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(cmd, env=env(), capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)}\n{done.stderr}")
        out = done.stdout
    return statistics.median(times), out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quiver", default=os.path.join(REPO, "target/release/quiver"))
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--data")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--executors", type=int, default=2)
    a = p.parse_args()
    data = a.data or tempfile.mkdtemp(prefix="quiver-cluster-bench-")
    q = a.quiver
    generated = not os.path.exists(os.path.join(data, "lake"))
    if generated:
        subprocess.run([q, "--data-dir", data, "simulate", "--events", str(a.events), "--quiet"],
                       env=env(), check=True)
    lake_bytes = sum(os.path.getsize(os.path.join(d, f))
                     for d, _, fs in os.walk(os.path.join(data, "lake")) for f in fs
                     if f.endswith(".parquet"))
    procs = []
    try:
        port = free_port()
        sched = subprocess.Popen([q, "--data-dir", data, "cluster", "scheduler", "--bind",
                                  f"127.0.0.1:{port}"], env=env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(sched)
        wait_port(port, sched, "scheduler")
        for _ in range(a.executors):
            flight, grpc = free_port(), free_port()
            ex = subprocess.Popen([q, "--data-dir", data, "cluster", "executor", "--scheduler",
                                   f"127.0.0.1:{port}", "--flight-port", str(flight),
                                   "--grpc-port", str(grpc)], env=env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(ex)
            wait_port(flight, ex, "executor")
        time.sleep(1)
        url = f"df://127.0.0.1:{port}"
        made = f"{a.events:,} events, " if generated else ""
        print(f"{made}lake {lake_bytes / 1e6:.0f} MB, {a.executors} executors, "
              f"median of {a.runs} runs, whole `quiver sql` commands")
        print(f"{'query':36} {'one node s':>10} {'cluster s':>10} {'cluster/one':>12}")
        for name, sql in QUERIES.items():
            one, one_out = timed([q, "--data-dir", data, "sql", "--format", "csv", sql], a.runs)
            clu, clu_out = timed([q, "--data-dir", data, "sql", "--format", "csv",
                                  "--cluster", url, sql], a.runs)
            same = "" if same_answer(one_out, clu_out) else "  (answers differ!)"
            print(f"{name:36} {one:10.3f} {clu:10.3f} {clu / one:11.2f}x{same}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
