//! The `quiver` binary: an error boundary around [`quiver::cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = quiver::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // DataFusion plans recursively; metric views nest a few plans deep, and
    // debug builds use several times the stack of release ones.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(quiver::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `quiver ... | head` closing the pipe early is the reader's choice,
        // not a failure worth a message.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => match e.downcast_ref::<quiver::cli::Unhealthy>() {
            // `quiver status --check`: the report is printed; the state is the code.
            Some(unhealthy) => ExitCode::from(unhealthy.0),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
