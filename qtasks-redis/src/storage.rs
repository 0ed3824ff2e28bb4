//! The storage: task records (`get`), waiting for a final state (`wait`, woken by the `done`
//! notifications of `notify`), and reading the dead-letter.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use futures::future::BoxFuture;
use qtasks_core::backend::Storage;
use qtasks_core::{Error, Result, Task};
use uuid::Uuid;

use crate::wire::decode_record;
use crate::RedisBackend;

impl RedisBackend {
    /// The dead-lettered tasks, newest first, at most `limit`: their records with the raw
    /// arguments (`args`), the error (`traceback`) and the reason in `extra["dead_letter"]`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Task>> {
        let limit = isize::try_from(limit).unwrap_or(isize::MAX).max(1);
        let ids: Vec<String> = self
            .query(
                "storage",
                "reading the dead-letter",
                redis::cmd("LRANGE")
                    .arg(self.key("dead"))
                    .arg(0)
                    .arg(limit - 1),
            )
            .await?;
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(uuid) = Uuid::parse_str(&id) {
                if let Some(task) = Storage::get(self, uuid).await? {
                    tasks.push(task);
                }
            }
        }
        Ok(tasks)
    }
}

impl Storage for RedisBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let key = self.record_key(uuid);
            let fields: HashMap<String, Vec<u8>> = self
                .query_key(
                    "storage",
                    &format!("reading task {uuid}"),
                    &key,
                    "a task record (hash)",
                    redis::cmd("HGETALL").arg(&key),
                )
                .await?;
            if fields.is_empty() {
                return Ok(None);
            }
            decode_record(uuid, fields)
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
