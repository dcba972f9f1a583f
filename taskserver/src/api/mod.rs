//! The HTTP API: routes, handlers and middleware. It knows nothing of files:
//! every task goes through a [`Tasks`] (the data file's store, or, for the
//! benchmark's ceiling, a keeper that keeps nothing).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

mod live;
mod tasks;

pub use live::Live;
pub use tasks::{Freshness, Tasks};

use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::store::NewEntry;
use crate::task::NewTask;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest a request may take, commit included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `Idempotency-Key` accepted.
const MAX_KEY: usize = 200;

/// What every handler shares.
#[derive(Clone)]
struct AppState<T> {
    /// Where tasks live.
    tasks: T,
    /// Served at `/metrics`.
    metrics: Arc<Metrics>,
}

/// The whole application over `tasks`, ready to serve or to test with
/// `oneshot`.
pub fn app<T: Tasks>(tasks: T) -> Router {
    let metrics = Arc::new(Metrics::new(|registry| tasks.register_metrics(registry)));
    let state = AppState {
        tasks,
        metrics: metrics.clone(),
    };
    let routes = Router::new()
        .route("/", get(page))
        .route("/live", get(serve_live::<T>))
        .route("/tareas", get(list::<T>).post(create::<T>))
        .route("/tareas/{id}", get(get_one::<T>))
        .route("/health", get(health::<T>))
        .route("/metrics", get(serve_metrics::<T>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    with_middleware(routes, metrics)
}

/// The middleware every route of [`app`] runs through: body limit, timeout,
/// JSON errors, request metrics, tracing.
fn with_middleware(routes: Router, metrics: Arc<Metrics>) -> Router {
    routes
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(TraceLayer::new_for_http())
}

/// `POST /tareas`: validate, store durably, answer 201 (or 200 for a retry).
async fn create<T: Tasks>(
    State(app): State<AppState<T>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let task = parse_task(&headers, body)?.validate()?;
    let idempotency_key = idempotency_key(&headers)?;
    let inserted = app
        .tasks
        .insert(NewEntry {
            task,
            idempotency_key,
        })
        .await?;
    let status = if inserted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/tareas/{}", inserted.id);
    Ok((
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::LOCATION,
                HeaderValue::try_from(location).expect("ASCII"),
            ),
        ],
        inserted.json,
    )
        .into_response())
}

/// Checks the content type, the size and the JSON of a task body.
fn parse_task(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<NewTask, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = content_type.as_deref().is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    });
    if !is_json {
        let got = content_type.map_or_else(|| "no Content-Type".into(), |ct| format!("`{ct}`"));
        return Err(ApiError::UnsupportedMediaType(got));
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest(format!(
            "the body could not be read: {}",
            rejection.body_text()
        )),
    })?;
    // Whether the body is JSON alone decides between 400 and 422, whatever
    // serde meets first while reading a task: a wrong type before a syntax
    // error is still bad JSON, and a number beyond f64 or nesting deeper
    // than serde's recursion limit is still JSON. A syntax-only read
    // (`IgnoredAny`: no depth limit, no number range) decides; it does not
    // check UTF-8 inside strings, so that comes first.
    if let Err(e) = std::str::from_utf8(&body) {
        return Err(ApiError::BadJson(format!("it is not UTF-8: {e}")));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::BadJson(e.to_string()));
    }
    // serde would also read a task from an array (`["titulo"]`): only an
    // object is a task.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidTask(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice::<NewTask>(&body).map_err(|e| ApiError::InvalidTask(e.to_string()))
}

/// The `Idempotency-Key` header, if any: visible ASCII, at most 200 bytes.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters, such as a UUID"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// Query of `GET /tareas`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Only tasks with a larger id.
    despues_de: Option<u64>,
    /// At most this many tasks.
    limite: Option<usize>,
    /// `local` for a read of what this node holds, with no round trip to
    /// the others (cluster mode); `linealizable` (the default) otherwise.
    consistencia: Option<Consistency>,
}

/// Query of `GET /tareas/{id}`.
#[derive(Debug, Deserialize)]
struct OneQuery {
    consistencia: Option<Consistency>,
}

/// The values of `?consistencia=`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Consistency {
    Linealizable,
    Local,
}

fn freshness(c: Option<Consistency>) -> Freshness {
    match c {
        Some(Consistency::Local) => Freshness::Local,
        Some(Consistency::Linealizable) | None => Freshness::Linearizable,
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!(
        "{}; use ?despues_de=<id>&limite=<count> with non-negative integers, and ?consistencia=local or linealizable",
        e.body_text()
    ))
}

/// `GET /tareas`: the tasks in id order, streamed from memory.
async fn list<T: Tasks>(
    State(app): State<AppState<T>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let page = app
        .tasks
        .page(
            q.despues_de.unwrap_or(0),
            q.limite.unwrap_or(usize::MAX),
            freshness(q.consistencia),
        )
        .await?;
    let mut parts = Vec::with_capacity(page.parts.len() + 2);
    parts.push(Bytes::from_static(b"["));
    parts.extend(page.parts);
    parts.push(Bytes::from_static(b"]\n"));
    let length: usize = parts.iter().map(Bytes::len).sum();
    let stream = futures::stream::iter(parts.into_iter().map(Ok::<_, std::convert::Infallible>));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /tareas/{id}`.
async fn get_one<T: Tasks>(
    State(app): State<AppState<T>>,
    Path(id): Path<String>,
    query: Result<Query<OneQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let missing = || ApiError::NotFound(format!("there is no task with id {id}"));
    let number: u64 = id.parse().map_err(|_| missing())?;
    let json = app
        .tasks
        .get(number, freshness(q.consistencia))
        .await?
        .ok_or_else(missing)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response())
}

/// `GET /health`: ok and the number of tasks; `503` with the reason when the
/// server cannot store tasks any more, so that Docker's healthcheck fails too.
async fn health<T: Tasks>(State(app): State<AppState<T>>) -> Result<Response, ApiError> {
    Ok(Json(app.tasks.health().await?).into_response())
}

/// `GET /`: the live page (see [`live`]).
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        live::PAGE,
    )
        .into_response()
}

/// `GET /live`: what the page polls: the keeper's counters and the POST
/// latency totals of [`Metrics`].
async fn serve_live<T: Tasks>(State(app): State<AppState<T>>) -> Result<Json<Live>, ApiError> {
    let mut live = app.tasks.live().await?;
    (live.posts, live.post_seconds) = app.metrics.post_totals();
    Ok(Json(live))
}

/// `GET /metrics`.
async fn serve_metrics<T: Tasks>(State(app): State<AppState<T>>) -> Response {
    app.tasks.refresh_metrics();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "there is no route {method} {}; the API has /tareas, /tareas/{{id}}, /health and /metrics",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let allowed = if uri.path() == "/tareas" {
        "GET and POST"
    } else {
        "GET"
    };
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; use {allowed}",
        uri.path()
    ))
}

/// Gives the errors made by tower layers (body limit, timeout) the same JSON
/// shape as the handlers' errors.
async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge.into_response(),
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout.into_response(),
        _ => response,
    }
}
