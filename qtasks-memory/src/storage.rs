//! The storage: reading a task's record, and waiting until it is final.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use qtasks_core::backend::inspect::{MinuteCount, MinuteLatency, TaskPage, TaskQuery};
use qtasks_core::backend::Storage;
use qtasks_core::{Error, Result, Task};
use uuid::Uuid;

use crate::waiters::Waiter;
use crate::MemoryBackend;

impl Storage for MemoryBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            self.expire(Instant::now());
            Ok(self
                .records
                .shard(&uuid)
                .lock()
                .get(&uuid)
                .map(|s| s.task(uuid)))
        })
    }

    fn wait(&self, uuid: Uuid, timeout: Duration) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let shard = self.records.shard(&uuid);
            loop {
                // Removes itself from the record when dropped before it fired (timed out, or
                // this future dropped).
                let mut waiter = {
                    let mut records = shard.lock();
                    let slot = records.get_mut(&uuid).ok_or(Error::NotFound(uuid))?;
                    if slot.status.is_final() {
                        return Ok(Some(slot.task(uuid)));
                    }
                    Waiter::register(
                        shard,
                        &self.parked_waits,
                        uuid,
                        &mut slot.rare_mut().waiters,
                    )
                };
                if !waiter.woken_before(deadline).await {
                    return Ok(None);
                }
            }
        })
    }

    fn list<'a>(&'a self, query: &'a TaskQuery) -> BoxFuture<'a, Result<TaskPage>> {
        Box::pin(async move { Ok(self.list_page(query)) })
    }

    fn throughput(&self, minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteCount>>> {
        Box::pin(async move { Ok(self.finished_per_minute(minutes)) })
    }

    fn latency(&self, minutes: u32) -> BoxFuture<'_, Result<Vec<MinuteLatency>>> {
        Box::pin(async move { Ok(self.latency_per_minute(minutes)) })
    }

    fn parked_waits(&self) -> Option<usize> {
        Some(self.parked_waits.load(std::sync::atomic::Ordering::Relaxed))
    }
}
