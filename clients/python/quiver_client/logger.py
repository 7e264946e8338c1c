"""[`Logger`]: the bot's non-blocking front door, and the threads behind it.

# Tiers and the kill switch

The same rules and defaults as the Rust logger (``src/ingest/mod.rs``). With
queue capacity ``C`` (default 10,000), counting every event accepted and not
yet durable on the server or in the spill directory:

- fill >= ``debug_shed_fill`` (80%): DEBUG events are dropped;
- fill >= ``kill_switch_trip_fill`` (95%): the kill switch trips. While it is
  tripped DEBUG and INFO events are dropped, and the bot is expected to stop
  opening positions (:meth:`Logger.kill_switch_tripped`);
- queue full: WARNING and ERROR events are dropped (and the switch trips);
- CRITICAL events are never dropped: past the capacity they are queued
  anyway, up to ``critical_overflow_max`` (1,000,000) beyond it.

Re-arm rule (hysteresis): the switch re-arms once the fill is at or below
``kill_switch_rearm_fill`` (50%) *and* it has been tripped for at least
``kill_switch_rearm_hold_s`` (1 s). ``log()`` and the batcher both check it, so
it re-arms while the bot is quiet too.

One difference from Rust: the CRITICAL overflow is not a lane of its own but
the tail of the one queue, so ``queue_len`` may exceed the capacity (by
``overflow_len``); the tiers are at their strictest either way.

# Threads

- ``log()`` validates (plain Python checks, :mod:`quiver_client.events`),
  applies the tiers and appends to a list under a lock held for a few
  attribute updates: it never waits for I/O or for the other threads' work.
- The *batcher* swaps the list out every ``flush_interval_s`` (or at
  ``batch_rows_max`` events, or on ``flush()``), turns it column-wise into one
  Arrow table per event table (at most ``batch_rows_max`` rows each, handing
  the GIL to the bot between columns) and puts each in the outbox as it is
  made. While the server is down or a send has been stuck for
  ``spill_after_s``, it writes the outbox's batches to the spill directory.
- ``ingests_in_flight`` *shippers* (default 2), each with its own
  connection, send the outbox's batches oldest first over Flight SQL
  (``adbc_ingest(mode="append")``), from memory or from their spill files. A
  batch leaves the outbox (its file deleted) only once the server answered,
  which it does once the rows are durable; two in flight keep the server busy
  while an answer travels back (benches/client_logger.py on 2 cores: about
  1.5x the sustained events/s of one; three gained nothing measurable over
  two and took more of the bot's GIL time).
  Batches may be answered out of order; ``flush()``'s watermark moves only over
  a run of answered batches from the oldest, so it never passes one still in
  flight. On a transport error a shipper reconnects with exponential backoff
  and resends the whole batch; the server deduplicates by ``event_id``, which
  ``log()`` fixes for every event.

The lock is a ``threading.Lock``, not a lock-free structure: under the GIL
nothing is truly lock-free, and one uncontended lock costs less than the
atomic counters a lock-free design would need to be exact with several bot
threads. Every holder does O(1) work (a list swap, a few counters) and never
I/O, so ``log()`` waits at most for one of those.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import adbc_driver_manager
import pyarrow as pa

from .events import (
    LEVEL_INDEX,
    LEVELS,
    Event,
    InvalidEvent,
    Level,
    ValidationLimits,
    to_arrow,
    validate,
)
from .spill import SpillDir, SpillFile

log = logging.getLogger("quiver_client")

_DEBUG = LEVEL_INDEX["DEBUG"]
_INFO = LEVEL_INDEX["INFO"]
_CRITICAL = LEVEL_INDEX["CRITICAL"]


@dataclass(frozen=True, slots=True)
class LoggerConfig:
    """How the logger queues, batches, spills and reconnects. The queue and
    tier fields have the Rust logger's names and defaults (``[logger]`` in
    ``quiver.toml``); durations are seconds, suffixed ``_s``."""

    #: Events accepted and not yet durable (on the server or in the spill
    #: directory) that the queue holds, CRITICAL overflow aside.
    queue_capacity: int = 10_000
    #: Most rows in one ingest request (one table).
    batch_rows_max: int = 5_000
    #: Longest an accepted event waits before its batch is sent.
    flush_interval_s: float = 1.0
    #: Queue fill, a fraction in [0, 1], at which DEBUG events are dropped.
    debug_shed_fill: float = 0.80
    #: Queue fill at which the kill switch trips.
    kill_switch_trip_fill: float = 0.95
    #: Queue fill at or below which a tripped kill switch may re-arm.
    kill_switch_rearm_fill: float = 0.50
    #: Least time a tripped kill switch stays tripped.
    kill_switch_rearm_hold_s: float = 1.0
    #: CRITICAL events accepted beyond a full queue; past it they are dropped
    #: as queue-full, counted (reached only after a long outage with no spill).
    critical_overflow_max: int = 1_000_000
    #: Where batches wait while the server is away (None: in memory only,
    #: where they count toward the queue's fill).
    spill_dir: str | os.PathLike[str] | None = None
    #: Bounds of the spill directory. Full, batches stay in memory and the
    #: queue fills: the tiers apply as without a spill directory.
    spill_bytes_max: int = 1 << 30
    spill_batches_max: int = 10_000
    #: A send that has not answered after this long is a stalled server: the
    #: batches waiting behind it go to the spill directory.
    spill_after_s: float = 2.0
    #: Deadline of one ingest request. The server answers once the rows are
    #: durable and visible (waiting up to 10 s for visibility), so keep it above 10 s.
    rpc_timeout_s: float = 30.0
    #: Deadline of opening a connection (handshake included).
    connect_timeout_s: float = 10.0
    #: Reconnect backoff: doubles from min to max (with 20% jitter).
    reconnect_backoff_min_s: float = 0.1
    reconnect_backoff_max_s: float = 5.0
    #: Ingest requests in flight at once, each on a connection of its own
    #: (1 ..= INGESTS_IN_FLIGHT_MAX).
    ingests_in_flight: int = 2
    #: The limits events are checked against in ``log()``: the server's defaults.
    validation: ValidationLimits = field(default_factory=ValidationLimits)

    def __post_init__(self) -> None:
        if not 1 <= self.ingests_in_flight <= INGESTS_IN_FLIGHT_MAX:
            raise ValueError(
                f"LoggerConfig.ingests_in_flight: {self.ingests_in_flight} is not in 1..={INGESTS_IN_FLIGHT_MAX}"
            )


#: The most ingest requests one logger keeps in flight: past a few, more only
#: queue on the server (its WAL commits one group at a time).
INGESTS_IN_FLIGHT_MAX = 8

# -- what log() answers ---------------------------------------------------------


class DropReason(enum.StrEnum):
    """Why an event was not accepted (Rust's ``DropReason``; an invalid event
    raises :class:`~quiver_client.InvalidEvent` instead)."""

    #: DEBUG event while the queue was at or above the shed fill.
    DEBUG_SHED = "DebugShed"
    #: DEBUG or INFO event while the kill switch was tripped.
    KILL_SWITCH = "KillSwitch"
    #: WARNING or ERROR event with the queue full (or CRITICAL past the overflow bound).
    QUEUE_FULL = "QueueFull"
    #: The logger is closed.
    CLOSED = "Closed"


class Accepted:
    """The event is queued; durable within the flush interval or after ``flush()``.
    There is one instance, :data:`ACCEPTED`."""

    __slots__ = ()
    accepted: ClassVar[bool] = True

    def __repr__(self) -> str:
        return "Accepted"

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Dropped:
    """The event was dropped, for `reason`; the drop is counted in ``stats()``."""

    reason: DropReason
    accepted: ClassVar[bool] = False

    def __bool__(self) -> bool:
        return False


ACCEPTED = Accepted()
# One instance per reason: log() allocates nothing to answer.
_DROPPED = {reason: Dropped(reason) for reason in DropReason}
LogOutcome = Accepted | Dropped


class LoggerClosed(RuntimeError):
    """The logger closed before the events a flush waited for were durable."""


# -- stats ------------------------------------------------------------------------


def _by_level(counts: Sequence[int]) -> dict[Level, int]:
    return dict(zip(LEVELS, counts))


@dataclass(frozen=True, slots=True)
class LoggerStats:
    """A point-in-time copy of the logger's state."""

    queue_len: int
    queue_capacity: int
    #: CRITICAL events queued beyond the capacity.
    overflow_len: int
    accepted: dict[Level, int]
    rejected_invalid: dict[Level, int]
    dropped_debug_shed: int
    dropped_kill_switch: dict[Level, int]
    dropped_queue_full: dict[Level, int]
    dropped_closed: dict[Level, int]
    overflow_accepted: int
    kill_switch_tripped: bool
    kill_switch_trips: int
    #: Events the server has confirmed durable (every one accepted up to there).
    durable: int
    batches_sent: int
    rows_sent: int
    #: Rows the server refused (its settings differ from the client's checks,
    #: e.g. a symbol allowlist); each is logged with the server's message.
    rows_rejected_by_server: int
    #: Whether the last send reached the server.
    connected: bool
    #: The last transport or server error, if any.
    last_error: str | None
    spill_batches: int
    spill_bytes: int
    #: Age of the oldest spilled batch, seconds (None: nothing spilled).
    spill_oldest_age_s: float | None
    #: Batches ever written to the spill directory by this logger.
    batches_spilled: int
    #: Batches sent from a spill file (this logger's or a previous one's).
    batches_resent: int
    #: Whether the spill directory was full the last time a batch needed it.
    spill_full: bool
    #: Spill files that could not be read, moved to ``corrupt/``.
    spill_corrupt: int
    #: Rows never delivered: left in memory at close with no room to spill,
    #: or in a corrupt spill file.
    rows_lost: int

    @property
    def fill(self) -> float:
        """Queue fill as a fraction of capacity."""
        return self.queue_len / max(self.queue_capacity, 1)

    def dropped(self, level: Level | str) -> int:
        """Drops of one level for any reason but validation."""
        level = Level(level)
        shed = self.dropped_debug_shed if level is Level.DEBUG else 0
        return shed + self.dropped_kill_switch[level] + self.dropped_queue_full[level] + self.dropped_closed[level]

    @property
    def dropped_total(self) -> int:
        """Everything dropped, at every level, for any reason but validation."""
        return sum(self.dropped(level) for level in Level)


# -- batches ---------------------------------------------------------------------


class _Batch:
    """One table's rows on their way: in memory, in a spill file, or both."""

    __slots__ = ("number", "table", "data", "file", "rows", "held", "closes_upto", "answered", "done", "sending_since")

    def __init__(self, number: int, table: str, data: pa.Table | None, file: SpillFile | None = None) -> None:
        self.number = number
        self.table = table
        self.data = data
        self.file = file
        self.rows = data.num_rows if data is not None else (file.rows if file else 0)
        #: Rows of this batch still counted in the queue's fill (0 once spilled).
        self.held = 0
        #: Every event accepted up to this sequence number is durable once this
        #: batch (and so every one before it) is.
        self.closes_upto: int | None = None
        #: The server has its rows (or refused them for good).
        self.answered = False
        #: Answered and its spill file deleted: it may leave the outbox.
        self.done = False
        #: When a shipper began sending it (None: not being sent).
        self.sending_since: float | None = None


class _Link:
    """One shipper's connection, and an attempt to open one that may still
    be running (a stalled server can hang the handshake)."""

    __slots__ = ("conn", "connecting")

    def __init__(self) -> None:
        self.conn: Any = None
        self.connecting: tuple[threading.Thread, dict[str, Any]] | None = None


_ROW = re.compile(r"\brow (\d+):")

# Status codes the server gives an ingest it will never take as sent: resending
# would fail forever. Everything else (unavailable, deadline, unauthenticated
# after a restart, internal) is worth a retry.
_REFUSED = {
    adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT,
    adbc_driver_manager.AdbcStatusCode.NOT_FOUND,
    adbc_driver_manager.AdbcStatusCode.ALREADY_EXISTS,
    adbc_driver_manager.AdbcStatusCode.NOT_IMPLEMENTED,
    adbc_driver_manager.AdbcStatusCode.UNAUTHORIZED,
}


class _Refused(Exception):
    """The server refused a batch; carries the row it named, if any."""

    def __init__(self, message: str, row: int | None) -> None:
        super().__init__(message)
        self.row = row


class Logger:
    """The bot's logger: ``log()`` never blocks; batches reach Quiver over
    Flight SQL, through the spill directory while the server is away.

    ``uri`` is the server's Flight SQL address (``grpc://host:50051``, or
    ``grpc+tls://`` with TLS). ``tls_root_certs`` is a PEM string (the CA of a
    self-signed server); ``mtls_cert_chain``/``mtls_private_key`` (PEM) present
    a client certificate. Any :class:`LoggerConfig` field may be given as a
    keyword, over ``config``.
    """

    def __init__(
        self,
        uri: str,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_root_certs: str | None = None,
        mtls_cert_chain: str | None = None,
        mtls_private_key: str | None = None,
        config: LoggerConfig | None = None,
        **overrides: Any,
    ) -> None:
        cfg = dataclasses.replace(config or LoggerConfig(), **overrides)
        self.config = cfg
        self._uri = uri
        self._db_kwargs = _db_kwargs(cfg, username, password, tls_root_certs, mtls_cert_chain, mtls_private_key)
        self._limits = cfg.validation

        capacity = max(cfg.queue_capacity, 1)
        self._capacity = capacity
        # The fill thresholds as queue lengths, rounded as the Rust logger does.
        self._shed_len = _ceil(capacity * cfg.debug_shed_fill)
        self._trip_len = _ceil(capacity * cfg.kill_switch_trip_fill)
        self._rearm_len = int(capacity * cfg.kill_switch_rearm_fill)
        self._rearm_hold = cfg.kill_switch_rearm_hold_s
        self._overflow_max = cfg.critical_overflow_max
        self._batch_max = max(cfg.batch_rows_max, 1)

        self._lock = threading.Lock()
        self._outbox_ready = threading.Condition(self._lock)
        self._durable_cv = threading.Condition(self._lock)
        self._wake = threading.Event()

        # Guarded by _lock.
        self._queue: list[Event] = []
        self._seq = 0  # events accepted so far; the last one's sequence number
        self._taken = 0  # sequence number of the last event the batcher took
        self._held = 0  # taken rows neither on the server nor in the spill dir
        self._durable = 0
        self._flush_target = 0
        self._closed = False
        self._stopping = False
        self._finished = False
        self._kill = False
        self._tripped_at = 0.0
        self._outbox: deque[_Batch] = deque()
        self._down = False
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._accepted = [0] * 5
        self._rejected_invalid = [0] * 5
        self._dropped_debug_shed = 0
        self._dropped_kill_switch = [0] * 5
        self._dropped_queue_full = [0] * 5
        self._dropped_closed = [0] * 5
        self._overflow_accepted = 0
        self._kill_switch_trips = 0
        self._batches_sent = 0
        self._rows_sent = 0
        self._rows_rejected_by_server = 0
        self._last_error: str | None = None
        self._batches_spilled = 0
        self._batches_resent = 0
        self._spill_full = False
        self._rows_lost = 0

        # Event ids: a random UUID's first 24 characters, then the event's
        # sequence number in the last 12 hex digits. Unique like a v4 UUID
        # (74 random bits per logger), fixed at log() time, and built by the
        # batcher rather than on the bot's thread.
        self._id_prefix = str(uuid.uuid4())[:24]

        self._spill: SpillDir | None = None
        self._number = 1
        if cfg.spill_dir is not None:
            self._spill = SpillDir(cfg.spill_dir, cfg.spill_bytes_max, cfg.spill_batches_max)
            for f in self._spill.load():
                self._outbox.append(_Batch(f.number, "", None, f))
            self._number = self._spill.next_number()

        self._links = [_Link() for _ in range(cfg.ingests_in_flight)]
        self._backoff = cfg.reconnect_backoff_min_s
        self._retry_at = 0.0

        self._batcher = threading.Thread(target=self._batch_loop, name="quiver-batcher", daemon=True)
        self._shippers = [
            threading.Thread(target=self._ship_loop, args=(link,), name=f"quiver-shipper-{i}", daemon=True)
            for i, link in enumerate(self._links)
        ]
        self._batcher.start()
        for shipper in self._shippers:
            shipper.start()

    # -- the bot's side ---------------------------------------------------------

    def log(self, event: Event) -> LogOutcome:
        """Validates and queues one event; returns at once.

        Raises :class:`~quiver_client.InvalidEvent` (a ``ValueError``) naming
        the table and field when the event breaks a rule, ``TypeError`` when it
        is not an event. Otherwise answers :data:`ACCEPTED` or a
        :class:`Dropped` with its reason (see the module docs for the tiers).
        """
        try:
            level = validate(event, self._limits)
        except InvalidEvent:
            level_name = getattr(event, "level", None)
            index = LEVEL_INDEX.get(level_name, _INFO) if isinstance(level_name, str) else _INFO
            with self._lock:
                self._rejected_invalid[index] += 1
            raise
        wake = False
        with self._lock:
            if self._closed:
                self._dropped_closed[level] += 1
                return _DROPPED[DropReason.CLOSED]
            n = len(self._queue) + self._held
            if n >= self._trip_len:
                self._trip()
            elif self._kill and n <= self._rearm_len:
                self._maybe_rearm(n)
            if level == _CRITICAL:
                if n >= self._capacity:
                    if n - self._capacity >= self._overflow_max:
                        self._dropped_queue_full[level] += 1
                        return _DROPPED[DropReason.QUEUE_FULL]
                    self._overflow_accepted += 1
            elif level <= _INFO and self._kill:
                self._dropped_kill_switch[level] += 1
                return _DROPPED[DropReason.KILL_SWITCH]
            elif level == _DEBUG and n >= self._shed_len:
                self._dropped_debug_shed += 1
                return _DROPPED[DropReason.DEBUG_SHED]
            elif n >= self._capacity:
                self._trip()
                self._dropped_queue_full[level] += 1
                return _DROPPED[DropReason.QUEUE_FULL]
            self._queue.append(event)
            self._seq += 1
            self._accepted[level] += 1
            wake = len(self._queue) == self._batch_max
        if wake:
            self._wake.set()
        return ACCEPTED

    def kill_switch_tripped(self) -> bool:
        """Whether the kill switch is tripped: the bot should stop opening positions."""
        with self._lock:
            if self._kill:
                self._maybe_rearm(len(self._queue) + self._held)
            return self._kill

    def flush(self, timeout: float | None = None) -> None:
        """Returns once every event accepted before the call is durable on the
        server. Raises ``TimeoutError`` after `timeout` seconds (the events stay
        queued or spilled, and keep going), :class:`LoggerClosed` if the logger
        closed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._request_flush()
        self._wake.set()
        with self._lock:
            while self._durable < target:
                if self._finished:
                    raise LoggerClosed(f"closed with {target - self._durable} event(s) not confirmed durable")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"flush: {target - self._durable} event(s) not yet durable on the server after {timeout} s"
                    )
                self._durable_cv.wait(remaining)

    async def aflush(self, timeout: float | None = None) -> None:
        """:meth:`flush` for asyncio: awaits without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            target = self._request_flush()
            if self._durable >= target:
                return
            if self._finished:
                raise LoggerClosed(f"closed with {target - self._durable} event(s) not confirmed durable")
            waiter = (target, loop, future)
            self._async_waiters.append(waiter)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)
            raise TimeoutError(f"aflush: events not yet durable on the server after {timeout} s") from None

    def stats(self) -> LoggerStats:
        spill_batches, spill_bytes, oldest = self._spill.stats() if self._spill else (0, 0, None)
        with self._lock:
            queue_len = len(self._queue) + self._held
            return LoggerStats(
                queue_len=queue_len,
                queue_capacity=self._capacity,
                overflow_len=max(0, queue_len - self._capacity),
                accepted=_by_level(self._accepted),
                rejected_invalid=_by_level(self._rejected_invalid),
                dropped_debug_shed=self._dropped_debug_shed,
                dropped_kill_switch=_by_level(self._dropped_kill_switch),
                dropped_queue_full=_by_level(self._dropped_queue_full),
                dropped_closed=_by_level(self._dropped_closed),
                overflow_accepted=self._overflow_accepted,
                kill_switch_tripped=self._kill,
                kill_switch_trips=self._kill_switch_trips,
                durable=self._durable,
                batches_sent=self._batches_sent,
                rows_sent=self._rows_sent,
                rows_rejected_by_server=self._rows_rejected_by_server,
                connected=not self._down and any(link.conn is not None for link in self._links),
                last_error=self._last_error,
                spill_batches=spill_batches,
                spill_bytes=spill_bytes,
                spill_oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                batches_spilled=self._batches_spilled,
                batches_resent=self._batches_resent,
                spill_full=self._spill_full,
                spill_corrupt=len(self._spill.corrupt) if self._spill else 0,
                rows_lost=self._rows_lost,
            )

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops accepting events and waits up to `timeout` seconds for
        everything accepted to be durable on the server. What is still not
        then goes to the spill directory (sent by the next logger on it);
        without one, it is counted in ``stats().rows_lost``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        except TimeoutError:
            pass
        with self._lock:
            self._stopping = True
            self._outbox_ready.notify_all()
        self._wake.set()
        self._batcher.join()
        deadline = time.monotonic() + 1.0
        for shipper in self._shippers:
            shipper.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._finished = True
            self._durable_cv.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for _, loop, future in waiters:
            _resolve(loop, future, LoggerClosed("the logger closed"))
        if not any(shipper.is_alive() for shipper in self._shippers):
            for link in self._links:
                self._close_connection(link)
            if self._spill is not None:
                self._spill.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tiers (called with _lock held) --------------------------------------------

    def _trip(self) -> None:
        if not self._kill:
            self._kill = True
            self._tripped_at = time.monotonic()
            self._kill_switch_trips += 1

    def _maybe_rearm(self, n: int) -> None:
        if self._kill and n <= self._rearm_len and time.monotonic() - self._tripped_at >= self._rearm_hold:
            self._kill = False

    def _request_flush(self) -> int:
        target = self._seq
        if target > self._flush_target:
            self._flush_target = target
        return target

    def _advance(self, upto: int) -> None:
        """Everything accepted up to `upto` is durable (called with _lock held)."""
        if upto <= self._durable:
            return
        self._durable = upto
        self._durable_cv.notify_all()
        if self._async_waiters:
            ready = [w for w in self._async_waiters if w[0] <= upto]
            self._async_waiters = [w for w in self._async_waiters if w[0] > upto]
            for _, loop, future in ready:
                _resolve(loop, future, None)

    # -- the batcher ---------------------------------------------------------------

    def _batch_loop(self) -> None:
        tick = min(self.config.flush_interval_s, 0.05)
        next_take = time.monotonic() + self.config.flush_interval_s
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                stopping = self._stopping
                if self._kill:
                    self._maybe_rearm(len(self._queue) + self._held)
                due = (
                    len(self._queue) >= self._batch_max
                    or now >= next_take
                    or self._flush_target > self._taken
                    or self._closed
                )
                if due:
                    items, self._queue = self._queue, []
                    base, upto = self._taken, self._seq
                    self._taken = upto
                    self._held += len(items)
            if due:
                next_take = now + self.config.flush_interval_s
                self._build(items, base, upto)
            try:
                self._maybe_spill(now, everything=stopping)
            except OSError as e:
                log.error("quiver_client: writing the spill directory: %s", e)
                with self._lock:
                    self._last_error = f"spill: {e}"
            if stopping:
                with self._lock:
                    # Whatever is neither on the server nor spilled is lost.
                    lost = sum(b.held for b in self._outbox)
                    self._rows_lost += lost
                    self._held -= lost
                    for b in self._outbox:
                        b.held = 0
                if lost:
                    log.error("quiver_client: closed with %d event(s) neither sent nor spilled", lost)
                return

    def _build(self, items: list[Event], base: int, upto: int) -> None:
        """Turns one take into batches, one table at a time, and queues them."""
        if not items:
            with self._lock:
                self._close_take(None, upto)
            return
        groups: dict[type[Event], tuple[list[Event], list[str]]] = {}
        prefix = self._id_prefix
        seq = base
        for e in items:
            seq += 1
            group = groups.get(type(e))
            if group is None:
                group = groups[type(e)] = ([], [])
            group[0].append(e)
            group[1].append(e.event_id or f"{prefix}{seq:012x}")
        # Each chunk goes to the outbox as soon as it is converted, so the
        # shipper sends the first while the batcher converts the rest.
        step = self._batch_max
        chunks = [
            (table, events[start : start + step], ids[start : start + step])
            for table, (events, ids) in groups.items()
            for start in range(0, len(events), step)
        ]
        last: _Batch | None = None
        for i, (table, chunk, chunk_ids) in enumerate(chunks):
            try:
                data = to_arrow(table, chunk, chunk_ids)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
                # Validated events always convert; this is a bug, not the bot's fault.
                log.error("quiver_client: converting %d %s event(s) to Arrow: %s", len(chunk), table.TABLE, e)
                with self._lock:
                    self._rows_lost += len(chunk)
                    self._held -= len(chunk)
                continue
            batch = _Batch(0, table.TABLE, data)
            batch.held = batch.rows
            with self._lock:
                batch.number = self._number
                self._number += 1
                if i == len(chunks) - 1:
                    batch.closes_upto = upto
                self._outbox.append(batch)
                self._outbox_ready.notify_all()
            last = batch
        if last is None or last.closes_upto is None:
            with self._lock:
                self._close_take(last, upto)

    def _close_take(self, last: _Batch | None, upto: int) -> None:
        """Places the watermark of a take whose last chunk does not carry it
        (the take was empty, or its last chunk failed to convert): on `last`,
        the take's newest batch, while it waits; with none, on the newest batch
        waiting; else it is reached now, everything before it being on the
        server. Called with _lock held."""
        if last is not None and last in self._outbox:
            last.closes_upto = upto
        elif last is None and self._outbox:
            self._outbox[-1].closes_upto = upto
        else:
            self._advance(upto)

    def _maybe_spill(self, now: float, everything: bool = False) -> None:
        """While the server is down or stalled, moves the outbox's in-memory
        batches to the spill directory, oldest first, while it has room."""
        if self._spill is None:
            return
        with self._lock:
            stalled = self._down or any(
                b.sending_since is not None and now - b.sending_since >= self.config.spill_after_s
                for b in self._outbox
            )
            if not (stalled or everything):
                return
            todo = [b for b in self._outbox if b.file is None and not b.answered and b.data is not None]
        for b in todo:
            data = b.data
            assert data is not None
            if not self._spill.has_room(data.nbytes):
                with self._lock:
                    self._spill_full = True
                return
            f = self._spill.write(b.number, b.table, data)
            with self._lock:
                self._spill_full = False
                self._batches_spilled += 1
                if b.answered:
                    # Sent while it was being written.
                    self._spill.delete(f)
                    continue
                b.file = f
                self._held -= b.held
                b.held = 0
                b.data = None  # the file has it; a send in progress keeps its own reference

    # -- the shipper ---------------------------------------------------------------

    def _ship_loop(self, link: _Link) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    batch = None
                    if not self._down or now >= self._retry_at:
                        # The oldest batch no other shipper has: at most
                        # ingests_in_flight - 1 in flight or answered lie before it.
                        batch = next((b for b in self._outbox if b.sending_since is None and not b.answered), None)
                    if batch is not None:
                        break
                    wait = 0.5 if not self._down else min(0.5, self._retry_at - now)
                    self._outbox_ready.wait(max(wait, 0.001))
                batch.sending_since = now
                data, file = batch.data, batch.file
            ok = self._ship(link, batch, data, file)
            with self._lock:
                batch.sending_since = None
                if ok:
                    batch.answered = True
                    file = batch.file
                    self._held -= batch.held
                    batch.held = 0
                    if self._down:
                        log.warning("quiver_client: %s is reachable again", self._uri)
                    self._down = False
                    self._backoff = self.config.reconnect_backoff_min_s
                elif not self._down:
                    log.warning("quiver_client: %s unreachable (%s); spilling and retrying", self._uri, self._last_error)
                    self._down = True
                    self._schedule_retry()
                elif time.monotonic() >= self._retry_at:
                    # A retry failed (not a send that was in flight with the first failure).
                    self._schedule_retry()
                # Wakes the other shippers: a failed batch may be taken again by any of them.
                self._outbox_ready.notify_all()
            if ok:
                # The file goes before flush() hears of it: a spill dir that
                # stats() shows empty after a flush is empty.
                if file is not None and self._spill is not None:
                    self._spill.delete(file)
                with self._lock:
                    batch.done = True
                    # Only a run of done batches from the oldest moves the
                    # watermark: one still in flight holds it back.
                    upto = None
                    while self._outbox and self._outbox[0].done:
                        closes = self._outbox.popleft().closes_upto
                        if closes is not None:
                            upto = closes
                    if upto is not None:
                        self._advance(upto)

    def _schedule_retry(self) -> None:
        """The next attempt after a failure, with jittered exponential
        backoff. Called with _lock held."""
        self._retry_at = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, self.config.reconnect_backoff_max_s)

    def _ship(self, link: _Link, batch: _Batch, data: pa.Table | None, file: SpillFile | None) -> bool:
        """Sends one batch; True once the server has it (or refused it for
        good), False to retry later."""
        table = batch.table
        if data is None:
            assert file is not None and self._spill is not None
            try:
                table, data = self._spill.read(file)
            except (OSError, KeyError, pa.ArrowException) as e:
                log.error("quiver_client: spill file %s unreadable (%s); moved to corrupt/", file.path, e)
                self._spill.quarantine(file, e)
                with self._lock:
                    self._rows_lost += file.rows
                return True
            batch.table = table
        while True:
            try:
                self._ingest(link, table, data)
            except _Refused as e:
                with self._lock:
                    self._last_error = str(e)
                if e.row is None or not 0 <= e.row < data.num_rows:
                    log.error("quiver_client: the server refused %d %s row(s): %s", data.num_rows, table, e)
                    with self._lock:
                        self._rows_rejected_by_server += data.num_rows
                    return True
                # The rows before it are stored (a resend of them is
                # deduplicated); drop the one it named and send the rest again.
                log.error("quiver_client: the server refused a %s row: %s", table, e)
                with self._lock:
                    self._rows_rejected_by_server += 1
                data = pa.concat_tables([data.slice(0, e.row), data.slice(e.row + 1)])
                if data.num_rows == 0:
                    return True
                continue
            except Exception as e:  # a transport error of any kind: retry the batch later
                with self._lock:
                    self._last_error = f"{type(e).__name__}: {e}"
                self._close_connection(link)
                return False
            with self._lock:
                self._batches_sent += 1
                self._rows_sent += data.num_rows
                if file is not None:
                    self._batches_resent += 1
            return True

    def _ingest(self, link: _Link, table: str, data: pa.Table) -> None:
        conn = self._connection(link)
        try:
            with conn.cursor() as cur:
                cur.adbc_ingest(table, data, mode="append")
        except adbc_driver_manager.Error as e:
            if e.status_code in _REFUSED:
                match = _ROW.search(str(e))
                raise _Refused(str(e), int(match.group(1)) if match else None) from e
            raise

    def _connection(self, link: _Link) -> Any:
        """The link's open connection, or a new one. Opening runs on a thread
        of its own with a deadline: a stalled server must not hang a shipper
        in a handshake that has none."""
        if link.conn is not None:
            return link.conn
        if link.connecting is None:
            holder: dict[str, Any] = {}
            thread = threading.Thread(target=self._open, args=(holder,), name="quiver-connect", daemon=True)
            thread.start()
            link.connecting = (thread, holder)
        thread, holder = link.connecting
        thread.join(self.config.connect_timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"connecting to {self._uri}: no answer in {self.config.connect_timeout_s} s")
        link.connecting = None
        if "error" in holder:
            raise holder["error"]
        link.conn = holder["conn"]
        return link.conn

    def _open(self, holder: dict[str, Any]) -> None:
        import adbc_driver_flightsql.dbapi as flight_sql

        try:
            conn = flight_sql.connect(self._uri, db_kwargs=self._db_kwargs, autocommit=True)
            # The driver connects lazily; ask something small so a dead
            # server or bad credentials show here, under the deadline.
            conn.adbc_get_info()
            holder["conn"] = conn
        except Exception as e:
            holder["error"] = e

    @staticmethod
    def _close_connection(link: _Link) -> None:
        conn, link.conn = link.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def _ceil(x: float) -> int:
    n = int(x)
    return n if n == x else n + 1


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _db_kwargs(
    cfg: LoggerConfig,
    username: str | None,
    password: str | None,
    tls_root_certs: str | None,
    mtls_cert_chain: str | None,
    mtls_private_key: str | None,
) -> dict[str, str]:
    from adbc_driver_flightsql import DatabaseOptions

    kwargs = {
        DatabaseOptions.TIMEOUT_UPDATE.value: str(cfg.rpc_timeout_s),
        DatabaseOptions.TIMEOUT_QUERY.value: str(cfg.connect_timeout_s),
        DatabaseOptions.TIMEOUT_FETCH.value: str(cfg.connect_timeout_s),
    }
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if tls_root_certs is not None:
        kwargs[DatabaseOptions.TLS_ROOT_CERTS.value] = tls_root_certs
    if mtls_cert_chain is not None:
        kwargs[DatabaseOptions.MTLS_CERT_CHAIN.value] = mtls_cert_chain
    if mtls_private_key is not None:
        kwargs[DatabaseOptions.MTLS_PRIVATE_KEY.value] = mtls_private_key
    return kwargs
