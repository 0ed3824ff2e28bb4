//! Enqueue in the caller's own transaction: `app.add_task_in(&mut tx, add.call(2, 3))`.
//!
//! The tasks are built exactly as `add_task` builds them (uuids, idempotency keys, priorities,
//! plugins: [`App::prepare_tasks`]) and written by the schema's `enqueue` function on the
//! caller's `tokio_postgres::Transaction`. So they exist exactly when that transaction commits,
//! together with the caller's own writes, and not at all if it rolls back; the wake-up of idle
//! workers is a NOTIFY in the same transaction, which PostgreSQL delivers at the commit.

use std::future::Future;

use qtasks_core::{App, Error, Result, Task, TaskCall, TaskDef};
use tokio_postgres::Transaction;

use crate::broker::{EnqueueArgs, ENQUEUE_CHUNK};
use crate::options::{hide_password, PostgresOptions};

/// Enqueueing inside a `tokio_postgres::Transaction` of the caller, for an [`App`] whose
/// broker URL is a `postgres://` one (the transaction must be on that database).
///
/// ```no_run
/// # use qtasks_core::{App, TaskCall, TaskDef};
/// use qtasks_postgres::EnqueueInTransaction;
/// # async fn demo<T: TaskDef>(app: App, client: &mut qtasks_postgres::tokio_postgres::Client, call: TaskCall<T>) -> qtasks_core::Result<()> {
/// let mut tx = client.transaction().await.expect("a transaction");
/// // ... the business writes, on `tx` ...
/// let task = app.add_task_in(&mut tx, call).await?;
/// tx.commit().await.expect("committed"); // the task exists from here on, and workers wake
/// # let _ = task; Ok(()) }
/// ```
pub trait EnqueueInTransaction {
    /// Writes the task in `tx`: it becomes visible (and wakes the workers) when `tx` commits,
    /// and disappears if `tx` rolls back. Returns its record with status `new`. A timeout set
    /// on the call is ignored (the task cannot finish before the commit): wait on the returned
    /// task after committing.
    fn add_task_in<'a, T: TaskDef>(
        &'a self,
        tx: &'a mut Transaction<'_>,
        call: TaskCall<T>,
    ) -> impl Future<Output = Result<Task<T::Output>>> + Send + 'a;

    /// [`add_task_in`](Self::add_task_in) for many calls, in as few statements as possible
    /// (5000 tasks per statement). Returns the records in the order of the calls.
    fn add_tasks_in<'a, T, I>(
        &'a self,
        tx: &'a mut Transaction<'_>,
        calls: I,
    ) -> impl Future<Output = Result<Vec<Task<T::Output>>>> + Send + 'a
    where
        T: TaskDef,
        I: IntoIterator<Item = TaskCall<T>> + Send + 'a,
        I::IntoIter: Send;
}

impl EnqueueInTransaction for App {
    async fn add_task_in<T: TaskDef>(
        &self,
        tx: &mut Transaction<'_>,
        call: TaskCall<T>,
    ) -> Result<Task<T::Output>> {
        let mut tasks = self.add_tasks_in(tx, std::iter::once(call)).await?;
        tasks
            .pop()
            .ok_or_else(|| Error::backend("broker", "the enqueued task was not returned"))
    }

    async fn add_tasks_in<'a, T, I>(
        &'a self,
        tx: &'a mut Transaction<'_>,
        calls: I,
    ) -> Result<Vec<Task<T::Output>>>
    where
        T: TaskDef,
        I: IntoIterator<Item = TaskCall<T>> + Send + 'a,
        I::IntoIter: Send,
    {
        let schema = schema_of(self)?;
        let prepared = self.prepare_tasks(calls).await?;
        let sql = format!("SELECT {schema}.enqueue($1, $2, $3, $4, $5, $6, $7)");
        let app = self.name().to_string();
        for chunk in prepared.tasks().chunks(ENQUEUE_CHUNK) {
            let args = EnqueueArgs::new(chunk);
            tx.execute(&sql, &args.params(&app))
                .await
                .map_err(|e| enqueue_error(T::entry().name, &schema, &e))?;
        }
        prepared.written().await
    }
}

/// The schema of the app's PostgreSQL backend, from its broker URL.
fn schema_of(app: &App) -> Result<String> {
    let url = app.config().broker_url.as_deref().unwrap_or("memory://");
    let scheme = url.split("://").next().unwrap_or(url);
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(Error::Config {
            key: "broker_url".into(),
            value: hide_password(url),
            expected: format!(
                "a postgres:// URL: add_task_in writes into the PostgreSQL schema of app {:?}, so the app must use the PostgreSQL backend",
                app.name()
            ),
        });
    }
    Ok(PostgresOptions::from_url(url)?.0.schema)
}

fn enqueue_error(task: &str, schema: &str, e: &tokio_postgres::Error) -> Error {
    let said = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    let missing = e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::UNDEFINED_FUNCTION
            || *c == tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME
    });
    let hint = if missing {
        format!(
            "; the schema {schema:?} is not migrated on this database: start a worker of the app, or call PostgresBackend::migrate, before enqueueing in a transaction (and check that the transaction is on the app's database)"
        )
    } else {
        String::new()
    };
    Error::backend(
        "broker",
        format!("enqueueing task {task:?} in the caller's transaction failed: {said}{hint}"),
    )
}
