//! Leases of the PostgreSQL broker driven through the traits with a short lease: what the
//! conformance suite cannot cover because in-process backends have no leases. Runs against the
//! test PostgreSQL server on a schema of this binary's own; skips when it is unreachable
//! unless `QTASKS_REQUIRE_POSTGRES=1`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use qtasks_core::backend::{Broker, Completion, NewTask, Outcome, Storage};
use qtasks_core::{Config, Payload, TaskStatus};
use qtasks_postgres::{testing, PostgresBackend, PostgresOptions};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(10);

fn new_task(name: &str) -> NewTask {
    NewTask {
        uuid: Uuid::new_v4(),
        task_name: name.to_string().into(),
        priority: 0,
        args: Payload::encode(&[name]).unwrap(),
        created_at: SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    }
}

/// The first `start` tasks of a `claim_starting` are marked started by the claim itself: when
/// their lease is lost it counts as a delivery (the reaper makes the task a suspect) and the
/// attempt stays counted, as after a `started` call; the others were only prefetched: their lost
/// lease counts nothing, not even an attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_starting_marks_the_first_tasks_started() {
    if !testing::available() {
        return;
    }
    let schema = testing::fresh_schema("leases").await;
    let options = PostgresOptions {
        schema: schema.clone(),
        lease: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let backend =
        PostgresBackend::new(&testing::url(), "leases", &Config::default(), options).unwrap();
    let tasks = [new_task("first"), new_task("second")];
    backend.enqueue(&tasks).await.unwrap();
    let (claimed, started) = tokio::time::timeout(DEADLINE, backend.claim_starting(2, 1))
        .await
        .expect("claimed within the deadline")
        .unwrap();
    assert_eq!((claimed.len(), started), (2, 1));
    let (begun, prefetched) = (claimed[0].uuid, claimed[1].uuid);
    // Neither lease is renewed: both expire, and the next claim (at the deadline) reaps them.
    let again = tokio::time::timeout(DEADLINE, backend.claim(1))
        .await
        .expect("claimed again within the deadline")
        .unwrap();
    assert_eq!(again.len(), 1);
    let (client, connection) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            &format!("SELECT uuid, deliveries, suspect, attempts FROM {schema}.tasks"),
            &[],
        )
        .await
        .unwrap();
    let counted: HashMap<Uuid, (i32, bool)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(
        counted.get(&begun),
        Some(&(1, true)),
        "its start was recorded"
    );
    assert_eq!(
        counted.get(&prefetched),
        Some(&(0, false)),
        "it never started"
    );
    // The task claimed again is current: its acknowledgement is taken.
    let done = [Completion {
        lease: again[0].lease(),
        outcome: Outcome::Success(Payload::default()),
        run: None,
    }];
    assert!(backend.complete(&done).await.unwrap().is_empty());
    let record = Storage::get(&*backend, again[0].uuid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, TaskStatus::Success);
}
