"""Clients that upload too much, too slowly, or twice: an ingest over its
bytes or rows, parameters over theirs, an upload that stops sending, a
request cut mid-stream and sent again, rows resent with and without ids, a
storm of handshakes, a backfill next to a querying client. Against a server
of its own, with small limits so each one is hit in a few seconds."""

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
import uuid

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import connect, own_server, scalar
import test_abuse_conn
from test_abuse_conn import grpc_code, rss_kib
from test_flight import _pb_bytes, gate_decision_rows

USER = "quant"
# len("quant:abuse") is not a multiple of 3: its base64 needs padding, which
# ADBC's Go driver leaves out (test_adbc_logs_in_whatever_the_length_...).
PASSWORD = "abuse"
ROWS_MAX = 50_000
BYTES_MAX = 8 << 20
PARAMS_BYTES_MAX = 1 << 20
UPLOAD_IDLE_TIMEOUT = 2.0
TOKENS_MAX = 64


@pytest.fixture(scope="module")
def limited():
    keys = f"""
        username = "{USER}"
        password = "{PASSWORD}"
        ingest_rows_max = {ROWS_MAX}
        ingest_bytes_max = {BYTES_MAX}
        params_bytes_max = {PARAMS_BYTES_MAX}
        upload_idle_timeout = "{UPLOAD_IDLE_TIMEOUT:g}s"
        tokens_max = {TOKENS_MAX}
        """
    with own_server("abuse-ingest", keys) as (proc, url, work):
        yield {"url": url, "user": USER, "password": PASSWORD, "pid": proc.pid, "work": work}


class Client(test_abuse_conn.Client):
    """test_abuse_conn's pyarrow.flight client, logged in to `server`."""

    def __init__(self, server):
        self.client = flight.FlightClient(server["url"])
        self.options = flight.FlightCallOptions(
            headers=[self.client.authenticate_basic_token(server["user"], server["password"])]
        )


@pytest.fixture
def db(limited):
    with connect(limited) as c:
        yield c


# -- rows and requests ----------------------------------------------------------


def with_ids(rows):
    """`rows` with an explicit `event_id` per row (uuid4 strings)."""
    return rows.add_column(0, "event_id", pa.array([str(uuid.uuid4()) for _ in range(rows.num_rows)]))


def decisions(signal_id, n, *, ids=False, pad=0):
    """n gate decisions of one signal; `pad` bytes of filler in each row's
    `inputs` (a JSON object, valid up to validation.json_bytes_max)."""
    rows = gate_decision_rows(signal_id, n)
    if pad:
        inputs = '{"pad": "' + "x" * pad + '"}'
        rows = rows.set_column(rows.schema.get_field_index("inputs"), "inputs", pa.array([inputs] * n))
    return with_ids(rows) if ids else rows


def market(symbol, n, *, ids=False, start=0):
    """n market snapshots of one symbol, rows `start` to `start + n`, all
    different (price and volume follow the row), about 70 bytes a row on
    the wire."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = pa.table(
        {
            "ts": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "symbol": [symbol] * n,
            "price": [100.0 + i * 0.01 for i in range(start, start + n)],
            "spread_bps": [1.5] * n,
            "volume": [float(i) for i in range(start, start + n)],
            "volatility": [0.2] * n,
            "regime": ["TREND"] * n,
        }
    )
    return with_ids(rows) if ids else rows


def market_chunks(symbol, n, chunk=10_000):
    """n market snapshots in batches of `chunk` rows, as a client splits a
    backfill."""
    return pa.concat_tables([market(symbol, min(chunk, n - s), start=s) for s in range(0, n, chunk)])


def unique(prefix):
    """A signal id or symbol no other test uses (symbols allow [A-Za-z0-9._-]{1,32})."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ingest(conn, table, rows):
    with conn.cursor() as cur:
        return cur.adbc_ingest(table, rows, mode="append")


def stored(conn, table, column, value):
    """(rows, distinct event_ids) of `table` whose `column` is `value`."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM {table} WHERE {column} = ?",
            (value,),
        )
        row = cur.fetch_arrow_table().to_pylist()[0]
    return row["n"], row["ids"]


def settled(conn, table, column, value):
    """`stored`'s row count once it stops changing: after a failed request
    the rows it had queued become visible within the logger's flush interval."""
    n = -1
    for _ in range(15):
        time.sleep(1)
        now, _ = stored(conn, table, column, value)
        if now == n:
            break
        n = now
    return n


GRPC_CODES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]


def adbc_code(error):
    """The gRPC status code name an ADBC error came with: the Flight SQL
    driver keeps the code number in `vendor_code` and its Go name after the
    message (`... (ResourceExhausted; DoPut: ...)`)."""
    code = getattr(error, "vendor_code", None)
    if isinstance(code, int) and 0 < code < len(GRPC_CODES):
        return GRPC_CODES[code]
    # Else the name: `(Code; context)`, or gRPC-Go's own `code = Code desc`.
    names = re.findall(r"\(([A-Z][A-Za-z]+); |code = ([A-Z][A-Za-z]+) desc", str(error))
    names = [a or b for a, b in names]
    assert names, f"no gRPC status in: {error}"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", names[-1]).upper().replace("CANCELED", "CANCELLED")


def _pb_varint(field, value):
    """One varint protobuf field (enums, small integers)."""
    out = bytearray([field << 3])
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


INGEST_TYPE_URL = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementIngest"


def statement_ingest(table):
    """The packed Any of a CommandStatementIngest appending to `table`, as
    ADBC's mode="append" sends it."""
    # table_definition_options: if_not_exist = FAIL (2), if_exists = APPEND (2).
    options = _pb_varint(1, 2) + _pb_varint(2, 2)
    command = _pb_bytes(1, options) + _pb_bytes(2, table.encode())
    return _pb_bytes(1, INGEST_TYPE_URL) + _pb_bytes(2, command)


def ingest_descriptor(table):
    return flight.FlightDescriptor.for_command(statement_ingest(table))


def put_count(metadata):
    """The record_count of a DoPutUpdateResult (field 1, a varint)."""
    data = metadata.to_pybytes() if metadata is not None else b""
    if not data:
        return 0
    assert data[0] == 0x08, data
    count, shift = 0, 0
    for byte in data[1:]:
        count |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return count


def finish_put(writer, reader):
    """Ends a pyarrow DoPut; returns the server's row count, or raises the
    server's error (the call's final status, which `close` carries even when
    an earlier step only saw the stream end)."""
    first = None
    try:
        writer.done_writing()
        count = put_count(reader.read())
    except pa.ArrowException as e:
        first = e
    try:
        writer.close()
    except pa.ArrowException as e:
        raise e from first
    if first is not None:
        raise first
    return count


# -- size limits --------------------------------------------------------------------


def test_an_ingest_over_its_bytes_is_refused_and_the_server_stays_small(limited, db):
    signal = unique("bytes")
    # 20 batches of 2 000 rows with ~510 bytes of inputs each: ~26 MB in
    # one request, over the 8 MiB cap and under the rows cap.
    pad, per_batch, batches = 500, 2_000, 20
    rows = pa.concat_tables([decisions(signal, per_batch, pad=pad) for _ in range(batches)])
    assert rows.num_rows < ROWS_MAX and rows.nbytes > 2 * BYTES_MAX
    rss_before = rss_kib(limited["pid"])
    with pytest.raises(adbc_driver_manager.Error) as raised:
        ingest(db, "gate_decisions", rows)
    assert adbc_code(raised.value) == "RESOURCE_EXHAUSTED", raised.value
    assert "flight.ingest_bytes_max" in str(raised.value)
    other = Client(limited)
    assert other.run("SELECT count(*) AS n FROM gate_decisions").num_rows == 1
    other.close()
    # Batches before the cap may be stored (ingest streams), never more
    # than the cap let through: each row carries at least `pad` bytes.
    n = settled(db, "gate_decisions", "signal_id", signal)
    assert n * pad <= BYTES_MAX, n
    rss_after = rss_kib(limited["pid"])
    print(
        f"\n{rows.nbytes >> 20} MiB sent, {n} of {rows.num_rows} rows stored before the cap; server RSS "
        f"before {rss_before // 1024} MiB, after {rss_after // 1024} MiB"
    )
    assert rss_after < 1536 * 1024, rss_after


def test_an_ingest_at_the_row_cap_passes_and_one_row_more_is_refused(db):
    at_cap, over = unique("CAP"), unique("OVER")
    rows = market_chunks(at_cap, ROWS_MAX)
    assert rows.num_rows == ROWS_MAX and len(rows.to_batches()) == ROWS_MAX // 10_000
    assert ingest(db, "market_context", rows) == ROWS_MAX
    assert stored(db, "market_context", "symbol", at_cap) == (ROWS_MAX, ROWS_MAX)
    rows = market_chunks(over, ROWS_MAX + 1)
    assert rows.num_rows == ROWS_MAX + 1 and rows.nbytes < BYTES_MAX
    with pytest.raises(adbc_driver_manager.Error) as raised:
        ingest(db, "market_context", rows)
    assert adbc_code(raised.value) == "RESOURCE_EXHAUSTED", raised.value
    assert "flight.ingest_rows_max" in str(raised.value)
    n = settled(db, "market_context", "symbol", over)
    print(f"\n{n} of {ROWS_MAX + 1} rows stored before the row cap")
    assert n <= ROWS_MAX, n


def test_parameters_over_their_bytes_are_refused_and_small_ones_bind(db):
    assert scalar(db, "SELECT $1 AS s", ("small",)) == "small"
    # ~1 MB of text in a 1 MiB limit: the IPC framing fits in what is left.
    near = "y" * 1_000_000
    assert scalar(db, "SELECT $1 AS s", (near,)) == near
    with pytest.raises(adbc_driver_manager.Error) as raised:
        scalar(db, "SELECT $1 AS s", ("x" * 2_000_000,))
    assert adbc_code(raised.value) == "RESOURCE_EXHAUSTED", raised.value
    assert "flight.params_bytes_max" in str(raised.value)
    # The connection is still good.
    assert scalar(db, "SELECT $1 AS s", ("again",)) == "again"


# -- time limits ------------------------------------------------------------------------


def test_pauses_shorter_than_the_upload_idle_timeout_do_not_end_an_upload(limited, db):
    signal = unique("pauses")
    rows = decisions(signal, 30, ids=True)
    client = Client(limited)
    writer, reader = client.client.do_put(ingest_descriptor("gate_decisions"), rows.schema, client.options)
    # Three pauses of 0.6 timeout: the upload outlasts the timeout, each
    # silence does not.
    for batch in rows.to_batches(max_chunksize=10):
        time.sleep(UPLOAD_IDLE_TIMEOUT * 0.6)
        writer.write_batch(batch)
    assert finish_put(writer, reader) == 30
    assert stored(db, "gate_decisions", "signal_id", signal) == (30, 30)
    client.close()


def test_a_stalled_upload_is_ended_and_the_server_keeps_serving(limited):
    rows = decisions(unique("stall"), 10, ids=True)
    client, other = Client(limited), Client(limited)
    writer, reader = client.client.do_put(ingest_descriptor("gate_decisions"), rows.schema, client.options)
    writer.write_batch(rows.to_batches()[0])
    stalled = time.monotonic()
    # The server's answer (here its error) ends the response stream: a
    # reader waiting on it sees when the server gave up.
    ended = []

    def wait_for_the_end():
        try:
            reader.read()
        except pa.ArrowException:
            pass
        ended.append(time.monotonic() - stalled)

    waiter = threading.Thread(target=wait_for_the_end, daemon=True)
    waiter.start()
    # The upload hangs: others are served meanwhile.
    assert other.run("SELECT 1 AS one").column("one")[0].as_py() == 1
    waiter.join(UPLOAD_IDLE_TIMEOUT + 10)
    assert ended, "the server never ended the stalled upload"
    assert UPLOAD_IDLE_TIMEOUT - 0.5 <= ended[0] < UPLOAD_IDLE_TIMEOUT + 5, ended[0]
    with pytest.raises(pa.ArrowException) as raised:
        finish_put(writer, reader)
    assert grpc_code(raised.value) == "DEADLINE_EXCEEDED", raised.value
    assert "flight.upload_idle_timeout" in str(raised.value)
    assert other.run("SELECT 1 AS one").num_rows == 1
    client.close()
    other.close()


# -- resent and cut requests --------------------------------------------------------


def test_a_request_resent_with_its_event_ids_is_stored_once(db):
    signal = unique("resent")
    rows = decisions(signal, 200, ids=True)
    assert ingest(db, "gate_decisions", rows) == 200
    # The answer counts every row of the request, new or already stored.
    assert ingest(db, "gate_decisions", rows) == 200
    assert stored(db, "gate_decisions", "signal_id", signal) == (200, 200)
    ids = rows.column("event_id").to_pylist()[:50]
    marks = ", ".join("?" * len(ids))
    assert scalar(db, f"SELECT count(*) FROM gate_decisions WHERE event_id IN ({marks})", tuple(ids)) == 50


# Uploads the batches of an IPC file as one ingest, says so, then waits to be
# killed.
CUT_CHILD = """
import sys, time
import pyarrow as pa, pyarrow.flight as flight
url, user, password, command, path = sys.argv[1:]
client = flight.FlightClient(url)
options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(user, password)])
f = pa.ipc.open_file(path)
batches = [f.get_batch(i) for i in range(f.num_record_batches)]
writer, _ = client.do_put(flight.FlightDescriptor.for_command(bytes.fromhex(command)), batches[0].schema, options)
for batch in batches:
    writer.write_batch(batch)
print("written", flush=True)
time.sleep(120)
"""


# How long after its last write the client dies: at once, the server is
# still reading and storing the batches; later, it waits for more.
@pytest.mark.parametrize("cut_after", [0.0, 0.05, 0.5], ids=["at-once", "50ms", "500ms"])
def test_a_request_cut_mid_stream_then_resent_whole_is_stored_once(limited, db, cut_after):
    signal = unique("cut")
    per_batch, total_batches, sent_batches = 500, 10, 4
    rows = decisions(signal, per_batch * total_batches, ids=True)
    path = os.path.join(limited["work"], f"{signal}.arrow")
    with pa.ipc.new_file(path, rows.schema) as f:
        for batch in rows.slice(0, per_batch * sent_batches).to_batches(max_chunksize=per_batch):
            f.write_batch(batch)
    child = subprocess.Popen(
        [
            os.environ.get("TEST_PYTHON", sys.executable), "-c", CUT_CHILD,
            limited["url"], USER, PASSWORD, statement_ingest("gate_decisions").hex(), path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "written"
        time.sleep(cut_after)
    finally:
        # The cut: the client dies without ending its upload.
        child.kill()
        child.wait()
    # What the server had read before the cut may stay stored; wait until
    # that settles, as a client retrying after its failure would.
    prefix = settled(db, "gate_decisions", "signal_id", signal)
    print(f"\n{prefix} of {per_batch * sent_batches} sent rows stored after the cut")
    assert prefix <= per_batch * sent_batches, prefix
    # The client resends everything, the prefix included.
    assert ingest(db, "gate_decisions", rows) == rows.num_rows
    assert stored(db, "gate_decisions", "signal_id", signal) == (rows.num_rows, rows.num_rows)


def test_rows_resent_without_event_ids_are_stored_once(db):
    signal = unique("no-ids")
    # Built once: the same rows, to the microsecond, both times.
    rows = decisions(signal, 120)
    assert "event_id" not in rows.schema.names
    assert ingest(db, "gate_decisions", rows) == 120
    assert ingest(db, "gate_decisions", rows) == 120
    assert stored(db, "gate_decisions", "signal_id", signal) == (120, 120)


def test_duplicate_event_ids_in_one_request_are_stored_once(db):
    signal = unique("dups")
    rows = decisions(signal, 80, ids=True)
    doubled = pa.concat_tables([rows, rows])
    assert ingest(db, "gate_decisions", doubled) == 160
    assert stored(db, "gate_decisions", "signal_id", signal) == (80, 80)


# -- load -----------------------------------------------------------------------------


def test_a_handshake_storm_leaves_logins_working_and_memory_flat(limited):
    first = Client(limited)
    assert first.run("SELECT 1 AS one").num_rows == 1
    clients = [flight.FlightClient(limited["url"]) for _ in range(4)]
    rss_before = rss_kib(limited["pid"])
    rss_peak = rss_before
    tokens, done, began = set(), 0, time.monotonic()
    while done < 5_000 and time.monotonic() - began < 120:
        _, token = clients[done % len(clients)].authenticate_basic_token(USER, PASSWORD)
        tokens.add(token)
        done += 1
        if done % 500 == 0:
            rss_peak = max(rss_peak, rss_kib(limited["pid"]))
    elapsed = time.monotonic() - began
    rss_after = rss_kib(limited["pid"])
    print(
        f"\n{done} handshakes in {elapsed:.1f}s, {len(tokens)} distinct tokens; server RSS "
        f"before {rss_before // 1024} MiB, peak {rss_peak // 1024} MiB, after {rss_after // 1024} MiB"
    )
    assert done >= 1_000, done
    # A user with a live token gets it back (or a rotated one): the storm
    # does not mint a token per handshake.
    assert len(tokens) <= 2, len(tokens)
    fresh = Client(limited)
    assert fresh.run("SELECT 1 AS one").num_rows == 1
    assert first.run("SELECT 1 AS one").num_rows == 1
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)
    for c in clients:
        c.close()
    fresh.close()
    first.close()


def test_a_backfill_does_not_starve_a_querying_client(limited, db):
    symbol = unique("BF")
    requests, per_request = 4, 40_000
    answers, failures = [], []

    def backfill():
        try:
            with connect(limited) as conn:
                for _ in range(requests):
                    answers.append(ingest(conn, "market_context", market(symbol, per_request, ids=True)))
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(e)

    worker = threading.Thread(target=backfill)
    querier = Client(limited)
    worker.start()
    served, errors, slowest = 0, [], 0.0
    while worker.is_alive():
        start = time.monotonic()
        try:
            assert querier.run("SELECT count(*) AS n FROM market_context").num_rows == 1
            served += 1
        except pa.ArrowException as e:
            errors.append(e)
        slowest = max(slowest, time.monotonic() - start)
        time.sleep(0.1)
    worker.join()
    print(f"\n{served} queries during a {requests} x {per_request} row backfill, slowest {slowest:.2f}s")
    assert not failures, failures
    assert not errors, [grpc_code(e) for e in errors[:3]]
    assert served >= 1
    assert slowest < 15, slowest
    assert answers == [per_request] * requests
    total = requests * per_request
    assert stored(db, "market_context", "symbol", symbol) == (total, total)
    querier.close()


# -- clients ----------------------------------------------------------------------------


def test_adbc_logs_in_whatever_the_length_of_the_password(limited):
    # ADBC's Go driver encodes Basic credentials without base64 padding
    # ("quant:abuse" is 11 bytes: 16 characters padded, 15 not); pyarrow pads.
    client = Client(limited)
    assert client.run("SELECT 1 AS one").num_rows == 1
    client.close()
    with connect(limited) as conn:
        assert scalar(conn, "SELECT 1") == 1
