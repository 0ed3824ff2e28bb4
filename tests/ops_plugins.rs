//! Plugins: the trigger catalogue, replacing arguments, results and records, per-component
//! attachment, failing plugins, `ctx.plugin_error`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::DEADLINE;
use qtasks::backend::Outcome;
use qtasks::plugin::{self, ComponentKind, Plugin, Trigger};
use qtasks::prelude::*;
use qtasks::{BoxError, Payload};
use serde_json::json;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
async fn ask_plugin(ctx: TaskContext, code: i64) -> Result<i64, TaskError> {
    Err(ctx.plugin_error(json!({ "code": code })))
}

/// Raises a plugin error, drops it, and returns a value anyway.
#[qtasks::task]
async fn asks_plugin_then_returns(ctx: TaskContext, code: i64) -> i64 {
    let _ = ctx.plugin_error(json!({ "code": code }));
    -1
}

#[qtasks::task(retry = 5)]
async fn always_fails() -> Result<u8, std::io::Error> {
    Err(std::io::Error::other("nope"))
}

/// A plugin that records `component:trigger` for each trigger it sees.
fn recorder(name: &str) -> (impl Plugin, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let p = plugin::from_fn(name, move |t: &mut Trigger<'_>| {
        log.lock()
            .unwrap()
            .push(format!("{}:{}", t.component().as_str(), t.name()));
        Ok(())
    });
    (p, seen)
}

#[tokio::test]
async fn a_global_plugin_sees_the_whole_catalogue_in_order() {
    let (rec, seen) = recorder("recorder");
    let app = common::builder("plugins-catalogue")
        .plugin(rec)
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let app = app.clone();
        async move {
            app.run_until(async {
                let _ = stop_rx.await;
            })
            .await
        }
    });
    let task = add.call(2, 3).on(&app).add_task().await.unwrap();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(5));
    app.get(task.uuid).await.unwrap();
    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();

    let seen = seen.lock().unwrap().clone();
    let task_part: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        // The app starts concurrently with the enqueue: leave its start triggers out here.
        .filter(|s| !s.ends_with(":start"))
        .skip_while(|s| *s != "app:add_task_before")
        .take(14)
        .collect();
    assert_eq!(
        task_part,
        [
            "app:add_task_before",
            "broker:broker_add_before",
            "broker:broker_add_after",
            "app:add_task_after",
            "worker:worker_add",
            "worker:worker_execute_before",
            "executor:args_replace",
            "executor:execute_before",
            "executor:execute_after",
            "executor:result_replace",
            "executor:decode",
            "executor:task_close",
            "worker:worker_execute_after",
            "app:get",
        ]
    );
    for lifecycle in [
        "starter:start",
        "broker:start",
        "storage:start",
        "global_config:start",
        "worker:start",
        "worker:stop",
        "broker:stop",
        "starter:stop",
    ] {
        assert!(
            seen.iter().any(|s| s == lifecycle),
            "{lifecycle} missing from {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_plugin_on_one_component_sees_only_its_triggers() {
    let (rec, seen) = recorder("worker-only");
    let app = common::builder("plugins-component")
        .plugin_on(ComponentKind::Worker, rec)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let task = add.call(1, 1).on(&app).add_task().await.unwrap();
    task.wait(DEADLINE).await.unwrap();
    worker.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|s| s.starts_with("worker:")), "{seen:?}");
}

#[tokio::test]
async fn plugins_replace_arguments_results_and_records() {
    let replace = plugin::from_fn("replace", |t: &mut Trigger<'_>| {
        match t {
            // Before the broker: raise the priority and double `a`.
            Trigger::AddTaskBefore { task } => {
                task.priority = 7;
                let mut args: serde_json::Value = task.args.decode()?;
                args["a"] = json!(args["a"].as_i64().unwrap_or(0) * 2);
                task.args = Payload::encode(&args)?;
            }
            // In the executor: add 100 to `b`.
            Trigger::ArgsReplace { args, .. } => {
                let mut v: serde_json::Value = args.decode()?;
                v["b"] = json!(v["b"].as_i64().unwrap_or(0) + 100);
                **args = Payload::encode(&v)?;
            }
            // The result: negate it.
            Trigger::ResultReplace { result, .. } => {
                let n: i64 = result.decode()?;
                **result = Payload::encode(&(-n))?;
            }
            // The record read back: tag it.
            Trigger::Get { task: Some(task) } => {
                task.extra.insert("seen_by".into(), "replace".into());
            }
            _ => {}
        }
        Ok(())
    });
    let app = common::builder("plugins-replace")
        .plugin(replace)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let task = add.call(1, 2).on(&app).add_task().await.unwrap();
    assert_eq!(task.priority, 7);
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.returning, Some(-(2 + 102)));
    let record = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(
        record.extra.get("seen_by").map(String::as_str),
        Some("replace")
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plugin_replaces_the_outcome_before_it_is_recorded() {
    let veto = plugin::from_fn("veto", |t: &mut Trigger<'_>| {
        if let Trigger::WorkerExecuteAfter { outcome, .. } = t {
            **outcome = Outcome::Failed {
                traceback: "vetoed by a plugin".into(),
            };
        }
        Ok(())
    });
    let app = common::builder("plugins-outcome")
        .plugin(veto)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let done = add.call(1, 2).on(&app).add_task().await.unwrap();
    let done = done.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(done.traceback.as_deref(), Some("vetoed by a plugin"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_retry_trigger_can_end_retries() {
    let (rec, seen) = recorder("retry-recorder");
    let no_retry = plugin::from_fn("no-retry", |t: &mut Trigger<'_>| {
        if let Trigger::Retry { delay, .. } = t {
            **delay = None;
        }
        Ok(())
    });
    let app = common::builder("plugins-retry")
        .plugin(rec)
        .plugin(no_retry)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let task = always_fails.call().on(&app).add_task().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(done.attempts, 1, "the plugin made the first failure final");
    assert!(seen.lock().unwrap().iter().any(|s| s == "worker:retry"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn plugin_error_reaches_the_plugins_error_trigger() {
    let handler = plugin::from_fn("error-handler", |t: &mut Trigger<'_>| {
        if let Trigger::PluginError { data, result, .. } = t {
            let data: serde_json::Value = data.decode()?;
            let code = data["code"].as_i64().unwrap_or(0);
            if code > 0 {
                **result = Some(Payload::encode(&(code * 10))?);
            }
        }
        Ok(())
    });
    let app = common::builder("plugins-error")
        .plugin(handler)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let handled = ask_plugin.call(7).on(&app).add_task().await.unwrap();
    assert_eq!(handled.wait(DEADLINE).await.unwrap().returning, Some(70));
    // A plugin error whose value the task dropped has the same effect.
    let dropped = asks_plugin_then_returns
        .call(4)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(dropped.returning, Some(40), "handled by the plugin, not -1");
    let dropped = asks_plugin_then_returns
        .call(0)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(dropped.status, TaskStatus::Error);
    let unhandled = ask_plugin.call(0).on(&app).add_task().await.unwrap();
    let unhandled = unhandled.wait(DEADLINE).await.unwrap();
    assert_eq!(unhandled.status, TaskStatus::Error);
    let traceback = unhandled.traceback.unwrap();
    assert!(
        traceback.contains("plugin error") && traceback.contains("\"code\":0"),
        "{traceback}"
    );
    worker.shutdown().await.unwrap();
}

/// Collects what `tracing` writes on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Failing;

impl Plugin for Failing {
    fn name(&self) -> &str {
        "always-fails"
    }
    fn trigger<'a>(
        &'a self,
        trigger: &'a mut Trigger<'_>,
    ) -> futures::future::BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            match trigger {
                Trigger::ExecuteBefore { .. } => panic!("plugin panic"),
                Trigger::ArgsReplace { .. } => Err("plugin refused".into()),
                _ => Ok(()),
            }
        })
    }
}

// A current-thread runtime: the worker's tasks run on this thread, where the log collector is
// the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_plugin_is_reported_by_name_and_the_worker_goes_on() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);

    let panicking = plugin::from_fn("closure-panics", |t: &mut Trigger<'_>| match t {
        Trigger::ResultReplace { .. } => panic!("closure plugin panic"),
        _ => Ok(()),
    });
    let app = common::builder("plugins-failing")
        .plugin(Failing)
        .plugin(panicking)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    for n in 0..3 {
        let task = add.call(n, 1).on(&app).add_task().await.unwrap();
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success);
        assert_eq!(done.returning, Some(n + 1));
    }
    worker.shutdown().await.unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("plugin \"always-fails\" failed at trigger args_replace: plugin refused"),
        "{text}"
    );
    assert!(
        text.contains(
            "plugin \"always-fails\" failed at trigger execute_before: panicked: plugin panic"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "plugin \"closure-panics\" failed at trigger result_replace: panicked: closure plugin panic"
        ),
        "{text}"
    );
}
