//! `ceiling`: what taskserver's HTTP path can do when storing costs nothing.
//!
//! It serves `POST /tareas` through taskserver's own middleware stack
//! ([`taskserver::api::with_middleware`]: body limit, timeout, JSON errors,
//! request metrics, tracing) and its own request handling (the same
//! content-type, JSON and task checks, the same `Idempotency-Key` check, the
//! same public JSON of a [`Record`]), on the same runtime and log setup as
//! `taskserver`. It answers `201` with the task and a `Location`, like
//! taskserver, but keeps nothing: ids come from a counter. The gap between
//! its throughput and taskserver's is what the store (queue, lock, write,
//! `fdatasync`) costs.
//!
//! ```text
//! ceiling [--bind ADDR]        # default 127.0.0.1:9100, or CEILING_BIND
//! ```
//!
//! Routes: `POST /tareas`, `GET /health`, `GET /metrics`. Stops on Ctrl-C or
//! SIGTERM like taskserver.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use taskserver::api::{idempotency_key, parse_task, with_middleware};
use taskserver::error::ApiError;
use taskserver::metrics::Metrics;
use taskserver::store::StoreStats;
use taskserver::task::Record;
use tracing_subscriber::EnvFilter;

/// What the handlers share.
#[derive(Clone)]
struct Ceiling {
    /// The last id handed out: stands in for the store's id assignment.
    last_id: Arc<AtomicU64>,
    /// Served at `/metrics`, fed by the same middleware as taskserver's.
    metrics: Arc<Metrics>,
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
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("cannot listen on {bind}; choose another with --bind"))?;
        eprintln!("ceiling: listening on {}", listener.local_addr()?);
        axum::serve(listener, app())
            .with_graceful_shutdown(taskserver::shutdown::signal())
            .await
            .context("serving")
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

/// The routes, through taskserver's middleware.
fn app() -> Router {
    let metrics = Arc::new(Metrics::new(&StoreStats::default()));
    let state = Ceiling {
        last_id: Arc::new(AtomicU64::new(0)),
        metrics: metrics.clone(),
    };
    let routes = Router::new()
        .route("/tareas", post(create))
        .route("/health", get(health))
        .route("/metrics", get(serve_metrics))
        .with_state(state);
    with_middleware(routes, metrics)
}

/// `POST /tareas` as taskserver handles it, minus the store.
async fn create(
    State(app): State<Ceiling>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let task = parse_task(&headers, body)?.validate()?;
    let key = idempotency_key(&headers)?;
    let id = app.last_id.fetch_add(1, Ordering::Relaxed) + 1;
    let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let json = Bytes::from(Record::new(id, &task, creada_en, key).public_json());
    let location = HeaderValue::try_from(format!("/tareas/{id}")).expect("ASCII");
    Ok((
        StatusCode::CREATED,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::LOCATION, location),
        ],
        json,
    )
        .into_response())
}

/// `GET /health`, shaped like taskserver's: `tareas` counts the answers.
async fn health(State(app): State<Ceiling>) -> Response {
    let tareas = app.last_id.load(Ordering::Relaxed);
    Json(Health {
        status: "ok",
        tareas,
    })
    .into_response()
}

/// The body of `GET /health`.
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    tareas: u64,
}

/// `GET /metrics`: requests by route and status, from the shared middleware.
async fn serve_metrics(State(app): State<Ceiling>) -> String {
    app.metrics.encode()
}
