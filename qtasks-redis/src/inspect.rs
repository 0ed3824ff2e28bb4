//! Inspection and administration: listing from the per-status indexes (`ix:<status>` zsets,
//! scored by the ms of the record's last change) and, for running tasks, from the `run` hash
//! (a claim writes no index entry: a claimed task stays in `ix:new` or `ix:retry` until it
//! finishes), counts per status, finished tasks per minute, retrying and deleting failed
//! tasks, purging finished ones, and pauses (the `paused` hash, which `claim.lua` reads).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use std::time::SystemTime;

use deadpool_redis::redis::{self, Value};
use qtasks_core::backend::inspect::{
    latency_minutes, minute_buckets, unix_ms, Cursor, LatencyKind, MinuteCount, MinuteLatency,
    PauseTarget, Pauses, Purge, TaskPage, TaskQuery, ALL_STATUSES,
};
use qtasks_core::{Error, Result, Task, TaskStatus};
use uuid::Uuid;

use crate::broker::log_dropped;
use crate::wire::{decode_record, glob_escape, parse_report};
use crate::{scripts, RedisBackend};

/// A record's fields as `HGETALL` reads them.
type RecordFields = HashMap<String, Vec<u8>>;

/// Index entries read per round trip of a listing.
const BATCH: usize = 200;
/// The most index entries one listing request reads per status; past it the page ends early
/// (with a `next` cursor) so that a filter that matches little cannot make a request slow.
const SCAN_MAX: usize = 10_000;
/// Records one purge call deletes per status.
const PURGE_CHUNK: usize = 1000;
/// The field of the `paused` hash that pauses the whole app.
const APP_FIELD: &str = "*";
/// The prefix of the `paused` hash fields that pause a named queue (0x1E, which no task name
/// holds, then the queue).
const QUEUE_FIELD: &str = "\u{1e}";

impl RedisBackend {
    /// The index key of a status.
    fn index_key(&self, status: TaskStatus) -> String {
        self.key(&format!("ix:{status}"))
    }

    /// Runs a pipeline on the shared connection.
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        what: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut conn = self
            .conns
            .shared()
            .await
            .map_err(|e| self.conns.connect_error("storage", what, &e))?;
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| self.conns.error("storage", what, &e))
    }

    /// Drops the index entries of finished records older than the result TTL (their records
    /// have expired).
    async fn trim_indexes(&self) -> Result<()> {
        let cutoff = unix_ms(SystemTime::now()).saturating_sub(self.ttl_ms());
        let mut pipe = redis::pipe();
        for status in [TaskStatus::Success, TaskStatus::Error, TaskStatus::Cancel] {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(self.index_key(status))
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .ignore();
        }
        self.pipeline::<()>("trimming the status indexes", &pipe)
            .await
    }

    /// The current claims (the `run` hash): uuid and the ms each was claimed, newest first.
    async fn running(&self) -> Result<Vec<(Uuid, u64)>> {
        let key = self.key("run");
        let runs: HashMap<String, String> = self
            .query_key(
                "storage",
                "reading the running tasks",
                &key,
                "the current claims (hash)",
                redis::cmd("HGETALL").arg(&key),
            )
            .await?;
        let mut out: Vec<(Uuid, u64)> = runs
            .iter()
            .filter_map(|(id, run)| {
                let claimed = run.rsplit(':').next()?.parse().ok()?;
                Some((Uuid::try_parse(id).ok()?, claimed))
            })
            .collect();
        out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        Ok(out)
    }

    /// Turns the status indexes on for the app when this process has `status_index` (once).
    pub(crate) async fn turn_index_on(&self) -> Result<()> {
        if !self.options.status_index || self.index_on.load(Ordering::Relaxed) {
            return Ok(());
        }
        let key = self.key("ixon");
        self.query::<()>(
            "broker",
            "turning the status indexes on",
            redis::cmd("SET").arg(&key).arg(1),
        )
        .await?;
        self.index_on.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the app's status indexes are on (by any process); an error saying how to turn
    /// them on when they are not and `needed`.
    async fn index_is_on(&self, needed: Option<&str>) -> Result<bool> {
        self.turn_index_on().await?;
        let key = self.key("ixon");
        let on: bool = self
            .query(
                "storage",
                "reading whether the status indexes are on",
                redis::cmd("EXISTS").arg(&key),
            )
            .await?;
        match (on, needed) {
            (false, Some(what)) => Err(Error::backend(
                "storage",
                format!(
                    "{what} needs the per-status indexes, which are off for app keys {}*: open the \
                     backend with `status_index=true` in the broker URL \
                     (redis://..?status_index=true) in at least one process of the app; tasks \
                     are indexed from then on",
                    self.prefix
                ),
            )),
            (on, _) => Ok(on),
        }
    }

    /// How many records have each status: the sizes of the indexes, with the claimed tasks
    /// (still in `ix:new` or `ix:retry`) counted as `process`; a SCAN without the indexes.
    pub(crate) async fn count_statuses(&self) -> Result<BTreeMap<String, u64>> {
        if !self.index_is_on(None).await? {
            return self.scan_statuses().await;
        }
        self.trim_indexes().await?;
        let mut pipe = redis::pipe();
        for status in ALL_STATUSES {
            pipe.cmd("ZCARD").arg(self.index_key(status));
        }
        let sizes: Vec<u64> = self.pipeline("counting tasks per status", &pipe).await?;
        let mut counts: Vec<(TaskStatus, u64)> = ALL_STATUSES.into_iter().zip(sizes).collect();
        let running = self.running().await?;
        if !running.is_empty() {
            let mut pipe = redis::pipe();
            for (uuid, _) in &running {
                pipe.cmd("ZSCORE")
                    .arg(self.index_key(TaskStatus::Retry))
                    .arg(uuid.hyphenated().to_string());
            }
            let in_retry: Vec<Option<f64>> = self.pipeline("counting running tasks", &pipe).await?;
            let from_retry = in_retry.iter().filter(|s| s.is_some()).count() as u64;
            let from_new = running.len() as u64 - from_retry;
            for (status, n) in &mut counts {
                *n = match status {
                    TaskStatus::New => n.saturating_sub(from_new),
                    TaskStatus::Retry => n.saturating_sub(from_retry),
                    TaskStatus::Process => running.len() as u64,
                    _ => *n,
                };
            }
        }
        Ok(counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.to_string(), n))
            .collect())
    }

    /// The records of `uuids`, each with its claim (see [`decode_record`]); `None` for one
    /// that is gone or cannot be read.
    async fn records(&self, uuids: &[Uuid]) -> Result<Vec<Option<Task>>> {
        if uuids.is_empty() {
            return Ok(Vec::new());
        }
        let run = self.key("run");
        let mut pipe = redis::pipe();
        for uuid in uuids {
            pipe.cmd("HGETALL").arg(self.record_key(*uuid));
            pipe.cmd("HGET")
                .arg(&run)
                .arg(uuid.hyphenated().to_string());
        }
        let records: Vec<(RecordFields, Option<Vec<u8>>)> =
            self.pipeline("reading listed tasks", &pipe).await?;
        Ok(uuids
            .iter()
            .zip(records)
            .map(|(uuid, (fields, run))| {
                if fields.is_empty() {
                    return None; // expired since
                }
                decode_record(*uuid, fields, run.as_deref())
                    .map_err(|problem| {
                        tracing::debug!(task_uuid = %uuid, problem, "unreadable record left out of a listing")
                    })
                    .ok()
            })
            .collect())
    }

    /// The running tasks that `query` selects, newest claim first, at most `max`.
    async fn select_running(&self, query: &TaskQuery, max: usize) -> Result<Vec<Task>> {
        let upper = query.upper_bound();
        let lower = query.lower_ms();
        let wanted: Vec<Uuid> = self
            .running()
            .await?
            .into_iter()
            .filter(|(uuid, at_ms)| {
                let here = Cursor {
                    at_ms: *at_ms,
                    uuid: *uuid,
                };
                *at_ms >= lower && upper.is_none_or(|u| here < u)
            })
            .map(|(uuid, _)| uuid)
            .collect();
        let mut out = Vec::new();
        for chunk in wanted.chunks(BATCH) {
            for task in self.records(chunk).await?.into_iter().flatten() {
                if task.status == TaskStatus::Process && query.matches(&task) {
                    out.push(task);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// One page of the listing.
    pub(crate) async fn list_page(&self, query: &TaskQuery) -> Result<TaskPage> {
        self.index_is_on(Some("listing tasks")).await?;
        self.trim_indexes().await?;
        let size = query.page_size();
        let statuses: Vec<TaskStatus> = match query.status {
            Some(s) => vec![s],
            None => ALL_STATUSES.to_vec(),
        };
        let mut candidates = Vec::new();
        let mut early_end = None;
        for status in statuses {
            if status == TaskStatus::Process {
                candidates.extend(self.select_running(query, size + 1).await?);
                continue;
            }
            let (found, stopped_at) = self.select(status, query, size + 1).await?;
            candidates.extend(found);
            if query.status.is_some() {
                early_end = stopped_at;
            }
        }
        let mut page = TaskPage::from_candidates(candidates, size);
        if page.next.is_none() && page.tasks.len() < size {
            page.next = early_end;
        }
        Ok(page)
    }

    /// The records of `status` that `query` selects, newest first, at most `max`; and where
    /// the walk stopped when it read [`SCAN_MAX`] entries first.
    async fn select(
        &self,
        status: TaskStatus,
        query: &TaskQuery,
        max: usize,
    ) -> Result<(Vec<Task>, Option<Cursor>)> {
        let key = self.index_key(status);
        let upper = query.upper_bound();
        let top = upper.map_or_else(|| "+inf".to_string(), |c| c.at_ms.to_string());
        let bottom = query.lower_ms().to_string();
        let mut out = Vec::new();
        let mut offset = 0;
        let mut scanned = 0;
        loop {
            let entries: Vec<(String, u64)> = self
                .query_key(
                    "storage",
                    "listing tasks",
                    &key,
                    "a status index (sorted set)",
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&key)
                        .arg(&top)
                        .arg(&bottom)
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(BATCH),
                )
                .await?;
            let fetched = entries.len();
            offset += fetched;
            scanned += fetched;
            let wanted: Vec<(Uuid, u64)> = entries
                .iter()
                .filter_map(|(member, score)| Some((Uuid::try_parse(member).ok()?, *score)))
                .filter(|(uuid, at_ms)| {
                    let here = Cursor {
                        at_ms: *at_ms,
                        uuid: *uuid,
                    };
                    upper.is_none_or(|u| here < u)
                })
                .collect();
            let uuids: Vec<Uuid> = wanted.iter().map(|(uuid, _)| *uuid).collect();
            for task in self.records(&uuids).await?.into_iter().flatten() {
                // A record whose status changed since it was indexed (or that is claimed) is
                // listed under its current status.
                if task.status == status && query.matches(&task) {
                    out.push(task);
                }
            }
            if out.len() >= max || fetched < BATCH {
                return Ok((out, None));
            }
            if scanned >= SCAN_MAX {
                let last = entries.last().and_then(|(m, s)| {
                    Some(Cursor {
                        at_ms: *s,
                        uuid: Uuid::try_parse(m).ok()?,
                    })
                });
                return Ok((out, last));
            }
        }
    }

    /// How many records of this app are in each status, by a SCAN of the records: only when
    /// the status indexes are off (inspection, never on a hot path).
    async fn scan_statuses(&self) -> Result<BTreeMap<String, u64>> {
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
                // A claimed task is `process` while its `run` entry is there.
                let run = self.key("run");
                let mut pipe = redis::pipe();
                for key in &keys {
                    let uuid = key.rsplit(':').next().unwrap_or_default();
                    pipe.cmd("HGET").arg(key).arg("s");
                    pipe.cmd("HEXISTS").arg(&run).arg(uuid);
                }
                let statuses: Vec<(Option<String>, bool)> =
                    self.pipeline("counting tasks", &pipe).await?;
                for (status, claimed) in statuses {
                    let status = match status {
                        Some(s) if claimed && (s == "new" || s == "retry") => "process".into(),
                        Some(s) => s,
                        None => continue,
                    };
                    *counts.entry(status).or_default() += 1;
                }
            }
            if next == 0 {
                return Ok(counts);
            }
            cursor = next;
        }
    }

    /// Tasks finished per minute, from the `success` and `error` indexes.
    pub(crate) async fn finished_per_minute(&self, minutes: u32) -> Result<Vec<MinuteCount>> {
        self.index_is_on(Some("counting finished tasks per minute"))
            .await?;
        let mut out = minute_buckets(SystemTime::now(), minutes);
        let mut pipe = redis::pipe();
        for bucket in &out {
            for status in [TaskStatus::Success, TaskStatus::Error] {
                pipe.cmd("ZCOUNT")
                    .arg(self.index_key(status))
                    .arg(bucket.minute_ms)
                    .arg(format!("({}", bucket.minute_ms + 60_000));
            }
        }
        let counts: Vec<u64> = self.pipeline("counting finished tasks", &pipe).await?;
        for (bucket, pair) in out.iter_mut().zip(counts.chunks_exact(2)) {
            bucket.success = pair[0];
            bucket.error = pair[1];
        }
        Ok(out)
    }

    /// The latency per minute, from the `lat:<minute>` hashes the complete script adds each
    /// acknowledged batch's counts to (one pipelined `HGETALL` per minute).
    pub(crate) async fn latency_per_minute(&self, minutes: u32) -> Result<Vec<MinuteLatency>> {
        let now = SystemTime::now();
        let starts: Vec<u64> = minute_buckets(now, minutes)
            .iter()
            .map(|b| b.minute_ms)
            .collect();
        let mut pipe = redis::pipe();
        for minute in &starts {
            pipe.cmd("HGETALL")
                .arg(format!("{}lat:{minute}", self.prefix));
        }
        let hashes: Vec<HashMap<String, u64>> = self
            .pipeline("reading the latency per minute", &pipe)
            .await?;
        let counts = starts.iter().zip(&hashes).flat_map(|(minute, fields)| {
            fields.iter().filter_map(move |(field, n)| {
                let kind = LatencyKind::parse(field.get(..1)?)?;
                Some((*minute, kind, field.get(1..)?.parse().ok()?, *n))
            })
        });
        Ok(latency_minutes(now, minutes, counts))
    }

    /// Runs `retry_dead.lua` or `delete.lua` on `uuids`; the uuids it acted on.
    async fn act_on(
        &self,
        script: &redis::Script,
        what: &str,
        uuids: &[Uuid],
    ) -> Result<Vec<Uuid>> {
        if uuids.is_empty() {
            return Ok(Vec::new());
        }
        let args = uuids
            .iter()
            .map(|u| u.hyphenated().to_string().into_bytes())
            .collect();
        let (done, report): (Vec<String>, Value) = self.eval("broker", what, script, args).await?;
        log_dropped(&self.prefix, &parse_report(&report));
        Ok(done
            .iter()
            .filter_map(|u| Uuid::try_parse(u).ok())
            .collect())
    }

    /// Queues failed tasks again.
    pub(crate) async fn retry_failed(&self, uuids: &[Uuid]) -> Result<Vec<Uuid>> {
        self.act_on(&scripts::RETRY_DEAD, "retrying failed tasks", uuids)
            .await
    }

    /// Deletes finished tasks.
    pub(crate) async fn delete_finished(&self, uuids: &[Uuid]) -> Result<Vec<Uuid>> {
        self.act_on(&scripts::DELETE, "deleting tasks", uuids).await
    }

    /// Deletes the finished records `purge` selects, a chunk per call.
    pub(crate) async fn purge_finished(&self, purge: &Purge) -> Result<u64> {
        let statuses: Vec<TaskStatus> = purge
            .statuses
            .iter()
            .copied()
            .filter(|s| s.is_final())
            .collect();
        if statuses.is_empty() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let mut args = vec![
                unix_ms(purge.before).to_string().into_bytes(),
                PURGE_CHUNK.to_string().into_bytes(),
            ];
            args.extend(statuses.iter().map(|s| s.as_str().as_bytes().to_vec()));
            let (deleted, report): (u64, Value) = self
                .eval("broker", "purging finished tasks", &scripts::PURGE, args)
                .await?;
            log_dropped(&self.prefix, &parse_report(&report));
            total += deleted;
            // Each call reads at most a chunk per status: less than that deleted, none left.
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Pauses or resumes claims; a resume wakes an idle worker.
    pub(crate) async fn pause(&self, target: &PauseTarget, paused: bool) -> Result<()> {
        let key = self.key("paused");
        let queue_field;
        let field = match target {
            PauseTarget::App => APP_FIELD,
            PauseTarget::Task(name) => name.as_str(),
            PauseTarget::Queue(name) => {
                queue_field = format!("{QUEUE_FIELD}{name}");
                queue_field.as_str()
            }
        };
        let mut pipe = redis::pipe();
        if paused {
            pipe.cmd("HSET").arg(&key).arg(field).arg(1).ignore();
        } else {
            let wake = self.key("wake");
            pipe.cmd("HDEL").arg(&key).arg(field).ignore();
            pipe.cmd("LPUSH").arg(&wake).arg(1).ignore();
            pipe.cmd("LTRIM").arg(&wake).arg(0).arg(0).ignore();
            pipe.cmd("PEXPIRE").arg(&wake).arg(60_000).ignore();
        }
        self.pipeline::<()>("pausing or resuming claims", &pipe)
            .await
    }

    /// What is paused.
    pub(crate) async fn paused(&self) -> Result<Pauses> {
        let key = self.key("paused");
        let fields: Vec<String> = self
            .query_key(
                "broker",
                "reading the pauses",
                &key,
                "the paused task names (hash)",
                redis::cmd("HKEYS").arg(&key),
            )
            .await?;
        let mut pauses = Pauses::default();
        for field in fields {
            if field == APP_FIELD {
                pauses.app = true;
            } else if let Some(queue) = field.strip_prefix(QUEUE_FIELD) {
                pauses.queues.insert(queue.to_string());
            } else {
                pauses.tasks.insert(field);
            }
        }
        Ok(pauses)
    }
}
