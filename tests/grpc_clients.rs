//! The gRPC API from real clients: a Rust tonic client (generated from the same proto)
//! enqueues by name, waits, reads, cancels, lists, follows a task with `WaitTask` and is refused
//! without the token; a Python client (`tests/grpc/client.py`, with `grpcio` installed by this
//! test into its own virtualenv and stubs generated from `qtasks-grpc/proto/qtasks.proto`)
//! enqueues with a wait, reads the task, follows it with `WaitTask` and lists it.
//!
//! The Python test is skipped with a message when the virtualenv or the package index is not
//! available, and fails instead when `QTASKS_REQUIRE_PYTHON_GRPC=1` (CI). Every wait is on a
//! result or a stream, with a deadline.
#![cfg(feature = "grpc")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{builder, DEADLINE};
use qtasks::grpc::proto::q_tasks_service_client::QTasksServiceClient;
use qtasks::grpc::proto::{
    AddTaskRequest, CancelRequest, GetTaskRequest, ListTasksRequest, TaskEvent, WaitTaskRequest,
};
use qtasks::grpc::tonic::transport::Channel;
use qtasks::grpc::tonic::{Code, Request, Streaming};
use qtasks::grpc::Grpc;
use qtasks::prelude::*;
use tokio::sync::oneshot;

/// The token the test servers take.
const TOKEN: &str = "grpc-test-token";

#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[qtasks::task(name = "orders.fail")]
async fn fail(order: u32) -> Result<u32, std::io::Error> {
    Err(std::io::Error::other(format!(
        "order {order} cannot be charged"
    )))
}

/// Lets `hold` end.
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Runs until the test releases it.
#[qtasks::task(name = "jobs.hold")]
async fn hold() -> u8 {
    RELEASE.notified().await;
    1
}

/// The next event of a `WaitTask` stream, within the deadline; `None` at its end.
async fn next(events: &mut Streaming<TaskEvent>) -> Option<TaskEvent> {
    tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("WaitTask sent nothing within the deadline")
        .unwrap()
}

/// A server of `app` on a free loopback port, stopped when the guard is dropped.
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(app: &App) -> Server {
    let listener = qtasks::grpc::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let grpc = Grpc::new(app.clone()).token(TOKEN);
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = grpc.serve_on(listener, shutdown).await {
            panic!("the gRPC server failed: {e}");
        }
    });
    Server { addr, _stop: stop }
}

async fn client(server: &Server) -> QTasksServiceClient<Channel> {
    QTasksServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap()
}

/// A request with the token.
fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

fn add_request(name: &str, args: &str, kwargs: &str, timeout: f64) -> AddTaskRequest {
    AddTaskRequest {
        name: name.into(),
        args_json: args.into(),
        kwargs_json: kwargs.into(),
        timeout,
        priority: None,
    }
}

/// The round trip every backend must pass: enqueue with a wait, enqueue and follow the task
/// with `WaitTask`, read it, list it.
async fn round_trip(app: &App) {
    let server = start(app).await;
    let mut client = client(&server).await;

    // Enqueue and wait: positional and named arguments together.
    let added = client
        .add_task(authed(add_request("add", "[40]", r#"{"b": 2}"#, 10.0)))
        .await
        .unwrap()
        .into_inner();
    assert!(added.ok, "{added:?}");
    assert_eq!(added.result_json, "42");
    assert_eq!(added.error, "");

    // Enqueue at once (with a priority), then follow it until it is final.
    let mut request = add_request("add", "", r#"{"a": 1, "b": 2}"#, 0.0);
    request.priority = Some(3);
    let queued = client.add_task(authed(request)).await.unwrap().into_inner();
    assert!(queued.ok, "{queued:?}");
    assert_eq!(queued.result_json, "");
    let mut events = client
        .wait_task(WaitTaskRequest {
            uuid: queued.uuid.clone(),
            timeout: DEADLINE.as_secs_f64(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(DEADLINE, events.message())
        .await
        .expect("WaitTask sent nothing within the deadline")
        .unwrap()
    {
        seen.push(event);
    }
    let last = seen.last().expect("WaitTask sent no event");
    assert!(last.r#final, "{seen:?}");
    assert_eq!(last.status, "success", "{seen:?}");
    assert_eq!(last.result_json, "3");
    assert_eq!(last.priority, 3);
    assert!(
        seen[..seen.len() - 1].iter().all(|e| !e.r#final),
        "{seen:?}"
    );

    // Read it, with and without the result.
    let got = client
        .get_task(GetTaskRequest {
            uuid: queued.uuid.clone(),
            include_result: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.ok);
    assert_eq!(got.status, "success");
    assert_eq!(got.result_json, "3");
    let got = client
        .get_task(GetTaskRequest {
            uuid: queued.uuid.clone(),
            include_result: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.result_json, "");

    // List them, newest first, one page at a time.
    let page = client
        .list_tasks(ListTasksRequest {
            status: "success".into(),
            task_name: "add".into(),
            limit: 1,
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.tasks.len(), 1);
    assert_ne!(page.next_cursor, "");
    let next = client
        .list_tasks(ListTasksRequest {
            status: "success".into(),
            task_name: "add".into(),
            limit: 10,
            cursor: page.next_cursor.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut uuids: Vec<_> = page
        .tasks
        .iter()
        .chain(&next.tasks)
        .map(|t| t.uuid.clone())
        .collect();
    uuids.sort();
    let mut expected = vec![added.uuid, queued.uuid];
    expected.sort();
    assert_eq!(uuids, expected);
    assert_eq!(next.next_cursor, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_enqueues_waits_reads_lists_and_follows_on_memory() {
    let app = builder("grpc-memory").build().unwrap();
    let worker = app.spawn_worker();
    round_trip(&app).await;
    worker.shutdown().await.unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_enqueues_waits_reads_lists_and_follows_on_redis() {
    let Some(url) = qtasks::redis::server::test_url() else {
        return;
    };
    let name = format!("grpc-redis-{}", qtasks::Uuid::new_v4().simple());
    // Listing on Redis reads the per-status indexes, an option of the backend.
    let url = format!("{url}?status_index=true");
    let app = builder(&name).broker_url(&url).build().unwrap();
    let worker = app.spawn_worker();
    round_trip(&app).await;
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_task_streams_each_status_change_until_the_final_one() {
    let app = builder("grpc-follow").build().unwrap();
    let worker = app.spawn_worker();
    let server = start(&app).await;
    let mut client = client(&server).await;
    let queued = client
        .add_task(authed(add_request("jobs.hold", "", "", 0.0)))
        .await
        .unwrap()
        .into_inner();
    let mut events = client
        .wait_task(WaitTaskRequest {
            uuid: queued.uuid,
            timeout: DEADLINE.as_secs_f64(),
        })
        .await
        .unwrap()
        .into_inner();
    // `new` (if the worker has not claimed it yet), then `process`, which is not final.
    let mut event = next(&mut events).await.expect("a first event");
    if event.status == "new" {
        assert!(!event.r#final);
        event = next(&mut events).await.expect("the process event");
    }
    assert_eq!(event.status, "process", "{event:?}");
    assert!(!event.r#final);
    RELEASE.notify_one();
    let last = next(&mut events).await.expect("the final event");
    assert_eq!(last.status, "success", "{last:?}");
    assert_eq!(last.result_json, "1");
    assert!(last.r#final);
    assert!(
        next(&mut events).await.is_none(),
        "the stream ends after the final event"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_answers_ok_false_with_its_error() {
    let app = builder("grpc-fail").build().unwrap();
    let worker = app.spawn_worker();
    let server = start(&app).await;
    let mut client = client(&server).await;
    let added = client
        .add_task(authed(add_request("orders.fail", "[7]", "", 10.0)))
        .await
        .unwrap()
        .into_inner();
    assert!(!added.ok, "{added:?}");
    assert_ne!(added.uuid, "");
    assert!(added.error.contains("orders.fail"), "{}", added.error);
    assert!(
        added.error.contains("order 7 cannot be charged"),
        "{}",
        added.error
    );
    let got = client
        .get_task(GetTaskRequest {
            uuid: added.uuid,
            include_result: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status, "error");
    assert!(
        got.traceback.contains("order 7 cannot be charged"),
        "{got:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_is_cancelled_and_its_stream_ends_at_once() {
    // No worker: the task stays queued.
    let app = builder("grpc-cancel").build().unwrap();
    let server = start(&app).await;
    let mut client = client(&server).await;
    let queued = client
        .add_task(authed(add_request("add", "[1, 2]", "", 0.0)))
        .await
        .unwrap()
        .into_inner();
    let cancelled = client
        .cancel(authed(CancelRequest {
            uuid: queued.uuid.clone(),
            reason: "not needed any more".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.ok, "{cancelled:?}");
    assert_eq!(cancelled.outcome, "cancelled");
    let mut events = client
        .wait_task(WaitTaskRequest {
            uuid: queued.uuid.clone(),
            timeout: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    let event = tokio::time::timeout(DEADLINE, events.message())
        .await
        .unwrap()
        .unwrap()
        .expect("one event");
    assert_eq!(event.status, "cancel");
    assert_eq!(event.cancel_reason, "not needed any more");
    assert!(event.r#final);
    assert!(events.message().await.unwrap().is_none());
    // Cancelling it again: it had finished.
    let again = client
        .cancel(authed(CancelRequest {
            uuid: queued.uuid,
            reason: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, "finished");
    assert!(!again.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_calls_are_refused_without_the_token_and_reads_are_open() {
    let app = builder("grpc-auth").build().unwrap();
    let server = start(&app).await;
    let mut client = client(&server).await;
    let refused = client
        .add_task(Request::new(add_request("add", "[1, 2]", "", 0.0)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("authorization: Bearer <token>"),
        "{}",
        refused.message()
    );
    let mut wrong = Request::new(add_request("add", "[1, 2]", "", 0.0));
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-it".parse().unwrap());
    let refused = client.add_task(wrong).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("is not it"),
        "{}",
        refused.message()
    );
    let refused = client
        .cancel(Request::new(CancelRequest {
            uuid: qtasks::Uuid::new_v4().to_string(),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Nothing was enqueued, and reading needs no token.
    let page = client
        .list_tasks(ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.tasks.is_empty(), "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_status_that_names_the_task_and_what_to_do() {
    let app = builder("grpc-bad").build().unwrap();
    let server = start(&app).await;
    let mut client = client(&server).await;
    let refused = |name: &str, args: &str, kwargs: &str| {
        let request = authed(add_request(name, args, kwargs, 0.0));
        let mut client = client.clone();
        async move { client.add_task(request).await.unwrap_err() }
    };
    let e = refused("nope", "[]", "").await;
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("nope") && e.message().contains("add"),
        "{}",
        e.message()
    );
    let e = refused("add", "", r#"{"a": "x", "b": 2}"#).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(r#"argument "a" expects i64, got "x""#),
        "{}",
        e.message()
    );
    let e = refused("add", "[1, 2", "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("args_json is not valid JSON"),
        "{}",
        e.message()
    );
    let e = refused("add", r#"{"a": 1}"#, "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("args_json must be a JSON array"),
        "{}",
        e.message()
    );
    let e = refused("add", "[1]", r#"{"a": 2}"#).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains(r#"argument "a" is given twice"#),
        "{}",
        e.message()
    );
    let e = refused("add", "[1, 2, 3]", r#"{"b": 2}"#).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("3 positional arguments given"),
        "{}",
        e.message()
    );
    let e = client
        .get_task(GetTaskRequest {
            uuid: "not-a-uuid".into(),
            include_result: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = client
        .get_task(GetTaskRequest {
            uuid: qtasks::Uuid::new_v4().to_string(),
            include_result: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .list_tasks(ListTasksRequest {
            status: "done".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("new, process, retry"),
        "{}",
        e.message()
    );
}

// ----- The Python client -----

/// Skips the Python test with `why`, or fails it when `QTASKS_REQUIRE_PYTHON_GRPC=1`.
fn skip(why: &str) {
    if std::env::var("QTASKS_REQUIRE_PYTHON_GRPC").as_deref() == Ok("1") {
        panic!("QTASKS_REQUIRE_PYTHON_GRPC=1 but the Python gRPC client cannot run: {why}");
    }
    eprintln!("skipping the Python gRPC client test: {why} (set QTASKS_REQUIRE_PYTHON_GRPC=1 to fail instead)");
}

/// Runs a command with a deadline; `Err` with what it printed when it fails.
async fn run(command: &mut tokio::process::Command, limit: Duration) -> Result<String, String> {
    let shown = format!("{:?}", command.as_std());
    let output = tokio::time::timeout(limit, command.kill_on_drop(true).output())
        .await
        .map_err(|_| format!("{shown} did not finish within {limit:?}"))?
        .map_err(|e| format!("{shown} could not start: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{shown} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A virtualenv with `grpcio` and `grpcio-tools` under the target directory (kept between runs),
/// or why there is none.
async fn python_env() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grpc-venv");
    let python = dir.join("bin").join("python");
    let ready = python.exists()
        && run(
            tokio::process::Command::new(&python).args(["-c", "import grpc, grpc_tools"]),
            DEADLINE,
        )
        .await
        .is_ok();
    if ready {
        return Ok(python);
    }
    run(
        tokio::process::Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&dir),
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| format!("{e} (install python3 and python3-venv)"))?;
    run(
        tokio::process::Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            // Fail within a minute or two when the package index is unreachable.
            "--timeout",
            "20",
            "--retries",
            "2",
            "grpcio",
            "grpcio-tools",
        ]),
        Duration::from_secs(600),
    )
    .await
    .map_err(|e| format!("pip could not install grpcio from the package index: {e}"))?;
    Ok(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_enqueues_waits_reads_follows_and_lists() {
    let python = match python_env().await {
        Ok(python) => python,
        Err(why) => return skip(&why),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stubs = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("grpc-stubs-{}", qtasks::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&stubs).unwrap();
    let proto_dir = root.join("qtasks-grpc").join("proto");
    run(
        tokio::process::Command::new(&python)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", proto_dir.display()))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(proto_dir.join("qtasks.proto")),
        Duration::from_secs(60),
    )
    .await
    .expect("grpc_tools.protoc generates the Python stubs");

    let app = builder("grpc-python").build().unwrap();
    let worker = app.spawn_worker();
    let server = start(&app).await;
    let out = run(
        tokio::process::Command::new(&python)
            .arg(root.join("tests").join("grpc").join("client.py"))
            .arg("--addr")
            .arg(server.addr.to_string())
            .arg("--token")
            .arg(TOKEN)
            .arg("--stubs")
            .arg(&stubs),
        Duration::from_secs(60),
    )
    .await
    .expect("the Python client runs");
    let _ = std::fs::remove_dir_all(&stubs);
    let seen: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the Python client printed {out:?}, not JSON: {e}"));
    assert_eq!(seen["add"]["ok"], true, "{seen}");
    assert_eq!(seen["add"]["result"], 5, "{seen}");
    assert_eq!(seen["add"]["error"], "", "{seen}");
    let uuid = seen["add"]["uuid"].as_str().unwrap();
    assert_eq!(
        app.get(uuid.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .status,
        TaskStatus::Success
    );
    assert_eq!(seen["get"]["ok"], true, "{seen}");
    assert_eq!(seen["get"]["status"], "success", "{seen}");
    assert_eq!(seen["get"]["result"], 5, "{seen}");
    assert_eq!(
        seen["wait"],
        serde_json::json!([{"status": "success", "final": true, "result": "5"}]),
        "{seen}"
    );
    assert_eq!(seen["list"], serde_json::json!([uuid]), "{seen}");
    assert_eq!(seen["no_token"]["code"], "UNAUTHENTICATED", "{seen}");
    assert_eq!(seen["unknown_task"]["code"], "NOT_FOUND", "{seen}");
    assert!(
        seen["unknown_task"]["details"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{seen}"
    );
    assert_eq!(seen["bad_arguments"]["code"], "INVALID_ARGUMENT", "{seen}");
    assert!(
        seen["bad_arguments"]["details"]
            .as_str()
            .unwrap()
            .contains(r#"argument "a" expects i64"#),
        "{seen}"
    );
    worker.shutdown().await.unwrap();
}
