"""Clients that hold on to what they do not use: a result nobody reads, idle
connections by the hundred, a retry right after an error, a plan too big to
finish. Against a server of its own, with small limits so each one is hit in
a few seconds."""

import re
import selectors
import socket
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import own_server
from test_flight import statement_query

USER = "quant"
PASSWORD = "abuse"
CONNECTIONS_MAX = 50
IDLE_TIMEOUT = 2.0
STALL_TIMEOUT = 2.0
ROWS_MAX = 1_000_000

# 900 000 rows of ~520 bytes: ~470 MB, far more than the client's HTTP/2
# window, the sockets' buffers and the server's channel hold together.
BIG = "SELECT value, repeat('x', 500) AS pad FROM range(900000)"


@pytest.fixture(scope="module")
def abuse():
    keys = f"""
        username = "{USER}"
        password = "{PASSWORD}"
        queries_max = 1
        query_timeout = "20s"
        plan_timeout = "1s"
        result_stall_timeout = "{STALL_TIMEOUT:g}s"
        result_rows_max = {ROWS_MAX}
        query_memory_bytes_max = 67108864
        connections_max = {CONNECTIONS_MAX}
        idle_timeout = "{IDLE_TIMEOUT:g}s"
        """
    with own_server("abuse", keys) as (proc, url, _):
        yield {"url": url, "port": int(url.rsplit(":", 1)[1]), "pid": proc.pid}


class Client:
    """A pyarrow.flight client on one connection, logged in."""

    def __init__(self, server):
        self.client = flight.FlightClient(server["url"])
        self.options = flight.FlightCallOptions(
            headers=[self.client.authenticate_basic_token(USER, PASSWORD)]
        )

    def start(self, sql):
        info = self.client.get_flight_info(statement_query(sql), self.options)
        return self.client.do_get(info.endpoints[0].ticket, self.options)

    def run(self, sql):
        return self.start(sql).read_all()

    def close(self):
        self.client.close()


def grpc_code(error):
    """The gRPC status code name an error came with (pyarrow keeps it in
    the message's debug context)."""
    match = re.search(r"debug context: ([A-Z_]+):", str(error))
    assert match, f"no gRPC status in: {error}"
    return match.group(1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def test_a_big_result_streams_whole(abuse):
    client = Client(abuse)
    table = client.run(BIG)
    assert table.num_rows == 900_000
    client.close()


def test_a_slow_reader_gives_back_its_slot(abuse):
    reader, other = Client(abuse), Client(abuse)
    stalled = reader.start(BIG)
    assert stalled.read_chunk().data.num_rows > 0
    # The reader stops here. It holds the one slot until the stall timeout.
    start = time.monotonic()
    refused = 0
    while True:
        try:
            assert other.run("SELECT 1 AS one").column("one")[0].as_py() == 1
            break
        except pa.ArrowException as e:
            assert grpc_code(e) == "RESOURCE_EXHAUSTED", e
            assert "too many queries" in str(e)
            refused += 1
            assert time.monotonic() - start < STALL_TIMEOUT + 5, "the slot never came back"
            time.sleep(0.2)
    waited = time.monotonic() - start
    assert refused > 0, "the stalled reader did not hold its slot"
    assert STALL_TIMEOUT - 0.5 <= waited < STALL_TIMEOUT + 5, waited
    # Reading again, it gets what was buffered, then the stall's error.
    rows = 0
    with pytest.raises(flight.FlightTimedOutError) as raised:
        while True:
            rows += stalled.read_chunk().data.num_rows
    assert grpc_code(raised.value) == "DEADLINE_EXCEEDED"
    assert f"stopped reading the result for {STALL_TIMEOUT:g}s" in str(raised.value)
    assert rows < 900_000
    reader.close()
    other.close()


def test_a_result_read_slowly_outlasts_the_idle_timeout(abuse):
    # The connection has no request but this one, whose response head went
    # out at once: only its streaming body keeps the connection busy.
    client = Client(abuse)
    reader = client.start(BIG)
    start, rows = time.monotonic(), 0
    # Past the idle timeout and the grace a read earns (1 s), with time
    # left to drain what the client had buffered.
    while time.monotonic() - start < IDLE_TIMEOUT + 3:
        rows += reader.read_chunk().data.num_rows
        time.sleep(0.05)  # slow, but well under the stall timeout
    assert rows > 0
    reader.cancel()
    client.close()


ERRORS = [
    # A value the query cannot cast: an execution error.
    ("SELECT CAST(concat('x', value) AS INT) AS n FROM range(10)", "INVALID_ARGUMENT"),
    # Over result_rows_max, found while streaming.
    (f"SELECT value FROM range({ROWS_MAX + 100_000})", "RESOURCE_EXHAUSTED"),
    # Over the query's memory.
    ("SELECT array_agg(value) FROM range(20000000)", "RESOURCE_EXHAUSTED"),
]


@pytest.mark.parametrize("sql,code", ERRORS, ids=["execute", "rows", "memory"])
def test_an_error_retried_at_once_is_not_refused(abuse, sql, code):
    client = Client(abuse)
    for _ in range(5):
        with pytest.raises(pa.ArrowException) as raised:
            client.run(sql)
        assert grpc_code(raised.value) == code, raised.value
        # queries_max = 1: the failed query's slot must be free already.
        assert client.run("SELECT 1 AS one").num_rows == 1
    client.close()


def test_planning_has_a_deadline_and_leaves_the_server_free(abuse):
    client, other = Client(abuse), Client(abuse)
    # A 2,000-way join chain plans for seconds in a debug build (a deep
    # UNION would be refused at once by query.sql_depth_max; joins are a
    # flat list in SQL).
    huge = "SELECT t0.value FROM range(2) t0 " + " ".join(
        f"JOIN range(2) t{i} ON t{i}.value = t{i - 1}.value" for i in range(1, 2000)
    )
    start = time.monotonic()
    with pytest.raises(flight.FlightTimedOutError) as raised:
        client.client.get_flight_info(statement_query(huge), client.options)
    assert "planning" in str(raised.value), raised.value
    assert time.monotonic() - start < 3
    assert other.run("SELECT 1 AS one").num_rows == 1
    client.close()
    other.close()


def open_sockets(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    return socks


def watch_closes(socks, opened, seconds, closed):
    """Records in `closed` (socket -> seconds after `opened`) the sockets the
    server closes within `seconds` of now. Anything the server sends (its
    HTTP/2 settings) is read and ignored."""
    selector = selectors.DefaultSelector()
    for s in socks:
        if s not in closed:
            selector.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while selector.get_map() and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed[s] = time.monotonic() - opened
                selector.unregister(s)
    selector.close()


def test_connections_over_the_cap_and_idle_ones_are_closed(abuse):
    normal = Client(abuse)
    assert normal.run("SELECT 1 AS one").num_rows == 1
    # A client using its connection keeps being served throughout, on the
    # one slot of the cap it holds.
    failures, served, stop = [], [0], threading.Event()

    def keep_querying():
        while not stop.is_set():
            try:
                normal.run("SELECT 1 AS one")
                served[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append(e)
            time.sleep(0.2)

    worker = threading.Thread(target=keep_querying)
    worker.start()
    rss_before = rss_kib(abuse["pid"])
    rss_peak = rss_before
    per_round, rounds, limit = 400, 5, 25.0
    began = time.monotonic()
    total = 0
    try:
        for _ in range(rounds):
            if time.monotonic() - began > limit:
                break
            opened = time.monotonic()
            socks = open_sockets(abuse["port"], per_round)
            # A backlog of 128 (std's and tokio's) overflows here: the kernel
            # drops SYNs and a connect waits a second for its retransmission.
            assert time.monotonic() - opened < 0.9, "the accept backlog overflowed"
            total += len(socks)
            closed = {}
            # Over the cap: closed as soon as accepted.
            watch_closes(socks, opened, 1.0, closed)
            held = [s for s in socks if s not in closed]
            assert len(held) <= CONNECTIONS_MAX - 1, len(held)
            assert len(held) >= CONNECTIONS_MAX - 6, len(held)
            assert max(closed.values()) < 1.0
            rss_peak = max(rss_peak, rss_kib(abuse["pid"]))
            # Under it, but idle: closed after the idle timeout.
            watch_closes(held, opened, IDLE_TIMEOUT + 2.0, closed)
            assert len(closed) == len(socks), f"{len(socks) - len(closed)} left open"
            idle = [closed[s] for s in held]
            assert min(idle) >= IDLE_TIMEOUT - 0.3, min(idle)
            assert max(idle) < IDLE_TIMEOUT + 2.0, max(idle)
            for s in socks:
                s.close()
    finally:
        stop.set()
        worker.join()
    rss_after = rss_kib(abuse["pid"])
    print(
        f"\n{total} connections in {time.monotonic() - began:.1f}s; server RSS "
        f"before {rss_before // 1024} MiB, peak {rss_peak // 1024} MiB, "
        f"after {rss_after // 1024} MiB; {served[0]} queries served meanwhile"
    )
    assert total >= 1000
    assert not failures, failures[:3]
    assert served[0] >= 10
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)
    normal.close()
