//! JSON in and out of the API: [`Body`], a request body whose refusal (not JSON, a missing or
//! mistyped field) is an [`ApiError`] with a JSON body like every other refusal, and [`Json`],
//! a JSON response. (Written here rather than taken from axum's `json` feature, which turns on
//! `serde_json/raw_value` for every crate of a build.)

use axum::body::Bytes;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

/// A JSON response.
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "an API response could not be encoded");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the response could not be encoded as JSON",
                )
                    .into_response()
            }
        }
    }
}

fn refused(status: StatusCode, why: String) -> ApiError {
    ApiError::new(
        status,
        "bad_request",
        format!(
            "the request body is not what this endpoint takes: {why}; send JSON with \
             `Content-Type: application/json` (the fields are in /api/openapi.json)"
        ),
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn parse<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "it is not marked as JSON".into(),
        ));
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| refused(StatusCode::BAD_REQUEST, e.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| refused(StatusCode::BAD_REQUEST, e.to_string()))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(req, state).await.map(Body)
    }
}

/// An optional body: none without a `Content-Type`.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !req.headers().contains_key(header::CONTENT_TYPE) {
            return Ok(None);
        }
        parse(req, state).await.map(|v| Some(Body(v)))
    }
}
