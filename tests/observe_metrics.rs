//! Metrics (feature `metrics`): tasks run on a real worker, then `/metrics` is scraped over HTTP
//! (the standalone endpoint and the dashboard's) and the counters, histogram counts and gauges
//! are checked against what ran.
//!
//! The recorder is global to the process, so each test uses task names of its own and reads
//! only their series; the label cardinality cap, a global setting, is tested in
//! `observe_metrics_cap.rs`, a binary of its own.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use common::DEADLINE;
use qtasks::backend::NewTask;
use qtasks::prelude::*;
use qtasks::{Payload, TaskStatus};

#[qtasks::task]
async fn metered_ok(n: u32) -> u32 {
    n + 1
}

#[qtasks::task(retry = 1, retry_backoff = "fixed", retry_delay = 0.01)]
async fn metered_flaky() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("always fails"))
}

#[qtasks::task(echo)]
async fn metered_cancel(task: AsyncTask) -> Result<(), TaskError> {
    Err(task.ctx.cancel("not today"))
}

#[qtasks::task]
async fn metered_bad_args(n: u32) -> u32 {
    n
}

#[qtasks::task]
async fn metered_queued(n: u32) -> u32 {
    n
}

#[qtasks::task]
async fn metered_web(n: u32) -> u32 {
    n
}

/// One scrape: every sample by metric name and its labels (sorted), as the text has them.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest.trim_end_matches('}');
                    let labels = labels
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            samples.insert((name, labels), value);
        }
        Scrape { text, samples }
    }

    /// The value of `name` with exactly these labels (0 when the series is absent).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Whether any series of `name` exists.
    fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

/// `GET path` over a real socket: the status code, the headers and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("the endpoint answers")
        .unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (code, head.to_string(), body.to_string())
}

/// Serves the standalone endpoint of `app` on a free loopback port.
async fn serve(app: &App) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(qtasks::metrics::serve_on(app.clone(), listener));
    addr
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let (code, head, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    Scrape::parse(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_follow_the_tasks_that_ran() {
    qtasks::metrics::install().unwrap();
    let app = common::builder("metrics-run").build().unwrap();
    let worker = app.spawn_worker();

    let mut oks = Vec::new();
    for n in 0..5 {
        oks.push(metered_ok.call(n).on(&app).add_task().await.unwrap());
    }
    for task in &oks {
        assert_eq!(
            task.wait(DEADLINE).await.unwrap().status,
            TaskStatus::Success
        );
    }
    let flaky = metered_flaky.call().on(&app).add_task().await.unwrap();
    assert_eq!(
        flaky.wait(DEADLINE).await.unwrap().status,
        TaskStatus::Error
    );
    let cancel = metered_cancel.call().on(&app).add_task().await.unwrap();
    assert_eq!(
        cancel.wait(DEADLINE).await.unwrap().status,
        TaskStatus::Cancel
    );
    // Arguments that do not fit, written by a producer that does not check: dead-lettered.
    let bad = NewTask {
        uuid: qtasks::Uuid::new_v4(),
        task_name: "metered_bad_args".into(),
        priority: 0,
        args: Payload::encode(&serde_json::json!({"n": "not a number"})).unwrap(),
        created_at: SystemTime::now(),
        not_before: None,
        trace: None,
        flow: None,
    };
    app.backend()
        .broker
        .enqueue(std::slice::from_ref(&bad))
        .await
        .unwrap();
    assert_eq!(
        app.wait(bad.uuid, DEADLINE).await.unwrap().status,
        TaskStatus::Error
    );

    let addr = serve(&app).await;
    let m = scrape(addr).await;
    let ok = [("task", "metered_ok")];
    assert_eq!(m.get("qtasks_tasks_enqueued_total", &ok), 5.0, "{}", m.text);
    assert_eq!(m.get("qtasks_tasks_started_total", &ok), 5.0);
    let finished = |task, status| {
        m.get(
            "qtasks_tasks_finished_total",
            &[("task", task), ("status", status)],
        )
    };
    assert_eq!(finished("metered_ok", "success"), 5.0);
    assert_eq!(finished("metered_ok", "error"), 0.0);
    assert_eq!(m.get("qtasks_task_queue_seconds_count", &ok), 5.0);
    assert!(m.get("qtasks_task_queue_seconds_sum", &ok) >= 0.0);
    // A real histogram: cumulative buckets ending with `+Inf` = the count.
    assert_eq!(
        m.get(
            "qtasks_task_queue_seconds_bucket",
            &[("task", "metered_ok"), ("le", "+Inf")]
        ),
        5.0
    );
    let exec = [("task", "metered_ok"), ("status", "success")];
    assert_eq!(m.get("qtasks_task_execution_seconds_count", &exec), 5.0);

    // Two attempts: the first retried, the second failed for good.
    let flaky = [("task", "metered_flaky")];
    assert_eq!(m.get("qtasks_tasks_enqueued_total", &flaky), 1.0);
    assert_eq!(m.get("qtasks_tasks_started_total", &flaky), 2.0);
    assert_eq!(m.get("qtasks_tasks_retried_total", &flaky), 1.0);
    assert_eq!(finished("metered_flaky", "error"), 1.0);
    assert_eq!(
        m.get(
            "qtasks_task_execution_seconds_count",
            &[("task", "metered_flaky"), ("status", "retry")]
        ),
        1.0
    );
    // Queue time is the first attempt's only.
    assert_eq!(m.get("qtasks_task_queue_seconds_count", &flaky), 1.0);

    assert_eq!(finished("metered_cancel", "cancel"), 1.0);
    assert_eq!(finished("metered_bad_args", "error"), 1.0);
    assert_eq!(
        m.get(
            "qtasks_tasks_dead_lettered_total",
            &[("task", "metered_bad_args"), ("reason", "bad_arguments")]
        ),
        1.0
    );
    // Written to the broker directly: not an enqueue through the app.
    assert_eq!(
        m.get(
            "qtasks_tasks_enqueued_total",
            &[("task", "metered_bad_args")]
        ),
        0.0
    );

    // Worker liveness: this app's worker beat at least once and is listed as live.
    assert!(m.get("qtasks_worker_heartbeats_total", &[]) >= 1.0);
    assert!(m.get("qtasks_workers_live", &[]) >= 1.0, "{}", m.text);
    assert!(m.has("qtasks_tasks_executing"));
    assert!(m.has("qtasks_tasks_inflight"));

    // Anything but GET /metrics is refused.
    assert_eq!(get(addr, "/").await.0, 404);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_are_read_from_the_backend_at_each_scrape() {
    qtasks::metrics::install().unwrap();
    // No worker: the tasks stay queued.
    let app = common::builder("metrics-depth").build().unwrap();
    for n in 0..3 {
        metered_queued
            .call(n)
            .priority(7)
            .on(&app)
            .add_task()
            .await
            .unwrap();
    }
    metered_queued
        .call(9)
        .priority(-2)
        .on(&app)
        .add_task()
        .await
        .unwrap();
    let addr = serve(&app).await;
    let m = scrape(addr).await;
    assert_eq!(
        m.get("qtasks_queue_depth", &[("priority", "7")]),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(m.get("qtasks_queue_depth", &[("priority", "-2")]), 1.0);
    assert_eq!(m.get("qtasks_tasks_inflight", &[]), 0.0);
    assert_eq!(
        m.get("qtasks_tasks_enqueued_total", &[("task", "metered_queued")]),
        4.0
    );

    // Drained by a worker: the next scrape says so.
    let worker = app.spawn_worker();
    let last = metered_queued
        .call(10)
        .priority(7)
        .on(&app)
        .add_task()
        .await
        .unwrap();
    last.wait(DEADLINE).await.unwrap();
    worker.shutdown().await.unwrap();
    let m = scrape(addr).await;
    assert_eq!(m.get("qtasks_queue_depth", &[("priority", "7")]), 0.0);
    assert_eq!(m.get("qtasks_queue_depth", &[("priority", "-2")]), 0.0);
}

#[cfg(feature = "web")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_the_metrics_too() {
    qtasks::metrics::install().unwrap();
    let app = common::builder("metrics-web").build().unwrap();
    let worker = app.spawn_worker();
    let task = metered_web.call(1).on(&app).add_task().await.unwrap();
    task.wait(DEADLINE).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        qtasks::web::Dashboard::new(app.clone())
            .token("t")
            .serve_on(listener),
    );
    let m = scrape(addr).await;
    assert_eq!(
        m.get(
            "qtasks_tasks_finished_total",
            &[("task", "metered_web"), ("status", "success")]
        ),
        1.0,
        "{}",
        m.text
    );
    worker.shutdown().await.unwrap();
}

#[qtasks::task]
async fn metered_redis(n: u32) -> u32 {
    n
}

/// On Redis the enqueue time travels with the queue entry (the stored arguments' envelope),
/// so the queue histogram is filled there too, and the gauges come from the Redis stats.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_the_queue_time_and_gauges_are_recorded_too() {
    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    qtasks::metrics::install().unwrap();
    let name = format!("metrics-redis-{}", qtasks::Uuid::new_v4().simple());
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    // Queued with no worker: the depth gauge sees them.
    let mut tasks = Vec::new();
    for n in 0..3 {
        tasks.push(
            metered_redis
                .call(n)
                .priority(4)
                .on(&app)
                .add_task()
                .await
                .unwrap(),
        );
    }
    let addr = serve(&app).await;
    let m = scrape(addr).await;
    assert_eq!(
        m.get("qtasks_queue_depth", &[("priority", "4")]),
        3.0,
        "{}",
        m.text
    );
    let worker = app.spawn_worker();
    for (n, t) in tasks.iter().enumerate() {
        assert_eq!(t.wait(DEADLINE).await.unwrap().returning, Some(n as u32));
    }
    worker.shutdown().await.unwrap();
    let m = scrape(addr).await;
    let label = [("task", "metered_redis")];
    assert_eq!(m.get("qtasks_tasks_started_total", &label), 3.0);
    assert_eq!(m.get("qtasks_task_queue_seconds_count", &label), 3.0);
    assert_eq!(m.get("qtasks_queue_depth", &[("priority", "4")]), 0.0);
    assert_eq!(m.get("qtasks_tasks_inflight", &[]), 0.0);
}

#[qtasks::task]
async fn metered_malformed(n: u32) -> u32 {
    n
}

/// A dead-letter decided inside a Redis script (here: the claim finds a record whose priority
/// is not a number) is counted under the record's task name, not `task="unknown"`.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_dead_letter_of_the_scripts_is_counted_under_its_task_name() {
    use qtasks::redis::redis::AsyncCommands;

    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    qtasks::metrics::install().unwrap();
    let name = format!("metrics-dead-{}", qtasks::Uuid::new_v4().simple());
    let app = common::builder(&name).broker_url(&url).build().unwrap();
    // A record as something else might have left it: a priority that is not a number.
    let bad = qtasks::Uuid::new_v4();
    let mut conn = common::worker_process::raw_redis(&url).await;
    let args = Payload::encode(&(1_u32,)).unwrap();
    let _: () = qtasks::redis::redis::cmd("HSET")
        .arg(format!("{{{name}}}:t:{bad}"))
        .arg("n")
        .arg("metered_malformed")
        .arg("p")
        .arg("high")
        .arg("a")
        .arg(args.as_bytes())
        .arg("s")
        .arg("new")
        .arg("c")
        .arg(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                .to_string(),
        )
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = conn
        .lpush(format!("{{{name}}}:q:0"), bad.to_string())
        .await
        .unwrap();
    let _: () = conn
        .zadd(format!("{{{name}}}:prios"), "0", 0)
        .await
        .unwrap();

    let worker = app.spawn_worker();
    let dead = app.wait(bad, DEADLINE).await.unwrap();
    assert_eq!(dead.status, TaskStatus::Error);
    worker.shutdown().await.unwrap();
    let addr = serve(&app).await;
    let m = scrape(addr).await;
    assert_eq!(
        m.get(
            "qtasks_tasks_dead_lettered_total",
            &[
                ("task", "metered_malformed"),
                ("reason", "malformed_record")
            ]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "qtasks_tasks_dead_lettered_total",
            &[("task", "unknown"), ("reason", "malformed_record")]
        ),
        0.0
    );
}
