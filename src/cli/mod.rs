//! The `quiver` command line: one file per subcommand, each with its `Args` and
//! one `run` function.

mod alerts;
mod cluster;
mod compact;
mod compare;
mod council;
mod dashboard;
mod demo;
mod explain;
mod insights;
mod journal;
mod learning;
mod metrics;
mod model_feed;
mod models;
mod output;
mod repair;
mod report;
mod retention;

mod serve;
mod simulate;
mod sql;
mod status;
mod tail;
mod trace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};
pub use status::Unhealthy;

#[derive(Debug, Parser)]
#[command(
    name = "quiver",
    version,
    about = "Flight recorder and analytics engine for a trading bot"
)]
pub struct Cli {
    /// Config file (default: ./quiver.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./quiver-data, or QUIVER_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline with the demo bot feeding it.
    Demo(demo::Args),
    /// Run the pipeline without the bot, holding the data dir.
    Serve(serve::Args),
    /// Run one SQL query against a data dir.
    Sql(sql::Args),
    /// Push N simulated events through the real pipeline as fast as it goes.
    Simulate(simulate::Args),
    /// Merge each lake partition's files into one.
    Compact(compact::Args),
    /// Rebuild what recovery refused to guess about (the lake's commit log).
    Repair(repair::Args),
    /// Lake retention: what the policy removes now (`--dry-run`), or apply it.
    Retention(retention::Args),
    /// The trade journal: trades and their statistics.
    Journal(journal::Args),
    /// The model registry: register, list, show, alias, history.
    Models(models::Args),
    /// The learning tracker: daily summaries and calibration.
    Learning(learning::Args),
    /// Metrics from metrics.yaml: check, list, show, compute (with alerts).
    Metrics(metrics::Args),
    /// Alert delivery: send a test message through a receiver, list the outbox.
    Alerts(alerts::Args),
    /// Why a gate passed or rejected a signal: reason, margin, outcome,
    /// verdict, suggestion and market context.
    Explain(explain::Args),
    /// The day's findings, ranked, each quoting the values it rests on.
    Insights(insights::Args),
    /// The AI council on a day's metrics packet: analysts' claims, the
    /// number verifier, the judge's summary (built in: offline, no key).
    Council(council::Args),
    /// The day's report as one self-contained HTML file: charts, insights,
    /// the verified council summary, alerts (default day: yesterday).
    Report(report::Args),
    /// A decision trace's timeline and bottlenecks, or per-step latency stats.
    Trace(trace::Args),
    /// New events as they commit, like `tail -f`, from the running server.
    Tail(tail::Args),
    /// Health checks and live definitions, through the server or on a
    /// closed data dir (`--check`: exit 1 on warning, 2 on critical).
    Status(status::Args),
    /// The live feed, gates, shadow trades, trades and models, latency and
    /// alerts of a running server, in the terminal (`?` shows the keys).
    Dashboard(dashboard::Args),
    /// A Ballista cluster over the lake: `scheduler` plans, `executor`s run
    /// (`quiver sql --cluster df://HOST:PORT` submits).
    Cluster(cluster::Args),
}

impl Cli {
    fn load_config(&self, listen: Option<std::net::SocketAddr>) -> anyhow::Result<Config> {
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            listen,
        };
        Ok(Config::load(self.config.as_deref(), &overrides)?)
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Demo(args) => demo::run(cli.load_config(args.listen)?, args).await,
        Command::Serve(args) => serve::run(cli.load_config(args.listen)?, args).await,
        Command::Sql(args) => sql::run(cli.load_config(None)?, args).await,
        Command::Simulate(args) => simulate::run(cli.load_config(None)?, args).await,
        Command::Compact(args) => compact::run(cli.load_config(None)?, args).await,
        Command::Repair(args) => repair::run(cli.load_config(None)?, args).await,
        Command::Retention(args) => retention::run(cli.load_config(None)?, args).await,
        Command::Journal(args) => journal::run(cli.load_config(None)?, args).await,
        Command::Models(args) => models::run(cli.load_config(None)?, args).await,
        Command::Learning(args) => learning::run(cli.load_config(None)?, args).await,
        Command::Metrics(args) => metrics::run(cli.load_config(None)?, args).await,
        Command::Explain(args) => explain::run(cli.load_config(None)?, args).await,
        Command::Insights(args) => insights::run(cli.load_config(None)?, args).await,
        Command::Council(args) => council::run(cli.load_config(None)?, args).await,
        Command::Report(args) => report::run(cli.load_config(None)?, args).await,
        Command::Alerts(args) => alerts::run(cli.load_config(None)?, args).await,
        Command::Trace(args) => trace::run(cli.load_config(None)?, args).await,
        Command::Tail(args) => tail::run(cli.load_config(None)?, args).await,
        Command::Status(args) => status::run(cli.load_config(None)?, args).await,
        Command::Dashboard(args) => dashboard::run(cli.load_config(None)?, args).await,
        Command::Cluster(args) => cluster::run(cli.load_config(None)?, args).await,
    }
}
