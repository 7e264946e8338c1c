"""`quiver dashboard` end to end, in a real terminal: a `quiver serve` on
simulated data, the dashboard inside tmux (its own server socket), keys sent
with send-keys and the screen read with capture-pane. What the screen shows
is checked against the same numbers queried over Flight SQL (ADBC)."""

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid

import pyarrow as pa
import pytest

from conftest import quiver_binary, quiver_env, start_server, stop_server

WIDTH, HEIGHT = 160, 50


class Tmux:
    """One tmux server of the test's own (-L), so nothing else is touched."""

    def __init__(self):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is required (scripts/test.sh installs it)")
        self.socket = f"quiver-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def run(self, *args, check=True):
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            check=check,
            capture_output=True,
            text=True,
            env=quiver_env(),
        )

    def start(self, command, cwd):
        self.run(
            "new-session", "-d", "-s", "dash", "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", cwd, command,
        )
        # Keep the pane after the program exits, to see how it left the terminal.
        self.run("set-option", "-t", "dash", "remain-on-exit", "on")

    def keys(self, *keys):
        self.run("send-keys", "-t", "dash", *keys)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "dash").stdout

    def display(self, fmt):
        return self.run("display-message", "-p", "-t", "dash", fmt).stdout.strip()

    def wait_for(self, predicate, what, timeout=30):
        deadline = time.time() + timeout
        screen = ""
        while time.time() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        pytest.fail(f"the dashboard did not show {what} within {timeout}s; the screen:\n{screen}")

    def kill(self):
        self.run("kill-server", check=False)


@pytest.fixture(scope="module")
def dash():
    binary = quiver_binary()
    work = tempfile.mkdtemp(prefix="quiver-dashboard-")
    data = os.path.join(work, "data")
    subprocess.run(
        [binary, "--data-dir", data, "simulate", "--events", "20000", "--quiet"],
        check=True, env=quiver_env(), stdout=subprocess.DEVNULL,
    )
    proc, url, log = start_server(binary, None, data, work)
    tmux = Tmux()
    # From a directory other than the checkout, finding the server by the
    # data dir's advert (no --server).
    # The exit code goes to a file: tmux's pane_dead_status is sometimes
    # never filled in (seen on CI with tmux 3.3a).
    dashboard = f"{shlex.quote(binary)} --data-dir {shlex.quote(data)} dashboard --refresh 1s"
    exit_file = os.path.join(work, "dashboard.exit")
    tmux.start(f"sh -c {shlex.quote(f'{dashboard}; echo $? > {shlex.quote(exit_file)}')}", cwd=work)
    state = {"binary": binary, "work": work, "data": data, "url": url, "proc": proc,
             "log": log, "tmux": tmux, "exit_file": exit_file}
    try:
        tmux.wait_for(lambda s: f"● {url}" in s, "the connected server")
        yield state
    finally:
        tmux.kill()
        if state["proc"].poll() is None:
            stop_server(state["proc"], state["log"])


def connect(url):
    import adbc_driver_flightsql.dbapi as flight_sql

    return flight_sql.connect(url)


def query(url, sql):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def ingest_signal(url, symbol):
    now = dt.datetime.now(dt.timezone.utc)
    ts = pa.array([now], pa.timestamp("us", tz="UTC"))
    rows = pa.table({
        "ts": ts, "symbol": [symbol], "signal_id": [str(uuid.uuid4())], "mode": ["scalp"],
        "side": ["BUY"], "price": [101.5], "strength": [0.75], "model_id": ["m-dash"],
        "regime": ["TREND"], "decision_ts": ts, "label_cutoff_ts": ts,
    })
    with connect(url) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest("signals", rows, mode="append")
        conn.commit()


def line_with(screen, *parts):
    for line in screen.splitlines():
        if all(p in line for p in parts):
            return line
    return None


def test_the_live_feed_shows_events_as_they_commit_and_filters_by_symbol(dash):
    tmux, url = dash["tmux"], dash["url"]
    tmux.keys("1")
    screen = tmux.wait_for(lambda s: "kill switch armed" in s, "the status line")
    assert "health" in screen and "queue" in screen
    symbol = "ZZDASH-USD"
    ingest_signal(url, symbol)
    screen = tmux.wait_for(lambda s: line_with(s, "signals", symbol) is not None,
                           "the ingested signal in the feed", timeout=10)
    assert 'decision_ts=' in line_with(screen, "signals", symbol)
    # Filter the feed by symbol: only that symbol's events stay.
    tmux.keys("/")
    for c in symbol:
        tmux.keys("-l", c)
    tmux.keys("Enter")
    screen = tmux.wait_for(lambda s: f"symbol={symbol}" in s, "the symbol filter")
    feed = screen.split("Feed:", 1)[1]
    rows = [l for l in feed.splitlines() if re.search(r"#\d+ ", l)]
    assert rows and all(symbol in l for l in rows), feed
    # Table filter: trades only, then clear.
    tmux.keys("c")
    tmux.keys("t")
    tmux.wait_for(lambda s: "table=signals" in s, "the table filter")
    tmux.keys("c")
    tmux.wait_for(lambda s: "(all events)" in s, "the cleared filter")


def test_gates_show_pass_rates_from_sql_and_explain_the_selected_rejection(dash):
    tmux, url = dash["tmux"], dash["url"]
    tmux.keys("2")
    rate = query(url, "SELECT value FROM metrics.gate_pass_rate WHERE gate = 'meta_label' "
                      "AND mode = 'scalp' AND day = (SELECT max(day) FROM metrics.gate_pass_rate)")
    expected = f"{rate[0]['value'] * 100:.1f}%"
    screen = tmux.wait_for(lambda s: line_with(s, "meta_label", "scalp", expected) is not None,
                           f"meta_label scalp at {expected}")
    assert "0.55" in line_with(screen, "meta_label", "scalp", expected), "the threshold from gates.yaml"
    rejections = query(url, "SELECT decision_id FROM events.gate_decisions WHERE result = 'FAIL' "
                            "AND date >= current_date - INTERVAL '1 day' "
                            "ORDER BY ts DESC, decision_id LIMIT 2")
    first, second = rejections[0]["decision_id"], rejections[1]["decision_id"]
    tmux.wait_for(lambda s: f"decision {first}" in s, "the first rejection explained")
    tmux.keys("j")
    screen = tmux.wait_for(lambda s: f"decision {second}" in s, "the second rejection explained")
    # The same text as `quiver explain`.
    explain = subprocess.run(
        [dash["binary"], "--data-dir", dash["data"], "explain", second],
        check=True, capture_output=True, text=True, env=quiver_env(),
    ).stdout
    reason = explain.splitlines()[3].strip()
    assert "REJECTED" in reason, explain
    assert reason[:60] in screen.replace("│", " "), (reason, screen)


def test_shadow_trades_count_good_and_bad_blocks_and_sweep_the_selected_gate(dash):
    tmux, url = dash["tmux"], dash["url"]
    tmux.keys("3")
    counts = query(url, "SELECT sum(CASE WHEN outcome_pnl_bps <= 0 THEN 1 ELSE 0 END) AS good, "
                        "sum(CASE WHEN outcome_pnl_bps > 0 THEN 1 ELSE 0 END) AS bad "
                        "FROM (SELECT outcome_pnl_bps FROM journal.shadow_trades "
                        "ORDER BY blocked_ts DESC LIMIT 500) t")[0]
    tmux.wait_for(lambda s: f"{counts['good']} good and {counts['bad']} bad blocks" in s,
                  f"{counts['good']} good and {counts['bad']} bad blocks")
    first_gate = "meta_label"
    tmux.wait_for(lambda s: f"Sweep: {first_gate} scalp" in s, "the sweep of the first gate")
    tmux.keys("g")
    tmux.keys("m")
    sweep = query(url, "SELECT decisions FROM analysis.gate_threshold_sweep "
                       "WHERE gate = 'cost_gate' AND mode = 'runner' ORDER BY delta LIMIT 1")
    decisions = f"{sweep[0]['decisions']:,}"
    screen = tmux.wait_for(lambda s: "Sweep: cost_gate runner" in s and decisions in s.split("Sweep:")[1],
                           "the sweep of cost_gate runner")
    # Sorting by P&L (the last column) puts the biggest counterfactual first.
    for _ in range(7):
        tmux.keys("s")
    tmux.wait_for(lambda s: "sort (outcome_pnl_bps ↓)" in s, "the sort by P&L")


def test_trades_and_latency_match_sql(dash):
    tmux, url = dash["tmux"], dash["url"]
    tmux.keys("4")
    modes = query(url, "SELECT mode, win_rate(pnl_bps) AS w, count(*) AS n FROM journal.v_closed_trades "
                       "WHERE exit_ts >= date_trunc('day', now()) GROUP BY mode ORDER BY mode")
    assert modes, "the simulation closes trades today"
    for m in modes:
        tmux.wait_for(lambda s, m=m: line_with(s, m["mode"], f"{m['w'] * 100:.1f}%") is not None,
                      f"{m['mode']} win rate {m['w']:.3f}")
    tmux.keys("5")
    top = query(url, "SELECT step, p95_ms FROM analysis.trace_step_stats WHERE day = "
                     "(SELECT max(day) FROM analysis.trace_step_stats) ORDER BY p95_ms DESC LIMIT 1")[0]
    tmux.wait_for(lambda s: line_with(s, top["step"], f"{top['p95_ms']:.3f}") is not None,
                  f"{top['step']} at p95 {top['p95_ms']:.3f} ms")
    tmux.keys("6")
    alerts = query(url, "SELECT count(*) AS n FROM metrics.alerts")[0]["n"]
    tmux.wait_for(lambda s: f"Alerts fired ({min(alerts, 100)})" in s, "the alert count")


def test_help_and_resize(dash):
    tmux = dash["tmux"]
    tmux.keys("?")
    tmux.wait_for(lambda s: "Keys" in s and "switch tabs" in s, "the help")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "switch tabs" not in s, "the help closed")
    tmux.run("resize-window", "-t", "dash", "-x", "90", "-y", "24")
    screen = tmux.wait_for(lambda s: len(s.splitlines()[0]) <= 90 and "1 Live" in s.splitlines()[0],
                           "the tabs redrawn at 90 columns")
    assert len(screen.splitlines()) <= 24
    tmux.run("resize-window", "-t", "dash", "-x", str(WIDTH), "-y", str(HEIGHT))


def test_a_server_restart_is_shown_and_survived(dash):
    tmux, url = dash["tmux"], dash["url"]
    tmux.keys("1")
    stop_server(dash["proc"], dash["log"])
    tmux.wait_for(lambda s: "server unreachable" in s, "the lost server", timeout=15)
    port = url.rsplit(":", 1)[1]
    proc, url2, log = start_server(dash["binary"], None, dash["data"], dash["work"],
                                   name="serve2", listen=f"127.0.0.1:{port}")
    dash["proc"], dash["log"] = proc, log
    assert url2 == url
    tmux.wait_for(lambda s: "server unreachable" not in s and f"● {url}" in s,
                  "the reconnected server", timeout=20)
    symbol = "ZZBACK-USD"
    ingest_signal(url, symbol)
    tmux.wait_for(lambda s: line_with(s, "signals", symbol) is not None,
                  "an event after the restart", timeout=15)


def test_q_quits_and_restores_the_terminal(dash):
    tmux = dash["tmux"]
    assert tmux.display("#{alternate_on}") == "1", "the dashboard draws on the alternate screen"
    tmux.keys("q")
    deadline = time.time() + 10
    while not (os.path.exists(dash["exit_file"]) and tmux.display("#{pane_dead}") == "1"):
        assert time.time() < deadline, "q did not end the dashboard"
        time.sleep(0.1)
    status = open(dash["exit_file"]).read().strip()
    assert status == "0", f"the dashboard exited with {status}"
    assert tmux.display("#{alternate_on}") == "0", "the terminal was left on the alternate screen"
