-- Trade journal, version 1. Times are microseconds since the Unix epoch (UTC);
-- returns are in basis points, net of fees.

-- Arrow types of view columns that SQLite cannot declare (computed columns).
CREATE TABLE _quiver_column_types (
    relation TEXT NOT NULL,
    column   TEXT NOT NULL,
    type     TEXT NOT NULL,
    PRIMARY KEY (relation, column)
);

-- Bookkeeping: the last WAL sequence whose trade events the journal holds.
CREATE TABLE _quiver_state (
    key   TEXT NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);

-- One row per real trade, written at entry. Trade ids are the bot's (UUIDs,
-- in no order); the other tables refer to a trade by its integer trade_key,
-- so joins walk the trades table in key order instead of searching a text
-- index at random (3-4x faster over a million trades).
CREATE TABLE trades (
    trade_key   INTEGER PRIMARY KEY,
    trade_id    TEXT NOT NULL UNIQUE,
    signal_id   TEXT,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    mode        TEXT NOT NULL,
    regime      TEXT NOT NULL,
    qty         REAL NOT NULL CHECK (qty > 0),
    entry_ts    INTEGER NOT NULL,
    entry_price REAL NOT NULL CHECK (entry_price > 0),
    fees_bps    REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    recorded_ts INTEGER NOT NULL
);
CREATE INDEX trades_by_time ON trades (entry_ts);
CREATE INDEX trades_by_symbol ON trades (symbol, entry_ts);
CREATE INDEX trades_by_mode ON trades (mode, entry_ts);
CREATE INDEX trades_by_regime ON trades (regime, entry_ts);

-- The features the bot saw at entry, one row per feature.
CREATE TABLE trade_features (
    trade_key INTEGER NOT NULL REFERENCES trades (trade_key),
    feature   TEXT NOT NULL,
    value     REAL,
    PRIMARY KEY (trade_key, feature)
) WITHOUT ROWID;

-- The exit of a trade and how it went.
CREATE TABLE trade_outcomes (
    trade_key  INTEGER PRIMARY KEY REFERENCES trades (trade_key),
    exit_ts    INTEGER NOT NULL,
    exit_price REAL NOT NULL,
    pnl_bps    REAL NOT NULL,
    fees_bps   REAL NOT NULL,
    duration_s REAL NOT NULL CHECK (duration_s >= 0),
    mae_bps    REAL,
    mfe_bps    REAL
);
-- Covers the statistics' scan in exit order.
CREATE INDEX trade_outcomes_by_time ON trade_outcomes (exit_ts, pnl_bps);
CREATE INDEX trade_outcomes_by_return ON trade_outcomes (pnl_bps);

-- A signal the gates blocked, followed as if it had been traded.
CREATE TABLE shadow_trades (
    shadow_id          TEXT NOT NULL PRIMARY KEY,
    signal_id          TEXT,
    symbol             TEXT NOT NULL,
    side               TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    mode               TEXT NOT NULL,
    regime             TEXT NOT NULL,
    blocked_by         TEXT NOT NULL,
    blocked_ts         INTEGER NOT NULL,
    hypothetical_entry REAL NOT NULL,
    resolved_ts        INTEGER,
    outcome_pnl_bps    REAL
);
CREATE INDEX shadow_trades_by_time ON shadow_trades (blocked_ts);
CREATE INDEX shadow_trades_by_gate ON shadow_trades (blocked_by, blocked_ts);
CREATE INDEX shadow_trades_by_mode ON shadow_trades (mode, blocked_ts);
CREATE INDEX shadow_trades_by_regime ON shadow_trades (regime, blocked_ts);

-- Every closed trade with its outcome: the relation the statistics read.
CREATE VIEW v_closed_trades AS
SELECT t.trade_id, t.signal_id, t.symbol, t.side, t.mode, t.regime, t.qty,
       t.entry_ts, t.entry_price, o.exit_ts, o.exit_price, o.pnl_bps, o.fees_bps,
       o.duration_s, o.mae_bps, o.mfe_bps
FROM trades t JOIN trade_outcomes o USING (trade_key);

-- Every trade, open or closed, with its outcome once it has one.
CREATE VIEW v_trades AS
SELECT t.trade_id, t.signal_id, t.symbol, t.side, t.mode, t.regime, t.status, t.qty,
       t.entry_ts, t.entry_price, o.exit_ts, o.exit_price, o.pnl_bps,
       t.fees_bps, o.duration_s, o.mae_bps, o.mfe_bps
FROM trades t LEFT JOIN trade_outcomes o USING (trade_key);

CREATE VIEW v_win_rate_by_mode AS
SELECT t.mode,
       count(*) AS trades,
       sum(o.pnl_bps > 0) AS wins,
       avg(o.pnl_bps > 0) AS win_rate,
       avg(o.pnl_bps) AS avg_pnl_bps,
       sum(o.pnl_bps) AS total_pnl_bps
FROM trades t JOIN trade_outcomes o USING (trade_key)
GROUP BY t.mode;

CREATE VIEW v_win_rate_by_regime AS
SELECT t.regime,
       count(*) AS trades,
       sum(o.pnl_bps > 0) AS wins,
       avg(o.pnl_bps > 0) AS win_rate,
       avg(o.pnl_bps) AS avg_pnl_bps,
       sum(o.pnl_bps) AS total_pnl_bps
FROM trades t JOIN trade_outcomes o USING (trade_key)
GROUP BY t.regime;

-- Trades of the last 24 hours, open or closed, newest first.
CREATE VIEW v_recent_trades AS
SELECT t.trade_id, t.symbol, t.side, t.mode, t.regime, t.status, t.entry_ts,
       t.entry_price, o.exit_ts, o.exit_price, o.pnl_bps, o.duration_s
FROM trades t LEFT JOIN trade_outcomes o USING (trade_key)
WHERE t.entry_ts >= (unixepoch('now') - 86400) * 1000000
ORDER BY t.entry_ts DESC;

-- Per blocking gate and mode: how many blocks, how many resolved, and whether
-- blocking helped (good block: the trade would have lost).
CREATE VIEW v_shadow_trades_summary AS
SELECT blocked_by, mode,
       count(*) AS blocked,
       count(outcome_pnl_bps) AS resolved,
       sum(outcome_pnl_bps <= 0) AS good_blocks,
       sum(outcome_pnl_bps > 0) AS bad_blocks,
       avg(outcome_pnl_bps <= 0) AS good_block_rate,
       avg(outcome_pnl_bps) AS avg_outcome_pnl_bps,
       coalesce(sum(CASE WHEN outcome_pnl_bps > 0 THEN outcome_pnl_bps END), 0.0) AS missed_pnl_bps
FROM shadow_trades
GROUP BY blocked_by, mode;

INSERT INTO _quiver_column_types (relation, column, type) VALUES
    ('v_win_rate_by_mode', 'trades', 'INTEGER'),
    ('v_win_rate_by_mode', 'wins', 'INTEGER'),
    ('v_win_rate_by_mode', 'win_rate', 'REAL'),
    ('v_win_rate_by_mode', 'avg_pnl_bps', 'REAL'),
    ('v_win_rate_by_mode', 'total_pnl_bps', 'REAL'),
    ('v_win_rate_by_regime', 'trades', 'INTEGER'),
    ('v_win_rate_by_regime', 'wins', 'INTEGER'),
    ('v_win_rate_by_regime', 'win_rate', 'REAL'),
    ('v_win_rate_by_regime', 'avg_pnl_bps', 'REAL'),
    ('v_win_rate_by_regime', 'total_pnl_bps', 'REAL'),
    ('v_shadow_trades_summary', 'blocked', 'INTEGER'),
    ('v_shadow_trades_summary', 'resolved', 'INTEGER'),
    ('v_shadow_trades_summary', 'good_blocks', 'INTEGER'),
    ('v_shadow_trades_summary', 'bad_blocks', 'INTEGER'),
    ('v_shadow_trades_summary', 'good_block_rate', 'REAL'),
    ('v_shadow_trades_summary', 'avg_outcome_pnl_bps', 'REAL'),
    ('v_shadow_trades_summary', 'missed_pnl_bps', 'REAL');
