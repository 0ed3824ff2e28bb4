//! The process default app: the first app built serves task handles called without an app,
//! and inside a running task the task's own app is the default.

mod common;

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use std::time::Duration;

use qtasks::{Error, TaskDef};

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task(echo)]
async fn nested(task: AsyncTask, n: i64) -> Result<(String, i64), TaskError> {
    // No `.on(..)`: inside a running task the current app is the task's own app.
    let child = add.add_task(n, 1).await?;
    let child = child.wait(DEADLINE).await?;
    Ok((
        task.ctx.app().name().to_string(),
        child.returning.unwrap_or_default(),
    ))
}

// One test only: the default app is process-wide state.
#[tokio::test]
async fn handles_use_the_first_app_built_and_running_tasks_use_their_own_app() {
    assert!(matches!(add.add_task(1, 2).await, Err(Error::NoApp)));

    let first = builder("first").build().unwrap();
    let second = builder("second").build().unwrap();
    assert_eq!(App::current().unwrap().name(), "first");

    let w1 = first.spawn_worker();
    let w2 = second.spawn_worker();
    let task = add.add_task(2, 3).await.unwrap();
    assert_eq!(task.app().unwrap().name(), "first");
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(5));
    assert!(second.get(task.uuid).await.unwrap().is_none());

    // A task running on `second` enqueues its child on `second`, not on the default.
    let parent = nested
        .call(41)
        .on(&second)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(parent.returning, Some(("second".to_string(), 42)));

    // A free call goes to the default app: with no worker there, the timeout names that app
    // and, since several apps exist, says how to pick one.
    let idle = builder("idle-default").make_default().build().unwrap();
    let stuck = add.add_task(1, 1).await.unwrap();
    let err = stuck.wait(Duration::from_millis(50)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sent to app \"idle-default\"")
            && msg.contains(".on(&app)")
            && msg.contains("make_default()"),
        "{msg}"
    );
    drop(idle);

    // `make_default` moves the default.
    let third = builder("third").make_default().build().unwrap();
    assert_eq!(App::current().unwrap().name(), "third");
    assert_eq!(<add as TaskDef>::entry().name, "add");
    drop(third);
    w1.shutdown().await.unwrap();
    w2.shutdown().await.unwrap();
}
