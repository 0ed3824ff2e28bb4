//! The connection handling: one shared multiplexed connection for every command (requests
//! from all tasks are pipelined on it), and dedicated connections for blocking commands
//! (`BLPOP`), which would otherwise stall everyone else's requests; and how the backend runs a
//! command or a script on the shared connection ([`RedisBackend::query`],
//! [`RedisBackend::eval`]).
//!
//! A connection that fails is dropped and the next call opens a new one, so workers recover
//! from a Redis restart by retrying (with backoff, in the worker), and producers get the error
//! at once.
//!
//! Why not a deadpool pool for the hot path: a pooled connection answers a `PING` on every
//! checkout (recycling), which would double the round trips of every claim and acknowledgement.
//! A multiplexed connection needs no checkout at all.

use std::time::Duration;

use deadpool_redis::redis::aio::{MultiplexedConnection, PubSub};
use deadpool_redis::redis::{
    AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError, Script,
};
use parking_lot::Mutex;
use qtasks_core::Error;

use crate::RedisBackend;

/// How long a command may take before the connection is considered broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take: producers fail after this when Redis is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Connections {
    client: Client,
    /// The URL without its password, for error messages.
    shown_url: String,
    shared: Mutex<Option<MultiplexedConnection>>,
    blocking: Mutex<Vec<MultiplexedConnection>>,
}

impl Connections {
    pub(crate) fn new(client: Client, shown_url: String) -> Self {
        Connections {
            client,
            shown_url,
            shared: Mutex::new(None),
            blocking: Mutex::new(Vec::new()),
        }
    }

    /// The error for a failed Redis call, naming the server and what to do.
    pub(crate) fn error(&self, component: &'static str, what: &str, e: &RedisError) -> Error {
        Error::backend(
            component,
            format!(
                "{what} failed on Redis at {}: {e}; check that redis-server is running and reachable (workers retry on their own)",
                self.shown_url
            ),
        )
    }

    /// The shared connection, opened when needed.
    pub(crate) async fn shared(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.shared.lock().clone() {
            return Ok(conn);
        }
        let conn = self.open(Some(RESPONSE_TIMEOUT)).await?;
        *self.shared.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the shared connection after an error that may have broken it.
    pub(crate) fn discard_shared(&self, e: &RedisError) {
        if is_connection_error(e) {
            *self.shared.lock() = None;
        }
    }

    /// A connection for one blocking command; give it back with [`Connections::give_back`]
    /// when the command succeeded (dropping it closes it).
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
        match tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub()).await {
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
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
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
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        component: &'static str,
        what: &str,
        cmd: &Cmd,
    ) -> qtasks_core::Result<T> {
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
}
