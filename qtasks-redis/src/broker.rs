//! The broker: enqueue, claim (with leases and fencing tokens), acknowledge, requeue, renew,
//! cancel and stats, each one script call per batch (see `scripts`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use deadpool_redis::redis::{self, Value};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use qtasks_core::backend::{
    Broker, CancelOutcome, CancelRequest, Completion, Delivery, Lease, NewTask, Outcome, QueueStats,
};
use qtasks_core::{Error, Result};
use uuid::Uuid;

use crate::wire::{epoch_ms, glob_escape, lease_args, millis, parse_claim};
use crate::{scripts, RedisBackend};

/// The longest an idle worker blocks on its wake-up before looking again (a safety net for a
/// silently broken connection; wake-ups and due times normally end the wait much sooner).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// Most tasks in one enqueue script call.
const ENQUEUE_CHUNK: usize = 2000;

impl RedisBackend {
    /// One claim attempt: the deliveries, and how long until something is due (ms, or `None`).
    async fn claim_once(&self, max: usize) -> Result<(Vec<Delivery>, Option<u64>)> {
        let args = vec![
            max.to_string().into_bytes(),
            millis(self.options.lease).to_string().into_bytes(),
            self.options.max_deliveries.to_string().into_bytes(),
            self.options.dead_letter_max.to_string().into_bytes(),
        ];
        let reply: Value = self
            .eval("broker", "claiming tasks", &scripts::CLAIM, args)
            .await?;
        parse_claim(reply).map_err(|m| Error::backend("broker", m))
    }

    /// Blocks until an enqueue (or a returned lease, or a retry) pushes a wake-up, or `block`
    /// passes.
    async fn block_on_wake(&self, block: Duration) -> Result<()> {
        let what = "waiting for work";
        let mut conn = self
            .conns
            .blocking()
            .await
            .map_err(|e| self.conns.connect_error("broker", what, &e))?;
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(self.key("wake")).arg(block.as_secs_f64());
        // Its own allowance: Redis answers after `block` at the latest.
        let allowance = block + self.conns.command_timeout() + Duration::from_secs(1);
        let reply = tokio::time::timeout(allowance, cmd.query_async::<Value>(&mut conn)).await;
        match reply {
            Ok(Ok(_)) => {
                self.conns.give_back(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(self.conns.error("broker", what, &e)),
            Err(_) => Err(Error::backend(
                "broker",
                "Redis did not answer a blocking wait in time; reconnecting",
            )),
        }
    }

    /// How many records of this app are in each status.
    async fn count_statuses(&self) -> Result<BTreeMap<String, u64>> {
        // Inspection only (never on a hot path): SCAN over this app's records.
        let mut counts = BTreeMap::new();
        let pattern = format!("{}t:*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    "broker",
                    "counting tasks",
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HGET").arg(key).arg("s");
                }
                let mut conn = self
                    .conns
                    .shared()
                    .await
                    .map_err(|e| self.conns.error("broker", "counting tasks", &e))?;
                let statuses: Vec<Option<String>> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.conns.error("broker", "counting tasks", &e))?;
                for status in statuses.into_iter().flatten() {
                    *counts.entry(status).or_default() += 1;
                }
            }
            if next == 0 {
                return Ok(counts);
            }
            cursor = next;
        }
    }
}

impl Broker for RedisBackend {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = SystemTime::now();
            for chunk in tasks.chunks(ENQUEUE_CHUNK) {
                let mut args = Vec::with_capacity(chunk.len() * 6);
                for t in chunk {
                    let delay = t
                        .not_before
                        .and_then(|at| at.duration_since(now).ok())
                        .map(millis)
                        .unwrap_or(0);
                    args.push(t.uuid.hyphenated().to_string().into_bytes());
                    args.push(t.task_name.as_bytes().to_vec());
                    args.push(t.priority.to_string().into_bytes());
                    args.push(t.args.as_bytes().to_vec());
                    args.push(epoch_ms(t.created_at).to_string().into_bytes());
                    args.push(delay.to_string().into_bytes());
                }
                let what = match chunk {
                    [one] => format!("enqueueing task {:?} ({})", one.task_name, one.uuid),
                    _ => format!("enqueueing {} tasks", chunk.len()),
                };
                let _: i64 = self.eval("broker", &what, &scripts::ENQUEUE, args).await?;
            }
            Ok(())
        })
    }

    fn claim(&self, max: usize) -> BoxFuture<'_, Result<Vec<Delivery>>> {
        Box::pin(async move {
            loop {
                let (claimed, due_in) = self.claim_once(max.max(1)).await?;
                if !claimed.is_empty() {
                    return Ok(claimed);
                }
                let block = due_in
                    .map(|ms| Duration::from_millis(ms).min(MAX_BLOCK))
                    .unwrap_or(MAX_BLOCK);
                self.block_on_wake(block).await?;
            }
        })
    }

    fn complete<'a>(&'a self, done: &'a [Completion]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            let mut args = Vec::with_capacity(2 + done.len() * 5);
            args.push(self.ttl_ms().to_string().into_bytes());
            args.push(self.options.dead_letter_max.to_string().into_bytes());
            for c in done {
                let (kind, data, extra): (&[u8], Vec<u8>, Vec<u8>) = match &c.outcome {
                    Outcome::Success(p) => (b"s", p.as_bytes().to_vec(), Vec::new()),
                    Outcome::Failed { traceback } => (b"e", traceback.clone().into(), Vec::new()),
                    Outcome::Cancelled { reason } => (b"c", reason.clone().into(), Vec::new()),
                    Outcome::Retry { traceback, delay } => (
                        b"r",
                        traceback.clone().into(),
                        millis(*delay).to_string().into_bytes(),
                    ),
                    Outcome::DeadLetter { reason, traceback } => (
                        b"d",
                        traceback.clone().into(),
                        reason.as_str().as_bytes().to_vec(),
                    ),
                };
                args.push(c.lease.uuid.hyphenated().to_string().into_bytes());
                args.push(c.lease.token.to_string().into_bytes());
                args.push(kind.to_vec());
                args.push(data);
                args.push(extra);
            }
            let rejected: Vec<usize> = self
                .eval(
                    "broker",
                    "acknowledging finished tasks",
                    &scripts::COMPLETE,
                    args,
                )
                .await?;
            Ok(rejected
                .into_iter()
                .filter_map(|position| done.get(position.checked_sub(1)?))
                .map(|c| c.lease)
                .collect())
        })
    }

    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(());
            }
            let _: i64 = self
                .eval(
                    "broker",
                    "returning tasks to the queue",
                    &scripts::REQUEUE,
                    lease_args(leases),
                )
                .await?;
            Ok(())
        })
    }

    fn cancel(&self, uuid: Uuid, reason: &str) -> BoxFuture<'_, Result<CancelOutcome>> {
        let reason = reason.to_string();
        Box::pin(async move {
            let args = vec![
                uuid.hyphenated().to_string().into_bytes(),
                reason.into_bytes(),
                self.ttl_ms().to_string().into_bytes(),
            ];
            let what = format!("cancelling task {uuid}");
            let found: String = self.eval("broker", &what, &scripts::CANCEL, args).await?;
            Ok(match found.as_str() {
                "cancelled" => CancelOutcome::Cancelled,
                "running" => CancelOutcome::Running,
                "finished" => CancelOutcome::Finished,
                _ => CancelOutcome::NotFound,
            })
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats>> {
        Box::pin(async move {
            let (ready, scheduled, running, dead_letter): (Vec<(i32, u64)>, u64, u64, u64) = self
                .eval("broker", "reading queue stats", &scripts::STATS, Vec::new())
                .await?;
            Ok(QueueStats {
                ready_by_priority: ready.into_iter().filter(|(_, n)| *n > 0).collect(),
                scheduled,
                running,
                by_status: self.count_statuses().await?,
                dead_letter,
            })
        })
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.options.lease)
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            let mut args = vec![
                millis(self.options.lease).to_string().into_bytes(),
                self.options.max_deliveries.to_string().into_bytes(),
                self.options.dead_letter_max.to_string().into_bytes(),
            ];
            args.extend(lease_args(leases));
            let lost: Vec<i64> = self
                .eval("broker", "renewing leases", &scripts::RENEW, args)
                .await?;
            // Positions are 1-based; one outside the batch would be a script bug, skipped.
            Ok(lost
                .into_iter()
                .filter_map(|k| {
                    usize::try_from(k - 1)
                        .ok()
                        .and_then(|i| leases.get(i))
                        .copied()
                })
                .collect())
        })
    }

    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        Some(self.notifier.cancel_requests())
    }
}
