//! Chains: each step's result feeds the next; the first failing step stops the chain.

mod common;

use common::DEADLINE;
use qtasks::chain::Chain;
use qtasks::prelude::*;
use qtasks::Error;

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task]
async fn double(n: i64) -> i64 {
    n * 2
}

#[qtasks::task]
fn describe(n: i64) -> String {
    format!("= {n}")
}

#[qtasks::task]
async fn reject_odd(n: i64) -> Result<i64, std::io::Error> {
    if n % 2 == 1 {
        return Err(std::io::Error::other(format!("{n} is odd")));
    }
    Ok(n)
}

#[qtasks::task]
async fn shout(text: String) -> String {
    text.to_uppercase()
}

#[tokio::test]
async fn each_result_feeds_the_next_step() {
    let app = common::builder("chain-ok").build().unwrap();
    let worker = app.spawn_worker();
    let chain = Chain::new(add.call(2, 3))
        .then(double)
        .then(describe)
        .on(&app);
    assert_eq!(chain.steps(), ["add", "double", "describe"]);
    let last = chain.start().wait(DEADLINE).await.unwrap();
    assert_eq!(last.status, TaskStatus::Success);
    assert_eq!(last.task_name, "describe");
    assert_eq!(last.returning.as_deref(), Some("= 10"));
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_step_stops_the_chain_with_its_error() {
    let app = common::builder("chain-fail").build().unwrap();
    let worker = app.spawn_worker();
    let err = Chain::new(add.call(1, 2))
        .then(reject_odd)
        .then(double)
        .on(&app)
        .start()
        .wait(DEADLINE)
        .await
        .unwrap_err();
    match &err {
        Error::ChainStep {
            step,
            task,
            status,
            error,
            uuid,
        } => {
            assert_eq!(*step, 2);
            assert_eq!(task, "reject_odd");
            assert_eq!(*status, TaskStatus::Error);
            assert!(error.contains("3 is odd"), "{error}");
            // The failing step is an ordinary task record.
            let record = app.get(*uuid).await.unwrap().unwrap();
            assert_eq!(record.status, TaskStatus::Error);
        }
        other => panic!("expected a chain step error, got {other:?}"),
    }
    let stats = app.backend().broker.stats().await.unwrap();
    assert_eq!(
        stats.by_status.values().sum::<u64>(),
        2,
        "the step after the failure never started: {stats:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_step_whose_parameter_does_not_fit_fails_with_bad_arguments() {
    let app = common::builder("chain-types").build().unwrap();
    let worker = app.spawn_worker();
    let err = Chain::new(add.call(1, 1))
        .then(shout)
        .on(&app)
        .start()
        .wait(DEADLINE)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("step 2") && err.contains("shout"), "{err}");
    assert!(err.contains("bad arguments"), "{err}");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn waiting_too_little_names_the_running_step() {
    let app = common::builder("chain-timeout").build().unwrap();
    // No worker: the first step never runs.
    let err = Chain::new(add.call(1, 1))
        .then(double)
        .on(&app)
        .start()
        .wait(std::time::Duration::from_millis(50))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("add (a chain step)"), "{err}");
}
