//! Enqueue in the caller's own PostgreSQL transaction (issue 18, item 3): a task written with
//! `add_task_in` is visible exactly when the transaction commits, together with the business
//! write, gone when it rolls back, and the commit itself wakes an idle worker (NOTIFY).
//!
//! Runs against the test PostgreSQL server (`QTASKS_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) on a schema of this binary's own; skips when the
//! server is unreachable unless `QTASKS_REQUIRE_POSTGRES=1`.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qtasks::postgres::{EnqueueInTransaction, PostgresBackend};
use qtasks::prelude::*;

use common::postgres::{connect, schema_of, test_url};
use common::DEADLINE;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

fn app_name(test: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("tx-{test}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The business table of these tests.
async fn orders_table(client: &qtasks::postgres::tokio_postgres::Client, schema: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.orders (id bigint PRIMARY KEY, task uuid)"
        ))
        .await
        .unwrap();
}

/// Committed: the order and its task appear together, and the commit wakes the idle worker at
/// once (far sooner than its safety-net timeout of 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_is_visible_exactly_after_commit_and_wakes_the_worker() {
    let Some(url) = test_url("tx").await else {
        return;
    };
    let schema = schema_of(&url);
    let app = common::builder(&app_name("commit"))
        .broker_url(&url)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    // A first task: the schema is migrated, and the worker is idle afterwards.
    let warm = add.call(1, 1).on(&app).add_task().await.unwrap();
    assert_eq!(warm.wait(DEADLINE).await.unwrap().returning, Some(2));

    let mut client = connect(&url).await;
    orders_table(&client, &schema).await;
    let mut tx = client.transaction().await.unwrap();
    let task = app.add_task_in(&mut tx, add.call(2, 3)).await.unwrap();
    assert_eq!(task.status, TaskStatus::New);
    tx.execute(
        &format!("INSERT INTO {schema}.orders (id, task) VALUES (1, $1)"),
        &[&task.uuid],
    )
    .await
    .unwrap();
    // Not committed: nobody else sees it (so no worker can run it).
    assert!(app.get(task.uuid).await.unwrap().is_none());
    let committed_at = Instant::now();
    tx.commit().await.unwrap();
    let done = task.wait(DEADLINE).await.unwrap();
    let took = committed_at.elapsed();
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(5));
    assert!(
        took < Duration::from_secs(2),
        "the commit's NOTIFY should wake the idle worker at once; took {took:?}"
    );
    let order = client
        .query_one(
            &format!("SELECT task FROM {schema}.orders WHERE id = 1"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(order.get::<_, uuid::Uuid>(0), task.uuid);
    worker.shutdown().await.unwrap();
}

/// Rolled back: neither the order nor the task exists, and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_task_never_exists() {
    let Some(url) = test_url("tx").await else {
        return;
    };
    let schema = schema_of(&url);
    let name = app_name("rollback");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let backend = PostgresBackend::from_url(&url, &name, app.config()).unwrap();
    backend.migrate().await.unwrap();
    let mut client = connect(&url).await;
    orders_table(&client, &schema).await;

    let mut tx = client.transaction().await.unwrap();
    let task = app.add_task_in(&mut tx, add.call(4, 4)).await.unwrap();
    let bulk = app
        .add_tasks_in(&mut tx, (0..10).map(|i| add.call(i, i)))
        .await
        .unwrap();
    tx.execute(
        &format!("INSERT INTO {schema}.orders (id, task) VALUES (2, $1)"),
        &[&task.uuid],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();

    assert!(app.get(task.uuid).await.unwrap().is_none());
    for t in &bulk {
        assert!(app.get(t.uuid).await.unwrap().is_none());
    }
    let orders = client
        .query(&format!("SELECT 1 FROM {schema}.orders WHERE id = 2"), &[])
        .await
        .unwrap();
    assert!(orders.is_empty());
    let stats = app.backend().broker.stats().await.unwrap();
    assert!(stats.ready_by_priority.is_empty(), "{stats:?}");
    assert!(stats.by_status.is_empty(), "{stats:?}");
}

/// The bulk variant: 1000 tasks in one transaction, all run after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_enqueue_in_a_transaction() {
    let Some(url) = test_url("tx").await else {
        return;
    };
    let name = app_name("bulk");
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let backend = PostgresBackend::from_url(&url, &name, app.config()).unwrap();
    backend.migrate().await.unwrap();
    let mut client = connect(&url).await;
    let mut tx = client.transaction().await.unwrap();
    let tasks = app
        .add_tasks_in(&mut tx, (0..1000).map(|i| add.call(i, 1)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let worker = app.spawn_worker();
    for (i, t) in tasks.iter().enumerate() {
        let done = t.wait(DEADLINE).await.unwrap();
        assert_eq!(done.returning, Some(i as i64 + 1));
    }
    worker.shutdown().await.unwrap();
}

/// An app on another backend gets a clear error, not a write somewhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_task_in_needs_a_postgres_app() {
    let Some(url) = test_url("tx").await else {
        return;
    };
    let app = common::builder(&app_name("memory")).build().unwrap();
    let mut client = connect(&url).await;
    let mut tx = client.transaction().await.unwrap();
    let err = app
        .add_task_in(&mut tx, add.call(1, 2))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("postgres://"), "{err}");
    assert!(err.contains("PostgreSQL backend"), "{err}");
}
