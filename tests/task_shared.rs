//! `#[shared_task]` declared in a library-style module: registered for every app, found
//! through the default app when called (blocking handles for sync tasks, usable outside an
//! async runtime; async with `awaiting`). Routers: tasks present only where included.
//!
//! This binary tests the process default app, so it is a binary of its own.

mod common;
mod task_shared_lib;

use common::{builder, DEADLINE};
use task_shared_lib::{add_awaiting, add_sync, charge, greet, BILLING};

#[test]
fn shared_tasks_use_the_default_app_and_sync_handles_block_outside_a_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = {
        let _in_rt = rt.enter();
        builder("shared-default").make_default().build().unwrap()
    };
    let worker = {
        let _in_rt = rt.enter();
        app.spawn_worker()
    };
    assert!(app.task("add_sync").is_some_and(|s| s.shared));

    // This thread is not in any runtime: the handle blocks.
    assert!(tokio::runtime::Handle::try_current().is_err());
    let task = add_sync.add_task(2, 3).unwrap();
    let done = task.wait_blocking(DEADLINE).unwrap();
    assert_eq!(done.returning, Some(5));
    assert_eq!(done.task_name, "add_sync");

    // `awaiting` makes the handle async; async shared tasks are async too.
    let done = rt.block_on(async {
        let t = add_awaiting.add_task(4, 5).await.unwrap();
        assert_eq!(t.priority, 2);
        t.wait(DEADLINE).await.unwrap()
    });
    assert_eq!(done.returning, Some(9));
    let done = rt.block_on(async {
        greet
            .add_task("lib".into())
            .await
            .unwrap()
            .wait(DEADLINE)
            .await
            .unwrap()
    });
    assert_eq!(done.returning.as_deref(), Some("hello lib"));
    assert_eq!(done.task_name, "lib.greet");

    rt.block_on(worker.shutdown()).unwrap();
}

#[tokio::test]
async fn shared_tasks_are_registered_in_every_app() {
    let one = builder("shared-one").build().unwrap();
    let two = builder("shared-two")
        .include_router(&BILLING)
        .build()
        .unwrap();
    for app in [&one, &two] {
        for name in ["add_sync", "add_awaiting", "lib.greet"] {
            assert!(app.task(name).is_some(), "{name} in {}", app.name());
        }
    }
    let worker = one.spawn_worker();
    let done = add_sync
        .call(1, 1)
        .on(&one)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(2));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn router_tasks_exist_only_in_apps_that_include_the_router() {
    let with = builder("router-with")
        .include_router(&BILLING)
        .build()
        .unwrap();
    let without = builder("router-without").build().unwrap();
    assert!(with.task("charge").is_some());
    assert!(without.task("charge").is_none());
    assert_eq!(with.routers().len(), 1);
    assert_eq!(with.routers()[0].name(), "billing");

    let worker = with.spawn_worker();
    let done = charge
        .call(99)
        .on(&with)
        .timeout(DEADLINE)
        .add_task()
        .await
        .unwrap();
    assert_eq!(done.returning, Some(100));
    worker.shutdown().await.unwrap();

    let by_name = without
        .add_task("charge", serde_json::json!({"cents": 1}))
        .await;
    assert!(
        matches!(by_name, Err(qtasks::Error::UnknownTask { .. })),
        "{by_name:?}"
    );
    let typed = charge.call(1).on(&without).add_task().await;
    match typed {
        Err(qtasks::Error::UnknownTask { name, .. }) => assert_eq!(name, "charge"),
        other => panic!("expected UnknownTask, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handles_work_inside_async_code_on_a_multi_thread_runtime() {
    let app = builder("shared-in-async").build().unwrap();
    let worker = app.spawn_worker();
    // Called from async code (as from `#[tokio::main]`): the thread is handed over, not
    // tokio's "Cannot start a runtime from within a runtime" panic.
    let task = add_sync.call(20, 22).on(&app).add_task_blocking().unwrap();
    let done = task.wait_blocking(DEADLINE).unwrap();
    assert_eq!(done.returning, Some(42));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn blocking_handles_on_a_current_thread_runtime_say_what_to_call_instead() {
    let app = builder("shared-current-thread").build().unwrap();
    let err = add_sync
        .call(1, 1)
        .on(&app)
        .add_task_blocking()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("\"add_sync\"")
            && msg.contains("awaiting")
            && msg.contains(".add_task().await"),
        "{msg}"
    );
}
