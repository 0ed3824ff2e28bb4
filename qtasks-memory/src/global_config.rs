//! The global config: the shared key-value store, claims with a TTL and worker heartbeats,
//! each in a map behind its own lock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use qtasks_core::backend::GlobalConfig;
use qtasks_core::Result;

use crate::MemoryBackend;

impl GlobalConfig for MemoryBackend {
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.kv.lock().insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move { Ok(self.kv.lock().get(key).cloned()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.kv.lock().remove(key);
            Ok(())
        })
    }

    fn get_all(&self) -> BoxFuture<'_, Result<BTreeMap<String, String>>> {
        Box::pin(async move { Ok(self.kv.lock().clone()) })
    }

    fn try_claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut claims = self.claims.lock();
            claims.retain(|_, until| *until > now);
            if claims.contains_key(key) {
                return Ok(false);
            }
            claims.insert(key.to_string(), now + ttl);
            Ok(true)
        })
    }

    fn heartbeat<'a>(&'a self, worker: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.heartbeats
                .lock()
                .insert(worker.to_string(), Instant::now() + ttl);
            Ok(())
        })
    }

    fn live_workers(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut beats = self.heartbeats.lock();
            beats.retain(|_, until| *until > now);
            let mut workers: Vec<String> = beats.keys().cloned().collect();
            workers.sort();
            Ok(workers)
        })
    }
}
