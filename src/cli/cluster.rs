//! `quiver cluster scheduler|executor`: a Ballista cluster over the data
//! dir's lake (see [`crate::cluster`]); `quiver sql --cluster` submits to it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::app::shutdown_signal;
use crate::cluster::{self, ExecutorOptions, SchedulerOptions};
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, clap::Subcommand)]
pub enum Role {
    /// Plan queries over the data dir's lake and hand tasks to executors.
    Scheduler {
        /// Listen address.
        #[arg(long, default_value_t = SchedulerOptions::default().bind)]
        bind: SocketAddr,
        /// The host name executors and clients reach this scheduler by
        /// (default: the bind address).
        #[arg(long)]
        external_host: Option<String>,
        /// An executor silent this long is dead and its tasks run elsewhere.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        executor_timeout: Duration,
    },
    /// Run tasks: read lake files, shuffle, serve results.
    Executor {
        /// Host to bind both ports on.
        #[arg(long, default_value_t = ExecutorOptions::default().bind_host)]
        bind_host: IpAddr,
        /// The host name others reach this executor by (default: the bind host).
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (results and shuffle reads).
        #[arg(long, default_value_t = cluster::EXECUTOR_FLIGHT_PORT)]
        flight_port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = cluster::EXECUTOR_GRPC_PORT)]
        grpc_port: u16,
        /// The scheduler's address.
        #[arg(long, default_value_t = ExecutorOptions::default().scheduler)]
        scheduler: SocketAddr,
        /// Tasks run at once (0: one per core).
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Where shuffle files go (default: a temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

pub async fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    match &args.role {
        Role::Scheduler {
            bind,
            external_host,
            executor_timeout,
        } => {
            let options = SchedulerOptions {
                bind: *bind,
                external_host: external_host.clone(),
                executor_timeout: *executor_timeout,
            };
            cluster::run_scheduler(&config, &options, shutdown_signal()).await
        }
        Role::Executor {
            bind_host,
            external_host,
            flight_port,
            grpc_port,
            scheduler,
            concurrent_tasks,
            work_dir,
        } => {
            let options = ExecutorOptions {
                bind_host: *bind_host,
                external_host: external_host.clone(),
                flight_port: *flight_port,
                grpc_port: *grpc_port,
                scheduler: *scheduler,
                concurrent_tasks: *concurrent_tasks,
                work_dir: work_dir.clone(),
            };
            cluster::run_executor(&config, &options, shutdown_signal()).await
        }
    }
}
