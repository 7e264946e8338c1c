-- Model registry, config history and learning tracker, version 1. Times are
-- microseconds since the Unix epoch (UTC).

CREATE TABLE _quiver_column_types (
    relation TEXT NOT NULL,
    column   TEXT NOT NULL,
    type     TEXT NOT NULL,
    PRIMARY KEY (relation, column)
);

-- A model artifact, named by the SHA-256 of its bytes
-- (stored at <data>/models/sha256/<model_id>).
CREATE TABLE models (
    model_id      TEXT NOT NULL PRIMARY KEY CHECK (length(model_id) = 64),
    name          TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL CHECK (size_bytes >= 0),
    -- Commit of the training code.
    git_sha       TEXT NOT NULL,
    -- SHA-256 of the data manifest: which lake files trained it.
    data_snapshot TEXT NOT NULL,
    data_manifest TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    metrics       TEXT NOT NULL DEFAULT '{}',
    parent_id     TEXT REFERENCES models (model_id),
    tags          TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL DEFAULT 'registered'
                  CHECK (status IN ('registered', 'shadow', 'production', 'archived')),
    registered_ts INTEGER NOT NULL
);
CREATE INDEX models_by_time ON models (registered_ts);
CREATE INDEX models_by_parent ON models (parent_id);

-- Which model held which alias from when to when (to_ts NULL: holds it now).
CREATE TABLE model_aliases (
    alias    TEXT NOT NULL,
    model_id TEXT NOT NULL REFERENCES models (model_id),
    from_ts  INTEGER NOT NULL,
    to_ts    INTEGER,
    reason   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alias, from_ts),
    CHECK (to_ts IS NULL OR to_ts >= from_ts)
);
CREATE UNIQUE INDEX model_aliases_current ON model_aliases (alias) WHERE to_ts IS NULL;
CREATE INDEX model_aliases_by_model ON model_aliases (model_id);

CREATE VIEW v_model_aliases_current AS
SELECT alias, model_id, from_ts, reason FROM model_aliases WHERE to_ts IS NULL;

-- Every accepted change of a config file (configs/gates.yaml, configs/metrics.yaml).
CREATE TABLE config_changes (
    change_id       INTEGER PRIMARY KEY,
    file            TEXT NOT NULL,
    changed_ts      INTEGER NOT NULL,
    content_sha256  TEXT NOT NULL,
    previous_sha256 TEXT,
    -- JSON array of {path, op: added|removed|changed, old, new}.
    diff            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    content         TEXT NOT NULL
);
CREATE INDEX config_changes_by_file ON config_changes (file, changed_ts);

-- Learning tracker: one row per training run.
CREATE TABLE training_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    model_id   TEXT REFERENCES models (model_id),
    started_ts INTEGER NOT NULL,
    duration_s REAL NOT NULL CHECK (duration_s >= 0),
    samples    INTEGER NOT NULL CHECK (samples >= 0),
    auc        REAL,
    logloss    REAL,
    metrics    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX training_sessions_by_time ON training_sessions (started_ts);

CREATE TABLE feature_importance (
    session_id TEXT NOT NULL REFERENCES training_sessions (session_id),
    feature    TEXT NOT NULL,
    importance REAL NOT NULL,
    rank       INTEGER NOT NULL,
    PRIMARY KEY (session_id, feature)
) WITHOUT ROWID;

-- Each feature's importance per session, with the change since its previous session.
CREATE VIEW v_feature_importance_evolution AS
SELECT s.started_ts, s.session_id, s.model_id, f.feature, f.importance, f.rank,
       f.importance - lag(f.importance) OVER (PARTITION BY f.feature ORDER BY s.started_ts)
           AS importance_change
FROM feature_importance f JOIN training_sessions s USING (session_id);

-- Training per day: the learning summary's training half.
CREATE VIEW v_daily_training AS
SELECT date(started_ts / 1000000, 'unixepoch') AS day,
       count(*) AS sessions,
       sum(samples) AS samples,
       avg(duration_s) AS avg_duration_s,
       avg(auc) AS avg_auc,
       max(auc) AS best_auc,
       avg(logloss) AS avg_logloss
FROM training_sessions
GROUP BY day;

-- The learning curve: the daily figures over the last 30 days.
CREATE VIEW v_learning_curve AS
SELECT * FROM v_daily_training
WHERE day >= date('now', '-30 days');

INSERT INTO _quiver_column_types (relation, column, type) VALUES
    ('v_feature_importance_evolution', 'importance_change', 'REAL'),
    ('v_daily_training', 'day', 'TEXT'),
    ('v_daily_training', 'sessions', 'INTEGER'),
    ('v_daily_training', 'samples', 'INTEGER'),
    ('v_daily_training', 'avg_duration_s', 'REAL'),
    ('v_daily_training', 'avg_auc', 'REAL'),
    ('v_daily_training', 'best_auc', 'REAL'),
    ('v_daily_training', 'avg_logloss', 'REAL'),
    ('v_learning_curve', 'day', 'TEXT'),
    ('v_learning_curve', 'sessions', 'INTEGER'),
    ('v_learning_curve', 'samples', 'INTEGER'),
    ('v_learning_curve', 'avg_duration_s', 'REAL'),
    ('v_learning_curve', 'avg_auc', 'REAL'),
    ('v_learning_curve', 'best_auc', 'REAL'),
    ('v_learning_curve', 'avg_logloss', 'REAL');
