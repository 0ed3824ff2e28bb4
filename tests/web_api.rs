//! The web API (`qtasks::web`), every endpoint, on the memory backend and on a real Redis
//! (a private `redis-server`, or `QTASKS_REDIS_URL`): status codes, refusals without the
//! token, from another site and in read-only mode, pagination with the cursor, and that every
//! route is in the OpenAPI document. Requests go through the real axum router.
#![cfg(feature = "web")]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use qtasks::prelude::*;
use qtasks::web::Dashboard;
use qtasks::Uuid;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::DEADLINE;

#[qtasks::task(name = "web.add")]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task(name = "web.boom")]
async fn boom(message: String) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(message))
}

/// Fails the first attempt of each key, succeeds on the next.
#[qtasks::task(
    name = "web.flaky",
    retry = 1,
    retry_backoff = "fixed",
    retry_delay = 0.01
)]
async fn flaky(key: String) -> Result<u32, std::io::Error> {
    static FAILED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut failed = FAILED.lock().unwrap();
    if failed.contains(&key) {
        return Ok(7);
    }
    failed.push(key);
    Err(std::io::Error::other("the first attempt fails"))
}

const TOKEN: &str = "test-token";

/// An app on one backend, and its dashboard.
struct Env {
    app: App,
    router: Router,
    backend: &'static str,
}

/// A fresh app (its own name, so its own keys) on each backend this machine has: memory, and
/// Redis when a server is available.
fn envs(name: &str) -> Vec<Env> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut apps = vec![("memory", common::builder(&unique).build().unwrap())];
    if let Some(url) = redis_url() {
        // With the per-status indexes the listing needs.
        let url = format!("{url}?status_index=true");
        apps.push((
            "redis",
            common::builder(&unique).broker_url(&url).build().unwrap(),
        ));
    }
    apps.into_iter()
        .map(|(backend, app)| Env {
            router: Dashboard::new(app.clone()).token(TOKEN).router(),
            app,
            backend,
        })
        .collect()
}

/// The test Redis server's URL, when this build has the Redis backend and a server runs.
fn redis_url() -> Option<String> {
    #[cfg(feature = "redis")]
    return qtasks::redis::server::test_url();
    #[cfg(not(feature = "redis"))]
    None
}

/// One request through the router: the status and the JSON body (`Null` when empty).
async fn call(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_with(router, method, path, token, body, &[]).await
}

async fn call_with(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8080");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = match body {
        Some(b) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, value)
}

fn uuid_of(task: &Value) -> Uuid {
    task["uuid"]
        .as_str()
        .and_then(|s| Uuid::try_parse(s).ok())
        .expect("a task with a uuid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_open_and_changes_need_the_token() {
    for env in envs("web-auth") {
        let b = env.backend;
        let enqueue = json!({"task": "web.add", "args": {"a": 1, "b": 2}});
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks",
            None,
            Some(enqueue.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{b}: {body}");
        assert_eq!(body["error"], "unauthorized");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{body}"
        );
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some("nope"),
            Some(enqueue.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{b}");
        assert_eq!(body["error"], "wrong_token");
        for (method, path) in [
            ("POST", "/api/tasks/retry"),
            ("POST", "/api/tasks/delete"),
            ("POST", "/api/purge"),
            ("POST", "/api/pause"),
            ("POST", "/api/resume"),
            ("DELETE", "/api/tasks/67e55044-10b1-426f-9247-bb680e5fe0c8"),
            (
                "POST",
                "/api/tasks/67e55044-10b1-426f-9247-bb680e5fe0c8/cancel",
            ),
            (
                "POST",
                "/api/tasks/67e55044-10b1-426f-9247-bb680e5fe0c8/retry",
            ),
        ] {
            let (status, body) =
                call(&env.router, method, path, None, Some(json!({"uuids": []}))).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{b}: {method} {path}: {body}"
            );
        }
        // From another site, even with the token: refused.
        let (status, body) = call_with(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(enqueue.clone()),
            &[("origin", "http://evil.example")],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(body["error"], "cross_site");
        let (status, _) = call_with(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(enqueue.clone()),
            &[("origin", "http://127.0.0.1:8080")],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{b}: the dashboard's own origin"
        );
        let (status, _) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(enqueue.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
        let (status, body) = call(&env.router, "GET", "/api/stats", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}: reads need no token");
        assert_eq!(body["by_status"]["new"], 2, "{b}: {body}");

        // Read-only: every change refused, with the token too.
        let read_only = Dashboard::new(env.app.clone())
            .token(TOKEN)
            .read_only(true)
            .router();
        let (status, body) =
            call(&read_only, "POST", "/api/tasks", Some(TOKEN), Some(enqueue)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(body["error"], "read_only");
        let (status, body) = call(&read_only, "GET", "/api/stats", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["read_only"], true);

        // The program's own layer: no token needed here.
        let own = Dashboard::new(env.app.clone()).own_auth().router();
        let (status, _) = call(&own, "POST", "/api/pause", None, Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let (status, _) = call(&own, "POST", "/api/resume", None, Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_by_name_get_and_wait() {
    for env in envs("web-enqueue") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        let (status, task) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(json!({"task": "web.add", "args": {"a": 2, "b": 3}, "wait_secs": DEADLINE.as_secs()})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}: {task}");
        assert_eq!(task["status"], "success");
        assert_eq!(task["returning"], 5);
        assert_eq!(task["args"], json!({"a": 2, "b": 3}));
        let uuid = uuid_of(&task);
        let (status, got) = call(
            &env.router,
            "GET",
            &format!("/api/tasks/{uuid}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(got["returning"], 5);
        assert_eq!(got["attempts"], 1);

        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(json!({"task": "web.add", "args": {"a": "x", "b": 3}})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{b}: {body}");
        assert_eq!(body["error"], "bad_arguments");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(r#"argument "a" expects i64"#),
            "{body}"
        );
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(json!({"task": "nope"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(body["error"], "unknown_task");
        let (status, _) = call(
            &env.router,
            "POST",
            "/api/tasks",
            Some(TOKEN),
            Some(json!({"task": "web.add", "args": [1, 2], "wait_secs": 1000})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: wait too long");

        // A body that is not JSON, or lacks a field: a JSON refusal too.
        for bad in [json!("not an object"), json!({"args": [1, 2]})] {
            let (status, body) =
                call(&env.router, "POST", "/api/tasks", Some(TOKEN), Some(bad)).await;
            assert!(status.is_client_error(), "{b}: {status}");
            assert_eq!(body["error"], "bad_request", "{b}: {body}");
            assert!(
                body["message"].as_str().unwrap().contains("request body"),
                "{body}"
            );
        }
        let unknown = Uuid::new_v4();
        let (status, body) = call(
            &env.router,
            "GET",
            &format!("/api/tasks/{unknown}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
        assert_eq!(body["error"], "not_found");
        let (status, body) = call(&env.router, "GET", "/api/tasks/not-a-uuid", None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(body["error"], "bad_request");
        worker.shutdown().await.unwrap();
    }
}

/// Every page of a listing, following `next`.
async fn all_pages(router: &Router, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let path = match &cursor {
            Some(c) => format!("/api/tasks?{query}&cursor={c}"),
            None => format!("/api/tasks?{query}"),
        };
        let (status, page) = call(router, "GET", &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        out.extend(page["tasks"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return out,
        }
    }
    panic!("more than 50 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_the_cursor_and_filters() {
    for env in envs("web-list") {
        let b = env.backend;
        let mut made = HashSet::new();
        for i in 0..5 {
            made.insert(
                env.app
                    .add_task("web.add", json!({"a": i, "b": 1000 + i}))
                    .await
                    .unwrap()
                    .uuid,
            );
        }
        let other = env
            .app
            .add_task("web.boom", json!({"message": "needle-42"}))
            .await
            .unwrap();
        let (status, first) = call(
            &env.router,
            "GET",
            "/api/tasks?status=new&limit=2",
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(first["tasks"].as_array().unwrap().len(), 2);
        assert!(first["next"].is_string(), "{b}: {first}");
        let every = all_pages(&env.router, "status=new&limit=2").await;
        assert_eq!(every.len(), 6, "{b}");
        let uuids: HashSet<Uuid> = every.iter().map(uuid_of).collect();
        assert_eq!(uuids.len(), 6, "{b}: no task twice");
        let times: Vec<u64> = every
            .iter()
            .map(|t| t["updated_at"].as_u64().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{b}: newest first: {times:?}"
        );
        let adds = all_pages(&env.router, "task=web.add&limit=3").await;
        assert_eq!(
            adds.iter().map(uuid_of).collect::<HashSet<_>>(),
            made,
            "{b}"
        );
        let found = all_pages(&env.router, "q=needle-42").await;
        assert_eq!(
            found.iter().map(uuid_of).collect::<Vec<_>>(),
            vec![other.uuid],
            "{b}"
        );
        let found = all_pages(&env.router, "q=1003").await;
        assert_eq!(found.len(), 1, "{b}: text in arguments");
        let future = qtasks::backend::inspect::unix_ms(std::time::SystemTime::now()) + 60_000;
        assert!(
            all_pages(&env.router, &format!("since={future}"))
                .await
                .is_empty(),
            "{b}"
        );
        assert_eq!(
            all_pages(&env.router, &format!("until={future}&status=new"))
                .await
                .len(),
            6,
            "{b}"
        );
        assert!(
            all_pages(&env.router, "status=success").await.is_empty(),
            "{b}"
        );
        for bad in [
            "status=finished",
            "limit=0",
            "limit=100000",
            "cursor=garbage",
        ] {
            let (status, body) =
                call(&env.router, "GET", &format!("/api/tasks?{bad}"), None, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {bad}: {body}");
            assert!(body["message"].is_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_queued_task() {
    for env in envs("web-cancel") {
        let b = env.backend;
        let task = env.app.add_task("web.add", json!([1, 2])).await.unwrap();
        let path = format!("/api/tasks/{}/cancel", task.uuid);
        let (status, body) = call(
            &env.router,
            "POST",
            &path,
            Some(TOKEN),
            Some(json!({"reason": "not needed"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}: {body}");
        assert_eq!(body["outcome"], "cancelled");
        let got = env.app.get(task.uuid).await.unwrap().unwrap();
        assert_eq!(got.status, TaskStatus::Cancel);
        assert_eq!(got.cancel_reason.as_deref(), Some("not needed"));
        let (status, body) = call(&env.router, "POST", &path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["outcome"], "finished");
        let (status, _) = call(
            &env.router,
            "POST",
            &format!("/api/tasks/{}/cancel", Uuid::new_v4()),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_delete_failed_tasks_one_and_in_bulk() {
    for env in envs("web-dead") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        let mut failed = Vec::new();
        for i in 0..3 {
            let t = env
                .app
                .add_task("web.boom", json!({"message": format!("boom {i}")}))
                .await
                .unwrap();
            assert_eq!(
                env.app.wait(t.uuid, DEADLINE).await.unwrap().status,
                TaskStatus::Error
            );
            failed.push(t.uuid);
        }
        let ok = env.app.add_task("web.add", json!([1, 1])).await.unwrap();
        env.app.wait(ok.uuid, DEADLINE).await.unwrap();
        let dead = all_pages(&env.router, "status=error").await;
        assert_eq!(dead.len(), 3, "{b}");
        assert!(
            dead[0]["traceback"].as_str().unwrap().contains("boom"),
            "{b}"
        );

        // One: queued again, it runs and fails again.
        let (status, body) = call(
            &env.router,
            "POST",
            &format!("/api/tasks/{}/retry", failed[0]),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}: {body}");
        let again = env.app.wait(failed[0], DEADLINE).await.unwrap();
        assert_eq!(again.status, TaskStatus::Error, "{b}");
        assert_eq!(again.attempts, 2, "{b}: it ran again");
        let (status, body) = call(
            &env.router,
            "POST",
            &format!("/api/tasks/{}/retry", ok.uuid),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{b}: a success is not retried"
        );
        assert_eq!(body["error"], "wrong_status");

        // In bulk.
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks/retry",
            Some(TOKEN),
            Some(json!({"uuids": [failed[1], failed[2], ok.uuid]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["retried"].as_array().unwrap().len(), 2, "{b}: {body}");
        for uuid in &failed[1..] {
            assert_eq!(
                env.app.wait(*uuid, DEADLINE).await.unwrap().attempts,
                2,
                "{b}"
            );
        }
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/tasks/delete",
            Some(TOKEN),
            Some(json!({"uuids": [failed[1], failed[2]]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["deleted"].as_array().unwrap().len(), 2, "{b}");
        let (status, _) = call(
            &env.router,
            "DELETE",
            &format!("/api/tasks/{}", failed[0]),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
        for uuid in &failed {
            let (status, _) = call(
                &env.router,
                "GET",
                &format!("/api/tasks/{uuid}"),
                None,
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{b}");
        }
        assert!(
            all_pages(&env.router, "status=error").await.is_empty(),
            "{b}"
        );
        let queued = env
            .app
            .add_task("web.boom", json!({"message": "later"}))
            .await
            .unwrap();
        worker.shutdown().await.unwrap();
        let queued = if env
            .app
            .get(queued.uuid)
            .await
            .unwrap()
            .unwrap()
            .status
            .is_final()
        {
            env.app
                .add_task("web.boom", json!({"message": "later"}))
                .await
                .unwrap()
        } else {
            queued
        };
        let (status, _) = call(
            &env.router,
            "DELETE",
            &format!("/api/tasks/{}", queued.uuid),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "{b}: a queued task is not deleted"
        );
        let too_many: Vec<Uuid> = (0..1001).map(|_| Uuid::new_v4()).collect();
        let (status, _) = call(
            &env.router,
            "POST",
            "/api/tasks/delete",
            Some(TOKEN),
            Some(json!({"uuids": too_many})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_finished_tasks() {
    for env in envs("web-purge") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        let mut done = Vec::new();
        for i in 0..3 {
            let t = env.app.add_task("web.add", json!([i, i])).await.unwrap();
            env.app.wait(t.uuid, DEADLINE).await.unwrap();
            done.push(t.uuid);
        }
        let failed = env
            .app
            .add_task("web.boom", json!({"message": "kept"}))
            .await
            .unwrap();
        env.app.wait(failed.uuid, DEADLINE).await.unwrap();
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/purge",
            Some(TOKEN),
            Some(json!({"older_than_secs": 3600})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["purged"], 0, "{b}: nothing that old");
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/purge",
            Some(TOKEN),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(
            body["purged"], 3,
            "{b}: the successes (and cancels) by default"
        );
        assert!(env.app.get(done[0]).await.unwrap().is_none(), "{b}");
        assert!(
            env.app.get(failed.uuid).await.unwrap().is_some(),
            "{b}: errors are kept unless asked"
        );
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/purge",
            Some(TOKEN),
            Some(json!({"statuses": ["new"]})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {body}");
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_a_task_name_and_the_app() {
    for env in envs("web-pause") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/pause",
            Some(TOKEN),
            Some(json!({"task": "web.add"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}: {body}");
        assert_eq!(body["tasks"], json!(["web.add"]));
        let (_, pauses) = call(&env.router, "GET", "/api/pauses", None, None).await;
        assert_eq!(
            pauses,
            json!({"app": false, "tasks": ["web.add"], "queues": []}),
            "{b}"
        );
        let held = env.app.add_task("web.add", json!([1, 2])).await.unwrap();
        let other = env
            .app
            .add_task("web.boom", json!({"message": "runs"}))
            .await
            .unwrap();
        assert_eq!(
            env.app.wait(other.uuid, DEADLINE).await.unwrap().status,
            TaskStatus::Error,
            "{b}: other names run"
        );
        // A negative check, bounded: the paused task does not end meanwhile.
        assert!(
            env.app
                .wait(held.uuid, Duration::from_millis(300))
                .await
                .is_err(),
            "{b}"
        );
        assert_eq!(
            env.app.get(held.uuid).await.unwrap().unwrap().status,
            TaskStatus::New,
            "{b}"
        );
        let (status, _) = call(
            &env.router,
            "POST",
            "/api/resume",
            Some(TOKEN),
            Some(json!({"task": "web.add"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(
            env.app.wait(held.uuid, DEADLINE).await.unwrap().status,
            TaskStatus::Success,
            "{b}"
        );

        let (status, body) = call(&env.router, "POST", "/api/pause", Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(body["app"], true);
        let held = env.app.add_task("web.add", json!([3, 4])).await.unwrap();
        assert!(
            env.app
                .wait(held.uuid, Duration::from_millis(300))
                .await
                .is_err(),
            "{b}"
        );
        let (_, stats) = call(&env.router, "GET", "/api/stats", None, None).await;
        assert_eq!(stats["paused"]["app"], true, "{b}");
        call(&env.router, "POST", "/api/resume", Some(TOKEN), None).await;
        assert_eq!(
            env.app.wait(held.uuid, DEADLINE).await.unwrap().returning,
            Some(qtasks::Payload::encode(&7).unwrap()),
            "{b}"
        );
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/pause",
            Some(TOKEN),
            Some(json!({"task": "no.such"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{b}: {body}");
        // A queue: paused and resumed by name; a name that is no queue name is refused.
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/pause",
            Some(TOKEN),
            Some(json!({"queue": "mail"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}: {body}");
        assert_eq!(body["queues"], json!(["mail"]), "{b}");
        let (_, stats) = call(&env.router, "GET", "/api/stats", None, None).await;
        assert_eq!(stats["paused"]["queues"], json!(["mail"]), "{b}");
        let (_, body) = call(
            &env.router,
            "POST",
            "/api/resume",
            Some(TOKEN),
            Some(json!({"queue": "mail"})),
        )
        .await;
        assert_eq!(body["queues"], json!([]), "{b}");
        let (status, body) = call(
            &env.router,
            "POST",
            "/api/pause",
            Some(TOKEN),
            Some(json!({"queue": "no spaces"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {body}");
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_workers_schedules_and_registry() {
    for env in envs("web-figures") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        for i in 0..2 {
            let t = env.app.add_task("web.add", json!([i, 1])).await.unwrap();
            env.app.wait(t.uuid, DEADLINE).await.unwrap();
        }
        let t = env
            .app
            .add_task("web.boom", json!({"message": "x"}))
            .await
            .unwrap();
        env.app.wait(t.uuid, DEADLINE).await.unwrap();
        let (status, stats) = call(&env.router, "GET", "/api/stats", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(stats["by_status"]["success"], 2, "{b}: {stats}");
        assert_eq!(stats["by_status"]["error"], 1, "{b}");
        assert_eq!(stats["by_status"]["new"], 0, "{b}: every status is listed");
        let (status, through) =
            call(&env.router, "GET", "/api/throughput?minutes=10", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let minutes = through["minutes"].as_array().unwrap();
        assert_eq!(minutes.len(), 10);
        let success: u64 = minutes.iter().map(|m| m["success"].as_u64().unwrap()).sum();
        let error: u64 = minutes.iter().map(|m| m["error"].as_u64().unwrap()).sum();
        assert_eq!((success, error), (2, 1), "{b}: {through}");
        let (status, _) = call(&env.router, "GET", "/api/throughput?minutes=0", None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        // Latency: three first attempts ended, each with its queue and execution time.
        let (status, latency) =
            call(&env.router, "GET", "/api/latency?minutes=10", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let minutes = latency["minutes"].as_array().unwrap();
        assert_eq!(minutes.len(), 10);
        let count = |kind: &str| -> u64 {
            minutes
                .iter()
                .map(|m| m[kind]["count"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            (count("queue"), count("execution")),
            (3, 3),
            "{b}: {latency}"
        );
        let busy = minutes
            .iter()
            .find(|m| m["execution"]["count"].as_u64() > Some(0))
            .unwrap();
        let (p50, p95) = (
            busy["execution"]["p50_ms"].as_f64().unwrap(),
            busy["execution"]["p95_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p95 && p95 < 10_000.0, "{b}: {busy}");
        // The current minute's figures come with the stats (and so with the live updates).
        assert!(stats["latency"]["minute_ms"].is_u64(), "{b}: {stats}");
        let (status, _) = call(&env.router, "GET", "/api/latency?minutes=181", None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        let (status, workers) = call(&env.router, "GET", "/api/workers", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert!(workers["running"].is_array(), "{b}");
        assert!(workers["workers"].is_array(), "{b}");
        let (status, schedules) = call(&env.router, "GET", "/api/schedules", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(schedules["schedules"], json!([]), "{b}");
        let (status, registry) = call(&env.router, "GET", "/api/registry", None, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let entry = registry["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "web.add")
            .cloned();
        let entry = entry.expect("web.add is registered");
        assert_eq!(
            entry["params"],
            json!([{"name": "a", "type": "i64"}, {"name": "b", "type": "i64"}])
        );
        worker.shutdown().await.unwrap();
    }
}

/// A task retried once shows both attempts, oldest first, with the worker that ran each
/// (a live worker of the app), their times and how each ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_task_shows_its_attempts_and_their_worker() {
    for env in envs("web-attempts") {
        let b = env.backend;
        let worker = env.app.spawn_worker();
        let key = format!("{}-{b}", env.app.name());
        let t = env.app.add_task("web.flaky", json!([key])).await.unwrap();
        let done = env.app.wait(t.uuid, DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{b}: {done:?}");
        let (status, task) = call(
            &env.router,
            "GET",
            &format!("/api/tasks/{}", t.uuid),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(task["attempts"], 2, "{b}: {task}");
        let history = task["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{b}: {task}");
        assert_eq!(history[0]["attempt"], 1);
        assert_eq!(history[0]["status"], "retry", "{b}: {task}");
        assert_eq!(history[1]["attempt"], 2);
        assert_eq!(history[1]["status"], "success", "{b}: {task}");
        let (_, workers) = call(&env.router, "GET", "/api/workers", None, None).await;
        let live: Vec<&str> = workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w.as_str())
            .collect();
        for a in history {
            let worker_id = a["worker"].as_str().unwrap();
            assert!(live.contains(&worker_id), "{b}: {worker_id} in {live:?}");
            let (start, end) = (
                a["started_at"].as_u64().unwrap(),
                a["finished_at"].as_u64().unwrap(),
            );
            assert!(start <= end, "{b}: {a}");
            assert!(start >= task["created_at"].as_u64().unwrap(), "{b}: {a}");
        }
        assert!(
            history[0]["finished_at"].as_u64() <= history[1]["started_at"].as_u64(),
            "{b}: {task}"
        );
        worker.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn timers_show_with_their_next_fire() {
    let app = common::builder("web-timers")
        .timer(qtasks::timer::Timer::new(
            "every-minute",
            qtasks::timer::Schedule::every(Duration::from_secs(60)),
            add.call(1, 2),
        ))
        .build()
        .unwrap();
    let router = Dashboard::new(app).token(TOKEN).router();
    let (status, body) = call(&router, "GET", "/api/schedules", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let timer = &body["schedules"][0];
    assert_eq!(timer["name"], "every-minute");
    assert_eq!(timer["task"], "web.add");
    let next = timer["next_fire"].as_u64().unwrap();
    let now = qtasks::backend::inspect::unix_ms(std::time::SystemTime::now());
    assert!(next > now && next <= now + 60_000, "{next} vs {now}");
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_pages_are_served() {
    let env = envs("web-doc").remove(0);
    let (status, doc) = call(&env.router, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/tasks", &["get", "post"][..]),
        ("/api/tasks/{uuid}", &["get", "delete"]),
        ("/api/tasks/{uuid}/cancel", &["post"]),
        ("/api/tasks/{uuid}/retry", &["post"]),
        ("/api/tasks/retry", &["post"]),
        ("/api/tasks/delete", &["post"]),
        ("/api/purge", &["post"]),
        ("/api/pauses", &["get"]),
        ("/api/pause", &["post"]),
        ("/api/resume", &["post"]),
        ("/api/stats", &["get"]),
        ("/api/workers", &["get"]),
        ("/api/throughput", &["get"]),
        ("/api/latency", &["get"]),
        ("/api/schedules", &["get"]),
        ("/api/registry", &["get"]),
        ("/api/events", &["get"]),
        ("/api/openapi.json", &["get"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} is documented");
        }
    }
    for page in [
        "/",
        "/tasks",
        "/dead",
        "/schedules",
        "/workers",
        "/tasks/67e55044-10b1-426f-9247-bb680e5fe0c8",
    ] {
        let response = env
            .router
            .clone()
            .oneshot(Request::get(page).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{page}");
        let html = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&html).contains("/assets/app.js"),
            "{page}"
        );
    }
    // Mounted under a prefix, the pages point at their own assets.
    let site: Router = Router::new().nest(
        "/ops/queue",
        Dashboard::new(env.app.clone()).token(TOKEN).router(),
    );
    let response = site
        .oneshot(
            Request::get("/ops/queue/tasks")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains(r#"src="/ops/queue/assets/app.js""#), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_updates_are_server_sent_events() {
    for env in envs("web-sse") {
        let b = env.backend;
        let response = env
            .router
            .clone()
            .oneshot(Request::get("/api/events").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{b}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{b}"
        );
        let mut body = response.into_body();
        let mut seen = String::new();
        let until = tokio::time::Instant::now() + DEADLINE;
        while !seen.contains("event: stats") {
            let frame = tokio::time::timeout_at(until, body.frame())
                .await
                .expect("a stats event in time");
            let frame = frame.expect("the stream goes on").unwrap();
            if let Some(data) = frame.data_ref() {
                seen.push_str(&String::from_utf8_lossy(data));
            }
        }
        // A change is pushed: the next stats event counts the new task.
        env.app.add_task("web.add", json!([1, 2])).await.unwrap();
        while !seen.contains(r#""new":1"#) {
            let frame = tokio::time::timeout_at(until, body.frame())
                .await
                .expect("a pushed change in time");
            if let Some(data) = frame.expect("the stream goes on").unwrap().data_ref() {
                seen.push_str(&String::from_utf8_lossy(data));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_the_status_index_says_how_to_turn_it_on() {
    let Some(url) = redis_url() else {
        return;
    };
    let name = format!("web-noindex-{}", std::process::id());
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    app.add_task("web.add", json!([1, 2])).await.unwrap();
    let router_app = app.clone();
    let router = Dashboard::new(app).token(TOKEN).router();
    let (status, body) = call(&router, "GET", "/api/tasks?status=new", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("status_index=true"),
        "{body}"
    );
    // The counts come from a scan of the records instead.
    let (status, stats) = call(&router, "GET", "/api/stats", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["by_status"]["new"], 1, "{stats}");
    // Without the indexes a task keeps no history and the latency is not counted: a task of
    // an app that does not use the dashboard costs what it did before.
    let worker = router_app.spawn_worker();
    let t = router_app.add_task("web.add", json!([2, 2])).await.unwrap();
    let done = router_app.wait(t.uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert!(done.history.is_empty(), "{done:?}");
    let (status, latency) = call(&router, "GET", "/api/latency?minutes=5", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let counted: u64 = latency["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["execution"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 0, "{latency}");
    worker.shutdown().await.unwrap();
}

/// One HTTP/1.1 request over a real socket: the status code and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_web_command_serves_the_dashboard() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = tokio::spawn(async move {
        let mut out = Vec::new();
        let args = [
            "shop",
            "web",
            "--listen",
            &addr.to_string(),
            "--token",
            "cli-token",
        ];
        qtasks::cli::run_from(common::builder("web-cli"), args, &mut out).await
    });
    // Until it listens (a condition, with a deadline).
    let until = tokio::time::Instant::now() + DEADLINE;
    let (code, body) = loop {
        match http(addr, "GET", "/api/stats").await {
            Ok(answer) => break answer,
            Err(_) => {
                assert!(
                    tokio::time::Instant::now() < until,
                    "the web command did not listen"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""app":"web-cli""#), "{body}");
    let (code, body) = http(addr, "POST", "/api/pause").await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    let (code, page) = http(addr, "GET", "/").await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("qtasks dashboard"));
    server.abort();
}
