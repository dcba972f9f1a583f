//! The `coordination` binary: logging, command line, run, exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use coordination::cli::Cli;
use coordination::commands;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,coordination=info".into()),
        )
        .init();
    // Bad usage: clap prints why and exits 2, as the contract wants.
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("coordination: error: {e}");
            ExitCode::from(commands::exit_code(&e))
        }
    }
}
