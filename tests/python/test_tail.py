"""Live tail against a real `quiver serve`: a pyarrow reader sees events
within a second of their ingest; reconnecting with `from_seq` gives no gap
and no duplicate, across a server restart too; a reader that stops reading
gets a gap marker while the server's memory stays bounded; hostile tickets
and filters are refused with a clear error; `quiver tail` prints events."""

import json
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import connect, own_server, quiver_binary, quiver_env, start_server, stop_server
from test_abuse_conn import grpc_code, rss_kib
from test_abuse_ingest import ingest, market, unique

USER = "quant"
PASSWORD = "tail-tail"
TAILS_MAX = 3
BUFFER_BYTES = 256 << 10
# A WAL record is one writer batch: at most logger.batch_rows_max (5,000)
# market rows, about 0.6 MB in Arrow.
RECORD_BYTES_MAX = 2 << 20


def keys(buffer_bytes=BUFFER_BYTES, prometheus_port=None):
    prometheus = f'[prometheus]\nenabled = true\nlisten = "127.0.0.1:{prometheus_port}"' if prometheus_port else ""
    return f"""
        username = "{USER}"
        password = "{PASSWORD}"
        tails_max = {TAILS_MAX}
        tail_buffer_bytes = {buffer_bytes}
        [lake]
        wal_feed_bytes_max = {4 << 20}
        roll_rows_max = 20000
        {prometheus}
        """


@pytest.fixture(scope="module")
def tailed():
    port = free_port()
    with own_server("tail", keys(prometheus_port=port)) as (proc, url, work):
        yield {"url": url, "user": USER, "password": PASSWORD, "pid": proc.pid, "work": work,
               "metrics": f"http://127.0.0.1:{port}/metrics"}


def gauge(server, name):
    with urllib.request.urlopen(server["metrics"], timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in the scrape"
    return float(match.group(1))


class Tail:
    """A live tail read with pyarrow.flight, batch by batch."""

    def __init__(self, server, **request):
        self.client = flight.FlightClient(server["url"])
        token = self.client.authenticate_basic_token(server["user"], server["password"])
        options = flight.FlightCallOptions(headers=[token])
        ticket = flight.Ticket(json.dumps({"tail": request}).encode())
        self.reader = self.client.do_get(ticket, options)

    def batches(self):
        for chunk in self.reader:
            yield chunk.data

    def rows(self, until, timeout=30):
        """Rows as dicts until `until(rows)` holds; fails past `timeout` s."""
        rows = []
        deadline = time.time() + timeout
        for batch in self.batches():
            rows.extend(batch.to_pylist())
            if until(rows):
                return rows
            assert time.time() < deadline, f"tail: condition not met in {timeout}s ({len(rows)} rows)"
        raise AssertionError("the tail ended")

    def first_heartbeat(self):
        """Waits for the first heartbeat: the tail is then following the WAL."""
        return self.rows(lambda rows: any(r["_kind"] == "heartbeat" for r in rows), timeout=10)

    def close(self):
        self.reader.cancel()
        self.client.close()


# pyarrow raises some gRPC codes (RESOURCE_EXHAUSTED) as ArrowInvalid.
REFUSED = (flight.FlightError, pa.ArrowException)


def events(rows):
    return [r for r in rows if r["_kind"] == "event"]


def ids_in(rows):
    return [r["event_id"] for r in events(rows)]


def test_a_reader_sees_events_within_a_second_of_their_ingest(tailed):
    symbol = unique("FAST")
    tail = Tail(tailed, table="market_context", where=f"symbol = '{symbol}'")
    tail.first_heartbeat()
    rows = market(symbol, 500, ids=True)
    with connect(tailed) as db:
        ingest(db, "market_context", rows)  # returns once the rows are durable
    durable_at = time.time()
    wanted = set(rows.column("event_id").to_pylist())
    seen = tail.rows(lambda rs: wanted <= set(ids_in(rs)), timeout=10)
    latency = time.time() - durable_at
    tail.close()
    assert latency < 1.0, f"the events came {latency:.2f}s after the ingest returned"
    got = events(seen)
    assert sorted(ids_in(seen)) == sorted(wanted), "every row once, and only the filter's"
    assert {r["symbol"] for r in got} == {symbol}
    assert all(isinstance(r["_seq"], int) and r["_seq"] > 0 for r in got)
    assert all(r["price"] is not None for r in got), "a table's tail carries its columns"


def test_heartbeats_come_each_second_with_the_last_sequence(tailed):
    tail = Tail(tailed)
    start = time.time()
    rows = tail.rows(lambda rs: sum(r["_kind"] == "heartbeat" for r in rs) >= 3, timeout=10)
    elapsed = time.time() - start
    tail.close()
    beats = [r for r in rows if r["_kind"] == "heartbeat"]
    assert 1.5 <= elapsed <= 5.0, f"3 heartbeats took {elapsed:.1f}s"
    assert all(b["table"] is None and b["row"] is None for b in beats)
    assert [b["_seq"] for b in beats] == sorted(b["_seq"] for b in beats)


def test_reconnecting_from_the_next_sequence_gives_no_gap_and_no_duplicate(tailed):
    symbol = unique("RESUME")
    tail = Tail(tailed, table="market_context", where=f"symbol = '{symbol}'")
    tail.first_heartbeat()
    batches = [market(symbol, 200, ids=True, start=200 * i) for i in range(10)]
    sent = [i for b in batches for i in b.column("event_id").to_pylist()]

    def ingest_all():
        with connect(tailed) as db:
            for b in batches:
                ingest(db, "market_context", b)

    writer = threading.Thread(target=ingest_all)
    writer.start()
    # Read part of it, then go away mid-stream.
    first = tail.rows(lambda rs: len(events(rs)) >= 600)
    tail.close()
    writer.join()
    resume = max(r["_seq"] for r in first) + 1
    again = Tail(tailed, table="market_context", where=f"symbol = '{symbol}'", from_seq=resume)
    seen_first = ids_in(first)
    rest = again.rows(lambda rs: len(seen_first) + len(ids_in(rs)) >= len(sent))
    # Anything more would be a duplicate: give it a heartbeat to show up.
    rest += again.rows(lambda rs: any(r["_kind"] == "heartbeat" for r in rs), timeout=5)
    again.close()
    got = seen_first + ids_in(rest)
    assert len(got) == len(set(got)), "no event twice"
    assert sorted(got) == sorted(sent), "no event missing"
    assert not [r for r in first + rest if r["_kind"] == "gap"]


def test_a_reader_that_stops_reading_gets_a_gap_and_memory_stays_bounded(tailed):
    """About 60 MB of rows go by a tail whose reader reads nothing. What the
    server holds for it (its gauge) stays within flight.tail_buffer_bytes
    (plus the one record a buffer always takes), and the server's RSS grows
    no more than for the same load without a tail (a coarse check: freed
    memory is not always given back to the OS)."""

    def load(symbol):
        before = rss_kib(tailed["pid"])
        with connect(tailed) as db:
            for i in range(60):
                ingest(db, "market_context", market(symbol, 10_000, ids=True, start=10_000 * i))
        return (rss_kib(tailed["pid"]) - before) / 1024

    baseline_mib = load(unique("BASE"))
    tail = Tail(tailed, table="market_context")
    tail.first_heartbeat()
    held = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            held.append(gauge(tailed, "quiver_tail_buffered_bytes"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        grown_mib = load(unique("SLOW"))
    finally:
        stop.set()
        watcher.join()
    rows = tail.rows(lambda rs: any(r["_kind"] == "gap" for r in rs), timeout=30)
    # Then live again: events after the gap.
    rows += tail.rows(lambda rs: any(r["_kind"] == "heartbeat" for r in rs), timeout=10)
    tail.close()
    assert max(held) > 0, "the tail buffered something"
    assert max(held) <= BUFFER_BYTES + RECORD_BYTES_MAX, f"a stalled tail held {max(held):.0f} bytes"
    assert grown_mib < baseline_mib + 16, f"{grown_mib:.0f} MiB with a stalled tail, {baseline_mib:.0f} without"
    gaps = [r for r in rows if r["_kind"] == "gap"]
    detail = json.loads(gaps[0]["_detail"])
    assert detail["reason"] == "slow reader"
    assert gaps[0]["_seq"] == detail["to"] >= detail["from"]
    before_gap = [r["_seq"] for r in rows[: rows.index(gaps[0])] if r["_kind"] == "event"]
    assert all(s < detail["from"] for s in before_gap), "the gap starts after what was sent"
    after_gap = [r["_seq"] for r in rows[rows.index(gaps[0]) :] if r["_kind"] == "event"]
    assert all(s > detail["to"] for s in after_gap), "and what follows it is after its end"
    assert len(ids_in(rows)) < 600_000, "a stalled reader does not get everything"
    assert gauge(tailed, "quiver_tail_slow_reader_gaps_total") >= 1
    # What the gap left out can be read again while the WAL holds it; once
    # its segments are gone (the consumers have them), that is a gap too.
    again = Tail(tailed, table="market_context", from_seq=detail["from"])
    back = again.rows(lambda rs: any(r["_kind"] in ("event", "gap") for r in rs), timeout=10)
    again.close()
    first = next(r for r in back if r["_kind"] != "heartbeat")
    if first["_kind"] == "event":
        assert first["_seq"] == detail["from"]
    else:
        assert json.loads(first["_detail"]) == {
            "from": detail["from"], "to": first["_seq"], "reason": "not in the WAL"
        }


def wait_no_tails(server):
    """Waits for the tails of earlier tests to end (within a heartbeat of
    their client going away)."""
    deadline = time.time() + 10
    while gauge(server, "quiver_tails_open") > 0:
        assert time.time() < deadline, "closed tails are still open on the server"
        time.sleep(0.2)


def test_too_many_tails_are_refused(tailed):
    wait_no_tails(tailed)
    tails = [Tail(tailed) for _ in range(TAILS_MAX)]
    for t in tails:
        t.first_heartbeat()
    with pytest.raises(REFUSED) as refused:
        Tail(tailed).first_heartbeat()
    assert grpc_code(refused.value) == "RESOURCE_EXHAUSTED"
    assert "flight.tails_max" in str(refused.value)
    for t in tails:
        t.close()
    # The slots come back once the readers are gone.
    deadline = time.time() + 10
    while True:
        try:
            Tail(tailed).first_heartbeat()
            break
        except REFUSED:
            assert time.time() < deadline, "the closed tails kept their slots"
            time.sleep(0.5)


@pytest.mark.parametrize(
    "request_, code, says",
    [
        ({"table": "trade"}, "INVALID_ARGUMENT", "no event table"),
        ({"tabel": "signals"}, "INVALID_ARGUMENT", "tabel"),
        ({"where": "confidence > 1"}, "INVALID_ARGUMENT", "confidence"),
        ({"where": "symbol"}, "INVALID_ARGUMENT", "not true or false"),
        ({"where": "symbol IN (SELECT symbol FROM trades)"}, "INVALID_ARGUMENT", ""),
        ({"where": "symbol = 'x'; DROP TABLE trades"}, "INVALID_ARGUMENT", ""),
        ({"where": "+".join(["1"] * 3000) + " > 0"}, "RESOURCE_EXHAUSTED", "sql_depth_max"),
        ({"from_seq": -1}, "INVALID_ARGUMENT", "from_seq"),
    ],
)
def test_hostile_tail_requests_are_refused_clearly(tailed, request_, code, says):
    with pytest.raises(REFUSED) as refused:
        Tail(tailed, **request_).first_heartbeat()
    assert grpc_code(refused.value) == code, str(refused.value)
    assert says in str(refused.value)


def test_a_ticket_that_is_not_json_is_refused(tailed):
    client = flight.FlightClient(tailed["url"])
    token = client.authenticate_basic_token(USER, PASSWORD)
    options = flight.FlightCallOptions(headers=[token])
    for ticket in [b'{"tail": ', b"{" + b"[" * 100_000]:
        with pytest.raises(REFUSED) as refused:
            client.do_get(flight.Ticket(ticket), options).read_all()
        assert grpc_code(refused.value) == "INVALID_ARGUMENT"
    # The server is still there.
    Tail(tailed).first_heartbeat()


def test_quiver_tail_prints_events_as_they_commit(tailed, tmp_path):
    symbol = unique("CLI")
    config = tmp_path / "quiver.toml"
    config.write_text(f'[flight]\nusername = "{USER}"\npassword = "{PASSWORD}"\n')
    cli = subprocess.Popen(
        [quiver_binary(), "--config", str(config), "--data-dir", str(tmp_path / "none"), "tail",
         "--server", tailed["url"], "--table", "market_context", "--where", f"symbol = '{symbol}'",
         "--count", "5"],
        env=quiver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    time.sleep(1.5)  # connected and following
    with connect(tailed) as db:
        ingest(db, "market_context", market(symbol, 5, ids=True))
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 5, out
    assert all(line.startswith("#") and f" market_context {symbol} INFO " in line for line in lines), out
    assert all("price=" in line for line in lines)


def test_quiver_tail_without_a_server_says_how_to_get_one(tmp_path):
    done = subprocess.run(
        [quiver_binary(), "--data-dir", str(tmp_path / "data"), "tail"],
        env=quiver_env(), capture_output=True, text=True, cwd=tmp_path, timeout=30,
    )
    assert done.returncode != 0
    assert "no server holds" in done.stderr and "quiver serve" in done.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tail_resumes_across_a_server_restart_without_gap_or_duplicate():
    work = tempfile.mkdtemp(prefix="quiver-tail-restart-")
    config = os.path.join(work, "quiver.toml")
    with open(config, "w") as f:
        f.write(f'[flight]\nusername = "{USER}"\npassword = "{PASSWORD}"\n')
    data = os.path.join(work, "data")
    listen = f"127.0.0.1:{free_port()}"
    symbol = unique("RESTART")
    proc, url, log = start_server(quiver_binary(), config, data, work, "first", listen=listen)
    server = {"url": url, "user": USER, "password": PASSWORD}
    tail = Tail(server, table="market_context", where=f"symbol = '{symbol}'")
    tail.first_heartbeat()
    before = market(symbol, 300, ids=True)
    with connect(server) as db:
        ingest(db, "market_context", before)
    first = tail.rows(lambda rs: len(events(rs)) >= 300)
    stop_server(proc, log)  # the stream ends as the server stops
    last = max(r["_seq"] for r in first)
    proc, url, log = start_server(quiver_binary(), config, data, work, "second", listen=listen)
    try:
        after = market(symbol, 300, ids=True, start=300)
        with connect(server) as db:
            ingest(db, "market_context", after)
        again = Tail(server, table="market_context", where=f"symbol = '{symbol}'", from_seq=last + 1)
        rest = again.rows(lambda rs: len(events(rs)) >= 300)
        rest += again.rows(lambda rs: any(r["_kind"] == "heartbeat" for r in rs), timeout=5)
        again.close()
    finally:
        stop_server(proc, log)
    got = ids_in(first) + ids_in(rest)
    sent = before.column("event_id").to_pylist() + after.column("event_id").to_pylist()
    assert len(got) == len(set(got)) and sorted(got) == sorted(sent)
    assert min(r["_seq"] for r in events(rest)) > last, "sequences go on across the restart"
