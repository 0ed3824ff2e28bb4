//! The conformance suite every backend passes (feature `testing`): one test per behaviour a
//! backend affects, written once and run by the memory and Redis backends.
//!
//! A backend's test file provides a factory, an async fn that opens a fresh, empty backend
//! for the given settings, and expands [`conformance_tests!`](crate::conformance_tests):
//!
//! ```text
//! async fn open(config: qtasks_core::Config) -> qtasks_core::Backend { /* a fresh backend */ }
//! qtasks_core::conformance_tests!(open);
//! ```
//!
//! (`qtasks-memory/tests/conformance.rs` and `qtasks-redis/tests/conformance.rs` are the two
//! users.)
//!
//! The cases drive the component traits directly (no worker), so a failure points at the
//! backend. Nothing sleeps to wait for work: claims and waits are bounded by [`DEADLINE`].

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::app::config::Config;
use crate::backend::{
    Backend, CancelOutcome, Completion, DeadLetterReason, Delivery, Lease, NewTask, Outcome,
};
use crate::error::Error;
use crate::task::payload::Payload;
use crate::task::status::TaskStatus;

mod flow;
pub use flow::{
    cancel_frees_a_unique_key, claims_take_only_the_queues_served, concurrency_limit_holds_slots,
    concurrency_limit_per_key, debounce_takes_the_last_arguments,
    flow_control_is_refused_when_unsupported, later_does_not_spend_an_attempt,
    pause_and_resume_a_queue, progress_is_kept_while_the_claim_is_current,
    queues_by_weight_and_in_strict_order, rate_limit_per_key, rate_limit_spaces_claims,
    throttle_drops_calls_within_its_window, unique_for_holds_after_the_end,
    unique_key_returns_its_holder, unique_keys_in_one_batch,
};
mod inspect;
pub use inspect::{
    delete_removes_finished_tasks_only, list_by_status_with_cursor,
    list_filters_by_name_text_and_time, pause_and_resume_claims, purge_removes_old_finished_tasks,
    retry_dead_queues_failed_tasks, runs_are_kept_in_the_history_and_the_latency,
    throughput_counts_finished_tasks,
};

/// How long a case waits for something that must happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Expands to one `#[tokio::test]` per conformance case, each calling the case with `$open`
/// (an `async fn(Config) -> Backend` that opens a fresh backend). With
/// `run_if = <bool expression>`, a case returns at once when the expression is false (a
/// backend whose server is not available on this machine).
#[macro_export]
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::conformance_tests!($open, run_if = true);
    };
    // The one list of cases.
    ($open:path, run_if = $available:expr) => {
        $crate::conformance_tests!(@cases $open, $available;
            enqueue_then_get, priority_order_and_fifo, claim_respects_batch_limit,
            claim_blocks_until_work_arrives, delayed_task_waits_until_due, complete_success,
            complete_error, complete_cancel, retry_runs_again_after_delay,
            stale_token_is_rejected, duplicates_in_one_batch_count_once,
            requeue_does_not_count_the_attempt, cancel_queued_task,
            cancel_running_finished_and_unknown, cancel_task_waiting_for_retry,
            wait_is_notified, wait_times_out_and_unknown_fails, timed_out_waits_leave_nothing_behind,
            result_ttl_expires_records,
            dead_letter_outcome, enqueue_of_an_existing_uuid_changes_nothing,
            bad_leases_in_a_batch_harm_no_other, bulk_enqueue_claims_each_once, stats_report_queue_state,
            global_config_kv, global_config_try_claim, global_config_heartbeats,
            list_by_status_with_cursor, list_filters_by_name_text_and_time,
            retry_dead_queues_failed_tasks, delete_removes_finished_tasks_only,
            purge_removes_old_finished_tasks, pause_and_resume_claims,
            throughput_counts_finished_tasks, runs_are_kept_in_the_history_and_the_latency);
    };
    (@cases $open:path, $available:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if !$available {
                    return;
                }
                $crate::testing::conformance::$case($open).await
            }
        )*
    };
}

fn new_task(name: &str, priority: i32) -> NewTask {
    NewTask {
        uuid: Uuid::new_v4(),
        task_name: name.to_string().into(),
        priority,
        args: Payload::encode(&(name, priority)).expect("encodable"),
        created_at: SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    }
}

/// Enqueues one new task and returns it.
async fn enqueue_one(backend: &Backend, name: &str, priority: i32) -> NewTask {
    let task = new_task(name, priority);
    backend
        .broker
        .enqueue(std::slice::from_ref(&task))
        .await
        .expect("enqueue succeeded");
    task
}

fn config() -> Config {
    Config::default()
}

async fn claim(backend: &Backend, max: usize) -> Vec<Delivery> {
    tokio::time::timeout(DEADLINE, backend.broker.claim(max))
        .await
        .expect("claim returned work within the deadline")
        .expect("claim succeeded")
}

async fn complete(backend: &Backend, delivery: &Delivery, outcome: Outcome) -> Vec<Lease> {
    backend
        .broker
        .complete(&[Completion {
            lease: delivery.lease(),
            outcome,
            run: None,
        }])
        .await
        .expect("complete succeeded")
}

/// The uuids of claimed tasks, in claim order.
fn claimed_uuids(deliveries: &[Delivery]) -> Vec<Uuid> {
    deliveries.iter().map(|d| d.uuid).collect()
}

async fn status(backend: &Backend, uuid: Uuid) -> TaskStatus {
    backend
        .storage
        .get(uuid)
        .await
        .expect("get succeeded")
        .expect("the record exists")
        .status
}

/// Asserts that nothing is claimable right now (a claim stays blocked for a short while).
async fn assert_nothing_claimable(backend: &Backend) {
    let claimed = tokio::time::timeout(Duration::from_millis(150), backend.broker.claim(10)).await;
    assert!(
        claimed.is_err(),
        "expected no claimable task, got {claimed:?}"
    );
}

/// Polls `check` until it holds. Only for state that has no notification (TTL expiry).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Enqueue writes a record with status `new` that `get` returns.
pub async fn enqueue_then_get<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "conf.get", 3).await;
    let got = backend.storage.get(t.uuid).await.unwrap().expect("record");
    assert_eq!(got.uuid, t.uuid);
    assert_eq!(got.task_name, "conf.get");
    assert_eq!(got.status, TaskStatus::New);
    assert_eq!(got.priority, 3);
    assert_eq!(got.args, t.args);
    assert_eq!(got.attempts, 0);
    assert!(got.returning.is_none());
    assert!(backend.storage.get(Uuid::new_v4()).await.unwrap().is_none());
}

/// Lower priority numbers are claimed first; FIFO within one priority.
pub async fn priority_order_and_fifo<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let tasks = [
        new_task("p5-a", 5),
        new_task("p0-a", 0),
        new_task("p5-b", 5),
        new_task("pneg", -2),
        new_task("p0-b", 0),
        new_task("p0-c", 0),
    ];
    backend.broker.enqueue(&tasks[..3]).await.unwrap();
    backend.broker.enqueue(&tasks[3..]).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..tasks.len() {
        let got = claim(&backend, 1).await;
        assert_eq!(got.len(), 1);
        order.push(got[0].task_name.clone());
    }
    assert_eq!(order, ["pneg", "p0-a", "p0-b", "p0-c", "p5-a", "p5-b"]);
}

/// A claim returns at most `max` tasks, and the rest later.
pub async fn claim_respects_batch_limit<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let tasks: Vec<_> = (0..5).map(|i| new_task(&format!("b{i}"), 0)).collect();
    backend.broker.enqueue(&tasks).await.unwrap();
    let first = claim(&backend, 2).await;
    assert_eq!(first.len(), 2);
    let rest = claim(&backend, 10).await;
    assert_eq!(rest.len(), 3);
    let names: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|d| d.task_name.clone())
        .collect();
    assert_eq!(names, ["b0", "b1", "b2", "b3", "b4"]);
    for d in first.iter().chain(&rest) {
        assert_eq!(d.attempt, 1);
        assert_eq!(status(&backend, d.uuid).await, TaskStatus::Process);
    }
}

/// An idle claim blocks until work is enqueued, then returns it promptly.
pub async fn claim_blocks_until_work_arrives<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut claimer = {
        let backend = backend.clone();
        tokio::spawn(async move { claim(&backend, 4).await })
    };
    // The claim is parked: nothing to return yet.
    let early = tokio::time::timeout(Duration::from_millis(100), &mut claimer).await;
    assert!(
        early.is_err(),
        "claim returned with an empty queue: {early:?}"
    );
    let t = new_task("wake", 0);
    let enqueued_at = Instant::now();
    backend
        .broker
        .enqueue(std::slice::from_ref(&t))
        .await
        .unwrap();
    let got = claimer.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uuid, t.uuid);
    assert!(
        enqueued_at.elapsed() < Duration::from_secs(2),
        "wake-up took {:?}",
        enqueued_at.elapsed()
    );
}

/// A task with `not_before` in the future is scheduled, not ready, until it is due.
pub async fn delayed_task_waits_until_due<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let delay = Duration::from_millis(400);
    let mut t = new_task("delayed", 0);
    t.not_before = Some(SystemTime::now() + delay);
    let start = Instant::now();
    backend
        .broker
        .enqueue(std::slice::from_ref(&t))
        .await
        .unwrap();
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.scheduled, 1, "{stats:?}");
    assert!(stats.ready_by_priority.is_empty(), "{stats:?}");
    let got = claim(&backend, 1).await;
    assert_eq!(got[0].uuid, t.uuid);
    assert!(
        start.elapsed() >= delay - Duration::from_millis(50),
        "ran after {:?}, before its delay of {delay:?}",
        start.elapsed()
    );
}

/// Success stores the result, final status, and counts the attempt.
pub async fn complete_success<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "ok", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    let result = Payload::encode(&42).unwrap();
    assert!(complete(&backend, &d, Outcome::Success(result.clone()))
        .await
        .is_empty());
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Success);
    assert_eq!(got.returning, Some(result));
    assert_eq!(got.attempts, 1);
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.running, 0, "{stats:?}");
}

/// An error stores the traceback with status `error`.
pub async fn complete_error<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "err", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d,
        Outcome::Failed {
            traceback: "boom\ncaused by: io".into(),
        },
    )
    .await;
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Error);
    assert_eq!(got.traceback.as_deref(), Some("boom\ncaused by: io"));
}

/// A cancellation stores the reason with status `cancel`.
pub async fn complete_cancel<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "cancelled", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d,
        Outcome::Cancelled {
            reason: "not needed".into(),
        },
    )
    .await;
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Cancel);
    assert_eq!(got.cancel_reason.as_deref(), Some("not needed"));
}

/// A retry sets status `retry` and delivers the task again after the delay, attempt counted.
pub async fn retry_runs_again_after_delay<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "retry", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    let delay = Duration::from_millis(300);
    let retried_at = Instant::now();
    complete(
        &backend,
        &d,
        Outcome::Retry {
            traceback: "flaky".into(),
            delay,
        },
    )
    .await;
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Retry);
    assert_eq!(got.traceback.as_deref(), Some("flaky"));
    assert_eq!(backend.broker.stats().await.unwrap().scheduled, 1);
    let again = claim(&backend, 1).await.remove(0);
    assert_eq!(again.uuid, t.uuid);
    assert_eq!(again.attempt, 2);
    assert!(
        retried_at.elapsed() >= delay - Duration::from_millis(50),
        "retried after {:?}, before the delay",
        retried_at.elapsed()
    );
    assert_ne!(again.token, d.token);
    complete(&backend, &again, Outcome::Success(Payload::default())).await;
    assert_eq!(status(&backend, t.uuid).await, TaskStatus::Success);
}

/// Completing with a stale fencing token is rejected and changes nothing.
pub async fn stale_token_is_rejected<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "fenced", 0).await;
    let old = claim(&backend, 1).await.remove(0);
    backend.broker.requeue(&[old.lease()]).await.unwrap();
    let current = claim(&backend, 1).await.remove(0);
    assert_eq!(current.uuid, t.uuid);
    assert_ne!(current.token, old.token);
    let rejected = complete(&backend, &old, Outcome::Success(Payload::default())).await;
    assert_eq!(rejected, vec![old.lease()]);
    assert_eq!(status(&backend, t.uuid).await, TaskStatus::Process);
    let result = Payload::encode(&"current").unwrap();
    assert!(
        complete(&backend, &current, Outcome::Success(result.clone()))
            .await
            .is_empty()
    );
    // A second acknowledgement of a finished task is rejected too.
    let again = complete(
        &backend,
        &current,
        Outcome::Failed {
            traceback: "late".into(),
        },
    )
    .await;
    assert_eq!(again, vec![current.lease()]);
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Success);
    assert_eq!(got.returning, Some(result));
}

/// The same lease twice in one acknowledgement or requeue batch takes effect once.
pub async fn duplicates_in_one_batch_count_once<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let tasks = [new_task("dup-ack", 0), new_task("dup-requeue", 0)];
    backend.broker.enqueue(&tasks).await.unwrap();
    let claimed = claim(&backend, 2).await;
    let acked = &claimed[0];
    let first = Payload::encode(&1).unwrap();
    let twice = [
        Completion {
            lease: acked.lease(),
            outcome: Outcome::Success(first.clone()),
            run: None,
        },
        Completion {
            lease: acked.lease(),
            outcome: Outcome::Failed {
                traceback: "second".into(),
            },
            run: None,
        },
    ];
    let rejected = backend.broker.complete(&twice).await.unwrap();
    assert_eq!(rejected, vec![acked.lease()]);
    let got = backend.storage.get(acked.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Success);
    assert_eq!(got.returning, Some(first));

    let requeued = &claimed[1];
    backend
        .broker
        .requeue(&[requeued.lease(), requeued.lease()])
        .await
        .unwrap();
    let again = claim(&backend, 10).await;
    assert_eq!(again.len(), 1, "queued once: {again:?}");
    assert_eq!(again[0].uuid, requeued.uuid);
    assert_nothing_claimable(&backend).await;
}

/// Requeue (graceful shutdown) returns the task to the queue without counting the attempt.
pub async fn requeue_does_not_count_the_attempt<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "requeued", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    assert_eq!(d.attempt, 1);
    backend.broker.requeue(&[d.lease()]).await.unwrap();
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::New);
    assert_eq!(got.attempts, 0);
    let again = claim(&backend, 1).await.remove(0);
    assert_eq!(again.uuid, t.uuid);
    assert_eq!(again.attempt, 1);
}

/// A queued task cancelled never runs.
pub async fn cancel_queued_task<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let victim = new_task("victim", 0);
    let other = new_task("other", 1);
    backend
        .broker
        .enqueue(&[victim.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        backend
            .broker
            .cancel(victim.uuid, "changed my mind")
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    let got = backend.storage.get(victim.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Cancel);
    assert_eq!(got.cancel_reason.as_deref(), Some("changed my mind"));
    let claimed = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&claimed), vec![other.uuid]);
    assert_nothing_claimable(&backend).await;
}

/// Cancel reports running, finished and unknown tasks without changing them.
pub async fn cancel_running_finished_and_unknown<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "running", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    assert_eq!(
        backend.broker.cancel(t.uuid, "stop").await.unwrap(),
        CancelOutcome::Running
    );
    assert_eq!(status(&backend, t.uuid).await, TaskStatus::Process);
    complete(&backend, &d, Outcome::Success(Payload::default())).await;
    assert_eq!(
        backend.broker.cancel(t.uuid, "stop").await.unwrap(),
        CancelOutcome::Finished
    );
    assert_eq!(status(&backend, t.uuid).await, TaskStatus::Success);
    assert_eq!(
        backend.broker.cancel(Uuid::new_v4(), "stop").await.unwrap(),
        CancelOutcome::NotFound
    );
}

/// A task waiting for its retry can be cancelled and never runs again.
pub async fn cancel_task_waiting_for_retry<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "retry-cancel", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d,
        Outcome::Retry {
            traceback: "flaky".into(),
            delay: Duration::from_millis(100),
        },
    )
    .await;
    assert_eq!(
        backend.broker.cancel(t.uuid, "enough").await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(status(&backend, t.uuid).await, TaskStatus::Cancel);
    assert_nothing_claimable(&backend).await;
    assert_nothing_claimable(&backend).await;
}

/// `wait` returns as soon as the task is final (by notification), and at once when it is.
pub async fn wait_is_notified<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "waited", 0).await;
    let waiter = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.storage.wait(t.uuid, DEADLINE).await })
    };
    let d = claim(&backend, 1).await.remove(0);
    let result = Payload::encode(&7).unwrap();
    let completed_at = Instant::now();
    complete(&backend, &d, Outcome::Success(result.clone())).await;
    let done = waiter
        .await
        .unwrap()
        .unwrap()
        .expect("finished before the deadline");
    assert!(
        completed_at.elapsed() < Duration::from_secs(2),
        "the waiter woke {:?} after completion",
        completed_at.elapsed()
    );
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(result));
    let again = backend
        .storage
        .wait(t.uuid, DEADLINE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status, TaskStatus::Success);
    // Many waiters on one task all wake.
    let t2 = enqueue_one(&backend, "waited-by-many", 0).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.storage.wait(t2.uuid, DEADLINE).await })
        })
        .collect();
    let d2 = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d2,
        Outcome::Failed {
            traceback: "x".into(),
        },
    )
    .await;
    for w in waiters {
        let done = w.await.unwrap().unwrap().expect("finished");
        assert_eq!(done.status, TaskStatus::Error);
    }
}

/// `wait` gives `None` after its timeout for a pending task, and `NotFound` for no task.
pub async fn wait_times_out_and_unknown_fails<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "pending", 0).await;
    let start = Instant::now();
    let got = backend
        .storage
        .wait(t.uuid, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(got.is_none());
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert!(start.elapsed() < DEADLINE);
    let unknown = Uuid::new_v4();
    match backend
        .storage
        .wait(unknown, Duration::from_millis(200))
        .await
    {
        Err(Error::NotFound(u)) => assert_eq!(u, unknown),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Waits that time out leave nothing behind: after 100,000 timed-out waits, in concurrent
/// batches, half on one task and half spread over 100 others, every wait has ended with
/// `None`, the tasks are unchanged, and waiting works as before: a fresh waiter is woken
/// promptly by the completion and a final task is returned at once.
///
/// The backend's own count of parked waits ([`Storage::parked_waits`](crate::backend::Storage::parked_waits)) is back to zero after
/// them, and each batch ends within [`DEADLINE`] and all of them within six, so bookkeeping that
/// grew with every timed-out wait would fail it either way.
pub async fn timed_out_waits_leave_nothing_behind<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    const WAITS: usize = 100_000;
    const BATCH: usize = 1_000;
    let backend = open(config()).await;
    // `often` gets half of the waits; it is claimed first (priority 0) at the end.
    let often = new_task("waited-often", 0);
    let spread: Vec<_> = (0..100)
        .map(|i| new_task(&format!("waited-{i}"), 1))
        .collect();
    backend
        .broker
        .enqueue(std::slice::from_ref(&often))
        .await
        .unwrap();
    backend.broker.enqueue(&spread).await.unwrap();
    let started = Instant::now();
    for batch in 0..WAITS / BATCH {
        let batch_started = Instant::now();
        let waits = (0..BATCH).map(|i| {
            let uuid = if i % 2 == 0 {
                often.uuid
            } else {
                spread[(batch * BATCH + i) / 2 % spread.len()].uuid
            };
            let backend = &backend;
            async move {
                let got = backend.storage.wait(uuid, Duration::from_millis(1)).await;
                (uuid, got)
            }
        });
        for (uuid, got) in futures::future::join_all(waits).await {
            match got {
                Ok(None) => {}
                other => panic!("a wait on the pending task {uuid} should time out: {other:?}"),
            }
        }
        assert!(
            batch_started.elapsed() < DEADLINE,
            "batch {batch} of {BATCH} timed-out waits took {:?}",
            batch_started.elapsed()
        );
    }
    assert!(
        started.elapsed() < 6 * DEADLINE,
        "{WAITS} timed-out waits took {:?}",
        started.elapsed()
    );
    if let Some(parked) = backend.storage.parked_waits() {
        assert_eq!(
            parked, 0,
            "{WAITS} timed-out waits left {parked} waiters behind"
        );
    }
    assert_eq!(status(&backend, often.uuid).await, TaskStatus::New);
    for t in &spread {
        assert_eq!(status(&backend, t.uuid).await, TaskStatus::New);
    }

    // A fresh waiter parks, and the completion wakes it promptly.
    let mut waiter = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.storage.wait(often.uuid, DEADLINE).await })
    };
    let early = tokio::time::timeout(Duration::from_millis(100), &mut waiter).await;
    assert!(
        early.is_err(),
        "the wait returned for a pending task: {early:?}"
    );
    let d = claim(&backend, 1).await.remove(0);
    assert_eq!(d.uuid, often.uuid);
    let result = Payload::encode(&"after the timeouts").unwrap();
    let completed_at = Instant::now();
    assert!(complete(&backend, &d, Outcome::Success(result.clone()))
        .await
        .is_empty());
    let done = waiter
        .await
        .unwrap()
        .unwrap()
        .expect("finished before the deadline");
    assert!(
        completed_at.elapsed() < Duration::from_secs(2),
        "the waiter woke {:?} after completion",
        completed_at.elapsed()
    );
    assert_eq!(done.status, TaskStatus::Success);
    assert_eq!(done.returning, Some(result));
    // A final task is returned at once, even with no time to wait.
    let again = backend
        .storage
        .wait(often.uuid, Duration::ZERO)
        .await
        .unwrap()
        .expect("a final task is returned at once");
    assert_eq!(again.status, TaskStatus::Success);
}

/// Finished records disappear after the result TTL.
pub async fn result_ttl_expires_records<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(Config {
        result_ttl: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let done = new_task("expires", 0);
    let pending = new_task("stays", 0);
    backend
        .broker
        .enqueue(std::slice::from_ref(&done))
        .await
        .unwrap();
    let d = claim(&backend, 1).await.remove(0);
    complete(&backend, &d, Outcome::Success(Payload::default())).await;
    backend
        .broker
        .enqueue(std::slice::from_ref(&pending))
        .await
        .unwrap();
    assert!(backend.storage.get(done.uuid).await.unwrap().is_some());
    // Expiry has no notification: poll with a deadline.
    eventually("the finished record expired", || async {
        backend.storage.get(done.uuid).await.unwrap().is_none()
    })
    .await;
    // Work still queued never expires.
    assert_eq!(status(&backend, pending.uuid).await, TaskStatus::New);
}

/// A dead-letter outcome ends the task with status `error`, the reason kept, never retried.
pub async fn dead_letter_outcome<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut t = new_task("no.such.task", 0);
    t.args = Payload::from_bytes(vec![0xc1, 0xff, 0x00]);
    backend
        .broker
        .enqueue(std::slice::from_ref(&t))
        .await
        .unwrap();
    let d = claim(&backend, 1).await.remove(0);
    assert_eq!(d.args, t.args, "raw arguments are delivered as they were");
    complete(
        &backend,
        &d,
        Outcome::DeadLetter {
            reason: DeadLetterReason::UnknownTask,
            traceback: "unknown task".into(),
        },
    )
    .await;
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Error);
    assert_eq!(got.traceback.as_deref(), Some("unknown task"));
    assert_eq!(got.args, t.args);
    assert_eq!(
        got.extra.get("dead_letter").map(String::as_str),
        Some("unknown_task")
    );
    assert_eq!(backend.broker.stats().await.unwrap().dead_letter, 1);
    assert_nothing_claimable(&backend).await;
}

/// A bulk enqueue of 1000 tasks is claimed in batches, each task exactly once.
pub async fn bulk_enqueue_claims_each_once<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let tasks: Vec<_> = (0..1000).map(|i| new_task("bulk", i % 3)).collect();
    backend.broker.enqueue(&tasks).await.unwrap();
    let mut seen = HashSet::new();
    while seen.len() < tasks.len() {
        let batch = claim(&backend, 128).await;
        assert!(batch.len() <= 128);
        let completions: Vec<_> = batch
            .iter()
            .map(|d| Completion {
                lease: d.lease(),
                outcome: Outcome::Success(Payload::default()),
                run: None,
            })
            .collect();
        assert!(backend
            .broker
            .complete(&completions)
            .await
            .unwrap()
            .is_empty());
        for d in batch {
            assert!(seen.insert(d.uuid), "task {} delivered twice", d.uuid);
        }
    }
    assert_nothing_claimable(&backend).await;
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.by_status.get("success"), Some(&1000), "{stats:?}");
}

/// Stats report ready tasks per priority, scheduled, running and per-status counts.
pub async fn stats_report_queue_state<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut later = new_task("later", 0);
    later.not_before = Some(SystemTime::now() + Duration::from_secs(3600));
    backend
        .broker
        .enqueue(&[
            new_task("a", 0),
            new_task("b", 0),
            new_task("c", 5),
            new_task("d", 5),
            later,
        ])
        .await
        .unwrap();
    let d = claim(&backend, 1).await.remove(0);
    assert_eq!(d.task_name, "a");
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(
        stats.ready_by_priority.into_iter().collect::<Vec<_>>(),
        vec![(0, 1), (5, 2)]
    );
    assert_eq!(stats.scheduled, 1);
    assert_eq!(stats.running, 1);
    assert_eq!(stats.by_status.get("new"), Some(&4));
    assert_eq!(stats.by_status.get("process"), Some(&1));
    assert_eq!(stats.dead_letter, 0);
}

/// The shared key-value store: set, get, delete, list.
pub async fn global_config_kv<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let kv = &backend.global_config;
    assert_eq!(kv.get("missing").await.unwrap(), None);
    kv.set("mode", "fast").await.unwrap();
    kv.set("owner", "ops").await.unwrap();
    kv.set("mode", "safe").await.unwrap();
    assert_eq!(kv.get("mode").await.unwrap().as_deref(), Some("safe"));
    let all = kv.get_all().await.unwrap();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        vec![
            ("mode".to_string(), "safe".to_string()),
            ("owner".to_string(), "ops".to_string())
        ]
    );
    kv.delete("mode").await.unwrap();
    assert_eq!(kv.get("mode").await.unwrap(), None);
}

/// `try_claim` succeeds once per key until its TTL passes.
pub async fn global_config_try_claim<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let kv = &backend.global_config;
    let ttl = Duration::from_millis(300);
    assert!(kv.try_claim("tick:1", ttl).await.unwrap());
    assert!(!kv.try_claim("tick:1", ttl).await.unwrap());
    assert!(kv.try_claim("tick:2", ttl).await.unwrap());
    // Expiry has no notification: poll with a deadline.
    eventually("the claim expired", || async {
        kv.try_claim("tick:1", ttl).await.unwrap()
    })
    .await;
}

/// Heartbeats make workers live until their TTL passes; a zero TTL removes one.
pub async fn global_config_heartbeats<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let kv = &backend.global_config;
    assert!(kv.live_workers().await.unwrap().is_empty());
    kv.heartbeat("w-long", Duration::from_secs(60))
        .await
        .unwrap();
    kv.heartbeat("w-short", Duration::from_millis(300))
        .await
        .unwrap();
    kv.heartbeat("w-gone", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        kv.live_workers().await.unwrap(),
        vec!["w-gone", "w-long", "w-short"]
    );
    kv.heartbeat("w-gone", Duration::ZERO).await.unwrap();
    assert_eq!(kv.live_workers().await.unwrap(), vec!["w-long", "w-short"]);
    // Expiry has no notification: poll with a deadline.
    eventually("the short heartbeat expired", || async {
        kv.live_workers().await.unwrap() == vec!["w-long"]
    })
    .await;
}

/// Enqueueing a uuid that exists changes nothing: the record keeps its arguments, and the task
/// is claimed once (producers retry with the same id after a timeout).
pub async fn enqueue_of_an_existing_uuid_changes_nothing<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let first = enqueue_one(&backend, "once", 0).await;
    let mut again = first.clone();
    again.args = Payload::encode(&("changed", 1)).unwrap();
    // Twice more: alone, and twice within one batch.
    backend
        .broker
        .enqueue(std::slice::from_ref(&again))
        .await
        .unwrap();
    backend
        .broker
        .enqueue(&[again.clone(), again.clone()])
        .await
        .unwrap();
    let stored = backend.storage.get(first.uuid).await.unwrap().unwrap();
    assert_eq!(
        stored.args, first.args,
        "the first enqueue's arguments are kept"
    );
    assert_eq!(stored.status, TaskStatus::New);
    let claimed = claim(&backend, 10).await;
    assert_eq!(claimed.len(), 1, "one queue entry: {claimed:?}");
    assert_eq!(claimed[0].uuid, first.uuid);
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.ready_by_priority.values().sum::<u64>(), 0);
}

/// One bad lease in a batch (an unknown task, a stale token) is reported on its own and harms
/// no other lease of the same call: `complete` finishes the good ones and rejects exactly the
/// bad ones, `renew` and `started` report exactly the bad ones, `requeue` returns the good one.
pub async fn bad_leases_in_a_batch_harm_no_other<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let tasks: Vec<_> = (0..3).map(|i| new_task(&format!("good-{i}"), 0)).collect();
    backend.broker.enqueue(&tasks).await.unwrap();
    let claimed = claim(&backend, 3).await;
    assert_eq!(claimed.len(), 3);
    let unknown = Lease {
        uuid: Uuid::new_v4(),
        token: 1,
    };
    let stale = Lease {
        uuid: claimed[2].uuid,
        token: claimed[2].token.wrapping_add(1000),
    };
    let mut mixed = vec![claimed[0].lease(), unknown, claimed[1].lease(), stale];
    let lost = backend.broker.renew(&mixed).await.unwrap();
    assert_eq!(lost.len(), 2, "renew reports the two bad leases: {lost:?}");
    assert!(lost.contains(&unknown) && lost.contains(&stale));
    let lost = backend.broker.started(&mixed).await.unwrap();
    assert!(
        !lost.contains(&claimed[0].lease()) && !lost.contains(&claimed[1].lease()),
        "started reports no good lease: {lost:?}"
    );
    let done: Vec<_> = mixed
        .drain(..)
        .map(|lease| Completion {
            lease,
            outcome: Outcome::Success(Payload::encode(&"ok").unwrap()),
            run: None,
        })
        .collect();
    let rejected = backend.broker.complete(&done).await.unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.contains(&unknown) && rejected.contains(&stale));
    assert_eq!(status(&backend, claimed[0].uuid).await, TaskStatus::Success);
    assert_eq!(status(&backend, claimed[1].uuid).await, TaskStatus::Success);
    assert_eq!(status(&backend, claimed[2].uuid).await, TaskStatus::Process);
    // The third, with its real lease beside an unknown one, goes back to the queue.
    backend
        .broker
        .requeue(&[unknown, claimed[2].lease()])
        .await
        .unwrap();
    let again = claim(&backend, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].uuid, claimed[2].uuid);
}
