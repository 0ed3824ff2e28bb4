//! Inspection and administration for the dashboard and the API: listing with filters and
//! cursors, finished tasks per minute (`Storage::list`, `throughput`), and retrying, deleting,
//! purging and pausing (`Broker::retry_dead`, `delete`, `purge`, `set_paused`, `pauses`).
//!
//! None of it is on a hot path, so it has no index of its own (every index costs each update
//! of a task): a listing reads the app's rows in change order with the filters SQL can apply
//! (status, name, time, cursor) and the text filter applied here, 500 rows at a time.

use std::time::SystemTime;

use qtasks_core::backend::inspect::{
    from_unix_ms, latency_minutes, minute_buckets, Cursor, LatencyKind, MinuteCount, MinuteLatency,
    PauseTarget, Pauses, Purge, TaskPage, TaskQuery,
};
use qtasks_core::{Error, Result, Task};
use uuid::Uuid;

use crate::record::decode_record;
use crate::PostgresBackend;

/// Rows read per statement of a listing.
const LIST_CHUNK: i64 = 500;

impl PostgresBackend {
    pub(crate) async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let size = query.page_size();
        let status = query.status.map(|s| s.as_str().to_string());
        let lower = i64::try_from(query.lower_ms()).unwrap_or(i64::MAX);
        let mut upper = query.upper_bound();
        let mut candidates: Vec<Task> = Vec::with_capacity(size + 1);
        loop {
            let (at, uuid) = match upper {
                Some(c) => (
                    Some(i64::try_from(c.at_ms).unwrap_or(i64::MAX)),
                    Some(c.uuid),
                ),
                None => (None, None::<Uuid>),
            };
            let rows = self
                .query(
                    "storage",
                    "listing tasks",
                    &self.sql.list,
                    &[
                        &self.app,
                        &status,
                        &query.task_name,
                        &lower,
                        &at,
                        &uuid,
                        &LIST_CHUNK,
                    ],
                )
                .await?;
            for row in &rows {
                let task = decode_record(row).map_err(|m| Error::backend("storage", m))?;
                upper = Some(Cursor::after(&task));
                if query.matches(&task) {
                    candidates.push(task);
                }
            }
            if candidates.len() > size || (rows.len() as i64) < LIST_CHUNK {
                return Ok(TaskPage::from_candidates(candidates, size));
            }
        }
    }

    pub(crate) async fn count_finished(&self, minutes: u32) -> Result<Vec<MinuteCount>> {
        let mut buckets = minute_buckets(SystemTime::now(), minutes);
        let Some(first) = buckets.first().map(|b| b.minute_ms) else {
            return Ok(buckets);
        };
        let rows = self
            .query(
                "storage",
                "counting finished tasks",
                &self.sql.throughput,
                &[&self.app, &from_unix_ms(first)],
            )
            .await?;
        for row in &rows {
            let minute: i64 = row.try_get(0).unwrap_or(0);
            let count = |i| u64::try_from(row.try_get::<_, i64>(i).unwrap_or(0)).unwrap_or(0);
            if let Some(b) = buckets
                .iter_mut()
                .find(|b| i64::try_from(b.minute_ms).is_ok_and(|m| m == minute))
            {
                b.success += count(1);
                b.error += count(2);
            }
        }
        Ok(buckets)
    }

    /// The latency per minute, from the counts `complete` adds to the `latency` table.
    pub(crate) async fn latency_per_minute(&self, minutes: u32) -> Result<Vec<MinuteLatency>> {
        let now = SystemTime::now();
        let first = minute_buckets(now, minutes)
            .first()
            .map_or(0, |b| b.minute_ms);
        let rows = self
            .query(
                "storage",
                "reading the latency per minute",
                &self.sql.latency,
                &[&self.app, &i64::try_from(first).unwrap_or(i64::MAX)],
            )
            .await?;
        let counts = rows.iter().filter_map(|row| {
            let minute: i64 = row.try_get(0).ok()?;
            let field: String = row.try_get(1).ok()?;
            let n: i64 = row.try_get(2).ok()?;
            Some((
                u64::try_from(minute).ok()?,
                LatencyKind::parse(field.get(..1)?)?,
                field.get(1..)?.parse().ok()?,
                u64::try_from(n).ok()?,
            ))
        });
        Ok(latency_minutes(now, minutes, counts))
    }

    pub(crate) async fn retry_dead_tasks(&self, uuids: &[Uuid]) -> Result<Vec<Uuid>> {
        let ids = uuids.to_vec();
        let rows = self
            .query(
                "broker",
                "queueing failed tasks again",
                &self.sql.retry_dead,
                &[&self.app, &ids],
            )
            .await?;
        Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    }

    pub(crate) async fn delete_tasks(&self, uuids: &[Uuid]) -> Result<Vec<Uuid>> {
        let ids = uuids.to_vec();
        let rows = self
            .query(
                "broker",
                "deleting tasks",
                &self.sql.delete,
                &[&self.app, &ids],
            )
            .await?;
        let deleted: Vec<Uuid> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        // In the order asked.
        Ok(uuids
            .iter()
            .filter(|u| deleted.contains(u))
            .copied()
            .collect())
    }

    pub(crate) async fn purge_tasks(&self, purge: &Purge) -> Result<u64> {
        let statuses: Vec<&str> = purge.statuses.iter().map(|s| s.as_str()).collect();
        let conn = self.conns.get("broker", "purging finished tasks").await?;
        let stmt = conn
            .prepare_cached(&self.sql.purge)
            .await
            .map_err(|e| self.conns.error("broker", "purging finished tasks", &e))?;
        conn.execute(&stmt, &[&self.app, &statuses, &purge.before])
            .await
            .map_err(|e| self.conns.error("broker", "purging finished tasks", &e))
    }

    pub(crate) async fn pause(&self, target: &PauseTarget, paused: bool) -> Result<()> {
        let name = match target {
            PauseTarget::App => String::new(),
            PauseTarget::Task(name) => name.clone(),
            PauseTarget::Queue(queue) => {
                return Err(qtasks_core::backend::inspect::unsupported(
                    "broker",
                    &format!("pause named queue {queue:?} (it has no named queues)"),
                ))
            }
        };
        let (sql, what) = if paused {
            (&self.sql.pause, "pausing claims")
        } else {
            (&self.sql.resume, "resuming claims")
        };
        self.query("broker", what, sql, &[&self.app, &name])
            .await
            .map(drop)
    }

    pub(crate) async fn read_pauses(&self) -> Result<Pauses> {
        let rows = self
            .query("broker", "reading pauses", &self.sql.pauses, &[&self.app])
            .await?;
        let mut pauses = Pauses::default();
        for row in &rows {
            let target: String = row.try_get(0).unwrap_or_default();
            if target.is_empty() {
                pauses.app = true;
            } else {
                pauses.tasks.insert(target);
            }
        }
        Ok(pauses)
    }
}
