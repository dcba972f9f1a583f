//! The `clientemulator` binary: parse, run, print the report, exit.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use clientemulator::{Args, Exit, RunError};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let html = args.html.clone();
    let outcome = match args.into_config() {
        Ok(config) => clientemulator::run(config, clientemulator::stop_on_ctrl_c()).await,
        Err(usage) => Err(RunError::from(usage)),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            let exit = error.exit_status();
            return fail(error.into(), exit);
        }
    };
    let written = report
        .write_to(std::io::stdout().lock(), json)
        .context("writing the report to stdout")
        .and_then(|()| match &html {
            Some(path) => report.write_html(path).with_context(|| {
                format!(
                    "writing the HTML report to {} (the report above is complete; \
                     choose a --html path in a directory that exists and is writable)",
                    path.display()
                )
            }),
            None => Ok(()),
        });
    match written {
        Ok(()) => report.exit_status().into(),
        Err(error) => fail(error, Exit::Failed),
    }
}

fn fail(error: anyhow::Error, exit: Exit) -> ExitCode {
    eprintln!("clientemulator: error: {error:#}");
    exit.into()
}
