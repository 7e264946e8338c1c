//! The health monitor: samples the pipeline, judges each reading against the
//! `[health]` thresholds, and tells people when a check changes state.
//!
//! | check | value | warning / critical |
//! |---|---|---|
//! | `queue_fill` | logger queue fill, 0..1 | `queue_fill_warn` / `queue_fill_critical` |
//! | `kill_switch` | 1 if tripped | - / tripped |
//! | `drops.<level>` | events dropped in the last `window` | DEBUG: never (shedding it is the design); INFO, WARNING, ERROR: any / -; CRITICAL: - / any |
//! | `wal`, `hot`, `lake`, `journal` | 1 if the component is stalled | - / stalled |
//! | `lag.hot`, `lag.journal` | age of the oldest WAL record not applied, s | `lag_warn` / `lag_critical` |
//! | `lag.lake` | the same for the lake | those plus `lake.roll_interval` |
//! | `disk_free` | free bytes in the data dir's file system | under `disk_free_warn_bytes` / under `disk_free_critical_bytes` |
//! | `lake_bytes`, `hot_bytes`, `wal_bytes` | sizes on disk | informational |
//! | `quarantined_files` | files moved to `quarantine/` | any / - |
//! | `holes_lost` | WAL ranges found in no copy | - / any |
//! | `queries` | queries per second over the last `window` | refusals (`queries_max`) in the window / - |
//! | `definitions` | sets loaded | an edit refused and still on disk / - |
//!
//! The lag is measured from the monitor's own history of the WAL sequence:
//! the first sample that saw the WAL past a consumer's sequence dates the
//! oldest record the consumer has not applied, to within one `interval`.
//! Right after a start (no history yet) it reads 0 with the records behind in
//! the detail.
//!
//! A server runs [`HealthMonitor::run`], which samples every `interval` and
//! puts each change of state into the alert outbox (rule `health`, dimensions
//! `check` and `state`, severity the new state; a return to `ok` is an `info`
//! notice), so the outbox's cooldown keeps a flapping check from paging every
//! few seconds. `system.health` reads the latest sample, taking a fresh one
//! when it is older than a second; `quiver status` prints it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::Session;
use super::alerts::Outbox;
use super::reload::{DefinitionsState, DefinitionsStatus};
use crate::config::HealthSection;
use crate::event::{Level, Ts};
use crate::flight::stats::QueryStats;
use crate::ingest::{Logger, LoggerStats};
use crate::store::outbox::Notice;
use crate::store::status::HoleStatus;
use crate::store::{Layout, Store, StoreStats};

/// A check's verdict; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Ok,
    Warning,
    Critical,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        match text {
            "ok" => Some(State::Ok),
            "warning" => Some(State::Warning),
            "critical" => Some(State::Critical),
            _ => None,
        }
    }
}

/// One check at one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub state: State,
    pub value: Option<f64>,
    /// `ratio`, `s`, `bytes`, `events`, `files`, `ranges`, `per_s`, `bool`, `count`.
    pub unit: &'static str,
    pub warn_at: Option<f64>,
    pub critical_at: Option<f64>,
    /// When the check entered its state (µs since the epoch).
    pub since_us: i64,
    pub detail: String,
}

/// Every check at one sample, and the worst of their states.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub sampled_at_us: i64,
    pub state: State,
    pub checks: Vec<Check>,
}

/// A check that changed state, for the alert outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub check: Check,
    /// `None` on the first sample.
    pub from: Option<State>,
}

/// The counters the monitor keeps a history of.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: Instant,
    wal_seq: u64,
    dropped: [u64; Level::ALL.len()],
    queries_done: u64,
    refused: u64,
}

/// What the checks are judged from, read at one moment.
#[derive(Debug, Clone, Default)]
struct Reading {
    /// `None`: no logger in this process (a closed data dir opened to report).
    logger_present: bool,
    logger: LoggerStats,
    store: StoreStats,
    stalled_since_us: [Option<i64>; 4],
    disk_free: Option<u64>,
    lake_bytes: u64,
    hot_bytes: u64,
    wal_bytes: u64,
    quarantined: usize,
    lost: usize,
    queries: Option<(u64, u64, u64)>,
    definitions: Option<DefinitionsState>,
}

/// What the monitor reads from.
pub struct HealthSources {
    pub logger: Option<Logger>,
    pub store: Arc<Store>,
    /// The server's query counts, once it runs.
    pub queries: OnceLock<Arc<QueryStats>>,
    pub definitions: Arc<DefinitionsStatus>,
}

struct Memory {
    history: VecDeque<Point>,
    states: HashMap<String, (State, i64)>,
    last: Option<(Instant, HealthReport)>,
    transitions: Vec<Transition>,
}

/// Samples the pipeline and remembers enough to judge trends and changes.
pub struct HealthMonitor {
    config: HealthSection,
    lake_roll_interval: Duration,
    sources: HealthSources,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A report younger than this is served again to `system.health`.
const REUSE_REPORT: Duration = Duration::from_secs(1);

impl HealthMonitor {
    pub fn new(
        config: HealthSection,
        lake_roll_interval: Duration,
        sources: HealthSources,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            lake_roll_interval,
            sources,
            memory: Mutex::new(Memory {
                history: VecDeque::new(),
                states: HashMap::new(),
                last: None,
                transitions: Vec::new(),
            }),
        })
    }

    /// Lets the `queries` check read the server's counts.
    pub fn attach_queries(&self, stats: Arc<QueryStats>) {
        let _ = self.sources.queries.set(stats);
        // A report sampled before the server started would say there is none.
        if let Ok(mut memory) = self.memory.lock() {
            memory.last = None;
        }
    }

    pub fn definitions(&self) -> DefinitionsState {
        self.sources.definitions.state()
    }

    /// The latest report, sampling afresh if it is older than a second.
    pub fn report(&self) -> HealthReport {
        if let Ok(memory) = self.memory.lock()
            && let Some((at, report)) = &memory.last
            && at.elapsed() < REUSE_REPORT
        {
            return report.clone();
        }
        self.sample()
    }

    /// Takes a sample now: reads every source, judges it, records changes.
    pub fn sample(&self) -> HealthReport {
        let reading = self.read();
        let now = Instant::now();
        let now_us = Ts::now().0;
        let Ok(mut memory) = self.memory.lock() else {
            return judge(
                &self.config,
                self.lake_roll_interval,
                &reading,
                &[],
                now,
                now_us,
            );
        };
        let point = Point {
            at: now,
            wal_seq: reading.store.wal_seq,
            dropped: std::array::from_fn(|i| reading.logger.dropped(Level::ALL[i])),
            queries_done: reading.queries.map_or(0, |(ok, failed, _)| ok + failed),
            refused: reading.queries.map_or(0, |(_, _, refused)| refused),
        };
        memory.history.push_back(point);
        while memory.history.len() > self.config.history_max {
            memory.history.pop_front();
        }
        let history: Vec<Point> = memory.history.iter().copied().collect();
        let mut report = judge(
            &self.config,
            self.lake_roll_interval,
            &reading,
            &history,
            now,
            now_us,
        );
        let mut transitions = Vec::new();
        for check in &mut report.checks {
            match memory.states.get(&check.name) {
                Some(&(state, since)) if state == check.state => check.since_us = since,
                previous => {
                    let from = previous.map(|&(s, _)| s);
                    memory
                        .states
                        .insert(check.name.clone(), (check.state, now_us));
                    // The first sample of a healthy check is no news.
                    if from.is_some() || check.state != State::Ok {
                        transitions.push(Transition {
                            check: check.clone(),
                            from,
                        });
                    }
                }
            }
        }
        memory.transitions.extend(transitions);
        // Bounded: only the monitor's task drains these.
        let excess = memory
            .transitions
            .len()
            .saturating_sub(self.config.history_max);
        memory.transitions.drain(..excess);
        memory.last = Some((now, report.clone()));
        report
    }

    /// The state changes seen since the last call.
    pub fn take_transitions(&self) -> Vec<Transition> {
        self.memory
            .lock()
            .map(|mut m| std::mem::take(&mut m.transitions))
            .unwrap_or_default()
    }

    fn read(&self) -> Reading {
        let store = &self.sources.store;
        let status = &store.status;
        let layout = Layout::new(&store.data_dir);
        let lake = store.lake.snapshot();
        let hot = layout.hot();
        let hot_wal = {
            let mut name = hot.clone().into_os_string();
            name.push(".wal");
            std::path::PathBuf::from(name)
        };
        Reading {
            logger_present: self.sources.logger.is_some(),
            logger: self
                .sources
                .logger
                .as_ref()
                .map(Logger::stats)
                .unwrap_or_default(),
            store: store.stats(),
            stalled_since_us: [&status.wal, &status.hot, &status.lake, &status.journal]
                .map(|c| c.stalled_since_us()),
            disk_free: disk_free(&store.data_dir),
            lake_bytes: lake.files.iter().map(|f| f.bytes).sum(),
            hot_bytes: file_len(&hot) + file_len(&hot_wal),
            wal_bytes: dir_len(&layout.wal()),
            quarantined: store.lake.quarantined().len(),
            lost: status
                .holes()
                .iter()
                .filter(|h| h.status == HoleStatus::Lost)
                .count(),
            queries: self.sources.queries.get().map(|q| {
                let s = q.snapshot();
                (s.ok, s.failed, s.refused)
            }),
            definitions: Some(self.sources.definitions.state()),
        }
    }

    /// Samples every `interval` until aborted, putting each change of state
    /// into `outbox` (when receivers are configured).
    pub fn run(self: Arc<Self>, outbox: Option<Arc<Outbox>>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let monitor = self.clone();
                let outbox = outbox.clone();
                let done = tokio::task::spawn_blocking(move || {
                    monitor.sample();
                    let transitions = monitor.take_transitions();
                    for t in &transitions {
                        log_transition(t);
                    }
                    if let Some(outbox) = outbox
                        && !transitions.is_empty()
                    {
                        let notices: Vec<Notice> = transitions.iter().map(notice).collect();
                        if let Err(e) = outbox.enqueue(&notices) {
                            tracing::error!("health alerts not enqueued: {e:#}");
                        }
                    }
                })
                .await;
                if let Err(e) = done {
                    tracing::error!("the health sample failed: {e}");
                }
            }
        })
    }
}

fn log_transition(t: &Transition) {
    let c = &t.check;
    let from = t.from.map_or("-", State::as_str);
    match c.state {
        State::Ok => {
            tracing::info!(check = %c.name, from, "health: {} ok again: {}", c.name, c.detail)
        }
        State::Warning => {
            tracing::warn!(check = %c.name, from, "health: {} warning: {}", c.name, c.detail)
        }
        State::Critical => tracing::error!(
            critical = true,
            check = %c.name,
            from,
            "health: {} critical: {}",
            c.name,
            c.detail
        ),
    }
}

/// The alert for a change of state.
pub fn notice(t: &Transition) -> Notice {
    let c = &t.check;
    let severity = match c.state {
        State::Ok => "info",
        State::Warning => "warning",
        State::Critical => "critical",
    };
    let message = match c.state {
        State::Ok => format!("{} is ok again: {}", c.name, c.detail),
        s => format!("{} is {}: {}", c.name, s.as_str(), c.detail),
    };
    Notice {
        source: "health".into(),
        rule: "health".into(),
        severity: severity.into(),
        dimensions: BTreeMap::from([
            ("check".to_string(), c.name.clone()),
            ("state".to_string(), c.state.as_str().to_string()),
        ]),
        message,
        value: c.value,
        fired_at: chrono::DateTime::from_timestamp_micros(c.since_us).unwrap_or_default(),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn dir_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

/// Bytes an unprivileged writer may still use in the file system of `path`.
fn disk_free(path: &Path) -> Option<u64> {
    let vfs = rustix::fs::statvfs(path).ok()?;
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The sample in `history` at or just before `window` ago (the oldest if
/// the history is shorter).
fn window_start(history: &[Point], now: Instant, window: Duration) -> Option<&Point> {
    let start = now.checked_sub(window)?;
    history
        .iter()
        .rev()
        .find(|p| p.at <= start)
        .or_else(|| history.first())
}

/// Age of the oldest WAL record above `seq`, from the history of the WAL
/// sequence: (seconds, whether the history is too short to say more than
/// "at least").
fn lag(history: &[Point], seq: u64, now: Instant) -> (f64, bool) {
    match history.iter().position(|p| p.wal_seq > seq) {
        None => (0.0, false),
        Some(i) => (now.duration_since(history[i].at).as_secs_f64(), i == 0),
    }
}

struct Judge {
    checks: Vec<Check>,
    now_us: i64,
}

impl Judge {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: impl Into<String>,
        state: State,
        value: Option<f64>,
        unit: &'static str,
        warn_at: Option<f64>,
        critical_at: Option<f64>,
        detail: String,
    ) {
        self.checks.push(Check {
            name: name.into(),
            state,
            value,
            unit,
            warn_at,
            critical_at,
            since_us: self.now_us,
            detail,
        });
    }
}

/// At or above (`rising`) or at or below a threshold pair.
fn against(value: f64, warn: f64, critical: f64, rising: bool) -> State {
    let past = |t: f64| if rising { value >= t } else { value <= t };
    if past(critical) {
        State::Critical
    } else if past(warn) {
        State::Warning
    } else {
        State::Ok
    }
}

fn judge(
    config: &HealthSection,
    lake_roll_interval: Duration,
    r: &Reading,
    history: &[Point],
    now: Instant,
    now_us: i64,
) -> HealthReport {
    let mut j = Judge {
        checks: Vec::new(),
        now_us,
    };
    let l = &r.logger;
    let fill = l.fill();
    j.push(
        "queue_fill",
        against(
            fill,
            config.queue_fill_warn,
            config.queue_fill_critical,
            true,
        ),
        Some(fill),
        "ratio",
        Some(config.queue_fill_warn),
        Some(config.queue_fill_critical),
        if r.logger_present {
            format!("{} of {} queued", l.queue_len, l.queue_capacity)
        } else {
            "no logger in this process (the data dir is not being written)".to_string()
        },
    );
    j.push(
        "kill_switch",
        if l.kill_switch_tripped {
            State::Critical
        } else {
            State::Ok
        },
        Some(f64::from(u8::from(l.kill_switch_tripped))),
        "bool",
        None,
        Some(1.0),
        match (l.kill_switch_tripped, l.kill_switch_trips) {
            (true, n) => format!("tripped: only CRITICAL events are accepted ({n} trips)"),
            (false, 0) => "never tripped".to_string(),
            (false, n) => format!("armed ({n} trips since start)"),
        },
    );
    let start = window_start(history, now, config.window);
    let window = humantime::format_duration(config.window);
    for (i, level) in Level::ALL.iter().enumerate() {
        let total = l.dropped(*level);
        let recent = total.saturating_sub(start.map_or(total, |p| p.dropped[i]));
        let state = match (level, recent) {
            (_, 0) | (Level::Debug, _) => State::Ok,
            (Level::Critical, _) => State::Critical,
            _ => State::Warning,
        };
        let (warn_at, critical_at) = match level {
            Level::Debug => (None, None),
            Level::Critical => (None, Some(1.0)),
            _ => (Some(1.0), None),
        };
        j.push(
            format!("drops.{}", level.as_str().to_ascii_lowercase()),
            state,
            Some(recent as f64),
            "events",
            warn_at,
            critical_at,
            format!("{recent} in the last {window}, {total} since start"),
        );
    }
    let s = &r.store;
    for (i, (name, text)) in [
        ("wal", &s.wal_state),
        ("hot", &s.hot_state),
        ("lake", &s.lake_state),
        ("journal", &s.journal_state),
    ]
    .into_iter()
    .enumerate()
    {
        let stalled = r.stalled_since_us[i].is_some() || text != "ok";
        j.push(
            name,
            if stalled { State::Critical } else { State::Ok },
            Some(f64::from(u8::from(stalled))),
            "bool",
            None,
            Some(1.0),
            text.clone(),
        );
    }
    let warn_s = config.lag_warn.as_secs_f64();
    let critical_s = config.lag_critical.as_secs_f64();
    let roll_s = lake_roll_interval.as_secs_f64();
    for (name, seq, extra) in [
        ("lag.hot", s.hot_seq, 0.0),
        ("lag.lake", s.lake_seq, roll_s),
        ("lag.journal", s.journal_seq, 0.0),
    ] {
        let behind = s.wal_seq.saturating_sub(seq);
        let (age, at_least) = lag(history, seq, now);
        let (warn, critical) = (warn_s + extra, critical_s + extra);
        j.push(
            name,
            against(age, warn, critical, true),
            Some(age),
            "s",
            Some(warn),
            Some(critical),
            format!(
                "{behind} WAL records behind{}",
                if at_least && behind > 0 {
                    ", for at least as long as the monitor has run"
                } else {
                    ""
                }
            ),
        );
    }
    match r.disk_free {
        Some(free) => j.push(
            "disk_free",
            against(
                free as f64,
                config.disk_free_warn_bytes as f64,
                config.disk_free_critical_bytes as f64,
                false,
            ),
            Some(free as f64),
            "bytes",
            Some(config.disk_free_warn_bytes as f64),
            Some(config.disk_free_critical_bytes as f64),
            format!("{} free in the data dir's file system", bytes(free)),
        ),
        None => j.push(
            "disk_free",
            State::Warning,
            None,
            "bytes",
            Some(config.disk_free_warn_bytes as f64),
            Some(config.disk_free_critical_bytes as f64),
            "the file system's free space could not be read".to_string(),
        ),
    }
    for (name, size, what) in [
        (
            "lake_bytes",
            r.lake_bytes,
            format!("{} committed files", s.lake_files),
        ),
        ("hot_bytes", r.hot_bytes, "hot.duckdb and its WAL".into()),
        ("wal_bytes", r.wal_bytes, "WAL segments".into()),
    ] {
        j.push(
            name,
            State::Ok,
            Some(size as f64),
            "bytes",
            None,
            None,
            format!("{}: {what}", bytes(size)),
        );
    }
    j.push(
        "quarantined_files",
        if r.quarantined > 0 {
            State::Warning
        } else {
            State::Ok
        },
        Some(r.quarantined as f64),
        "files",
        Some(1.0),
        None,
        if r.quarantined > 0 {
            "see system.quarantined_files".to_string()
        } else {
            "none".to_string()
        },
    );
    j.push(
        "holes_lost",
        if r.lost > 0 {
            State::Critical
        } else {
            State::Ok
        },
        Some(r.lost as f64),
        "ranges",
        None,
        Some(1.0),
        if r.lost > 0 {
            "events in no copy: see system.holes".to_string()
        } else {
            "none".to_string()
        },
    );
    match (r.queries, history.last(), start) {
        (Some((ok, failed, refused)), Some(last), Some(first)) => {
            let secs = last.at.duration_since(first.at).as_secs_f64();
            let done = last.queries_done.saturating_sub(first.queries_done);
            let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
            let refused_recent = last.refused.saturating_sub(first.refused);
            j.push(
                "queries",
                if refused_recent > 0 {
                    State::Warning
                } else {
                    State::Ok
                },
                Some(rate),
                "per_s",
                None,
                None,
                format!(
                    "{refused_recent} refused in the last {window} (flight.queries_max); \
                     {ok} ok, {failed} failed, {refused} refused since start"
                ),
            );
        }
        _ => j.push(
            "queries",
            State::Ok,
            None,
            "per_s",
            None,
            None,
            "no Flight SQL server in this process".to_string(),
        ),
    }
    if let Some(d) = &r.definitions {
        let counts = |kind: &str| d.objects.iter().filter(|o| o.kind == kind).count();
        let live = format!(
            "{} metrics, {} alert rules, {} analyses, {} gates",
            counts("metric"),
            counts("alert"),
            counts("analysis"),
            counts("gate")
        );
        let (state, detail) = match (&d.last_refused, d.refused_pending, d.loads) {
            (Some(refusal), true, _) => (
                State::Warning,
                format!(
                    "an edit of {} was refused; {live} stay live: {}",
                    refusal
                        .files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    refusal.error
                ),
            ),
            (_, _, 0) => (State::Warning, "not loaded".to_string()),
            _ => (State::Ok, live),
        };
        j.push(
            "definitions",
            state,
            Some(d.loads as f64),
            "count",
            None,
            None,
            detail,
        );
    }
    let state = j.checks.iter().map(|c| c.state).max().unwrap_or(State::Ok);
    HealthReport {
        sampled_at_us: now_us,
        state,
        checks: j.checks,
    }
}

/// `system.health`'s schema: one row per check.
pub fn health_schema() -> SchemaRef {
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("check", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("unit", DataType::Utf8, false),
        Field::new("warn_at", DataType::Float64, true),
        Field::new("critical_at", DataType::Float64, true),
        ts("since"),
        Field::new("detail", DataType::Utf8, false),
        ts("sampled_at"),
    ]))
}

/// A report as `system.health` rows.
pub fn health_batch(report: &HealthReport) -> arrow::error::Result<RecordBatch> {
    let c = &report.checks;
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    let strs = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let f64s = |v: Vec<Option<f64>>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
    RecordBatch::try_new(
        health_schema(),
        vec![
            strs(c.iter().map(|x| x.name.as_str()).collect()),
            strs(c.iter().map(|x| x.state.as_str()).collect()),
            f64s(c.iter().map(|x| x.value).collect()),
            strs(c.iter().map(|x| x.unit).collect()),
            f64s(c.iter().map(|x| x.warn_at).collect()),
            f64s(c.iter().map(|x| x.critical_at).collect()),
            ts(c.iter().map(|x| x.since_us).collect()),
            strs(c.iter().map(|x| x.detail.as_str()).collect()),
            ts(vec![report.sampled_at_us; c.len()]),
        ],
    )
}

/// `system.definitions`' schema: one row per live definition.
pub fn definitions_schema() -> SchemaRef {
    let ts = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("file_sha256", DataType::Utf8, true),
        ts("loaded_at"),
        ts("refused_at"),
        Field::new("refused_error", DataType::Utf8, true),
    ]))
}

/// The definitions as `system.definitions` rows: each live definition with
/// its file's hash, and the last refused edit of that file while it is still
/// on disk. A refused edit of a file with nothing live (a new analysis that
/// does not compile) is a row of kind `file` with an empty name.
pub fn definitions_batch(d: &DefinitionsState) -> arrow::error::Result<RecordBatch> {
    /// One row of `system.definitions`.
    struct Row<'a> {
        kind: &'a str,
        name: &'a str,
        path: String,
        sha256: Option<&'a str>,
        loaded_at_us: Option<i64>,
        refusal: Option<&'a super::reload::Refusal>,
    }
    let pending = d.last_refused.as_ref().filter(|_| d.refused_pending);
    let refused_file = |path: &Path| pending.filter(|r| r.files.iter().any(|p| p == path));
    let mut rows: Vec<Row<'_>> = d
        .objects
        .iter()
        .map(|o| Row {
            kind: o.kind,
            name: &o.name,
            path: o.path.display().to_string(),
            sha256: d
                .files
                .iter()
                .find(|f| f.path == o.path)
                .map(|f| f.sha256.as_str()),
            loaded_at_us: d.loaded_at_us,
            refusal: refused_file(&o.path),
        })
        .collect();
    if let Some(r) = pending {
        for path in &r.files {
            if !d.objects.iter().any(|o| &o.path == path) {
                rows.push(Row {
                    kind: "file",
                    name: "",
                    path: path.display().to_string(),
                    sha256: None,
                    loaded_at_us: None,
                    refusal: Some(r),
                });
            }
        }
    }
    let ts = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    RecordBatch::try_new(
        definitions_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.kind))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.name))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.path))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.sha256))),
            ts(rows.iter().map(|r| r.loaded_at_us).collect()),
            ts(rows.iter().map(|r| r.refusal.map(|x| x.at_us)).collect()),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.refusal.map(|x| x.error.as_str())),
            )),
        ],
    )
}

/// Registers `system.health` and `system.definitions` in `engine`, read
/// from `monitor` at each scan.
pub fn register(
    engine: &crate::query::QueryEngine,
    monitor: &Arc<HealthMonitor>,
) -> Result<(), crate::query::QueryError> {
    use crate::query::system::LiveTable;
    let m = monitor.clone();
    engine.register_system_table(
        "health",
        Arc::new(LiveTable::new(health_schema(), move || {
            health_batch(&m.report())
        })),
    )?;
    let m = monitor.clone();
    engine.register_system_table(
        "definitions",
        Arc::new(LiveTable::new(definitions_schema(), move || {
            definitions_batch(&m.definitions())
        })),
    )
}

/// Gives a local session (a data dir no server holds) `system.health` and
/// `system.definitions`: a monitor over its store, with no logger or server
/// in this process, and the definitions loaded once (a refusal is recorded
/// for `system.definitions`, not raised).
pub fn attach_local(config: &crate::config::Config, session: &Session) -> anyhow::Result<()> {
    let Session::Local { store, engine } = session else {
        return Ok(());
    };
    let definitions = Arc::new(DefinitionsStatus::default());
    if let Err(e) = super::reload::load_once(engine, &config.definition_paths(), &definitions) {
        tracing::info!("definitions not loaded: {e:#}");
    }
    let monitor = HealthMonitor::new(
        config.health.clone(),
        config.lake.roll_interval,
        HealthSources {
            logger: None,
            store: store.clone(),
            queries: OnceLock::new(),
            definitions,
        },
    );
    register(engine, &monitor)?;
    Ok(())
}

/// One check as `quiver status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusCheck {
    pub check: String,
    pub state: String,
    pub value: Option<f64>,
    pub unit: String,
    pub warn_at: Option<f64>,
    pub critical_at: Option<f64>,
    pub since: String,
    pub detail: String,
}

/// One live definition (or a refused file) as `quiver status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusDefinition {
    pub kind: String,
    pub name: String,
    pub path: String,
    pub loaded_at: Option<String>,
    pub refused_at: Option<String>,
    pub refused_error: Option<String>,
}

/// What `quiver status` prints: the worst state, every check, the
/// definitions; read from `system.health` and `system.definitions`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    pub state: String,
    /// The server it was read through, if any.
    pub server: Option<String>,
    pub sampled_at: Option<String>,
    pub checks: Vec<StatusCheck>,
    pub definitions: Vec<StatusDefinition>,
}

impl StatusReport {
    pub fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Critical)
    }
}

/// Reads the status through `session` (see [`attach_local`] for a local one).
pub async fn status(session: &mut Session) -> anyhow::Result<StatusReport> {
    use super::rows::{opt_floats, strings};
    let server = session.server_url().map(str::to_string);
    let health = session
        .query(
            "SELECT \"check\", state, value, unit, warn_at, critical_at, since, detail, sampled_at \
             FROM system.health",
        )
        .await?;
    let mut checks = Vec::new();
    let mut sampled_at = None;
    for b in &health {
        let (names, states, units, since, detail, sampled) = (
            strings(b, "check")?,
            strings(b, "state")?,
            strings(b, "unit")?,
            strings(b, "since")?,
            strings(b, "detail")?,
            strings(b, "sampled_at")?,
        );
        let (value, warn, critical) = (
            opt_floats(b, "value")?,
            opt_floats(b, "warn_at")?,
            opt_floats(b, "critical_at")?,
        );
        sampled_at = sampled.into_iter().next().or(sampled_at);
        for i in 0..b.num_rows() {
            checks.push(StatusCheck {
                check: names[i].clone(),
                state: states[i].clone(),
                value: value[i],
                unit: units[i].clone(),
                warn_at: warn[i],
                critical_at: critical[i],
                since: since[i].clone(),
                detail: detail[i].clone(),
            });
        }
    }
    let defs = session
        .query(
            "SELECT kind, name, path, loaded_at, refused_at, refused_error \
             FROM system.definitions ORDER BY kind, name",
        )
        .await?;
    let mut definitions = Vec::new();
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    for b in &defs {
        let (kind, name, path, loaded, refused, error) = (
            strings(b, "kind")?,
            strings(b, "name")?,
            strings(b, "path")?,
            strings(b, "loaded_at")?,
            strings(b, "refused_at")?,
            strings(b, "refused_error")?,
        );
        for i in 0..b.num_rows() {
            definitions.push(StatusDefinition {
                kind: kind[i].clone(),
                name: name[i].clone(),
                path: path[i].clone(),
                loaded_at: some(&loaded[i]),
                refused_at: some(&refused[i]),
                refused_error: some(&error[i]),
            });
        }
    }
    let state = checks
        .iter()
        .map(|c| State::parse(&c.state).unwrap_or(State::Critical))
        .max()
        .unwrap_or(State::Ok);
    Ok(StatusReport {
        state: state.as_str().to_string(),
        server,
        sampled_at,
        checks,
        definitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: Instant, wal_seq: u64) -> Point {
        Point {
            at,
            wal_seq,
            dropped: [0; Level::ALL.len()],
            queries_done: 0,
            refused: 0,
        }
    }

    fn reading() -> Reading {
        Reading {
            logger_present: true,
            logger: LoggerStats {
                queue_capacity: 100,
                ..Default::default()
            },
            store: StoreStats {
                wal_state: "ok".into(),
                hot_state: "ok".into(),
                lake_state: "ok".into(),
                journal_state: "ok".into(),
                ..Default::default()
            },
            disk_free: Some(100 << 30),
            ..Default::default()
        }
    }

    fn check<'a>(report: &'a HealthReport, name: &str) -> &'a Check {
        report.checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn lag_dates_the_oldest_unapplied_record_from_the_history() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let history = [point(s(0), 10), point(s(5), 20), point(s(10), 30)];
        let now = s(12);
        // Caught up: no lag.
        assert_eq!(lag(&history, 30, now), (0.0, false));
        // Behind since the WAL passed 20 (first seen at 10 s).
        assert_eq!(lag(&history, 25, now), (2.0, false));
        // Behind since 10 < seq 15 <= 20: the sample at 5 s first saw it.
        assert_eq!(lag(&history, 15, now), (7.0, false));
        // Older than the history: at least 12 s.
        assert_eq!(lag(&history, 5, now), (12.0, true));
    }

    #[test]
    fn thresholds_are_inclusive_and_the_report_takes_the_worst() {
        let config = HealthSection::default();
        let now = Instant::now();
        let mut r = reading();
        r.logger.queue_len = 79;
        let report = judge(&config, Duration::from_secs(600), &r, &[], now, 0);
        assert_eq!(check(&report, "queue_fill").state, State::Ok);
        assert_eq!(report.state, State::Ok, "{report:#?}");
        r.logger.queue_len = 80;
        let report = judge(&config, Duration::from_secs(600), &r, &[], now, 0);
        assert_eq!(check(&report, "queue_fill").state, State::Warning);
        assert_eq!(report.state, State::Warning);
        r.logger.queue_len = 95;
        r.disk_free = Some(config.disk_free_critical_bytes);
        let report = judge(&config, Duration::from_secs(600), &r, &[], now, 0);
        assert_eq!(check(&report, "queue_fill").state, State::Critical);
        assert_eq!(check(&report, "disk_free").state, State::Critical);
        r.disk_free = Some(config.disk_free_critical_bytes + 1);
        let report = judge(&config, Duration::from_secs(600), &r, &[], now, 0);
        assert_eq!(check(&report, "disk_free").state, State::Warning);
    }

    #[test]
    fn the_lake_may_lag_by_its_roll_interval_before_it_warns() {
        let config = HealthSection::default();
        let t0 = Instant::now();
        let history = [point(t0, 1), point(t0 + Duration::from_secs(1), 2)];
        let mut r = reading();
        r.store.wal_seq = 2;
        r.store.hot_seq = 2;
        r.store.journal_seq = 2;
        r.store.lake_seq = 0;
        let now = t0 + Duration::from_secs(300);
        let report = judge(&config, Duration::from_secs(600), &r, &history, now, 0);
        assert_eq!(check(&report, "lag.lake").state, State::Ok);
        assert_eq!(check(&report, "lag.hot").state, State::Ok);
        r.store.hot_seq = 1;
        let report = judge(&config, Duration::from_secs(600), &r, &history, now, 0);
        assert_eq!(check(&report, "lag.hot").state, State::Warning);
        let now = t0 + Duration::from_secs(601 + 60);
        let report = judge(&config, Duration::from_secs(600), &r, &history, now, 0);
        assert_eq!(check(&report, "lag.lake").state, State::Warning);
    }

    #[test]
    fn drops_count_in_the_window_and_debug_shedding_is_not_a_problem() {
        let config = HealthSection::default();
        let t0 = Instant::now();
        let info = Level::Info.index();
        let mut old = point(t0, 0);
        old.dropped[info] = 5;
        let history = [old, point(t0 + Duration::from_secs(90), 0)];
        let mut r = reading();
        r.logger.dropped_debug_shed = 1000;
        r.logger.dropped_queue_full.0[info] = 5;
        let now = t0 + Duration::from_secs(120);
        let report = judge(&config, Duration::from_secs(600), &r, &history, now, 0);
        assert_eq!(check(&report, "drops.debug").state, State::Ok);
        // The five INFO drops happened before the window: ok.
        assert_eq!(check(&report, "drops.info").state, State::Ok);
        assert_eq!(check(&report, "drops.info").value, Some(0.0));
        // Two more inside it: a warning; CRITICAL drops are critical.
        r.logger.dropped_queue_full.0[info] = 7;
        r.logger.dropped_queue_full.0[Level::Critical.index()] = 1;
        let report = judge(&config, Duration::from_secs(600), &r, &history, now, 0);
        assert_eq!(check(&report, "drops.info").state, State::Warning);
        assert_eq!(check(&report, "drops.info").value, Some(2.0));
        assert_eq!(check(&report, "drops.critical").state, State::Critical);
        assert_eq!(report.state, State::Critical);
    }

    #[test]
    fn each_change_of_state_is_one_transition() {
        let mut r = reading();
        r.disk_free = Some(0);
        let config = HealthSection::default();
        let report = judge(
            &config,
            Duration::from_secs(600),
            &r,
            &[],
            Instant::now(),
            0,
        );
        let disk = check(&report, "disk_free").clone();
        let n = notice(&Transition {
            check: disk,
            from: Some(State::Ok),
        });
        assert_eq!(n.severity, "critical");
        assert_eq!(n.dimensions["check"], "disk_free");
        assert_eq!(n.dimensions["state"], "critical");
        assert!(
            n.message.starts_with("disk_free is critical: 0 B free"),
            "{}",
            n.message
        );
    }
}
