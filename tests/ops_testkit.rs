//! The testing kit: inline runs through the executor pipeline, no worker, no Redis.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use qtasks::plugin::{self, Trigger};
use qtasks::prelude::*;
use qtasks::testing::TestKit;
use serde_json::json;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
fn word_count(text: String) -> usize {
    text.split_whitespace().count()
}

#[qtasks::task(echo)]
async fn fan_out(task: AsyncTask, n: i64) -> Result<i64, TaskError> {
    for i in 0..n {
        task.add_task(add.call(i, i)).await?;
    }
    Ok(n)
}

static FLAKY_RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

#[qtasks::task(retry = 3)]
async fn flaky(key: String, fail_times: u32) -> Result<u32, std::io::Error> {
    let mut runs = FLAKY_RUNS.lock().unwrap();
    let n = runs
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default();
    *n += 1;
    if *n <= fail_times {
        return Err(std::io::Error::other(format!("failure {n}")));
    }
    Ok(*n)
}

#[qtasks::task]
async fn boom() -> i64 {
    panic!("boom in a test task")
}

#[test]
fn plain_test_runs_async_and_sync_tasks_inline() {
    let kit = TestKit::new(common::builder("kit-plain")).unwrap();
    let done = kit.run_blocking(add.call(2, 3)).unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(5));
    assert_eq!(done.attempts, 1);
    let counted = kit
        .run_blocking(word_count.call("one two three".into()))
        .unwrap();
    assert_eq!(counted.returning, Some(3));
}

#[tokio::test]
async fn records_what_a_task_enqueues_without_running_it() {
    let kit = TestKit::new(common::builder("kit-record")).unwrap();
    let done = kit.run(fan_out.call(3)).await.unwrap();
    assert_eq!(done.returning, Some(3));
    let enqueued = kit.enqueued();
    assert_eq!(enqueued.len(), 3);
    let args: Vec<_> = enqueued.iter().map(|e| e.args_json()).collect();
    assert_eq!(
        args,
        vec![
            json!({"a": 0, "b": 0}),
            json!({"a": 1, "b": 1}),
            json!({"a": 2, "b": 2})
        ]
    );
    assert_eq!(kit.enqueued_of::<add>().len(), 3);
    assert!(kit.enqueued_of::<word_count>().is_empty());
    // Recorded, kept in the backend, not run.
    let child = kit.app().get(enqueued[0].uuid).await.unwrap().unwrap();
    assert_eq!(child.status, TaskStatus::New);
    kit.clear_enqueued();
    assert!(kit.enqueued().is_empty());
}

#[tokio::test]
async fn retries_run_inline_until_success() {
    let kit = TestKit::new(common::builder("kit-retry")).unwrap();
    let done = kit.run(flaky.call("kit-retry".into(), 2)).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(3));
    assert_eq!(done.attempts, 3);

    let failed = kit.run(flaky.call("kit-fail".into(), 10)).await.unwrap();
    assert_eq!(failed.status, TaskStatus::Error);
    assert_eq!(failed.attempts, 4, "one run and three retries");
    assert!(failed.traceback.unwrap().contains("failure 4"));
}

#[tokio::test]
async fn a_panic_becomes_an_error_record() {
    let kit = TestKit::new(common::builder("kit-panic")).unwrap();
    let done = kit.run(boom.call()).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.traceback.unwrap().contains("boom in a test task"));
}

#[tokio::test]
async fn plugins_and_swapped_components_apply_inline() {
    let plus_one = plugin::from_fn("plus-one", |t: &mut Trigger<'_>| {
        if let Trigger::ResultReplace { result, .. } = t {
            let n: i64 = result.decode()?;
            **result = qtasks::Payload::encode(&(n + 1))?;
        }
        Ok(())
    });
    let backend = std::sync::Arc::new(qtasks::memory::MemoryBackend::new(
        std::time::Duration::from_secs(60),
    ));
    let kit = TestKit::new(
        common::builder("kit-plugin")
            .backend(backend.backend())
            .plugin(plus_one),
    )
    .unwrap();
    let done = kit.run(add.call(2, 3)).await.unwrap();
    assert_eq!(done.returning, Some(6));
    // Nested enqueues land in the swapped-in backend.
    kit.run(fan_out.call(2)).await.unwrap();
    assert_eq!(backend.queued(), 2);
}

#[tokio::test]
async fn run_blocking_inside_a_runtime_explains_itself() {
    let kit = TestKit::new(common::builder("kit-inside")).unwrap();
    let err = kit.run_blocking(add.call(1, 1)).unwrap_err().to_string();
    assert!(err.contains("use `kit.run(..).await`"), "{err}");
}

#[tokio::test]
async fn run_named_takes_json_and_reports_bad_arguments() {
    let kit = TestKit::new(common::builder("kit-named")).unwrap();
    let done = kit.run_named("add", json!([40, 2])).await.unwrap();
    assert_eq!(done.returning.unwrap().decode::<i64>().unwrap(), 42);
    let bad = kit.run_named("add", json!({"a": "x"})).await.unwrap();
    assert_eq!(bad.status, TaskStatus::Error);
    assert!(bad.traceback.unwrap().contains("bad arguments"));
    let err = kit.run_named("nope", json!([])).await.unwrap_err();
    assert!(err.to_string().contains("unknown task \"nope\""), "{err}");
}

static POOLS_CLOSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A worker-scoped dependency that counts its teardowns.
struct KitPool;

impl Dependency for KitPool {
    async fn create(_ctx: &DependencyContext) -> Result<Self, BoxError> {
        Ok(KitPool)
    }
    async fn close(&self) -> Result<(), BoxError> {
        POOLS_CLOSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[qtasks::task]
async fn uses_pool(_pool: Depends<KitPool, scope::Worker>, n: i64) -> i64 {
    n
}

#[tokio::test]
async fn dependencies_resolve_inline_and_close_with_the_kit() {
    let kit = TestKit::new(common::builder("kit-deps")).unwrap();
    for n in 0..3 {
        assert_eq!(kit.run(uses_pool.call(n)).await.unwrap().returning, Some(n));
    }
    assert_eq!(POOLS_CLOSED.load(std::sync::atomic::Ordering::SeqCst), 0);
    kit.close().await;
    assert_eq!(
        POOLS_CLOSED.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one worker-scoped pool for every inline run, closed once"
    );
}
