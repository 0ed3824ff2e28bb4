//! Traces exported over OTLP, as `docs/observability.md` and `examples/otlp.rs` set it up: an
//! `opentelemetry-otlp` gRPC exporter behind a batch processor sends the producer's span and
//! the worker's `task` span to a collector (here one of the test's own, the OTLP trace
//! service on tonic), in one trace.
#![cfg(feature = "opentelemetry")]

mod common;

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use qtasks::trace::opentelemetry::trace::TracerProvider as _;
use qtasks::trace::opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use common::DEADLINE;

#[qtasks::task]
async fn otlp_ship(order: u64) -> u64 {
    order
}

/// The collector: every export request it receives goes to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_spans_reach_an_otlp_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sent, mut received) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sent)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let layer = qtasks::trace::tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();

    let app = common::builder("otlp").build().unwrap();
    let worker = app.spawn_worker();
    let task = otlp_ship
        .call(7)
        .on(&app)
        .add_task()
        .instrument(tracing::info_span!("checkout"))
        .await
        .unwrap();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(7));
    worker.shutdown().await.unwrap();
    // Flushing blocks until the export is answered: off the runtime's threads.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();

    let mut spans = Vec::new();
    while let Ok(request) = received.try_recv() {
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let checkout = spans
        .iter()
        .find(|s| s.name == "checkout")
        .unwrap_or_else(|| panic!("the producer's span was exported: {names:?}"));
    let run = spans
        .iter()
        .find(|s| s.name == "task")
        .unwrap_or_else(|| panic!("the task span was exported: {names:?}"));
    assert_eq!(run.trace_id, checkout.trace_id, "one trace");
    assert_eq!(
        run.parent_span_id, checkout.span_id,
        "the task span is the child"
    );
}
