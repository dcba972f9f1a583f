//! The `reliability` binary: flags, campaigns, table, exit status.

use std::process::ExitCode;

use clap::Parser as _;
use reliability::cli::Command;
use reliability::{Args, Ctx, Tools};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Writer(writer)) = args.command {
        let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
        return match runtime.block_on(reliability::writer::run(writer)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let exe = std::env::current_exe().expect("the path of this program");
    let tools = Tools::next_to(&exe, args.taskserver, args.clientemulator);
    if let Err(e) = tools.check() {
        return fail(&e);
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64)
    });
    let mode = if args.full { "full" } else { "smoke" };
    eprintln!(
        "reliability: {mode} run, seed {seed} (replay with --seed {seed}); taskserver {}",
        tools.taskserver.display()
    );
    let ctx = Ctx {
        tools,
        full: args.full,
        seed,
    };
    let table = reliability::run(&ctx, &args.only);
    println!("{table}");
    if table.passed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("reliability: FAILED (seed {seed})");
        ExitCode::FAILURE
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("reliability: error: {e:#}");
    ExitCode::from(2)
}
