//! The conformance cases of inspection and administration: listing by status, name, time and
//! text with cursor pagination; retrying and deleting failed tasks; purging; pauses; counts
//! and finished tasks per minute.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::{
    assert_nothing_claimable, claim, claimed_uuids, complete, config, enqueue_one, new_task, status,
};
use crate::app::config::Config;
use crate::backend::inspect::{Cursor, PauseTarget, Purge, TaskQuery};
use crate::backend::{AttemptRun, Backend, Completion, DeadLetterReason, Outcome};
use crate::task::payload::Payload;
use crate::task::record::Attempt;
use crate::task::status::TaskStatus;

use super::DEADLINE;

/// Every page of `query`, following the cursors; the uuids in order.
async fn all_pages(backend: &Backend, mut query: TaskQuery) -> Vec<Uuid> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let page = backend.storage.list(&query).await.expect("list succeeded");
        assert!(
            page.tasks.len() <= query.page_size(),
            "a page holds at most its limit"
        );
        let mut previous: Option<Cursor> = out.last().map(|_| query.cursor).unwrap_or(None);
        for t in &page.tasks {
            let here = Cursor::after(t);
            if let Some(p) = previous {
                assert!(here < p, "newest first: {here} after {p}");
            }
            previous = Some(here);
            out.push(t.uuid);
        }
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => return out,
        }
    }
    panic!("the listing did not end within 100 pages");
}

fn by_status(status: TaskStatus, limit: usize) -> TaskQuery {
    TaskQuery {
        status: Some(status),
        limit,
        ..TaskQuery::default()
    }
}

/// Listing by status pages through every task once, newest first, and follows status changes.
pub async fn list_by_status_with_cursor<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut queued = Vec::new();
    for _ in 0..7 {
        queued.push(enqueue_one(&backend, "listed", 0).await.uuid);
    }
    let listed = all_pages(&backend, by_status(TaskStatus::New, 3)).await;
    assert_eq!(listed.len(), 7, "every task once: {listed:?}");
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 7);
    assert_eq!(
        listed.iter().collect::<HashSet<_>>(),
        queued.iter().collect::<HashSet<_>>()
    );
    let first = backend
        .storage
        .list(&by_status(TaskStatus::New, 3))
        .await
        .unwrap();
    assert_eq!(first.tasks.len(), 3);
    assert!(first.next.is_some(), "more pages follow");

    // A claimed and finished task moves between the lists.
    let d = claim(&backend, 1).await.remove(0);
    let running = all_pages(&backend, by_status(TaskStatus::Process, 10)).await;
    assert_eq!(running, vec![d.uuid]);
    assert!(!all_pages(&backend, by_status(TaskStatus::New, 10))
        .await
        .contains(&d.uuid));
    complete(&backend, &d, Outcome::Success(Payload::encode(&1).unwrap())).await;
    assert!(all_pages(&backend, by_status(TaskStatus::Process, 10))
        .await
        .is_empty());
    let done = backend
        .storage
        .list(&by_status(TaskStatus::Success, 10))
        .await
        .unwrap();
    assert_eq!(done.tasks.len(), 1);
    assert_eq!(done.tasks[0].uuid, d.uuid);
    assert_eq!(done.tasks[0].status, TaskStatus::Success);
    assert!(done.next.is_none());
    // Without a status, every task.
    let every = all_pages(
        &backend,
        TaskQuery {
            limit: 2,
            ..TaskQuery::default()
        },
    )
    .await;
    assert_eq!(every.len(), 7);
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.by_status.get("new"), Some(&6));
    assert_eq!(stats.by_status.get("success"), Some(&1));
}

/// Listing filters by task name, text in the arguments and time range.
pub async fn list_filters_by_name_text_and_time<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let a1 = enqueue_one(&backend, "alpha", 0).await;
    let _a2 = enqueue_one(&backend, "alpha", 1).await;
    let mut special = new_task("beta", 0);
    special.args = Payload::encode(&("order-4711", 3)).unwrap();
    backend
        .broker
        .enqueue(std::slice::from_ref(&special))
        .await
        .unwrap();
    let name = |n: &str| TaskQuery {
        task_name: Some(n.into()),
        ..TaskQuery::default()
    };
    assert_eq!(all_pages(&backend, name("alpha")).await.len(), 2);
    assert_eq!(all_pages(&backend, name("beta")).await, vec![special.uuid]);
    assert!(all_pages(&backend, name("gamma")).await.is_empty());
    let text = TaskQuery {
        text: Some("order-4711".into()),
        ..TaskQuery::default()
    };
    assert_eq!(all_pages(&backend, text).await, vec![special.uuid]);
    let since_later = TaskQuery {
        since: Some(SystemTime::now() + Duration::from_secs(60)),
        ..TaskQuery::default()
    };
    assert!(all_pages(&backend, since_later).await.is_empty());
    let until_earlier = TaskQuery {
        until: Some(before),
        ..TaskQuery::default()
    };
    assert!(all_pages(&backend, until_earlier).await.is_empty());
    let window = TaskQuery {
        status: Some(TaskStatus::New),
        task_name: Some("alpha".into()),
        since: Some(before),
        until: Some(SystemTime::now() + Duration::from_secs(60)),
        ..TaskQuery::default()
    };
    let got = all_pages(&backend, window).await;
    assert_eq!(got.len(), 2);
    assert!(got.contains(&a1.uuid));
}

/// A failed task (plain error or dead-lettered) is queued again by `retry_dead`; other
/// statuses and unknown uuids are skipped.
pub async fn retry_dead_queues_failed_tasks<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let failed = enqueue_one(&backend, "fails", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d,
        Outcome::Failed {
            traceback: "boom".into(),
        },
    )
    .await;
    let dead = enqueue_one(&backend, "dead", 0).await;
    let d2 = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d2,
        Outcome::DeadLetter {
            reason: DeadLetterReason::BadArguments,
            traceback: "bad".into(),
        },
    )
    .await;
    let queued = enqueue_one(&backend, "queued", 5).await;
    assert_eq!(backend.broker.stats().await.unwrap().dead_letter, 1);
    let unknown = Uuid::new_v4();
    let mut retried = backend
        .broker
        .retry_dead(&[failed.uuid, dead.uuid, queued.uuid, unknown])
        .await
        .expect("retry_dead succeeded");
    retried.sort();
    let mut want = vec![failed.uuid, dead.uuid];
    want.sort();
    assert_eq!(retried, want, "only the failed tasks");
    assert_eq!(status(&backend, failed.uuid).await, TaskStatus::New);
    assert_eq!(status(&backend, dead.uuid).await, TaskStatus::New);
    assert_eq!(backend.broker.stats().await.unwrap().dead_letter, 0);
    assert!(all_pages(&backend, by_status(TaskStatus::Error, 10))
        .await
        .is_empty());
    let mut again: Vec<Uuid> = Vec::new();
    while again.len() < 3 {
        again.extend(claim(&backend, 3).await.into_iter().map(|d| d.uuid));
    }
    assert!(again.contains(&failed.uuid) && again.contains(&dead.uuid));
}

/// `delete` removes finished records and skips queued ones.
pub async fn delete_removes_finished_tasks_only<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let failed = enqueue_one(&backend, "fails", 0).await;
    let d = claim(&backend, 1).await.remove(0);
    complete(
        &backend,
        &d,
        Outcome::DeadLetter {
            reason: DeadLetterReason::UnknownTask,
            traceback: "unknown".into(),
        },
    )
    .await;
    let queued = enqueue_one(&backend, "queued", 0).await;
    let deleted = backend
        .broker
        .delete(&[failed.uuid, queued.uuid, Uuid::new_v4()])
        .await
        .expect("delete succeeded");
    assert_eq!(deleted, vec![failed.uuid]);
    assert!(backend.storage.get(failed.uuid).await.unwrap().is_none());
    assert_eq!(status(&backend, queued.uuid).await, TaskStatus::New);
    let stats = backend.broker.stats().await.unwrap();
    assert_eq!(stats.dead_letter, 0);
    assert_eq!(stats.by_status.get("error"), None);
    assert!(all_pages(&backend, by_status(TaskStatus::Error, 10))
        .await
        .is_empty());
}

/// `purge` deletes the finished records of the statuses asked, older than the time asked.
pub async fn purge_removes_old_finished_tasks<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let mut finished = Vec::new();
    for i in 0..3 {
        let t = enqueue_one(&backend, "purged", 0).await;
        let d = claim(&backend, 1).await.remove(0);
        let outcome = if i < 2 {
            Outcome::Success(Payload::encode(&i).unwrap())
        } else {
            Outcome::Failed {
                traceback: "x".into(),
            }
        };
        complete(&backend, &d, outcome).await;
        finished.push(t.uuid);
    }
    let queued = enqueue_one(&backend, "queued", 0).await;
    let none = Purge {
        statuses: vec![TaskStatus::Success],
        before: SystemTime::now() - Duration::from_secs(3600),
    };
    assert_eq!(
        backend.broker.purge(&none).await.unwrap(),
        0,
        "nothing that old"
    );
    let purge = Purge {
        statuses: vec![TaskStatus::Success, TaskStatus::New],
        before: SystemTime::now() + Duration::from_secs(5),
    };
    assert_eq!(backend.broker.purge(&purge).await.unwrap(), 2);
    assert!(backend.storage.get(finished[0]).await.unwrap().is_none());
    assert!(backend.storage.get(finished[1]).await.unwrap().is_none());
    assert_eq!(status(&backend, finished[2]).await, TaskStatus::Error);
    assert_eq!(
        status(&backend, queued.uuid).await,
        TaskStatus::New,
        "never purged"
    );
    assert!(all_pages(&backend, by_status(TaskStatus::Success, 10))
        .await
        .is_empty());
}

/// Pausing a task name or the app stops claims of it (enqueues go on); resuming wakes a
/// claim that waits.
pub async fn pause_and_resume_claims<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let paused = PauseTarget::Task("held".into());
    backend.broker.set_paused(&paused, true).await.unwrap();
    let pauses = backend.broker.pauses().await.unwrap();
    assert!(!pauses.app);
    assert!(pauses.tasks.contains("held"));
    let held = enqueue_one(&backend, "held", 0).await;
    let free = enqueue_one(&backend, "free", 1).await;
    let got = claim(&backend, 10).await;
    assert_eq!(claimed_uuids(&got), vec![free.uuid]);
    assert_nothing_claimable(&backend).await;
    assert_eq!(status(&backend, held.uuid).await, TaskStatus::New);
    backend.broker.set_paused(&paused, false).await.unwrap();
    assert_eq!(claim(&backend, 10).await[0].uuid, held.uuid);

    backend
        .broker
        .set_paused(&PauseTarget::App, true)
        .await
        .unwrap();
    assert!(backend.broker.pauses().await.unwrap().app);
    let later = enqueue_one(&backend, "free", 0).await;
    assert_nothing_claimable(&backend).await;
    let waiting = {
        let backend = backend.clone();
        tokio::spawn(async move { tokio::time::timeout(DEADLINE, backend.broker.claim(1)).await })
    };
    backend
        .broker
        .set_paused(&PauseTarget::App, false)
        .await
        .unwrap();
    let got = waiting
        .await
        .expect("the claim task ran")
        .expect("resume woke the waiting claim")
        .expect("claim succeeded");
    assert_eq!(got[0].uuid, later.uuid);
    assert!(backend.broker.pauses().await.unwrap().is_empty());
}

/// `throughput` counts the tasks that ended with `success` and `error` per minute.
pub async fn throughput_counts_finished_tasks<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let start = SystemTime::now();
    for i in 0..3 {
        enqueue_one(&backend, "counted", 0).await;
        let d = claim(&backend, 1).await.remove(0);
        let outcome = if i < 2 {
            Outcome::Success(Payload::encode(&i).unwrap())
        } else {
            Outcome::Failed {
                traceback: "x".into(),
            }
        };
        complete(&backend, &d, outcome).await;
    }
    let minutes = backend
        .storage
        .throughput(5)
        .await
        .expect("throughput succeeded");
    assert_eq!(minutes.len(), 5);
    assert!(minutes
        .windows(2)
        .all(|w| w[0].minute_ms + 60_000 == w[1].minute_ms));
    // The tasks finished within this minute or the one before (a minute may have turned).
    let recent: Vec<_> = minutes
        .iter()
        .filter(|m| m.minute_ms + 60_000 > crate::backend::inspect::unix_ms(start))
        .collect();
    assert_eq!(
        recent.iter().map(|m| m.success).sum::<u64>(),
        2,
        "{minutes:?}"
    );
    assert_eq!(
        recent.iter().map(|m| m.error).sum::<u64>(),
        1,
        "{minutes:?}"
    );
}

/// A completion's run is kept in the record's history (attempt, worker, times, how it ended)
/// and counted in `latency`: an execution time per attempt, a queue time for the first.
pub async fn runs_are_kept_in_the_history_and_the_latency<F, Fut>(open: F)
where
    F: Fn(Config) -> Fut,
    Fut: Future<Output = Backend>,
{
    let backend = open(config()).await;
    let t = enqueue_one(&backend, "timed", 0).await;
    let ms = |n| SystemTime::UNIX_EPOCH + Duration::from_millis(n);
    let now = crate::backend::inspect::unix_ms(SystemTime::now());
    let runs = [
        ("w-1", now - 40, now - 30, Some(Duration::from_millis(5))),
        ("w-2:x", now - 20, now - 18, None),
    ];
    for (k, (worker, start, end, queued)) in runs.into_iter().enumerate() {
        let d = claim(&backend, 1).await.remove(0);
        assert_eq!(d.uuid, t.uuid);
        let outcome = if k == 0 {
            Outcome::Retry {
                traceback: "flaky".into(),
                delay: Duration::ZERO,
            }
        } else {
            Outcome::Success(Payload::encode(&1).unwrap())
        };
        let rejected = backend
            .broker
            .complete(&[Completion {
                lease: d.lease(),
                outcome,
                run: Some(AttemptRun {
                    worker: worker.into(),
                    started_at: ms(start),
                    finished_at: ms(end),
                    queued,
                }),
            }])
            .await
            .expect("complete succeeded");
        assert!(rejected.is_empty());
    }
    let got = backend.storage.get(t.uuid).await.unwrap().unwrap();
    assert_eq!(got.status, TaskStatus::Success);
    let expected = vec![
        Attempt {
            attempt: 1,
            worker: "w-1".into(),
            started_at: ms(now - 40),
            finished_at: ms(now - 30),
            status: TaskStatus::Retry,
        },
        Attempt {
            attempt: 2,
            worker: "w-2:x".into(),
            started_at: ms(now - 20),
            finished_at: ms(now - 18),
            status: TaskStatus::Success,
        },
    ];
    assert_eq!(got.history, expected);

    let minutes = backend.storage.latency(5).await.expect("latency succeeded");
    assert_eq!(minutes.len(), 5);
    let execution: u64 = minutes.iter().map(|m| m.execution.count).sum();
    let queue: u64 = minutes.iter().map(|m| m.queue.count).sum();
    assert_eq!((execution, queue), (2, 1), "{minutes:?}");
    let first = minutes
        .iter()
        .find(|m| m.queue.count == 1)
        .expect("the queue time's minute");
    // 5 ms, read back as the end of its bucket (within a quarter).
    let p50 = first.queue.p50_ms.expect("a median");
    assert!((5.0..=6.25).contains(&p50), "{p50}");
}
