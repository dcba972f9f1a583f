//! `taskserver`: a durable, concurrent `/tareas` task server on one JSON file.
//!
//! A `POST /tareas` is answered `201` only once its task is written and
//! `fdatasync`ed into the data file; concurrent requests share one write and
//! one sync (group commit); several processes or containers may share the
//! file. The [`store`] module docs state the guarantees in full.
//!
//! # Layout
//!
//! - [`config`]: the command line and environment variables.
//! - [`listen`]: the listening socket and its backlog; the open-files limit.
//! - [`api`]: the router and its handlers; errors in [`error`].
//! - [`task`]: what a task is and the rules it must follow.
//! - [`store`]: the data file: group commit, locks, catch-up, recovery.
//! - [`cluster`]: cluster mode: the data file replicated by Raft.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`racy`]: `--unsafe-no-locking`, the race the course warns about, on
//!   purpose (it loses tasks; never the default, never in cluster mode).
//! - [`shutdown`]: Ctrl-C and SIGTERM.
//! - [`healthcheck`]: the `taskserver healthcheck` subcommand.
//!
//! # A commit
//!
//! ```text
//! POST ─┐                      committer thread
//! POST ─┼─► queue ─► take all queued ─► mutex ─► flock(EX) ─► catch up with the file
//! POST ─┘                                        ─► one pwrite at the end of the array
//!                                                ─► fdatasync ─► unlock ─► answer each 201
//! ```
//!
//! Read these docs with `cargo doc -p taskserver --document-private-items
//! --open`: the layout sections link the private modules too.

// The layout sections are for the reader of the code, who opens the
// private modules as well as the public ones.
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod listen;
pub mod metrics;
pub mod racy;
pub mod shutdown;
pub mod store;
pub mod task;

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

pub use api::{app, Tasks};
pub use store::{Store, StoreError};

/// Longest a client may take to send a request's headers, or to start its
/// next request on a kept-alive connection, before the connection is
/// closed. Without it, a client that trickles its headers, or connects and
/// says nothing, holds a connection forever. (A body that trickles is cut
/// by the request timeout of [`api`].)
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`run`] ended other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read the listening socket's address: {0}")]
    Io(#[from] std::io::Error),
    #[error("stopped serving because the store failed: {0}. Every task acknowledged before is in the data file; start the server again (Docker's restart policy does)")]
    StoreFailed(std::sync::Arc<str>),
}

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// in-flight requests and waits for every queued commit. Should the store
/// fail (see [`Store::failure`]), it stops the same way and returns
/// [`RunError::StoreFailed`], so that the process exits non-zero and is
/// restarted rather than answering `503` forever.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %store.path().display(), "taskserver listening");
    let activity = tokio::spawn(log_activity(store.stats().clone()));
    let failed = store.failed();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            reason = failed => tracing::error!(%reason, "the store failed; shutting down"),
        }
    };
    serve(listener, app(store.clone()), stop).await;
    activity.abort();
    let failure = store.failure();
    tracing::info!("no longer accepting; waiting for queued commits");
    // The last handle's drop joins the committer: a blocking wait.
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    match failure {
        Some(reason) => Err(RunError::StoreFailed(reason)),
        None => {
            tracing::info!("shutdown complete: every accepted task is committed");
            Ok(())
        }
    }
}

/// Serves a cluster node: the API over the cluster, its `/raft/...` and
/// `/cluster` routes, until `shutdown` completes; then stops Raft. Should
/// Raft stop on its own (a storage error), it stops the same way and returns
/// [`RunError::StoreFailed`]: the node exits non-zero, is restarted, and
/// catches up from its log and its peers.
pub async fn run_cluster(
    listener: tokio::net::TcpListener,
    node: cluster::Cluster,
    secret: std::sync::Arc<str>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "taskserver listening (cluster mode)");
    let app = app(node.clone()).merge(cluster::routes::router(node.clone(), secret));
    let failure = std::sync::Arc::new(std::sync::OnceLock::new());
    let stop = {
        let (node, failure) = (node.clone(), failure.clone());
        async move {
            tokio::select! {
                () = shutdown => {}
                reason = node.failed() => {
                    tracing::error!(%reason, "Raft stopped on this node; shutting down");
                    let _ = failure.set(reason);
                }
            }
        }
    };
    serve(listener, app, stop).await;
    tracing::info!("no longer accepting; stopping Raft");
    node.shutdown().await;
    match failure.get() {
        Some(reason) => Err(RunError::StoreFailed(reason.as_str().into())),
        None => {
            tracing::info!("shutdown complete");
            Ok(())
        }
    }
}

/// The accept loop: serves `app` on `listener` until `shutdown` completes,
/// then lets in-flight requests finish. What `axum::serve(..)
/// .with_graceful_shutdown(..)` does, plus [`HEADER_READ_TIMEOUT`]: hyper
/// enforces that timeout only when it has a timer, and `axum::serve` gives it
/// none. HTTP/1.1 only: the version sniffing that lets `axum::serve` also take
/// HTTP/2 without TLS waits for a client's first bytes with no time limit, so
/// a client that connects and says nothing would still hold its connection
/// forever. [`run`] uses it; so does the benchmark's ceiling.
pub async fn serve(
    mut listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let service =
        TowerToHyperService::new(app.map_request(|req: Request<Incoming>| req.map(Body::new)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // axum's `accept` waits out errors such as running out of descriptors.
        let (stream, _) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    // Idle connections close now; busy ones after their current request.
    graceful.shutdown().await;
}

/// How often the activity line is logged, when something was stored.
const ACTIVITY_EVERY: Duration = Duration::from_secs(2);

/// Logs, every couple of seconds in which tasks were stored, how many and the
/// file's total: what a person watching `docker compose logs -f` wants to see,
/// without a line per request.
async fn log_activity(stats: store::StoreStats) {
    let mut last = stats.written.get();
    let mut tick = tokio::time::interval(ACTIVITY_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = stats.written.get();
        if now != last {
            tracing::info!(
                "stored {} tasks in the last {}s; the file holds {}",
                now - last,
                ACTIVITY_EVERY.as_secs(),
                stats.tasks.get()
            );
            last = now;
        }
    }
}
