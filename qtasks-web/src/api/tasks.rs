//! Tasks: enqueue by name (checked against the task's parameters, optionally waiting for the
//! end), get one, list and search with a cursor, cancel.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use qtasks_core::backend::inspect::{from_unix_ms, Cursor, TaskQuery, MAX_PAGE};
use qtasks_core::backend::CancelOutcome;
use qtasks_core::{Error, TaskStatus, Uuid};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::json;
use crate::Shared;

/// The longest wait an enqueue may ask for.
const MAX_WAIT_SECS: f64 = 60.0;

/// The body of `POST /api/tasks`.
#[derive(Debug, Deserialize)]
pub(crate) struct Enqueue {
    task: String,
    #[serde(default = "empty_args")]
    args: Value,
    #[serde(default)]
    wait_secs: Option<f64>,
}

fn empty_args() -> Value {
    json!({})
}

/// `POST /api/tasks`: `201` with the new record; with `wait_secs`, `200` with the final record
/// when it ended in time, else `202` with the record as it is.
pub(crate) async fn enqueue(
    State(shared): State<Shared>,
    Body(body): Body<Enqueue>,
) -> ApiResult<Response> {
    let wait = match body.wait_secs {
        None => None,
        Some(s) if s.is_finite() && (0.0..=MAX_WAIT_SECS).contains(&s) => {
            Some(Duration::from_secs_f64(s))
        }
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "wait_secs must be between 0 and {MAX_WAIT_SECS} seconds, not {s}"
            )))
        }
    };
    let task = shared.app.add_task(&body.task, &body.args).await?;
    tracing::info!(task_name = %body.task, task_uuid = %task.uuid, "task enqueued from the web API");
    let Some(wait) = wait else {
        return Ok((StatusCode::CREATED, Json(json::task(&task))).into_response());
    };
    match shared.app.wait(task.uuid, wait).await {
        Ok(done) => Ok((StatusCode::OK, Json(json::task(&done))).into_response()),
        Err(Error::Timeout { .. }) => {
            let now = shared.app.get(task.uuid).await?.unwrap_or(task);
            Ok((StatusCode::ACCEPTED, Json(json::task(&now))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses a uuid from the path.
pub(crate) fn parse_uuid(s: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(s).map_err(|_| {
        ApiError::bad_request(format!(
            "{s:?} is not a task uuid (such as 67e55044-10b1-426f-9247-bb680e5fe0c8)"
        ))
    })
}

/// `GET /api/tasks/{uuid}`.
pub(crate) async fn get(
    State(shared): State<Shared>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let uuid = parse_uuid(&uuid)?;
    match shared.app.get(uuid).await? {
        Some(task) => Ok(Json(json::task(&task))),
        None => Err(Error::NotFound(uuid).into()),
    }
}

/// The query of `GET /api/tasks`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    task: Option<String>,
    /// ms since the Unix epoch.
    since: Option<u64>,
    until: Option<u64>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Parses a status name, listing the valid ones when it is not one.
pub(crate) fn parse_status(s: &str) -> ApiResult<TaskStatus> {
    TaskStatus::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{s:?} is not a status; the statuses are new, process, retry, success, error, cancel"
        ))
    })
}

/// `GET /api/tasks`: one page, newest first, and the cursor of the next (`next`, `null` on
/// the last page).
pub(crate) async fn list(
    State(shared): State<Shared>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let query = TaskQuery {
        status: non_empty(q.status).map(|s| parse_status(&s)).transpose()?,
        task_name: non_empty(q.task),
        since: q.since.map(from_unix_ms),
        until: q.until.map(from_unix_ms),
        text: non_empty(q.q),
        cursor: non_empty(q.cursor)
            .map(|c| c.parse::<Cursor>())
            .transpose()?,
        limit,
    };
    let page = shared.app.backend().storage.list(&query).await?;
    Ok(Json(json!({
        "tasks": page.tasks.iter().map(json::task).collect::<Vec<_>>(),
        "next": page.next.map(|c| c.to_string()),
    })))
}

/// The body of `POST /api/tasks/{uuid}/cancel`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CancelBody {
    reason: Option<String>,
}

/// `POST /api/tasks/{uuid}/cancel`: `{"outcome": "cancelled" | "running" | "finished"}`
/// (`running`: the worker was told to stop it), `404` for an unknown task.
pub(crate) async fn cancel(
    State(shared): State<Shared>,
    Path(uuid): Path<String>,
    body: Option<Body<CancelBody>>,
) -> ApiResult<Json<Value>> {
    let uuid = parse_uuid(&uuid)?;
    let reason = body
        .and_then(|Body(b)| b.reason)
        .unwrap_or_else(|| "cancelled from the dashboard".into());
    let outcome = match shared.app.cancel(uuid, &reason).await? {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Running => "running",
        CancelOutcome::Finished => "finished",
        CancelOutcome::NotFound => return Err(Error::NotFound(uuid).into()),
    };
    tracing::info!(task_uuid = %uuid, outcome, "task cancel asked from the web API");
    Ok(Json(json!({"outcome": outcome})))
}
