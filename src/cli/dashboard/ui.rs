//! Draws the dashboard: a tab bar, a status line (events/s, queue fill,
//! kill switch, drops, lags, health, the tail's sequence), a banner while
//! the server is away, the tab's panels, and a key line. Each panel's title
//! carries the age of its data, and the error of its last refresh if it
//! failed. A function of the state and the clock, nothing else.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};
use serde_json::{Map, Value};

use super::state::{Connection, Dashboard, HELP, Panel, SHADOW_COLUMNS, Tab};
use crate::event::{Gate, Mode};

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);
const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const GOOD: Style = Style::new().fg(Color::Green);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);

pub fn draw(frame: &mut Frame, d: &Dashboard, now: Instant) {
    let down = matches!(d.connection, Connection::Down(_));
    let [tabs, status, banner, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(u16::from(down)),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_tabs(frame, tabs, d);
    frame.render_widget(Paragraph::new(status_line(d)), status);
    if let Connection::Down(e) = &d.connection {
        let text =
            format!("server unreachable ({e}); reconnecting, the panels show their last data");
        frame.render_widget(Paragraph::new(text).style(BAD), banner);
    }
    match d.tab {
        Tab::Live => draw_live(frame, body, d, now),
        Tab::Gates => draw_gates(frame, body, d, now),
        Tab::Shadow => draw_shadow(frame, body, d, now),
        Tab::Trades => draw_trades(frame, body, d, now),
        Tab::Latency => draw_latency(frame, body, d, now),
        Tab::Alerts => draw_alerts(frame, body, d, now),
    }
    frame.render_widget(Paragraph::new(key_line(d)).style(DIM), keys);
    if d.help {
        draw_help(frame, frame.area());
    }
}

fn draw_tabs(frame: &mut Frame, area: Rect, d: &Dashboard) {
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    let selected = Tab::ALL.iter().position(|t| *t == d.tab).unwrap_or(0);
    let connection = match &d.connection {
        Connection::Connecting => Span::styled(format!("connecting to {}", d.url), WARN),
        Connection::Up => Span::styled(format!("● {}", d.url), GOOD),
        Connection::Down(_) => Span::styled(format!("✗ {}", d.url), BAD),
    };
    let width = u16::try_from(connection.width()).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(width)]).areas(area);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(BOLD.add_modifier(Modifier::REVERSED))
            .divider("│"),
        left,
    );
    frame.render_widget(Paragraph::new(Line::from(connection)), right);
}

fn status_line(d: &Dashboard) -> Line<'static> {
    let mut spans = Vec::new();
    let rate = d.throughput.back().copied();
    spans.push(Span::raw(format!(
        "events/s {}",
        rate.map_or_else(|| "-".into(), |r| thousands(r as f64))
    )));
    let fill = d.value(Panel::Queue, "fill").and_then(Value::as_f64);
    let fill_style = match fill {
        Some(f) if f >= 0.8 => BAD,
        Some(f) if f >= 0.5 => WARN,
        _ => Style::new(),
    };
    spans.push(Span::raw("  queue "));
    spans.push(Span::styled(
        fill.map_or_else(|| "-".into(), |f| format!("{:.0}%", f * 100.0)),
        fill_style,
    ));
    let tripped = d
        .value(Panel::KillSwitch, "tripped")
        .and_then(Value::as_bool);
    spans.push(Span::raw("  kill switch "));
    spans.push(match tripped {
        Some(true) => Span::styled("TRIPPED", BAD),
        Some(false) => Span::styled("armed", GOOD),
        None => Span::raw("-"),
    });
    let dropped = d.value(Panel::Drops, "dropped").and_then(Value::as_f64);
    spans.push(Span::raw("  drops "));
    spans.push(Span::styled(
        dropped.map_or_else(|| "-".into(), thousands),
        if dropped.unwrap_or(0.0) > 0.0 {
            WARN
        } else {
            Style::new()
        },
    ));
    spans.push(Span::raw("  lag"));
    for part in ["hot", "lake", "journal"] {
        let check = format!("lag.{part}");
        let row = d
            .rows(Panel::Health)
            .iter()
            .find(|r| r.get("check").and_then(Value::as_str) == Some(&check));
        let value = row.and_then(|r| r.get("value")).and_then(Value::as_f64);
        let state = row.and_then(|r| r.get("state")).and_then(Value::as_str);
        spans.push(Span::raw(format!(" {part} ")));
        spans.push(Span::styled(
            value.map_or_else(|| "-".into(), |v| format!("{v:.0}s")),
            state_style(state),
        ));
    }
    let worst = d
        .rows(Panel::Health)
        .first()
        .and_then(|r| r.get("state"))
        .and_then(Value::as_str);
    spans.push(Span::raw("  health "));
    spans.push(Span::styled(
        worst.unwrap_or("-").to_string(),
        state_style(worst),
    ));
    if let Some(seq) = d.last_seq {
        spans.push(Span::styled(format!("  seq #{seq}"), DIM));
    }
    if d.gap_sequences > 0 {
        spans.push(Span::styled(
            format!("  {} sequences skipped", d.gap_sequences),
            WARN,
        ));
    }
    Line::from(spans)
}

fn state_style(state: Option<&str>) -> Style {
    match state {
        Some("critical") => BAD,
        Some("warning") => WARN,
        Some("ok") => GOOD,
        _ => Style::new(),
    }
}

fn key_line(d: &Dashboard) -> String {
    if let Some(input) = &d.symbol_input {
        return format!("symbol: {input}▏  Enter applies, Esc cancels");
    }
    let tab = match d.tab {
        Tab::Live => format!(
            "t table  l level  / symbol  c clear  space {}  [{}]",
            if d.paused { "resume" } else { "pause" },
            d.filter.describe()
        ),
        Tab::Gates => "j/k select a rejection".into(),
        Tab::Shadow => format!(
            "j/k select  s sort ({}{})  r reverse  g gate  m mode",
            SHADOW_COLUMNS[d.shadow_sort.0],
            if d.shadow_sort.1 { " ↓" } else { " ↑" }
        ),
        _ => String::new(),
    };
    format!("? keys  q quit  1-6 tabs  {tab}")
}

/// A panel's border, titled with the age of its data and its last error.
fn block(d: &Dashboard, title: &str, panel: Panel, now: Instant) -> Block<'static> {
    let data = d.panel(panel);
    let age = data.and_then(|p| p.at).map_or_else(
        || "loading".to_string(),
        |at| format!("{}s ago", now.saturating_duration_since(at).as_secs()),
    );
    let mut title = vec![
        Span::styled(format!(" {title} "), BOLD),
        Span::styled(format!("{age} "), DIM),
    ];
    if let Some(e) = data.and_then(|p| p.error.as_ref()) {
        title.push(Span::styled(
            format!("refresh failed: {} ", one_line(e, 60)),
            BAD,
        ));
    }
    Block::default()
        .borders(Borders::ALL)
        .title(Line::from(title))
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}

// ---- Live ----

fn draw_live(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [sparks, feed] = Layout::vertical([Constraint::Length(5), Constraint::Min(0)]).areas(area);
    let [throughput, pnl] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sparks);
    let samples: Vec<u64> = d.throughput.iter().copied().collect();
    let peak = samples.iter().max().copied().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " events/s, last {} refreshes (peak {}) ",
                samples.len(),
                thousands(peak as f64)
            )))
            .data(tail_of(&samples, throughput.width.saturating_sub(2)))
            .style(GOOD),
        throughput,
    );
    // Cumulative P&L per minute over the last 30 minutes, shifted to start at 0.
    let mut total = 0.0;
    let cumulative: Vec<f64> = d
        .rows(Panel::Pnl)
        .iter()
        .map(|r| {
            total += r.get("pnl_bps").and_then(Value::as_f64).unwrap_or(0.0);
            total
        })
        .collect();
    let low = cumulative.iter().copied().fold(0.0_f64, f64::min);
    let bars: Vec<u64> = cumulative
        .iter()
        .map(|v| (v - low).round() as u64)
        .collect();
    let pnl_title = format!(
        " P&L, 30 min: {} bps  {}",
        signed(total, 1),
        age(d, Panel::Pnl, now)
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(pnl_title))
            .data(tail_of(&bars, pnl.width.saturating_sub(2)))
            .style(if total >= 0.0 { GOOD } else { BAD }),
        pnl,
    );
    let shown: Vec<_> = d.feed_shown().collect();
    let height = usize::from(feed.height.saturating_sub(3));
    let rows = shown.iter().rev().take(height).map(|r| {
        let level_style = match r.level.as_str() {
            "CRITICAL" | "ERROR" => BAD,
            "WARNING" => WARN,
            "DEBUG" => DIM,
            _ => Style::new(),
        };
        Row::new(vec![
            Cell::from(format!("#{}", r.seq)),
            Cell::from(clock(&r.ts)),
            Cell::from(r.table.clone()),
            Cell::from(r.symbol.clone()),
            Cell::from(r.level.clone()).style(level_style),
            Cell::from(r.text.trim_start().to_string()),
        ])
    });
    let title = format!(
        " Feed: {} of {} kept ({}){} ",
        shown.len(),
        d.feed.len(),
        d.filter.describe(),
        if d.paused { ", PAUSED" } else { "" }
    );
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(14),
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(header(&[
            "seq", "time", "table", "symbol", "level", "fields",
        ]))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(title, BOLD)),
        ),
        feed,
    );
}

fn age(d: &Dashboard, panel: Panel, now: Instant) -> String {
    d.panel(panel).and_then(|p| p.at).map_or_else(
        || "loading ".into(),
        |at| format!("{}s ago ", now.saturating_duration_since(at).as_secs()),
    )
}

/// The newest `width` samples (a sparkline draws from the left).
fn tail_of(samples: &[u64], width: u16) -> &[u64] {
    &samples[samples.len().saturating_sub(usize::from(width))..]
}

// ---- Gates ----

fn draw_gates(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [top, bottom] = Layout::vertical([Constraint::Length(15), Constraint::Min(0)]).areas(area);
    let day = d
        .value(Panel::GatePassRate, "day")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let mut rows = Vec::new();
    for def in &d.gates.gates {
        for &mode in Mode::ALL {
            let pass = find(d, Panel::GatePassRate, def.gate, mode)
                .and_then(|r| r.get("value"))
                .and_then(Value::as_f64);
            let [lo, hi] = *def.pass_rate_target.get(mode);
            let (verdict, style) = match pass {
                None => ("no data", DIM),
                Some(p) if p < lo => ("below", WARN),
                Some(p) if p > hi => ("above", WARN),
                Some(_) => ("on target", GOOD),
            };
            let quality = find(d, Panel::BlockQuality, def.gate, mode);
            let num = |k: &str| quality.and_then(|r| r.get(k)).and_then(Value::as_f64);
            let changed = def.history.last().map_or_else(
                || "-".into(),
                |c| format!("{} ({})", c.at.format("%Y-%m-%d"), one_line(&c.reason, 30)),
            );
            rows.push(Row::new(vec![
                Cell::from(def.gate.as_str()),
                Cell::from(mode.as_str()),
                Cell::from(pass.map_or_else(|| "-".into(), percent)),
                Cell::from(format!("{}–{}", percent(lo), percent(hi))),
                Cell::from(verdict).style(style),
                Cell::from(num("good_blocks").map_or_else(|| "-".into(), thousands)),
                Cell::from(num("bad_blocks").map_or_else(|| "-".into(), thousands)),
                Cell::from(num("saved_bps").map_or_else(|| "-".into(), |v| fixed(v, 1))),
                Cell::from(num("missed_bps").map_or_else(|| "-".into(), |v| fixed(v, 1))),
                Cell::from(trim_number(*def.thresholds.get(mode))),
                Cell::from(changed),
            ]));
        }
    }
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
        )
        .header(header(&[
            "gate",
            "mode",
            "pass",
            "target",
            "",
            "good",
            "bad",
            "saved",
            "missed",
            "threshold",
            "last change",
        ]))
        .block(block(
            d,
            &format!("Gates on {day}: pass rate against target, blocks (bps)"),
            Panel::GatePassRate,
            now,
        )),
        top,
    );
    let [list, explain] =
        Layout::horizontal([Constraint::Percentage(56), Constraint::Percentage(44)]).areas(bottom);
    let rejections = d.rows(Panel::Rejections);
    let rows = rejections.iter().map(|r| {
        Row::new(vec![
            Cell::from(seconds(text(r, "ts"))),
            Cell::from(text(r, "symbol").to_string()),
            Cell::from(text(r, "gate").to_string()),
            Cell::from(text(r, "mode").to_string()),
            Cell::from(number(r, "value", 3)),
            Cell::from(number(r, "threshold", 3)),
        ])
    });
    let mut state =
        TableState::default().with_selected((!rejections.is_empty()).then_some(d.rejection));
    frame.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(15),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(9),
            ],
        )
        .header(header(&[
            "time",
            "symbol",
            "gate",
            "mode",
            "value",
            "threshold",
        ]))
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶ ")
        .block(block(
            d,
            &format!("Recent rejections ({})", rejections.len()),
            Panel::Rejections,
            now,
        )),
        list,
        &mut state,
    );
    let (title, body) = match (&d.explanation, d.selected_rejection()) {
        (_, None) => (
            "Explanation".to_string(),
            "no rejection selected".to_string(),
        ),
        (Some((id, Ok(text))), Some(selected)) if id == selected => {
            (format!("Explanation of {}", short(id)), text.clone())
        }
        (Some((id, Err(e))), Some(selected)) if id == selected => (
            format!("Explanation of {}", short(id)),
            format!("could not explain: {e}"),
        ),
        (_, Some(selected)) => (
            format!("Explanation of {}", short(selected)),
            "loading…".into(),
        ),
    };
    frame.render_widget(
        Paragraph::new(body).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Span::styled(format!(" {title} "), BOLD)),
        ),
        explain,
    );
}

/// The row of `panel` for one gate and mode.
fn find(d: &Dashboard, panel: Panel, gate: Gate, mode: Mode) -> Option<&Map<String, Value>> {
    d.rows(panel).iter().find(|r| {
        r.get("gate").and_then(Value::as_str) == Some(gate.as_str())
            && r.get("mode").and_then(Value::as_str) == Some(mode.as_str())
    })
}

// ---- Shadow trades ----

fn draw_shadow(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [list, sweep] =
        // The sweep's six columns and their gaps fill 48 cells inside the border.
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(50)]).areas(area);
    let shadows = d.shadow_rows();
    let (good, bad, pending) = shadows.iter().fold((0, 0, 0), |(g, b, p), r| {
        match r.get("block").and_then(Value::as_str) {
            Some("good") => (g + 1, b, p),
            Some("bad") => (g, b + 1, p),
            _ => (g, b, p + 1),
        }
    });
    let rows = shadows.iter().map(|r| {
        let block_style = match text(r, "block") {
            "good" => GOOD,
            "bad" => BAD,
            _ => DIM,
        };
        Row::new(vec![
            Cell::from(seconds(text(r, "blocked_ts"))),
            Cell::from(text(r, "symbol").to_string()),
            Cell::from(text(r, "mode").to_string()),
            Cell::from(text(r, "regime").to_string()),
            Cell::from(text(r, "blocked_by").to_string()),
            Cell::from(text(r, "resolution").to_string()),
            Cell::from(text(r, "block").to_string()).style(block_style),
            Cell::from(
                r.get("outcome_pnl_bps")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "-".into(), |v| signed(v, 2)),
            ),
        ])
    });
    let mut state = TableState::default().with_selected((!shadows.is_empty()).then_some(d.shadow));
    frame.render_stateful_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(5),
                Constraint::Length(8),
            ],
        )
        .header(header(&[
            "blocked",
            "symbol",
            "mode",
            "regime",
            "blocked by",
            "resolved",
            "block",
            "P&L bps",
        ]))
        .row_highlight_style(SELECTED)
        .highlight_symbol("▶ ")
        .block(block(
            d,
            &format!(
                "Shadow trades: {} shown, {good} good and {bad} bad blocks, {pending} pending",
                shadows.len()
            ),
            Panel::Shadow,
            now,
        )),
        list,
        &mut state,
    );
    let rows = d.rows(Panel::Sweep).iter().map(|r| {
        Row::new(vec![
            Cell::from(number(r, "delta", 2)),
            Cell::from(number(r, "moved_threshold", 3)),
            Cell::from(number(r, "decisions", 0)),
            Cell::from(
                r.get("pass_rate")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "-".into(), percent),
            ),
            Cell::from(number(r, "signals_traded", 0)),
            Cell::from(
                r.get("pnl_bps")
                    .and_then(Value::as_f64)
                    .map_or_else(|| "-".into(), |v| signed(v, 1)),
            ),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Min(8),
            ],
        )
        .header(header(&[
            "delta",
            "threshold",
            "decisions",
            "pass",
            "traded",
            "P&L bps",
        ]))
        .block(block(
            d,
            &format!("Sweep: {} {}", d.sweep_gate_name(), d.sweep_mode.as_str()),
            Panel::Sweep,
            now,
        )),
        sweep,
    );
}

// ---- Trades and models ----

fn draw_trades(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Length(8),
        Constraint::Min(0),
    ])
    .areas(area);
    let [open, closed] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    simple_table(
        frame,
        open,
        d,
        Panel::OpenTrades,
        &format!("Open trades ({})", d.rows(Panel::OpenTrades).len()),
        &[
            ("entry_ts", "entered", 12, Fmt::Clock),
            ("symbol", "symbol", 9, Fmt::Text),
            ("side", "side", 5, Fmt::Text),
            ("mode", "mode", 7, Fmt::Text),
            ("regime", "regime", 6, Fmt::Text),
            ("entry_price", "price", 10, Fmt::Num(2)),
        ],
        now,
    );
    simple_table(
        frame,
        closed,
        d,
        Panel::ClosedToday,
        &format!("Closed today (latest {})", d.rows(Panel::ClosedToday).len()),
        &[
            ("exit_ts", "exited", 12, Fmt::Clock),
            ("symbol", "symbol", 9, Fmt::Text),
            ("mode", "mode", 7, Fmt::Text),
            ("regime", "regime", 6, Fmt::Text),
            ("duration_s", "held s", 7, Fmt::Num(0)),
            ("pnl_bps", "P&L bps", 9, Fmt::Signed(2)),
        ],
        now,
    );
    let [by_mode, by_regime] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    let win_columns = |first: &'static str| {
        [
            (first, first, 8, Fmt::Text),
            ("trades", "trades", 7, Fmt::Num(0)),
            ("win_rate", "win rate", 9, Fmt::Percent),
            ("pnl_bps", "P&L bps", 10, Fmt::Signed(1)),
        ]
    };
    simple_table(
        frame,
        by_mode,
        d,
        Panel::WinByMode,
        "Today by mode",
        &win_columns("mode"),
        now,
    );
    simple_table(
        frame,
        by_regime,
        d,
        Panel::WinByRegime,
        "Today by regime",
        &win_columns("regime"),
        now,
    );
    let [production, calibration] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(bottom);
    let production_id = d
        .value(Panel::Production, "model_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let body = match d.rows(Panel::Production).first() {
        None => "no model holds the production alias \
                 (quiver models alias production MODEL)"
            .to_string(),
        Some(r) => format!(
            "model {}\nname {}\nregistered {}\nproduction since {}\nreason {}",
            text(r, "model_id"),
            text(r, "name"),
            text(r, "registered_ts"),
            text(r, "from_ts"),
            text(r, "reason"),
        ),
    };
    frame.render_widget(
        Paragraph::new(body).wrap(Wrap { trim: false }).block(block(
            d,
            "Production model",
            Panel::Production,
            now,
        )),
        production,
    );
    let rows = d.rows(Panel::Calibration).iter().map(|r| {
        let id = text(r, "model_id");
        let style = if production_id.as_deref() == Some(id) {
            BOLD
        } else {
            Style::new()
        };
        Row::new(vec![
            Cell::from(short(id)),
            Cell::from(text(r, "day").to_string()),
            Cell::from(number(r, "samples", 0)),
            Cell::from(number(r, "ece", 4)),
            Cell::from(number(r, "mce", 4)),
            Cell::from(number(r, "brier", 4)),
        ])
        .style(style)
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(11),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(header(&["model", "day", "samples", "ECE", "MCE", "Brier"]))
        .block(block(
            d,
            "Calibration (production in bold)",
            Panel::Calibration,
            now,
        )),
        calibration,
    );
}

// ---- Latency ----

fn draw_latency(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [steps, bottlenecks] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Min(0)]).areas(area);
    let slowest = d
        .rows(Panel::StepStats)
        .first()
        .and_then(|r| r.get("step"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let worst = d
        .rows(Panel::Bottlenecks)
        .first()
        .and_then(|r| r.get("step"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let day = d
        .value(Panel::StepStats, "day")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let max_p95 = d
        .rows(Panel::StepStats)
        .iter()
        .filter_map(|r| r.get("p95_ms").and_then(Value::as_f64))
        .fold(0.0_f64, f64::max);
    let rows = d.rows(Panel::StepStats).iter().map(|r| {
        let step = text(r, "step");
        let p95 = r.get("p95_ms").and_then(Value::as_f64).unwrap_or(0.0);
        let bar_len = if max_p95 > 0.0 {
            (p95 / max_p95 * 20.0).round() as usize
        } else {
            0
        };
        let hot = slowest.as_deref() == Some(step) || worst.as_deref() == Some(step);
        Row::new(vec![
            Cell::from(step.to_string()),
            Cell::from(number(r, "steps", 0)),
            Cell::from(number(r, "avg_ms", 3)),
            Cell::from(number(r, "p50_ms", 3)),
            Cell::from(number(r, "p95_ms", 3)),
            Cell::from(number(r, "p99_ms", 3)),
            Cell::from(number(r, "max_ms", 3)),
            Cell::from("█".repeat(bar_len)).style(if hot { BAD } else { GOOD }),
        ])
        .style(if hot { BOLD } else { Style::new() })
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(18),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(header(&[
            "step", "steps", "avg ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "p95",
        ]))
        .block(block(
            d,
            &format!("Decision trace steps on {day}, slowest p95 first (bottlenecks in bold)"),
            Panel::StepStats,
            now,
        )),
        steps,
    );
    simple_table(
        frame,
        bottlenecks,
        d,
        Panel::Bottlenecks,
        "Bottlenecks: how often each step was a trace's slowest",
        &[
            ("step", "step", 18, Fmt::Text),
            ("traces", "traces", 8, Fmt::Num(0)),
            ("bottleneck_traces", "slowest in", 11, Fmt::Num(0)),
            ("bottleneck_rate", "rate", 8, Fmt::Percent),
            ("avg_ms", "avg ms", 8, Fmt::Num(3)),
            ("p95_ms", "p95 ms", 8, Fmt::Num(3)),
            ("avg_share_of_total", "share", 8, Fmt::Percent),
        ],
        now,
    );
}

// ---- Alerts ----

fn draw_alerts(frame: &mut Frame, area: Rect, d: &Dashboard, now: Instant) {
    let [alerts, deliveries] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Min(0)]).areas(area);
    simple_table(
        frame,
        alerts,
        d,
        Panel::Alerts,
        &format!("Alerts fired ({})", d.rows(Panel::Alerts).len()),
        &[
            ("fired_at", "fired", 19, Fmt::Stamp),
            ("severity", "severity", 9, Fmt::Text),
            ("rule", "rule", 22, Fmt::Text),
            ("value", "value", 10, Fmt::Num(4)),
            ("threshold", "threshold", 10, Fmt::Num(4)),
            ("message", "message", 60, Fmt::Text),
        ],
        now,
    );
    simple_table(
        frame,
        deliveries,
        d,
        Panel::Deliveries,
        "Deliveries (every attempt)",
        &[
            ("started_ts", "started", 19, Fmt::Stamp),
            ("receiver", "receiver", 12, Fmt::Text),
            ("rule", "rule", 22, Fmt::Text),
            ("attempt", "try", 4, Fmt::Num(0)),
            ("outcome", "outcome", 12, Fmt::Text),
            ("http_status", "HTTP", 5, Fmt::Num(0)),
            ("error", "error", 40, Fmt::Text),
        ],
        now,
    );
}

// ---- Shared ----

#[derive(Clone, Copy)]
enum Fmt {
    Text,
    Clock,
    /// A timestamp to the second: `2026-12-03 09:06:06`.
    Stamp,
    Num(usize),
    Signed(usize),
    Percent,
}

fn simple_table(
    frame: &mut Frame,
    area: Rect,
    d: &Dashboard,
    panel: Panel,
    title: &str,
    columns: &[(&str, &str, u16, Fmt)],
    now: Instant,
) {
    let rows = d.rows(panel).iter().map(|r| {
        Row::new(columns.iter().map(|(key, _, _, fmt)| {
            let value = r.get(*key);
            Cell::from(match (fmt, value) {
                (_, None | Some(Value::Null)) => "-".to_string(),
                (Fmt::Text, Some(Value::String(s))) => s.clone(),
                (Fmt::Text, Some(v)) => v.to_string(),
                (Fmt::Clock, Some(v)) => clock(v.as_str().unwrap_or("")),
                (Fmt::Stamp, Some(v)) => stamp(v.as_str().unwrap_or("")),
                (Fmt::Num(p), Some(v)) => {
                    v.as_f64().map_or_else(|| v.to_string(), |x| fixed(x, *p))
                }
                (Fmt::Signed(p), Some(v)) => {
                    v.as_f64().map_or_else(|| v.to_string(), |x| signed(x, *p))
                }
                (Fmt::Percent, Some(v)) => v.as_f64().map_or_else(|| v.to_string(), percent),
            })
        }))
    });
    // The last column (a message, an error) takes what is left, so a narrow
    // terminal cuts it rather than every column.
    let widths: Vec<Constraint> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == columns.len() {
                Constraint::Min(c.1.chars().count() as u16)
            } else {
                Constraint::Length(c.2)
            }
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.1).collect();
    frame.render_widget(
        Table::new(rows, widths)
            .header(header(&names))
            .block(block(d, title, panel, now)),
        area,
    );
}

fn header(names: &[&str]) -> Row<'static> {
    Row::new(names.iter().map(|n| Cell::from(n.to_string()))).style(BOLD.fg(Color::Cyan))
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 80.min(area.width);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:<26}"), BOLD),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Keys ")),
        popup,
    );
}

fn text<'a>(row: &'a Map<String, Value>, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn number(row: &Map<String, Value>, key: &str, places: usize) -> String {
    row.get(key)
        .and_then(Value::as_f64)
        .map_or_else(|| "-".into(), |v| fixed(v, places))
}

/// `2026-12-03T09:06:06.891567Z` as `09:06:06.891`.
fn clock(ts: &str) -> String {
    match ts.split_once('T') {
        Some((_, time)) => time.trim_end_matches('Z').chars().take(12).collect(),
        None => ts.to_string(),
    }
}

/// `2026-12-03T09:06:06.891567Z` as `2026-12-03 09:06:06`.
fn stamp(ts: &str) -> String {
    ts.replacen('T', " ", 1).chars().take(19).collect()
}

/// `2026-12-03T09:06:06.891567Z` as `09:06:06`, for the selectable lists.
fn seconds(ts: &str) -> String {
    clock(ts).chars().take(8).collect()
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn fixed(v: f64, places: usize) -> String {
    if places == 0 {
        thousands(v)
    } else {
        format!("{v:.places$}")
    }
}

fn signed(v: f64, places: usize) -> String {
    format!("{v:+.places$}")
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A threshold as written in gates.yaml: no trailing zeros.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// 12345.6 as `12,346`.
fn thousands(v: f64) -> String {
    let rounded = v.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use serde_json::json;

    use super::super::feed::{FeedRow, Rows, Update};
    use super::*;
    use crate::gates::GatesConfig;

    /// A dashboard with an answer in every panel, as a server would give.
    fn fixture(at: Instant) -> Dashboard {
        let mut d = Dashboard::new(
            "grpc://127.0.0.1:50051".into(),
            GatesConfig::builtin().unwrap(),
            100,
        );
        let panel = |d: &mut Dashboard, p: Panel, rows: Value| {
            let rows = Rows {
                rows: rows
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|r| r.as_object().cloned())
                    .collect(),
            };
            d.apply(Update::Panel(p, Ok(rows)), at);
        };
        d.apply(Update::Connection(Ok(())), at);
        panel(
            &mut d,
            Panel::Queue,
            json!([{"fill": 0.12, "rows_written": 1000}]),
        );
        d.apply(
            Update::Panel(
                Panel::Queue,
                Ok(Rows {
                    rows: vec![
                        json!({"fill": 0.12, "rows_written": 4000})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ],
                }),
            ),
            at + Duration::from_secs(2),
        );
        panel(
            &mut d,
            Panel::Drops,
            json!([{"accepted": 5000, "dropped": 0}]),
        );
        panel(
            &mut d,
            Panel::KillSwitch,
            json!([{"tripped": false, "trips": 0}]),
        );
        panel(
            &mut d,
            Panel::Health,
            json!([
                {"check": "lag.lake", "state": "warning", "value": 75.0, "unit": "s"},
                {"check": "lag.hot", "state": "ok", "value": 0.0, "unit": "s"},
                {"check": "lag.journal", "state": "ok", "value": 1.0, "unit": "s"}
            ]),
        );
        panel(
            &mut d,
            Panel::Pnl,
            json!([{"pnl_bps": 4.5}, {"pnl_bps": -2.0}, {"pnl_bps": 7.25}]),
        );
        panel(
            &mut d,
            Panel::GatePassRate,
            json!([
                {"day": "2026-12-03", "gate": "meta_label", "mode": "scalp", "value": 0.41},
                {"day": "2026-12-03", "gate": "cost_gate", "mode": "runner", "value": 0.99}
            ]),
        );
        panel(
            &mut d,
            Panel::BlockQuality,
            json!([{"gate": "meta_label", "mode": "scalp", "good_blocks": 114, "bad_blocks": 107, "saved_bps": 1933.84, "missed_bps": 1674.91}]),
        );
        panel(
            &mut d,
            Panel::Rejections,
            json!([
                {"decision_id": "d-1", "ts": "2026-12-03T09:06:06.891567Z", "symbol": "ETH-USD", "gate": "cost_gate", "mode": "scalp", "value": 3.2, "threshold": 5.0},
                {"decision_id": "d-2", "ts": "2026-12-03T09:06:05.000001Z", "symbol": "BTC-USD", "gate": "meta_label", "mode": "runner", "value": 0.49, "threshold": 0.52}
            ]),
        );
        d.apply(
            Update::Explanation(
                "d-1".into(),
                Ok("signal s-1  ETH-USD  2026-12-03T09:06:06.891567Z  scalp in RANGE\n\ndecision d-1\n  cost_gate REJECTED: expected edge 3.2 bps below 5 bps\n".into()),
            ),
            at,
        );
        panel(
            &mut d,
            Panel::Shadow,
            json!([
                {"blocked_ts": "2026-12-03T09:06:01.5Z", "symbol": "SOL-USD", "mode": "scalp", "regime": "RANGE", "blocked_by": "meta_label", "resolution": "resolved", "block": "good", "outcome_pnl_bps": -5.51},
                {"blocked_ts": "2026-12-03T09:06:03.5Z", "symbol": "ETH-USD", "mode": "runner", "regime": "TREND", "blocked_by": "cost_gate", "resolution": "resolved", "block": "bad", "outcome_pnl_bps": 12.0},
                {"blocked_ts": "2026-12-03T09:06:02.5Z", "symbol": "BTC-USD", "mode": "scalp", "regime": "PANIC", "blocked_by": "regime_gate", "resolution": "pending"}
            ]),
        );
        panel(
            &mut d,
            Panel::Sweep,
            json!([
                {"delta": -0.1, "moved_threshold": 0.495, "decisions": 1798, "pass_rate": 0.9522, "signals_traded": 652, "pnl_bps": -17.94},
                {"delta": 0.0, "moved_threshold": 0.55, "decisions": 1798, "pass_rate": 0.41, "signals_traded": 300, "pnl_bps": 20.5}
            ]),
        );
        panel(
            &mut d,
            Panel::OpenTrades,
            json!([{"entry_ts": "2026-12-03T09:07:01.1Z", "symbol": "LINK-USD", "side": "BUY", "mode": "scalp", "regime": "RANGE", "entry_price": 14.5}]),
        );
        panel(
            &mut d,
            Panel::ClosedToday,
            json!([{"exit_ts": "2026-12-03T09:07:51.295593Z", "symbol": "LINK-USD", "mode": "scalp", "regime": "RANGE", "duration_s": 104.4, "pnl_bps": 3.43}]),
        );
        panel(
            &mut d,
            Panel::WinByMode,
            json!([{"mode": "scalp", "trades": 211, "win_rate": 0.5924, "pnl_bps": -17.94}]),
        );
        panel(
            &mut d,
            Panel::WinByRegime,
            json!([{"regime": "RANGE", "trades": 150, "win_rate": 0.61, "pnl_bps": 30.1}]),
        );
        panel(
            &mut d,
            Panel::Production,
            json!([{"model_id": "e77471db8c5449d8", "from_ts": "2026-12-01T00:00:00Z", "reason": "recalibrated", "name": "meta-v7", "registered_ts": "2026-11-30T12:00:00Z"}]),
        );
        panel(
            &mut d,
            Panel::Calibration,
            json!([{"model_id": "e77471db8c5449d8", "day": "2026-12-03", "samples": 558, "ece": 0.04018, "mce": 0.603, "brier": 0.2448}]),
        );
        panel(
            &mut d,
            Panel::StepStats,
            json!([
                {"day": "2026-12-03", "step": "feature_calc", "steps": 2573, "avg_ms": 1.71, "p50_ms": 1.6, "p95_ms": 2.85, "p99_ms": 3.1, "max_ms": 4.0},
                {"day": "2026-12-03", "step": "regime_gate", "steps": 2572, "avg_ms": 0.2729, "p50_ms": 0.251, "p95_ms": 0.495, "p99_ms": 0.6679, "max_ms": 0.933}
            ]),
        );
        panel(
            &mut d,
            Panel::Bottlenecks,
            json!([{"step": "feature_calc", "traces": 2573, "bottleneck_traces": 1607, "bottleneck_rate": 0.6246, "avg_ms": 1.71, "p95_ms": 2.85, "avg_share_of_total": 0.2233}]),
        );
        panel(
            &mut d,
            Panel::Alerts,
            json!([{"fired_at": "2026-12-03T09:00:00Z", "severity": "warning", "rule": "win_rate_low", "value": 0.48, "threshold": 0.5, "message": "win rate 48.0% below 50.0%"}]),
        );
        panel(
            &mut d,
            Panel::Deliveries,
            json!([{"started_ts": "2026-12-03T09:00:01Z", "receiver": "ops", "rule": "win_rate_low", "attempt": 1, "outcome": "delivered", "http_status": 200}]),
        );
        d.apply(
            Update::Events(vec![
                FeedRow {
                    seq: 41,
                    ts: "2026-12-03T09:07:00.000100Z".into(),
                    table: "signals".into(),
                    symbol: "BTC-USD".into(),
                    level: "INFO".into(),
                    text: " direction=\"LONG\" strength=0.8".into(),
                },
                FeedRow {
                    seq: 42,
                    ts: "2026-12-03T09:07:00.000200Z".into(),
                    table: "trades".into(),
                    symbol: "ETH-USD".into(),
                    level: "WARNING".into(),
                    text: " kind=\"CLOSE\" pnl_bps=3.4".into(),
                },
            ]),
            at,
        );
        d.apply(Update::Heartbeat(42), at);
        d
    }

    fn render(d: &Dashboard, now: Instant) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 36)).unwrap();
        terminal.draw(|f| draw(f, d, now)).unwrap();
        terminal.backend().to_string()
    }

    fn press(d: &mut Dashboard, c: char) {
        d.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }

    #[test]
    fn every_tab_renders_its_data() {
        let at = Instant::now();
        let mut d = fixture(at);
        let now = at + Duration::from_secs(3);
        for (i, tab) in Tab::ALL.iter().enumerate() {
            press(&mut d, char::from(b'1' + i as u8));
            insta::assert_snapshot!(
                format!("tab_{}_{tab:?}", i + 1).to_lowercase(),
                render(&d, now)
            );
        }
        press(&mut d, '?');
        insta::assert_snapshot!("help", render(&d, now));
    }

    #[test]
    fn a_lost_server_shows_a_banner_and_the_panels_keep_their_age() {
        let at = Instant::now();
        let mut d = fixture(at);
        d.apply(
            Update::Connection(Err("Unavailable: connection refused".into())),
            at,
        );
        let screen = render(&d, at + Duration::from_secs(42));
        assert!(
            screen.contains("server unreachable (Unavailable: connection refused)"),
            "{screen}"
        );
        assert!(screen.contains("✗ grpc://127.0.0.1:50051"), "{screen}");
        assert!(screen.contains("42s ago"), "{screen}");
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        let at = Instant::now();
        let mut d = fixture(at);
        for (w, h) in [(1, 1), (10, 3), (40, 8), (80, 24)] {
            for i in 0..6 {
                press(&mut d, char::from(b'1' + i));
                let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
                terminal.draw(|f| draw(f, &d, at)).unwrap();
            }
            press(&mut d, '?');
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| draw(f, &d, at)).unwrap();
            press(&mut d, '?');
        }
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(-1_000.0), "-1,000");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(trim_number(0.55), "0.55");
        assert_eq!(trim_number(5.0), "5");
        assert_eq!(clock("2026-12-03T09:06:06.891567Z"), "09:06:06.891");
    }
}
