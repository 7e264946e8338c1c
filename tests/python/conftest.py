"""Starts a real `quiver serve` for the Flight SQL client tests.

The binary comes from TEST_QUIVER_BIN (scripts/test.sh sets it to the debug
build). The server gets a data dir filled by `quiver simulate`, credentials,
and small limits so every limit can be hit quickly.
"""

import contextlib
import os
import re
import subprocess
import tempfile
import textwrap
import time

import pytest

USER = "quant"
PASSWORD = "correct horse battery"


def quiver_env():
    # QUIVER_* variables configure Quiver; the tests' own environment must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}


def quiver_binary():
    binary = os.environ.get("TEST_QUIVER_BIN")
    if not binary:
        pytest.fail("TEST_QUIVER_BIN must point at the quiver binary (scripts/test.sh sets it)")
    return binary


@contextlib.contextmanager
def own_server(name, flight_keys):
    """A `quiver serve` of a test module's own, on an empty data dir, with
    `flight_keys` as its `[flight]` section; yields (process, url, work dir)
    and stops it after."""
    work = tempfile.mkdtemp(prefix=f"quiver-{name}-")
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write("[flight]\n" + textwrap.dedent(flight_keys))
    proc, url, log = start_server(quiver_binary(), config, os.path.join(work, "data"), work, name)
    try:
        yield proc, url, work
    finally:
        stop_server(proc, log)


@pytest.fixture(scope="session")
def server():
    binary = quiver_binary()
    work = tempfile.mkdtemp(prefix="quiver-pytest-")
    data = os.path.join(work, "data")
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write(
            f"""
[flight]
username = "{USER}"
password = "{PASSWORD}"
queries_max = 2
query_timeout = "3s"
query_memory_bytes_max = 67108864
result_rows_max = 100000
"""
        )
    subprocess.run(
        [binary, "--config", config, "--data-dir", data, "simulate", "--events", "20000", "--quiet"],
        check=True,
        env=quiver_env(),
        stdout=subprocess.DEVNULL,
    )
    proc, url, log = start_server(binary, config, data, work)
    yield {"url": url, "user": USER, "password": PASSWORD, "data": data, "config": config}
    stop_server(proc, log)


def start_server(binary, config, data, work, name="serve", listen="127.0.0.1:0"):
    """Starts `quiver serve` on `data`; returns (process, url, log file)."""
    # Output goes to a file, not a pipe nobody drains, so the server never
    # blocks on a full pipe.
    log_path = os.path.join(work, f"{name}.log")
    log = open(log_path, "w")
    args = [binary, "--data-dir", data, "serve", "--listen", listen]
    if config:
        args[1:1] = ["--config", config]
    proc = subprocess.Popen(args, env=quiver_env(), stdout=log, stderr=subprocess.STDOUT)
    url = None
    deadline = time.time() + 60
    while url is None and time.time() < deadline and proc.poll() is None:
        with open(log_path) as f:
            match = re.search(r"Flight SQL on (grpc://\S+)", f.read())
        if match:
            url = match.group(1)
        else:
            time.sleep(0.1)
    if url is None:
        proc.kill()
        with open(log_path) as f:
            pytest.fail("quiver serve did not start:\n" + f.read())
    return proc, url, log


def stop_server(proc, log):
    """Stops a server cleanly (the lake rolls everything) and checks its exit."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    log.close()
    assert proc.returncode == 0, f"quiver serve exited with {proc.returncode}"


def connect(server, **overrides):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {"username": server["user"], "password": server["password"]}
    kwargs.update(overrides)
    return flight_sql.connect(server["url"], db_kwargs=kwargs)


@pytest.fixture
def conn(server):
    with connect(server) as c:
        yield c


def scalar(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table().column(0)[0].as_py()


def computed_day(binary, data, env):
    """Simulated data in `data` (20,000 events, today) and today's metrics
    computed over it, as the council and the report read them; the day."""
    import datetime as dt
    subprocess.run([binary, "--data-dir", data, "simulate", "--events", "20000", "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    subprocess.run([binary, "--data-dir", data, "metrics", "compute", "--date", day],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return day
