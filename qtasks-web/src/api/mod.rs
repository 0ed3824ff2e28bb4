//! The JSON API, one file per group of endpoints: `tasks` (enqueue, get, list, cancel),
//! `admin` (retry and delete failed tasks, purge, pause and resume), `stats` (counts,
//! workers, throughput, latency, schedules, registered tasks), `openapi` (the document at
//! `/api/openapi.json`); `json` renders records, `error` renders refusals, `body` reads request bodies.

mod admin;
mod body;
pub(crate) mod error;
pub(crate) mod json;
mod openapi;
pub(crate) mod stats;
mod tasks;

use axum::routing::{get, post};
use axum::Router;

use crate::Shared;

/// Every API route, relative to `/api`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/tasks", get(tasks::list).post(tasks::enqueue))
        .route("/tasks/{uuid}", get(tasks::get).delete(admin::delete_one))
        .route("/tasks/{uuid}/cancel", post(tasks::cancel))
        .route("/tasks/{uuid}/retry", post(admin::retry_one))
        .route("/tasks/retry", post(admin::retry))
        .route("/tasks/delete", post(admin::delete))
        .route("/purge", post(admin::purge))
        .route("/pauses", get(admin::pauses))
        .route("/pause", post(admin::pause))
        .route("/resume", post(admin::resume))
        .route("/stats", get(stats::stats))
        .route("/workers", get(stats::workers))
        .route("/throughput", get(stats::throughput))
        .route("/latency", get(stats::latency))
        .route("/schedules", get(stats::schedules))
        .route("/registry", get(stats::registry))
}
