//! The dashboard's pages: one HTML shell for every page path (overview, tasks, task detail,
//! dead letter, schedules, workers), and its script and style, all from `assets/` compiled
//! into the binary. The script renders every value from tasks with `textContent`.

use axum::extract::NestedPath;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::Shared;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// The page paths (the script picks the page from the path).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/tasks", get(index))
        .route("/tasks/{uuid}", get(index))
        .route("/dead", get(index))
        .route("/schedules", get(index))
        .route("/workers", get(index))
        .route("/assets/app.js", get(script))
        .route("/assets/style.css", get(style))
}

/// The shell, told where the dashboard is mounted (`Router::nest` prefix, empty at the root).
async fn index(parts: Parts) -> Html<String> {
    let base = parts
        .extensions
        .get::<NestedPath>()
        .map(|n| n.as_str().trim_end_matches('/').to_string())
        .unwrap_or_default();
    Html(INDEX.replace("{{BASE}}", &escape_attr(&base)))
}

/// Escapes text for an HTML attribute value in double quotes.
fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
