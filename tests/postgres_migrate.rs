//! The versioned migrations of the PostgreSQL backend and the CLI's `migrate` (issue 18,
//! item 2): `migrate` brings a fresh schema to the newest version without starting a worker,
//! says what it applied, does nothing the second time, and upgrades a schema an older qtasks
//! left at version 1 with its queued tasks kept and runnable.
//!
//! Runs against the test PostgreSQL server (`QTASKS_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each test on a schema of its own; skips when the
//! server is unreachable unless `QTASKS_REQUIRE_POSTGRES=1`.
#![cfg(feature = "postgres")]

mod common;

use qtasks::cli;
use qtasks::postgres::{testing, PostgresBackend};
use qtasks::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use common::postgres::connect;
use common::DEADLINE;

/// The versions of the migrations this qtasks has, oldest first.
const NAMES: [&str; 6] = [
    "001_init",
    "002_uuid_first_key",
    "003_claim_starting",
    "004_unstarted_claims_are_not_attempts",
    "005_attempt_history_and_latency",
    "006_progress",
];

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// The test server's URL on a fresh schema named after `label`, or `None` (skip).
async fn fresh_url(label: &str) -> Option<String> {
    if !testing::available() {
        return None;
    }
    let schema = testing::fresh_schema(label).await;
    Some(format!("{}?schema={schema}", testing::url()))
}

async fn migrate(url: &str, app: &str, json: bool) -> String {
    let mut args = vec!["shop"];
    if json {
        args.push("--json");
    }
    args.push("migrate");
    let mut out = Vec::new();
    let exit = cli::run_from(common::builder(app).broker_url(url), args, &mut out)
        .await
        .unwrap();
    assert_eq!(exit, cli::Exit::Success);
    String::from_utf8(out).unwrap()
}

async fn versions(url: &str) -> Vec<i32> {
    let schema = qtasks::postgres::PostgresOptions::from_url(url)
        .unwrap()
        .0
        .schema;
    connect(url)
        .await
        .query(
            &format!("SELECT version FROM {schema}.migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_brings_a_fresh_schema_up_to_date_and_starts_nothing() {
    let Some(url) = fresh_url("migfresh").await else {
        return;
    };
    let json: Value = serde_json::from_str(&migrate(&url, "mig-fresh", true).await).unwrap();
    assert_eq!(json["schema"], true);
    assert_eq!(json["version"], NAMES.len());
    assert_eq!(json["applied"], serde_json::json!(NAMES));
    assert_eq!(versions(&url).await, [1, 2, 3, 4, 5, 6]);

    // The second time there is nothing to apply.
    let text = migrate(&url, "mig-fresh", false).await;
    assert_eq!(
        text.trim(),
        "app mig-fresh: the schema is up to date (version 6)"
    );

    // No worker ran: no heartbeat, nothing claimed.
    let app = common::builder("mig-fresh")
        .broker_url(&url)
        .build()
        .unwrap();
    let workers = app.backend().global_config.live_workers().await.unwrap();
    assert!(workers.is_empty(), "{workers:?}");
}

/// A schema left at version 1 with a queued task: `migrate` applies only the later versions, and the
/// task, written by version 1's `enqueue`, runs afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_upgrades_version_1_and_keeps_queued_tasks() {
    let Some(url) = fresh_url("migold").await else {
        return;
    };
    let config = qtasks::Config::default();
    let old = PostgresBackend::from_url(&url, "mig-old", &config).unwrap();
    let at_one = testing::migrate_up_to(&old, 1).await.unwrap();
    assert_eq!(at_one.version, 1);
    assert_eq!(at_one.applied, ["001_init"]);
    assert_eq!(versions(&url).await, [1]);

    let schema = old.options().schema.clone();
    let uuid = Uuid::new_v4();
    let args = qtasks::Payload::encode(&(20i64, 22i64)).unwrap();
    let client = connect(&url).await;
    let written: i32 = client
        .query_one(
            &format!(
                "SELECT {schema}.enqueue('mig-old', ARRAY[$1::uuid], ARRAY['add'], ARRAY[0], \
                 ARRAY[$2::bytea], ARRAY[now()], ARRAY[0::bigint])"
            ),
            &[&uuid, &args.as_bytes()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 1);

    let json: Value = serde_json::from_str(&migrate(&url, "mig-old", true).await).unwrap();
    assert_eq!(json["version"], NAMES.len());
    assert_eq!(json["applied"], serde_json::json!(NAMES[1..]));
    assert_eq!(versions(&url).await, [1, 2, 3, 4, 5, 6]);
    let key: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = ($1 || '.tasks')::regclass AND contype = 'p'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, "PRIMARY KEY (uuid, app)");

    let app = common::builder("mig-old").broker_url(&url).build().unwrap();
    let worker = app.spawn_worker();
    let done = app.wait(uuid, DEADLINE).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{done:?}");
    assert_eq!(done.returning.unwrap().decode::<i64>().unwrap(), 42);
    worker.shutdown().await.unwrap();
}
