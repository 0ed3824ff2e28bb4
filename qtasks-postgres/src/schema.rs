//! Versioned migrations: the SQL files of `sql/`, applied in order on start, each once, under a
//! transaction-scoped advisory lock so that processes starting together do not race. The
//! versions applied are kept in `<schema>.migrations`.

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
];

/// Brings `schema` (a checked plain identifier) up to the newest migration.
pub(crate) async fn migrate(
    client: &mut Client,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
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
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
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
    }
    tx.commit().await
}
