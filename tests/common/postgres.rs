//! PostgreSQL helpers for the facade's tests (feature `postgres`): a URL on a fresh schema of
//! the test binary's own, raw connections for a test's bookkeeping, and task starts announced
//! with NOTIFY and awaited with LISTEN (never polled).

use std::time::Duration;

use qtasks::postgres::tokio_postgres::{self, AsyncMessage, Client, NoTls};
use qtasks::postgres::{testing, PostgresOptions};
use tokio::sync::{mpsc, OnceCell};

use super::DEADLINE;

/// The test server's URL with this binary's own schema (`?schema=qtasks_t_<label>_<pid>`),
/// the schema's bookkeeping table created, or `None` (tests skip) when PostgreSQL is not
/// reachable and not required.
pub(crate) async fn test_url(label: &str) -> Option<String> {
    static SCHEMA: OnceCell<String> = OnceCell::const_new();
    if !testing::available() {
        return None;
    }
    let schema = SCHEMA
        .get_or_init(|| async {
            let schema = testing::fresh_schema(label).await;
            let client = connect(&testing::url()).await;
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema};
                     CREATE TABLE IF NOT EXISTS {schema}.test_runs (key text PRIMARY KEY, n bigint NOT NULL)"
                ))
                .await
                .unwrap();
            schema
        })
        .await;
    Some(format!("{}?schema={schema}", testing::url()))
}

/// A raw connection to the server of `url` (our query parameters dropped).
pub(crate) async fn connect(url: &str) -> Client {
    let (_, base) = PostgresOptions::from_url(url).unwrap();
    let (client, connection) = tokio_postgres::connect(&base, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The schema named in `url`.
pub(crate) fn schema_of(url: &str) -> String {
    PostgresOptions::from_url(url).unwrap().0.schema
}

/// The NOTIFY channel of the starts of the task behind `key`.
fn channel(key: &str) -> String {
    format!("t_{}", key.replace('-', ""))
}

/// Counts one more run of `key` and announces it (`pid:run`); returns the run's number.
pub(crate) async fn announce_run(url: &str, key: &str) -> Result<u64, tokio_postgres::Error> {
    let client = connect(url).await;
    let schema = schema_of(url);
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {schema}.test_runs AS r (key, n) VALUES ($1, 1)
                 ON CONFLICT (key) DO UPDATE SET n = r.n + 1 RETURNING n"
            ),
            &[&key],
        )
        .await?;
    let runs: i64 = row.get(0);
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&channel(key), &format!("{}:{runs}", std::process::id())],
        )
        .await?;
    Ok(u64::try_from(runs).unwrap_or(0))
}

/// How many runs of `key` were counted.
pub(crate) async fn runs(url: &str, key: &str) -> u64 {
    let client = connect(url).await;
    let schema = schema_of(url);
    let rows = client
        .query(
            &format!("SELECT n FROM {schema}.test_runs WHERE key = $1"),
            &[&key],
        )
        .await
        .unwrap();
    rows.first()
        .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .unwrap_or(0)
}

/// The starts of the task behind one key, as they are announced (LISTEN before enqueueing).
pub(crate) struct Starts {
    rx: mpsc::UnboundedReceiver<String>,
    _client: Client,
}

impl Starts {
    pub(crate) async fn listen(url: &str, key: &str) -> Self {
        let (_, base) = PostgresOptions::from_url(url).unwrap();
        let (client, mut connection) = tokio_postgres::connect(&base, NoTls).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = futures::StreamExt::next(&mut messages).await {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_string());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", channel(key)))
            .await
            .unwrap();
        Starts {
            rx,
            _client: client,
        }
    }

    /// The next start, `(pid, run)`; panics after the deadline.
    pub(crate) async fn next(&mut self) -> (u32, u64) {
        self.next_within(DEADLINE)
            .await
            .expect("the task started within the deadline")
    }

    /// The next start within `within`, if any.
    pub(crate) async fn next_within(&mut self, within: Duration) -> Option<(u32, u64)> {
        let value = tokio::time::timeout(within, self.rx.recv()).await.ok()??;
        let (pid, run) = value.split_once(':').unwrap_or((&value, "0"));
        Some((pid.parse().unwrap_or(0), run.parse().unwrap_or(0)))
    }
}
