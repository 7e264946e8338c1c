"""The health monitor against a real `quiver serve`: system.health and
system.definitions over Flight SQL, `quiver status` through the server and on
a closed data dir, health alerts delivered to a local webhook, and the state
gauges on /metrics.

Thresholds are set so a check is in a known state on any machine: a free-space
floor of 1 EiB makes `disk_free` critical everywhere, the default one makes it
ok on the CI disk (checked against the free space Python reads itself).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from conftest import quiver_binary, quiver_env, start_server, stop_server
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from test_alerts import Receiver, free_port

EIB = 1 << 60

BROKEN_METRICS = """
version: 1
metrics:
  - name: broken
    description: refers to a column that does not exist
    unit: trades
    source: events.trades
    formula: "sum(no_such_column)"
"""


@pytest.fixture(scope="module")
def template():
    work = tempfile.mkdtemp(prefix="quiver-health-template-")
    data = os.path.join(work, "data")
    subprocess.run(
        [quiver_binary(), "--data-dir", data, "simulate", "--events", "5000", "--quiet"],
        check=True, env=quiver_env(), stdout=subprocess.DEVNULL,
    )
    yield data
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def setup(template, health_keys, extra=""):
    work = tempfile.mkdtemp(prefix="quiver-health-")
    data = os.path.join(work, "data")
    shutil.copytree(template, data)
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write(f'[metrics]\nreload_interval = "200ms"\n[health]\n{health_keys}\n{extra}')
    return work, data, config


def quiver(config, data, *args, timeout=120):
    return subprocess.run(
        [quiver_binary(), "--config", config, "--data-dir", data, *args],
        env=quiver_env(), capture_output=True, text=True, timeout=timeout,
    )


def query(url, sql):
    with flight_sql.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


def checks(url):
    return {r["check"]: r for r in query(url, "SELECT * FROM system.health")}


def wait_until(what, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}: {last}")


def health_notices(receiver):
    out = []
    for r in receiver.seen("/hook"):
        for alert in r["body"]["alerts"]:
            if alert["labels"].get("alertname") == "health":
                out.append(alert)
    return out


def test_system_health_status_alerts_and_metrics_through_a_server(template, receiver):
    prometheus_port = free_port()
    work, data, config = setup(
        template,
        f'interval = "1s"\nwindow = "2s"\ndisk_free_warn_bytes = {EIB}\ndisk_free_critical_bytes = {EIB}',
        f'[prometheus]\nenabled = true\nlisten = "127.0.0.1:{prometheus_port}"\n'
        f'[alerts]\nretry_initial = "200ms"\n[[alerts.receivers]]\nname = "hook"\nkind = "webhook"\n'
        f'url = "{receiver.url("/hook")}"\n',
    )
    proc, url, log = start_server(quiver_binary(), config, data, work, "health")
    try:
        rows = checks(url)
        for name in ["queue_fill", "kill_switch", "drops.debug", "drops.critical", "wal", "hot", "lake",
                     "journal", "lag.hot", "lag.lake", "lag.journal", "disk_free", "lake_bytes",
                     "hot_bytes", "wal_bytes", "quarantined_files", "holes_lost", "queries", "definitions"]:
            assert name in rows, f"{name} missing from system.health: {sorted(rows)}"
        assert rows["disk_free"]["state"] == "critical", rows["disk_free"]
        assert rows["disk_free"]["critical_at"] == float(EIB)
        free = shutil.disk_usage(data).free
        assert abs(rows["disk_free"]["value"] - free) < 0.05 * free + (64 << 20), (rows["disk_free"], free)
        assert rows["queue_fill"]["state"] == "ok" and rows["kill_switch"]["state"] == "ok"
        # The lake's size is the committed files' bytes.
        lake = query(url, "SELECT coalesce(sum(bytes), 0) AS b FROM system.lake_files")[0]["b"]
        assert rows["lake_bytes"]["value"] == lake
        assert rows["definitions"]["state"] == "ok", rows["definitions"]
        assert "metrics" in rows["definitions"]["detail"]

        # The critical disk reached the webhook as a health alert.
        def critical_disk():
            return [a for a in health_notices(receiver)
                    if a["labels"].get("check") == "disk_free" and a["labels"].get("state") == "critical"]
        alert = wait_until("the disk_free alert", critical_disk)[0]
        assert alert["labels"]["severity"] == "critical", alert
        assert alert["annotations"]["summary"].startswith("disk_free is critical"), alert

        # quiver status through the server: the same checks, for people and scripts.
        out = quiver(config, data, "status", "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["server"] == url and report["state"] == "critical", report
        by = {c["check"]: c for c in report["checks"]}
        assert by["disk_free"]["state"] == "critical"
        assert "queries" in by and "refused" in by["queries"]["detail"]
        kinds = {d["kind"] for d in report["definitions"]}
        assert {"metric", "analysis", "gate"} <= kinds, kinds
        out = quiver(config, data, "status", "--check")
        assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
        assert "CRITICAL" in out.stdout and "through the server" in out.stdout and "disk_free" in out.stdout
        # From another directory, with --server.
        out = subprocess.run([quiver_binary(), "status", "--server", url], cwd=tempfile.gettempdir(),
                             env=quiver_env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "CRITICAL" in out.stdout, out.stderr

        # /metrics carries the states.
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{prometheus_port}/metrics", timeout=10).read().decode()
        states = {s.labels["check"]: s.value for f in text_string_to_metric_families(scrape)
                  for s in f.samples if s.name == "quiver_health_state"}
        assert states["disk_free"] == 2 and states["queue_fill"] == 0, states

        # A broken edit of metrics.yaml: refused, listed with its error, a warning, an alert.
        metrics_file = os.path.join(data, "configs", "metrics.yaml")
        good = open(metrics_file).read()
        with open(metrics_file, "w") as f:
            f.write(BROKEN_METRICS)

        def refused():
            rows = query(url, "SELECT kind, name, path, refused_at, refused_error FROM system.definitions "
                              "WHERE refused_error IS NOT NULL")
            return rows
        rows = wait_until("the refused edit in system.definitions", refused)
        assert all(r["path"].endswith("metrics.yaml") for r in rows), rows
        assert "no_such_column" in rows[0]["refused_error"], rows[0]
        # The live metrics are still the previous ones, and still listed.
        live = query(url, "SELECT count(*) AS n FROM system.definitions WHERE kind = 'metric'")[0]["n"]
        assert live > 1
        definitions = wait_until("the definitions warning", lambda: (
            checks(url)["definitions"] if checks(url)["definitions"]["state"] == "warning" else None))
        assert "no_such_column" in definitions["detail"]
        wait_until("the definitions alert", lambda: [
            a for a in health_notices(receiver)
            if a["labels"].get("check") == "definitions" and a["labels"].get("state") == "warning"])
        # Fixed: ok again, nothing pending.
        with open(metrics_file, "w") as f:
            f.write(good)
        wait_until("definitions ok again", lambda: checks(url)["definitions"]["state"] == "ok")
        assert refused() == []
    finally:
        stop_server(proc, log)

    # Closed: quiver status opens the data dir itself.
    out = quiver(config, data, "status", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["server"] is None and report["state"] == "critical", report
    by = {c["check"]: c for c in report["checks"]}
    assert "no Flight SQL server" in by["queries"]["detail"]
    assert by["definitions"]["state"] == "ok", by["definitions"]
    shutil.rmtree(work, ignore_errors=True)


def test_status_on_a_closed_data_dir(template):
    work, data, config = setup(template, "")
    try:
        out = quiver(config, data, "status", "--check")
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert out.stdout.startswith(f"{data}: OK (data dir closed"), out.stdout
        report = json.loads(quiver(config, data, "status", "--json").stdout)
        by = {c["check"]: c for c in report["checks"]}
        assert by["disk_free"]["state"] == "ok" and by["lag.hot"]["value"] == 0
        # Everything simulated is in the lake after the simulator closed it.
        lake_files = [c for c in report["checks"] if c["check"] == "lake_bytes"][0]
        assert lake_files["value"] > 0
        # A broken definitions file on a closed dir: a warning naming the error.
        with open(os.path.join(data, "configs", "metrics.yaml"), "w") as f:
            f.write(BROKEN_METRICS)
        out = quiver(config, data, "status", "--check")
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "WARNING" in out.stdout and "no_such_column" in out.stdout, out.stdout
        report = json.loads(quiver(config, data, "status", "--json").stdout)
        files = [d for d in report["definitions"] if d["refused_error"]]
        assert files and files[0]["path"].endswith("metrics.yaml"), report["definitions"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_hostile_status_and_health_config(template):
    work, data, config = setup(template, 'interval = "10ms"')
    try:
        out = quiver(config, data, "status")
        assert out.returncode == 1 and "health.interval" in out.stderr, out.stderr
        with open(config, "w") as f:
            f.write("[health]\nqueue_fill_warn = 0.99\nqueue_fill_critical = 0.5\n")
        out = quiver(config, data, "status")
        assert out.returncode == 1 and "queue_fill_warn" in out.stderr, out.stderr
        with open(config, "w") as f:
            f.write("[health]\nbogus = 1\n")
        out = quiver(config, data, "status")
        assert out.returncode == 1 and "bogus" in out.stderr, out.stderr
        with open(config, "w") as f:
            f.write("")
        out = quiver(config, data, "status", "--server", "grpc://127.0.0.1:1")
        assert out.returncode == 1 and "127.0.0.1:1" in out.stderr, out.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)
