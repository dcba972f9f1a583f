use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use clientemulator::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => return fail(error.into(), 2),
    };
    match clientemulator::run(config, clientemulator::stop_on_ctrl_c()).await {
        Ok(report) => match report
            .write_to(std::io::stdout().lock(), json)
            .context("writing the report to stdout")
        {
            Ok(()) => ExitCode::from(report.exit_status()),
            Err(error) => fail(error, 1),
        },
        Err(error) => fail(error.into(), 2),
    }
}

fn fail(error: anyhow::Error, status: u8) -> ExitCode {
    eprintln!("clientemulator: error: {error:#}");
    ExitCode::from(status)
}
