//! The Redis backend of qtasks: broker, storage and global config on one Redis server,
//! shared by every producer and worker process of an app.
//!
//! Picked with the facade feature `redis` and a URL:
//! `App::builder().name("shop").broker_url("redis://127.0.0.1:6379/0").build()?`.
//!
//! Delivery is **at least once**: a task is never only in a worker's memory. Every state
//! change is one Lua script call per batch (enqueue, claim, acknowledge, renew, requeue,
//! cancel); claimed tasks hold a lease that the worker renews, and a task whose worker died
//! is returned to the queue when its lease expires. Each claim carries a fencing token, so a
//! worker that was frozen past its lease cannot overwrite the result of the worker that ran
//! the task again. See `docs/redis.md` for the key layout and production settings.
//!
//! Settings beyond the app's [`Config`] come from the URL's query string (or
//! [`RedisOptions`] with [`RedisBackend::new`]): `lease_ms`, `max_deliveries`,
//! `dead_letter_max`, for example `redis://127.0.0.1:6379/0?lease_ms=10000`.
#![warn(missing_docs)]

mod conn;
mod notify;
mod scripts;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::{FromRedisValue, Script, Value};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use qtasks_core::backend::{
    Backend, BackendFactory, Broker, CancelOutcome, CancelRequest, Completion, Delivery,
    GlobalConfig, Lease, NewTask, OpenRequest, Outcome, QueueStats, Storage, BACKENDS,
};
use qtasks_core::{Config, Error, Payload, Result, Task, TaskStatus};
use uuid::Uuid;

use crate::conn::Connections;

use crate::notify::Notifier;
/// The `redis` crate this backend uses, for direct access to the same server.
pub use deadpool_redis::redis;

/// The longest an idle worker blocks on its wake-up before looking again (a safety net for a
/// silently broken connection; wake-ups and due times normally end the wait much sooner).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// Most tasks in one enqueue script call.
const ENQUEUE_CHUNK: usize = 2000;

/// Settings of the Redis backend that the app's [`Config`] does not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// How long a claim lasts without renewal. Workers renew every third of it; a task whose
    /// worker died runs again after at most this long (plus the time until another worker
    /// looks, which idle workers do exactly at the deadline). URL: `lease_ms`. Default 30 s.
    pub lease: Duration,
    /// How many times a task whose lease expired is returned to the queue; the next expiry
    /// sends it to the dead-letter. URL: `max_deliveries`. Default 5.
    pub max_deliveries: u32,
    /// How many dead-lettered tasks are kept (oldest dropped first). URL: `dead_letter_max`.
    /// Default 10,000.
    pub dead_letter_max: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter_max: 10_000,
        }
    }
}

impl RedisOptions {
    /// Splits our settings off a URL's query string; returns the URL for the Redis client.
    pub fn from_url(url: &str) -> Result<(RedisOptions, String)> {
        let mut options = RedisOptions::default();
        let Some((base, query)) = url.split_once('?') else {
            return Ok((options, url.to_string()));
        };
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |expected: &str| Error::Config {
                key: format!("broker_url ?{key}"),
                value: value.to_string(),
                expected: expected.to_string(),
            };
            match key {
                "lease_ms" => {
                    let ms: u64 = value
                        .parse()
                        .ok()
                        .filter(|ms| *ms >= 10)
                        .ok_or_else(|| bad("a lease in milliseconds, at least 10"))?;
                    options.lease = Duration::from_millis(ms);
                }
                "max_deliveries" => {
                    options.max_deliveries = value
                        .parse()
                        .map_err(|_| bad("a whole number of redeliveries"))?
                }
                "dead_letter_max" => {
                    options.dead_letter_max = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a whole number of at least 1"))?
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        Ok((options, url))
    }
}

/// The Redis broker, storage and global config of one app.
pub struct RedisBackend {
    conns: Arc<Connections>,
    notifier: Notifier,
    prefix: String,
    options: RedisOptions,
    result_ttl: Duration,
}

impl RedisBackend {
    /// Connects lazily to the Redis server at `url` (the first call opens the connection), for
    /// the app named `app_name`: every key starts with `{app_name}:`.
    pub fn new(
        url: &str,
        app_name: &str,
        config: &Config,
        options: RedisOptions,
    ) -> Result<Arc<Self>> {
        let client = redis::Client::open(url).map_err(|e| Error::Config {
            key: "broker_url".into(),
            value: hide_password(url),
            expected: format!("a Redis URL such as redis://127.0.0.1:6379/0 ({e})"),
        })?;
        let prefix = key_prefix(app_name);
        let conns = Arc::new(Connections::new(client, hide_password(url)));
        Ok(Arc::new(RedisBackend {
            notifier: Notifier::new(conns.clone(), &prefix),
            conns,
            prefix,
            options,
            result_ttl: config.result_ttl,
        }))
    }

    /// The backend's components, for `App::builder().backend(..)`.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_shared(self.clone())
    }

    /// The prefix of every key of this app: `{app}:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The settings in use.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

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

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn record_key(&self, uuid: Uuid) -> String {
        format!("{}t:{}", self.prefix, uuid.hyphenated())
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.result_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Runs a script on the shared connection (EVALSHA, loading the script when Redis lacks it).
    async fn eval<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        script: &Script,
        args: Vec<Vec<u8>>,
    ) -> Result<T> {
        let mut invocation = script.key(self.key("prios"));
        invocation.arg(self.prefix.as_str());
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self
            .conns
            .shared()
            .await
            .map_err(|e| self.conns.error(component, what, &e))?;
        invocation.invoke_async(&mut conn).await.map_err(|e| {
            self.conns.discard_shared(&e);
            self.conns.error(component, what, &e)
        })
    }

    /// Runs one command on the shared connection.
    async fn query<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self
            .conns
            .shared()
            .await
            .map_err(|e| self.conns.error(component, what, &e))?;
        cmd.query_async(&mut conn).await.map_err(|e| {
            self.conns.discard_shared(&e);
            self.conns.error(component, what, &e)
        })
    }

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
            .map_err(|e| self.conns.error("broker", what, &e))?;
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(self.key("wake")).arg(block.as_secs_f64());
        let reply = tokio::time::timeout(
            block + Duration::from_secs(5),
            cmd.query_async::<Value>(&mut conn),
        )
        .await;
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

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut args = vec![
                millis(self.options.lease).to_string().into_bytes(),
                self.options.max_deliveries.to_string().into_bytes(),
                self.options.dead_letter_max.to_string().into_bytes(),
            ];
            args.extend(lease_args(leases));
            let renewed: i64 = self
                .eval("broker", "renewing leases", &scripts::RENEW, args)
                .await?;
            let lost = leases.len().saturating_sub(renewed.max(0) as usize);
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "some leases could not be renewed: they expired and the tasks were given to another worker; their results will be rejected"
                );
            }
            Ok(())
        })
    }

    fn cancel_requests(&self) -> Option<BoxStream<'static, CancelRequest>> {
        Some(self.notifier.cancel_requests())
    }
}

impl Storage for RedisBackend {
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<Task>>> {
        Box::pin(async move {
            let fields: HashMap<String, Vec<u8>> = self
                .query(
                    "storage",
                    &format!("reading task {uuid}"),
                    redis::cmd("HGETALL").arg(self.record_key(uuid)),
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
            loop {
                // Registered before reading, so a completion in between is not missed.
                let notified = self.notifier.register(uuid);
                let task = Storage::get(self, uuid).await;
                let task = match task {
                    Ok(Some(task)) => task,
                    Ok(None) => {
                        self.notifier.prune(uuid);
                        return Err(Error::NotFound(uuid));
                    }
                    Err(e) => {
                        self.notifier.prune(uuid);
                        return Err(e);
                    }
                };
                if task.status.is_final() {
                    drop(notified);
                    self.notifier.prune(uuid);
                    return Ok(Some(task));
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    self.notifier.prune(uuid);
                    return Ok(None);
                }
            }
        })
    }
}

impl GlobalConfig for RedisBackend {
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.query(
                "global_config",
                &format!("setting {key:?}"),
                redis::cmd("HSET").arg(self.key("kv")).arg(key).arg(value),
            )
            .await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            self.query(
                "global_config",
                &format!("reading {key:?}"),
                redis::cmd("HGET").arg(self.key("kv")).arg(key),
            )
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.query(
                "global_config",
                &format!("deleting {key:?}"),
                redis::cmd("HDEL").arg(self.key("kv")).arg(key),
            )
            .await
        })
    }

    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(async move {
            self.query(
                "global_config",
                "reading every key",
                redis::cmd("HGETALL").arg(self.key("kv")),
            )
            .await
        })
    }

    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let set: Option<String> = self
                .query(
                    "global_config",
                    &format!("claiming {key:?}"),
                    redis::cmd("SET")
                        .arg(self.key(&format!("claim:{key}")))
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(ttl).max(1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let args = vec![
                worker.as_bytes().to_vec(),
                millis(ttl).to_string().into_bytes(),
            ];
            let _: i64 = self
                .eval(
                    "global_config",
                    "recording a heartbeat",
                    &scripts::HEARTBEAT,
                    args,
                )
                .await?;
            Ok(())
        })
    }

    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut workers: Vec<String> = self
                .eval(
                    "global_config",
                    "listing live workers",
                    &scripts::LIVE_WORKERS,
                    Vec::new(),
                )
                .await?;
            workers.sort();
            Ok(workers)
        })
    }
}

fn key_prefix(app_name: &str) -> String {
    format!("{{{app_name}}}:")
}

fn lease_args(leases: &[Lease]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(leases.len() * 2);
    for lease in leases {
        args.push(lease.uuid.hyphenated().to_string().into_bytes());
        args.push(lease.token.to_string().into_bytes());
    }
    args
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

fn from_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_claim(reply: Value) -> std::result::Result<(Vec<Delivery>, Option<u64>), String> {
    let bad = || format!("unexpected reply to the claim script: {reply:?}");
    let Value::Array(parts) = &reply else {
        return Err(bad());
    };
    let [Value::Int(wait), Value::Array(items)] = parts.as_slice() else {
        return Err(bad());
    };
    let mut deliveries = Vec::with_capacity(items.len() / 6);
    for item in items.chunks_exact(6) {
        let [Value::BulkString(id), Value::BulkString(name), Value::BulkString(prio), args, Value::Int(attempt), Value::BulkString(token)] =
            item
        else {
            return Err(bad());
        };
        let args = match args {
            Value::BulkString(bytes) => bytes.clone(),
            _ => Vec::new(),
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        deliveries.push(Delivery {
            uuid: Uuid::try_parse_ascii(id).map_err(|_| bad())?,
            task_name: text(name).into(),
            priority: text(prio).parse().map_err(|_| bad())?,
            args: Payload::from_bytes(args),
            attempt: u32::try_from(*attempt).unwrap_or(u32::MAX),
            token: text(token).parse().map_err(|_| bad())?,
        });
    }
    let due_in = u64::try_from(*wait).ok();
    Ok((deliveries, due_in))
}

fn decode_record(
    uuid: Uuid,
    mut fields: HashMap<String, Vec<u8>>,
) -> std::result::Result<Task, String> {
    let args = Payload::from_bytes(fields.remove("a").unwrap_or_default());
    let returning = fields.remove("r").map(Payload::from_bytes);
    let text = |name: &str| {
        fields
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let number = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let status_text = text("s").unwrap_or_default();
    let status = TaskStatus::parse(&status_text)
        .ok_or_else(|| format!("task {uuid} has an unknown status {status_text:?} in Redis"))?;
    let mut task = Task::new(
        uuid,
        text("n").unwrap_or_default(),
        text("p").and_then(|p| p.parse().ok()).unwrap_or(0),
        args,
        from_epoch_ms(number(text("c"))),
    );
    task.status = status;
    task.updated_at = match text("u") {
        Some(u) => from_epoch_ms(number(Some(u))),
        None => task.created_at,
    };
    task.attempts = u32::try_from(number(text("at"))).unwrap_or(u32::MAX);
    task.traceback = text("tb");
    task.cancel_reason = text("cr");
    if let Some(reason) = text("dr") {
        task.extra.insert("dead_letter".into(), reason);
    }
    task.returning = returning;
    Ok(task)
}

fn open(request: &OpenRequest<'_>) -> Result<Backend> {
    let url = request.url.unwrap_or("redis://127.0.0.1:6379/0");
    let (options, url) = RedisOptions::from_url(url)?;
    Ok(RedisBackend::new(&url, request.app_name, request.config, options)?.backend())
}

#[linkme::distributed_slice(BACKENDS)]
static REDIS: BackendFactory = BackendFactory {
    scheme: "redis",
    open,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_split_off() {
        let (o, url) =
            RedisOptions::from_url("redis://h:1/0?lease_ms=500&protocol=resp3&max_deliveries=2")
                .unwrap();
        assert_eq!(o.lease, Duration::from_millis(500));
        assert_eq!(o.max_deliveries, 2);
        assert_eq!(url, "redis://h:1/0?protocol=resp3");
        let err = RedisOptions::from_url("redis://h/0?lease_ms=abc").unwrap_err();
        assert!(err.to_string().contains("lease_ms"), "{err}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(hide_password("redis://host/0"), "redis://host/0");
    }
}
