//! Middlewares (order, changing arguments and results) and custom executors.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use common::{builder, DEADLINE};
use futures::future::BoxFuture;
use qtasks::backend::Outcome;
use qtasks::prelude::*;
use qtasks::{Payload, TaskExecutor, TaskMiddleware, TaskRun};

/// What ran, per task uuid.
static TRACE: Mutex<Option<HashMap<uuid::Uuid, Vec<String>>>> = Mutex::new(None);

fn trace(ctx: &TaskContext, what: impl Into<String>) {
    TRACE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(ctx.task_uuid)
        .or_default()
        .push(what.into());
}

fn traced(uuid: uuid::Uuid) -> Vec<String> {
    TRACE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .remove(&uuid)
        .unwrap_or_default()
}

/// Records its name before and after.
struct Named(&'static str);

const A: Named = Named("A");
const B: Named = Named("B");

impl TaskMiddleware for Named {
    fn before<'a>(
        &'a self,
        ctx: &'a TaskContext,
        _args: &'a mut Payload,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async move {
            trace(ctx, format!("{}.before", self.0));
            Ok(())
        })
    }

    fn after<'a>(
        &'a self,
        ctx: &'a TaskContext,
        _result: &'a mut Result<Payload, TaskError>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move { trace(ctx, format!("{}.after", self.0)) })
    }
}

/// Doubles the `n` argument.
struct DoubleN;

impl TaskMiddleware for DoubleN {
    fn before<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        args: &'a mut Payload,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async move {
            let mut map: BTreeMap<String, i64> = args.decode()?;
            if let Some(n) = map.get_mut("n") {
                *n *= 2;
            }
            *args = Payload::encode(&map)?;
            Ok(())
        })
    }
}

/// Adds one to an `i64` result, and turns an error into -1.
struct PlusOneOrRecover;

impl TaskMiddleware for PlusOneOrRecover {
    fn after<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        result: &'a mut Result<Payload, TaskError>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let value = match result {
                Ok(p) => p.decode::<i64>().map(|v| v + 1).unwrap_or(0),
                Err(_) => -1,
            };
            *result = Ok(Payload::encode(&value).unwrap());
        })
    }
}

/// Refuses every task.
struct Refuse;

impl TaskMiddleware for Refuse {
    fn before<'a>(
        &'a self,
        _ctx: &'a TaskContext,
        _args: &'a mut Payload,
    ) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(async { Err(TaskError::msg("refused by middleware")) })
    }
}

#[qtasks::task(middlewares_before = [A, B], middlewares_after = [B, A])]
async fn ordered(ctx: TaskContext) {
    trace(&ctx, "body");
}

#[qtasks::task(middlewares_before = [DoubleN], middlewares_after = [PlusOneOrRecover])]
async fn changed(n: i64) -> i64 {
    n
}

#[qtasks::task(middlewares_after = [PlusOneOrRecover])]
fn recovered() -> Result<i64, TaskError> {
    Err(TaskError::msg("boom"))
}

#[qtasks::task(middlewares_before = [Refuse])]
async fn refused() {}

/// Never retries, and records the stages it ran.
struct NoRetry;

impl TaskExecutor for NoRetry {
    fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            trace(run.ctx(), "executor");
            match run.pipeline().await {
                Ok(result) => Outcome::Success(result),
                Err(err) => Outcome::Failed {
                    traceback: format!("no retry: {}", err.traceback()),
                },
            }
        })
    }
}

/// Skips the middlewares, sets the argument itself, and decodes through the task's decode.
struct Direct;

impl TaskExecutor for Direct {
    fn execute<'a>(&'a self, run: &'a mut TaskRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            *run.args_mut() = Payload::encode(&BTreeMap::from([("n", 100)])).unwrap();
            let result = run.call().await.and_then(|p| run.transform(p));
            run.outcome(result)
        })
    }
}

#[qtasks::task(executor = NoRetry, retry = 3)]
async fn fails_once(ctx: TaskContext) -> Result<(), std::io::Error> {
    trace(&ctx, "body");
    Err(std::io::Error::other("disk"))
}

#[qtasks::task(executor = Direct, middlewares_before = [Refuse])]
async fn direct(n: i64) -> i64 {
    n + 1
}

#[tokio::test]
async fn middlewares_run_in_list_order_around_the_body() {
    let app = builder("mw-order").build().unwrap();
    let worker = app.spawn_worker();
    let done = ordered
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(
        traced(done.uuid),
        vec!["A.before", "B.before", "body", "B.after", "A.after"]
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn middlewares_change_arguments_and_results() {
    let app = builder("mw-change").build().unwrap();
    let worker = app.spawn_worker();
    let done = changed
        .call(5)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(11), "5 doubled before, plus one after");
    let done = recovered
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(
        done.returning,
        Some(-1),
        "an after middleware replaced the error"
    );
    let done = refused
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(done.traceback.as_deref(), Some("refused by middleware"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_custom_executor_controls_retry_and_stages() {
    let app = builder("custom-executor").build().unwrap();
    let worker = app.spawn_worker();
    let done = fails_once
        .call()
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(
        done.attempts, 1,
        "the executor decided not to retry despite retry = 3"
    );
    assert_eq!(done.traceback.as_deref(), Some("no retry: disk"));
    assert_eq!(traced(done.uuid), vec!["executor", "body"]);

    let done = direct
        .call(1)
        .on(&app)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.traceback);
    assert_eq!(
        done.returning,
        Some(101),
        "the executor skipped Refuse and replaced the argument"
    );
    worker.shutdown().await.unwrap();
}
