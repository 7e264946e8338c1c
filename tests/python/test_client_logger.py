"""The Python client's logger (clients/python, `quiver_client`) against a real
`quiver serve`: every table round-trips, hostile values are refused naming the
field, the tiers and the kill switch hold under a stalled server, and a server
killed mid-stream loses and duplicates nothing."""

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import tempfile
import threading
import time
import uuid

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from conftest import own_server, quiver_binary, start_server, stop_server

from quiver_client import (
    ACCEPTED,
    INGESTS_IN_FLIGHT_MAX,
    DropReason,
    Dropped,
    GateDecision,
    InvalidEvent,
    Level,
    Logger,
    LoggerConfig,
    LoggerClosed,
    MarketContext,
    ModelEvent,
    Prediction,
    ShadowTrade,
    Signal,
    SpillDirBusy,
    TraceStep,
    Trade,
)

UTC = dt.timezone.utc
# Nothing listens there: connecting is refused at once.
NOWHERE = "grpc://127.0.0.1:1"


@pytest.fixture(scope="module")
def quiver():
    """A server of this module's own; one symbol is refused by its allowlist
    only (the client cannot know it), to test a refusal by the server."""
    with own_server(
        "client",
        '\n[validation]\nsymbols_allowed = ["BTC-USD", "ETH-USD", "SOL-USD", "same-1", "spill-1", "kill-1", "tier-1"]\n',
    ) as (proc, url, work):
        yield url


def query(url, sql, params=None):
    with flight_sql.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table().to_pylist()


def scalar(url, sql, params=None):
    return next(iter(query(url, sql, params)[0].values()))


def counts(url, table, where, params=None):
    """(rows, distinct event_ids) of `table` matching `where`."""
    row = query(url, f"SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events.{table} WHERE {where}", params)[0]
    return row["n"], row["ids"]


def market(symbol="BTC-USD", level=Level.INFO, price=100.0, **kw):
    return MarketContext(symbol=symbol, level=level, price=price, spread_bps=1.5, volume=10.0, volatility=0.2, regime="TREND", **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `quiver serve` on a fixed port and data dir, so it can be killed and
    started again where the logger expects it."""

    def __init__(self, name):
        self.work = tempfile.mkdtemp(prefix=f"quiver-{name}-")
        self.data = os.path.join(self.work, "data")
        self.config = os.path.join(self.work, "quiver.toml")
        with open(self.config, "w") as f:
            f.write("[flight]\n")
        self.listen = f"127.0.0.1:{free_port()}"
        self.url = f"grpc://{self.listen}"
        self.name = name
        self.runs = 0
        self.proc = None

    def start(self):
        self.runs += 1
        self.proc, url, self.log = start_server(
            quiver_binary(), self.config, self.data, self.work, f"{self.name}-{self.runs}", listen=self.listen
        )
        assert url == self.url, url

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        self.proc = None

    def stop(self):
        if self.proc is not None:
            stop_server(self.proc, self.log)
            self.proc = None


@pytest.fixture
def server():
    s = Server("client-own")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        os.kill(s.proc.pid, signal.SIGCONT)
    s.stop()


def now():
    return dt.datetime.now(UTC)


# -- round trips ---------------------------------------------------------------


def test_every_event_type_round_trips_and_reads_back_in_sql(quiver):
    tag = uuid.uuid4().hex[:10]
    t = now().replace(microsecond=123456)
    decided = t - dt.timedelta(seconds=1)
    events = [
        Signal(symbol="BTC-USD", ts=t, signal_id=f"s-{tag}", mode="scalp", side="BUY", price=101.5, strength=0.7,
               model_id="m1", regime="TREND", decision_ts=decided, label_cutoff_ts=t),
        GateDecision(symbol="BTC-USD", ts=t, decision_id=f"d-{tag}", signal_id=f"s-{tag}", trace_id=f"t-{tag}",
                     gate="cost_gate", result="FAIL", value=7.25, threshold=5.0, direction="max", mode="scalp",
                     regime="RANGE", inputs=json.dumps({"spread_bps": 7.25})),
        Trade(symbol="BTC-USD", ts=t, level=Level.WARNING, trade_id=f"tr-{tag}", signal_id=f"s-{tag}", kind="CLOSE",
              side="SELL", qty=0.5, price=102.0, fees_bps=2.0, mode="runner", regime="PANIC", pnl_bps=-3.5,
              duration_s=12.0, mae_bps=-8.0, mfe_bps=4.0),
        ShadowTrade(symbol="BTC-USD", ts=t, shadow_id=f"sh-{tag}", signal_id=f"s-{tag}", kind="RESOLVED",
                    blocked_by="meta_label", side="BUY", hypothetical_entry=99.0, outcome_pnl_bps=5.5, mode="scalp",
                    regime="TREND"),
        TraceStep(symbol="BTC-USD", ts=t, trace_id=f"t-{tag}", signal_id=f"s-{tag}", step="gates", seq=3,
                  start_ms=1.5, duration_ms=0.25, result=""),
        ModelEvent(symbol="BTC-USD", ts=t, level=Level.CRITICAL, model_id=f"m-{tag}", kind="DEPLOYED",
                   metrics='{"auc": 0.61}', alias="production"),
        market(ts=t, price=123.25, level=Level.DEBUG, event_id=f"mc-{tag}"),
        Prediction(symbol="BTC-USD", ts=t, model_id=f"m-{tag}", signal_id=f"s-{tag}", kind="LABELED",
                   decision_ts=decided, label_cutoff_ts=t, label=1),
    ]
    with Logger(quiver) as logger:
        for e in events:
            assert logger.log(e) is ACCEPTED
        logger.flush(timeout=30)
        assert logger.stats().rows_sent == len(events)

    def row(table, where, params):
        rows = query(quiver, f"SELECT * FROM events.{table} WHERE {where}", params)
        assert len(rows) == 1, (table, rows)
        return rows[0]

    r = row("signals", "signal_id = ?", (f"s-{tag}",))
    assert (r["price"], r["strength"], r["side"], r["ts"], r["decision_ts"], r["level"]) == (101.5, 0.7, "BUY", t, decided, "INFO")
    assert uuid.UUID(r["event_id"]).version == 4
    r = row("gate_decisions", "decision_id = ?", (f"d-{tag}",))
    assert (r["value"], r["gate"], r["inputs"]) == (7.25, "cost_gate", '{"spread_bps": 7.25}')
    r = row("trades", "trade_id = ?", (f"tr-{tag}",))
    assert (r["pnl_bps"], r["duration_s"], r["features"], r["level"], r["kind"]) == (-3.5, 12.0, None, "WARNING", "CLOSE")
    r = row("shadow_trades", "shadow_id = ?", (f"sh-{tag}",))
    assert (r["outcome_pnl_bps"], r["blocked_by"]) == (5.5, "meta_label")
    r = row("trace_steps", "trace_id = ?", (f"t-{tag}",))
    assert (r["seq"], r["start_ms"], r["result"]) == (3, 1.5, "")
    r = row("model_events", "model_id = ?", (f"m-{tag}",))
    assert (r["alias"], r["level"], r["metrics"]) == ("production", "CRITICAL", '{"auc": 0.61}')
    r = row("market_context", "event_id = ?", (f"mc-{tag}",))
    assert (r["price"], r["level"]) == (123.25, "DEBUG")
    r = row("predictions", "model_id = ?", (f"m-{tag}",))
    assert (r["label"], r["predicted_prob"], r["label_cutoff_ts"]) == (1, None, t)


def test_a_timestamp_in_any_zone_is_stored_as_its_instant(quiver):
    """The batcher turns aware datetimes into UTC microseconds itself: a ts in
    +05:30 or -03:00 is the same instant on the server, to the microsecond."""
    tag = uuid.uuid4().hex[:8]
    instant = now().replace(microsecond=123457) - dt.timedelta(minutes=3)
    zones = [UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=3))]
    with Logger(quiver) as logger:
        for i, zone in enumerate(zones):
            assert logger.log(market(ts=instant.astimezone(zone), event_id=f"tz-{tag}-{i}")) is ACCEPTED
        logger.flush(timeout=30)
    rows = query(quiver, "SELECT ts FROM events.market_context WHERE event_id LIKE ?", (f"tz-{tag}-%",))
    assert [r["ts"] for r in rows] == [instant] * 3


def test_equal_events_logged_apart_are_all_stored(quiver):
    """Each log() gets its own event_id: the same event logged three times is
    three rows (the server's content ids would take it for one resent)."""
    event = market(symbol="same-1", price=314.0)
    with Logger(quiver) as logger:
        for _ in range(3):
            assert logger.log(event) is ACCEPTED
            logger.flush(timeout=30)
    assert counts(quiver, "market_context", "symbol = 'same-1' AND price = 314.0") == (3, 3)


def test_flush_returns_once_the_rows_are_stored_and_aflush_too(quiver):
    tag = uuid.uuid4().hex[:8]
    with Logger(quiver, flush_interval_s=30.0) as logger:
        logger.flush(timeout=1)  # nothing accepted: returns at once
        for i in range(2500):
            logger.log(market(price=1000.0 + i, event_id=f"f-{tag}-{i}"))
        started = time.monotonic()
        logger.flush(timeout=30)
        # A flush does not wait for the 30 s interval, and what it confirmed is queryable.
        assert time.monotonic() - started < 15
        assert scalar(quiver, "SELECT count(*) FROM events.market_context WHERE event_id LIKE ?", (f"f-{tag}-%",)) == 2500

        async def bot():
            for i in range(300):
                logger.log(market(price=5000.0 + i, event_id=f"a-{tag}-{i}"))
            await logger.aflush(timeout=30)
            return scalar(quiver, "SELECT count(*) FROM events.market_context WHERE event_id LIKE ?", (f"a-{tag}-%",))

        assert asyncio.run(bot()) == 300


@pytest.mark.parametrize("in_flight", [1, INGESTS_IN_FLIGHT_MAX])
def test_flush_never_passes_a_batch_still_in_flight(quiver, in_flight):
    """With up to ingests_in_flight small batches sent at once, answers come
    back out of order; each flush() returns only when every row before it is
    stored, and nothing is stored twice."""
    tag = uuid.uuid4().hex[:8]
    total = 0
    with Logger(quiver, batch_rows_max=40, ingests_in_flight=in_flight) as logger:
        for round_ in range(5):
            for i in range(600):
                event_id = f"inf-{tag}-{round_}-{i}"
                logger.log(market(price=1.0 + i, event_id=event_id) if i % 2 else _gate(event_id=event_id))
                total += 1
            logger.flush(timeout=60)
            stored = sum(
                scalar(quiver, f"SELECT count(*) FROM events.{t} WHERE event_id LIKE ?", (f"inf-{tag}-%",))
                for t in ("market_context", "gate_decisions")
            )
            assert stored == total, f"round {round_}: flush returned with {stored} of {total} stored"
        assert logger.stats().batches_sent >= 5 * 600 // 40


def test_an_answer_out_of_order_does_not_move_the_flush_watermark():
    """The transport is held for the oldest batch while the one after it (the
    take's last, which carries the watermark) is answered: flush() must wait
    for the oldest. Against a real server the answers mostly come back in
    order, so this holds one back on purpose (no server: `_ingest` is the
    seam, everything above it is the logger's own code)."""
    release = threading.Event()
    answered = []

    class HeldBack(Logger):
        def _ingest(self, link, table, data):
            first = data.column("event_id")[0].as_py()
            if first == "held-0":
                release.wait(30)
            answered.append(first)

    logger = HeldBack("grpc://127.0.0.1:1", batch_rows_max=10, ingests_in_flight=2, flush_interval_s=30.0)
    try:
        for i in range(20):
            assert logger.log(market(event_id=f"held-{i}")) is ACCEPTED
        with pytest.raises(TimeoutError):
            logger.flush(timeout=1.0)
        assert answered == ["held-10"], "the newer batch was answered while the oldest was held"
        assert logger.stats().durable == 0
        release.set()
        logger.flush(timeout=10)
        assert logger.stats().durable == 20 and answered == ["held-10", "held-0"]
    finally:
        release.set()
        logger.close()


@pytest.mark.parametrize("bad", [0, -1, INGESTS_IN_FLIGHT_MAX + 1])
def test_ingests_in_flight_out_of_bounds_is_refused(bad):
    with pytest.raises(ValueError, match=rf"ingests_in_flight: {bad} is not in 1..={INGESTS_IN_FLIGHT_MAX}"):
        LoggerConfig(ingests_in_flight=bad)
    with pytest.raises(ValueError, match="ingests_in_flight"):
        Logger("grpc://127.0.0.1:1", ingests_in_flight=bad)


def test_flush_times_out_while_the_server_is_away_and_the_logger_keeps_them():
    with Logger(NOWHERE, spill_dir=tempfile.mkdtemp(), flush_interval_s=0.05) as logger:
        logger.log(market())
        with pytest.raises(TimeoutError, match="not yet durable"):
            logger.flush(timeout=0.5)

        async def bot():
            with pytest.raises(TimeoutError):
                await logger.aflush(timeout=0.3)

        asyncio.run(bot())
        stats = logger.stats()
        assert stats.durable == 0 and stats.spill_batches == 1 and not stats.connected
    with pytest.raises(LoggerClosed):
        logger.flush(timeout=1)


def test_a_row_the_server_refuses_is_dropped_alone_and_counted(quiver):
    """The server's allowlist refuses a symbol the client cannot know about:
    that row is dropped (counted, with the server's message), the rest stored."""
    tag = uuid.uuid4().hex[:8]
    with Logger(quiver) as logger:
        for i in range(10):
            logger.log(market(symbol="DOGE-USD" if i == 4 else "ETH-USD", event_id=f"r-{tag}-{i}"))
        logger.flush(timeout=30)
        stats = logger.stats()
    assert stats.rows_rejected_by_server == 1
    assert "row 4" in stats.last_error and "symbol" in stats.last_error
    assert scalar(quiver, "SELECT count(*) FROM events.market_context WHERE event_id LIKE ?", (f"r-{tag}-%",)) == 9


# -- validation ----------------------------------------------------------------


def _trade(**kw):
    base = dict(symbol="BTC-USD", trade_id="t1", signal_id="s1", kind="OPEN", side="BUY", qty=1.0, price=10.0,
                fees_bps=1.0, mode="scalp", regime="TREND")
    return Trade(**{**base, **kw})


def _gate(**kw):
    base = dict(symbol="BTC-USD", decision_id="d1", signal_id="s1", trace_id="t1", gate="cost_gate", result="PASS",
                value=1.0, threshold=2.0, direction="max", mode="scalp", regime="TREND", inputs="{}")
    return GateDecision(**{**base, **kw})


def _prediction(**kw):
    t = now()
    base = dict(symbol="BTC-USD", model_id="m", signal_id="s", kind="PREDICTED", decision_ts=t, label_cutoff_ts=t,
                predicted_prob=0.5)
    return Prediction(**{**base, **kw})


HOSTILE = [
    (lambda: _gate(value=float("nan")), r"^gate_decisions\.value: must be a finite number$"),
    (lambda: _gate(threshold=float("inf")), r"^gate_decisions\.threshold: must be a finite number$"),
    (lambda: _gate(value="7.2"), r"^gate_decisions\.value: must be a number, not str$"),
    (lambda: _gate(value=True), r"^gate_decisions\.value: must be a number, not bool$"),
    (lambda: _gate(decision_id=""), r"^gate_decisions\.decision_id: must not be empty$"),
    (lambda: _gate(signal_id=None), r"^gate_decisions\.signal_id: must be a str, not NoneType$"),
    (lambda: _gate(trace_id="x" * 129), r"^gate_decisions\.trace_id: is 129 bytes, more than 128$"),
    (lambda: _gate(trace_id="é" * 65), r"^gate_decisions\.trace_id: is 130 bytes, more than 128$"),
    (lambda: _gate(inputs="[1, 2]"), r"^gate_decisions\.inputs: must be a JSON object$"),
    (lambda: _gate(inputs={"a": 1}), r"^gate_decisions\.inputs: must be a JSON object in a str"),
    (lambda: _gate(inputs="{" + "x" * 16384 + "}"), r"^gate_decisions\.inputs: is 16386 bytes, more than 16384$"),
    (lambda: _gate(gate="vibe_gate"), r"^gate_decisions\.gate: expected one of meta_label, cost_gate"),
    (lambda: _gate(level="LOUD"), r"^gate_decisions\.level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    (lambda: _gate(level="info"), r"^gate_decisions\.level: expected one of"),
    (lambda: _gate(ts=dt.datetime.now()), r"^gate_decisions\.ts: must carry a time zone"),
    (lambda: _gate(ts="2024-01-01T00:00:00Z"), r"^gate_decisions\.ts: must be a datetime, not str$"),
    (lambda: _gate(ts=dt.datetime(1999, 12, 31, tzinfo=UTC)), r"^gate_decisions\.ts: is before 2000-01-01"),
    (lambda: _gate(ts=now() + dt.timedelta(minutes=1)), r"^gate_decisions\.ts: is \d+ ms in the future"),
    (lambda: _gate(symbol="../etc"), r"^gate_decisions\.symbol: must match \[A-Za-z0-9._-\]\{1,32\}"),
    (lambda: _gate(symbol=".."), r"^gate_decisions\.symbol: must match"),
    (lambda: _gate(symbol="A" * 33), r"^gate_decisions\.symbol: must match"),
    (lambda: _gate(event_id=""), r"^gate_decisions\.event_id: must not be empty$"),
    (lambda: _trade(qty=0.0), r"^trades\.qty: must be > 0$"),
    (lambda: _trade(fees_bps=-1.0), r"^trades\.fees_bps: must be in \[0, "),
    (lambda: _trade(kind="CLOSE"), r"^trades\.pnl_bps: is required$"),
    (lambda: _trade(duration_s=float("-inf")), r"^trades\.duration_s: must be a finite number$"),
    (lambda: _trade(features="not json"), r"^trades\.features: must be a JSON object$"),
    (lambda: _trade(side="LONG"), r"^trades\.side: expected one of BUY, SELL, not 'LONG'$"),
    (lambda: _prediction(predicted_prob=1.5), r"^predictions\.predicted_prob: must be in \[0, 1\]$"),
    (lambda: _prediction(predicted_prob=None), r"^predictions\.predicted_prob: is required$"),
    (lambda: _prediction(kind="LABELED", label=2), r"^predictions\.label: must be in \[0, 1\]$"),
    (lambda: _prediction(kind="LABELED", label=None), r"^predictions\.label: is required$"),
    (lambda: _prediction(decision_ts=now(), label_cutoff_ts=now() - dt.timedelta(hours=1)),
     r"^predictions\.decision_ts: label leakage: decision_ts .* is after label_cutoff_ts"),
    (lambda: _prediction(label_cutoff_ts=dt.datetime(2024, 1, 1)), r"^predictions\.label_cutoff_ts: must carry a time zone"),
    (lambda: TraceStep(symbol="X", trace_id="t", signal_id="s", step="a", seq=-1, start_ms=0.0, duration_ms=0.0,
                       result=""), r"^trace_steps\.seq: must be in \[0, 2147483647\]$"),
    (lambda: TraceStep(symbol="X", trace_id="t", signal_id="s", step="a", seq=1.0, start_ms=0.0, duration_ms=0.0,
                       result=""), r"^trace_steps\.seq: must be an int, not float$"),
    (lambda: ModelEvent(symbol="X", model_id="m", kind="TRAINED", metrics="{}", alias=""),
     r"^model_events\.alias: must not be empty$"),
    (lambda: market(price=-1.0), r"^market_context\.price: must be > 0$"),
    (lambda: ShadowTrade(symbol="X", shadow_id="s", signal_id="s", kind="RESOLVED", blocked_by="cost_gate", side="BUY",
                         hypothetical_entry=1.0, mode="scalp", regime="TREND"),
     r"^shadow_trades\.outcome_pnl_bps: is required$"),
]


@pytest.mark.parametrize("build,message", HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_values_are_refused_naming_table_and_field(build, message):
    with Logger(NOWHERE) as logger:
        with pytest.raises(InvalidEvent, match=message) as e:
            logger.log(build())
        assert isinstance(e.value, ValueError)
        stats = logger.stats()
        assert sum(stats.rejected_invalid.values()) == 1 and sum(stats.accepted.values()) == 0


def test_what_is_not_an_event_is_a_type_error():
    with Logger(NOWHERE) as logger:
        with pytest.raises(TypeError, match="not a Quiver event: dict"):
            logger.log({"symbol": "BTC-USD"})


# -- tiers under a stalled server ------------------------------------------------


def test_tiers_and_kill_switch_under_a_stalled_server(server):
    """Capacity 100, no spill, the server stopped (SIGSTOP): DEBUG sheds from
    80, the switch trips at 95 (INFO dropped), WARNING/ERROR are dropped only
    when full, CRITICAL never; the switch re-arms after the drain once it has
    been tripped for the hold."""
    logger = Logger(server.url, queue_capacity=100, flush_interval_s=0.05, kill_switch_rearm_hold_s=3.0, rpc_timeout_s=60)
    try:
        logger.log(market(symbol="tier-1"))
        logger.flush(timeout=30)  # connected
        os.kill(server.proc.pid, signal.SIGSTOP)
        out = [logger.log(market(symbol="tier-1", level=Level.INFO)) for _ in range(79)]
        assert all(o is ACCEPTED for o in out)
        assert logger.log(market(symbol="tier-1", level=Level.DEBUG)) is ACCEPTED  # fill 79 < 80
        assert logger.log(market(symbol="tier-1", level=Level.DEBUG)) == Dropped(DropReason.DEBUG_SHED)  # 80
        assert logger.stats().fill == 0.80
        out = [logger.log(market(symbol="tier-1", level=Level.INFO)) for _ in range(15)]
        assert all(o is ACCEPTED for o in out) and not logger.kill_switch_tripped()  # fill 95 now
        assert logger.log(market(symbol="tier-1", level=Level.INFO)) == Dropped(DropReason.KILL_SWITCH)
        assert logger.kill_switch_tripped()
        assert logger.log(market(symbol="tier-1", level=Level.DEBUG)) == Dropped(DropReason.KILL_SWITCH)
        out = [logger.log(market(symbol="tier-1", level=Level.WARNING)) for _ in range(3)]
        out += [logger.log(market(symbol="tier-1", level=Level.ERROR)) for _ in range(2)]
        assert all(o is ACCEPTED for o in out)  # fill 100: full
        assert logger.log(market(symbol="tier-1", level=Level.WARNING)) == Dropped(DropReason.QUEUE_FULL)
        assert logger.log(market(symbol="tier-1", level=Level.ERROR)) == Dropped(DropReason.QUEUE_FULL)
        out = [logger.log(market(symbol="tier-1", level=Level.CRITICAL, price=777.0)) for _ in range(50)]
        assert all(o is ACCEPTED for o in out)  # never dropped: beyond the capacity
        stats = logger.stats()
        assert (stats.queue_len, stats.overflow_len, stats.overflow_accepted) == (150, 50, 50)
        assert stats.dropped_debug_shed == 1
        assert stats.dropped_kill_switch == {Level.DEBUG: 1, Level.INFO: 1, Level.WARNING: 0, Level.ERROR: 0, Level.CRITICAL: 0}
        assert stats.dropped_queue_full[Level.WARNING] == 1 and stats.dropped_queue_full[Level.ERROR] == 1
        assert stats.dropped(Level.CRITICAL) == 0 and stats.dropped_total == 5
        assert stats.kill_switch_trips == 1

        time.sleep(1.2)
        assert logger.kill_switch_tripped(), "still full: no re-arm"
        os.kill(server.proc.pid, signal.SIGCONT)
        logger.flush(timeout=60)
        tripped_for = time.monotonic() - logger._tripped_at
        if tripped_for < 2.5:
            assert logger.kill_switch_tripped(), "drained, but tripped for less than the hold"
        time.sleep(max(0.0, 3.1 - tripped_for))
        assert not logger.kill_switch_tripped(), "drained and held: re-armed"
        assert logger.log(market(symbol="tier-1", level=Level.INFO)) is ACCEPTED
        logger.flush(timeout=30)
        accepted = sum(logger.stats().accepted.values())
    finally:
        logger.close()
    assert counts(server.url, "market_context", "symbol = 'tier-1'") == (accepted, accepted)
    assert counts(server.url, "market_context", "symbol = 'tier-1' AND level = 'CRITICAL'") == (50, 50)


def test_a_full_spill_dir_fills_the_queue_and_the_tiers_apply():
    """Spill bound reached: batches stay in memory, the queue fills, the
    switch trips; CRITICAL still accepted."""
    spill = tempfile.mkdtemp()
    with Logger(NOWHERE, spill_dir=spill, spill_batches_max=1, queue_capacity=100, flush_interval_s=0.02) as logger:
        for _ in range(30):
            logger.log(market())
        deadline = time.monotonic() + 10
        while logger.stats().spill_batches < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(200):
            logger.log(market())
            time.sleep(0.001)
        stats = logger.stats()
        assert stats.spill_batches == 1 and stats.spill_full
        # INFO stops at the trip fill (95 of 100); WARNING still fits.
        assert stats.queue_len == 95 and stats.kill_switch_tripped
        assert stats.dropped_kill_switch[Level.INFO] > 0
        assert logger.log(market(level=Level.WARNING)) is ACCEPTED
        assert logger.log(market(level=Level.CRITICAL)) is ACCEPTED


# -- the server away ----------------------------------------------------------------


def test_server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(server):
    """A stream at ~2,000 events/s; the server is SIGKILLed, stays down 3 s and
    restarts on the same data dir. Every accepted event is stored exactly once,
    and log() never blocked while the server was down."""
    spill = tempfile.mkdtemp()
    logger = Logger(server.url, spill_dir=spill, flush_interval_s=0.1, reconnect_backoff_max_s=0.5)
    stop = threading.Event()
    durations = []
    outcomes = []

    def bot():
        i = 0
        while not stop.is_set():
            for _ in range(20):
                event = market(symbol="kill-1", price=1.0 + i, level=(Level.INFO, Level.DEBUG, Level.WARNING)[i % 3])
                started = time.perf_counter()
                outcomes.append(logger.log(event))
                durations.append((time.monotonic(), time.perf_counter() - started))
                i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=bot)
    thread.start()
    try:
        time.sleep(2)
        down_at = time.monotonic()
        server.kill()
        time.sleep(3)
        spilled = logger.stats().spill_batches
        server.start()
        up_at = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        thread.join()
    logger.flush(timeout=120)
    stats = logger.stats()
    logger.close()

    assert spilled > 0, "the batches of the outage went to the spill directory"
    assert all(o is ACCEPTED for o in outcomes), stats
    accepted = sum(stats.accepted.values())
    assert accepted == len(outcomes) > 5000
    assert stats.spill_batches == 0 and stats.batches_resent >= spilled
    assert counts(server.url, "market_context", "symbol = 'kill-1'") == (accepted, accepted)
    while_down = [d for at, d in durations if down_at <= at <= up_at]
    assert len(while_down) > 1000
    assert max(while_down) < 0.05, f"log() took {max(while_down) * 1000:.1f} ms while the server was down"


def test_spill_survives_a_logger_restart(server):
    """A bot that stops while the server is away leaves its batches in the
    spill dir; the next logger on that dir sends them, once."""
    spill = tempfile.mkdtemp()
    server.kill()
    first = Logger(server.url, spill_dir=spill, flush_interval_s=0.05)
    for i in range(1234):
        assert first.log(market(symbol="spill-1", price=1.0 + i)) is ACCEPTED
    with pytest.raises(SpillDirBusy):
        Logger(server.url, spill_dir=spill)
    first.close(timeout=0.5)
    stats = first.stats()
    assert stats.rows_lost == 0 and stats.spill_batches >= 1 and stats.spill_oldest_age_s is not None
    assert len([f for f in os.listdir(spill) if f.endswith(".arrow")]) == stats.spill_batches

    server.start()
    second = Logger(server.url, spill_dir=spill)
    try:
        assert second.stats().spill_batches == stats.spill_batches
        deadline = time.monotonic() + 60
        while second.stats().spill_batches and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.stats().spill_batches == 0 and second.stats().batches_resent == stats.spill_batches
    finally:
        second.close()
    assert [f for f in os.listdir(spill) if f.endswith(".arrow")] == []
    assert counts(server.url, "market_context", "symbol = 'spill-1'") == (1234, 1234)
