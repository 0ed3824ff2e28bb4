//! The Prometheus exporter of qtasks' [metrics](super::metrics) (feature `metrics`): the
//! recorder ([`install`]) and the text the `/metrics` endpoints return ([`render`]), shared by
//! the dashboard (`qtasks-web`) and the standalone `qtasks::metrics::serve`.
//!
//! The two `_seconds` metrics are real Prometheus histograms (`_bucket`, `_sum`, `_count`),
//! with the buckets below; other histograms the program records stay summaries, as the
//! exporter makes them by default.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;

use crate::app::handle::App;
use crate::error::{Error, Result};
use crate::observe::metrics::{refresh, reset_handles};

/// The buckets of `qtasks_task_queue_seconds` (enqueue to start), in seconds.
pub const QUEUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 1800.0,
];

/// The buckets of `qtasks_task_execution_seconds` (one attempt), in seconds.
pub const EXECUTION_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// How often the recorder folds recorded histogram samples into its buckets when nobody
/// scrapes (a scrape does it too), so an unscraped worker's memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs the Prometheus recorder as the process's `metrics` recorder, once: later calls
/// return the same handle. Fails when another `metrics` recorder was installed first (then
/// export that recorder's figures your own way: qtasks records into whatever recorder is
/// installed).
pub fn install() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let _one_at_a_time = INSTALLING.lock();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let bad = |e: &dyn std::fmt::Display| Error::Config {
        key: "metrics recorder".into(),
        value: "the Prometheus recorder".into(),
        expected: format!(
            "no other `metrics` recorder installed before qtasks' ({e}); or export the figures \
             through the recorder that is installed"
        ),
    };
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("qtasks_task_queue_seconds".into()),
            QUEUE_BUCKETS,
        )
        .map_err(|e| bad(&e))?
        .set_buckets_for_metric(
            Matcher::Full("qtasks_task_execution_seconds".into()),
            EXECUTION_BUCKETS,
        )
        .map_err(|e| bad(&e))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| bad(&e))?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("qtasks-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| Error::Worker(format!("cannot start the metrics upkeep thread: {e}")))?;
    reset_handles();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// The installed recorder's handle, if [`install`] ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// The metrics in the Prometheus text format, with the per-scrape gauges of `app`'s backend
/// refreshed first ([`refresh`]: one `stats` and one `live_workers` call). Installs the
/// recorder if needed. Scrapes run one at a time, so that the gauges a scrape returns are
/// the ones it refreshed (two apps of one process scraped at once would mix them otherwise).
pub async fn render(app: &App) -> Result<String> {
    let handle = install()?;
    let _one_scrape_at_a_time = SCRAPE.lock().await;
    refresh(app.backend()).await;
    Ok(handle.render())
}

static SCRAPE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
