//! The alert outbox, `<data>/alerts.sqlite`: what `crate::app::alerts`
//! delivers, kept so a restart loses no alert and sends none twice.
//!
//! ```text
//! outbox            one row per (receiver, rule, enqueue call): the notices of
//!                   that rule that went in together, sent as one message; its
//!                   id is the notice id (the webhook's Idempotency-Key)
//! cooldowns         (receiver, rule, dimensions) -> when the last one was enqueued
//! alert_deliveries  every attempt: outcome sent | retry | gave_up | failed
//! ```
//!
//! Times are microseconds since the epoch in `*_ts` columns (the journal's
//! convention), so `system.alert_deliveries` shows `started_ts`,
//! `finished_ts` and `next_attempt_ts` as UTC timestamps.
//!
//! The rules, each enforced in one transaction here:
//! - **enqueue**: the cooldown check, the `outbox_max` check, the insert and the
//!   cooldown update commit together, so two producers (the server and a
//!   `metrics compute` beside it) cannot both pass one cooldown.
//! - **claim**: a row goes `pending -> sending` with a lease and its attempt
//!   number raised before any HTTP request; a `sending` row whose lease ran
//!   out (its process died mid-send) is claimed again. That is the one
//!   at-least-once window: killed between the send and [`OutboxDb::record`].
//! - **record**: the attempt row and the row's next state commit together,
//!   and only while the claim (state `sending`, same attempt) still holds.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::sqlite::{self, Migration, SqliteError};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "
        -- Read by sqlite::relations (every column here declares its type).
        CREATE TABLE _quiver_column_types (relation TEXT, column TEXT, type TEXT);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            receiver TEXT NOT NULL,
            source TEXT NOT NULL,
            rule TEXT NOT NULL,
            severity TEXT NOT NULL,
            dimensions TEXT NOT NULL,
            notices TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            enqueued_ts INTEGER NOT NULL,
            next_attempt_ts INTEGER NOT NULL,
            lease_until_ts INTEGER,
            done_ts INTEGER
        );
        CREATE INDEX outbox_due ON outbox (state, next_attempt_ts);
        CREATE TABLE cooldowns (
            receiver TEXT NOT NULL,
            rule TEXT NOT NULL,
            dimensions TEXT NOT NULL,
            enqueued_ts INTEGER NOT NULL,
            PRIMARY KEY (receiver, rule, dimensions)
        ) WITHOUT ROWID;
        CREATE TABLE alert_deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            notice_id INTEGER NOT NULL,
            receiver TEXT NOT NULL,
            rule TEXT NOT NULL,
            dimensions TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_ts INTEGER NOT NULL,
            finished_ts INTEGER NOT NULL,
            http_status INTEGER,
            outcome TEXT NOT NULL,
            error TEXT,
            next_attempt_ts INTEGER
        );
        CREATE INDEX alert_deliveries_notice ON alert_deliveries (notice_id);
    ",
}];

/// The table `system.alert_deliveries` reads.
pub const DELIVERIES_TABLE: &str = "alert_deliveries";

/// How long a write waits for another process's transaction.
const WRITE_WAIT_MAX: Duration = Duration::from_secs(10);

/// One alert for people: from the metrics rules, the health monitor, or a
/// test message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Who raised it: `metrics`, `health`, `test`.
    pub source: String,
    /// The rule's name; notices of one rule enqueued together are one message.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// What the alert is about (`{"mode": "scalp"}`); part of the cooldown key.
    pub dimensions: BTreeMap<String, String>,
    pub message: String,
    pub value: Option<f64>,
    pub fired_at: DateTime<Utc>,
}

impl Notice {
    /// The dimensions as JSON text (keys sorted, so equal sets are equal text).
    pub fn dimensions_json(&self) -> String {
        serde_json::to_string(&self.dimensions).unwrap_or_else(|_| "{}".into())
    }
}

/// The notices of one rule for one receiver, enqueued as one message.
#[derive(Debug, Clone)]
pub struct Group {
    pub receiver: String,
    pub rule: String,
    pub notices: Vec<Notice>,
}

/// What one enqueue did, in notices.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnqueueReport {
    /// Outbox rows (messages) inserted, and their ids.
    pub ids: Vec<i64>,
    /// Notices dropped by a cooldown.
    pub cooled_down: usize,
    /// Notices refused because the outbox held `outbox_max` messages.
    pub refused: usize,
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The receiver took it (2xx).
    Sent,
    /// It failed in a way worth another try (timeout, 429, 5xx); the row
    /// waits until `next_attempt`.
    Retry,
    /// It failed worth another try, but the attempts or the time ran out.
    GaveUp,
    /// It failed in a way another try will not fix (4xx, no such receiver).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Sent,
        Outcome::Retry,
        Outcome::GaveUp,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry => "retry",
            Outcome::GaveUp => "gave_up",
            Outcome::Failed => "failed",
        }
    }

    /// The outbox row's state after this outcome.
    fn next_state(self) -> &'static str {
        match self {
            Outcome::Retry => "pending",
            other => other.as_str(),
        }
    }
}

/// A message claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The notice id (the outbox row).
    pub id: i64,
    pub receiver: String,
    pub rule: String,
    pub severity: String,
    pub notices: Vec<Notice>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub enqueued_at_us: i64,
}

/// One attempt's result, for [`OutboxDb::record`].
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_us: i64,
    pub finished_us: i64,
    pub http_status: Option<u16>,
    pub outcome: Outcome,
    /// Never holds a secret: the sender redacts.
    pub error: Option<String>,
    /// With [`Outcome::Retry`]: when the next attempt may start.
    pub next_attempt_us: Option<i64>,
}

/// One outbox row, for `quiver alerts list`.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub receiver: String,
    pub rule: String,
    pub severity: String,
    pub dimensions: String,
    pub state: String,
    pub attempts: u32,
    pub enqueued_us: i64,
    pub next_attempt_us: i64,
}

/// A connection to the outbox. One per thread: producers and the delivery
/// worker each open their own (WAL mode; writers wait on the busy timeout).
pub struct OutboxDb {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for OutboxDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxDb")
            .field("path", &self.path)
            .finish()
    }
}

fn sql_err(path: &Path, step: &'static str) -> impl FnOnce(rusqlite::Error) -> SqliteError {
    let path = path.to_path_buf();
    move |source| SqliteError::Sql { path, step, source }
}

impl OutboxDb {
    /// Opens (creating and migrating) the outbox at `path`.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        Ok(Self {
            conn: sqlite::open_rw(path, MIGRATIONS)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T>(
        &mut self,
        f: impl FnMut(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, SqliteError> {
        let path = self.path.clone();
        sqlite::write(&mut self.conn, &path, WRITE_WAIT_MAX, |_| {}, f)
    }

    /// Inserts each group as one message, without the notices still in their
    /// cooldown, and without what exceeds `outbox_max` open messages; all in
    /// one transaction.
    pub fn enqueue(
        &mut self,
        groups: &[Group],
        now_us: i64,
        cooldown: Duration,
        outbox_max: u64,
    ) -> Result<EnqueueReport, SqliteError> {
        let cooldown_us = i64::try_from(cooldown.as_micros()).unwrap_or(i64::MAX);
        self.write(|tx| {
            let mut report = EnqueueReport::default();
            let open: i64 = tx.query_row(
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')",
                [],
                |r| r.get(0),
            )?;
            let mut open = u64::try_from(open).unwrap_or(0);
            for group in groups {
                let fresh = fresh_notices(tx, group, now_us, cooldown_us)?;
                report.cooled_down += group.notices.len() - fresh.len();
                if fresh.is_empty() {
                    continue;
                }
                if open >= outbox_max {
                    report.refused += fresh.len();
                    continue;
                }
                report.ids.push(insert_message(tx, group, &fresh, now_us)?);
                open += 1;
            }
            Ok(report)
        })
    }

    /// Claims the message due first, pending or with a lapsed lease, for
    /// `lease`; `None` when nothing is due.
    pub fn claim(&mut self, now_us: i64, lease: Duration) -> Result<Option<Claimed>, SqliteError> {
        let lease_us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
        let path = self.path.clone();
        let row = self.write(|tx| {
            tx.query_row(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1,
                        lease_until_ts = ?1 + ?2
                 WHERE id = (SELECT id FROM outbox
                             WHERE (state = 'pending' AND next_attempt_ts <= ?1)
                                OR (state = 'sending' AND lease_until_ts <= ?1)
                             ORDER BY next_attempt_ts, id LIMIT 1)
                 RETURNING id, receiver, rule, severity, notices, attempts, enqueued_ts",
                params![now_us, lease_us],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
        })?;
        let Some((id, receiver, rule, severity, notices, attempt, enqueued_at_us)) = row else {
            return Ok(None);
        };
        let notices: Vec<Notice> = serde_json::from_str(&notices).map_err(|e| {
            sql_err(&path, "reading a claimed notice")(rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                Box::new(e),
            ))
        })?;
        Ok(Some(Claimed {
            id,
            receiver,
            rule,
            severity,
            notices,
            attempt,
            enqueued_at_us,
        }))
    }

    /// Records an attempt of `claimed` and moves its row on. Returns false
    /// (the attempt row is kept) when the claim no longer held: another
    /// worker took the row after the lease ran out.
    pub fn record(&mut self, claimed: &Claimed, attempt: &Attempt) -> Result<bool, SqliteError> {
        let dimensions = dimensions_list(&claimed.notices);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO alert_deliveries (notice_id, receiver, rule, dimensions, attempt,
                     started_ts, finished_ts, http_status, outcome, error, next_attempt_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    claimed.id,
                    claimed.receiver,
                    claimed.rule,
                    dimensions,
                    claimed.attempt,
                    attempt.started_us,
                    attempt.finished_us,
                    attempt.http_status,
                    attempt.outcome.as_str(),
                    attempt.error,
                    attempt.next_attempt_us,
                ],
            )?;
            let done = (attempt.outcome != Outcome::Retry).then_some(attempt.finished_us);
            let moved = tx.execute(
                "UPDATE outbox SET state = ?1, lease_until_ts = NULL, done_ts = ?2,
                        next_attempt_ts = coalesce(?3, next_attempt_ts)
                 WHERE id = ?4 AND state = 'sending' AND attempts = ?5",
                params![
                    attempt.outcome.next_state(),
                    done,
                    attempt.next_attempt_us,
                    claimed.id,
                    claimed.attempt
                ],
            )?;
            Ok(moved == 1)
        })
    }

    /// How many of `ids` are still pending or being sent.
    pub fn open_among(&self, ids: &[i64]) -> Result<usize, SqliteError> {
        let wanted: HashSet<i64> = ids.iter().copied().collect();
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM outbox WHERE state IN ('pending', 'sending')")
            .map_err(sql_err(&self.path, "listing open notices"))?;
        let open = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(sql_err(&self.path, "listing open notices"))?
            .filter_map(Result::ok)
            .filter(|id| wanted.contains(id))
            .count();
        Ok(open)
    }

    /// The most recent `limit` messages, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<OutboxRow>, SqliteError> {
        let step = "listing the outbox";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, receiver, rule, severity, dimensions, state, attempts, enqueued_ts,
                        next_attempt_ts
                 FROM outbox ORDER BY id DESC LIMIT ?1",
            )
            .map_err(sql_err(&self.path, step))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    receiver: r.get(1)?,
                    rule: r.get(2)?,
                    severity: r.get(3)?,
                    dimensions: r.get(4)?,
                    state: r.get(5)?,
                    attempts: r.get(6)?,
                    enqueued_us: r.get(7)?,
                    next_attempt_us: r.get(8)?,
                })
            })
            .map_err(sql_err(&self.path, step))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(&self.path, step))?;
        Ok(rows)
    }
}

/// The notices of `group` outside their cooldown (and not repeated within
/// the group), with their cooldowns restarted.
fn fresh_notices(
    tx: &rusqlite::Transaction<'_>,
    group: &Group,
    now_us: i64,
    cooldown_us: i64,
) -> rusqlite::Result<Vec<Notice>> {
    let mut fresh = Vec::new();
    let mut seen = HashSet::new();
    for notice in &group.notices {
        let dims = notice.dimensions_json();
        if !seen.insert(dims.clone()) {
            continue;
        }
        let last: Option<i64> = tx
            .query_row(
                "SELECT enqueued_ts FROM cooldowns
                 WHERE receiver = ?1 AND rule = ?2 AND dimensions = ?3",
                params![group.receiver, group.rule, dims],
                |r| r.get(0),
            )
            .optional()?;
        if last.is_some_and(|last| now_us.saturating_sub(last) < cooldown_us) {
            continue;
        }
        tx.execute(
            "INSERT INTO cooldowns (receiver, rule, dimensions, enqueued_ts) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (receiver, rule, dimensions) DO UPDATE SET enqueued_ts = excluded.enqueued_ts",
            params![group.receiver, group.rule, dims, now_us],
        )?;
        fresh.push(notice.clone());
    }
    Ok(fresh)
}

fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    group: &Group,
    notices: &[Notice],
    now_us: i64,
) -> rusqlite::Result<i64> {
    let severity = notices
        .iter()
        .map(|n| n.severity.as_str())
        .max_by_key(|s| severity_rank(s))
        .unwrap_or("info");
    let source = notices.first().map_or("", |n| n.source.as_str());
    let json = serde_json::to_string(notices)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.query_row(
        "INSERT INTO outbox (receiver, source, rule, severity, dimensions, notices, state,
             enqueued_ts, next_attempt_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) RETURNING id",
        params![
            group.receiver,
            source,
            group.rule,
            severity,
            dimensions_list(notices),
            json,
            now_us
        ],
        |r| r.get(0),
    )
}

/// Orders severities: info < warning < critical (unknown counts as critical).
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "info" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// The dimension sets of `notices` as a JSON array.
fn dimensions_list(notices: &[Notice]) -> String {
    let sets: Vec<&BTreeMap<String, String>> = notices.iter().map(|n| &n.dimensions).collect();
    serde_json::to_string(&sets).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_US: i64 = 60_000_000;

    fn notice(rule: &str, mode: &str) -> Notice {
        Notice {
            source: "metrics".into(),
            rule: rule.into(),
            severity: "warning".into(),
            dimensions: BTreeMap::from([("mode".to_string(), mode.to_string())]),
            message: format!("{rule} fired for {mode}"),
            value: Some(0.4),
            fired_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn group(receiver: &str, notices: Vec<Notice>) -> Group {
        Group {
            receiver: receiver.into(),
            rule: notices[0].rule.clone(),
            notices,
        }
    }

    fn open() -> (tempfile::TempDir, OutboxDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = OutboxDb::open(&dir.path().join("alerts.sqlite")).unwrap();
        (dir, db)
    }

    const COOLDOWN: Duration = Duration::from_secs(300);

    fn sent(at: i64) -> Attempt {
        Attempt {
            started_us: at,
            finished_us: at + 1,
            http_status: Some(200),
            outcome: Outcome::Sent,
            error: None,
            next_attempt_us: None,
        }
    }

    /// `system.alert_deliveries` reads the table through the journal's
    /// reader; its timestamps come out as timestamps.
    #[test]
    fn the_deliveries_table_is_a_readable_relation() {
        let (dir, _db) = open();
        let relations = sqlite::list_relations(&dir.path().join("alerts.sqlite")).unwrap();
        let deliveries = relations
            .iter()
            .find(|r| r.name == DELIVERIES_TABLE)
            .unwrap();
        let started = deliveries.schema.field_with_name("started_ts").unwrap();
        assert!(matches!(
            started.data_type(),
            arrow::datatypes::DataType::Timestamp(..)
        ));
    }

    #[test]
    fn a_group_is_one_message_and_survives_a_reopen() {
        let (dir, mut db) = open();
        let g = group("ops", vec![notice("r", "scalp"), notice("r", "swing")]);
        let report = db.enqueue(&[g], 0, COOLDOWN, 10).unwrap();
        assert_eq!(report.ids.len(), 1);
        drop(db);
        let mut db = OutboxDb::open(&dir.path().join("alerts.sqlite")).unwrap();
        let claimed = db.claim(1, Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(claimed.id, report.ids[0]);
        assert_eq!(claimed.attempt, 1);
        assert_eq!(claimed.notices.len(), 2);
        assert!(db.claim(2, Duration::from_secs(30)).unwrap().is_none());
        assert!(db.record(&claimed, &sent(3)).unwrap());
        assert_eq!(db.open_among(&report.ids).unwrap(), 0);
        assert_eq!(db.recent(10).unwrap()[0].state, "sent");
    }

    #[test]
    fn the_cooldown_is_per_receiver_rule_and_dimensions() {
        let (_dir, mut db) = open();
        let first = db
            .enqueue(&[group("ops", vec![notice("r", "scalp")])], 0, COOLDOWN, 10)
            .unwrap();
        assert_eq!((first.ids.len(), first.cooled_down), (1, 0));
        // Same key within the cooldown: dropped; other dimensions, other
        // receiver, other rule: enqueued.
        let again = db
            .enqueue(
                &[
                    group("ops", vec![notice("r", "scalp"), notice("r", "swing")]),
                    group("hook", vec![notice("r", "scalp")]),
                    group("ops", vec![notice("q", "scalp")]),
                ],
                4 * MIN_US,
                COOLDOWN,
                10,
            )
            .unwrap();
        assert_eq!((again.ids.len(), again.cooled_down), (3, 1));
        // After the cooldown, the first key goes out again.
        let later = db
            .enqueue(
                &[group("ops", vec![notice("r", "scalp")])],
                5 * MIN_US + 1,
                COOLDOWN,
                10,
            )
            .unwrap();
        assert_eq!(later.ids.len(), 1);
    }

    /// Two connections (two processes' worth) enqueueing the same key at
    /// once: one message, because the check and the insert are one
    /// transaction.
    #[test]
    fn concurrent_enqueues_pass_one_cooldown_once() {
        let (dir, _db) = open();
        let path = dir.path().join("alerts.sqlite");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut db = OutboxDb::open(&path).unwrap();
                    db.enqueue(&[group("ops", vec![notice("r", "scalp")])], 0, COOLDOWN, 10)
                        .unwrap()
                        .ids
                        .len()
                })
            })
            .collect();
        let inserted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(inserted, 1);
    }

    #[test]
    fn the_outbox_refuses_beyond_outbox_max() {
        let (_dir, mut db) = open();
        let groups: Vec<Group> = (0..3)
            .map(|i| group("ops", vec![notice(&format!("r{i}"), "scalp")]))
            .collect();
        let report = db.enqueue(&groups, 0, COOLDOWN, 2).unwrap();
        assert_eq!((report.ids.len(), report.refused), (2, 1));
        // A delivered message frees its place.
        let claimed = db.claim(0, Duration::from_secs(30)).unwrap().unwrap();
        db.record(&claimed, &sent(1)).unwrap();
        let report = db
            .enqueue(&[group("ops", vec![notice("r9", "x")])], 2, COOLDOWN, 2)
            .unwrap();
        assert_eq!((report.ids.len(), report.refused), (1, 0));
    }

    #[test]
    fn a_retry_waits_and_a_lapsed_lease_is_claimed_again() {
        let (_dir, mut db) = open();
        db.enqueue(&[group("ops", vec![notice("r", "a")])], 0, COOLDOWN, 10)
            .unwrap();
        let lease = Duration::from_secs(30);
        let first = db.claim(0, lease).unwrap().unwrap();
        let retry = Attempt {
            outcome: Outcome::Retry,
            http_status: Some(429),
            error: Some("429".into()),
            next_attempt_us: Some(5_000_000),
            ..sent(0)
        };
        assert!(db.record(&first, &retry).unwrap());
        assert!(db.claim(4_999_999, lease).unwrap().is_none());
        let second = db.claim(5_000_000, lease).unwrap().unwrap();
        assert_eq!(second.attempt, 2);
        // The process dies here; after the lease the row is claimed again.
        assert!(db.claim(5_000_001, lease).unwrap().is_none());
        let third = db.claim(5_000_000 + 30_000_000, lease).unwrap().unwrap();
        assert_eq!(third.attempt, 3);
        // The stale claim's result no longer moves the row.
        assert!(!db.record(&second, &sent(1)).unwrap());
        let gave_up = Attempt {
            outcome: Outcome::GaveUp,
            ..retry
        };
        assert!(db.record(&third, &gave_up).unwrap());
        assert_eq!(db.recent(1).unwrap()[0].state, "gave_up");
        let outcomes: Vec<(u32, String)> = db
            .conn
            .prepare("SELECT attempt, outcome FROM alert_deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            outcomes,
            [
                (1, "retry".to_string()),
                (2, "sent".to_string()),
                (3, "gave_up".to_string())
            ]
        );
    }
}
