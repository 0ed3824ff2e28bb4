//! The PostgreSQL backend of qtasks: broker, storage and global config in one PostgreSQL
//! schema, shared by every producer and worker process of an app, with enqueue inside the
//! caller's own transaction.
//!
//! Picked with the facade feature `postgres` and a URL:
//! `App::builder().name("shop").broker_url("postgres://postgres@127.0.0.1/app").build()?`
//! (`postgresql://` works too).
//!
//! Delivery is **at least once**, with the guarantees of the Redis backend: every state change
//! is one SQL function call per batch (enqueue, claim, acknowledge, renew, started, requeue,
//! cancel), in one transaction; claims take ready rows with `FOR UPDATE SKIP LOCKED` and give
//! each a lease and a fencing token, so a worker frozen past its lease cannot overwrite the
//! result of the worker that ran the task again; a task whose worker vanished while running it
//! is a *suspect* that runs alone, and after `max_deliveries` goes to the dead-letter. Idle
//! workers sleep on LISTEN/NOTIFY (one dedicated connection per process) until a notification
//! or the next due time or lease deadline; `wait` is woken by a notification too.
//!
//! [`EnqueueInTransaction`] adds `app.add_task_in(&mut tx, add.call(2, 3))`: the task is
//! written in the caller's `tokio_postgres::Transaction`, visible exactly when it commits, gone
//! if it rolls back, and the wake-up of the workers is sent at the commit.
//!
//! Settings beyond the app's [`Config`] come from the URL's query string (or
//! [`PostgresOptions`] with [`PostgresBackend::new`]): `schema`, `lease_ms`, `max_deliveries`,
//! `dead_letter_max`, `connect_timeout_ms`, `pool_size`, `reap_ms`. The tables live in the
//! schema (default `qtasks`), created by versioned migrations on first use (`sql/*.sql`).
//! See `docs/postgres.md`.
//!
//! The source, by concern: `options` (settings and URL parsing), `client` (the pool, errors
//! that say what to do), `schema` (migrations), `statements` (the SQL text of one schema),
//! `record` (rows to records), `broker`, `storage` and `global_config` (the component
//! traits), `notify` (LISTEN/NOTIFY), `reaper` (deleting expired records) and `transaction`
//! (enqueue in the caller's transaction).
#![warn(missing_docs)]

mod broker;
mod client;
mod global_config;
mod inspect;
mod notify;
mod options;
mod reaper;
mod record;
mod schema;
#[cfg(all(feature = "testing", unix))]
pub mod server;
mod statements;
mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use qtasks_core::backend::{Backend, BackendFactory, Held, Migrated, OpenRequest, BACKENDS};
use qtasks_core::{Config, Error, Result};
use uuid::Uuid;

use crate::client::Connections;
use crate::notify::Notifier;
use crate::options::hide_password;
use crate::reaper::Reaper;
use crate::statements::Statements;

pub use options::PostgresOptions;
/// The `tokio-postgres` crate this backend uses: the type of the transaction that
/// [`EnqueueInTransaction`] takes.
pub use tokio_postgres;
pub use transaction::EnqueueInTransaction;

/// The PostgreSQL broker, storage and global config of one app.
pub struct PostgresBackend {
    conns: Arc<Connections>,
    notifier: Notifier,
    sql: Statements,
    app: String,
    options: PostgresOptions,
    result_ttl: Duration,
    /// What this process holds (a suspect runs alone).
    held: Held,
    /// This backend's id in claims (whose turn it is to drain for a suspect).
    caller: String,
    reaper: Reaper,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("url", &self.conns.shown())
            .field("app", &self.app)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// A backend for the app named `app_name` on the PostgreSQL server at `url` (a
    /// `postgres://` URL without our query parameters: see [`PostgresOptions::from_url`]).
    /// Connects lazily: the first call opens a connection and runs the migrations.
    pub fn new(
        url: &str,
        app_name: &str,
        config: &Config,
        options: PostgresOptions,
    ) -> Result<Arc<Self>> {
        options::check_schema(&options.schema)?;
        let shown = hide_password(url);
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| Error::Config {
            key: "broker_url".into(),
            value: shown.clone(),
            expected: format!(
                "a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/app ({e})"
            ),
        })?;
        pg.connect_timeout(options.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("qtasks");
        }
        let conns = Arc::new(Connections::new(
            pg,
            shown,
            options.schema.clone(),
            options.pool_size,
            options.connect_timeout,
        )?);
        let sql = Statements::new(&options.schema);
        Ok(Arc::new(PostgresBackend {
            notifier: Notifier::new(conns.clone(), app_name),
            reaper: Reaper::new(conns.clone(), options.reap_interval, &sql),
            sql,
            conns,
            app: app_name.to_string(),
            held: Held::new(options.lease),
            caller: Uuid::new_v4().hyphenated().to_string(),
            options,
            result_ttl: config.result_ttl,
        }))
    }

    /// A backend from a broker URL with our settings in its query string.
    pub fn from_url(url: &str, app_name: &str, config: &Config) -> Result<Arc<Self>> {
        let (options, url) = PostgresOptions::from_url(url)?;
        Self::new(&url, app_name, config, options)
    }

    /// The backend's components, for `App::builder().backend(..)`.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend::from_shared(self.clone())
    }

    /// The settings in use.
    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    /// The app whose rows this backend reads and writes.
    pub fn app_name(&self) -> &str {
        &self.app
    }

    /// Runs the migrations now (they also run before the first statement of each process):
    /// for a `migrate` step of a deployment (the CLI's `migrate` calls it). Says which
    /// migrations this call applied and the schema's version.
    pub async fn migrate(&self) -> Result<Migrated> {
        self.conns.migrate(i32::MAX).await
    }

    /// How long finished records are kept, in ms (at least 1).
    fn ttl_ms(&self) -> i64 {
        record::millis(self.result_ttl).max(1)
    }

    fn dead_max(&self) -> i32 {
        i32::try_from(self.options.dead_letter_max).unwrap_or(i32::MAX)
    }

    fn max_deliveries(&self) -> i32 {
        i32::try_from(self.options.max_deliveries).unwrap_or(i32::MAX)
    }
}

fn open(request: &OpenRequest<'_>) -> Result<Backend> {
    let url = request
        .url
        .unwrap_or("postgres://postgres@127.0.0.1:5432/postgres");
    Ok(PostgresBackend::from_url(url, request.app_name, request.config)?.backend())
}

#[linkme::distributed_slice(BACKENDS)]
static POSTGRES: BackendFactory = BackendFactory {
    scheme: "postgres",
    open,
};

#[linkme::distributed_slice(BACKENDS)]
static POSTGRESQL: BackendFactory = BackendFactory {
    scheme: "postgresql",
    open,
};
