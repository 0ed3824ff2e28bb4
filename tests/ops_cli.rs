//! The command line: run, add, get, inspect, stats, text and `--json`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::DEADLINE;
use futures::future::BoxFuture;
use qtasks::cli::Exit;
use qtasks::component::Starter;
use qtasks::memory::MemoryBackend;
use qtasks::{cli, App, TaskContext, TaskError};
use serde_json::Value;
use tokio::sync::mpsc;

#[qtasks::task(
    description = "Adds two numbers",
    tags = ["math"],
    priority = 3,
    retry = 2,
    level = 3,
    beta = true,
    owner = "core"
)]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// A lookup that fails (the seeds' `KeyError`).
#[derive(Debug, thiserror::Error)]
#[error("no such key")]
struct KeyError;

#[qtasks::task]
fn lookup(key: String) -> Result<u8, KeyError> {
    let _ = key;
    Err(KeyError)
}

#[qtasks::task]
async fn give_up(ctx: TaskContext) -> Result<(), TaskError> {
    Err(ctx.cancel("not today"))
}

#[qtasks::task]
async fn noisy(ctx: TaskContext) -> u8 {
    ctx.get_logger("noisy").info("hello from noisy");
    1
}

async fn run(builder: qtasks::AppBuilder, args: &[&str]) -> qtasks::Result<String> {
    run_exit(builder, args).await.map(|(out, _)| out)
}

/// The output and the exit code of a command that did not fail.
async fn run_exit(builder: qtasks::AppBuilder, args: &[&str]) -> qtasks::Result<(String, Exit)> {
    let mut out = Vec::new();
    let argv = std::iter::once("app").chain(args.iter().copied());
    let exit = cli::run_from(builder, argv, &mut out).await?;
    Ok((String::from_utf8(out).unwrap(), exit))
}

fn shared(name: &str) -> (Arc<MemoryBackend>, impl Fn() -> qtasks::AppBuilder) {
    let backend = Arc::new(MemoryBackend::new(Duration::from_secs(60)));
    let b = backend.clone();
    let name = name.to_string();
    (backend, move || common::builder(&name).backend(b.backend()))
}

#[tokio::test]
async fn inspect_lists_the_app_its_tasks_and_their_options() {
    let with_timer = || {
        common::builder("cli-inspect").timer(qtasks::timer::Timer::new(
            "nightly",
            qtasks::timer::Schedule::cron("0 0 3 * * *").unwrap(),
            add.call(1, 2),
        ))
    };
    let text = run(with_timer(), &["inspect"]).await.unwrap();
    assert!(text.contains("nightly: add, cron 0 0 3 * * *"), "{text}");
    assert!(text.contains("app cli-inspect"), "{text}");
    assert!(text.contains("add (a: i64, b: i64) -> i64"), "{text}");
    assert!(text.contains("priority 3, retry 2, tags math"), "{text}");
    assert!(text.contains("Adds two numbers"), "{text}");

    let json: Value =
        serde_json::from_str(&run(with_timer(), &["inspect", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["app"], "cli-inspect");
    let task = &json["tasks"].as_array().unwrap()[0];
    assert_eq!(task["name"], "add");
    assert_eq!(task["retry"], 2);
    assert_eq!(task["tags"][0], "math");
    // Extra `key = literal` pairs keep their literal's type.
    assert_eq!(
        task["extra"],
        serde_json::json!({"level": 3, "beta": true, "owner": "core"})
    );
    assert_eq!(json["config"]["max_tasks_process"], 10);
    assert_eq!(json["timers"][0]["task"], "add");
}

#[tokio::test]
async fn inspect_prints_signatures_as_written() {
    let text = run(common::builder("cli-inspect-sig"), &["inspect"])
        .await
        .unwrap();
    assert!(
        text.contains("lookup (key: String) -> Result<u8, KeyError>"),
        "{text}"
    );
    assert!(
        text.contains("give_up () -> Result<(), TaskError>"),
        "{text}"
    );
}

#[tokio::test]
async fn add_wait_exits_with_the_tasks_end() {
    let (_backend, builder) = shared("cli-exit");
    let app = builder().build().unwrap();
    let worker = app.spawn_worker();
    let (out, exit) = run_exit(builder(), &["add", "add", "[1, 2]", "--wait", "10"])
        .await
        .unwrap();
    assert_eq!(exit, Exit::Success, "{out}");
    let (out, exit) = run_exit(builder(), &["add", "lookup", r#"["k"]"#, "--wait", "10"])
        .await
        .unwrap();
    assert_eq!(exit, Exit::TaskFailed, "{out}");
    assert!(
        out.contains("status: error") && out.contains("no such key"),
        "{out}"
    );
    let (out, exit) = run_exit(builder(), &["add", "give_up", "[]", "--wait", "10"])
        .await
        .unwrap();
    assert_eq!(exit, Exit::TaskCancelled, "{out}");
    assert!(out.contains("not today"), "{out}");
    // Without `--wait` the command only enqueues: it succeeded.
    let (_, exit) = run_exit(builder(), &["add", "lookup", r#"["k"]"#])
        .await
        .unwrap();
    assert_eq!(exit, Exit::Success);
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn failures_have_documented_exit_codes() {
    let codes = [
        (Exit::Success, 0),
        (Exit::Failure, 1),
        (Exit::BadInput, 2),
        (Exit::TaskFailed, 3),
        (Exit::TaskCancelled, 4),
        (Exit::TimedOut, 5),
        (Exit::BackendUnreachable, 6),
    ];
    let help = <cli::Cli as clap::CommandFactory>::command()
        .render_long_help()
        .to_string();
    for (exit, code) in codes {
        assert_eq!(exit.code(), code);
        assert!(help.contains(&format!("  {code}  ")), "{help}");
    }
    let bad = |args: &'static [&'static str]| async move {
        let err = run(common::builder("cli-codes"), args).await.unwrap_err();
        Exit::of_error(&err)
    };
    assert_eq!(bad(&["add", "add", "{nope"]).await, Exit::BadInput);
    assert_eq!(bad(&["add", "missing", "[]"]).await, Exit::BadInput);
    assert_eq!(
        bad(&["add", "add", r#"{"a": "x", "b": 1}"#]).await,
        Exit::BadInput
    );
    assert_eq!(bad(&["frobnicate"]).await, Exit::BadInput);
    assert_eq!(
        bad(&["get", "6f1f7b36-0000-4000-8000-000000000000"]).await,
        Exit::BadInput
    );
    // No worker: the wait runs out.
    assert_eq!(
        bad(&["add", "add", "[1, 2]", "--wait", "0.05"]).await,
        Exit::TimedOut
    );
    assert_eq!(
        Exit::of_error(&qtasks::Error::backend("broker", "connection refused")),
        Exit::BackendUnreachable
    );
    assert_eq!(
        std::process::ExitCode::from(Exit::TaskFailed),
        std::process::ExitCode::from(3)
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn an_unreachable_backend_has_its_own_exit_code() {
    let err = run(
        common::builder("cli-unreachable"),
        &["--broker-url", "redis://127.0.0.1:1/0", "stats"],
    )
    .await
    .unwrap_err();
    assert_eq!(Exit::of_error(&err), Exit::BackendUnreachable, "{err}");
}

#[tokio::test]
async fn add_then_get_reads_the_same_record() {
    let (_backend, builder) = shared("cli-add");
    let added: Value = serde_json::from_str(
        &run(builder(), &["--json", "add", "add", "[2, 3]"])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(added["status"], "new");
    assert_eq!(added["priority"], 3);
    assert_eq!(added["args"], serde_json::json!([2, 3]));
    let uuid = added["uuid"].as_str().unwrap().to_string();

    let text = run(builder(), &["get", &uuid]).await.unwrap();
    assert!(text.contains(&format!("uuid: {uuid}")), "{text}");
    assert!(text.contains("status: new"), "{text}");

    // A worker on the same backend runs it; `add --wait` prints the result.
    let app = builder().build().unwrap();
    let worker = app.spawn_worker();
    let done: Value = serde_json::from_str(
        &run(
            builder(),
            &[
                "add",
                "add",
                r#"{"a": 40, "b": 2}"#,
                "--wait",
                "10",
                "--json",
            ],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(done["status"], "success");
    assert_eq!(done["returning"], 42);
    worker.shutdown().await.unwrap();
    // `get` prints the attempt with the worker that ran it.
    let worker_id = done["history"][0]["worker"].as_str().unwrap().to_string();
    assert!(!worker_id.is_empty(), "{done}");
    assert_eq!(done["history"][0]["status"], "success");
    let text = run(builder(), &["get", done["uuid"].as_str().unwrap()])
        .await
        .unwrap();
    assert!(
        text.contains(&format!("attempt 1: success on {worker_id}, ")),
        "{text}"
    );
}

#[tokio::test]
async fn bad_input_is_explained() {
    let err = run(common::builder("cli-bad"), &["add", "add", "{nope"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("JSON arguments"), "{err}");
    let err = run(common::builder("cli-bad"), &["add", "missing", "[]"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown task \"missing\""),
        "{err}"
    );
    let err = run(
        common::builder("cli-bad"),
        &["get", "6f1f7b36-0000-4000-8000-000000000000"],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no task 6f1f7b36"), "{err}");
    let err = run(common::builder("cli-bad"), &["frobnicate"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unrecognized subcommand"), "{err}");
}

#[tokio::test]
async fn stats_reports_queue_depth_statuses_and_live_workers() {
    let (_backend, builder) = shared("cli-stats");
    let app = builder().build().unwrap();
    for _ in 0..3 {
        add.call(1, 1).on(&app).add_task().await.unwrap();
    }
    add.call(1, 1)
        .on(&app)
        .priority(0)
        .add_task()
        .await
        .unwrap();
    let json: Value =
        serde_json::from_str(&run(builder(), &["stats", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["ready"], 4);
    assert_eq!(json["ready_by_priority"]["3"], 3);
    assert_eq!(json["ready_by_priority"]["0"], 1);
    assert_eq!(json["by_status"]["new"], 4);
    assert_eq!(json["live_workers"].as_array().unwrap().len(), 0);

    // A running worker shows up as live (it beats before it reports running).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = builder()
        .events(qtasks::events::Events::new().on_worker_running(move |e| {
            let _ = tx.send(e.worker_id.to_string());
        }))
        .build()
        .unwrap();
    let worker = app.spawn_worker();
    let id = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let text = run(builder(), &["stats"]).await.unwrap();
    assert!(text.contains(&format!("live workers (1): {id}")), "{text}");
    worker.shutdown().await.unwrap();
    let text = run(builder(), &["stats"]).await.unwrap();
    assert!(text.contains("live workers (0)"), "{text}");
}

#[tokio::test]
async fn pause_and_resume_a_queue_a_task_or_the_app() {
    let (backend, builder) = shared("cli-pause");
    let text = run(builder(), &["pause", "--queue", "mail"]).await.unwrap();
    assert!(text.contains("paused queue \"mail\""), "{text}");
    run(builder(), &["pause", "--task", "add"]).await.unwrap();
    let pauses = qtasks::backend::Broker::pauses(&*backend).await.unwrap();
    assert!(pauses.queues.contains("mail"));
    assert!(pauses.tasks.contains("add"));
    run(builder(), &["resume", "--queue", "mail"])
        .await
        .unwrap();
    run(builder(), &["resume", "--task", "add"]).await.unwrap();
    let json: Value =
        serde_json::from_str(&run(builder(), &["pause", "--json"]).await.unwrap()).unwrap();
    assert_eq!(json["what"], "every task");
    let pauses = qtasks::backend::Broker::pauses(&*backend).await.unwrap();
    assert!(pauses.app && pauses.queues.is_empty() && pauses.tasks.is_empty());
    // A bad selection of queues is a usage error naming the flag.
    let err = run(builder(), &["run", "--queues", "mail=0"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--queues"), "{err}");
}

/// A starter that reports the app it was given and stops at once.
struct Report(mpsc::UnboundedSender<usize>);

impl Starter for Report {
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, qtasks::Result<()>> {
        let _ = self.0.send(app.config().max_tasks_process);
        Box::pin(app.run_until(async {}))
    }
}

#[tokio::test]
async fn run_applies_concurrency_and_runs_the_starter() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let text = run(
        common::builder("cli-run").starter(Report(tx)),
        &["run", "--concurrency", "3"],
    )
    .await
    .unwrap();
    assert_eq!(rx.recv().await, Some(3));
    assert!(text.contains("worker with concurrency 3"), "{text}");
    assert!(text.trim_end().ends_with("stopped"), "{text}");
}

/// A starter that scrapes `/metrics` on `port` while the app runs, and reports the status.
#[cfg(feature = "metrics")]
struct Scrape(u16, mpsc::UnboundedSender<String>);

#[cfg(feature = "metrics")]
impl Starter for Scrape {
    fn start<'a>(&'a self, app: &'a App) -> BoxFuture<'a, qtasks::Result<()>> {
        Box::pin(app.run_until(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.0))
                .await
                .unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            let _ = self.1.send(response);
        }))
    }
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn run_serves_the_metrics_when_asked() {
    // A free port, told to the command line.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listen = format!("127.0.0.1:{port}");
    let text = run(
        common::builder("cli-metrics").starter(Scrape(port, tx)),
        &["run", "--metrics-listen", &listen],
    )
    .await
    .unwrap();
    let response = rx.recv().await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("qtasks_workers_live"), "{response}");
    assert!(
        text.contains(&format!("metrics at http://{listen}/metrics")),
        "{text}"
    );
}

/// The environment variable that makes [`cli_child`] run the command line (its value: the
/// arguments, as a JSON list).
const CHILD: &str = "QTASKS_CLI_CHILD";

/// A child process of [`the_cli_prints_log_lines_and_exits_with_its_code`]: `cli::main_from`
/// with the arguments in `QTASKS_CLI_CHILD` and a worker on the same backend, then the process
/// exits with the command's code. Does nothing when run otherwise.
#[test]
fn cli_child() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exit = rt.block_on(async {
        let (_backend, builder) = shared("cli-child");
        let worker = builder().build().unwrap().spawn_worker();
        let exit = cli::main_from(builder(), args).await;
        worker.shutdown().await.unwrap();
        exit
    });
    std::process::exit(i32::from(exit.code()));
}

/// Runs the command line in a child process: its exit code and stderr.
fn child(args: &[&str], rust_log: Option<&str>) -> (Option<i32>, String) {
    let argv: Vec<&str> = std::iter::once("app").chain(args.iter().copied()).collect();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["cli_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, serde_json::to_string(&argv).unwrap())
        .env_remove("RUST_LOG");
    if let Some(spec) = rust_log {
        cmd.env("RUST_LOG", spec);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_prints_log_lines_and_exits_with_its_code() {
    // Text, at the default level `info`: the task's line and the worker's.
    let (code, stderr) = child(&["add", "noisy", "[]", "--wait", "10"], None);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("hello from noisy"))
        .unwrap_or_else(|| panic!("no log line of the task in:\n{stderr}"));
    assert!(
        line.contains("INFO") && line.contains("logger=noisy"),
        "{line}"
    );
    // The worker's own lines too (it stops after the command, with the subscriber installed).
    assert!(stderr.contains("worker stopped"), "{stderr}");

    // JSON, one object per line.
    let (code, stderr) = child(
        &["--log-format", "json", "add", "noisy", "[]", "--wait", "10"],
        None,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let event: Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "hello from noisy")
        .unwrap_or_else(|| panic!("no JSON log line of the task in:\n{stderr}"));
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["logger"], "noisy");

    // RUST_LOG chooses the levels.
    let (code, stderr) = child(&["add", "noisy", "[]", "--wait", "10"], Some("warn"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("hello from noisy"), "{stderr}");

    // The process exits with the documented code.
    let (code, stderr) = child(&["add", "lookup", r#"["k"]"#, "--wait", "10"], None);
    assert_eq!(code, Some(i32::from(Exit::TaskFailed.code())), "{stderr}");
    let (code, stderr) = child(&["add", "add", r#"{"a": "x", "b": 1}"#], None);
    assert_eq!(code, Some(i32::from(Exit::BadInput.code())), "{stderr}");
    assert!(
        stderr.contains(r#"error: task "add": argument "a" expects i64, got "x""#),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_says_when_the_backend_has_no_schema() {
    let text = run(common::builder("cli-migrate"), &["migrate"])
        .await
        .unwrap();
    assert_eq!(
        text.trim(),
        "app cli-migrate: the backend has no schema to migrate"
    );
    let json: Value = serde_json::from_str(
        &run(common::builder("cli-migrate"), &["--json", "migrate"])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["schema"], false);
    assert_eq!(json["applied"], serde_json::json!([]));
}
