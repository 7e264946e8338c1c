//! `quiver demo`: the pipeline with the demo bot feeding it, until Ctrl-C or
//! `--duration`; then it flushes, closes and says how to query the data.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::model_feed::ModelFeed;
use crate::app::{Pipeline, shutdown_signal};
use crate::config::Config;
use crate::event::{Event, Ts};
use crate::ingest::{Logger, LoggerStats};
use crate::sim::{SimTotals, Simulator};
use crate::store::registry::manifest_of;
use crate::store::{Registry, Store};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flight SQL listen address (default 127.0.0.1:50051).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Stop after this long (e.g. 30s, 5m); default: run until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Events per second the bot produces.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Simulator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// History to backfill before going live (simulated at the same rate), so
    /// trades have closed and shadow trades resolved from the first query on.
    /// `0s` starts empty.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub backfill: Duration,
    /// gates.yaml to use (default: the data dir's configs/gates.yaml).
    #[arg(long, value_name = "FILE")]
    pub gates: Option<std::path::PathBuf>,
}

/// Events one signal cycle produces on average with the built-in gates.
pub const EVENTS_PER_CYCLE: f64 = 19.0;

/// Runs the simulator over the last `span` on a simulated clock paced to `rate`,
/// logging as fast as the pipeline takes it (backing off while the queue is
/// more than half full, so nothing is shed). Returns the events logged.
pub async fn backfill(
    sim: &mut Simulator,
    logger: &Logger,
    span: Duration,
    rate: f64,
    mut after_cycle: impl FnMut(&mut Simulator),
) -> u64 {
    let cycle_us = (EVENTS_PER_CYCLE / rate * 1e6).max(1.0) as i64;
    let end = Ts::now().0;
    let mut clock = end - i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
    let mut buffer = Vec::new();
    let mut logged = 0u64;
    while clock < end {
        sim.cycle(Ts(clock), &mut buffer);
        after_cycle(sim);
        clock += cycle_us;
        for event in buffer.drain(..) {
            let _ = logger.log(event);
            logged += 1;
        }
        wait_for_room(logger).await;
    }
    logged
}

/// Waits while the logger's queue is more than half full.
pub async fn wait_for_room(logger: &Logger) {
    let stats = logger.stats();
    if stats.queue_len * 2 > stats.queue_capacity {
        while logger.stats().queue_len * 4 > stats.queue_capacity {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// The data the bot has trained on so far, as a data manifest: the lake's
/// files (paths relative to the data dir) and the last durable WAL sequence,
/// which pins down the data not yet rolled into the lake.
fn lake_manifest(store: &Store) -> String {
    let mut lines = store
        .lake
        .snapshot()
        .files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(&store.data_dir)
                .unwrap_or(&f.path)
                .display()
                .to_string()
        })
        .collect::<Vec<_>>();
    lines.push(format!("wal_seq={}", store.stats().wal_seq));
    manifest_of(lines)
}

pub async fn run(mut config: Config, args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be a positive number of events per second"
    );
    // The bot runs the gates whose templates the explainer reads: the data
    // dir's gates.yaml, or --gates. Opening the pipeline records the file in
    // the registry's config history (and seeds the data dir's copy).
    if let Some(path) = &args.gates {
        config.metrics.gates_file = Some(path.clone());
    }
    let mut pipeline = Pipeline::open(&config).await?;
    let gates = config.definition_paths().gates()?;
    let data_dir = pipeline.store.data_dir.display().to_string();
    println!(
        "quiver demo: bot at {} events/s, data in {data_dir}",
        args.rate
    );
    // Before the server advertises itself: a receiver's missing secret
    // stops the start with nothing to clean up.
    let alerts = pipeline.start_alerts(&config)?;
    pipeline.start_health(alerts.as_ref());
    let server = pipeline.start_flight(&config).await?;
    println!(
        "  Flight SQL on {} (e.g. `quiver sql \"SELECT count(*) FROM signals\"` from another shell)",
        server.url
    );
    let exporter = pipeline
        .start_prometheus(&config, &server, alerts.as_ref())
        .await?;
    println!(
        "  `quiver dashboard` or `quiver status` (from another shell) shows it live; Ctrl-C stops, flushes and exits."
    );

    let mut sim = Simulator::new(args.seed, gates);
    // The registry follows the bot's training; the configs it runs with are
    // recorded (once per change) in the config history.
    let registry = Registry::open(&pipeline.store.data_dir)?;
    let feed = ModelFeed::start(registry)?;
    send_initial_models(&mut sim, &feed, &pipeline.store, args.backfill);
    let store = &pipeline.store;
    let mut feed_updates = |sim: &mut Simulator| {
        let updates = sim.take_model_updates();
        if !updates.trained.is_empty() || !updates.aliases.is_empty() {
            feed.send(updates, lake_manifest(store));
        }
    };
    // Listening for Ctrl-C and SIGTERM starts before the backfill, so a stop
    // during it still flushes instead of killing the process.
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let (backfilled, stopping) =
        backfill_unless_stopped(&mut sim, &pipeline, args, &mut stop, &mut feed_updates).await;
    let started = Instant::now();
    let produced = if stopping {
        0
    } else {
        run_live(
            &mut sim,
            &pipeline,
            args,
            started,
            &mut stop,
            &mut feed_updates,
        )
        .await
    };
    println!("stopping: flushing and rolling the lake...");
    feed.close().context("recording models in the registry")?;
    server.stop().await?;
    if let Some(exporter) = exporter {
        exporter.stop().await?;
    }
    if let Some(alerts) = alerts {
        tokio::task::spawn_blocking(move || alerts.stop()).await?;
    }
    pipeline.logger.flush().await?;
    let st = pipeline.logger.stats();
    let totals = sim.totals.clone();
    pipeline.close().await?;
    print_summary(&st, &totals, produced + backfilled, started);
    print_next_steps(data_dir);
    Ok(())
}

/// Sends the initial model and its alias to the registry, dated to the start
/// of the backfill (the simulator dates them 0).
fn send_initial_models(sim: &mut Simulator, feed: &ModelFeed, store: &Store, backfill: Duration) {
    let mut initial = sim.take_model_updates();
    let first_ts = Ts(Ts::now().0 - i64::try_from(backfill.as_micros()).unwrap_or(0));
    for m in &mut initial.trained {
        m.trained_ts = first_ts;
    }
    for a in &mut initial.aliases {
        a.ts = first_ts;
    }
    feed.send(initial, lake_manifest(store));
}

/// Backfills `--backfill` of history (none if it is zero) unless `stop`
/// completes first. Returns the events logged and whether it stopped.
async fn backfill_unless_stopped(
    sim: &mut Simulator,
    pipeline: &Pipeline,
    args: &Args,
    stop: &mut (impl Future<Output = ()> + Unpin),
    feed_updates: &mut impl FnMut(&mut Simulator),
) -> (u64, bool) {
    let mut stopping = false;
    let mut backfilled = 0;
    if !args.backfill.is_zero() {
        let t = Instant::now();
        tokio::select! {
            n = backfill(sim, &pipeline.logger, args.backfill, args.rate, &mut *feed_updates) => {
                backfilled = n;
                println!(
                    "  backfilled {} of history: {n} events in {:.1}s",
                    humantime::format_duration(args.backfill),
                    t.elapsed().as_secs_f64()
                );
            }
            _ = &mut *stop => stopping = true,
        }
    }
    (backfilled, stopping)
}

/// Logs the bot's events live at `--rate` from `started`, until `stop`
/// completes or `--duration` has passed, with a progress line every 5 s.
/// Returns the events logged.
async fn run_live(
    sim: &mut Simulator,
    pipeline: &Pipeline,
    args: &Args,
    started: Instant,
    stop: &mut (impl Future<Output = ()> + Unpin),
    feed_updates: &mut impl FnMut(&mut Simulator),
) -> u64 {
    let mut produced: u64 = 0;
    let mut buffer: Vec<Event> = Vec::new();
    let mut last_report = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = &mut *stop => break,
            _ = tick.tick() => {}
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let target = (started.elapsed().as_secs_f64() * args.rate) as u64;
        while produced < target {
            if buffer.is_empty() {
                sim.cycle(Ts::now(), &mut buffer);
                feed_updates(sim);
                buffer.reverse();
            }
            let Some(event) = buffer.pop() else { break };
            let _ = pipeline.logger.log(event);
            produced += 1;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            print_progress(pipeline, started, produced);
        }
    }
    produced
}

/// One progress line: events produced and what the logger and the lake did
/// with them.
fn print_progress(pipeline: &Pipeline, started: Instant, produced: u64) {
    let st = pipeline.logger.stats();
    let store = pipeline.store.stats();
    println!(
        "  {:>6.0}s  events {:>9}  accepted {:>9}  dropped {:>6}  queue {:>5.1}%  kill switch {}  lake files {}",
        started.elapsed().as_secs_f64(),
        produced,
        st.accepted.total(),
        st.dropped_total(),
        st.fill() * 100.0,
        if st.kill_switch_tripped {
            "TRIPPED"
        } else {
            "armed"
        },
        store.lake_files,
    );
}

/// The closing line: what was logged, and what the bot did.
fn print_summary(st: &LoggerStats, totals: &SimTotals, logged: u64, started: Instant) {
    let win_rate = if totals.trades_closed > 0 {
        100.0 * totals.wins as f64 / totals.trades_closed as f64
    } else {
        0.0
    };
    println!(
        "done: {} events logged ({} accepted, {} dropped, {} invalid) in {:.1}s; {} signals, {} trades ({win_rate:.1}% winners), {} blocked",
        logged,
        st.accepted.total(),
        st.dropped_total(),
        st.rejected_invalid.total(),
        started.elapsed().as_secs_f64(),
        totals.cycles,
        totals.trades_opened,
        totals.blocked,
    );
}

/// Queries to try on the data the demo left in `data_dir`.
fn print_next_steps(data_dir: String) {
    let dd = if data_dir.contains(' ') {
        format!("\"{data_dir}\"")
    } else {
        data_dir
    };
    println!("\nTry:");
    println!(
        "  quiver sql --data-dir {dd} \"SELECT mode, regime, count(*) AS trades, avg(pnl_bps) AS avg_pnl_bps FROM trades WHERE kind = 'CLOSE' GROUP BY 1, 2 ORDER BY 1, 2\""
    );
    println!(
        "  quiver sql --data-dir {dd} \"SELECT gate, avg(CASE WHEN result = 'PASS' THEN 1.0 ELSE 0.0 END) AS pass_rate FROM gate_decisions GROUP BY gate\""
    );
    println!("  quiver sql --data-dir {dd} \"SELECT * FROM system.lake_files LIMIT 5\"");
    println!("  quiver --data-dir {dd} status");
    println!("  quiver --data-dir {dd} journal stats --by regime");
    println!("  quiver --data-dir {dd} models history production");
    println!("  quiver --data-dir {dd} learning calibration production");
    println!("  quiver --data-dir {dd} metrics compute");
    println!(
        "  quiver sql --data-dir {dd} \"SELECT * FROM analysis.gate_block_quality ORDER BY gate, mode\""
    );
}
