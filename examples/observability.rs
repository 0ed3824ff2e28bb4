//! Metrics and traces: a producer span, a worker, `/metrics` on loopback.
//!
//! ```text
//! cargo run --features metrics,opentelemetry --example observability
//! cargo run --features metrics,opentelemetry --example observability -- --serve   # keeps serving
//! ```
//!
//! It runs a few tasks (one that fails once and is retried), inside a `checkout` span, then
//! prints the Prometheus text of `http://127.0.0.1:9464/metrics` (scraped over HTTP), and the
//! spans the in-memory exporter got: the `task` spans share the `checkout` span's trace. With
//! `--serve` it keeps serving `/metrics` until Ctrl-C (`curl -s 127.0.0.1:9464/metrics`).

use std::time::Duration;

use qtasks::prelude::*;
use qtasks::trace::opentelemetry::trace::TracerProvider as _;
use qtasks::trace::opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[qtasks::task]
async fn reserve_stock(order: u64) -> u64 {
    order * 10
}

#[qtasks::task(echo, retry = 1, retry_backoff = "fixed", retry_delay = 0.05)]
async fn charge_card(task: AsyncTask, order: u64) -> Result<u64, std::io::Error> {
    if task.ctx.attempt() == 1 {
        return Err(std::io::Error::other("the payment provider timed out"));
    }
    Ok(order)
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    // Traces: an OpenTelemetry layer on `tracing`; in production an OTLP exporter instead of
    // the in-memory one (docs/observability.md).
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = qtasks::trace::tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    // Metrics: the Prometheus recorder, before the first task.
    qtasks::metrics::install()?;

    let app = App::builder().name("shop").build()?;
    let worker = app.spawn_worker();
    let listener = tokio::net::TcpListener::bind(qtasks::metrics::DEFAULT_LISTEN)
        .await
        .map_err(|e| qtasks::Error::Worker(format!("port 9464 is taken: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    tokio::spawn(qtasks::metrics::serve_on(app.clone(), listener));

    async {
        let mut tasks = Vec::new();
        for order in 1..=3 {
            tasks.push(reserve_stock.call(order).on(&app).add_task().await?);
        }
        let charge = charge_card.call(42).on(&app).add_task().await?;
        for t in tasks {
            t.wait(Duration::from_secs(5)).await?;
        }
        charge.wait(Duration::from_secs(5)).await?;
        Ok::<_, qtasks::Error>(())
    }
    .instrument(tracing::info_span!("checkout"))
    .await?;

    // One scrape, over HTTP, as Prometheus would.
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;
    println!("--- http://{addr}/metrics (qtasks_ series without buckets) ---");
    for line in response
        .lines()
        .filter(|l| l.starts_with("qtasks_") && !l.contains("_bucket") && !l.starts_with('#'))
    {
        println!("{line}");
    }

    let _ = provider.force_flush();
    println!("--- spans ---");
    for span in exporter.get_finished_spans().unwrap_or_default() {
        let attempt = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "attempt")
            .map(|kv| kv.value.to_string())
            .unwrap_or_default();
        println!(
            "{:<8} trace {} span {} parent {} {}",
            span.name,
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.parent_span_id,
            if attempt.is_empty() {
                String::new()
            } else {
                format!("attempt {attempt}")
            }
        );
    }

    if std::env::args().any(|a| a == "--serve") {
        println!("serving http://{addr}/metrics until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    worker.shutdown().await
}
