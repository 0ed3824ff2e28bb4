//! The backend conformance suite, run against a real PostgreSQL server
//! (`QTASKS_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), on a schema of
//! this test binary's own, each case with an app name of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use qtasks_core::backend::Backend;
use qtasks_core::Config;
use qtasks_postgres::{testing, PostgresBackend, PostgresOptions};
use tokio::sync::OnceCell;

/// A fresh backend: its own app name, so its rows are its own.
async fn open(config: Config) -> Backend {
    static SCHEMA: OnceCell<String> = OnceCell::const_new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let schema = SCHEMA
        .get_or_init(|| testing::fresh_schema("conformance"))
        .await;
    let app = format!("conformance-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    let options = PostgresOptions {
        schema: schema.clone(),
        ..PostgresOptions::default()
    };
    PostgresBackend::new(&testing::url(), &app, &config, options)
        .expect("a valid PostgreSQL URL")
        .backend()
}

qtasks_core::conformance_tests!(open, run_if = testing::available());

/// Flow control is not built on PostgreSQL: it is refused with an error, never ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_is_refused_when_unsupported() {
    if !testing::available() {
        return;
    }
    qtasks_core::testing::conformance::flow_control_is_refused_when_unsupported(open).await
}

/// Progress is kept on PostgreSQL too (migration 6), fenced by the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_kept_while_the_claim_is_current() {
    if !testing::available() {
        return;
    }
    qtasks_core::testing::conformance::progress_is_kept_while_the_claim_is_current(open).await
}
