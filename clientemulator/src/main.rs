use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use clientemulator::{Args, Report};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => return fail(anyhow::Error::new(error), 2),
    };
    // First Ctrl-C: stop sending and report. Another, or one after sending
    // ended, quits at once.
    let (interrupt, interrupted) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("clientemulator: interrupted; finishing requests in flight (Ctrl-C again quits)");
        if interrupt.send(()).is_ok() {
            let _ = tokio::signal::ctrl_c().await;
        }
        std::process::exit(130);
    });
    match clientemulator::run(config, async {
        let _ = interrupted.await;
    })
    .await
    {
        Ok(report) => match print(&report, json) {
            Ok(()) => ExitCode::from(report.exit_status()),
            Err(error) => fail(error, 1),
        },
        Err(error) => fail(error.into(), 2),
    }
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, report).context("writing the JSON report to stdout")?;
        writeln!(out).context("writing the JSON report to stdout")
    } else {
        write!(out, "{report}").context("writing the report to stdout")
    }
}

fn fail(error: anyhow::Error, status: u8) -> ExitCode {
    eprintln!("clientemulator: error: {error:#}");
    ExitCode::from(status)
}
