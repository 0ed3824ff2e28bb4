//! The gRPC API: `cargo run --features grpc --example grpc`. Serves `qtasks.v1.QTasksService` on a
//! free loopback port, then calls it with the Rust client generated from the same proto:
//! enqueue by name and wait, follow a task with `WaitTask`, list, and a refused call without the
//! token. It ends on its own; with `--serve` it then keeps serving on 127.0.0.1:50051 until
//! Ctrl-C, for `grpcurl` or a Python client (see `docs/grpc.md`).

use qtasks::grpc::proto::q_tasks_service_client::QTasksServiceClient;
use qtasks::grpc::proto::{AddTaskRequest, ListTasksRequest, WaitTaskRequest};
use qtasks::grpc::tonic::Request;
use qtasks::grpc::Grpc;
use qtasks::prelude::*;

/// Adds two numbers.
#[qtasks::task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Says hello.
#[qtasks::task(name = "greet")]
async fn greet(name: String) -> String {
    format!("hello, {name}")
}

/// A request carrying the token.
fn authed<T>(message: T, token: &str) -> Result<Request<T>, Box<dyn std::error::Error>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let app = App::builder().name("grpc-example").build()?;
    let worker = app.spawn_worker();
    let token = "example-token";

    let listener = qtasks::grpc::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Grpc::new(app.clone())
            .token(token)
            .serve_on(listener, async {
                let _ = stopped.await;
            }),
    );
    println!("serving qtasks.v1.QTasksService on {addr}");

    let mut client = QTasksServiceClient::connect(format!("http://{addr}")).await?;
    let request = AddTaskRequest {
        name: "add".into(),
        args_json: "[2]".into(),
        kwargs_json: r#"{"b": 3}"#.into(),
        timeout: 5.0,
        priority: None,
    };
    let added = client.add_task(authed(request, token)?).await?.into_inner();
    println!(
        "AddTask add(2, b=3): ok={} uuid={} result={}",
        added.ok, added.uuid, added.result_json
    );

    let request = AddTaskRequest {
        name: "greet".into(),
        args_json: r#"["grpc"]"#.into(),
        ..Default::default()
    };
    let queued = client.add_task(authed(request, token)?).await?.into_inner();
    let follow = WaitTaskRequest {
        uuid: queued.uuid.clone(),
        timeout: 5.0,
    };
    let mut events = client.wait_task(follow).await?.into_inner();
    while let Some(event) = events.message().await? {
        println!("WaitTask greet: {} {}", event.status, event.result_json);
    }

    let page = client
        .list_tasks(ListTasksRequest {
            status: "success".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("ListTasks success: {} tasks", page.tasks.len());

    let refused = client
        .add_task(Request::new(AddTaskRequest {
            name: "add".into(),
            args_json: "[1, 2]".into(),
            ..Default::default()
        }))
        .await;
    if let Err(status) = refused {
        println!(
            "AddTask without the token: {:?}: {}",
            status.code(),
            status.message()
        );
    }

    let _ = stop.send(());
    server.await??;
    if serve {
        let addr = qtasks::grpc::DEFAULT_ADDR;
        println!("serving on {addr} until Ctrl-C; the token is {token:?}");
        let listener = qtasks::grpc::bind(addr).await?;
        Grpc::new(app.clone())
            .token(token)
            .serve_on(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
    }
    worker.shutdown().await?;
    Ok(())
}
