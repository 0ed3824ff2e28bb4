//! The PostgreSQL backend: a worker, a plain enqueue, and an enqueue inside the program's own
//! transaction (committed: the order and its task appear together; rolled back: neither does).
//!
//! ```text
//! cargo run --features postgres --example postgres
//! ```
//!
//! Needs a PostgreSQL server: `QTASKS_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`. The tables go into the schema `qtasks_example`.

use std::time::Duration;

use qtasks::postgres::tokio_postgres::{self, NoTls};
use qtasks::postgres::EnqueueInTransaction;
use qtasks::prelude::*;

/// Sends the confirmation of an order (here: returns its text).
#[qtasks::task]
async fn confirm_order(order: i64) -> String {
    format!("order {order} confirmed")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("QTASKS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let app = App::builder()
        .name("shop")
        .broker_url(format!("{server}?schema=qtasks_example"))
        .build()?;
    let worker = app.spawn_worker();

    // A plain enqueue: its own statement, committed at once.
    let task = confirm_order.call(1).on(&app).add_task().await?;
    let done = task.wait(Duration::from_secs(10)).await?;
    println!("plain enqueue: {:?}", done.returning);

    // The program's own connection and table.
    let (mut client, connection) = tokio_postgres::connect(&server, NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS qtasks_example.orders (id bigint PRIMARY KEY, total bigint NOT NULL)",
        )
        .await?;
    client
        .execute("DELETE FROM qtasks_example.orders WHERE id IN (2, 3)", &[])
        .await?;

    // Committed: the order and its confirmation task exist together from the commit on.
    let mut tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO qtasks_example.orders (id, total) VALUES (2, 4200)",
        &[],
    )
    .await?;
    let task = app.add_task_in(&mut tx, confirm_order.call(2)).await?;
    tx.commit().await?;
    let done = task.wait(Duration::from_secs(10)).await?;
    println!("enqueued in a committed transaction: {:?}", done.returning);

    // Rolled back: neither the order nor its task exists.
    let mut tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO qtasks_example.orders (id, total) VALUES (3, 100)",
        &[],
    )
    .await?;
    let task = app.add_task_in(&mut tx, confirm_order.call(3)).await?;
    tx.rollback().await?;
    println!(
        "enqueued in a rolled-back transaction: the task exists: {}",
        app.get(task.uuid).await?.is_some()
    );

    worker.shutdown().await?;
    Ok(())
}
