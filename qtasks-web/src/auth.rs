//! Who may change what: changing requests (`POST`, `PUT`, `PATCH`, `DELETE`) need the token,
//! are refused in read-only mode, and are refused when they come from another site.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::Shared;

/// The access rules of a dashboard.
#[derive(Clone)]
pub struct Access {
    /// The token changing requests need; `None`: the program's own layer authenticates.
    pub token: Option<String>,
    /// Refuse every changing request.
    pub read_only: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A random token: 32 hex digits from the operating system's random source (through uuid v4).
pub(crate) fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The middleware: lets reads through, checks changing requests.
pub(crate) async fn check(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes {
        if let Err(refused) = allow(&shared.access, request.headers()) {
            tracing::debug!(method = %request.method(), uri = %request.uri(), error = refused.code, "request refused");
            return refused.into_response();
        }
    }
    next.run(request).await
}

fn allow(access: &Access, headers: &HeaderMap) -> Result<(), ApiError> {
    if access.read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this dashboard is read-only (started with --read-only): it shows tasks but changes \
             nothing; start it without --read-only to act on tasks",
        ));
    }
    cross_site(headers)?;
    let Some(token) = &access.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request changes tasks and needs the dashboard's token: send `Authorization: \
             Bearer <token>` (the token is printed when the dashboard starts, or set with \
             --token / QTASKS_WEB_TOKEN)",
        )),
        Some(given) if !same(given.trim().as_bytes(), token.as_bytes()) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_token",
            "the token sent in `Authorization: Bearer` is not this dashboard's: use the one \
             printed when it started (or --token / QTASKS_WEB_TOKEN)",
        )),
        Some(_) => Ok(()),
    }
}

/// Refuses a request that a browser sent from another site: its `Origin` names another host
/// than the one it was sent to, or `Sec-Fetch-Site` says `cross-site`.
fn cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            format!(
                "{why}: the dashboard accepts changes only from its own pages (protection \
                 against cross-site request forgery); call the API from a program without an \
                 `Origin` header, or from the dashboard itself"
            ),
        ))
    };
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return refuse("the browser marked this request as cross-site".into());
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host.trim_end_matches('/') != host {
        return refuse(format!(
            "the request comes from {origin:?}, not from {host:?}"
        ));
    }
    Ok(())
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
