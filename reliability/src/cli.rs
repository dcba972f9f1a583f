//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Runs fault, crash and bad-input campaigns against the real taskserver
/// binary and prints one table: cases tried, acknowledged tasks, lost,
/// duplicated, and whether the data file was valid after each case.
///
/// Exit status: 0 when every campaign passed, 1 when any failed, 2 for bad
/// usage or missing binaries.
#[derive(Debug, Parser)]
#[command(name = "reliability", version)]
pub struct Args {
    /// The real numbers: 30+ crash cycles, every byte offset of a torn
    /// append, 100,000+ bad-input cases. Without it, a bounded smoke run.
    #[arg(long)]
    pub full: bool,

    /// Seed of every random choice; printed at the start so that a failing
    /// run can be replayed [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Only these campaigns (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Campaign>,

    /// The taskserver binary [default: `taskserver` next to this program].
    #[arg(long, value_name = "PATH")]
    pub taskserver: Option<PathBuf>,

    /// The clientemulator binary [default: `clientemulator` next to this program].
    #[arg(long, value_name = "PATH")]
    pub clientemulator: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A client process of the campaigns (see the `writer` module).
    #[command(hide = true)]
    Writer(crate::writer::WriterArgs),
}

/// The campaigns, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Campaign {
    /// kill -9 while three client processes write, then restart.
    Crash,
    /// Every cut of an appended batch, with and without garbage after it.
    Torn,
    /// Files no crash could produce: refused, named, untouched.
    Broken,
    /// Full disk, file-size limit, unwritable file while serving.
    WriteFailures,
    /// Four processes on one file.
    Processes,
    /// Generated bad requests and slow clients.
    BadInput,
    /// GET /tareas during heavy writes.
    Reads,
    /// Simulated power cuts at every disk operation (the store in process).
    PowerCut,
    /// The real server under strace: every answer after its task's fdatasync.
    Durability,
    /// Three nodes in cluster mode: kills, pauses, partitions, wipes and
    /// membership changes while writers send to every node.
    Cluster,
}

impl Campaign {
    pub const ALL: [Campaign; 10] = [
        Campaign::Crash,
        Campaign::Torn,
        Campaign::Broken,
        Campaign::WriteFailures,
        Campaign::Processes,
        Campaign::BadInput,
        Campaign::Reads,
        Campaign::PowerCut,
        Campaign::Durability,
        Campaign::Cluster,
    ];

    /// The name in the table, as `--only` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Campaign::Crash => "crash",
            Campaign::Torn => "torn",
            Campaign::Broken => "broken",
            Campaign::WriteFailures => "write-failures",
            Campaign::Processes => "processes",
            Campaign::BadInput => "bad-input",
            Campaign::Reads => "reads",
            Campaign::PowerCut => "power-cut",
            Campaign::Durability => "durability",
            Campaign::Cluster => "cluster",
        }
    }
}
