//! `/metrics`: Prometheus counters and histograms.
//!
//! Requests are counted by method, route template (not the raw path, so
//! `/tareas/1` and `/tareas/2` are one series) and status. The keeper of the
//! tasks registers its own alongside (the store: tasks, batch size, fsync
//! time).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The labels of the request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct Metrics {
    /// What is encoded on each scrape.
    registry: Registry,
    /// Requests by method, route and status.
    requests: Family<RequestLabels, Counter>,
    /// `POST /tareas` answered, and their total time in microseconds: the
    /// live page's latency (not in `/metrics`).
    posts: Counter,
    post_micros: Counter,
}

impl Metrics {
    /// Registers the request counter, then what `more` registers.
    pub fn new(more: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = Registry::with_prefix("taskserver");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        more(&mut registry);
        Metrics {
            registry,
            requests,
            posts: Counter::default(),
            post_micros: Counter::default(),
        }
    }

    /// `POST /tareas` answered so far, and their total time in seconds.
    pub fn post_totals(&self) -> (u64, f64) {
        (self.posts.get(), self.post_micros.get() as f64 / 1e6)
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Middleware that counts every response, errors made by outer layers
/// included.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = match *req.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::HEAD => req.method().to_string(),
        _ => "other".into(),
    };
    let route = route_of(req.uri().path()).to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    if method == "POST" && route == "/tareas" {
        metrics.posts.inc();
        metrics
            .post_micros
            .inc_by(started.elapsed().as_micros() as u64);
    }
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    response
}

/// The route template a path falls under.
fn route_of(path: &str) -> &'static str {
    match path {
        "/tareas" => "/tareas",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/" => "/",
        "/live" => "/live",
        p if p.starts_with("/tareas/") && !p["/tareas/".len()..].contains('/') => "/tareas/{id}",
        _ => "unmatched",
    }
}
