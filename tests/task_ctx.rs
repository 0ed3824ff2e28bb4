//! Echo and context: every field of `AsyncTask`/`SyncTask` and every `ctx` method, called
//! inside running tasks (async and sync).

mod common;
mod task_support;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use qtasks::{Component, TaskMiddleware};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// A middleware that does nothing (for the echo fields).
struct Noop;
impl TaskMiddleware for Noop {}

fn handle(step: String) -> String {
    step
}

fn shout(value: String) -> String {
    value.to_uppercase()
}

#[qtasks::task(
    echo,
    name = "ctx.fields",
    priority = 3,
    max_time = 30,
    retry = 2,
    retry_on = [std::io::Error],
    decode = shout,
    tags = ["a", "b"],
    description = "every echo field",
    generate_handler = handle,
    executor = qtasks::DefaultExecutor,
    middlewares_before = [Noop],
    middlewares_after = [Noop, Noop],
    team = "core",
    level = 5
)]
async fn all_fields(task: AsyncTask, y: Yield<String, String>) -> String {
    let _ = y.send("unused".into()).await;
    let mw =
        |list: &[qtasks::registry::MiddlewareRef]| list.iter().map(|m| m.name).collect::<Vec<_>>();
    json!({
        "task_name": task.task_name,
        "priority": task.priority,
        "echo": task.echo,
        "max_time": task.max_time.map(|d| d.as_secs()),
        "retry": task.retry,
        "retry_on": task.retry_on,
        "decode": task.decode,
        "generate_handler": task.generate_handler,
        "executor": task.executor,
        "middlewares_before": mw(task.middlewares_before),
        "middlewares_after": mw(task.middlewares_after),
        "tags": task.tags,
        "description": task.description,
        "extra": task.extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    })
    .to_string()
}

#[qtasks::task]
async fn child(n: u32) -> u32 {
    n * 2
}

#[qtasks::task(echo)]
async fn uses_ctx(task: AsyncTask, other: uuid::Uuid) -> Result<serde_json::Value, TaskError> {
    let ctx = &task.ctx;
    ctx.get_logger("audit").info("hello from the task");
    let cfg = ctx.get_config().max_tasks_process;
    let meta = ctx.get_metadata(true).await.map_err(TaskError::msg)?;
    let cached = ctx.get_metadata(true).await.map_err(TaskError::msg)?;
    let fresh = ctx.get_metadata(false).await.map_err(TaskError::msg)?;
    let other = ctx.get_task(other).await.map_err(TaskError::msg)?;
    let slept = ctx.sleep(Duration::from_millis(10)).await;
    let components: Vec<String> = Component::NAMES
        .iter()
        .map(|name| match ctx.get_component(name) {
            Some(Component::Broker(_)) => "broker".to_string(),
            Some(Component::Storage(_)) => "storage".to_string(),
            Some(Component::GlobalConfig(g)) => {
                let _ = &g;
                "global_config".to_string()
            }
            Some(Component::Worker(w)) => format!("worker {}", !w.id().is_empty()),
            Some(Component::Config(c)) => format!("config {}", c.max_tasks_process),
            Some(Component::App(a)) => format!("app {}", a.name()),
            Some(other) => format!("{other:?}"),
            None => "none".to_string(),
        })
        .collect();
    let nested = task
        .add_task(child.call(21))
        .await
        .map_err(TaskError::msg)?;
    let nested = nested.wait(DEADLINE).await.map_err(TaskError::msg)?;
    Ok(json!({
        "uuid_matches": meta.uuid == ctx.task_uuid,
        "status": meta.status.as_str(),
        "cached_same": cached.updated_at == meta.updated_at,
        "fresh_attempts": fresh.attempts,
        "other": other.map(|t| t.task_name),
        "slept": slept,
        "config": cfg,
        "components": components,
        "unknown_component": ctx.get_component("nope").is_none(),
        "nested": nested.returning,
    }))
}

#[qtasks::task(echo)]
fn uses_ctx_sync(task: SyncTask) -> Result<serde_json::Value, TaskError> {
    let ctx = task.ctx();
    ctx.get_logger("sync-audit").warn("hello from a sync task");
    let meta = ctx
        .block_on(ctx.get_metadata(true))
        .map_err(TaskError::msg)?;
    let slept = task.sleep(Duration::from_millis(10));
    let nested = task.add_task(child.call(5)).map_err(TaskError::msg)?;
    let nested = nested.wait_blocking(DEADLINE).map_err(TaskError::msg)?;
    Ok(json!({
        "task_name": task.task_name,
        "uuid_matches": meta.uuid == ctx.task_uuid,
        "status": meta.status.as_str(),
        "slept": slept,
        "worker": matches!(ctx.get_component("worker"), Some(Component::Worker(_))),
        "nested": nested.returning,
    }))
}

#[qtasks::task(decode = as_text)]
async fn answer() -> u32 {
    42
}

fn as_text(n: u32) -> String {
    format!("answer: {n}")
}

/// Log events with target `qtasks::task`, as field maps.
static LOGS: Mutex<Vec<BTreeMap<String, String>>> = Mutex::new(Vec::new());

struct Capture;

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "qtasks::task" {
            let mut fields = Fields(BTreeMap::new());
            event.record(&mut fields);
            LOGS.lock().unwrap().push(fields.0);
        }
    }
}

fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

fn logs_of(uuid: uuid::Uuid) -> Vec<BTreeMap<String, String>> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|f| f.get("task_uuid") == Some(&uuid.to_string()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn echo_exposes_every_field_of_the_seed_table() {
    let app = builder("ctx-fields").build().unwrap();
    let worker = app.spawn_worker();
    let done = all_fields
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
    // `decode = shout` upper-cased the JSON text before it was stored.
    let text = done.returning.unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&text.as_str().unwrap().to_lowercase()).unwrap();
    assert_eq!(
        report,
        json!({
            "task_name": "ctx.fields",
            "priority": 3,
            "echo": true,
            "max_time": 30,
            "retry": 2,
            "retry_on": ["std::io::error"],
            "decode": "shout",
            "generate_handler": "handle",
            "executor": "qtasks::defaultexecutor",
            "middlewares_before": ["noop"],
            "middlewares_after": ["noop", "noop"],
            "tags": ["a", "b"],
            "description": "every echo field",
            "extra": {"team": "core", "level": "5"},
        })
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_ctx_method_works_inside_a_running_async_task() {
    capture_logs();
    let app = builder("ctx-async").build().unwrap();
    let worker = app.spawn_worker();
    let other = child.call(1).on(&app).add_task().await.unwrap();
    let task = uses_ctx.call(other.uuid).on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
    let out = done.returning.unwrap();
    assert_eq!(out["uuid_matches"], true);
    assert_eq!(out["status"], "process");
    assert_eq!(out["cached_same"], true);
    assert_eq!(out["fresh_attempts"], 1);
    assert_eq!(out["other"], "child");
    assert_eq!(out["slept"], true);
    assert_eq!(out["config"], app.config().max_tasks_process);
    assert_eq!(
        out["components"],
        json!([
            "broker",
            "storage",
            "global_config",
            "worker true",
            format!("config {}", app.config().max_tasks_process),
            "app ctx-async"
        ])
    );
    assert_eq!(out["unknown_component"], true);
    assert_eq!(out["nested"], 42);

    let logs = logs_of(task.uuid);
    let hello = logs
        .iter()
        .find(|f| f.get("logger").map(String::as_str) == Some("audit"))
        .expect("the logger's event");
    assert_eq!(hello["task_name"], "uses_ctx");
    assert_eq!(hello["message"], "hello from the task");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn ctx_works_inside_a_running_sync_task_with_blocking_calls() {
    capture_logs();
    let app = builder("ctx-sync").build().unwrap();
    let worker = app.spawn_worker();
    let task = uses_ctx_sync.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
    let out = done.returning.unwrap();
    assert_eq!(
        out,
        json!({"task_name": "uses_ctx_sync", "uuid_matches": true, "status": "process", "slept": true, "worker": true, "nested": 10})
    );
    let logs = logs_of(task.uuid);
    assert!(logs.iter().any(
        |f| f.get("logger").map(String::as_str) == Some("sync-audit")
            && f["task_name"] == "uses_ctx_sync"
    ));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn decode_is_applied_before_the_result_is_stored() {
    let app = builder("ctx-decode").build().unwrap();
    let worker = app.spawn_worker();
    let done = answer
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(json!("answer: 42")));
    let raw = app.get(done.uuid).await.unwrap().unwrap();
    assert_eq!(
        raw.returning.unwrap().decode::<String>().unwrap(),
        "answer: 42"
    );
    worker.shutdown().await.unwrap();
}
