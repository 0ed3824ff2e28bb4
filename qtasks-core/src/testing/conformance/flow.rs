//! The conformance cases of flow control: unique keys (with `unique_for`, within one batch,
//! freed by cancel), debounce, concurrency limits (per name and per key), rate limits, and
//! putting a task back without spending an attempt. Backends that apply flow keys expand
//! [`conformance_flow_tests!`](crate::conformance_flow_tests) besides the main suite.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use super::{assert_nothing_claimable, claim, claimed_uuids, complete, config, new_task, status};
use crate::app::config::Config;
use crate::backend::inspect::PauseTarget;
use crate::backend::{Backend, Existing, NewTask, Outcome};
use crate::control::{FlowKeys, QueueSelection, Rate, TaskLimits};
use crate::task::payload::Payload;
use crate::task::status::TaskStatus;

/// Expands to one `#[tokio::test]` per flow-control case (and the progress case, which the
/// same backends pass), like
/// [`conformance_tests!`](crate::conformance_tests).
#[macro_export]
macro_rules! conformance_flow_tests {
    ($open:path) => {
        $crate::conformance_flow_tests!($open, run_if = true);
    };
    ($open:path, run_if = $available:expr) => {
        $crate::conformance_tests!(@cases $open, $available;
            unique_key_returns_its_holder, unique_keys_in_one_batch, unique_for_holds_after_the_end,
            cancel_frees_a_unique_key, debounce_takes_the_last_arguments,
            throttle_drops_calls_within_its_window,
            concurrency_limit_holds_slots, concurrency_limit_per_key, rate_limit_spaces_claims,
            rate_limit_per_key, progress_is_kept_while_the_claim_is_current,
            later_does_not_spend_an_attempt, queues_by_weight_and_in_strict_order,
            claims_take_only_the_queues_served, pause_and_resume_a_queue);
    };
}

/// Flow keys with nothing set, for `FlowKeys { unique: .., ..no_keys() }`.
fn no_keys() -> FlowKeys {
    FlowKeys {
        unique: None,
        hold_after: Duration::ZERO,
        debounce: None,
        throttle: None,
        concurrency_key: None,
        rate_key: None,
        queue: None,
    }
}

fn flow(unique: Option<&str>, hold_after: Duration) -> Option<Box<FlowKeys>> {
    Some(Box::new(FlowKeys {
        unique: unique.map(str::to_string),
        hold_after,
        ..no_keys()
    }))
}

fn unique_task(name: &str, key: &str, hold_after: Duration) -> NewTask {
    let mut t = new_task(name, 0);
    t.flow = flow(Some(key), hold_after);
    t
}

async fn enqueue(backend: &Backend, tasks: &[NewTask]) -> Vec<Existing> {
    backend
        .broker
        .enqueue(tasks)
        .await
        .expect("enqueue succeeded")
}

async fn exists(backend: &Backend, uuid: Uuid) -> bool {
    backend
        .storage
        .get(uuid)
        .await
        .expect("get succeeded")
        .is_some()
}

fn limits(name: &str, concurrency: Option<u32>, per_key: bool, rate: Option<Rate>) -> TaskLimits {
    TaskLimits {
        task_name: name.to_string(),
        concurrency,
        concurrency_per_key: per_key,
        rate,
        rate_per_key: false,
    }
}

/// While a task holds a unique key, another enqueue with it writes nothing and returns the
/// holder; once the holder is final, the key is free.
pub async fn unique_key_returns_its_holder<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let first = unique_task("conf.unique", "conf.unique\u{1f}order-1", Duration::ZERO);
    assert!(enqueue(&backend, std::slice::from_ref(&first))
        .await
        .is_empty());
    let second = unique_task("conf.unique", "conf.unique\u{1f}order-1", Duration::ZERO);
    let other = unique_task("conf.unique", "conf.unique\u{1f}order-2", Duration::ZERO);
    let found = enqueue(&backend, &[second.clone(), other.clone()]).await;
    assert_eq!(
        found,
        [Existing {
            index: 0,
            uuid: first.uuid
        }],
        "the second enqueue of order-1 returns the first task; order-2 is written"
    );
    assert!(
        !exists(&backend, second.uuid).await,
        "nothing written for the duplicate"
    );
    assert!(exists(&backend, other.uuid).await);
    // Still held while it runs.
    let mut got = claim(&backend, 10).await;
    got.sort_by_key(|d| d.uuid != first.uuid);
    assert_eq!(got.len(), 2);
    let third = unique_task("conf.unique", "conf.unique\u{1f}order-1", Duration::ZERO);
    assert_eq!(
        enqueue(&backend, std::slice::from_ref(&third)).await.len(),
        1
    );
    // Free once it finished.
    complete(
        &backend,
        &got[0],
        Outcome::Success(Payload::encode(&1).unwrap()),
    )
    .await;
    let fourth = unique_task("conf.unique", "conf.unique\u{1f}order-1", Duration::ZERO);
    assert!(enqueue(&backend, std::slice::from_ref(&fourth))
        .await
        .is_empty());
    assert_eq!(status(&backend, fourth.uuid).await, TaskStatus::New);
}

/// Tasks with one key in one batch: the first is written, the others return it.
pub async fn unique_keys_in_one_batch<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let batch: Vec<NewTask> = (0..5)
        .map(|_| unique_task("conf.batch", "conf.batch\u{1f}k", Duration::ZERO))
        .collect();
    let found = enqueue(&backend, &batch).await;
    let holders: Vec<(usize, Uuid)> = found.iter().map(|e| (e.index, e.uuid)).collect();
    assert_eq!(
        holders,
        (1..5).map(|i| (i, batch[0].uuid)).collect::<Vec<_>>()
    );
    assert_eq!(claim(&backend, 10).await.len(), 1);
}

/// With `unique_for`, the key stays taken after the task finished.
pub async fn unique_for_holds_after_the_end<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let hold = Duration::from_secs(60);
    let first = unique_task("conf.for", "conf.for\u{1f}k", hold);
    enqueue(&backend, std::slice::from_ref(&first)).await;
    let got = claim(&backend, 1).await;
    complete(
        &backend,
        &got[0],
        Outcome::Failed {
            traceback: "x".into(),
        },
    )
    .await;
    let again = unique_task("conf.for", "conf.for\u{1f}k", hold);
    let found = enqueue(&backend, std::slice::from_ref(&again)).await;
    assert_eq!(found.first().map(|e| e.uuid), Some(first.uuid));
    // A key held for a short time is free once the time passed.
    let short = unique_task("conf.for", "conf.for\u{1f}short", Duration::from_millis(50));
    enqueue(&backend, std::slice::from_ref(&short)).await;
    let got = claim(&backend, 1).await;
    complete(
        &backend,
        &got[0],
        Outcome::Success(Payload::encode(&1).unwrap()),
    )
    .await;
    let start = Instant::now();
    loop {
        let next = unique_task("conf.for", "conf.for\u{1f}short", Duration::from_millis(50));
        if enqueue(&backend, std::slice::from_ref(&next))
            .await
            .is_empty()
        {
            break;
        }
        assert!(
            start.elapsed() < super::DEADLINE,
            "the short hold never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancelling a queued task frees its key.
pub async fn cancel_frees_a_unique_key<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let first = unique_task("conf.cancel", "conf.cancel\u{1f}k", Duration::ZERO);
    enqueue(&backend, std::slice::from_ref(&first)).await;
    backend
        .broker
        .cancel(first.uuid, "test")
        .await
        .expect("cancel succeeded");
    let again = unique_task("conf.cancel", "conf.cancel\u{1f}k", Duration::ZERO);
    assert!(enqueue(&backend, std::slice::from_ref(&again))
        .await
        .is_empty());
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), [again.uuid]);
}

/// Debounce: each enqueue gives the pending task its arguments and moves its start; it runs
/// once, with the last arguments.
pub async fn debounce_takes_the_last_arguments<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let debounce = Duration::from_millis(300);
    let call = |n: i64| {
        let mut t = new_task("conf.debounce", 0);
        t.args = Payload::encode(&n).unwrap();
        t.flow = Some(Box::new(FlowKeys {
            unique: Some("conf.debounce\u{1f}".into()),
            debounce: Some(debounce),
            ..no_keys()
        }));
        t.not_before = Some(SystemTime::now() + debounce);
        t
    };
    let first = call(1);
    enqueue(&backend, std::slice::from_ref(&first)).await;
    let started = Instant::now();
    for n in 2..=4 {
        let found = enqueue(&backend, &[call(n)]).await;
        assert_eq!(found.first().map(|e| e.uuid), Some(first.uuid));
    }
    let got = claim(&backend, 10).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "ran {:?} after the last call, before its debounce",
        started.elapsed()
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uuid, first.uuid);
    assert_eq!(
        got[0].args.decode::<i64>().unwrap(),
        4,
        "the last arguments"
    );
    assert_nothing_claimable(&backend).await;
}

/// `concurrency = 2`: two claims of the name at once, a third when one ends.
pub async fn concurrency_limit_holds_slots<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    backend
        .broker
        .set_limits(&[limits("conf.conc", Some(2), false, None)])
        .expect("limits set");
    let tasks: Vec<NewTask> = (0..5).map(|_| new_task("conf.conc", 0)).collect();
    let free = new_task("conf.free", 0);
    enqueue(&backend, &tasks).await;
    enqueue(&backend, std::slice::from_ref(&free)).await;
    let got = claim(&backend, 10).await;
    let limited: Vec<_> = got.iter().filter(|d| d.task_name == "conf.conc").collect();
    assert_eq!(limited.len(), 2, "two at once");
    assert!(
        got.iter().any(|d| d.uuid == free.uuid),
        "a task without a limit behind them is claimed too"
    );
    assert_nothing_claimable(&backend).await;
    complete(
        &backend,
        limited[0],
        Outcome::Success(Payload::encode(&1).unwrap()),
    )
    .await;
    let next = claim(&backend, 10).await;
    assert_eq!(next.len(), 1, "one slot came free");
    // A claim that ends another way (a retry) frees its slot too.
    complete(
        &backend,
        &next[0],
        Outcome::Retry {
            traceback: "x".into(),
            delay: Duration::ZERO,
        },
    )
    .await;
    assert_eq!(claim(&backend, 10).await.len(), 1);
}

/// `concurrency = 1` per key: one at a time per key, keys side by side.
pub async fn concurrency_limit_per_key<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    backend
        .broker
        .set_limits(&[limits("conf.key", Some(1), true, None)])
        .expect("limits set");
    let keyed = |key: &str| {
        let mut t = new_task("conf.key", 0);
        t.flow = Some(Box::new(FlowKeys {
            concurrency_key: Some(key.into()),
            ..no_keys()
        }));
        t
    };
    let tasks = [keyed("a"), keyed("a"), keyed("b"), keyed("a")];
    enqueue(&backend, &tasks).await;
    let got = claim(&backend, 10).await;
    let mut uuids = claimed_uuids(&got);
    uuids.sort();
    let mut expected = vec![tasks[0].uuid, tasks[2].uuid];
    expected.sort();
    assert_eq!(uuids, expected, "the first of key a and the one of key b");
    let a = got.iter().find(|d| d.uuid == tasks[0].uuid).unwrap();
    complete(&backend, a, Outcome::Success(Payload::encode(&1).unwrap())).await;
    let next = claim(&backend, 10).await;
    assert_eq!(
        claimed_uuids(&next),
        [tasks[1].uuid],
        "key a's next task, in order"
    );
}

/// `rate_limit = "10/s"`: a burst of two, then one claim per 100 ms; the claim in between
/// waits for the permit (no poll: the claim returns when it comes).
pub async fn rate_limit_spaces_claims<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let rate = Rate {
        permits: 10,
        per: Duration::from_secs(1),
    };
    backend
        .broker
        .set_limits(&[limits("conf.rate", None, false, Some(rate))])
        .expect("limits set");
    let tasks: Vec<NewTask> = (0..6).map(|_| new_task("conf.rate", 0)).collect();
    enqueue(&backend, &tasks).await;
    let started = Instant::now();
    let mut claimed = claim(&backend, 10).await.len();
    assert!(claimed <= 2, "a burst of at most two, got {claimed}");
    while claimed < 6 {
        claimed += claim(&backend, 10).await.len();
    }
    let took = started.elapsed();
    // Four permits after the burst: 400 ms at 10/s.
    assert!(
        took >= Duration::from_millis(350),
        "6 claims at 10/s took {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "6 claims at 10/s took {took:?}"
    );
}

/// `Outcome::Later` (a task rate limited by what it calls) queues it again without counting
/// the attempt.
pub async fn later_does_not_spend_an_attempt<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = new_task("conf.later", 0);
    enqueue(&backend, std::slice::from_ref(&t)).await;
    let got = claim(&backend, 1).await;
    assert_eq!(got[0].attempt, 1);
    let rejected = complete(
        &backend,
        &got[0],
        Outcome::Later {
            delay: Duration::from_millis(50),
        },
    )
    .await;
    assert!(rejected.is_empty());
    let record = backend.storage.get(t.uuid).await.unwrap().expect("record");
    assert_eq!(record.status, TaskStatus::New);
    assert_eq!(record.attempts, 0, "the attempt was not spent");
    let again = claim(&backend, 1).await;
    assert_eq!(again[0].uuid, t.uuid);
    assert_eq!(again[0].attempt, 1, "the same attempt again");
}

/// A task of named queue `queue`.
fn queued(name: &str, queue: &'static str) -> NewTask {
    let mut t = new_task(name, 0);
    t.flow = Some(Box::new(FlowKeys {
        queue: Some(queue),
        ..no_keys()
    }));
    t
}

fn select(spec: &str) -> QueueSelection {
    QueueSelection::parse(spec).expect("a valid selection")
}

/// `mail=3,default=1`: with both queues full, mail comes first three claims in four; strict
/// order takes the first queue until it is empty. Stats count per queue.
pub async fn queues_by_weight_and_in_strict_order<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mail: Vec<NewTask> = (0..8).map(|_| queued("conf.mail", "mail")).collect();
    let plain: Vec<NewTask> = (0..8).map(|_| new_task("conf.plain", 0)).collect();
    enqueue(&backend, &mail).await;
    enqueue(&backend, &plain).await;
    let stats = backend.broker.stats().await.expect("stats");
    assert_eq!(stats.ready_by_queue.get("mail"), Some(&8));
    assert_eq!(stats.ready_by_queue.get("default"), Some(&8));
    assert_eq!(stats.ready_by_priority.get(&0), Some(&16));
    backend
        .broker
        .set_queues(&select("mail=3,default=1"))
        .expect("queues set");
    let mut names = Vec::new();
    for _ in 0..8 {
        let got = claim(&backend, 1).await;
        names.push(got[0].task_name.to_string());
    }
    let from_mail = names.iter().filter(|n| *n == "conf.mail").count();
    assert_eq!(from_mail, 6, "three in four from mail: {names:?}");
    backend
        .broker
        .set_queues(&select("mail,default"))
        .expect("queues set");
    let next = claim(&backend, 4).await;
    assert_eq!(
        next.iter().filter(|d| d.task_name == "conf.mail").count(),
        2,
        "strict order: the two left in mail first, then default"
    );
    assert_eq!(next.len(), 4);
}

/// A worker serving `mail` alone never claims a task of another queue.
pub async fn claims_take_only_the_queues_served<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    backend
        .broker
        .set_queues(&select("mail"))
        .expect("queues set");
    let plain = new_task("conf.plain", 0);
    let mail = queued("conf.mail", "mail");
    enqueue(&backend, std::slice::from_ref(&plain)).await;
    enqueue(&backend, std::slice::from_ref(&mail)).await;
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), [mail.uuid]);
    // A retry comes back to its queue.
    complete(
        &backend,
        &got[0],
        Outcome::Retry {
            traceback: "x".into(),
            delay: Duration::ZERO,
        },
    )
    .await;
    let again = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&again), [mail.uuid]);
    assert_nothing_claimable(&backend).await;
    backend
        .broker
        .set_queues(&select("default"))
        .expect("queues set");
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), [plain.uuid]);
}

/// Pausing a queue stops its claims (enqueues go on); resuming lets them go on.
pub async fn pause_and_resume_a_queue<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    backend
        .broker
        .set_queues(&select("mail=1,default=1"))
        .expect("queues set");
    let target = PauseTarget::Queue("mail".into());
    backend
        .broker
        .set_paused(&target, true)
        .await
        .expect("paused");
    assert!(backend
        .broker
        .pauses()
        .await
        .unwrap()
        .queues
        .contains("mail"));
    let mail = queued("conf.mail", "mail");
    let plain = new_task("conf.plain", 0);
    enqueue(&backend, &[mail.clone(), plain.clone()]).await;
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), [plain.uuid]);
    assert_nothing_claimable(&backend).await;
    backend
        .broker
        .set_paused(&target, false)
        .await
        .expect("resumed");
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), [mail.uuid]);
}

/// Throttle: within the window from the holder's enqueue, an enqueue with the key returns the
/// holder, even when it finished; after the window, a new task is written.
pub async fn throttle_drops_calls_within_its_window<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let call = |window: Duration| {
        let mut t = new_task("conf.throttle", 0);
        t.flow = Some(Box::new(FlowKeys {
            unique: Some(format!("conf.throttle\u{1f}{}", window.as_millis())),
            // As `FlowKeys::of` makes it: held at least the window after the end.
            hold_after: window,
            throttle: Some(window),
            ..no_keys()
        }));
        t
    };
    let long = Duration::from_secs(60);
    let first = call(long);
    enqueue(&backend, std::slice::from_ref(&first)).await;
    let got = claim(&backend, 1).await;
    complete(
        &backend,
        &got[0],
        Outcome::Success(Payload::encode(&1).unwrap()),
    )
    .await;
    let found = enqueue(&backend, &[call(long)]).await;
    assert_eq!(
        found.first().map(|e| e.uuid),
        Some(first.uuid),
        "dropped: within the window, even after the first finished"
    );
    // Long enough that the second call below falls in the window on a loaded machine.
    let short = Duration::from_millis(500);
    let started = Instant::now();
    let held = call(short);
    enqueue(&backend, std::slice::from_ref(&held)).await;
    assert_eq!(enqueue(&backend, &[call(short)]).await.len(), 1);
    loop {
        let next = call(short);
        if enqueue(&backend, std::slice::from_ref(&next))
            .await
            .is_empty()
        {
            break;
        }
        assert!(
            started.elapsed() < super::DEADLINE,
            "the window never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(450));
}

/// `rate_limit = "6/m"` per key (one permit every 10 s, a burst of two): each key gets its
/// burst at once, and no more.
pub async fn rate_limit_per_key<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut rule = limits(
        "conf.rkey",
        None,
        false,
        Some(Rate {
            permits: 6,
            per: Duration::from_secs(60),
        }),
    );
    rule.rate_per_key = true;
    backend.broker.set_limits(&[rule]).expect("limits set");
    let keyed = |key: &str| {
        let mut t = new_task("conf.rkey", 0);
        t.flow = Some(Box::new(FlowKeys {
            rate_key: Some(key.into()),
            ..no_keys()
        }));
        t
    };
    let tasks: Vec<NewTask> = ["a", "a", "a", "b", "b", "b"]
        .iter()
        .map(|k| keyed(k))
        .collect();
    enqueue(&backend, &tasks).await;
    let got = claim(&backend, 10).await;
    let mut uuids = claimed_uuids(&got);
    uuids.sort();
    let mut expected = vec![tasks[0].uuid, tasks[1].uuid, tasks[3].uuid, tasks[4].uuid];
    expected.sort();
    assert_eq!(
        uuids, expected,
        "two permits per key, the first two of each"
    );
    assert_nothing_claimable(&backend).await;
}

/// For a backend without flow control: limits, named queues and flow keys are refused with an
/// error naming them, never ignored, and a refused enqueue writes nothing. (Not in
/// `conformance_flow_tests!`: a backend that has flow control runs those instead.)
pub async fn flow_control_is_refused_when_unsupported<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    backend.broker.set_limits(&[]).expect("no limits is fine");
    backend
        .broker
        .set_queues(&select("default"))
        .expect("the default queue alone is fine");
    let err = backend
        .broker
        .set_limits(&[limits("conf.refused", Some(2), false, None)])
        .expect_err("a limit is refused");
    assert!(err.to_string().contains("conf.refused"), "{err}");
    let err = backend
        .broker
        .set_queues(&select("mail=2,default=1"))
        .expect_err("a named queue is refused");
    assert!(err.to_string().contains("mail"), "{err}");
    let task = unique_task("conf.refused", "conf.refused\u{1f}k", Duration::ZERO);
    let err = backend
        .broker
        .enqueue(std::slice::from_ref(&task))
        .await
        .expect_err("a unique key is refused");
    assert!(err.to_string().contains("conf.refused"), "{err}");
    assert!(!exists(&backend, task.uuid).await, "nothing written");
}

/// A running task's progress is stored while its claim is current, read back with its record,
/// and kept after it ended; a write under an ended claim changes nothing.
pub async fn progress_is_kept_while_the_claim_is_current<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = new_task("conf.progress", 0);
    enqueue(&backend, std::slice::from_ref(&t)).await;
    let record = backend.storage.get(t.uuid).await.unwrap().expect("record");
    assert_eq!(record.progress, None, "no progress before it ran");
    let got = claim(&backend, 1).await;
    let half = Payload::encode(&50).unwrap();
    let stored = backend
        .broker
        .progress(got[0].lease(), &half)
        .await
        .expect("progress stored");
    assert!(stored);
    let record = backend.storage.get(t.uuid).await.unwrap().expect("record");
    assert_eq!(record.progress, Some(half.clone()));
    assert_eq!(record.status, TaskStatus::Process);
    complete(
        &backend,
        &got[0],
        Outcome::Success(Payload::encode(&1).unwrap()),
    )
    .await;
    let late = Payload::encode(&99).unwrap();
    let stored = backend
        .broker
        .progress(got[0].lease(), &late)
        .await
        .expect("progress call answered");
    assert!(!stored, "the claim ended");
    let record = backend.storage.get(t.uuid).await.unwrap().expect("record");
    assert_eq!(
        record.progress,
        Some(half),
        "the last progress of the run stays"
    );
}
