//! `clientemulator`: an honest concurrent load generator for the `/tareas`
//! API that proves nothing was lost.
//!
//! Load tools such as oha or wrk count responses; this one also reads the
//! server's tasks back and checks, task by task, what was really stored.
//! A run has three phases:
//!
//! 1. **Wait**: poll `GET /health` for up to `--wait` (compose starts the
//!    clients before the server listens).
//! 2. **Send**: `-n` tasks (or for `-z` seconds) over `-c` workers, closed
//!    model, or at a fixed `-q` rate (open model).
//! 3. **Verify**: read every stored task, page by page, and judge this run's.
//!
//! # Guarantees
//!
//! - **Every task is identifiable.** Task `k` of client `C` in run `R` has
//!   `titulo` `"Tarea k de C"`, `cliente` `C`, and `descripcion`
//!   `"clientemulator run R, task k"`. `R` is 64 random bits, new per run, so
//!   other clients' tasks and earlier runs in the same file are told apart
//!   and never change this run's verdict.
//! - **A retry can never store a task twice** on a server that keeps the
//!   contract: every attempt of a task carries the same body and the same
//!   `Idempotency-Key: R-k`. Timeouts, connection errors and 5xx are retried
//!   (`--retries`, default 3); 4xx answers are final.
//! - **Acknowledged** means the server answered 200 or 201. A task that got
//!   no answer on some attempt and no acknowledgement later has an *unknown*
//!   outcome: it counts as failed, never as success, and the read-back says
//!   whether it was stored after all.
//! - **Success is never reported unless it happened.** Exit status 0 needs
//!   every planned task sent and acknowledged and, unless `--no-verify`,
//!   found stored exactly once with exactly the content sent. A read-back
//!   that fails makes the run fail. Exit 1 otherwise; 2 for bad usage or a
//!   server that never answered `GET /health`.
//! - **Memory stays flat.** Latencies go into HDR histograms; a task costs
//!   three bits of bitset at most; the read-back holds one page at a time.
//!   (A million tasks peak at about 10 MB of resident memory.)
//! - **The load costs little CPU.** Workers run pinned to a thread per core,
//!   each on its own keep-alive connection spoken with hyper directly, so the
//!   emulator needs about as much CPU per request as oha.
//!
//! # Layout
//!
//! - [`cli`]: the flags and env vars of the contract, checked into a [`Config`].
//! - [`client`]: the wait for `/health`, and the workers on one thread per
//!   core; [`client::connection`] is a worker's own HTTP/1.1 connection.
//! - [`stats`]: what sending remembers: per-task outcomes (the ledger) and
//!   sharded latency, status and error counters.
//! - [`timeline`]: the same answers by when they arrived, in a bounded
//!   number of intervals.
//! - [`verify`]: the paginated read-back and the per-task judgement.
//! - [`report`]: the report, printed for people or as JSON, and the verdict.
//! - [`html`]: the same report as one self-contained HTML page (`--html`).
//!
//! [`run`] ties the three phases together; `main.rs` only parses, runs,
//! prints and exits.

pub mod cli;
pub mod client;
pub mod html;
pub mod report;
pub mod stats;
pub mod timeline;
pub mod verify;

use std::future::Future;
use std::time::{Duration, Instant};

pub use cli::{Args, Config};
pub use report::Report;

/// Files the emulator opens besides its connections (runtime, stdio, the
/// read-back client's connection), with room to spare.
const OWN_FILES: u64 = 64;

/// The exit statuses of the contract. Their numbers are written here only;
/// [`Report::exit_status`] and [`RunError::exit_status`] choose among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every task acknowledged and verified.
    Verified = 0,
    /// A task failed, was lost or duplicated, or the report could not be
    /// written.
    Failed = 1,
    /// Bad usage, or the server never became reachable: there is no report.
    NoRun = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Why a run produced no report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Usage(#[from] cli::UsageError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("-c {concurrency} needs {concurrency} connections at once, but this process may open only {limit} files (its hard limit): raise it (`ulimit -n {wanted}`; in Docker `--ulimit nofile={wanted}`), or lower -c")]
    OpenFiles {
        concurrency: usize,
        limit: u64,
        wanted: u64,
    },
}

impl RunError {
    /// Every error that prevents a report is [`Exit::NoRun`].
    pub fn exit_status(&self) -> Exit {
        Exit::NoRun
    }
}

/// Runs the three phases and returns the report. `stop` completing (Ctrl-C
/// in the binary) ends the sending early; tasks in flight still finish and
/// the read-back still happens, so the report stays true.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<Report, RunError> {
    ensure_open_files(config.concurrency)?;
    // For the wait and the read-back; workers have their own connections.
    let http = client::http_client(&config)?;
    let waited = if config.wait.is_zero() {
        Duration::ZERO
    } else {
        let health: Vec<_> = config
            .servers
            .iter()
            .map(|s| s.health_url.clone())
            .collect();
        client::wait_for_server(&http, &health, config.wait).await?
    };
    let load = client::send(&config, stop).await?;
    let (verification, verify_time) = if config.verify {
        let started = Instant::now();
        let result = verify::read_back_all(&http, &config, &load.ledger).await;
        (Some(result), started.elapsed())
    } else {
        (None, Duration::ZERO)
    };
    Ok(Report::new(
        &config,
        waited,
        &load,
        verification,
        verify_time,
    ))
}

/// Raises the soft limit of open files to the hard one, as Go programs do at
/// start-up (a shell's soft limit is often 1,024, 256 on macOS), and refuses
/// a run whose `-c` connections would not fit: they would fail one by one
/// with "too many open files" instead.
fn ensure_open_files(concurrency: usize) -> Result<(), RunError> {
    let wanted = concurrency as u64 + OWN_FILES;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => Err(RunError::OpenFiles {
            concurrency,
            limit,
            wanted,
        }),
        // A system that cannot say: let the connections find out.
        Ok(_) | Err(_) => Ok(()),
    }
}

/// The stop signal of the binary: completes on the first Ctrl-C, so that
/// sending stops and the report is still printed. A second Ctrl-C, or one
/// after sending has ended (when nobody waits for this future any more),
/// quits at once with status 130. Must be called inside the runtime.
pub fn stop_on_ctrl_c() -> impl Future<Output = ()> + Send + 'static {
    let (interrupt, interrupted) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        if interrupt.send(()).is_ok() {
            eprintln!("clientemulator: interrupted; finishing the requests in flight (Ctrl-C again quits)");
            let _ = tokio::signal::ctrl_c().await;
        }
        std::process::exit(130);
    });
    async {
        let _ = interrupted.await;
    }
}
