//! The broker: enqueue, claim (with leases and fencing tokens), acknowledge, requeue, renew,
//! started, cancel and stats, each one call of a SQL function per batch (`sql/001_init.sql`,
//! the batch functions as migration 2 replaced them in `sql/002_uuid_first_key.sql`).
//! Every entry a function dead-lettered comes back in its reply and is logged here, once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use qtasks_core::backend::inspect::{LatencyBatch, PauseTarget, Pauses, Purge};
use qtasks_core::backend::{
    encode_attempt, envelope, Broker, CancelOutcome, CancelRequest, Completion, Delivery, Existing,
    Held, Lease, Migrated, NewTask, Outcome, QueueStats,
};
use qtasks_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::record::{at_position, lease_arrays, lock_order, millis};
use crate::PostgresBackend;

/// The longest an idle worker sleeps before looking again (a safety net for a silently broken
/// listening connection; notifications and due times normally end the sleep much sooner).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// How long an idle worker sleeps at most while the listening connection is down (no
/// notification can wake it then).
const DEAF_BLOCK: Duration = Duration::from_millis(250);
/// Most tasks in one enqueue call.
pub(crate) const ENQUEUE_CHUNK: usize = 5000;

/// The argument arrays of the `enqueue` function for `tasks`.
pub(crate) struct EnqueueArgs<'a> {
    uuids: Vec<Uuid>,
    names: Vec<&'a str>,
    prios: Vec<i32>,
    /// The arguments as stored: with the enqueue time and the producer's span context when
    /// there is something to carry (`qtasks_core::backend::envelope`).
    args: Vec<Cow<'a, [u8]>>,
    created: Vec<SystemTime>,
    delays: Vec<i64>,
}

impl<'a> EnqueueArgs<'a> {
    pub(crate) fn new(tasks: &'a [NewTask]) -> Self {
        let now = SystemTime::now();
        let mut a = EnqueueArgs {
            uuids: Vec::with_capacity(tasks.len()),
            names: Vec::with_capacity(tasks.len()),
            prios: Vec::with_capacity(tasks.len()),
            args: Vec::with_capacity(tasks.len()),
            created: Vec::with_capacity(tasks.len()),
            delays: Vec::with_capacity(tasks.len()),
        };
        for t in tasks {
            a.uuids.push(t.uuid);
            a.names.push(t.task_name.as_str());
            a.prios.push(t.priority);
            a.args.push(envelope::stored_args(t));
            a.created.push(t.created_at);
            a.delays.push(
                t.not_before
                    .and_then(|at| at.duration_since(now).ok())
                    .map(millis)
                    .unwrap_or(0),
            );
        }
        a
    }

    /// The parameters after the app's name, in the function's order.
    pub(crate) fn params<'b>(&'b self, app: &'b String) -> [&'b (dyn ToSql + Sync); 7] {
        [
            app,
            &self.uuids,
            &self.names,
            &self.prios,
            &self.args,
            &self.created,
            &self.delays,
        ]
    }
}

/// What one claim call gave.
struct Claimed {
    deliveries: Vec<Delivery>,
    /// How many of the first deliveries the claim marked started.
    started: usize,
    suspect: bool,
    drain: bool,
    due_in: Option<Duration>,
}

/// Logs each entry a function took out of the queue (dead-lettered), once: the call that did
/// it reports it to the process that made it, and to no other.
fn log_dead(app: &str, uuid: Option<Uuid>, name: Option<&str>, info: Option<&str>) {
    tracing::error!(
        app,
        task_name = name.unwrap_or("?"),
        task_uuid = %uuid.map(|u| u.to_string()).unwrap_or_default(),
        "a task was taken out of the queue into the dead-letter: {}",
        info.unwrap_or("no detail")
    );
}

impl PostgresBackend {
    /// One claim call (`idle`: this process holds no task, so it may take a suspect), the
    /// first `start` claimed marked started.
    async fn claim_once(&self, max: usize, idle: bool, start: usize) -> Result<Claimed> {
        let what = "claiming tasks";
        let conn = self.conns.get("broker", what).await?;
        let stmt = conn
            .prepare_cached(&self.sql.claim)
            .await
            .map_err(|e| self.conns.error("broker", what, &e))?;
        let max = i32::try_from(max).unwrap_or(i32::MAX);
        let start_n = i32::try_from(start).unwrap_or(i32::MAX);
        let rows = conn
            .query(
                &stmt,
                &[
                    &self.app,
                    &max,
                    &millis(self.options.lease),
                    &self.max_deliveries(),
                    &self.dead_max(),
                    &idle,
                    &self.caller,
                    &start_n,
                ],
            )
            .await
            .map_err(|e| self.conns.error("broker", what, &e))?;
        let mut claimed = Claimed {
            deliveries: Vec::with_capacity(rows.len()),
            started: 0,
            suspect: false,
            drain: false,
            due_in: None,
        };
        // The function marked the first `start` claimed rows started.
        let mut claimed_rows = 0;
        for row in &rows {
            let kind: &str = row.try_get(0).unwrap_or("");
            match kind {
                "task" | "suspect" => match decode_delivery(row) {
                    Ok(d) => {
                        claimed_rows += 1;
                        if claimed_rows <= start {
                            claimed.started += 1;
                        }
                        claimed.suspect |= kind == "suspect";
                        claimed.deliveries.push(d);
                    }
                    Err(why) => {
                        claimed_rows += 1;
                        // Claimed in the table but not deliverable: left to its lease, which
                        // expires and returns it (never started, so never counted).
                        tracing::error!(app = %self.app, "a claimed row cannot be decoded; it returns to the queue when its lease expires: {why}");
                    }
                },
                "dead" => log_dead(
                    &self.app,
                    row.try_get(1).ok(),
                    row.try_get(2).ok(),
                    row.try_get(7).ok(),
                ),
                "wait" => {
                    let ms: i64 = row.try_get(6).unwrap_or(-1);
                    claimed.due_in = u64::try_from(ms).ok().map(Duration::from_millis);
                    claimed.drain =
                        row.try_get::<_, Option<&str>>(7).ok().flatten() == Some("drain");
                }
                other => {
                    tracing::error!(app = %self.app, kind = other, "unexpected row from the claim function")
                }
            }
        }
        Ok(claimed)
    }

    /// [`Broker::claim_starting`]: claims until something is claimed, waiting on wake-ups.
    async fn claim_starting_now(&self, max: usize, start: usize) -> Result<(Vec<Delivery>, usize)> {
        self.reaper.ensure_started();
        let lease = self.options.lease;
        loop {
            // A suspect of this process runs alone: nothing else is claimed until it is
            // done, or has run a whole lease.
            if let Some(left) = self.held.suspect_alone_for() {
                self.held
                    .wait_until(left, |held| held.suspect_alone_for().is_none())
                    .await;
                continue;
            }
            if !self.notifier.is_listening() {
                self.notifier.until_listening(DEAF_BLOCK).await;
            }
            // Subscribed before looking, so a wake-up in between is not missed.
            let mut wakes = self.notifier.wakes();
            let idle = self.held.is_idle();
            let claimed = self.claim_once(max.max(1), idle, start).await?;
            if !claimed.deliveries.is_empty() {
                self.held
                    .claimed_starting(&claimed.deliveries, claimed.suspect, claimed.started);
                return Ok((claimed.deliveries, claimed.started));
            }
            if claimed.drain && !idle {
                // A suspect waits for an idle worker: this process finishes what it holds
                // (at most a lease), then claims again as idle.
                self.held.wait_until(lease, Held::is_idle).await;
                continue;
            }
            let mut block = claimed.due_in.map_or(MAX_BLOCK, |d| d.min(MAX_BLOCK));
            if !self.notifier.is_listening() {
                block = block.min(DEAF_BLOCK);
            }
            tokio::select! {
                _ = wakes.changed() => {}
                _ = tokio::time::sleep(block) => {}
            }
        }
    }

    /// `started` or `renew`: the leases of `leases` that are not current.
    async fn touch(&self, leases: &[Lease], renew: bool) -> Result<Vec<Lease>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let what = if renew {
            "renewing leases"
        } else {
            "recording task starts"
        };
        let (uuids, tokens, order) = lease_arrays(leases);
        let conn = self.conns.get("broker", what).await?;
        let stmt = conn
            .prepare_cached(&self.sql.touch)
            .await
            .map_err(|e| self.conns.error("broker", what, &e))?;
        let rows = conn
            .query(
                &stmt,
                &[
                    &self.app,
                    &renew,
                    &millis(self.options.lease),
                    &self.max_deliveries(),
                    &self.dead_max(),
                    &uuids,
                    &tokens,
                ],
            )
            .await
            .map_err(|e| self.conns.error("broker", what, &e))?;
        let mut lost = Vec::new();
        for row in &rows {
            match row.try_get::<_, &str>(0).unwrap_or("") {
                "lost" => {
                    let pos: i32 = row.try_get(1).unwrap_or(0);
                    if let Some(lease) = at_position(leases, &order, pos) {
                        lost.push(lease);
                    }
                }
                _ => log_dead(
                    &self.app,
                    row.try_get(2).ok(),
                    row.try_get(3).ok(),
                    row.try_get(4).ok(),
                ),
            }
        }
        self.held.note_lost(leases, &lost, !renew);
        Ok(lost)
    }

    /// Runs one statement on a pooled connection (prepared once per connection).
    pub(crate) async fn query(
        &self,
        component: &'static str,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let conn = self.conns.get(component, what).await?;
        let stmt = conn
            .prepare_cached(sql)
            .await
            .map_err(|e| self.conns.error(component, what, &e))?;
        conn.query(&stmt, params)
            .await
            .map_err(|e| self.conns.error(component, what, &e))
    }
}

/// A `task` or `suspect` row of the claim function as a delivery.
fn decode_delivery(row: &Row) -> std::result::Result<Delivery, String> {
    let uuid: Uuid = row.try_get(1).map_err(|e| e.to_string())?;
    let bad = |e: tokio_postgres::Error| format!("task {uuid}: {e}");
    let name: String = row.try_get(2).map_err(bad)?;
    let priority: i32 = row.try_get(3).map_err(bad)?;
    let args: Vec<u8> = row.try_get(4).map_err(bad)?;
    let attempt: i32 = row.try_get(5).map_err(bad)?;
    let token: i64 = row.try_get(6).map_err(bad)?;
    let (meta, args) = envelope::split(args);
    Ok(Delivery {
        uuid,
        task_name: name.into(),
        priority,
        meta,
        args,
        attempt: u32::try_from(attempt).unwrap_or(1),
        token: u64::try_from(token).map_err(|_| format!("task {uuid}: negative token {token}"))?,
    })
}

impl Broker for PostgresBackend {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<Vec<Existing>>> {
        Box::pin(async move {
            // Unique keys, debounce and per-key limits are not applied here yet: refused,
            // never ignored.
            NewTask::refuse_flow(tasks)?;
            for chunk in tasks.chunks(ENQUEUE_CHUNK) {
                let what = match chunk {
                    [one] => format!("enqueueing task {:?} ({})", one.task_name, one.uuid),
                    _ => format!("enqueueing {} tasks", chunk.len()),
                };
                let args = EnqueueArgs::new(chunk);
                self.query("broker", &what, &self.sql.enqueue, &args.params(&self.app))
                    .await?;
            }
            Ok(Vec::new())
        })
    }

    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        Box::pin(async move { Ok(self.claim_starting_now(max, 0).await?.0) })
    }

    fn claim_starting(
        &self,
        max: usize,
        start: usize,
    ) -> BoxFuture<'_, Result<(Vec<Delivery>, usize)>> {
        Box::pin(self.claim_starting_now(max, start))
    }

    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            if done.is_empty() {
                return Ok(Vec::new());
            }
            let n = done.len();
            let order = lock_order(done.iter().map(|c| c.lease.uuid));
            let mut uuids = Vec::with_capacity(n);
            let mut tokens = Vec::with_capacity(n);
            let mut kinds = Vec::with_capacity(n);
            let mut results: Vec<Option<&[u8]>> = Vec::with_capacity(n);
            let mut texts: Vec<Option<&str>> = Vec::with_capacity(n);
            let mut reasons: Vec<Option<&str>> = Vec::with_capacity(n);
            let mut delays = Vec::with_capacity(n);
            let mut runs: Vec<Option<String>> = Vec::with_capacity(n);
            for c in order.iter().map(|&i| &done[i]) {
                runs.push(
                    c.run
                        .as_ref()
                        .map(|run| encode_attempt(run, c.outcome.status())),
                );
                uuids.push(c.lease.uuid);
                tokens.push(crate::record::token_sql(c.lease.token));
                let (kind, result, text, reason, delay) = match &c.outcome {
                    Outcome::Success(p) => ("s", Some(p.as_bytes()), None, None, 0),
                    Outcome::Failed { traceback } => ("e", None, Some(traceback.as_str()), None, 0),
                    Outcome::Cancelled { reason } => ("c", None, Some(reason.as_str()), None, 0),
                    Outcome::Retry { traceback, delay } => {
                        ("r", None, Some(traceback.as_str()), None, millis(*delay))
                    }
                    // Queued again after the delay; this backend counts it as an attempt
                    // (docs/flow-control.md).
                    Outcome::Later { delay } => (
                        "r",
                        None,
                        Some("rate limited: runs again later"),
                        None,
                        millis(*delay),
                    ),
                    Outcome::DeadLetter { reason, traceback } => (
                        "d",
                        None,
                        Some(traceback.as_str()),
                        Some(reason.as_str()),
                        0,
                    ),
                };
                kinds.push(kind);
                results.push(result);
                texts.push(text);
                reasons.push(reason);
                delays.push(delay);
            }
            let latency = LatencyBatch::of(done);
            let mut lat_minutes = Vec::with_capacity(latency.counts.len());
            let mut lat_fields = Vec::with_capacity(latency.counts.len());
            let mut lat_counts = Vec::with_capacity(latency.counts.len());
            for (minute, kind, bucket, count) in &latency.counts {
                lat_minutes.push(i64::try_from(*minute).unwrap_or(i64::MAX));
                lat_fields.push(format!("{}{bucket}", kind.as_str()));
                lat_counts.push(i64::try_from(*count).unwrap_or(i64::MAX));
            }
            let rows = self
                .query(
                    "broker",
                    "acknowledging finished tasks",
                    &self.sql.complete,
                    &[
                        &self.app,
                        &self.ttl_ms(),
                        &self.dead_max(),
                        &uuids,
                        &tokens,
                        &kinds,
                        &results,
                        &texts,
                        &reasons,
                        &delays,
                        &runs,
                        &lat_minutes,
                        &lat_fields,
                        &lat_counts,
                    ],
                )
                .await;
            let leases: Vec<Lease> = done.iter().map(|c| c.lease).collect();
            self.held.gone(&leases);
            let rows = rows?;
            let positions: Vec<i32> = rows
                .first()
                .and_then(|r| r.try_get(0).ok())
                .unwrap_or_default();
            Ok(positions
                .into_iter()
                .filter_map(|k| at_position(&leases, &order, k))
                .collect())
        })
    }

    fn progress<'a>(
        &'a self,
        lease: Lease,
        value: &'a qtasks_core::Payload,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let what = format!("storing the progress of task {}", lease.uuid);
            let token = crate::record::token_sql(lease.token);
            let value = value.as_bytes();
            let rows = self
                .query(
                    "broker",
                    &what,
                    &self.sql.progress,
                    &[&self.app, &lease.uuid, &token, &value],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(());
            }
            let (uuids, tokens, _) = lease_arrays(leases);
            let result = self
                .query(
                    "broker",
                    "returning tasks to the queue",
                    &self.sql.requeue,
                    &[&self.app, &uuids, &tokens],
                )
                .await;
            // Given back either way: a requeue that failed leaves the tasks to their leases.
            self.held.gone(leases);
            result.map(drop)
        })
    }

    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>> {
        let reason = reason.to_string();
        Box::pin(async move {
            let what = format!("cancelling task {uuid}");
            let rows = self
                .query(
                    "broker",
                    &what,
                    &self.sql.cancel,
                    &[&self.app, &uuid, &reason, &self.ttl_ms()],
                )
                .await?;
            let found: &str = rows.first().and_then(|r| r.try_get(0).ok()).unwrap_or("");
            Ok(match found {
                "cancelled" => CancelOutcome::Cancelled,
                "running" => CancelOutcome::Running,
                "finished" => CancelOutcome::Finished,
                _ => CancelOutcome::NotFound,
            })
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats>> {
        Box::pin(async move {
            let what = "reading queue stats";
            let app: &(dyn ToSql + Sync) = &self.app;
            let ready = self
                .query("broker", what, &self.sql.ready_by_priority, &[app])
                .await?;
            let counts = self.query("broker", what, &self.sql.counts, &[app]).await?;
            let statuses = self
                .query("broker", what, &self.sql.by_status, &[app])
                .await?;
            let count = |row: &Row, i: usize| -> u64 {
                u64::try_from(row.try_get::<_, i64>(i).unwrap_or(0)).unwrap_or(0)
            };
            let mut by_status = BTreeMap::new();
            for row in &statuses {
                if let Ok(status) = row.try_get::<_, String>(0) {
                    by_status.insert(status, count(row, 1));
                }
            }
            let counts = counts
                .first()
                .ok_or_else(|| Error::backend("broker", "the queue counts came back empty"))?;
            Ok(QueueStats {
                ready_by_priority: ready
                    .iter()
                    .filter_map(|r| Some((r.try_get::<_, i32>(0).ok()?, count(r, 1))))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                // One queue: no named queues.
                ready_by_queue: Default::default(),
                scheduled: count(counts, 0),
                running: count(counts, 1),
                by_status,
                dead_letter: count(counts, 2),
            })
        })
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.options.lease)
    }

    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(self.touch(leases, false))
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(self.touch(leases, true))
    }

    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        Some(self.notifier.cancel_requests())
    }

    fn retry_dead<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(self.retry_dead_tasks(uuids))
    }

    fn delete<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(self.delete_tasks(uuids))
    }

    fn purge<'a>(&'a self, purge: &'a Purge) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.purge_tasks(purge))
    }

    fn set_paused<'a>(
        &'a self,
        target: &'a PauseTarget,
        paused: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.pause(target, paused))
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Pauses>> {
        Box::pin(self.read_pauses())
    }

    fn migrate(&self) -> BoxFuture<'_, Result<Option<Migrated>>> {
        Box::pin(async { PostgresBackend::migrate(self).await.map(Some) })
    }
}
