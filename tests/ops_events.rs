//! Events: every one fired, observed through channels with deadlines.

mod common;

use common::DEADLINE;
use qtasks::events::Events;
use qtasks::prelude::*;
use tokio::sync::mpsc;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
async fn fail(message: String) -> Result<u8, std::io::Error> {
    Err(std::io::Error::other(message))
}

#[qtasks::task(retry = 1)]
async fn fail_twice(message: String) -> Result<u8, std::io::Error> {
    Err(std::io::Error::other(message))
}

#[qtasks::task]
async fn quit(ctx: TaskContext) -> Result<u8, TaskError> {
    Err(ctx.cancel("not today"))
}

/// Events as text, in the order they fire.
fn recording_events(tx: mpsc::UnboundedSender<String>) -> Events {
    let t = |tx: &mpsc::UnboundedSender<String>| tx.clone();
    let (a, b, c, d, e, f, g, h, i) = (
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
        t(&tx),
    );
    Events::new()
        .on_starting(move |ev| {
            let _ = a.send(format!("starting {}", ev.app.name()));
        })
        .on_stopping(move |ev| {
            let _ = b.send(format!("stopping {}", ev.app.name()));
        })
        .on_worker_running(move |_| {
            let _ = c.send("worker_running".into());
        })
        .on_worker_stopping(move |_| {
            let _ = d.send("worker_stopping".into());
        })
        .on_task_running(move |ev| {
            let _ = e.send(format!("task_running {} {}", ev.task_name, ev.attempt));
        })
        .on_task_stopping(move |ev| {
            let _ = f.send(format!("task_stopping {}", ev.task_name));
        })
        .on_task_success(move |ev| {
            let n: i64 = ev.result.decode().unwrap_or(-1);
            let _ = g.send(format!("task_success {} {n}", ev.task.task_name));
        })
        .on_task_error(move |ev| {
            let _ = h.send(format!(
                "task_error {} retry={} {}",
                ev.task.task_name,
                ev.retry_in.is_some(),
                ev.traceback
            ));
        })
        .on_task_cancel(move |ev| {
            let _ = i.send(format!("task_cancel {} {}", ev.task.task_name, ev.reason));
        })
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("the channel is open")
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, wanted: &[&str]) {
    for w in wanted {
        let got = next(rx).await;
        assert!(
            got.starts_with(w),
            "expected an event starting with {w:?}, got {got:?}"
        );
    }
}

#[tokio::test]
async fn every_event_fires_in_order() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("events-all")
        .events(recording_events(tx))
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
    expect(&mut rx, &["starting events-all", "worker_running"]).await;

    let ok = add.call(2, 3).on(&app).add_task().await.unwrap();
    ok.wait(DEADLINE).await.unwrap();
    expect(
        &mut rx,
        &[
            "task_running add 1",
            "task_stopping add",
            "task_success add 5",
        ],
    )
    .await;

    let failed = fail.call("bad".into()).on(&app).add_task().await.unwrap();
    failed.wait(DEADLINE).await.unwrap();
    expect(
        &mut rx,
        &[
            "task_running fail 1",
            "task_stopping fail",
            "task_error fail retry=false bad",
        ],
    )
    .await;

    let cancelled = quit.call().on(&app).add_task().await.unwrap();
    let cancelled = cancelled.wait(DEADLINE).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancel);
    expect(
        &mut rx,
        &[
            "task_running quit 1",
            "task_stopping quit",
            "task_cancel quit not today",
        ],
    )
    .await;

    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
    expect(&mut rx, &["worker_stopping", "stopping events-all"]).await;
}

#[tokio::test]
async fn task_error_tells_whether_a_retry_follows() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = common::builder("events-retry")
        .events(recording_events(tx))
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    expect(&mut rx, &["worker_running"]).await;
    let task = fail_twice
        .call("again".into())
        .on(&app)
        .add_task()
        .await
        .unwrap();
    task.wait(DEADLINE).await.unwrap();
    expect(
        &mut rx,
        &[
            "task_running fail_twice 1",
            "task_stopping fail_twice",
            "task_error fail_twice retry=true again",
            "task_running fail_twice 2",
            "task_stopping fail_twice",
            "task_error fail_twice retry=false again",
        ],
    )
    .await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_does_not_stop_the_worker() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = Events::new()
        .on_task_success(|_| panic!("handler bug"))
        .on_task_success(move |ev| {
            let _ = tx.send(ev.task.task_uuid);
        });
    let app = common::builder("events-panic")
        .events(events)
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    for n in 0..3 {
        let task = add.call(n, n).on(&app).add_task().await.unwrap();
        let done = task.wait(DEADLINE).await.unwrap();
        assert_eq!(done.returning, Some(2 * n));
        let seen = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, task.uuid, "the next handler still runs");
    }
    worker.shutdown().await.unwrap();
}
