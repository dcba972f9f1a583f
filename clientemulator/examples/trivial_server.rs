//! A trivial endpoint for measuring the load engine itself: `POST /tareas`
//! answers 201 at once and stores nothing, `GET /health` answers ok.
//!
//! ```text
//! cargo run --release --example trivial_server -- 127.0.0.1:9100
//! clientemulator --url http://127.0.0.1:9100 -z 10s -c 50 --no-verify
//! ```
//!
//! Run any other load tool against the same address and concurrency to
//! compare requests per second. (`--no-verify`: nothing is stored.)

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let app = Router::new()
        .route(
            "/tareas",
            post(|| async { (StatusCode::CREATED, Json(json!({"id": 1}))) }),
        )
        .route(
            "/health",
            get(|| async { Json(json!({"status": "ok", "tareas": 0})) }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "trivial_server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
