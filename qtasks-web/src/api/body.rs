//! [`Body`]: a JSON request body whose refusal (not JSON, a missing or mistyped field) is an
//! [`ApiError`] with a JSON body, like every other refusal of the API.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

fn refused(rejection: JsonRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        "bad_request",
        format!(
            "the request body is not what this endpoint takes: {}; send JSON with \
             `Content-Type: application/json` (the fields are in /api/openapi.json)",
            rejection.body_text()
        ),
    )
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match <Json<T> as FromRequest<S>>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(refused(rejection)),
        }
    }
}

/// An optional body: none without a `Content-Type`.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match <Json<T> as OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(value) => Ok(value.map(|Json(v)| Body(v))),
            Err(rejection) => Err(refused(rejection)),
        }
    }
}
