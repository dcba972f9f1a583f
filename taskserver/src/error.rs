//! Every error a client can get, as a status and a JSON message to act on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::{KeyConflict, StoreError};
use crate::task::ValidationError;

/// Why a request failed. Each variant maps to one row of the contract's
/// error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON ({0}); send a JSON object such as {{\"titulo\": \"Comprar pan\"}}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Content-Type must be application/json (got {0}); send the header `Content-Type: application/json`")]
    UnsupportedMediaType(String),
    #[error("the body is not a valid task: {0}. A task is an object with `titulo` (required string), and optionally `descripcion` (string), `completada` (boolean), `cliente` (string)")]
    InvalidTask(String),
    #[error("{0}")]
    Validation(#[from] ValidationError),
    #[error("{0}; send a new Idempotency-Key for a new task, or the same body to get the first task back")]
    KeyReused(#[from] KeyConflict),
    #[error("the body is larger than the limit of 64 KiB; send a smaller task")]
    PayloadTooLarge,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the request took too long and was cancelled; if it was a POST with an Idempotency-Key, retry it with the same key to learn whether it was stored")]
    Timeout,
    #[error("the data file cannot be used: {0}. Nothing was stored by this request; retry once the problem is fixed")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unhealthy(String),
    /// The server broke (only `--unsafe-no-locking` does: a file read
    /// while another request rewrites it).
    #[error("{0}")]
    Internal(String),
    /// Cluster mode: no leader, or no quorum, could take the request within
    /// the time a request may wait; nothing was acknowledged.
    #[error("{0}; nothing was acknowledged: retry in a moment (with the same Idempotency-Key, for a POST)")]
    Unavailable(String),
    /// Cluster mode: a request that needs the cluster's secret came without it.
    #[error("this request needs the cluster's secret: send `Authorization: Bearer <TASKSERVER_CLUSTER_SECRET>`")]
    Forbidden,
}

impl ApiError {
    /// The HTTP status of each error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidTask(_) | ApiError::Validation(_) | ApiError::KeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(_) | ApiError::Unhealthy(_) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Forbidden => StatusCode::UNAUTHORIZED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            // The committer logs failed commits; this also covers reads.
            tracing::warn!(error = %e, "answering 503");
        }
        let body = match &self {
            // The shape of `/health`, with the reason.
            ApiError::Unhealthy(reason) => {
                serde_json::json!({ "status": "failed", "error": reason })
            }
            _ => serde_json::json!({ "error": self.to_string() }),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::Unavailable(_) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
