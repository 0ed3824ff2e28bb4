//! By-name calls (`app.add_task(name, args)`) are checked against the task's parameters before
//! anything is written: unknown and missing keys, wrong types, wrong list lengths, each naming
//! the task, the argument, the expected type and the value given. The worker checks what other
//! producers wrote with the same messages.

mod common;

use common::{builder, DEADLINE};
use qtasks::prelude::*;
use qtasks::Payload;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// A structured argument.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
}

#[qtasks::task(name = "orders.place")]
fn place(order: Order, note: Option<String>) -> usize {
    let _ = note;
    order.items.len() + order.id as usize
}

#[qtasks::task]
async fn nothing() -> u8 {
    7
}

/// The error of a by-name call, as text; it names the task.
async fn refused(app: &App, task: &str, args: serde_json::Value) -> String {
    match app.add_task(task, args.clone()).await {
        Ok(t) => panic!("{task} with {args} was accepted: {t:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&format!("task {task:?}: ")), "{text}");
            text
        }
    }
}

#[tokio::test]
async fn a_named_map_or_a_list_that_fits_is_accepted_and_runs() {
    let app = builder("by-name-ok").build().unwrap();
    let worker = app.spawn_worker();
    for args in [
        json!({"a": 40, "b": 2}),
        json!([40, 2]),
        json!({"b": 2, "a": 40}),
    ] {
        let task = app.add_task("add", args).await.unwrap();
        let done = app.wait(task.uuid, DEADLINE).await.unwrap();
        assert_eq!(done.decode::<i64>().unwrap().returning, Some(42));
    }
    let order = json!({"order": {"id": 1, "items": ["a", "b"]}, "note": null});
    let task = app.add_task("orders.place", order).await.unwrap();
    let done = app.wait(task.uuid, DEADLINE).await.unwrap();
    assert_eq!(done.decode::<usize>().unwrap().returning, Some(3));
    let task = app.add_task("nothing", json!({})).await.unwrap();
    let done = app.wait(task.uuid, DEADLINE).await.unwrap();
    assert_eq!(done.decode::<u8>().unwrap().returning, Some(7));
    let task = app.add_task("nothing", json!([])).await.unwrap();
    let done = app.wait(task.uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_type_names_the_argument_the_type_and_the_value() {
    let app = builder("by-name-type").build().unwrap();
    let err = refused(&app, "add", json!({"a": "x", "b": 2})).await;
    assert!(
        err.contains(r#"argument "a" expects i64, got "x""#),
        "{err}"
    );
    let err = refused(&app, "add", json!([1, 2.5])).await;
    assert!(
        err.contains(r#"argument "b" expects i64, got 2.5"#),
        "{err}"
    );
    // A structured argument: the decoder's own words say what is wrong inside it.
    let err = refused(
        &app,
        "orders.place",
        json!({"order": {"id": 1}, "note": null}),
    )
    .await;
    assert!(
        err.contains(r#"argument "order" expects Order, got {"id":1}"#),
        "{err}"
    );
    assert!(err.contains("items"), "{err}");
    let err = refused(
        &app,
        "orders.place",
        json!({"order": {"id": 1, "items": []}, "note": 3}),
    )
    .await;
    assert!(
        err.contains(r#"argument "note" expects Option<String>, got 3"#),
        "{err}"
    );
    // Nothing was written.
    let stats = app.backend().broker.stats().await.unwrap();
    assert_eq!(stats.ready_by_priority.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn unknown_and_missing_keys_are_refused() {
    let app = builder("by-name-keys").build().unwrap();
    let err = refused(&app, "add", json!({"a": 1, "b": 2, "c": 3})).await;
    assert!(
        err.contains(r#"unknown argument "c": the task takes (a: i64, b: i64)"#),
        "{err}"
    );
    let err = refused(&app, "add", json!({"a": 1})).await;
    assert!(
        err.contains(r#"argument "b" (i64) is missing: the task takes (a: i64, b: i64)"#),
        "{err}"
    );
    let err = refused(&app, "nothing", json!({"a": 1})).await;
    assert!(
        err.contains(r#"unknown argument "a": the task takes no arguments"#),
        "{err}"
    );
}

#[tokio::test]
async fn a_list_of_the_wrong_length_or_another_value_is_refused() {
    let app = builder("by-name-list").build().unwrap();
    let err = refused(&app, "add", json!([1, 2, 3])).await;
    assert!(
        err.contains("the task takes 2 arguments (a: i64, b: i64), got a list of 3"),
        "{err}"
    );
    let err = refused(&app, "add", json!([1])).await;
    assert!(
        err.contains("the task takes 2 arguments (a: i64, b: i64), got a list of 1"),
        "{err}"
    );
    let err = refused(&app, "add", json!(42)).await;
    assert!(
        err.contains("the task takes its arguments as a map of names") && err.contains("got 42"),
        "{err}"
    );
}

#[tokio::test]
async fn the_error_is_a_bad_arguments_error_whose_problem_can_be_inspected() {
    let app = builder("by-name-source").build().unwrap();
    let err = app
        .add_task("add", json!({"a": "x", "b": 2}))
        .await
        .unwrap_err();
    let qtasks::Error::BadArguments { task, problem } = &err else {
        panic!("not a bad-arguments error: {err:?}");
    };
    assert_eq!(task, "add");
    assert!(
        matches!(problem, qtasks::registry::ArgsError::WrongType { name, .. } if *name == "a"),
        "{problem:?}"
    );
}

#[tokio::test]
async fn the_worker_names_the_field_for_records_other_producers_wrote() {
    let app = builder("by-name-worker").build().unwrap();
    let worker = app.spawn_worker();
    // Written as another producer would: straight to the broker, unchecked.
    let new = qtasks::backend::NewTask {
        uuid: qtasks::Uuid::new_v4(),
        task_name: "add".into(),
        priority: 0,
        args: Payload::encode(&json!({"a": "x", "b": 2})).unwrap(),
        created_at: std::time::SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    let uuid = new.uuid;
    app.backend()
        .broker
        .enqueue(std::slice::from_ref(&new))
        .await
        .unwrap();
    let done = app.wait(uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Error);
    let traceback = done.traceback.unwrap_or_default();
    assert!(
        traceback.contains(
            r#"task "add" expects arguments (a: i64, b: i64): argument "a" expects i64, got "x""#
        ),
        "{traceback}"
    );
    worker.shutdown().await.unwrap();
}
