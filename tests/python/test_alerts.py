"""Alert delivery against a real `quiver serve` and a local HTTP receiver
that scripts its answers per request: Telegram-, Discord- and webhook-style
429s with retry_after, a 500, a hang past request_timeout. `metrics compute`
puts a rule that fires on the simulated data (one alert per symbol) into
the outbox; the tests assert what the receiver saw (attempts, their spacing,
grouping, the cooldown) and what `system.alert_deliveries` says over Flight
SQL, and that a kill -9 of the server loses no pending notice and sends it
once."""

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from conftest import quiver_binary, quiver_env, start_server, stop_server
from prometheus_client.openmetrics.parser import text_string_to_metric_families

TG_TOKEN = "123456:telegram-secret-token"

METRICS_YAML = """
version: 1
metrics:
  - name: closed_trades_test
    description: Closed trades per symbol (fires on any trading day)
    unit: trades
    source: events.trades
    filter: "kind = 'CLOSE'"
    formula: "count(*)"
    dimensions: [symbol]
    thresholds: { direction: above, warning: 1, critical: 1000000000 }
alerts:
  - { name: busy_day, metric: closed_trades_test, when: warning, severity: warning, schedule: daily,
      message: "trades closed" }
"""


class Receiver:
    """A local HTTP server: per path prefix, a script of answers taken one per
    request (then 200); every request is recorded with its arrival time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.scripts = {}
        self.requests = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                prefix = "/" + self.path.strip("/").split("/")[0]
                with receiver.lock:
                    receiver.requests.append(
                        {"prefix": prefix, "path": self.path, "at": time.monotonic(),
                         "headers": {k.lower(): v for k, v in self.headers.items()}, "body": json.loads(body or b"null")}
                    )
                    script = receiver.scripts.get(prefix, [])
                    action = script.pop(0) if script else ("status", 200, {"ok": True}, {})
                if action[0] == "hang":
                    time.sleep(action[1])
                    action = ("status", 200, {"ok": True}, {})
                _, code, payload, headers = action
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, prefix):
        return f"http://127.0.0.1:{self.port}{prefix}"

    def script(self, prefix, *actions):
        with self.lock:
            self.scripts[prefix] = list(actions)

    def seen(self, prefix):
        with self.lock:
            return [r for r in self.requests if r["prefix"] == prefix]

    def wait_for(self, prefix, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen(prefix)) >= count:
                return self.seen(prefix)
            time.sleep(0.05)
        pytest.fail(f"{prefix}: {len(self.seen(prefix))} requests, wanted {count}")


def status(code, payload=None, headers=None):
    return ("status", code, payload or {}, headers or {})


@pytest.fixture(scope="module")
def template():
    """A data dir with simulated trades, copied by each test."""
    work = tempfile.mkdtemp(prefix="quiver-alerts-template-")
    data = os.path.join(work, "data")
    subprocess.run(
        [quiver_binary(), "--data-dir", data, "simulate", "--events", "20000", "--quiet"],
        check=True, env=quiver_env(), stdout=subprocess.DEVNULL,
    )
    yield data
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(template, receiver, alerts_keys, receivers):
    """A work dir with a copy of the data, metrics.yaml and quiver.toml."""
    work = tempfile.mkdtemp(prefix="quiver-alerts-")
    data = os.path.join(work, "data")
    shutil.copytree(template, data)
    metrics = os.path.join(work, "metrics.yaml")
    with open(metrics, "w") as f:
        f.write(METRICS_YAML)
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write(f'[metrics]\nfile = "{metrics}"\n[alerts]\n{alerts_keys}\n{receivers}')
    return work, data, config


def env():
    e = quiver_env()
    e["TEST_TG_TOKEN"] = TG_TOKEN
    return e


def quiver(config, data, *args, timeout=120):
    return subprocess.run(
        [quiver_binary(), "--config", config, "--data-dir", data, *args],
        env=env(), capture_output=True, text=True, timeout=timeout,
    )


def serve(config, data, work, name):
    old = dict(os.environ)
    os.environ["TEST_TG_TOKEN"] = TG_TOKEN
    try:
        return start_server(quiver_binary(), config, data, work, name)
    finally:
        os.environ.clear()
        os.environ.update(old)


def deliveries(url):
    with flight_sql.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT notice_id, receiver, rule, dimensions, attempt, http_status, outcome, error "
            "FROM system.alert_deliveries ORDER BY id"
        )
        return cur.fetch_arrow_table().to_pylist()


def wait_for_rows(url, count, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = deliveries(url)
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    pytest.fail(f"{len(rows)} delivery rows, wanted {count}: {rows}")


RECEIVERS = """
[[alerts.receivers]]
name = "tg"
kind = "telegram"
base_url = "{tg}"
chat_id = "-100"
token_env = "TEST_TG_TOKEN"

[[alerts.receivers]]
name = "discord"
kind = "discord"
token_file = "{discord_file}"

[[alerts.receivers]]
name = "hook"
kind = "webhook"
url = "{hook}"
"""


def test_retries_spacing_grouping_cooldown_and_the_deliveries_table(template, receiver):
    work = tempfile.mkdtemp(prefix="quiver-alerts-files-")
    discord_file = os.path.join(work, "discord-url")
    with open(discord_file, "w") as f:
        f.write(receiver.url("/discord/api/webhooks/1/secret") + "\n")
    receivers = RECEIVERS.format(tg=receiver.url("/tg"), discord_file=discord_file, hook=receiver.url("/hook"))
    work, data, config = setup(
        template, receiver,
        'retry_initial = "300ms"\nretry_max = "5s"\nrequest_timeout = "1s"\ncooldown = "5m"',
        receivers,
    )
    prometheus_port = free_port()
    with open(config, "a") as f:
        f.write(f'\n[prometheus]\nenabled = true\nlisten = "127.0.0.1:{prometheus_port}"\n')
    receiver.script("/tg", status(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 2}}))
    receiver.script("/discord", status(429, {"message": "rate limited", "retry_after": 1.5}, {"Retry-After": "1"}))
    receiver.script("/hook", status(500, {"error": "boom"}), ("hang", 3))
    proc, url, log = serve(config, data, work, "alerts")
    try:
        out = quiver(config, data, "metrics", "compute")
        assert out.returncode == 0, out.stderr
        assert "computing through the server" in out.stderr
        assert "the server delivers the 3 message(s)" in out.stdout, out.stdout

        tg = receiver.wait_for("/tg", 2)
        discord = receiver.wait_for("/discord", 2)
        hook = receiver.wait_for("/hook", 3)
        time.sleep(1.0)
        # Exactly the scripted failures plus one success each.
        assert (len(receiver.seen("/tg")), len(receiver.seen("/discord")), len(receiver.seen("/hook"))) == (2, 2, 3)
        # Spacing: Telegram's body retry_after (2 s), Discord's float (1.5 s,
        # above its header's 1 s), then the webhook's backoff: 0.3 s after
        # the 500, and the hang cut at request_timeout (1 s) + 0.6 s.
        tolerance = 0.1
        assert tg[1]["at"] - tg[0]["at"] >= 2.0 - tolerance
        assert discord[1]["at"] - discord[0]["at"] >= 1.5 - tolerance
        assert hook[1]["at"] - hook[0]["at"] >= 0.3 - tolerance
        assert hook[2]["at"] - hook[1]["at"] >= 1.0 + 0.6 - tolerance
        assert hook[2]["at"] - hook[1]["at"] < 3.0, "the hang was not cut at request_timeout"

        # Grouping: one message per receiver, listing every symbol.
        text = tg[1]["body"]["text"]
        assert tg[1]["body"]["chat_id"] == "-100"
        assert tg[1]["path"] == f"/tg/bot{TG_TOKEN}/sendMessage"
        symbols = {a["labels"]["symbol"] for a in hook[2]["body"]["alerts"]}
        assert len(symbols) >= 2, hook[2]["body"]
        for symbol in symbols:
            assert f"symbol={symbol}" in text and f"symbol={symbol}" in discord[1]["body"]["content"]
        payload = hook[2]["body"]
        assert (payload["version"], payload["status"], payload["receiver"]) == ("4", "firing", "hook")
        assert {a["labels"]["alertname"] for a in payload["alerts"]} == {"busy_day"}
        assert all(a["startsAt"] for a in payload["alerts"])
        keys = {r["headers"]["idempotency-key"] for r in hook}
        assert len(keys) == 1, keys

        # Every attempt is a row, over Flight SQL.
        rows = wait_for_rows(url, 7)
        by = {}
        for r in rows:
            by.setdefault(r["receiver"], []).append(r)
        assert [(r["attempt"], r["http_status"], r["outcome"]) for r in by["tg"]] == [(1, 429, "retry"), (2, 200, "sent")]
        assert [(r["http_status"], r["outcome"]) for r in by["discord"]] == [(429, "retry"), (200, "sent")]
        assert [(r["http_status"], r["outcome"]) for r in by["hook"]] == [(500, "retry"), (None, "retry"), (200, "sent")]
        assert all(r["rule"] == "busy_day" for r in rows)
        assert str(by["hook"][0]["notice_id"]) == keys.pop()
        assert all(TG_TOKEN not in (r["error"] or "") for r in rows)
        # The same attempts on /metrics, by receiver and outcome.
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/metrics", timeout=10).read().decode()
        counted = {
            (s.labels["receiver"], s.labels["outcome"]): s.value
            for family in text_string_to_metric_families(scrape)
            for s in family.samples
            if s.name == "quiver_alert_deliveries_total"
        }
        assert counted[("tg", "retry")] == 1 and counted[("tg", "sent")] == 1, counted
        assert counted[("hook", "retry")] == 2 and counted[("hook", "sent")] == 1, counted
        assert counted[("discord", "gave_up")] == 0, counted

        # Cooldown: the same rule and dimensions again within 5 min: nothing sent.
        again = quiver(config, data, "metrics", "compute")
        assert again.returncode == 0, again.stderr
        assert "0 message(s) to the outbox" in again.stdout, again.stdout
        time.sleep(1.5)
        assert len(receiver.requests) == 7
        listed = quiver(config, data, "alerts", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("sent") == 3, listed.stdout
    finally:
        stop_server(proc, log)
    with open(os.path.join(work, "alerts.log")) as f:
        assert TG_TOKEN not in f.read()


def test_a_pending_notice_survives_kill_9_and_is_delivered_once(template, receiver):
    work, data, config = setup(
        template, receiver,
        'retry_initial = "3s"\nrequest_timeout = "1s"',
        f'[[alerts.receivers]]\nname = "hook"\nkind = "webhook"\nurl = "{receiver.url("/hook")}"\n',
    )
    receiver.script("/hook", status(503, {"error": "down"}))
    proc, url, log = serve(config, data, work, "before-kill")
    out = quiver(config, data, "metrics", "compute")
    assert out.returncode == 0, out.stderr
    receiver.wait_for("/hook", 1)
    # The 503 is recorded (the notice waits 3 s): not in flight. Kill -9.
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    log.close()
    assert len(receiver.seen("/hook")) == 1
    proc, url, log = serve(config, data, work, "after-kill")
    try:
        hook = receiver.wait_for("/hook", 2)
        time.sleep(2.0)
        assert len(receiver.seen("/hook")) == 2, "delivered more than once"
        assert hook[1]["at"] - hook[0]["at"] >= 3.0 - 0.1
        assert hook[0]["headers"]["idempotency-key"] == hook[1]["headers"]["idempotency-key"]
        rows = wait_for_rows(url, 2)
        assert [(r["attempt"], r["http_status"], r["outcome"]) for r in rows] == [(1, 503, "retry"), (2, 200, "sent")]
    finally:
        stop_server(proc, log)


def test_metrics_compute_without_a_server_delivers_itself(template, receiver):
    work, data, config = setup(
        template, receiver,
        'retry_initial = "200ms"\ndeliver_wait = "10s"',
        f'[[alerts.receivers]]\nname = "hook"\nkind = "webhook"\nurl = "{receiver.url("/hook")}"\n',
    )
    receiver.script("/hook", status(502))
    out = quiver(config, data, "metrics", "compute")
    assert out.returncode == 0, out.stderr
    assert "1 of 1 message(s) done" in out.stdout, out.stdout
    assert [r["prefix"] for r in receiver.requests] == ["/hook", "/hook"]


def test_alerts_test_reports_the_outcome_and_never_the_secret(template, receiver):
    receivers = (
        f'[[alerts.receivers]]\nname = "tg"\nkind = "telegram"\nbase_url = "{receiver.url("/tg")}"\n'
        'chat_id = "7"\ntoken_env = "TEST_TG_TOKEN"\n'
        f'[[alerts.receivers]]\nname = "missing"\nkind = "telegram"\nchat_id = "7"\ntoken_env = "TEST_NO_SUCH_VAR"\n'
    )
    work, data, config = setup(template, receiver, "", receivers)
    ok = quiver(config, data, "alerts", "test", "tg")
    assert ok.returncode == 0, ok.stderr
    assert "receiver tg: sent (HTTP 200)" in ok.stdout
    assert receiver.seen("/tg")[0]["body"]["chat_id"] == "7"
    receiver.script("/tg", status(401, {"ok": False, "description": f"Unauthorized {TG_TOKEN}"}))
    bad = quiver(config, data, "alerts", "test", "tg")
    assert bad.returncode != 0
    assert "receiver tg" in bad.stderr and "HTTP 401" in bad.stderr, bad.stderr
    assert TG_TOKEN not in bad.stderr + bad.stdout
    missing = quiver(config, data, "alerts", "test", "missing")
    assert missing.returncode != 0
    assert "TEST_NO_SUCH_VAR" in missing.stderr, missing.stderr


def test_a_notice_in_flight_at_kill_9_is_resent_once_with_its_idempotency_key(template, receiver):
    """The one at-least-once window: killed between the request and its
    record, the notice is claimed again once its lease (2 x request_timeout
    + 5 s) lapses, and sent with the same Idempotency-Key."""
    work, data, config = setup(
        template, receiver,
        'request_timeout = "1s"',
        f'[[alerts.receivers]]\nname = "hook"\nkind = "webhook"\nurl = "{receiver.url("/hook")}"\n',
    )
    receiver.script("/hook", ("hang", 0.9))
    proc, url, log = serve(config, data, work, "in-flight")
    out = quiver(config, data, "metrics", "compute")
    assert out.returncode == 0, out.stderr
    receiver.wait_for("/hook", 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    log.close()
    proc, url, log = serve(config, data, work, "after-in-flight")
    try:
        hook = receiver.wait_for("/hook", 2, timeout=30)
        time.sleep(1.5)
        assert len(receiver.seen("/hook")) == 2
        assert hook[1]["at"] - hook[0]["at"] >= 7.0 - 0.5, "resent before the lease lapsed"
        assert hook[0]["headers"]["idempotency-key"] == hook[1]["headers"]["idempotency-key"]
        rows = wait_for_rows(url, 1)
        assert [(r["attempt"], r["http_status"], r["outcome"]) for r in rows] == [(2, 200, "sent")]
    finally:
        stop_server(proc, log)


def test_serve_refuses_to_start_without_a_receivers_secret(template, receiver):
    work, data, config = setup(
        template, receiver, "",
        '[[alerts.receivers]]\nname = "desk"\nkind = "discord"\ntoken_env = "TEST_NO_DISCORD_URL"\n',
    )
    out = subprocess.run(
        [quiver_binary(), "--config", config, "--data-dir", data, "serve", "--listen", "127.0.0.1:0"],
        env=env(), capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "TEST_NO_DISCORD_URL" in out.stderr and "desk" in out.stderr, out.stderr
    assert not os.path.exists(os.path.join(data, "flight.json"))
