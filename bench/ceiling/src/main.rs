//! `ceiling`: what taskserver's HTTP path can do when storing costs nothing.
//!
//! It is taskserver itself, with the data file's store replaced by a keeper
//! that keeps nothing: the same router and handlers ([`taskserver::app`]:
//! content-type, JSON and task checks, the `Idempotency-Key` check, the same
//! public JSON of a [`Record`]), the same middleware, the same accept loop
//! ([`taskserver::serve`]: header-read timeout, HTTP/1.1), the same listen
//! backlog, runtime and log setup. Ids come from a counter and nothing is
//! kept, so the gap between its throughput and taskserver's is exactly what
//! the store costs: the queue, the committer, the locks, the write and the
//! `fdatasync`.
//!
//! ```text
//! ceiling [--bind ADDR]        # default 127.0.0.1:9100, or CEILING_BIND
//! ```
//!
//! `POST /tareas` answers `201` with the task; `GET /tareas` is always empty
//! and `GET /tareas/{id}` always 404, since nothing is kept. Stops on Ctrl-C
//! or SIGTERM like taskserver.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use bytes::Bytes;
use prometheus_client::registry::Registry;
use taskserver::api::Freshness;
use taskserver::error::ApiError;
use taskserver::store::{Inserted, NewEntry, Page};
use taskserver::task::Record;
use taskserver::Tasks;
use tracing_subscriber::EnvFilter;

/// Keeps nothing: answers every task as stored, with the next id.
#[derive(Clone, Default)]
struct Nothing {
    /// The last id handed out: stands in for the store's id assignment.
    last_id: Arc<AtomicU64>,
}

impl Tasks for Nothing {
    async fn insert(&self, entry: NewEntry) -> Result<Inserted, ApiError> {
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let record = Record::new(id, &entry.task, creada_en, entry.idempotency_key);
        Ok(Inserted {
            id,
            json: Bytes::from(record.public_json()),
            created: true,
        })
    }

    async fn page(&self, _after: u64, _limit: usize, _: Freshness) -> Result<Page, ApiError> {
        Ok(Page::default())
    }

    async fn get(&self, _id: u64, _: Freshness) -> Result<Option<Bytes>, ApiError> {
        Ok(None)
    }

    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        // `tareas` counts the answers, so that a load tool's wait for
        // /health and its counts look as they do against taskserver.
        let tareas = self.last_id.load(Ordering::Relaxed);
        Ok(serde_json::json!({ "status": "ok", "tareas": tareas }))
    }

    fn register_metrics(&self, _registry: &mut Registry) {}
}

fn main() -> anyhow::Result<()> {
    // The same log setup as taskserver: the same filter decides which of
    // TraceLayer's spans are recorded, so both pay the same for tracing.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let bind = bind_address()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let backlog = taskserver::listen::DEFAULT_BACKLOG;
        taskserver::listen::raise_open_files_limit(u64::from(backlog) + 64);
        let listener = taskserver::listen::bind(&bind, backlog).await?;
        eprintln!("ceiling: listening on {}", listener.local_addr()?);
        let shutdown = taskserver::shutdown::signal();
        taskserver::serve(listener, taskserver::app(Nothing::default()), shutdown).await;
        Ok(())
    })
}

/// `--bind ADDR`, else `CEILING_BIND`, else 127.0.0.1:9100.
fn bind_address() -> anyhow::Result<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(std::env::var("CEILING_BIND").unwrap_or_else(|_| "127.0.0.1:9100".into())),
        (Some("--bind"), Some(addr), None) => Ok(addr),
        _ => anyhow::bail!("usage: ceiling [--bind ADDR]"),
    }
}
