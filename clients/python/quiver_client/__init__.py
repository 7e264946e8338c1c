"""quiver_client: the bot's side of Quiver in Python.

A :class:`Logger` whose ``log(event)`` never blocks, with the Rust logger's
tiers and kill switch, sending batches to ``quiver serve`` over Flight SQL and
spilling them to a local directory while the server is away.

Layout:

- :mod:`quiver_client.events`: the eight event tables as frozen dataclasses,
  their validation (mirroring ``src/event/``) and their Arrow conversion;
- :mod:`quiver_client.logger`: :class:`Logger`, its tiers, the batcher and the
  shipper threads;
- :mod:`quiver_client.spill`: the crash-safe, bounded spill directory.

Data flows one way: ``events`` <- ``spill`` <- ``logger``.
"""

from .events import (
    SCHEMA_VERSION,
    TABLES,
    Direction,
    Event,
    Gate,
    GateDecision,
    GateResult,
    InvalidEvent,
    Level,
    MarketContext,
    Mode,
    ModelEvent,
    ModelEventKind,
    Prediction,
    PredictionKind,
    Regime,
    ShadowKind,
    ShadowTrade,
    Side,
    Signal,
    TraceStep,
    Trade,
    TradeKind,
    ValidationLimits,
)
from .logger import (
    ACCEPTED,
    INGESTS_IN_FLIGHT_MAX,
    Accepted,
    DropReason,
    Dropped,
    LogOutcome,
    Logger,
    LoggerClosed,
    LoggerConfig,
    LoggerStats,
)
from .spill import SpillDirBusy

__all__ = [
    "ACCEPTED",
    "INGESTS_IN_FLIGHT_MAX",
    "SCHEMA_VERSION",
    "TABLES",
    "Accepted",
    "Direction",
    "DropReason",
    "Dropped",
    "Event",
    "Gate",
    "GateDecision",
    "GateResult",
    "InvalidEvent",
    "Level",
    "LogOutcome",
    "Logger",
    "LoggerClosed",
    "LoggerConfig",
    "LoggerStats",
    "MarketContext",
    "Mode",
    "ModelEvent",
    "ModelEventKind",
    "Prediction",
    "PredictionKind",
    "Regime",
    "ShadowKind",
    "ShadowTrade",
    "Side",
    "Signal",
    "SpillDirBusy",
    "TraceStep",
    "Trade",
    "TradeKind",
    "ValidationLimits",
]
