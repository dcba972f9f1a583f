//! The `taskserver` binary: logging, command line, run, exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use taskserver::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // A write past a file-size limit must fail with EFBIG (answered 503),
    // not kill the process with SIGXFSZ.
    // SAFETY: setting a signal to "ignore" installs no handler code.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let result = match &cli.command {
        Some(Command::Healthcheck { url }) => {
            let url = url.clone().unwrap_or_else(|| cli.local_health_url());
            runtime
                .block_on(taskserver::healthcheck::check(&url))
                .map_err(Into::into)
        }
        None => runtime.block_on(serve(&cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskserver: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: &Cli) -> anyhow::Result<()> {
    let data = cli.data.clone();
    let store = tokio::task::spawn_blocking(move || taskserver::Store::open(data)).await??;
    // Every connection of a burst is an open file, beyond the few of our own.
    taskserver::listen::raise_open_files_limit(u64::from(cli.backlog) + 64);
    let listener = taskserver::listen::bind(&cli.bind, cli.backlog).await?;
    taskserver::run(listener, store, taskserver::shutdown::signal()).await?;
    Ok(())
}
