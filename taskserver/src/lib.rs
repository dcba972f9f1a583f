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
//! - [`api`]: the router and its handlers; errors in [`error`].
//! - [`task`]: what a task is and the rules it must follow.
//! - [`store`]: the data file: group commit, locks, catch-up, recovery.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
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

pub mod api;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod shutdown;
pub mod store;
pub mod task;

use std::future::Future;

pub use api::app;
pub use store::{Store, StoreError};

/// Serves the API on `listener` until `shutdown` completes, then finishes
/// in-flight requests and waits for every queued commit.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %store.path().display(), "taskserver listening");
    let activity = tokio::spawn(log_activity(store.stats().clone()));
    axum::serve(listener, app(store.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    activity.abort();
    tracing::info!("no longer accepting; waiting for queued commits");
    // The last handle's drop joins the committer: a blocking wait.
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    tracing::info!("shutdown complete: every accepted task is committed");
    Ok(())
}

/// How often the activity line is logged, when something was stored.
const ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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
