//! The storage: task records (`get`), waiting for a final state (`wait`, woken by the `done`
//! notifications of `notify`), and reading the dead-letter ([`DeadLetter`]).

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use futures::future::BoxFuture;
use qtasks_core::backend::inspect::{MinuteCount, MinuteLatency, TaskPage, TaskQuery};
use qtasks_core::backend::{DeadLetterReason, Storage};
use qtasks_core::{Error, Result, Task};
use uuid::Uuid;

use crate::wire::decode_record;
use crate::RedisBackend;

/// One entry of the dead-letter ([`RedisBackend::dead_letter_entries`]).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The entry as stored: the task's uuid, or what was found where a task was expected
    /// (garbage in a queue, the uuid of a key of another type).
    pub entry: String,
    /// The task's uuid, when the entry is one.
    pub uuid: Option<Uuid>,
    /// Why it is there (`None` for a reason this version does not know).
    pub reason: Option<DeadLetterReason>,
    /// The task's record (with its raw arguments, the error in `traceback` and the reason in
    /// `extra["dead_letter"]`), when there is one: entries that are not task records have none.
    pub task: Option<Task>,
}

impl RedisBackend {
    /// The dead-lettered tasks, newest first, at most `limit`: their records with the raw
    /// arguments (`args`), the error (`traceback`) and the reason in `extra["dead_letter"]`.
    /// Entries that are not task records are left out (see [`Self::dead_letter_entries`]).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Task>> {
        Ok(self
            .dead_letter_entries(limit)
            .await?
            .into_iter()
            .filter_map(|d| d.task)
            .collect())
    }

    /// Every entry of the dead-letter, newest first, at most `limit`: dead-lettered tasks
    /// with their records, and entries found where a task was expected that are not task
    /// records (stored as `!<reason>:<entry>`), with their reason.
    pub async fn dead_letter_entries(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = isize::try_from(limit).unwrap_or(isize::MAX).max(1);
        let key = self.key("dead");
        let entries: Vec<Vec<u8>> = self
            .query_key(
                "storage",
                "reading the dead-letter",
                &key,
                "a list",
                redis::cmd("LRANGE").arg(&key).arg(0).arg(limit - 1),
            )
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let raw = String::from_utf8_lossy(&raw).into_owned();
            if let Some((reason, entry)) = raw.strip_prefix('!').and_then(|r| r.split_once(':')) {
                out.push(DeadLetter {
                    uuid: Uuid::try_parse(entry).ok(),
                    reason: DeadLetterReason::parse(reason),
                    entry: entry.to_string(),
                    task: None,
                });
                continue;
            }
            let uuid = Uuid::try_parse(&raw).ok();
            let task = match uuid {
                // A record that cannot be read is listed without it.
                Some(uuid) => Storage::get(self, uuid).await.ok().flatten(),
                None => None,
            };
            out.push(DeadLetter {
                reason: task
                    .as_ref()
                    .and_then(|t| t.extra.get("dead_letter"))
                    .and_then(|r| DeadLetterReason::parse(r)),
                entry: raw,
                uuid,
                task,
            });
        }
        Ok(out)
    }
}

impl Storage for RedisBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let key = self.record_key(uuid);
            // The claim first, then the record, in one round trip: a task that finishes in
            // between reads as finished (its record says so), one claimed in between as not
            // yet claimed.
            let mut pipe = redis::pipe();
            pipe.cmd("HGET")
                .arg(self.key("run"))
                .arg(uuid.hyphenated().to_string());
            pipe.cmd("HGETALL").arg(&key);
            let (run, fields): (Option<Vec<u8>>, HashMap<String, Vec<u8>>) = self
                .query_pipe_key(
                    "storage",
                    &format!("reading task {uuid}"),
                    &key,
                    "a task record (hash)",
                    &pipe,
                )
                .await?;
            if fields.is_empty() {
                return Ok(None);
            }
            decode_record(uuid, fields, run.as_deref())
                .map(Some)
                .map_err(|m| Error::backend("storage", m))
        })
    }

    fn wait(&self, uuid: Uuid, timeout: Duration) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // However the wait ends (also when its future is dropped), its registrations go.
            let _prune = PruneOnDrop {
                notifier: &self.notifier,
                uuid,
            };
            loop {
                // Registered before reading, so a completion in between is not missed.
                let notified = self.notifier.register(uuid);
                let task = Storage::get(self, uuid).await;
                let task = match task {
                    Ok(Some(task)) => task,
                    Ok(None) => return Err(Error::NotFound(uuid)),
                    Err(e) => return Err(e),
                };
                if task.status.is_final() {
                    return Ok(Some(task));
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Ok(None);
                }
            }
        })
    }

    fn parked_waits(&self) -> Option<usize> {
        Some(self.notifier.parked())
    }

    fn list<'a>(&'a self, query: &'a TaskQuery) -> BoxFuture<'a, Result<TaskPage>> {
        Box::pin(self.list_page(query))
    }

    fn throughput(&self, minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteCount>>> {
        Box::pin(self.finished_per_minute(minutes))
    }

    fn latency(&self, minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteLatency>>> {
        Box::pin(self.latency_per_minute(minutes))
    }
}

/// Forgets the waits of one `wait` call that gave up, when the call ends.
struct PruneOnDrop<'a> {
    notifier: &'a crate::notify::Notifier,
    uuid: Uuid,
}

impl Drop for PruneOnDrop<'_> {
    fn drop(&mut self) {
        self.notifier.prune(self.uuid);
    }
}
