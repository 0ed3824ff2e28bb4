//! `GET /metrics` (feature `metrics`): qtasks' metrics in the Prometheus text format, the queue
//! gauges refreshed by one `stats` and one `live_workers` call per scrape (see
//! `qtasks_core::observe::metrics`). Open like every `GET` of the dashboard.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use qtasks_core::observe::prometheus;

use crate::Shared;

/// The route.
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(shared): State<Shared>) -> Response {
    match prometheus::render(&shared.app).await {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot export the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot export the metrics: {e}\n"),
            )
                .into_response()
        }
    }
}
