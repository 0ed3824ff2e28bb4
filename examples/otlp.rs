//! Traces exported to an OpenTelemetry collector over OTLP (gRPC): the producer's `checkout`
//! span and the worker's `task` spans, one trace.
//!
//! ```text
//! # a collector on 127.0.0.1:4317, e.g. docker run -p 4317:4317 otel/opentelemetry-collector
//! cargo run --features opentelemetry --example otlp
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 cargo run --features opentelemetry --example otlp
//! ```
//!
//! Without a collector the tasks still run and their spans are dropped (the SDK's exporter
//! gives up after its timeout); the program says there was no collector and exits with status
//! 0: tracing never holds back the tasks.

use std::time::Duration;

use opentelemetry_otlp::WithExportConfig;
use qtasks::prelude::*;
use qtasks::trace::opentelemetry::trace::TracerProvider as _;
use qtasks::trace::opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[qtasks::task]
async fn ship(order: u64) -> u64 {
    order
}

/// Where the collector listens: `OTEL_EXPORTER_OTLP_ENDPOINT`, else the OTLP/gRPC default.
fn endpoint() -> String {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4317".into())
}

/// Whether something accepts connections at the endpoint's host and port (the exporter
/// itself only logs a failed export, so the example looks first to say what happened).
async fn collector_listens(endpoint: &str) -> Result<(), String> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let connect = tokio::net::TcpStream::connect(authority);
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within a second".into()),
    }
}

#[tokio::main]
async fn main() -> qtasks::Result<()> {
    let endpoint = endpoint();
    let listening = collector_listens(&endpoint).await;
    if let Err(why) = &listening {
        println!("no collector at {endpoint} ({why}): the tasks run, their spans are dropped");
    }
    // The exporter connects lazily: building it needs no collector.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .with_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| qtasks::Error::Worker(format!("cannot build the OTLP exporter: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let layer = qtasks::trace::tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .map_err(|e| qtasks::Error::Worker(e.to_string()))?;

    let app = App::builder().name("shop").build()?;
    let worker = app.spawn_worker();
    let shipped = async {
        let task = ship.call(7).on(&app).add_task().await?;
        task.wait(Duration::from_secs(5)).await
    }
    .instrument(tracing::info_span!("checkout"))
    .await?;
    println!("task {} ended: {:?}", shipped.uuid, shipped.status);
    worker.shutdown().await?;

    // Flushes the batch and stops the exporter.
    match (provider.shutdown(), listening) {
        (Ok(()), Ok(())) => println!("spans sent to {endpoint}"),
        (Ok(()), Err(_)) => println!("tracing shut down; nothing was exported"),
        (Err(e), _) => println!("tracing shut down with an error: {e}"),
    }
    Ok(())
}
