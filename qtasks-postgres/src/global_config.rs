//! The global config: the app's shared key-value store (`kv`), claims with a TTL (`claims`:
//! one timer fire per tick across every process) and worker heartbeats (`workers`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use qtasks_core::backend::GlobalConfig;
use qtasks_core::Result;

use crate::record::millis;
use crate::PostgresBackend;

const C: &str = "global_config";

impl GlobalConfig for PostgresBackend {
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let what = format!("setting {key:?}");
            self.query(C, &what, &self.sql.kv_set, &[&self.app, &key, &value])
                .await
                .map(drop)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let what = format!("reading {key:?}");
            let rows = self
                .query(C, &what, &self.sql.kv_get, &[&self.app, &key])
                .await?;
            Ok(rows.first().and_then(|r| r.try_get(0).ok()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let what = format!("deleting {key:?}");
            self.query(C, &what, &self.sql.kv_delete, &[&self.app, &key])
                .await
                .map(drop)
        })
    }

    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(async move {
            let rows = self
                .query(C, "reading every key", &self.sql.kv_all, &[&self.app])
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
                .collect())
        })
    }

    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let what = format!("claiming {key:?}");
            let rows = self
                .query(
                    C,
                    &what,
                    &self.sql.try_claim,
                    &[&self.app, &key, &millis(ttl).max(1)],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let what = "recording a heartbeat";
            if ttl.is_zero() {
                self.query(C, what, &self.sql.heartbeat_gone, &[&self.app, &worker])
                    .await?;
            } else {
                self.query(
                    C,
                    what,
                    &self.sql.heartbeat,
                    &[&self.app, &worker, &millis(ttl)],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let rows = self
                .query(
                    C,
                    "listing live workers",
                    &self.sql.live_workers,
                    &[&self.app],
                )
                .await?;
            Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
        })
    }
}
