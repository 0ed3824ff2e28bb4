//! Versioned migrations: the SQL files of `sql/`, applied in order on start, each once, under a
//! transaction-scoped advisory lock so that processes starting together do not race. The
//! versions applied are kept in `<schema>.migrations`.

use qtasks_core::backend::Migrated;
use tokio_postgres::Client;

/// One migration: its version (applied in increasing order), name and SQL text, in which
/// `{schema}` stands for the schema's name.
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// Every migration, oldest first. Append new ones; never edit one that was released.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_init",
        sql: include_str!("../sql/001_init.sql"),
    },
    Migration {
        version: 2,
        name: "002_uuid_first_key",
        sql: include_str!("../sql/002_uuid_first_key.sql"),
    },
    Migration {
        version: 3,
        name: "003_claim_starting",
        sql: include_str!("../sql/003_claim_starting.sql"),
    },
    Migration {
        version: 4,
        name: "004_unstarted_claims_are_not_attempts",
        sql: include_str!("../sql/004_unstarted_claims_are_not_attempts.sql"),
    },
    Migration {
        version: 5,
        name: "005_attempt_history_and_latency",
        sql: include_str!("../sql/005_attempt_history_and_latency.sql"),
    },
    Migration {
        version: 6,
        name: "006_progress",
        sql: include_str!("../sql/006_progress.sql"),
    },
];

/// Brings `schema` (a checked plain identifier) up to the newest migration; says what it
/// applied.
pub(crate) async fn migrate(
    client: &mut Client,
    schema: &str,
) -> Result<Migrated, tokio_postgres::Error> {
    migrate_to(client, schema, i32::MAX).await
}

/// Brings `schema` up to migration `target` (the newest one at most).
pub(crate) async fn migrate_to(
    client: &mut Client,
    schema: &str,
    target: i32,
) -> Result<Migrated, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One migrating process at a time, per schema, across the whole server.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("qtasks.migrate.{schema}")],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let applied: Vec<i32> = tx
        .query(&format!("SELECT version FROM {schema}.migrations"), &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newer) = applied.iter().filter(|v| **v > newest).max() {
        tracing::warn!(schema, version = newer, known = newest, "the schema has a migration this version of qtasks does not know; a newer qtasks migrated it");
    }
    let mut done = Migrated {
        version: 0,
        applied: Vec::new(),
    };
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version <= target && !applied.contains(&m.version))
    {
        tracing::info!(
            schema,
            version = m.version,
            name = m.name,
            "applying a migration"
        );
        tx.batch_execute(&m.sql.replace("{schema}", schema)).await?;
        tx.execute(
            &format!("INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await?;
        done.applied.push(m.name.to_string());
    }
    let version = applied
        .iter()
        .copied()
        .chain(
            MIGRATIONS
                .iter()
                .filter(|m| m.version <= target)
                .map(|m| m.version),
        )
        .max()
        .unwrap_or(0);
    done.version = u32::try_from(version).unwrap_or(0);
    tx.commit().await?;
    Ok(done)
}
