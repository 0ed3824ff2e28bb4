//! The connection handling: one shared multiplexed connection for every command (requests
//! from all tasks are pipelined on it), and dedicated connections for blocking commands
//! (`BLPOP`), which would otherwise stall everyone else's requests; how the backend runs a
//! command or a script on the shared connection ([`RedisBackend::query`],
//! [`RedisBackend::eval`]); and how a Redis error becomes a [`qtasks_core::Error`] that says
//! what happened and what to do.
//!
//! A connection that fails is dropped and the next call opens a new one, so workers recover
//! from a Redis restart by retrying (with backoff, in the worker), and producers get the error
//! at once: opening a connection gives up after `connect_timeout`, and every command but the
//! blocking wait after `command_timeout` ([`RedisOptions`](crate::RedisOptions)).
//!
//! Why not a deadpool pool for the hot path: a pooled connection answers a `PING` on every
//! checkout (recycling), which would double the round trips of every claim and acknowledgement.
//! A multiplexed connection needs no checkout at all.

use std::time::Duration;

use deadpool_redis::redis::aio::{MultiplexedConnection, PubSub};
use deadpool_redis::redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, Script,
};
use parking_lot::Mutex;
use qtasks_core::Error;

use crate::RedisBackend;

pub(crate) struct Connections {
    client: Client,
    /// The URL without its password, for error messages.
    shown_url: String,
    /// How long connecting may take.
    connect_timeout: Duration,
    /// How long a command on the shared connection may take.
    command_timeout: Duration,
    shared: Mutex<Option<MultiplexedConnection>>,
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

impl Connections {
    pub(crate) fn new(
        client: Client,
        shown_url: String,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Connections {
            client,
            shown_url,
            connect_timeout,
            command_timeout,
            shared: Mutex::new(None),
            blocking: Mutex::new(Vec::new()),
        }
    }

    /// How long a command on the shared connection may take.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The error for a Redis call that failed, naming the server, what happened and what to
    /// do: a connection problem, a timeout (the command may or may not have been applied), a
    /// full Redis, a key of another type in the app's key space.
    pub(crate) fn error(&self, component: &'static str, what: &str, e: &RedisError) -> Error {
        let url = &self.shown_url;
        let detail = e.detail().unwrap_or("").trim();
        let message = match e.code() {
            Some("OOM") => format!(
                "{what} was refused: Redis at {url} is full (its memory use is above `maxmemory`, \
                 and the `noeviction` policy refuses new writes). Tasks already queued still \
                 drain: workers keep claiming, renewing and acknowledging. Retry later; to make \
                 room, raise `maxmemory` (CONFIG SET maxmemory, or redis.conf), shorten \
                 `result_ttl`, or add workers. Do not switch to an eviction policy: it would \
                 delete queued tasks"
            ),
            Some("WRONGTYPE")
                if detail.starts_with("the key") || detail.contains(": another type") =>
            {
                format!("{what} failed on Redis at {url}: {detail}")
            }
            Some("WRONGTYPE") => format!(
                "{what} failed on Redis at {url}: a key this call uses holds another type than \
                 qtasks keeps there ({detail}): something else writes into this app's keys; \
                 give that writer other keys, or give the app another name"
            ),
            Some("READONLY") => format!(
                "{what} failed on Redis at {url}: the server is a read-only replica; point \
                 the app at the primary ({e})"
            ),
            Some("LOADING") => format!(
                "{what} failed on Redis at {url}: Redis is loading its data after a restart; \
                 retry in a moment (workers retry on their own)"
            ),
            _ if e.is_timeout() => format!(
                "{what}: Redis at {url} did not answer within {:?} (`command_timeout_ms`), so \
                 it may or may not have been applied. Retrying an enqueue is safe when the task \
                 has its own id (`.id(..)` or `.idempotency_key(..)`): a retry cannot make a \
                 second task. Check that redis-server is running and not overloaded or paused \
                 (workers retry on their own)",
                self.command_timeout
            ),
            _ if is_connection_error(e) => format!(
                "{what} failed on Redis at {url}: {e}; check that redis-server is running and \
                 reachable (workers retry on their own)"
            ),
            _ => format!("{what} failed on Redis at {url}: {e}"),
        };
        Error::backend(component, message)
    }

    /// The error for a connection that could not be opened.
    pub(crate) fn connect_error(
        &self,
        component: &'static str,
        what: &str,
        e: &RedisError,
    ) -> Error {
        if e.is_timeout() {
            return Error::backend(
                component,
                format!(
                    "{what} failed: could not connect to Redis at {} within {:?} \
                     (`connect_timeout_ms`); check that redis-server is running and reachable \
                     (workers retry on their own)",
                    self.shown_url, self.connect_timeout
                ),
            );
        }
        self.error(component, what, e)
    }

    /// The shared connection, opened when needed.
    pub(crate) async fn shared(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.shared.lock().clone() {
            return Ok(conn);
        }
        let conn = self.open(Some(self.command_timeout)).await?;
        *self.shared.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the shared connection after an error that may have broken it.
    pub(crate) fn discard_shared(&self, e: &RedisError) {
        if is_connection_error(e) {
            *self.shared.lock() = None;
        }
    }

    /// A connection for one blocking command (no response timeout: the caller bounds the
    /// wait); give it back with [`Connections::give_back`] when the command succeeded
    /// (dropping it closes it).
    pub(crate) async fn blocking(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.blocking.lock().pop() {
            return Ok(conn);
        }
        self.open(None).await
    }

    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.blocking.lock();
        if idle.len() < 16 {
            idle.push(conn);
        }
    }

    /// A new pub/sub connection.
    pub(crate) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        match tokio::time::timeout(self.connect_timeout, self.client.get_async_pubsub()).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting timed out",
            ))),
        }
    }

    async fn open(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Whether the error means the connection is unusable (rather than a script or data error).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

impl RedisBackend {
    /// The shared connection, or the error that says why there is none.
    async fn shared_conn(
        &self,
        component: &'static str,
        what: &str,
    ) -> qtasks_core::Result<MultiplexedConnection> {
        self.conns
            .shared()
            .await
            .map_err(|e| self.conns.connect_error(component, what, &e))
    }

    /// The error of a command on the shared connection, dropping the connection when the error
    /// says it broke.
    fn command_error(&self, component: &'static str, what: &str, e: &RedisError) -> Error {
        self.conns.discard_shared(e);
        self.conns.error(component, what, e)
    }

    /// Runs a script on the shared connection (EVALSHA, loading the script when Redis lacks it).
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        script: &Script,
        args: Vec<Vec<u8>>,
    ) -> qtasks_core::Result<T> {
        let mut invocation = script.key(self.key("prios"));
        invocation.arg(self.prefix.as_str());
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.shared_conn(component, what).await?;
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.command_error(component, what, &e))
    }

    /// Runs one command on the shared connection.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        cmd: &Cmd,
    ) -> qtasks_core::Result<T> {
        let mut conn = self.shared_conn(component, what).await?;
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.command_error(component, what, &e))
    }

    /// Runs one command on `key` on the shared connection; when Redis says the key holds the
    /// wrong type, the error names the key and what it holds.
    pub(crate) async fn query_key<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        key: &str,
        expected: &str,
        cmd: &Cmd,
    ) -> qtasks_core::Result<T> {
        let mut conn = self.shared_conn(component, what).await?;
        match cmd.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(e) => Err(self
                .key_error(&mut conn, component, what, key, expected, &e)
                .await),
        }
    }

    /// Runs a pipeline whose commands read `key` on the shared connection, with the errors of
    /// [`Self::query_key`].
    pub(crate) async fn query_pipe_key<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        key: &str,
        expected: &str,
        pipe: &Pipeline,
    ) -> qtasks_core::Result<T> {
        let mut conn = self.shared_conn(component, what).await?;
        match pipe.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(e) => Err(self
                .key_error(&mut conn, component, what, key, expected, &e)
                .await),
        }
    }

    /// The error of a command on `key`: when Redis says the key holds the wrong type, one that
    /// names the key and what it holds.
    async fn key_error(
        &self,
        conn: &mut MultiplexedConnection,
        component: &'static str,
        what: &str,
        key: &str,
        expected: &str,
        e: &RedisError,
    ) -> Error {
        self.conns.discard_shared(e);
        if e.code() == Some("WRONGTYPE") {
            let held: String = deadpool_redis::redis::cmd("TYPE")
                .arg(key)
                .query_async(conn)
                .await
                .unwrap_or_else(|_| "value of another type".to_string());
            return Error::backend(
                component,
                format!(
                    "{what} failed on Redis at {}: the key {key} holds a {held}, not {expected}: \
                     something else writes into this app's keys ({}*); give that writer other \
                     keys, or give the app another name",
                    self.conns.shown_url, self.prefix
                ),
            );
        }
        self.conns.error(component, what, e)
    }
}
