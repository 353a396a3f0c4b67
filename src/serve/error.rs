//! The API's one error type and its JSON form: `{"error": {"field", "message"}}` with a
//! status saying whose fault it is (400 bad request, 401/403 access, 404 no such batch (or
//! job, or output), 413 too large, 409 an id taken by another batch, 429 too many failed
//! tokens from one address (with `Retry-After`), 503 Redis unavailable, 507 the uploads
//! directory full, 500 anything else). Internal
//! errors are logged and answered with a generic message.

use crate::batch::BatchError;
use crate::queue::QueueError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("token {0:?} is read-only; this call needs an operator token")]
    Forbidden(String),
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        variant: Option<usize>,
        message: String,
    },
    #[error("{field}: {message}")]
    TooLarge { field: String, message: String },
    #[error("{field}: {message}")]
    Full { field: String, message: String },
    #[error("too many failed tokens from this address; try again in {0} s")]
    Throttled(u64),
    #[error("no batch {0}")]
    NotFound(String),
    /// Something else named by the request is not there (a job of the batch, its output).
    #[error("{field}: {message}")]
    Missing { field: String, message: String },
    #[error("batch id {0} is taken by a different batch")]
    Conflict(String),
    #[error("Redis is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn missing(field: &str, message: impl Into<String>) -> Self {
        ApiError::Missing {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.to_owned(),
            variant: None,
            message: message.into(),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        ApiError::Invalid {
            field: e.field,
            variant: e.variant,
            message: e.message,
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NoBatch(id) => ApiError::NotFound(id),
            QueueError::BatchConflict(id) => ApiError::Conflict(id),
            QueueError::BadId(m) => ApiError::invalid("batch_id", m),
            QueueError::Unavailable { .. } => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status_and_field().0
    }

    fn status_and_field(&self) -> (StatusCode, Option<String>) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            ApiError::Invalid { field, .. } => (StatusCode::BAD_REQUEST, Some(field.clone())),
            ApiError::TooLarge { field, .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, Some(field.clone()))
            }
            ApiError::Full { field, .. } => (StatusCode::INSUFFICIENT_STORAGE, Some(field.clone())),
            ApiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, Some("batch_id".to_owned())),
            ApiError::Missing { field, .. } => (StatusCode::NOT_FOUND, Some(field.clone())),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, Some("batch_id".to_owned())),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(why) = &self {
            tracing::warn!(error = %why, "API request failed.");
        }
        let (status, field) = self.status_and_field();
        let message = match &self {
            ApiError::Invalid { message, .. }
            | ApiError::TooLarge { message, .. }
            | ApiError::Full { message, .. }
            | ApiError::Missing { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let mut err = json!({ "field": field, "message": message });
        if let ApiError::Invalid {
            variant: Some(v), ..
        } = &self
        {
            err["variant"] = json!(v);
        }
        let mut res = (status, Json(json!({ "error": err }))).into_response();
        if let ApiError::Throttled(secs) = &self {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, (*secs).into());
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}
