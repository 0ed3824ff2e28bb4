//! The gRPC API of qtasks, on [tonic]: enqueue by name with JSON arguments, read, cancel,
//! follow and list tasks from any language. The service is Python QTasks'
//! `qtasks.v1.QTasksService` (`AddTask`, `GetTask`, same fields), so its clients work
//! unchanged, plus `Cancel`, `WaitTask` (server-streaming) and `ListTasks`.
//!
//! ```no_run
//! # async fn run(app: qtasks_core::App) -> qtasks_core::Result<()> {
//! // On loopback; AddTask and Cancel need the token (QTASKS_GRPC_TOKEN, or a random one).
//! qtasks_grpc::serve(app, qtasks_grpc::DEFAULT_ADDR).await
//! # }
//! ```
//!
//! Or add the service to the program's own tonic server:
//!
//! ```no_run
//! # async fn run(app: qtasks_core::App) -> Result<(), Box<dyn std::error::Error>> {
//! let service = qtasks_grpc::Grpc::new(app).token("s3cret").service();
//! tonic::transport::Server::builder()
//!     .add_service(service)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The proto is `proto/qtasks.proto` ([`PROTO`]); the code is generated from it at build time by
//! `tonic-prost-build` with the protoc binary of `protoc-bin-vendored`, so no system `protoc`
//! is needed. [`proto`] has the messages, the server and the client.
//!
//! The source, by concern: `auth` (the token of changing calls), `convert` (JSON arguments,
//! records to messages, errors to statuses), `service` (the methods), `server` (serving).
//!
//! # Errors
//!
//! A call that cannot be done fails with a gRPC status whose message says what happened and
//! what to do: `INVALID_ARGUMENT` (arguments that are not JSON or do not fit the task's
//! parameters, a malformed uuid or cursor), `NOT_FOUND` (unknown task name or uuid),
//! `UNAUTHENTICATED` (a changing call without the token), `UNAVAILABLE` (the backend),
//! `DEADLINE_EXCEEDED` (`WaitTask` past its timeout). A call that was done answers `ok = true`,
//! or `ok = false` with `error` when the task itself did not succeed within an `AddTask`
//! wait (failed, cancelled or still running).
#![warn(missing_docs)]

mod auth;
mod convert;
mod server;
mod service;

use std::net::SocketAddr;

use qtasks_core::{App, Result};

pub use server::{bind, Grpc, DEFAULT_ADDR, TOKEN_ENV};
pub use service::{QTasksGrpc, TaskEventStream};
/// The tonic this crate is built on, for clients and servers of the same version.
pub use tonic;

/// The messages, server and client generated from `proto/qtasks.proto` (package `qtasks.v1`).
/// The client is [`proto::q_tasks_service_client::QTasksServiceClient`].
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("qtasks.v1");
}

/// The proto file the service is generated from, for clients to generate their own stubs.
pub const PROTO: &str = include_str!("../proto/qtasks.proto");

/// Serves the gRPC API of `app` on `addr` until the process ends, with the token from
/// `QTASKS_GRPC_TOKEN` or a random one, logged at start. See [`Grpc`] for the token and the
/// listener.
pub async fn serve(app: App, addr: SocketAddr) -> Result<()> {
    let grpc = Grpc::new(app);
    if let Some(token) = grpc.token_value() {
        tracing::info!("qtasks gRPC token: {token}");
    }
    grpc.serve(addr).await
}

/// The tonic service of `app` with the token from `QTASKS_GRPC_TOKEN` (or a random one: use
/// [`Grpc::token`] to choose it), to add to the program's own tonic server.
pub fn service(app: App) -> proto::q_tasks_service_server::QTasksServiceServer<QTasksGrpc> {
    Grpc::new(app).service()
}
