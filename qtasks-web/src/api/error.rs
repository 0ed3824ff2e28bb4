//! [`ApiError`]: a refused or failed request, as a status code and a JSON body that says why
//! (`{"error": "<code>", "message": "<what is wrong and what to do>"}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use qtasks_core::Error;
use serde_json::json;

/// A refused or failed request.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A request whose input is wrong (`400`).
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::UnknownTask { .. } => (StatusCode::NOT_FOUND, "unknown_task"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::BadArguments { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "bad_arguments"),
            Error::Encode { .. } | Error::Config { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Backend { .. } => (StatusCode::SERVICE_UNAVAILABLE, "backend"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "API request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// The result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
