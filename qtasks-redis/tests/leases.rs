//! Leases, the reaper and the dead-letter of the Redis broker, driven through the traits with
//! short leases: what the conformance suite cannot cover because in-process backends have no
//! leases.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use qtasks_core::backend::{Broker, Completion, Delivery, NewTask, Outcome, Storage};
use qtasks_core::{Config, Payload, TaskStatus};
use qtasks_redis::{server, RedisBackend, RedisOptions};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(10);

fn open(options: RedisOptions) -> Option<Arc<RedisBackend>> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let url = server::test_url()?;
    let app = format!(
        "leases-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    Some(RedisBackend::new(&url, &app, &Config::default(), options).unwrap())
}

/// Another process's backend for the same app as `backend`.
fn another(backend: &RedisBackend, options: RedisOptions) -> Arc<RedisBackend> {
    let url = server::test_url().expect("a server, since `backend` exists");
    let app = backend
        .prefix()
        .trim_start_matches('{')
        .trim_end_matches("}:")
        .to_string();
    RedisBackend::new(&url, &app, &Config::default(), options).unwrap()
}

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

async fn claim(backend: &RedisBackend, max: usize) -> Vec<Delivery> {
    tokio::time::timeout(DEADLINE, backend.claim(max))
        .await
        .expect("claimed within the deadline")
        .unwrap()
}

fn success(d: &Delivery) -> Completion {
    Completion {
        lease: d.lease(),
        outcome: Outcome::Success(Payload::default()),
        run: None,
    }
}

/// An expired lease returns the task to the queue: an idle claimer gets it again at the lease
/// deadline, with a new fencing token, and the first holder's acknowledgement is rejected. The
/// first claim never started its task, so the second is still its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_delivered_again() {
    let lease = Duration::from_millis(300);
    let Some(backend) = open(RedisOptions {
        lease,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let t = new_task("lost");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let first = claim(&backend, 1).await.remove(0);
    let lost_at = Instant::now();
    // Blocks until the lease deadline, then reaps and claims.
    let second = claim(&backend, 1).await.remove(0);
    let waited = lost_at.elapsed();
    assert_eq!(second.uuid, t.uuid);
    assert_eq!((first.attempt, second.attempt), (1, 1));
    assert_ne!(second.token, first.token);
    assert!(
        waited >= lease - Duration::from_millis(50) && waited < lease + Duration::from_secs(2),
        "redelivered after {waited:?} with a lease of {lease:?}"
    );
    assert_eq!(
        backend.complete(&[success(&first)]).await.unwrap(),
        vec![first.lease()]
    );
    assert!(backend
        .complete(&[success(&second)])
        .await
        .unwrap()
        .is_empty());
    let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Success);
}

/// Renewed leases do not expire: nobody else gets the task while its holder renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_lease_is_kept() {
    let lease = Duration::from_millis(200);
    let Some(backend) = open(RedisOptions {
        lease,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let t = new_task("kept");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let held = claim(&backend, 1).await.remove(0);
    let rival = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.claim(1).await })
    };
    // Renew for five lease lengths, every third of the lease, as the worker does.
    let mut tick = tokio::time::interval(lease / 3);
    let start = Instant::now();
    while start.elapsed() < lease * 5 {
        tick.tick().await;
        backend.renew(&[held.lease()]).await.unwrap();
        assert!(!rival.is_finished(), "a renewed task was delivered again");
    }
    assert!(backend
        .complete(&[success(&held)])
        .await
        .unwrap()
        .is_empty());
    rival.abort();
    let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
    assert_eq!(record.attempts, 1);
}

/// After `max_deliveries` expired leases of runs that started, the next expiry sends the task
/// to the dead-letter with reason `crashed_worker` (named `too_many_deliveries` before
/// deliveries counted only started runs), and waiters are told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_lost_leases_end_in_the_dead_letter() {
    let Some(backend) = open(RedisOptions {
        lease: Duration::from_millis(200),
        max_deliveries: 1,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let t = new_task("cursed");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let first = claim(&backend, 1).await.remove(0);
    assert!(backend.started(&[first.lease()]).await.unwrap().is_empty());
    let second = claim(&backend, 1).await.remove(0);
    assert!(backend.started(&[second.lease()]).await.unwrap().is_empty());
    assert_eq!((first.attempt, second.attempt), (1, 2));
    // A claimer wakes at the second deadline and reaps: this time into the dead-letter.
    let claimer = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.claim(1).await })
    };
    let done = Storage::wait(&*backend, t.uuid, DEADLINE)
        .await
        .unwrap()
        .expect("final before the deadline");
    claimer.abort();
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(
        done.extra.get("dead_letter").map(String::as_str),
        Some("crashed_worker")
    );
    assert!(done
        .traceback
        .as_deref()
        .unwrap_or("")
        .contains("too many deliveries"));
    let dead = backend.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].uuid, t.uuid);
    assert_eq!(dead[0].args, t.args, "raw arguments kept");
    assert_eq!(backend.stats().await.unwrap().dead_letter, 1);
}

/// The dead-letter keeps the newest `dead_letter_max` tasks and deletes older records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_is_capped() {
    let Some(backend) = open(RedisOptions {
        dead_letter_max: 2,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let tasks: Vec<_> = (0..3).map(|i| new_task(&format!("bad{i}"))).collect();
    backend.enqueue(&tasks).await.unwrap();
    let claimed = claim(&backend, 3).await;
    assert_eq!(claimed.len(), 3);
    for d in &claimed {
        let rejected = backend
            .complete(&[Completion {
                lease: d.lease(),
                outcome: Outcome::DeadLetter {
                    reason: qtasks_core::backend::DeadLetterReason::BadArguments,
                    traceback: "bad".into(),
                },
                run: None,
            }])
            .await
            .unwrap();
        assert!(rejected.is_empty());
    }
    let dead: Vec<Uuid> = backend
        .dead_letters(10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.uuid)
        .collect();
    assert_eq!(dead, vec![claimed[2].uuid, claimed[1].uuid], "newest first");
    assert!(Storage::get(&*backend, claimed[0].uuid)
        .await
        .unwrap()
        .is_none());
    assert_eq!(backend.stats().await.unwrap().dead_letter, 2);
}

/// Enqueueing a uuid that exists changes nothing (a producer retrying a lost reply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_is_idempotent_per_uuid() {
    let Some(backend) = open(RedisOptions::default()) else {
        return;
    };
    let t = new_task("once");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let d = claim(&backend, 1).await.remove(0);
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Process, "not reset to new");
    assert!(backend.complete(&[success(&d)]).await.unwrap().is_empty());
    let stats = backend.stats().await.unwrap();
    assert!(stats.ready_by_priority.is_empty(), "{stats:?}");
}

/// Leases of tasks that never started (prefetched by a worker that vanished) expire again and
/// again without a delivery or an attempt counted: the task is never dead-lettered for it, and
/// runs (as its first attempt) when a worker finally starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_leases_of_unstarted_tasks_are_not_deliveries() {
    let Some(backend) = open(RedisOptions {
        lease: Duration::from_millis(150),
        max_deliveries: 1,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let t = new_task("prefetched");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    for _ in 1..=4 {
        let d = claim(&backend, 1).await.remove(0);
        assert_eq!((d.uuid, d.attempt), (t.uuid, 1));
    }
    let last = claim(&backend, 1).await.remove(0);
    assert!(backend.started(&[last.lease()]).await.unwrap().is_empty());
    assert!(backend
        .complete(&[success(&last)])
        .await
        .unwrap()
        .is_empty());
    let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (TaskStatus::Success, 1));
    assert!(backend.dead_letters(10).await.unwrap().is_empty());
}

/// `started` reports the leases that are no longer current (expired, or never this caller's)
/// and marks the others started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_reports_leases_that_are_gone() {
    let lease = Duration::from_millis(200);
    let Some(backend) = open(RedisOptions {
        lease,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let t = new_task("s");
    backend.enqueue(std::slice::from_ref(&t)).await.unwrap();
    let first = claim(&backend, 1).await.remove(0);
    // The lease expires unrenewed and unstarted: a claimer waiting for it gets the task.
    let rival = claim(&backend, 1).await.remove(0);
    assert_eq!(rival.uuid, t.uuid);
    let lost = backend
        .started(&[first.lease(), rival.lease()])
        .await
        .unwrap();
    assert_eq!(lost, vec![first.lease()], "the expired lease is gone");
    assert!(backend
        .complete(&[success(&rival)])
        .await
        .unwrap()
        .is_empty());
    let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Success);
}

/// A task whose worker vanished while it ran is a suspect: it is claimed alone, by a caller
/// that holds no other task, before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspect_is_claimed_alone() {
    let lease = Duration::from_millis(200);
    let Some(backend) = open(RedisOptions {
        lease,
        ..RedisOptions::default()
    }) else {
        return;
    };
    let crashed = new_task("crashed");
    backend
        .enqueue(std::slice::from_ref(&crashed))
        .await
        .unwrap();
    let first = claim(&backend, 1).await.remove(0);
    assert!(backend.started(&[first.lease()]).await.unwrap().is_empty());
    let others: Vec<_> = (0..5).map(|i| new_task(&format!("o{i}"))).collect();
    backend.enqueue(&others).await.unwrap();
    // Another process (its own backend: it holds nothing) claims once the lease expired (an
    // expiry has no notification: wait for its deadline).
    let rescuer = another(
        &backend,
        RedisOptions {
            lease,
            ..RedisOptions::default()
        },
    );
    tokio::time::sleep(lease + Duration::from_millis(20)).await;
    let alone = claim(&rescuer, 10).await;
    let _ = first;
    assert_eq!(alone.len(), 1, "a suspect comes alone: {alone:?}");
    assert_eq!((alone[0].uuid, alone[0].attempt), (crashed.uuid, 2));
    let record = Storage::get(&*rescuer, crashed.uuid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, TaskStatus::Process);
    // While it runs, that process claims nothing else; once it is acknowledged, the rest.
    let next = {
        let rescuer = rescuer.clone();
        tokio::spawn(async move { rescuer.claim(10).await })
    };
    assert!(rescuer
        .started(&[alone[0].lease()])
        .await
        .unwrap()
        .is_empty());
    assert!(!next.is_finished());
    assert!(rescuer
        .complete(&[success(&alone[0])])
        .await
        .unwrap()
        .is_empty());
    let rest = tokio::time::timeout(DEADLINE, next)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rest.len(), 5, "{rest:?}");
}

/// The first `start` tasks of a `claim_starting` are marked started by the claim itself: a
/// lost lease of theirs counts as a delivery (their next claim is a second attempt), as after
/// a `started` call; the others were only prefetched (their next claim is still the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_starting_marks_the_first_tasks_started() {
    let Some(backend) = open(RedisOptions {
        lease: Duration::from_millis(150),
        ..RedisOptions::default()
    }) else {
        return;
    };
    let tasks = [new_task("first"), new_task("second")];
    backend.enqueue(&tasks).await.unwrap();
    let (claimed, started) = tokio::time::timeout(DEADLINE, backend.claim_starting(2, 1))
        .await
        .expect("claimed within the deadline")
        .unwrap();
    assert_eq!((claimed.len(), started), (2, 1));
    let (begun, prefetched) = (claimed[0].uuid, claimed[1].uuid);
    // Neither lease is renewed: both expire, and the next claims get both tasks again.
    let mut again = std::collections::HashMap::new();
    for _ in 0..2 {
        let d = claim(&backend, 1).await.remove(0);
        assert!(backend.complete(&[success(&d)]).await.unwrap().is_empty());
        again.insert(d.uuid, d.attempt);
    }
    assert_eq!(again.get(&begun), Some(&2), "its start was recorded");
    assert_eq!(again.get(&prefetched), Some(&1), "it never started");
    for t in &tasks {
        let record = Storage::get(&*backend, t.uuid).await.unwrap().unwrap();
        assert_eq!(record.status, TaskStatus::Success);
    }
}
