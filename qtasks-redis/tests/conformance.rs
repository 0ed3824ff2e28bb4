//! The backend conformance suite, run against a real Redis server (a private `redis-server`
//! started for this test binary, or `QTASKS_REDIS_URL`).

use std::sync::atomic::{AtomicU64, Ordering};

use qtasks_core::backend::Backend;
use qtasks_core::Config;
use qtasks_redis::{server, RedisBackend, RedisOptions};

/// A fresh backend: its own app name, so its keys are its own.
async fn open(config: Config) -> Backend {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let url = server::test_url().expect("checked by run_if");
    let app = format!(
        "conformance-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    // With the per-status indexes, which the listing cases need.
    let options = RedisOptions {
        status_index: true,
        ..RedisOptions::default()
    };
    RedisBackend::new(&url, &app, &config, options)
        .expect("a valid Redis URL")
        .backend()
}

qtasks_core::conformance_tests!(open, run_if = server::test_url().is_some());
qtasks_core::conformance_flow_tests!(open, run_if = server::test_url().is_some());
