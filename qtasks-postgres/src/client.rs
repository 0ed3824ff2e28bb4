//! Connections: the pool of `tokio-postgres` clients, the migrations that run before the first
//! statement of this process, and errors that say what happened and what to do.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use qtasks_core::backend::Migrated;
use qtasks_core::{Error, Result};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::schema;

/// The pool of one backend, and whether the schema is migrated.
pub(crate) struct Connections {
    pool: Pool,
    /// The server's settings (for the listening connection).
    config: tokio_postgres::Config,
    /// The URL without its password, for messages.
    shown: String,
    schema: String,
    connect_timeout: Duration,
    migrated: OnceCell<()>,
}

impl Connections {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        shown: String,
        schema: String,
        pool_size: usize,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .wait_timeout(Some(connect_timeout + Duration::from_secs(8)))
            .recycle_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| Error::Config {
                key: "broker_url".into(),
                value: shown.clone(),
                expected: format!("settings for a connection pool ({e})"),
            })?;
        Ok(Connections {
            pool,
            config,
            shown,
            schema,
            connect_timeout,
            migrated: OnceCell::new(),
        })
    }

    /// A pooled connection, the schema migrated (once per process) before the first one.
    pub(crate) async fn get(&self, component: &'static str, what: &str) -> Result<Object> {
        self.migrated
            .get_or_try_init(|| async {
                let mut conn = self.raw(component, "migrating the schema").await?;
                schema::migrate(&mut conn, &self.schema)
                    .await
                    .map(drop)
                    .map_err(|e| self.error(component, "migrating the schema", &e))
            })
            .await?;
        self.raw(component, what).await
    }

    /// A pooled connection, without the migration check.
    async fn raw(&self, component: &'static str, what: &str) -> Result<Object> {
        self.pool.get().await.map_err(|e| {
            Error::backend(
                component,
                format!(
                    "cannot reach PostgreSQL at {} while {what}: {e}. Check that the server runs and accepts connections, and that the URL is right; workers reconnect by themselves",
                    self.shown
                ),
            )
        })
    }

    /// Runs the migrations now (they run anyway before the first statement), up to `target`
    /// (`i32::MAX`: all); says what was applied.
    pub(crate) async fn migrate(&self, target: i32) -> Result<Migrated> {
        let what = "migrating the schema";
        let mut conn = self.raw("broker", what).await?;
        let done = schema::migrate_to(&mut conn, &self.schema, target)
            .await
            .map_err(|e| self.error("broker", what, &e))?;
        if target == i32::MAX {
            // The first statement of this process need not look again.
            let _ = self.migrated.set(());
        }
        Ok(done)
    }

    /// The error for a failed statement: what we were doing, and what PostgreSQL said.
    pub(crate) fn error(
        &self,
        component: &'static str,
        what: &str,
        e: &tokio_postgres::Error,
    ) -> Error {
        let said = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        let lost =
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        let hint = if lost {
            "; the connection was lost, so the statement may or may not have been applied"
        } else {
            ""
        };
        Error::backend(
            component,
            format!(
                "PostgreSQL at {} failed while {what}: {said}{hint}",
                self.shown
            ),
        )
    }

    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}
