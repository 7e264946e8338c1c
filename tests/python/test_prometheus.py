"""`/metrics` against a real `quiver serve` with `[prometheus]` enabled: the
scrape parses with Prometheus's own strict OpenMetrics parser, carries the
right Content-Type, and its counters move as events are ingested."""

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest
from conftest import connect, quiver_binary, quiver_env, start_server, stop_server
from prometheus_client.openmetrics.parser import text_string_to_metric_families

USER = "quant"
PASSWORD = "prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def exporter():
    work = tempfile.mkdtemp(prefix="quiver-prometheus-")
    config = os.path.join(work, "quiver.toml")
    port = free_port()
    with open(config, "w") as f:
        f.write(
            f'[flight]\nusername = "{USER}"\npassword = "{PASSWORD}"\n'
            f'[prometheus]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        )
    proc, url, log = start_server(quiver_binary(), config, os.path.join(work, "data"), work, "prometheus")
    yield {"url": url, "user": USER, "password": PASSWORD, "metrics": f"http://127.0.0.1:{port}/metrics", "work": work}
    stop_server(proc, log)


def scrape(server):
    with urllib.request.urlopen(server["metrics"], timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of every sample of a scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_is_strict_openmetrics_with_its_content_type(exporter):
    content_type, text = scrape(exporter)
    assert content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in [
        ("quiver_events_accepted", "counter"),
        ("quiver_events_dropped", "counter"),
        ("quiver_queue_fill_ratio", "gauge"),
        ("quiver_kill_switch_tripped", "gauge"),
        ("quiver_lag_records", "gauge"),
        ("quiver_ingest_rows", "counter"),
    ]:
        assert families.get(name) == kind, (name, families)
    # The parser is strict: a scrape cut short (no `# EOF`) does not parse.
    with pytest.raises(ValueError):
        list(text_string_to_metric_families(text[: len(text) // 2]))


def test_counters_move_as_events_are_ingested(exporter):
    before = samples(scrape(exporter)[1])
    n = 250
    now = pa.array([time.time_ns() // 1000] * n, pa.timestamp("us", tz="UTC"))
    rows = pa.table(
        {
            "ts": now,
            "symbol": ["BTC-USD"] * n,
            "price": [100.0 + i for i in range(n)],
            "spread_bps": [1.0] * n,
            "volume": [1.0] * n,
            "volatility": [0.1] * n,
            "regime": ["TREND"] * n,
        }
    )
    with connect(exporter) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("market_context", rows, mode="append") == n
    after = samples(scrape(exporter)[1])
    info = frozenset({("level", "INFO")})
    assert after[("quiver_events_accepted_total", info)] - before[("quiver_events_accepted_total", info)] == n
    assert after[("quiver_ingest_rows_total", frozenset())] - before[("quiver_ingest_rows_total", frozenset())] == n
    market = frozenset({("table", "market_context")})
    assert after[("quiver_writer_rows_total", market)] - before[("quiver_writer_rows_total", market)] == n
    assert after[("quiver_kill_switch_tripped", frozenset())] == 0
    # The rows were made durable by at least one WAL append, timed.
    appends = ("quiver_wal_sync_duration_seconds_count", frozenset())
    assert after[appends] - before.get(appends, 0) >= 1
    assert after[("quiver_wal_sync_duration_seconds_sum", frozenset())] > 0


def test_queries_are_counted_by_outcome_and_timed(exporter):
    before = samples(scrape(exporter)[1])
    with connect(exporter) as conn, conn.cursor() as cur:
        for _ in range(3):
            cur.execute("SELECT count(*) FROM signals")
            cur.fetchall()
        with pytest.raises(Exception):
            cur.execute("SELECT no_such_column FROM signals")
    after = samples(scrape(exporter)[1])

    def moved(name, labels=()):
        key = (name, frozenset(labels))
        return after[key] - before.get(key, 0)

    assert moved("quiver_queries_total", {("outcome", "ok")}) == 3
    assert moved("quiver_queries_total", {("outcome", "failed")}) >= 1
    assert moved("quiver_query_duration_seconds_count") >= 4
    assert moved("quiver_query_duration_seconds_bucket", {("le", "+Inf")}) >= 4
    assert moved("quiver_query_duration_seconds_sum") > 0


def test_only_metrics_is_served(exporter):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(exporter["metrics"].replace("/metrics", "/admin"), timeout=10)
    assert raised.value.code == 404


def test_an_open_address_without_allow_open_is_refused(tmp_path):
    config = tmp_path / "quiver.toml"
    config.write_text('[prometheus]\nenabled = true\nlisten = "0.0.0.0:9464"\n')
    result = subprocess.run(
        [quiver_binary(), "--config", str(config), "--data-dir", str(tmp_path / "data"), "serve"],
        env=quiver_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert re.search(r"prometheus\.listen.*allow_open", result.stderr + result.stdout), result.stderr
