//! The `taskserver` binary: logging, command line, run, exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use taskserver::cluster::config::{ClusterConfig, SECRET_ENV};
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
        Some(Command::RaftLog) => {
            taskserver::cluster::Cluster::print_log(&cli.raft_dir(), std::io::stdout().lock())
                .with_context(|| {
                    format!("cannot read the Raft log in {}", cli.raft_dir().display())
                })
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
    // Every connection of a burst is an open file, beyond the few of our own.
    taskserver::listen::raise_open_files_limit(u64::from(cli.backlog) + 64);
    if cli.unsafe_no_locking {
        tracing::warn!("{}", taskserver::racy::WARNING);
        let racy = taskserver::racy::Racy::open(cli.data.clone()).await?;
        let listener = taskserver::listen::bind(&cli.bind, cli.backlog).await?;
        tracing::warn!(addr = %listener.local_addr()?, data = %racy.path().display(), "taskserver listening, UNSAFE: tasks will be lost");
        taskserver::serve(
            listener,
            taskserver::app(racy),
            taskserver::shutdown::signal(),
        )
        .await;
        return Ok(());
    }
    let Some(me) = cli.node_id else {
        let data = cli.data.clone();
        let store = tokio::task::spawn_blocking(move || taskserver::Store::open(data)).await??;
        let listener = taskserver::listen::bind(&cli.bind, cli.backlog).await?;
        taskserver::run(listener, store, taskserver::shutdown::signal()).await?;
        return Ok(());
    };
    let config = ClusterConfig::new(
        me,
        cli.peers.as_deref(),
        cli.raft_dir(),
        cli.data.clone(),
        std::env::var(SECRET_ENV).ok(),
    )?;
    let secret = config.secret.clone();
    let shutdown = taskserver::shutdown::signal();
    // Started before it listens: the peers it asks at start-up, starting
    // too, find it closed at once rather than waiting on it.
    let node = taskserver::cluster::bootstrap::start(config).await?;
    let listener = taskserver::listen::bind(&cli.bind, cli.backlog).await?;
    taskserver::run_cluster(listener, node, secret, shutdown).await?;
    Ok(())
}
