//! Acting on tasks: retry and delete failed tasks (one or in bulk), purge finished ones, pause
//! and resume a task name or the whole app.

use std::time::{Duration, SystemTime};

use super::body::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use qtasks_core::backend::inspect::{PauseTarget, Purge};
use qtasks_core::{TaskStatus, Uuid};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::Body;
use super::error::{ApiError, ApiResult};
use super::tasks::{parse_status, parse_uuid};
use crate::Shared;

/// The most uuids one bulk request may name.
const MAX_BULK: usize = 1000;

/// The body of the bulk requests.
#[derive(Debug, Deserialize)]
pub(crate) struct Bulk {
    uuids: Vec<Uuid>,
}

fn check_bulk(bulk: &Bulk) -> ApiResult<()> {
    if bulk.uuids.len() > MAX_BULK {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BULK} uuids per request, not {}: send them in several requests",
            bulk.uuids.len()
        )));
    }
    Ok(())
}

/// `POST /api/tasks/retry`: queues the failed tasks among `uuids` again;
/// `{"retried": [uuid, ..]}` (others are skipped).
pub(crate) async fn retry(
    State(shared): State<Shared>,
    Body(bulk): Body<Bulk>,
) -> ApiResult<Json<Value>> {
    check_bulk(&bulk)?;
    let retried = shared.app.backend().broker.retry_dead(&bulk.uuids).await?;
    tracing::info!(
        count = retried.len(),
        "failed tasks retried from the web API"
    );
    Ok(Json(json!({"retried": retried})))
}

/// `POST /api/tasks/{uuid}/retry`: `200`, or `409` when the task has not failed.
pub(crate) async fn retry_one(
    State(shared): State<Shared>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let uuid = parse_uuid(&uuid)?;
    let retried = shared.app.backend().broker.retry_dead(&[uuid]).await?;
    if retried.is_empty() {
        return Err(not_acted(
            &shared,
            uuid,
            "retried: only a failed task (status error) can be",
        )
        .await);
    }
    tracing::info!(task_uuid = %uuid, "failed task retried from the web API");
    Ok(Json(json!({"retried": retried})))
}

/// `404` for an unknown task, `409` for one in a status that does not allow the action.
async fn not_acted(shared: &Shared, uuid: Uuid, what: &str) -> ApiError {
    match shared.app.get(uuid).await {
        Ok(Some(task)) => ApiError::new(
            StatusCode::CONFLICT,
            "wrong_status",
            format!("task {uuid} has status {} and was not {what}", task.status),
        ),
        Ok(None) => qtasks_core::Error::NotFound(uuid).into(),
        Err(e) => e.into(),
    }
}

/// `POST /api/tasks/delete`: deletes the finished tasks among `uuids`;
/// `{"deleted": [uuid, ..]}` (queued and running ones are skipped).
pub(crate) async fn delete(
    State(shared): State<Shared>,
    Body(bulk): Body<Bulk>,
) -> ApiResult<Json<Value>> {
    check_bulk(&bulk)?;
    let deleted = shared.app.backend().broker.delete(&bulk.uuids).await?;
    tracing::info!(count = deleted.len(), "tasks deleted from the web API");
    Ok(Json(json!({"deleted": deleted})))
}

/// `DELETE /api/tasks/{uuid}`: `204`, `404`, or `409` when the task has not finished.
pub(crate) async fn delete_one(
    State(shared): State<Shared>,
    Path(uuid): Path<String>,
) -> ApiResult<StatusCode> {
    let uuid = parse_uuid(&uuid)?;
    let deleted = shared.app.backend().broker.delete(&[uuid]).await?;
    if deleted.is_empty() {
        return Err(not_acted(
            &shared,
            uuid,
            "deleted: only a finished task can be (cancel it first)",
        )
        .await);
    }
    tracing::info!(task_uuid = %uuid, "task deleted from the web API");
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /api/purge`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PurgeBody {
    /// Final statuses; default `success` and `cancel`.
    statuses: Option<Vec<String>>,
    /// Only records that last changed at least this long ago; default 0.
    older_than_secs: Option<u64>,
}

/// `POST /api/purge`: deletes finished records; `{"purged": n}`.
pub(crate) async fn purge(
    State(shared): State<Shared>,
    Body(body): Body<PurgeBody>,
) -> ApiResult<Json<Value>> {
    let statuses = match body.statuses {
        None => vec![TaskStatus::Success, TaskStatus::Cancel],
        Some(names) => names
            .iter()
            .map(|s| parse_status(s))
            .collect::<ApiResult<Vec<_>>>()?,
    };
    if let Some(s) = statuses.iter().find(|s| !s.is_final()) {
        return Err(ApiError::bad_request(format!(
            "only finished tasks are purged (success, error, cancel), not {s}: cancel queued tasks first"
        )));
    }
    // `before` is exclusive: a record that changed exactly `older_than_secs` ago goes too.
    let before = SystemTime::now() - Duration::from_secs(body.older_than_secs.unwrap_or(0))
        + Duration::from_millis(1);
    let purged = shared
        .app
        .backend()
        .broker
        .purge(&Purge { statuses, before })
        .await?;
    tracing::info!(purged, "finished tasks purged from the web API");
    Ok(Json(json!({"purged": purged})))
}

/// The body of `POST /api/pause` and `/api/resume`: a task name, a queue, or nothing for the
/// app.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PauseBody {
    task: Option<String>,
    queue: Option<String>,
}

async fn set_paused(
    shared: &Shared,
    body: Option<Body<PauseBody>>,
    paused: bool,
) -> ApiResult<Json<Value>> {
    let body = body.map(|Body(b)| b).unwrap_or_default();
    let queue = body.queue.filter(|q| !q.is_empty());
    let target = match body.task.filter(|t| !t.is_empty()) {
        None if queue.is_some() => {
            let queue = queue.unwrap_or_default();
            if let Err(message) = qtasks_core::control::check_queue_name(&queue) {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_queue", message));
            }
            PauseTarget::Queue(queue)
        }
        Some(name) => {
            if shared.app.task(&name).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_task",
                    format!(
                        "no task {name:?} is registered in app {:?}",
                        shared.app.name()
                    ),
                ));
            }
            PauseTarget::Task(name)
        }
        None => PauseTarget::App,
    };
    shared
        .app
        .backend()
        .broker
        .set_paused(&target, paused)
        .await?;
    tracing::info!(?target, paused, "claims paused or resumed from the web API");
    let now = shared.app.backend().broker.pauses().await?;
    Ok(Json(json!(now)))
}

/// `POST /api/pause`: claims of the task name (or the app) stop; enqueues go on.
pub(crate) async fn pause(
    State(shared): State<Shared>,
    body: Option<Body<PauseBody>>,
) -> ApiResult<Json<Value>> {
    set_paused(&shared, body, true).await
}

/// `POST /api/resume`.
pub(crate) async fn resume(
    State(shared): State<Shared>,
    body: Option<Body<PauseBody>>,
) -> ApiResult<Json<Value>> {
    set_paused(&shared, body, false).await
}

/// `GET /api/pauses`: `{"app": bool, "tasks": [name, ..], "queues": [queue, ..]}`.
pub(crate) async fn pauses(State(shared): State<Shared>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(shared.app.backend().broker.pauses().await?)))
}
