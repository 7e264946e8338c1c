//! `quiver simulate --events N`: N simulated events through the real pipeline as
//! fast as it goes. The producer backs off while the queue is over half full, so
//! the figure is the pipeline's sustained rate, not a rate of drops.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::demo::{EVENTS_PER_CYCLE, wait_for_room};
use crate::app::Pipeline;
use crate::config::Config;
use crate::event::{Event, Ts};
use crate::gates::GatesConfig;
use crate::sim::Simulator;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many events to produce.
    #[arg(long)]
    pub events: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Simulated time between two signal cycles.
const CYCLE_US: i64 = 50_000;

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(&config).await?;
    let mut sim = Simulator::new(args.seed, GatesConfig::builtin()?);
    // The simulated clock ends near now, so no event is in the future.
    let cycles = (args.events as f64 / EVENTS_PER_CYCLE) as i64 + 1;
    let mut clock = Ts::now().0 - cycles * CYCLE_US;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.events)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut buffer: Vec<Event> = Vec::new();
    let mut produced = 0u64;
    let logger = pipeline.logger.clone();
    while produced < args.events {
        if buffer.is_empty() {
            clock += CYCLE_US;
            sim.cycle(Ts(clock.min(Ts::now().0)), &mut buffer);
            buffer.reverse();
        }
        let Some(event) = buffer.pop() else { continue };
        let _ = logger.log(event);
        produced += 1;
        if produced.is_multiple_of(1024) {
            bar.set_position(produced);
            wait_for_room(&logger).await;
        }
    }
    logger.flush().await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let st = logger.stats();
    pipeline.close().await?;
    println!(
        "{} events in {:.2}s: {:.0} events/s durable ({} accepted, {} dropped, {} invalid)",
        produced,
        elapsed.as_secs_f64(),
        produced as f64 / elapsed.as_secs_f64(),
        st.accepted.total(),
        st.dropped_total(),
        st.rejected_invalid.total()
    );
    Ok(())
}
