//! The storage: task records (`get`), waiting for a final state (`wait`, woken by the `done`
//! notifications of `notify`), and reading the dead-letter.

use std::time::Duration;

use futures::future::BoxFuture;
use qtasks_core::backend::inspect::{MinuteCount, MinuteLatency, TaskPage, TaskQuery};
use qtasks_core::backend::Storage;
use qtasks_core::{Error, Result, Task};
use uuid::Uuid;

use crate::record::decode_record;
use crate::PostgresBackend;

impl PostgresBackend {
    /// The dead-lettered tasks of this app, newest first, at most `limit`: their records with
    /// the raw arguments (`args`), the error (`traceback`) and the reason in
    /// `extra["dead_letter"]` (`unknown_task`, `bad_arguments`, `crashed_worker`,
    /// `malformed_record`). The dead-letter keeps the newest `dead_letter_max` of them.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<Task>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX).max(1);
        let rows = self
            .query(
                "storage",
                "reading the dead-letter",
                &self.sql.dead_letters,
                &[&self.app, &limit],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match decode_record(row) {
                Ok(task) => out.push(task),
                // One record that cannot be read does not hide the others.
                Err(why) => {
                    tracing::error!(app = %self.app, "a dead-lettered record cannot be read: {why}")
                }
            }
        }
        Ok(out)
    }
}

impl Storage for PostgresBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let what = format!("reading task {uuid}");
            let rows = self
                .query("storage", &what, &self.sql.get, &[&self.app, &uuid])
                .await?;
            match rows.first() {
                None => Ok(None),
                Some(row) => decode_record(row)
                    .map(Some)
                    .map_err(|m| Error::backend("storage", m)),
            }
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
                let task = match Storage::get(self, uuid).await? {
                    Some(task) => task,
                    None => return Err(Error::NotFound(uuid)),
                };
                if task.status.is_final() {
                    return Ok(Some(task));
                }
                // While the listener is down no notification comes: look again soon.
                let until = if self.notifier.is_listening() {
                    deadline
                } else {
                    deadline.min(tokio::time::Instant::now() + Duration::from_millis(250))
                };
                if tokio::time::timeout_at(until, notified).await.is_err() && until == deadline {
                    return Ok(None);
                }
            }
        })
    }

    fn parked_waits(&self) -> Option<usize> {
        Some(self.notifier.parked())
    }

    fn list<'a>(&'a self, query: &'a TaskQuery) -> BoxFuture<'a, Result<TaskPage>> {
        Box::pin(self.list_tasks(query))
    }

    fn throughput(&self, minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteCount>>> {
        Box::pin(self.count_finished(minutes))
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
