//! The broker: enqueue, claim (with leases and fencing tokens), acknowledge, requeue, renew,
//! started, cancel and stats, each one script call per batch (see `scripts`). Every entry a
//! script dropped or dead-lettered comes back in its reply and is logged here, once.

use std::time::{Duration, SystemTime};

use deadpool_redis::redis::{self, Value};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use qtasks_core::backend::inspect::{LatencyBatch, PauseTarget, Pauses, Purge};
use qtasks_core::backend::{
    encode_attempt, envelope, Broker, CancelOutcome, CancelRequest, Completion, DeadLetterReason,
    Delivery, Existing, Lease, NewTask, Outcome, QueueStats,
};
use qtasks_core::control::{QueueSelection, QueueTurns, TaskLimits};
use qtasks_core::{Error, Result};
use uuid::Uuid;

use crate::wire::{
    epoch_ms, lease_args, millis, parse_claim, parse_positions, parse_report, ClaimMode, Claimed,
    Dropped,
};
use crate::{scripts, RedisBackend};
use qtasks_core::backend::Held;

/// The longest an idle worker blocks on its wake-up before looking again (a safety net for a
/// silently broken connection; wake-ups and due times normally end the wait much sooner).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// Most tasks in one enqueue script call.
const ENQUEUE_CHUNK: usize = 2000;

/// Logs and counts each entry a script took out of the queue (dead-lettered or dropped), once:
/// the script that did it reports it, with the task's name when the record had one, to the
/// process that called it, and to no other.
pub(crate) fn log_dropped(prefix: &str, report: &[Dropped]) {
    for d in report {
        if let Some(reason) = DeadLetterReason::parse(&d.reason) {
            qtasks_core::observe::dead_lettered(d.task.as_deref(), reason);
        }
        tracing::error!(
            app_keys = %prefix,
            entry = %d.entry,
            task_name = d.task.as_deref().unwrap_or(""),
            reason = %d.reason,
            "an entry was taken out of the queue: {}",
            d.detail
        );
    }
}

/// The complete script's latency argument: `<minute ms> <q|e><bucket> <count>` triples.
fn latency_arg(batch: &LatencyBatch) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (minute, kind, bucket, n) in &batch.counts {
        let _ = write!(out, "{minute} {}{bucket} {n} ", kind.as_str());
    }
    out.into_bytes()
}

impl RedisBackend {
    /// One claim attempt (`idle`: this process holds no task, so it may take a suspect), the
    /// first `start` claimed marked started.
    async fn claim_once(&self, max: usize, idle: bool, start: usize) -> Result<Claimed> {
        self.turn_index_on().await?;
        let args = vec![
            max.to_string().into_bytes(),
            millis(self.options.lease).to_string().into_bytes(),
            self.options.max_deliveries.to_string().into_bytes(),
            self.options.dead_letter_max.to_string().into_bytes(),
            if idle { b"1".to_vec() } else { b"0".to_vec() },
            self.caller.as_bytes().to_vec(),
            start.to_string().into_bytes(),
            self.limits.lock().clone(),
            self.queue_order(),
        ];
        let reply: Value = self
            .eval("broker", "claiming tasks", &scripts::CLAIM, args)
            .await?;
        let mut claimed = parse_claim(reply, start).map_err(|m| Error::backend("broker", m))?;
        log_dropped(&self.prefix, &claimed.report);
        if !claimed.undecodable.is_empty() {
            self.dead_letter_undecodable(std::mem::take(&mut claimed.undecodable))
                .await;
        }
        Ok(claimed)
    }

    /// The queues the next claim takes from, in order, as claim.lua reads them.
    fn queue_order(&self) -> Vec<u8> {
        let mut turns = self.queues.lock();
        if turns.selection().is_default_only() {
            return Vec::new();
        }
        let order = turns.next_order();
        let names = &turns.selection().queues;
        let mut out = Vec::new();
        for (k, i) in order.into_iter().enumerate() {
            if k > 0 {
                out.push(0x1e);
            }
            out.extend_from_slice(names[i].0.as_bytes());
        }
        out
    }

    /// [`Broker::claim_starting`]: claims until something is claimed, waiting on wake-ups.
    async fn claim_starting_now(&self, max: usize, start: usize) -> Result<(Vec<Delivery>, usize)> {
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
            let idle = self.held.is_idle();
            let claimed = self.claim_once(max.max(1), idle, start).await?;
            if !claimed.deliveries.is_empty() {
                let suspect = claimed.mode == ClaimMode::Suspect;
                self.held
                    .claimed_starting(&claimed.deliveries, suspect, claimed.started);
                return Ok((claimed.deliveries, claimed.started));
            }
            if claimed.mode == ClaimMode::Drain && !idle {
                // A suspect waits for an idle worker: this process finishes what it holds
                // (at most a lease), then claims again as idle.
                self.held.wait_until(lease, Held::is_idle).await;
                continue;
            }
            let block = claimed
                .due_in
                .map(|ms| Duration::from_millis(ms).min(MAX_BLOCK))
                .unwrap_or(MAX_BLOCK);
            self.block_on_wake(block).await?;
        }
    }

    /// Claimed entries that cannot be decoded (a script and decoder out of step): each is
    /// logged, and dead-lettered through its lease when that can be read; the others are
    /// returned when their lease expires.
    async fn dead_letter_undecodable(&self, bad: Vec<(Option<Lease>, String)>) {
        let mut done = Vec::new();
        for (lease, why) in bad {
            match lease {
                Some(lease) => {
                    tracing::error!(task_uuid = %lease.uuid, reason = "malformed_record", "a claimed task cannot be decoded, so it goes to the dead-letter: {why}");
                    done.push(Completion {
                        lease,
                        outcome: Outcome::DeadLetter {
                            reason: DeadLetterReason::MalformedRecord,
                            traceback: format!(
                                "malformed_record: the claimed task cannot be decoded: {why}; the task is kept in the dead-letter and not run"
                            ),
                        },
                        run: None,
                    });
                }
                None => {
                    tracing::error!(reason = "malformed_record", "a claimed entry cannot be decoded and has no readable lease; it returns to the queue when its lease expires: {why}");
                }
            }
        }
        if !done.is_empty() {
            if let Err(e) = Broker::complete(self, &done).await {
                tracing::error!(error = %e, count = done.len(), "cannot dead-letter the claimed tasks that cannot be decoded; they return to the queue when their lease expires");
            }
        }
    }

    /// Blocks until an enqueue (or a returned lease, or a retry) pushes a wake-up, or `block`
    /// passes. A wait shorter than [`TIMER_WAIT`] (the next rate-limit permit, a task due in a
    /// moment) is a timer in this process instead: Redis ends a blocked command's timeout only
    /// on its server tick (`hz`, 100 ms by default), which would make a limit of 50/s run at
    /// half its rate. What arrives meanwhile waits at most that short time.
    async fn block_on_wake(&self, block: Duration) -> Result<()> {
        if block < TIMER_WAIT {
            tokio::time::sleep(block).await;
            return Ok(());
        }
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
}

/// A task's flow keys as enqueue.lua reads them: `1`, then unique key, hold ms after the end,
/// debounce ms, concurrency key, rate key, named queue, throttle ms (empty or 0 when not set).
fn push_flow(args: &mut Vec<Vec<u8>>, flow: &qtasks_core::control::FlowKeys) {
    let text = |key: Option<&str>| key.unwrap_or_default().as_bytes().to_vec();
    let ms = |d: Option<Duration>| d.map(millis).unwrap_or(0).to_string().into_bytes();
    args.push(b"1".to_vec());
    args.push(text(flow.unique.as_deref()));
    args.push(ms(Some(flow.hold_after)));
    args.push(ms(flow.debounce));
    args.push(text(flow.concurrency_key.as_deref()));
    args.push(text(flow.rate_key.as_deref()));
    args.push(text(flow.queue));
    args.push(ms(flow.throttle));
}

/// Waits shorter than this are timers in the claiming process (see `block_on_wake`).
const TIMER_WAIT: Duration = Duration::from_millis(200);

impl Broker for RedisBackend {
    fn enqueue<'a>(&'a self, tasks: &'a [NewTask]) -> BoxFuture<'a, Result<Vec<Existing>>> {
        Box::pin(async move {
            self.turn_index_on().await?;
            let now = SystemTime::now();
            let mut existing = Vec::new();
            for (number, chunk) in tasks.chunks(ENQUEUE_CHUNK).enumerate() {
                // A flow field per task only when a task of the batch has flow keys.
                let flowing = chunk.iter().any(|t| t.flow.is_some());
                let mut args = Vec::with_capacity(1 + chunk.len() * 6);
                args.push(if flowing { b"1".to_vec() } else { Vec::new() });
                for t in chunk {
                    let delay = t
                        .not_before
                        .and_then(|at| at.duration_since(now).ok())
                        .map(millis)
                        .unwrap_or(0);
                    args.push(t.uuid.hyphenated().to_string().into_bytes());
                    args.push(t.task_name.as_bytes().to_vec());
                    args.push(t.priority.to_string().into_bytes());
                    args.push(envelope::stored_args(t).into_owned());
                    args.push(epoch_ms(t.created_at).to_string().into_bytes());
                    args.push(delay.to_string().into_bytes());
                    match &t.flow {
                        None if flowing => args.push(Vec::new()),
                        None => {}
                        Some(flow) => push_flow(&mut args, flow),
                    }
                }
                let what = match chunk {
                    [one] => format!("enqueueing task {:?} ({})", one.task_name, one.uuid),
                    _ => format!("enqueueing {} tasks", chunk.len()),
                };
                let reply: (i64, Vec<(usize, String)>) =
                    self.eval("broker", &what, &scripts::ENQUEUE, args).await?;
                for (index, holder) in reply.1 {
                    let uuid = Uuid::parse_str(&holder).map_err(|_| {
                        Error::backend(
                            "broker",
                            format!("the enqueue script named a unique key's holder {holder:?}, which is not a uuid"),
                        )
                    })?;
                    existing.push(Existing {
                        index: number * ENQUEUE_CHUNK + index,
                        uuid,
                    });
                }
            }
            Ok(existing)
        })
    }

    fn set_queues(&self, queues: &QueueSelection) -> Result<()> {
        *self.queues.lock() = QueueTurns::new(queues.clone());
        Ok(())
    }

    fn set_limits(&self, limits: &[TaskLimits]) -> Result<()> {
        // One line per limited task name, sent with every claim: `name` 0x1F concurrency
        // 0x1F per key (1/0) 0x1F rate interval ms 0x1F per key, lines joined by 0x1E.
        let mut rules = String::new();
        for l in limits {
            if !rules.is_empty() {
                rules.push('\u{1e}');
            }
            let interval = l.rate.map(|r| r.interval().as_secs_f64() * 1000.0);
            rules.push_str(&format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
                l.task_name,
                l.concurrency.map(|c| c.to_string()).unwrap_or_default(),
                u8::from(l.concurrency_per_key),
                interval.map(|ms| format!("{ms:.3}")).unwrap_or_default(),
                u8::from(l.rate_per_key),
            ));
        }
        *self.limits.lock() = rules.into_bytes();
        Ok(())
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
            let mut args = Vec::with_capacity(3 + done.len() * 6);
            args.push(self.ttl_ms().to_string().into_bytes());
            args.push(self.options.dead_letter_max.to_string().into_bytes());
            // The history and latency, while the last reply said they are kept.
            let runs = self.runs_kept.load(std::sync::atomic::Ordering::Relaxed);
            args.push(if runs {
                latency_arg(&LatencyBatch::of(done))
            } else {
                Vec::new()
            });
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
                    Outcome::Later { delay } => {
                        (b"l", Vec::new(), millis(*delay).to_string().into_bytes())
                    }
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
                args.push(
                    c.run
                        .as_ref()
                        .filter(|_| runs)
                        .map(|run| encode_attempt(run, c.outcome.status()).into_bytes())
                        .unwrap_or_default(),
                );
            }
            let reply: Value = self
                .eval(
                    "broker",
                    "acknowledging finished tasks",
                    &scripts::COMPLETE,
                    args,
                )
                .await?;
            let leases: Vec<Lease> = done.iter().map(|c| c.lease).collect();
            let (rejected, report) =
                parse_positions(&reply, &leases).map_err(|m| Error::backend("broker", m))?;
            if let Value::Array(parts) = &reply {
                if let Some(Value::Int(kept)) = parts.get(2) {
                    self.runs_kept
                        .store(*kept == 1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            log_dropped(&self.prefix, &report);
            self.held.gone(&leases);
            Ok(rejected)
        })
    }

    fn progress<'a>(
        &'a self,
        lease: Lease,
        value: &'a qtasks_core::Payload,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let args = vec![
                lease.uuid.hyphenated().to_string().into_bytes(),
                lease.token.to_string().into_bytes(),
                value.as_bytes().to_vec(),
            ];
            let what = format!("storing the progress of task {}", lease.uuid);
            let stored: i64 = self.eval("broker", &what, &scripts::PROGRESS, args).await?;
            Ok(stored == 1)
        })
    }

    fn requeue<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(());
            }
            let mut args = vec![self.options.dead_letter_max.to_string().into_bytes()];
            args.extend(lease_args(leases));
            let reply: Result<Value> = self
                .eval(
                    "broker",
                    "returning tasks to the queue",
                    &scripts::REQUEUE,
                    args,
                )
                .await;
            // Given back either way: a requeue that failed leaves the tasks to their leases.
            self.held.gone(leases);
            if let Value::Array(parts) = reply? {
                if let Some(report) = parts.get(1) {
                    log_dropped(&self.prefix, &parse_report(report));
                }
            }
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
            type Counts = (Vec<(i32, u64)>, u64, u64, u64, Vec<(String, u64)>);
            let (ready, scheduled, running, dead_letter, queues): Counts = self
                .eval("broker", "reading queue stats", &scripts::STATS, Vec::new())
                .await?;
            Ok(QueueStats {
                ready_by_priority: ready.into_iter().filter(|(_, n)| *n > 0).collect(),
                ready_by_queue: queues.into_iter().filter(|(_, n)| *n > 0).collect(),
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

    fn retry_dead<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(self.retry_failed(uuids))
    }

    fn delete<'a>(&'a self, uuids: &'a [Uuid]) -> BoxFuture<'a, Result<Vec<Uuid>>> {
        Box::pin(self.delete_finished(uuids))
    }

    fn purge<'a>(&'a self, purge: &'a Purge) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.purge_finished(purge))
    }

    fn set_paused<'a>(
        &'a self,
        target: &'a PauseTarget,
        paused: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.pause(target, paused))
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Pauses>> {
        Box::pin(self.paused())
    }

    fn started<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(Vec::new());
            }
            let mut args = vec![
                self.options.max_deliveries.to_string().into_bytes(),
                self.options.dead_letter_max.to_string().into_bytes(),
            ];
            args.extend(lease_args(leases));
            let reply: Value = self
                .eval("broker", "recording task starts", &scripts::STARTED, args)
                .await?;
            let (lost, report) =
                parse_positions(&reply, leases).map_err(|m| Error::backend("broker", m))?;
            log_dropped(&self.prefix, &report);
            self.held.note_lost(leases, &lost, true);
            Ok(lost)
        })
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>>> {
        Box::pin(async move {
            let mut args = vec![
                millis(self.options.lease).to_string().into_bytes(),
                self.options.max_deliveries.to_string().into_bytes(),
                self.options.dead_letter_max.to_string().into_bytes(),
            ];
            args.extend(lease_args(leases));
            let reply: Value = self
                .eval("broker", "renewing leases", &scripts::RENEW, args)
                .await?;
            let (lost, report) =
                parse_positions(&reply, leases).map_err(|m| Error::backend("broker", m))?;
            log_dropped(&self.prefix, &report);
            self.held.note_lost(leases, &lost, false);
            Ok(lost)
        })
    }

    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        Some(self.notifier.cancel_requests())
    }
}
