//! What the dashboard shows and what each key does to it. No terminal and no
//! network here: [`Dashboard::apply`] takes what the feed sent,
//! [`Dashboard::key`] takes a key, and [`Dashboard::wants`] tells the feed
//! which queries the screen needs now.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Map, Value};

use super::feed::{FeedRow, Rows, Update};
use crate::event::{Level, Mode, Table};
use crate::gates::GatesConfig;

/// The screens, in the order of their number keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tab {
    Live,
    Gates,
    Shadow,
    Trades,
    Latency,
    Alerts,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Live,
        Tab::Gates,
        Tab::Shadow,
        Tab::Trades,
        Tab::Latency,
        Tab::Alerts,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Live => "Live",
            Tab::Gates => "Gates",
            Tab::Shadow => "Shadow trades",
            Tab::Trades => "Trades & models",
            Tab::Latency => "Latency",
            Tab::Alerts => "Alerts",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// One query result the screen shows. The SQL of each is in
/// [`super::feed::sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    Queue,
    Drops,
    KillSwitch,
    Health,
    Pnl,
    GatePassRate,
    BlockQuality,
    Rejections,
    Shadow,
    Sweep,
    OpenTrades,
    ClosedToday,
    WinByMode,
    WinByRegime,
    Production,
    Calibration,
    StepStats,
    Bottlenecks,
    Alerts,
    Deliveries,
}

impl Panel {
    /// Queried whatever the tab: the header's numbers.
    pub const STATUS: [Panel; 4] = [Panel::Queue, Panel::Drops, Panel::KillSwitch, Panel::Health];

    /// The panels a tab draws besides the header's.
    pub fn of(tab: Tab) -> &'static [Panel] {
        match tab {
            Tab::Live => &[Panel::Pnl],
            Tab::Gates => &[Panel::GatePassRate, Panel::BlockQuality, Panel::Rejections],
            Tab::Shadow => &[Panel::Shadow, Panel::Sweep],
            Tab::Trades => &[
                Panel::OpenTrades,
                Panel::ClosedToday,
                Panel::WinByMode,
                Panel::WinByRegime,
                Panel::Production,
                Panel::Calibration,
            ],
            Tab::Latency => &[Panel::StepStats, Panel::Bottlenecks],
            Tab::Alerts => &[Panel::Alerts, Panel::Deliveries],
        }
    }
}

/// A panel's last answer, when it came, and the last error (a timeout, a
/// lost server), kept beside the last good rows.
#[derive(Debug, Clone, Default)]
pub struct PanelData {
    pub rows: Option<Rows>,
    pub at: Option<Instant>,
    pub error: Option<String>,
}

/// The connection to the server, as the feed last saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Up,
    Down(String),
}

/// What the feed should fetch now: the visible tab's panels, the gate and
/// mode of the threshold sweep, and the rejection to explain.
#[derive(Debug, Clone, PartialEq)]
pub struct Wants {
    pub tab: Tab,
    pub sweep_gate: String,
    pub sweep_mode: Mode,
    pub explain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Which events the live feed shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedFilter {
    pub table: Option<Table>,
    /// Exact symbol, case-insensitive.
    pub symbol: Option<String>,
    /// This level and above.
    pub level_min: Option<Level>,
}

impl FeedFilter {
    pub fn matches(&self, row: &FeedRow) -> bool {
        self.table.is_none_or(|t| t.name() == row.table)
            && self
                .symbol
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&row.symbol))
            && self.level_min.is_none_or(|min| {
                row.level
                    .parse::<Level>()
                    .is_ok_and(|l| l.index() >= min.index())
            })
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.table {
            parts.push(format!("table={}", t.name()));
        }
        if let Some(s) = &self.symbol {
            parts.push(format!("symbol={s}"));
        }
        if let Some(l) = self.level_min {
            parts.push(format!("level>={}", l.as_str()));
        }
        if parts.is_empty() {
            "all events".into()
        } else {
            parts.join(" ")
        }
    }
}

/// How many throughput samples the sparkline keeps (one per refresh).
pub const THROUGHPUT_SAMPLES_MAX: usize = 240;
/// The span of queue samples events/s is measured over.
pub const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything on screen.
pub struct Dashboard {
    pub url: String,
    pub gates: GatesConfig,
    pub tab: Tab,
    pub help: bool,
    pub connection: Connection,
    pub panels: HashMap<Panel, PanelData>,
    pub feed: VecDeque<FeedRow>,
    pub feed_rows_max: usize,
    pub filter: FeedFilter,
    /// The symbol being typed after `/`, until Enter or Esc.
    pub symbol_input: Option<String>,
    pub paused: bool,
    /// The last WAL sequence the tail reported (events or heartbeats).
    pub last_seq: Option<u64>,
    /// Sequences the tail skipped (a reader too slow, records gone from the WAL).
    pub gap_sequences: u64,
    /// Rows written per second, one sample per queue refresh, oldest first.
    pub throughput: VecDeque<u64>,
    /// Recent `rows_written` samples, within [`RATE_WINDOW`].
    rows_written: VecDeque<(Instant, u64)>,
    pub rejection: usize,
    pub shadow: usize,
    /// The column the shadow trades are sorted by, and whether descending.
    pub shadow_sort: (usize, bool),
    pub sweep_gate: usize,
    pub sweep_mode: Mode,
    /// The explanation of a rejection: its decision id and the text, or why
    /// it could not be had.
    pub explanation: Option<(String, Result<String, String>)>,
}

/// The shadow trades' columns, in the order `s` cycles through them.
pub const SHADOW_COLUMNS: [&str; 8] = [
    "blocked_ts",
    "symbol",
    "mode",
    "regime",
    "blocked_by",
    "resolution",
    "block",
    "outcome_pnl_bps",
];

impl Dashboard {
    pub fn new(url: String, gates: GatesConfig, feed_rows_max: usize) -> Self {
        Self {
            url,
            gates,
            tab: Tab::Live,
            help: false,
            connection: Connection::Connecting,
            panels: HashMap::new(),
            feed: VecDeque::new(),
            feed_rows_max: feed_rows_max.max(1),
            filter: FeedFilter::default(),
            symbol_input: None,
            paused: false,
            last_seq: None,
            gap_sequences: 0,
            throughput: VecDeque::new(),
            rows_written: VecDeque::new(),
            rejection: 0,
            shadow: 0,
            shadow_sort: (0, true),
            sweep_gate: 0,
            sweep_mode: Mode::Scalp,
            explanation: None,
        }
    }

    pub fn panel(&self, panel: Panel) -> Option<&PanelData> {
        self.panels.get(&panel)
    }

    pub fn rows(&self, panel: Panel) -> &[Map<String, Value>] {
        self.panels
            .get(&panel)
            .and_then(|p| p.rows.as_ref())
            .map_or(&[], |r| r.rows.as_slice())
    }

    /// The first row's value of `column` in `panel`.
    pub fn value(&self, panel: Panel, column: &str) -> Option<&Value> {
        self.rows(panel).first().and_then(|r| r.get(column))
    }

    pub fn apply(&mut self, update: Update, now: Instant) {
        match update {
            Update::Connection(Ok(())) => self.connection = Connection::Up,
            Update::Connection(Err(e)) => self.connection = Connection::Down(e),
            Update::Panel(panel, result) => {
                // New rows arrive on top: the selection stays on its row.
                let selected = self.selected_ids();
                let data = self.panels.entry(panel).or_default();
                match result {
                    Ok(rows) => {
                        data.rows = Some(rows);
                        data.at = Some(now);
                        data.error = None;
                        if panel == Panel::Queue {
                            self.sample_throughput(now);
                        }
                    }
                    Err(e) => data.error = Some(e),
                }
                self.reselect(selected);
            }
            Update::Events(rows) => {
                if let Some(last) = rows.last() {
                    self.last_seq = Some(last.seq);
                }
                if !self.paused {
                    self.feed.extend(rows);
                    while self.feed.len() > self.feed_rows_max {
                        self.feed.pop_front();
                    }
                }
            }
            Update::Heartbeat(seq) => self.last_seq = Some(seq),
            Update::Gap { from, to } => {
                self.gap_sequences += to.saturating_sub(from) + 1;
                self.last_seq = Some(to);
            }
            Update::Explanation(id, text) => self.explanation = Some((id, text)),
        }
    }

    /// Rows written per second over the last [`RATE_WINDOW`] of queue
    /// samples: the writer commits in batches, so two samples a moment apart
    /// may see none.
    fn sample_throughput(&mut self, now: Instant) {
        let Some(written) = self
            .value(Panel::Queue, "rows_written")
            .and_then(Value::as_u64)
        else {
            return;
        };
        self.rows_written.push_back((now, written));
        while self.rows_written.len() > 2
            && self
                .rows_written
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.rows_written.pop_front();
        }
        let (Some((t0, w0)), Some((t1, w1))) =
            (self.rows_written.front(), self.rows_written.back())
        else {
            return;
        };
        let seconds = t1.saturating_duration_since(*t0).as_secs_f64();
        if seconds > 0.0 {
            let rate = w1.saturating_sub(*w0) as f64 / seconds;
            self.throughput.push_back(rate.round() as u64);
            while self.throughput.len() > THROUGHPUT_SAMPLES_MAX {
                self.throughput.pop_front();
            }
        }
    }

    /// The feed's rows that pass the filter, newest last.
    pub fn feed_shown(&self) -> impl DoubleEndedIterator<Item = &FeedRow> {
        self.feed.iter().filter(|r| self.filter.matches(r))
    }

    /// The shadow trades in the chosen order.
    pub fn shadow_rows(&self) -> Vec<&Map<String, Value>> {
        let mut rows: Vec<&Map<String, Value>> = self.rows(Panel::Shadow).iter().collect();
        let (column, descending) = self.shadow_sort;
        let key = SHADOW_COLUMNS[column.min(SHADOW_COLUMNS.len() - 1)];
        rows.sort_by(|a, b| {
            let order = compare(a.get(key), b.get(key));
            if descending { order.reverse() } else { order }
        });
        rows
    }

    /// The selected rejection's decision id.
    pub fn selected_rejection(&self) -> Option<&str> {
        self.rows(Panel::Rejections)
            .get(self.rejection)
            .and_then(|r| r.get("decision_id"))
            .and_then(Value::as_str)
    }

    pub fn sweep_gate_name(&self) -> String {
        self.gates
            .gates
            .get(self.sweep_gate)
            .map_or_else(String::new, |g| g.gate.as_str().to_string())
    }

    pub fn wants(&self) -> Wants {
        Wants {
            tab: self.tab,
            sweep_gate: self.sweep_gate_name(),
            sweep_mode: self.sweep_mode,
            explain: (self.tab == Tab::Gates)
                .then(|| self.selected_rejection().map(str::to_string))
                .flatten(),
        }
    }

    /// The ids of the selected rejection and shadow trade.
    fn selected_ids(&self) -> (Option<String>, Option<String>) {
        let id = |row: Option<&Map<String, Value>>, key: &str| {
            row.and_then(|r| r.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        (
            id(
                self.rows(Panel::Rejections).get(self.rejection),
                "decision_id",
            ),
            id(self.shadow_rows().get(self.shadow).copied(), "shadow_id"),
        )
    }

    /// Puts the selections back on the rows with these ids, or, when those
    /// rows are gone, keeps the position within the new rows.
    fn reselect(&mut self, (rejection, shadow): (Option<String>, Option<String>)) {
        let position = |rows: Vec<&Map<String, Value>>, key: &str, id: Option<String>| {
            let id = id?;
            rows.iter()
                .position(|r| r.get(key).and_then(Value::as_str) == Some(id.as_str()))
        };
        if let Some(i) = position(
            self.rows(Panel::Rejections).iter().collect(),
            "decision_id",
            rejection,
        ) {
            self.rejection = i;
        }
        if let Some(i) = position(self.shadow_rows(), "shadow_id", shadow) {
            self.shadow = i;
        }
        let rejections = self.rows(Panel::Rejections).len();
        self.rejection = self.rejection.min(rejections.saturating_sub(1));
        let shadows = self.rows(Panel::Shadow).len();
        self.shadow = self.shadow.min(shadows.saturating_sub(1));
    }

    /// Applies one key press.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Flow::Quit;
        }
        if let Some(input) = self.symbol_input.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    let symbol = input.trim().to_string();
                    self.filter.symbol = (!symbol.is_empty()).then_some(symbol);
                    self.symbol_input = None;
                }
                KeyCode::Esc => self.symbol_input = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                // Symbols are `[A-Za-z0-9._-]{1,32}`: nothing else is typed.
                KeyCode::Char(c)
                    if (c.is_ascii_alphanumeric() || "._-".contains(c)) && input.len() < 32 =>
                {
                    input.push(c);
                }
                _ => {}
            }
            return Flow::Continue;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return if key.code == KeyCode::Char('q') {
                Flow::Quit
            } else {
                Flow::Continue
            };
        }
        match key.code {
            KeyCode::Char('q') => return Flow::Quit,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char(c @ '1'..='6') => {
                self.tab = Tab::ALL[c as usize - '1' as usize];
            }
            KeyCode::Tab | KeyCode::Right => self.tab = self.tab.step(1),
            KeyCode::BackTab | KeyCode::Left => self.tab = self.tab.step(-1),
            _ => self.tab_key(key.code),
        }
        Flow::Continue
    }

    fn tab_key(&mut self, code: KeyCode) {
        match (self.tab, code) {
            (Tab::Live, KeyCode::Char('t')) => {
                // all -> each table in turn -> all
                self.filter.table = match self.filter.table {
                    None => Table::ALL.first().copied(),
                    Some(t) => Table::ALL
                        .iter()
                        .position(|x| *x == t)
                        .and_then(|i| Table::ALL.get(i + 1))
                        .copied(),
                };
            }
            (Tab::Live, KeyCode::Char('l')) => {
                self.filter.level_min = match self.filter.level_min {
                    None => Some(Level::Info),
                    Some(l) => Level::ALL.get(l.index() + 1).copied(),
                };
            }
            (Tab::Live, KeyCode::Char('/')) => {
                self.symbol_input = Some(self.filter.symbol.clone().unwrap_or_default());
            }
            (Tab::Live, KeyCode::Char('c')) => self.filter = FeedFilter::default(),
            (Tab::Live, KeyCode::Char(' ')) => self.paused = !self.paused,
            (Tab::Gates, KeyCode::Down | KeyCode::Char('j')) => {
                let n = self.rows(Panel::Rejections).len();
                self.rejection = (self.rejection + 1).min(n.saturating_sub(1));
            }
            (Tab::Gates, KeyCode::Up | KeyCode::Char('k')) => {
                self.rejection = self.rejection.saturating_sub(1);
            }
            (Tab::Shadow, KeyCode::Down | KeyCode::Char('j')) => {
                let n = self.rows(Panel::Shadow).len();
                self.shadow = (self.shadow + 1).min(n.saturating_sub(1));
            }
            (Tab::Shadow, KeyCode::Up | KeyCode::Char('k')) => {
                self.shadow = self.shadow.saturating_sub(1);
            }
            (Tab::Shadow, KeyCode::Char('s')) => {
                self.shadow_sort.0 = (self.shadow_sort.0 + 1) % SHADOW_COLUMNS.len();
            }
            (Tab::Shadow, KeyCode::Char('r')) => self.shadow_sort.1 = !self.shadow_sort.1,
            (Tab::Shadow, KeyCode::Char('g')) => {
                self.sweep_gate = (self.sweep_gate + 1) % self.gates.gates.len().max(1);
                self.panels.remove(&Panel::Sweep);
            }
            (Tab::Shadow, KeyCode::Char('m')) => {
                self.sweep_mode = match self.sweep_mode {
                    Mode::Scalp => Mode::Runner,
                    Mode::Runner => Mode::Scalp,
                };
                self.panels.remove(&Panel::Sweep);
            }
            _ => {}
        }
    }
}

/// Orders JSON values: numbers by value, then text, nulls last.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (x, y) => x.map(Value::to_string).cmp(&y.map(Value::to_string)),
    }
}

/// The keys, as `?` shows them.
pub const HELP: &[(&str, &str)] = &[
    ("1-6, Tab, Shift-Tab, ←/→", "switch tabs"),
    ("?", "this help (any key closes it)"),
    ("q, Ctrl-C", "quit"),
    ("Live: t", "cycle the table filter"),
    ("Live: l", "cycle the minimum level"),
    ("Live: /", "filter by symbol (Enter applies, Esc cancels)"),
    ("Live: c", "clear the filters"),
    ("Live: space", "pause or resume the feed"),
    (
        "Gates: j/k, ↓/↑",
        "select a rejection: its explanation shows",
    ),
    ("Shadow: j/k, ↓/↑", "select a shadow trade"),
    ("Shadow: s, r", "sort by the next column, reverse"),
    ("Shadow: g, m", "the sweep's gate, its mode"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEvent;

    fn dashboard() -> Dashboard {
        Dashboard::new(
            "grpc://127.0.0.1:50051".into(),
            GatesConfig::builtin().unwrap(),
            3,
        )
    }

    fn press(d: &mut Dashboard, code: KeyCode) -> Flow {
        d.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn event(seq: u64, table: &str, symbol: &str, level: &str) -> FeedRow {
        FeedRow {
            seq,
            ts: "2026-12-03T09:00:00Z".into(),
            table: table.into(),
            symbol: symbol.into(),
            level: level.into(),
            text: String::new(),
        }
    }

    #[test]
    fn the_feed_keeps_at_most_feed_rows_max_events_the_newest() {
        let mut d = dashboard();
        let now = Instant::now();
        d.apply(
            Update::Events(
                (1..=5)
                    .map(|s| event(s, "signals", "BTC-USD", "INFO"))
                    .collect(),
            ),
            now,
        );
        assert_eq!(d.feed.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(d.last_seq, Some(5));
        // Paused: the resume point moves, the screen does not.
        press(&mut d, KeyCode::Char(' '));
        d.apply(
            Update::Events(vec![event(6, "signals", "BTC-USD", "INFO")]),
            now,
        );
        assert_eq!(d.feed.back().map(|r| r.seq), Some(5));
        assert_eq!(d.last_seq, Some(6));
    }

    #[test]
    fn filters_cycle_and_combine() {
        let mut d = dashboard();
        d.feed_rows_max = 10;
        d.apply(
            Update::Events(vec![
                event(1, "signals", "BTC-USD", "DEBUG"),
                event(2, "trades", "ETH-USD", "INFO"),
                event(3, "signals", "eth-usd", "WARNING"),
            ]),
            Instant::now(),
        );
        press(&mut d, KeyCode::Char('t'));
        assert_eq!(d.filter.table, Some(Table::ALL[0]));
        assert_eq!(Table::ALL[0].name(), "signals");
        assert_eq!(d.feed_shown().map(|r| r.seq).collect::<Vec<_>>(), [1, 3]);
        press(&mut d, KeyCode::Char('l'));
        assert_eq!(d.feed_shown().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        press(&mut d, KeyCode::Char('c'));
        press(&mut d, KeyCode::Char('/'));
        for c in "ETH-USD!".chars() {
            press(&mut d, KeyCode::Char(c));
        }
        // Typing `q` into the symbol box does not quit.
        assert_eq!(d.symbol_input.as_deref(), Some("ETH-USD"));
        press(&mut d, KeyCode::Enter);
        assert_eq!(d.feed_shown().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
        // The table filter walks every table and comes back to all.
        for _ in 0..=Table::ALL.len() {
            press(&mut d, KeyCode::Char('t'));
        }
        assert_eq!(d.filter.table, None);
    }

    #[test]
    fn tabs_switch_by_number_and_by_tab_and_q_quits() {
        let mut d = dashboard();
        press(&mut d, KeyCode::Char('3'));
        assert_eq!(d.tab, Tab::Shadow);
        press(&mut d, KeyCode::Tab);
        assert_eq!(d.tab, Tab::Trades);
        press(&mut d, KeyCode::BackTab);
        press(&mut d, KeyCode::BackTab);
        press(&mut d, KeyCode::BackTab);
        press(&mut d, KeyCode::BackTab);
        assert_eq!(d.tab, Tab::Alerts);
        press(&mut d, KeyCode::Char('?'));
        assert!(d.help);
        assert_eq!(press(&mut d, KeyCode::Char('1')), Flow::Continue);
        assert!(!d.help);
        assert_eq!(
            d.tab,
            Tab::Alerts,
            "a key that closes the help does nothing else"
        );
        assert_eq!(press(&mut d, KeyCode::Char('q')), Flow::Quit);
        assert_eq!(
            d.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Flow::Quit
        );
    }

    fn rows(values: Vec<Value>) -> Rows {
        Rows {
            rows: values
                .into_iter()
                .filter_map(|v| v.as_object().cloned())
                .collect(),
        }
    }

    #[test]
    fn the_selected_rejection_is_what_the_feed_is_asked_to_explain() {
        let mut d = dashboard();
        d.apply(
            Update::Panel(
                Panel::Rejections,
                Ok(rows(vec![
                    serde_json::json!({"decision_id": "a"}),
                    serde_json::json!({"decision_id": "b"}),
                ])),
            ),
            Instant::now(),
        );
        assert_eq!(d.wants().explain, None, "only the gates tab explains");
        press(&mut d, KeyCode::Char('2'));
        assert_eq!(d.wants().explain.as_deref(), Some("a"));
        press(&mut d, KeyCode::Char('j'));
        press(&mut d, KeyCode::Char('j'));
        assert_eq!(
            d.wants().explain.as_deref(),
            Some("b"),
            "the selection stops at the end"
        );
        // New rejections on top: the selection stays on "b".
        d.apply(
            Update::Panel(
                Panel::Rejections,
                Ok(rows(vec![
                    serde_json::json!({"decision_id": "new"}),
                    serde_json::json!({"decision_id": "a"}),
                    serde_json::json!({"decision_id": "b"}),
                ])),
            ),
            Instant::now(),
        );
        assert_eq!(d.rejection, 2);
        assert_eq!(d.wants().explain.as_deref(), Some("b"));
        // "b" gone and fewer rows: the selection stays in range.
        d.apply(
            Update::Panel(
                Panel::Rejections,
                Ok(rows(vec![serde_json::json!({"decision_id": "c"})])),
            ),
            Instant::now(),
        );
        assert_eq!(d.wants().explain.as_deref(), Some("c"));
    }

    #[test]
    fn shadow_trades_sort_by_the_chosen_column_nulls_last_when_descending() {
        let mut d = dashboard();
        d.apply(
            Update::Panel(
                Panel::Shadow,
                Ok(rows(vec![
                    serde_json::json!({"blocked_ts": "2026-12-03T09:00:01Z", "outcome_pnl_bps": -3.5}),
                    serde_json::json!({"blocked_ts": "2026-12-03T09:00:03Z"}),
                    serde_json::json!({"blocked_ts": "2026-12-03T09:00:02Z", "outcome_pnl_bps": 12.0}),
                ])),
            ),
            Instant::now(),
        );
        let ts = |d: &Dashboard| -> Vec<String> {
            d.shadow_rows()
                .iter()
                .map(|r| r["blocked_ts"].as_str().unwrap_or("")[17..19].to_string())
                .collect()
        };
        assert_eq!(ts(&d), ["03", "02", "01"], "newest first by default");
        press(&mut d, KeyCode::Char('3'));
        for _ in 0..7 {
            press(&mut d, KeyCode::Char('s'));
        }
        assert_eq!(SHADOW_COLUMNS[d.shadow_sort.0], "outcome_pnl_bps");
        assert_eq!(ts(&d), ["02", "01", "03"]);
        press(&mut d, KeyCode::Char('r'));
        assert_eq!(ts(&d), ["03", "01", "02"]);
    }

    #[test]
    fn throughput_is_rows_written_per_second_between_queue_samples() {
        let mut d = dashboard();
        let t0 = Instant::now();
        let queue = |n: u64| rows(vec![serde_json::json!({"rows_written": n})]);
        d.apply(Update::Panel(Panel::Queue, Ok(queue(1_000))), t0);
        d.apply(
            Update::Panel(Panel::Queue, Ok(queue(5_000))),
            t0 + std::time::Duration::from_secs(2),
        );
        assert_eq!(d.throughput.iter().copied().collect::<Vec<_>>(), [2_000]);
        // A sample a moment later that saw no commit does not read as 0/s.
        d.apply(
            Update::Panel(Panel::Queue, Ok(queue(5_000))),
            t0 + std::time::Duration::from_millis(2_500),
        );
        assert_eq!(d.throughput.back(), Some(&1_600));
        // A failed refresh keeps the last rows and says why.
        d.apply(
            Update::Panel(Panel::Queue, Err("timed out after 5s".into())),
            t0,
        );
        let queue_panel = d.panel(Panel::Queue).unwrap();
        assert_eq!(queue_panel.error.as_deref(), Some("timed out after 5s"));
        assert_eq!(
            d.value(Panel::Queue, "rows_written"),
            Some(&serde_json::json!(5_000))
        );
        for i in 0..(THROUGHPUT_SAMPLES_MAX as u64 + 10) {
            d.apply(
                Update::Panel(Panel::Queue, Ok(queue(5_000 + i))),
                t0 + std::time::Duration::from_secs(3 + i),
            );
        }
        assert_eq!(d.throughput.len(), THROUGHPUT_SAMPLES_MAX);
    }
}
