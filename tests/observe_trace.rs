//! Trace propagation (feature `opentelemetry`): the producer's span is the parent of the
//! worker's `task` span, in one process on the memory backend and across two processes on one
//! real Redis (this test binary re-executed as the worker, with its own in-memory span
//! exporter, printing the spans it exported); a retry's span links to the producer's instead.
#![cfg(feature = "opentelemetry")]

mod common;

use std::sync::OnceLock;

use common::DEADLINE;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use qtasks::prelude::*;
use qtasks::TaskStatus;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[qtasks::task]
async fn traced_add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task(echo, retry = 1, retry_backoff = "fixed", retry_delay = 0.01)]
async fn traced_flaky(task: AsyncTask) -> Result<u32, std::io::Error> {
    match task.ctx.attempt() {
        1 => Err(std::io::Error::other("first attempt fails")),
        n => Ok(n),
    }
}

/// The process's span exporter, behind a global subscriber with an OpenTelemetry layer
/// (installed once: the worker's spans are made on the runtime's threads).
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("qtasks-tests"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        (exporter, provider)
    })
}

fn finished_spans() -> Vec<SpanData> {
    let (exporter, provider) = exporter();
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// The `task` spans of one task, by attempt.
fn task_spans(uuid: qtasks::Uuid) -> Vec<SpanData> {
    let uuid = uuid.to_string();
    let mut spans: Vec<SpanData> = finished_spans()
        .into_iter()
        .filter(|s| s.name == "task" && attribute(s, "task_uuid") == Some(uuid.clone().into()))
        .collect();
    spans.sort_by_key(|s| match attribute(s, "attempt") {
        Some(Value::I64(n)) => n,
        _ => 0,
    });
    spans
}

fn producer_span(name: &'static str) -> SpanData {
    finished_spans()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("the producer span {name:?} was exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_span_is_a_child_of_the_producer_span() {
    exporter();
    let app = common::builder("trace-memory").build().unwrap();
    let worker = app.spawn_worker();
    let task = traced_add
        .call(2, 3)
        .on(&app)
        .add_task()
        .instrument(tracing::info_span!("produce_memory"))
        .await
        .unwrap();
    // The record carries the producer's span context.
    let stored = app.get(task.uuid).await.unwrap().unwrap();
    let traceparent = stored.extra.get("traceparent").cloned().unwrap_or_default();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(5));
    worker.shutdown().await.unwrap();

    let producer = producer_span("produce_memory");
    let [run] = task_spans(task.uuid).try_into().expect("one task span");
    assert_eq!(
        run.span_context.trace_id(),
        producer.span_context.trace_id()
    );
    assert_eq!(run.parent_span_id, producer.span_context.span_id());
    assert!(traceparent.contains(&producer.span_context.trace_id().to_string()));
    assert_eq!(attribute(&run, "task_name"), Some("traced_add".into()));
    assert_eq!(attribute(&run, "attempt"), Some(Value::I64(1)));
    assert_eq!(attribute(&run, "status"), Some("success".into()));
    assert!(
        matches!(attribute(&run, "queue_seconds"), Some(Value::F64(s)) if s >= 0.0),
        "{:?}",
        run.attributes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_links_to_the_producer_span() {
    exporter();
    let app = common::builder("trace-retry").build().unwrap();
    let worker = app.spawn_worker();
    let task = traced_flaky
        .call()
        .on(&app)
        .add_task()
        .instrument(tracing::info_span!("produce_retry"))
        .await
        .unwrap();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(2));
    worker.shutdown().await.unwrap();

    let producer = producer_span("produce_retry").span_context;
    let [first, second] = task_spans(task.uuid).try_into().expect("two task spans");
    assert_eq!(first.parent_span_id, producer.span_id());
    assert_eq!(first.span_context.trace_id(), producer.trace_id());
    assert_eq!(attribute(&first, "status"), Some("retry".into()));
    // The retry starts its own trace, linked to the producer's span.
    assert_eq!(second.parent_span_id, SpanId::INVALID);
    assert_ne!(second.span_context.trace_id(), producer.trace_id());
    assert!(
        second
            .links
            .iter()
            .any(|l| l.span_context.span_id() == producer.span_id()
                && l.span_context.trace_id() == producer.trace_id()),
        "{:?}",
        second.links
    );
    assert_eq!(attribute(&second, "status"), Some("success".into()));
    assert_eq!(attribute(&second, "attempt"), Some(Value::I64(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_producer_span_nothing_is_stored() {
    exporter();
    let app = common::builder("trace-none").build().unwrap();
    let worker = app.spawn_worker();
    let task = traced_add.call(1, 1).on(&app).add_task().await.unwrap();
    assert!(!app
        .get(task.uuid)
        .await
        .unwrap()
        .unwrap()
        .extra
        .contains_key("traceparent"));
    task.wait(DEADLINE).await.unwrap();
    worker.shutdown().await.unwrap();
    let [run] = task_spans(task.uuid).try_into().expect("one task span");
    assert_eq!(run.parent_span_id, SpanId::INVALID);
}

/// What the worker process prints for each span it exported:
/// `SPAN <name> <trace id> <span id> <parent span id> <task uuid or ->`.
#[cfg(feature = "redis")]
const TRACE_WORKER_ENV: &str = "QTASKS_TEST_TRACE_WORKER";

/// The worker process of the two-process test: runs a worker of the app on Redis until the
/// task is final, then prints its exported spans. Returns at once unless asked.
#[cfg(feature = "redis")]
#[test]
fn trace_worker_process_entry_point() {
    let Ok(spec) = std::env::var(TRACE_WORKER_ENV) else {
        return;
    };
    let mut parts = spec.split('\n');
    let (Some(url), Some(app_name), Some(uuid)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("url\\napp\\nuuid expected, got {spec:?}");
    };
    let uuid: qtasks::Uuid = uuid.parse().unwrap();
    exporter();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let app = common::builder(app_name).broker_url(url).build().unwrap();
        let worker = app.spawn_worker();
        let done = app.wait(uuid, DEADLINE).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success);
        worker.shutdown().await.unwrap();
    });
    for span in finished_spans() {
        let uuid = match attribute(&span, "task_uuid") {
            Some(Value::String(s)) => s.to_string(),
            _ => "-".into(),
        };
        println!(
            "SPAN {} {} {} {} {}",
            span.name,
            span.span_context.trace_id(),
            span.span_context.span_id(),
            span.parent_span_id,
            uuid
        );
    }
    println!("SPANS DONE");
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_span_is_the_parent_across_processes_on_redis() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    exporter();
    let name = format!("trace-xproc-{}", qtasks::Uuid::new_v4().simple());
    // The producer: this process, with no worker.
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    let task = traced_add
        .call(20, 22)
        .on(&app)
        .add_task()
        .instrument(tracing::info_span!("produce_redis"))
        .await
        .unwrap();
    let producer = producer_span("produce_redis").span_context;
    // Stored in Redis with the task, readable by any process.
    let stored = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(
        stored.extra.get("traceparent").map(String::as_str),
        Some(format!("00-{}-{}-01", producer.trace_id(), producer.span_id()).as_str())
    );

    // The worker: this binary again, in another process.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trace_worker_process_entry_point", "--nocapture"])
        .env(TRACE_WORKER_ENV, format!("{url}\n{name}\n{}", task.uuid))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        task.wait(DEADLINE).await.unwrap().returning,
        Some(42),
        "the other process ran the task"
    );
    let mut spans = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "SPANS DONE" => break,
            Ok(line) => {
                if let Some(span) = line.strip_prefix("SPAN ") {
                    spans.push(span.split(' ').map(str::to_string).collect::<Vec<_>>());
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the worker process did not print its spans: {e}");
            }
        }
    }
    assert!(child.wait().unwrap().success());

    let uuid = task.uuid.to_string();
    let runs: Vec<&Vec<String>> = spans
        .iter()
        .filter(|s| s[0] == "task" && s[4] == uuid)
        .collect();
    let [run] = runs.as_slice() else {
        panic!("one task span in the worker process: {spans:?}");
    };
    assert_ne!(producer.trace_id(), TraceId::INVALID);
    assert_eq!(
        run[1],
        producer.trace_id().to_string(),
        "same trace in both processes"
    );
    assert_eq!(
        run[3],
        producer.span_id().to_string(),
        "the producer's span is the parent"
    );
}

/// PostgreSQL keeps the producer's span context with the task's arguments (the envelope), so
/// the worker's span is its child there too.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_task_span_is_a_child_of_the_producer_span() {
    let Some(url) = common::postgres::test_url("trace").await else {
        return;
    };
    exporter();
    let name = format!("trace-pg-{}", qtasks::Uuid::new_v4().simple());
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    qtasks::postgres::PostgresBackend::from_url(&url, &name, app.config())
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let task = traced_add
        .call(4, 5)
        .on(&app)
        .add_task()
        .instrument(tracing::info_span!("produce_postgres"))
        .await
        .unwrap();
    let producer = producer_span("produce_postgres").span_context;
    let stored = app.get(task.uuid).await.unwrap().unwrap();
    assert_eq!(
        stored.extra.get("traceparent").map(String::as_str),
        Some(format!("00-{}-{}-01", producer.trace_id(), producer.span_id()).as_str())
    );
    assert_eq!(stored.args, task.args, "the arguments read back as written");
    let worker = app.spawn_worker();
    assert_eq!(task.wait(DEADLINE).await.unwrap().returning, Some(9));
    worker.shutdown().await.unwrap();
    let [run] = task_spans(task.uuid).try_into().expect("one task span");
    assert_eq!(run.span_context.trace_id(), producer.trace_id());
    assert_eq!(run.parent_span_id, producer.span_id());
}
