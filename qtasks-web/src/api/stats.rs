//! Figures: counts per status and queue depth per priority, live workers and the tasks
//! running, finished tasks and latency per minute, the schedules with their next fire, the registered
//! tasks (for the enqueue form).

use std::time::SystemTime;

use super::body::Json;
use axum::extract::{Query, State};
use qtasks_core::backend::inspect::{unix_ms, TaskQuery, ALL_STATUSES};
use qtasks_core::timer::Schedule;
use qtasks_core::TaskStatus;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::json;
use crate::Shared;

/// The figures of `GET /api/stats` (also the `stats` event of the live updates).
pub(crate) async fn stats_value(shared: &Shared) -> ApiResult<Value> {
    let backend = shared.app.backend();
    let stats = backend.broker.stats().await?;
    let pauses = backend.broker.pauses().await?;
    // The current minute's latency: live on the overview with the counts (`null` from a
    // storage that keeps none, which must not take the counts down with it).
    let latency = backend
        .storage
        .latency(1)
        .await
        .ok()
        .and_then(|mut minutes| minutes.pop());
    let mut by_status = Map::new();
    for s in ALL_STATUSES {
        let n = stats.by_status.get(s.as_str()).copied().unwrap_or(0);
        by_status.insert(s.as_str().into(), n.into());
    }
    Ok(json!({
        "app": shared.app.name(),
        "by_status": by_status,
        "ready_by_priority": stats.ready_by_priority,
        "ready_by_queue": stats.ready_by_queue,
        "ready": stats.ready_by_priority.values().sum::<u64>(),
        "scheduled": stats.scheduled,
        "running": stats.running,
        "dead_letter": stats.dead_letter,
        "paused": pauses,
        "latency": latency,
        "read_only": shared.access.read_only,
    }))
}

/// `GET /api/stats`.
pub(crate) async fn stats(State(shared): State<Shared>) -> ApiResult<Json<Value>> {
    stats_value(&shared).await.map(Json)
}

/// `GET /api/workers`: the live workers (by heartbeat) and the tasks running now (the newest
/// 100 of status `process`).
pub(crate) async fn workers(State(shared): State<Shared>) -> ApiResult<Json<Value>> {
    let backend = shared.app.backend();
    let workers = backend.global_config.live_workers().await?;
    let running = backend
        .storage
        .list(&TaskQuery {
            status: Some(TaskStatus::Process),
            limit: 100,
            ..TaskQuery::default()
        })
        .await?;
    Ok(Json(json!({
        "workers": workers,
        "running": running.tasks.iter().map(json::task).collect::<Vec<_>>(),
    })))
}

/// The query of `GET /api/throughput` and `GET /api/latency`.
#[derive(Debug, Deserialize)]
pub(crate) struct MinutesQuery {
    minutes: Option<u32>,
}

impl MinutesQuery {
    /// The minutes asked (60 by default), at most `max`.
    fn minutes(&self, max: u32) -> ApiResult<u32> {
        let minutes = self.minutes.unwrap_or(60);
        if !(1..=max).contains(&minutes) {
            return Err(ApiError::bad_request(format!(
                "minutes must be between 1 and {max}, not {minutes}"
            )));
        }
        Ok(minutes)
    }
}

/// `GET /api/throughput?minutes=60`: tasks finished per minute, oldest first.
pub(crate) async fn throughput(
    State(shared): State<Shared>,
    Query(q): Query<MinutesQuery>,
) -> ApiResult<Json<Value>> {
    let minutes = q.minutes(1440)?;
    let counts = shared.app.backend().storage.throughput(minutes).await?;
    Ok(Json(json!({"minutes": counts})))
}

/// `GET /api/latency?minutes=60`: per minute, oldest first, p50 and p95 of enqueue to start
/// (first attempts) and of execution (every attempt that ended); backends keep three hours.
pub(crate) async fn latency(
    State(shared): State<Shared>,
    Query(q): Query<MinutesQuery>,
) -> ApiResult<Json<Value>> {
    let minutes = q.minutes(180)?;
    let per_minute = shared.app.backend().storage.latency(minutes).await?;
    Ok(Json(json!({"minutes": per_minute})))
}

/// `GET /api/schedules`: the app's timers with their next fire (ms since the Unix epoch).
pub(crate) async fn schedules(State(shared): State<Shared>) -> Json<Value> {
    let now = SystemTime::now();
    let timers: Vec<Value> = shared
        .app
        .timers()
        .iter()
        .map(|t| {
            let schedule = match t.schedule() {
                Schedule::Every(period) => format!("every {period:?}"),
                Schedule::Cron(cron) => format!("cron {cron}"),
            };
            json!({
                "name": t.name(),
                "task": t.task_name(),
                "schedule": schedule,
                "next_fire": t.schedule().next_after(now).map(unix_ms),
            })
        })
        .collect();
    Json(json!({"schedules": timers}))
}

/// `GET /api/registry`: the tasks this app serves, with their parameters.
pub(crate) async fn registry(State(shared): State<Shared>) -> Json<Value> {
    let tasks: Vec<Value> = shared
        .app
        .tasks()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "signature": t.signature,
                "params": t.params.iter().map(|p| json!({"name": p.name, "type": p.ty})).collect::<Vec<_>>(),
                "output": t.output,
                "location": t.location(),
            })
        })
        .collect();
    Json(json!({"tasks": tasks}))
}
