"""The eight event tables as Python dataclasses, and their validation.

Mirrors ``src/event/`` of the Quiver crate (``tables.rs`` for the columns,
``validate.rs`` for the rules, ``mod.rs`` for the vocabularies): the same
fields, the same rules and the same messages, so an event this module accepts
is one the server accepts (but for the server's own settings: a symbol
allowlist, or limits changed in its ``[validation]`` section).

Each table is declared once, as a dataclass plus a ``_COLUMNS`` tuple naming
every column with its check and its Arrow type; validation
(:func:`validate`) and the column-wise conversion to Arrow
(:func:`to_arrow`) both walk that tuple, so they cannot drift apart.

Checks are plain Python on purpose: ``Logger.log`` runs them on the bot's
thread, where a microsecond counts.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, ClassVar, TypeAlias

import pyarrow as pa

#: Version of the event schemas this client mirrors (``SCHEMA_VERSION`` in
#: ``src/event/mod.rs``). The server stamps ``schema_version`` itself.
SCHEMA_VERSION = 2

UTC = timezone.utc


class Level(enum.StrEnum):
    """Priority of an event, which decides what the logger drops under pressure."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class Mode(enum.StrEnum):
    """Trading mode of a signal or trade."""

    SCALP = "scalp"
    RUNNER = "runner"


class Regime(enum.StrEnum):
    """Market regime as classified by the bot."""

    TREND = "TREND"
    RANGE = "RANGE"
    PANIC = "PANIC"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class Gate(enum.StrEnum):
    """The six gates a signal must pass before it becomes a trade."""

    META_LABEL = "meta_label"
    COST_GATE = "cost_gate"
    CONFIDENCE_GATE = "confidence_gate"
    REGIME_GATE = "regime_gate"
    SPREAD_GATE = "spread_gate"
    VOLUME_GATE = "volume_gate"


class GateResult(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


class Direction(enum.StrEnum):
    """Whether a gate's value must be at least (``min``) or at most (``max``) its threshold."""

    MIN = "min"
    MAX = "max"


class TradeKind(enum.StrEnum):
    OPEN = "OPEN"
    CLOSE = "CLOSE"


class ShadowKind(enum.StrEnum):
    BLOCKED = "BLOCKED"
    RESOLVED = "RESOLVED"


class ModelEventKind(enum.StrEnum):
    TRAINED = "TRAINED"
    DEPLOYED = "DEPLOYED"
    ROLLED_BACK = "ROLLED_BACK"


class PredictionKind(enum.StrEnum):
    PREDICTED = "PREDICTED"
    LABELED = "LABELED"


#: Index of each level into per-level counters, DEBUG..CRITICAL. Plain strings
#: find their level too: a ``StrEnum`` member hashes and compares as its value.
LEVEL_INDEX: dict[str, int] = {level.value: i for i, level in enumerate(Level)}
LEVELS: tuple[Level, ...] = tuple(Level)


class InvalidEvent(ValueError):
    """An event that broke a rule: which table, which field, what rule.

    ``str(e)`` reads like the server's message, e.g.
    ``gate_decisions.value: must be a finite number``.
    """

    def __init__(self, table: str, field: str, message: str) -> None:
        super().__init__(f"{table}.{field}: {message}")
        self.table = table
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Limits every event is checked against; the defaults are the server's
    (``ValidationLimits::default`` in ``src/event/validate.rs``). Set them to
    the server's ``[validation]`` section if it changes them."""

    #: Longest id or short text field, in UTF-8 bytes.
    string_bytes_max: int = 128
    #: Longest JSON payload (``inputs``, ``metrics``, ``features``), in bytes.
    json_bytes_max: int = 16 * 1024
    #: How far ahead of this machine's clock a timestamp may be, in seconds.
    future_skew_max_s: float = 5.0


#: Earliest accepted timestamp, 2000-01-01T00:00:00Z (a floor of the event model).
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_TS_MIN_S = TS_MIN.timestamp()
_INT32_MAX = 2**31 - 1


# -- checks -------------------------------------------------------------------
#
# Each takes (table, field, value, limits) and raises InvalidEvent. They test
# `type(v) is float` first: the common case costs one comparison.

Check: TypeAlias = Callable[[str, str, Any, ValidationLimits], None]


def _type_name(value: Any) -> str:
    return type(value).__name__


def _text(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if type(v) is not str and not isinstance(v, str):
        raise InvalidEvent(table, name, f"must be a str, not {_type_name(v)}")
    # A code point is at most 4 bytes: encode only strings that might be too long.
    if len(v) * 4 > lim.string_bytes_max:
        size = len(v.encode("utf-8", "surrogatepass"))
        if size > lim.string_bytes_max:
            raise InvalidEvent(table, name, f"is {size} bytes, more than {lim.string_bytes_max}")


def _id(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if not v and (type(v) is str or isinstance(v, str)):
        raise InvalidEvent(table, name, "must not be empty")
    _text(table, name, v, lim)


def _opt_id(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if v is not None:
        _id(table, name, v, lim)


def _json_object(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if type(v) is not str and not isinstance(v, str):
        raise InvalidEvent(table, name, f"must be a JSON object in a str (json.dumps), not {_type_name(v)}")
    if len(v) * 4 > lim.json_bytes_max:
        size = len(v.encode("utf-8", "surrogatepass"))
        if size > lim.json_bytes_max:
            raise InvalidEvent(table, name, f"is {size} bytes, more than {lim.json_bytes_max}")
    # The server's cheap shape check; the full parse is left to readers.
    trimmed = v.strip()
    if not (trimmed.startswith("{") and trimmed.endswith("}")):
        raise InvalidEvent(table, name, "must be a JSON object")


def _opt_json_object(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if v is not None:
        _json_object(table, name, v, lim)


def _number(table: str, name: str, v: Any) -> float:
    """`v` as a float if it is a finite number (an int or float, not a bool)."""
    t = type(v)
    if t is not float and t is not int:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidEvent(table, name, f"must be a number, not {_type_name(v)}")
    f = float(v)
    if not math.isfinite(f):
        raise InvalidEvent(table, name, "must be a finite number")
    return f


def _finite(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if type(v) is float and v - v == 0.0:  # NaN and ±inf give NaN
        return
    _number(table, name, v)


def _opt_finite(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if v is not None:
        _finite(table, name, v, lim)


def _positive(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if _number(table, name, v) <= 0.0:
        raise InvalidEvent(table, name, "must be > 0")


def _range(lo: float, hi: float) -> Check:
    def check(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
        f = _number(table, name, v)
        if f < lo or f > hi:
            raise InvalidEvent(table, name, f"must be in [{lo:g}, {hi:g}]")

    return check


_non_negative = _range(0.0, 1.7976931348623157e308)
_unit = _range(0.0, 1.0)


def _opt(check: Check) -> Check:
    def opt(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
        if v is not None:
            check(table, name, v, lim)

    return opt


def _seq(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if type(v) is not int:
        raise InvalidEvent(table, name, f"must be an int, not {_type_name(v)}")
    if v < 0 or v > _INT32_MAX:
        raise InvalidEvent(table, name, f"must be in [0, {_INT32_MAX}]")


def _label(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if v is None:
        return
    if type(v) is not int:
        raise InvalidEvent(table, name, f"must be 0 or 1 (an int), not {_type_name(v)}")
    if v != 0 and v != 1:
        raise InvalidEvent(table, name, "must be in [0, 1]")


def _enum(vocabulary: type[enum.StrEnum]) -> Check:
    values = frozenset(m.value for m in vocabulary)
    expected = ", ".join(m.value for m in vocabulary)

    def check(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
        if not isinstance(v, str) or v not in values:
            raise InvalidEvent(table, name, f"expected one of {expected}, not {v!r}")

    return check


def _aware(table: str, name: str, v: Any) -> float:
    """Seconds since the epoch of an aware datetime."""
    if type(v) is not datetime and not isinstance(v, datetime):
        raise InvalidEvent(table, name, f"must be a datetime, not {_type_name(v)}")
    if v.tzinfo is None or v.utcoffset() is None:
        raise InvalidEvent(
            table,
            name,
            "must carry a time zone: a naive datetime's instant is ambiguous "
            "(use datetime.now(timezone.utc))",
        )
    return v.timestamp()


def _ts(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    t = _aware(table, name, v)
    if t < _TS_MIN_S:
        raise InvalidEvent(table, name, f"is before {TS_MIN.isoformat()}")
    now = time.time()
    if t > now + lim.future_skew_max_s:
        ahead_ms = int((t - now) * 1000)
        raise InvalidEvent(table, name, f"is {ahead_ms} ms in the future (clock skew limit exceeded)")


def _any_ts(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    _aware(table, name, v)


_SYMBOL = re.compile(r"[A-Za-z0-9._-]{1,32}")
# Bots trade a handful of symbols: remember the good ones, up to a bound.
_symbols_seen: set[str] = set()
_SYMBOLS_SEEN_MAX = 4096


def _symbol(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if type(v) is str and v in _symbols_seen:
        return
    if not isinstance(v, str):
        raise InvalidEvent(table, name, f"must be a str, not {_type_name(v)}")
    if _SYMBOL.fullmatch(v) is None or v in (".", ".."):
        raise InvalidEvent(table, name, "must match [A-Za-z0-9._-]{1,32} and not be '.' or '..'")
    if len(_symbols_seen) < _SYMBOLS_SEEN_MAX:
        _symbols_seen.add(v)


def _level(table: str, name: str, v: Any, lim: ValidationLimits) -> None:
    if not isinstance(v, str) or v not in LEVEL_INDEX:
        raise InvalidEvent(table, name, f"expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {v!r}")


# -- columns ------------------------------------------------------------------

TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class Col:
    """One column of a table: its name, its check and its Arrow type."""

    name: str
    check: Check
    arrow_type: pa.DataType


def _c(name: str, check: Check, arrow_type: pa.DataType = pa.string()) -> Col:
    return Col(name, check, arrow_type)


#: The header columns the client sends, in table order (``event_id`` is filled
#: by the logger; ``schema_version`` by the server).
HEADER: tuple[Col, ...] = (
    _c("ts", _ts, TS_TYPE),
    _c("symbol", _symbol),
    _c("level", _level),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The columns every event has. Use one of the eight tables below.

    Events are frozen: what ``log()`` validated is what is sent.
    """

    TABLE: ClassVar[str] = ""
    _COLUMNS: ClassVar[tuple[Col, ...]] = ()

    #: Instrument, ``[A-Za-z0-9._-]{1,32}``; also the lake's ``symbol=`` partition.
    symbol: str
    #: When the event happened, an aware datetime (default: when it was built).
    ts: datetime = field(default_factory=_utcnow)
    level: Level | str = Level.INFO
    #: Unique id of the event. Leave it None: ``log()`` gives each event a
    #: UUID-shaped id, so a resent batch is deduplicated by the server.
    event_id: str | None = None

    def _rules(self, lim: ValidationLimits) -> None:
        """Rules across fields; per table."""


def _leakage(table: str, decision_ts: datetime, label_cutoff_ts: datetime) -> None:
    if decision_ts > label_cutoff_ts:
        raise InvalidEvent(
            table,
            "decision_ts",
            f"label leakage: decision_ts {decision_ts.isoformat()} is after "
            f"label_cutoff_ts {label_cutoff_ts.isoformat()}",
        )


F64 = pa.float64()


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal(Event):
    """A trading signal produced by the strategy."""

    TABLE: ClassVar[str] = "signals"

    signal_id: str
    mode: Mode | str
    side: Side | str
    #: Price when the signal fired.
    price: float
    #: Strategy-defined strength in [0, 1].
    strength: float
    model_id: str
    regime: Regime | str
    #: When the decision was made: no feature may come from after it.
    decision_ts: datetime
    #: Latest time a label may use; must be >= decision_ts (leakage rule).
    label_cutoff_ts: datetime

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("signal_id", _id),
        _c("mode", _enum(Mode)),
        _c("side", _enum(Side)),
        _c("price", _positive, F64),
        _c("strength", _unit, F64),
        _c("model_id", _id),
        _c("regime", _enum(Regime)),
        _c("decision_ts", _ts, TS_TYPE),
        _c("label_cutoff_ts", _any_ts, TS_TYPE),
    )

    def _rules(self, lim: ValidationLimits) -> None:
        _leakage(self.TABLE, self.decision_ts, self.label_cutoff_ts)


@dataclass(frozen=True, slots=True, kw_only=True)
class GateDecision(Event):
    """One gate's verdict on one signal."""

    TABLE: ClassVar[str] = "gate_decisions"

    decision_id: str
    signal_id: str
    trace_id: str
    gate: Gate | str
    result: GateResult | str
    #: The measured value the gate compared.
    value: float
    threshold: float
    direction: Direction | str
    mode: Mode | str
    regime: Regime | str
    #: The gate's inputs as a JSON object (``json.dumps(...)``).
    inputs: str

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("decision_id", _id),
        _c("signal_id", _id),
        _c("trace_id", _id),
        _c("gate", _enum(Gate)),
        _c("result", _enum(GateResult)),
        _c("value", _finite, F64),
        _c("threshold", _finite, F64),
        _c("direction", _enum(Direction)),
        _c("mode", _enum(Mode)),
        _c("regime", _enum(Regime)),
        _c("inputs", _json_object),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade(Event):
    """An opened or closed (real) trade."""

    TABLE: ClassVar[str] = "trades"

    trade_id: str
    signal_id: str
    kind: TradeKind | str
    side: Side | str
    qty: float
    price: float
    fees_bps: float
    mode: Mode | str
    regime: Regime | str
    #: Net P&L in basis points (required on CLOSE).
    pnl_bps: float | None = None
    #: Holding time in seconds (on CLOSE).
    duration_s: float | None = None
    #: Maximum adverse excursion in bps (on CLOSE).
    mae_bps: float | None = None
    #: Maximum favourable excursion in bps (on CLOSE).
    mfe_bps: float | None = None
    #: The features the bot saw at entry, a JSON object of name to number (on OPEN).
    features: str | None = None

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("trade_id", _id),
        _c("signal_id", _id),
        _c("kind", _enum(TradeKind)),
        _c("side", _enum(Side)),
        _c("qty", _positive, F64),
        _c("price", _positive, F64),
        _c("fees_bps", _non_negative, F64),
        _c("pnl_bps", _opt_finite, F64),
        _c("duration_s", _opt(_non_negative), F64),
        _c("mode", _enum(Mode)),
        _c("regime", _enum(Regime)),
        _c("mae_bps", _opt_finite, F64),
        _c("mfe_bps", _opt_finite, F64),
        _c("features", _opt_json_object),
    )

    def _rules(self, lim: ValidationLimits) -> None:
        if self.kind == TradeKind.CLOSE and self.pnl_bps is None:
            raise InvalidEvent(self.TABLE, "pnl_bps", "is required")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowTrade(Event):
    """A signal the gates blocked, tracked as if it had been traded."""

    TABLE: ClassVar[str] = "shadow_trades"

    shadow_id: str
    signal_id: str
    kind: ShadowKind | str
    #: The (first) gate that blocked the signal.
    blocked_by: Gate | str
    side: Side | str
    hypothetical_entry: float
    mode: Mode | str
    regime: Regime | str
    #: What the trade would have made, in bps (required on RESOLVED).
    outcome_pnl_bps: float | None = None

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("shadow_id", _id),
        _c("signal_id", _id),
        _c("kind", _enum(ShadowKind)),
        _c("blocked_by", _enum(Gate)),
        _c("side", _enum(Side)),
        _c("hypothetical_entry", _positive, F64),
        _c("outcome_pnl_bps", _opt_finite, F64),
        _c("mode", _enum(Mode)),
        _c("regime", _enum(Regime)),
    )

    def _rules(self, lim: ValidationLimits) -> None:
        if self.kind == ShadowKind.RESOLVED and self.outcome_pnl_bps is None:
            raise InvalidEvent(self.TABLE, "outcome_pnl_bps", "is required")


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceStep(Event):
    """One timed step of a decision trace (signal -> gates -> execution)."""

    TABLE: ClassVar[str] = "trace_steps"

    trace_id: str
    signal_id: str
    step: str
    #: Order of the step within its trace, from 0.
    seq: int
    #: Offset of the step from the start of the trace.
    start_ms: float
    duration_ms: float
    result: str

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("trace_id", _id),
        _c("signal_id", _id),
        _c("step", _id),
        _c("seq", _seq, pa.int32()),
        _c("start_ms", _non_negative, F64),
        _c("duration_ms", _non_negative, F64),
        _c("result", _text),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvent(Event):
    """A model was trained, deployed or rolled back."""

    TABLE: ClassVar[str] = "model_events"

    model_id: str
    kind: ModelEventKind | str
    #: Training or evaluation metrics as a JSON object.
    metrics: str
    #: Alias the model took or left (``production``, ``shadow``), if any.
    alias: str | None = None

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("model_id", _id),
        _c("kind", _enum(ModelEventKind)),
        _c("metrics", _json_object),
        _c("alias", _opt_id),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketContext(Event):
    """A snapshot of the market for one symbol."""

    TABLE: ClassVar[str] = "market_context"

    price: float
    spread_bps: float
    volume: float
    #: Annualised volatility, as a fraction.
    volatility: float
    regime: Regime | str

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("price", _positive, F64),
        _c("spread_bps", _non_negative, F64),
        _c("volume", _non_negative, F64),
        _c("volatility", _non_negative, F64),
        _c("regime", _enum(Regime)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction(Event):
    """A model's prediction for a signal, and later its label."""

    TABLE: ClassVar[str] = "predictions"

    model_id: str
    signal_id: str
    kind: PredictionKind | str
    decision_ts: datetime
    label_cutoff_ts: datetime
    #: Predicted win probability (required on PREDICTED).
    predicted_prob: float | None = None
    #: 1 if the signal won, 0 if not (required on LABELED).
    label: int | None = None

    _COLUMNS: ClassVar[tuple[Col, ...]] = HEADER + (
        _c("model_id", _id),
        _c("signal_id", _id),
        _c("kind", _enum(PredictionKind)),
        _c("predicted_prob", _opt(_unit), F64),
        _c("label", _label, pa.int32()),
        _c("decision_ts", _ts, TS_TYPE),
        _c("label_cutoff_ts", _any_ts, TS_TYPE),
    )

    def _rules(self, lim: ValidationLimits) -> None:
        if self.kind == PredictionKind.PREDICTED and self.predicted_prob is None:
            raise InvalidEvent(self.TABLE, "predicted_prob", "is required")
        if self.kind == PredictionKind.LABELED and self.label is None:
            raise InvalidEvent(self.TABLE, "label", "is required")
        _leakage(self.TABLE, self.decision_ts, self.label_cutoff_ts)


#: The eight event tables, in the server's order.
TABLES: tuple[type[Event], ...] = (
    Signal,
    GateDecision,
    Trade,
    ShadowTrade,
    TraceStep,
    ModelEvent,
    MarketContext,
    Prediction,
)
TABLE_BY_NAME: dict[str, type[Event]] = {t.TABLE: t for t in TABLES}

# Per table: its columns with checks, unpacked once for the hot path.
_CHECKS: dict[type[Event], tuple[tuple[str, Check], ...]] = {
    t: tuple((c.name, c.check) for c in t._COLUMNS) for t in TABLES
}


def validate(event: Event, limits: ValidationLimits) -> int:
    """Checks every rule of the event's table; returns its level's index.

    Raises :class:`InvalidEvent` naming the table and field, or ``TypeError``
    for something that is not one of the eight event types.
    """
    checks = _CHECKS.get(type(event))
    if checks is None:
        raise TypeError(f"not a Quiver event: {_type_name(event)} (use one of {', '.join(t.__name__ for t in TABLES)})")
    table = event.TABLE
    for name, check in checks:
        check(table, name, getattr(event, name), limits)
    event._rules(limits)
    event_id = event.event_id
    if event_id is not None:
        _id(table, "event_id", event_id, limits)
    return LEVEL_INDEX[event.level]


def schema(table: type[Event]) -> pa.Schema:
    """The Arrow schema the client sends for `table`: ``event_id`` then the
    header and the table's columns (no ``schema_version``: the server stamps it)."""
    fields = [pa.field("event_id", pa.string(), nullable=False)]
    fields += [pa.field(c.name, c.arrow_type) for c in table._COLUMNS]
    return pa.schema(fields)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def _timestamps(values: list[datetime | None]) -> pa.Array:
    """Aware datetimes (any zone; validation refuses naive ones) as a UTC
    timestamp column, through exact integer microseconds since the epoch:
    about 4x faster than making them naive UTC for pyarrow, and the same
    values."""
    if None in values:  # no timestamp column is nullable today
        return pa.array(values, TS_TYPE)
    return pa.array([(v - _EPOCH) // _ONE_US for v in values], pa.int64()).view(TS_TYPE)


def to_arrow(table: type[Event], events: Sequence[Event], event_ids: Sequence[str]) -> pa.Table:
    """Events of one table as an Arrow table, built column-wise: one pass of
    attribute fetches and one ``pa.array`` per column (no row tuples)."""
    arrays = [pa.array(event_ids, pa.string())]
    for c in table._COLUMNS:
        # Hands the GIL to a waiting bot thread: otherwise log() can wait up to
        # the interpreter's 5 ms switch interval behind a batch's conversion
        # (benches/client_logger.py: log() p99 6-7 µs with it, up to 27 without).
        time.sleep(0)
        values = list(map(attrgetter(c.name), events))
        arrays.append(_timestamps(values) if c.arrow_type == TS_TYPE else pa.array(values, c.arrow_type))
    return pa.Table.from_arrays(arrays, schema=schema(table))
