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
//! `dead_letter_max`, `connect_timeout_ms`, `command_timeout_ms`, for example
//! `redis://127.0.0.1:6379/0?lease_ms=10000`.
//!
//! Each script checks every entry it touches on its own: a queue entry that is not a task, a
//! record with a field missing or a priority that is not a number, a key of another type, goes
//! to the dead-letter with a typed reason (and is logged once), and no other entry of the call
//! is stopped, delayed or counted against. A delivery counts towards `max_deliveries` only
//! when the task had started ([`Broker::started`](qtasks_core::backend::Broker::started)); a
//! task whose worker vanished while running it is a *suspect* and runs alone on an idle worker,
//! so a task that crashes its worker takes no other task with it. A full Redis (`maxmemory`,
//! `noeviction`) still lets workers claim, renew and acknowledge; only enqueues are refused.
//!
//! The source, by concern: `options` (settings and URL parsing), `client` (connections,
//! timeouts, and errors that say what to do), `scripts` (the Lua scripts of `lua/`, their
//! flags, and the key layout), `wire` (arguments and replies of the scripts, records, keys),
//! `broker`, `storage` and `global_config` (the component traits), `held` (what this process
//! holds, for the suspects rule), `notify` (pub/sub notifications), and `server` (feature
//! `testing` only), which starts a private `redis-server` for tests and examples.
#![warn(missing_docs)]

mod broker;
mod client;
mod global_config;
mod inspect;
mod notify;
mod options;
mod scripts;
#[cfg(feature = "testing")]
pub mod server;
mod storage;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use qtasks_core::backend::{Backend, BackendFactory, OpenRequest, BACKENDS};
use qtasks_core::{Config, Error, Result};
use uuid::Uuid;

use crate::client::Connections;
use crate::notify::Notifier;
use crate::options::hide_password;
use crate::wire::key_prefix;
use qtasks_core::backend::Held;

/// The `redis` crate this backend uses, for direct access to the same server.
pub use deadpool_redis::redis;
pub use options::RedisOptions;
pub use storage::DeadLetter;

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The Redis broker, storage and global config of one app.
pub struct RedisBackend {
    conns: Arc<Connections>,
    notifier: Notifier,
    prefix: String,
    options: RedisOptions,
    result_ttl: Duration,
    /// What this process holds (a suspect runs alone).
    held: Held,
    /// This backend's id in claims (whose turn it is to drain for a suspect).
    caller: String,
    /// Whether this process has turned the status indexes on (`RedisOptions::status_index`).
    /// Whether the last acknowledgement found the dashboard's indexes on, so that the runs'
    /// history and latency are worth sending with the next (`complete.lua` keeps them only
    /// then); true until the first reply says otherwise.
    runs_kept: std::sync::atomic::AtomicBool,
    index_on: std::sync::atomic::AtomicBool,
    /// The concurrency and rate limits the claims apply, as claim.lua reads them
    /// (`Broker::set_limits`); empty: none.
    limits: parking_lot::Mutex<Vec<u8>>,
    /// The queues claims take from, with their turns (`Broker::set_queues`).
    queues: parking_lot::Mutex<qtasks_core::control::QueueTurns>,
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
        let conns = Arc::new(Connections::new(
            client,
            hide_password(url),
            options.connect_timeout,
            options.command_timeout,
        ));
        Ok(Arc::new(RedisBackend {
            notifier: Notifier::new(conns.clone(), &prefix),
            conns,
            prefix,
            held: Held::new(options.lease),
            caller: Uuid::new_v4().hyphenated().to_string(),
            index_on: std::sync::atomic::AtomicBool::new(false),
            limits: parking_lot::Mutex::new(Vec::new()),
            queues: parking_lot::Mutex::new(qtasks_core::control::QueueTurns::new(
                qtasks_core::control::QueueSelection::equal([qtasks_core::control::DEFAULT_QUEUE]),
            )),
            runs_kept: std::sync::atomic::AtomicBool::new(true),
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
