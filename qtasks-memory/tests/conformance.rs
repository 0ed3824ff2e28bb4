//! The backend conformance suite, run against the in-memory backend.

use std::sync::Arc;

use qtasks_core::backend::Backend;
use qtasks_core::Config;
use qtasks_memory::MemoryBackend;

async fn open(config: Config) -> Backend {
    Arc::new(MemoryBackend::new(config.result_ttl)).backend()
}

qtasks_core::conformance_tests!(open);
qtasks_core::conformance_flow_tests!(open);
