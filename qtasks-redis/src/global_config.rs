//! The global config: the app's shared key-value store, claims (`SET NX PX`) and worker
//! heartbeats.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_redis::redis;
use futures::future::BoxFuture;
use qtasks_core::backend::GlobalConfig;
use qtasks_core::Result;

use crate::wire::millis;
use crate::{scripts, RedisBackend};

impl GlobalConfig for RedisBackend {
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let kv = self.key("kv");
            self.query_key(
                "global_config",
                &format!("setting {key:?}"),
                &kv,
                "a hash",
                redis::cmd("HSET").arg(&kv).arg(key).arg(value),
            )
            .await
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let kv = self.key("kv");
            self.query_key(
                "global_config",
                &format!("reading {key:?}"),
                &kv,
                "a hash",
                redis::cmd("HGET").arg(&kv).arg(key),
            )
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let kv = self.key("kv");
            self.query_key(
                "global_config",
                &format!("deleting {key:?}"),
                &kv,
                "a hash",
                redis::cmd("HDEL").arg(&kv).arg(key),
            )
            .await
        })
    }

    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(async move {
            let kv = self.key("kv");
            self.query_key(
                "global_config",
                "reading every key",
                &kv,
                "a hash",
                redis::cmd("HGETALL").arg(&kv),
            )
            .await
        })
    }

    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let set: Option<String> = self
                .query(
                    "global_config",
                    &format!("claiming {key:?}"),
                    redis::cmd("SET")
                        .arg(self.key(&format!("claim:{key}")))
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(ttl).max(1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let args = vec![
                worker.as_bytes().to_vec(),
                millis(ttl).to_string().into_bytes(),
            ];
            let _: i64 = self
                .eval(
                    "global_config",
                    "recording a heartbeat",
                    &scripts::HEARTBEAT,
                    args,
                )
                .await?;
            Ok(())
        })
    }

    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let mut workers: Vec<String> = self
                .eval(
                    "global_config",
                    "listing live workers",
                    &scripts::LIVE_WORKERS,
                    Vec::new(),
                )
                .await?;
            workers.sort();
            Ok(workers)
        })
    }
}
