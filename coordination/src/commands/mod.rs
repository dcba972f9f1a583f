//! The subcommands of the `coordination` program, and their exit codes.

mod elect;
mod lock;

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use crate::cli::{Cli, Command};
use crate::counter::{self, Worker};
use crate::election::LeaderElection;
use crate::error::{Error, Result};
use crate::name::Name;
use crate::sequence::SequentialIds;
use crate::session::{parse_servers, Session};

/// Exit status of bad usage, an invalid NAME included (as clap's own).
pub const EXIT_USAGE: u8 = 2;
/// No quorum within the timeout; `leader`: nobody leads.
pub const EXIT_NO_QUORUM: u8 = 3;
/// The lock was lost while CMD ran.
pub const EXIT_LOCK_LOST: u8 = 4;
/// The lock stayed busy for the whole timeout.
pub const EXIT_BUSY: u8 = 5;

/// How long a command waits, before it exits, for the ensemble to confirm
/// that its session is closed (and its ephemeral nodes gone).
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// Runs the command line; `Ok` holds the exit status of a normal outcome.
pub async fn run(cli: Cli) -> Result<u8> {
    parse_servers(&cli.zookeeper)?;
    match &cli.command {
        Command::Lock { name, command } => lock::run(&cli, &Name::new(name)?, command).await,
        Command::Elect { name, id } => elect::run(&cli, &Name::new(name)?, id).await,
        Command::Leader { name } => leader(&cli, &Name::new(name)?).await,
        Command::Id { name } => {
            let name = Name::new(name)?;
            let session = connect(&cli, deadline(&cli)).await?;
            let id = SequentialIds::new(&session, &name).next().await?;
            session.close(CLOSE_PATIENCE).await;
            println!("{id}");
            Ok(0)
        }
        Command::Counter { name, add, worker } => {
            counter(&cli, &Name::new(name)?, add.zip(worker.as_deref())).await
        }
    }
}

/// The exit status for an error.
pub fn exit_code(error: &Error) -> u8 {
    match error {
        Error::InvalidName { .. } | Error::InvalidServers { .. } => EXIT_USAGE,
        Error::NoQuorum { .. } => EXIT_NO_QUORUM,
        Error::Lost { .. } => EXIT_LOCK_LOST,
        Error::Busy { .. } => EXIT_BUSY,
        Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
        Error::Spawn { .. } => 126,
        _ => 1,
    }
}

fn deadline(cli: &Cli) -> Instant {
    Instant::now() + cli.timeout
}

async fn connect(cli: &Cli, deadline: Instant) -> Result<Session> {
    Session::connect(&cli.zookeeper, cli.session_timeout, deadline).await
}

/// `leader NAME`: the ID of whoever leads, after a sync.
async fn leader(cli: &Cli, name: &Name) -> Result<u8> {
    let deadline = deadline(cli);
    let session = connect(cli, deadline).await?;
    let election = LeaderElection::new(&session, name);
    let answer = tokio::time::timeout_at(deadline, election.leader()).await;
    drop(election);
    session.close(CLOSE_PATIENCE).await;
    match answer {
        Ok(Ok(Some(leader))) => {
            println!("{}", leader.id);
            Ok(0)
        }
        Ok(Ok(None)) => {
            eprintln!(
                "coordination: nobody leads {name}: no candidate campaigns for it (start one with `coordination elect {name} ID`)"
            );
            Ok(EXIT_NO_QUORUM)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(no_quorum(cli, deadline).await),
    }
}

/// `counter NAME [--add N --worker ID]`.
async fn counter(cli: &Cli, name: &Name, add: Option<(u64, &str)>) -> Result<u8> {
    if let Some((times, worker_id)) = add {
        let mut worker = Worker::new(name, worker_id);
        loop {
            let session = connect(cli, deadline(cli)).await?;
            match worker.run(&session, times).await {
                Ok(()) => break,
                Err(e) if e.is_session_gone() => {
                    tracing::warn!(
                        "{e}; carrying on with a new session after {} additions",
                        worker.done()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!("worker {worker_id} added {times} to the counter {name}");
    }
    let session = connect(cli, deadline(cli)).await?;
    let tally = counter::tally(&session, name).await?;
    session.close(CLOSE_PATIENCE).await;
    println!("total {}", tally.total);
    for (worker, n) in &tally.by {
        println!("{worker} {n}");
    }
    Ok(0)
}

/// The error for a deadline that passed while the ensemble did not answer.
async fn no_quorum(cli: &Cli, deadline: Instant) -> Error {
    // A zero deadline: one probe round, no more waiting.
    match Session::connect(&cli.zookeeper, cli.session_timeout, Instant::now()).await {
        Err(Error::NoQuorum { tried, .. }) => Error::NoQuorum {
            waited: cli.timeout + deadline.elapsed(),
            tried,
        },
        _ => Error::NoQuorum {
            waited: cli.timeout + deadline.elapsed(),
            tried: format!(
                "{} (they stopped answering during the command)",
                cli.zookeeper
            ),
        },
    }
}

/// SIGTERM and SIGINT, the two ways a person or Docker asks us to stop.
pub(crate) struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    pub fn new() -> Stop {
        Stop {
            term: signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed"),
            int: signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed"),
        }
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> libc::c_int {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
        }
    }

    /// Runs `f` unless a stop signal comes first (then `Err(signal)`).
    pub async fn unless<F: Future>(&mut self, f: F) -> Result<F::Output, libc::c_int> {
        tokio::select! {
            out = f => Ok(out),
            signal = self.recv() => Err(signal),
        }
    }
}
