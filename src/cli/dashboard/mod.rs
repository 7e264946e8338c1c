//! `quiver dashboard`: the terminal UI an operator keeps open next to the
//! bot, connected to a running server (`--server`, default the one holding
//! the data dir).
//!
//! # Layout
//!
//! - [`state`]: what the screen shows and what the keys do to it: the tabs,
//!   selections, the feed and its filters, each panel's last result and its
//!   age. Pure: no terminal, no network, so every key is unit-tested.
//! - [`feed`]: the data, off the draw loop. A poller runs the status queries
//!   every `--refresh` and the visible tab's queries, each under
//!   `--query-timeout`; a follower reads the live tail
//!   ([`crate::flight::tail`]) and resumes from the last sequence after a
//!   reconnect. Both send [`feed::Update`]s over a channel; neither ever
//!   holds the screen.
//! - [`ui`]: draws a [`state::Dashboard`] into a ratatui frame. Rendering is
//!   a function of the state and the clock, so the screens are snapshot
//!   tests on ratatui's `TestBackend`.
//!
//! The draw loop (here) polls the keyboard for at most [`TICK`], applies what
//! the feed sent, and draws. A slow query shows as an older age on its
//! panel, a lost server as a banner; the loop never waits on either.
//! `ratatui::init` enters raw mode and the alternate screen and installs a
//! panic hook that restores the terminal; `q` restores it too.

mod feed;
mod state;
mod ui;

use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::app::Advert;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server to watch: grpc://HOST:PORT or grpc+tls://HOST:PORT
    /// (default: the one holding the data dir).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// How often the panels are queried again.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// A panel's query is given up after this long (its panel says so and
    /// keeps its last result).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
    /// How many events the live feed keeps (the oldest go first).
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub feed_rows_max: u32,
}

/// The longest the draw loop waits for a key before drawing again.
const TICK: Duration = Duration::from_millis(250);

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let url = Advert::server_url(
        &config.data_dir,
        args.server.as_deref(),
        "the dashboard watches a running server",
    )?;
    if args.refresh.is_zero() || args.query_timeout.is_zero() {
        anyhow::bail!("--refresh and --query-timeout must be longer than zero");
    }
    // Thresholds, targets and explanation templates: the same gates file
    // `quiver explain` reads.
    let gates = config.definition_paths().gates()?;
    let feed = feed::Feed::start(feed::FeedConfig {
        config: config.clone(),
        url: url.clone(),
        gates: gates.clone(),
        refresh: args.refresh,
        query_timeout: args.query_timeout,
    });
    let dashboard = state::Dashboard::new(url, gates, args.feed_rows_max as usize);
    // The draw loop blocks on the keyboard: keep it off the runtime.
    let outcome = tokio::task::spawn_blocking(move || draw_loop(dashboard, feed)).await;
    outcome.context("the dashboard's draw loop panicked")?
}

fn draw_loop(mut dashboard: state::Dashboard, mut feed: feed::Feed) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        loop {
            // Bounded, so a flood of events cannot starve the keyboard.
            for _ in 0..feed::UPDATES_PER_DRAW_MAX {
                let Some(update) = feed.try_next() else { break };
                dashboard.apply(update, Instant::now());
            }
            feed.want(dashboard.wants());
            terminal.draw(|frame| ui::draw(frame, &dashboard, Instant::now()))?;
            if event::poll(TICK)? {
                // A resize needs nothing: the next draw takes the new size.
                if let Event::Key(key) = event::read()?
                    && key.kind != KeyEventKind::Release
                    && dashboard.key(key) == state::Flow::Quit
                {
                    return Ok(());
                }
            }
        }
    })();
    ratatui::restore();
    result
}
