//! Serving: [`Grpc`] holds the app and the token, makes the tonic service
//! ([`Grpc::service`], to add to the program's own server) or serves it ([`Grpc::serve`]).

use std::future::Future;
use std::net::SocketAddr;

use qtasks_core::{App, Error, Result};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::auth::{self, Access};
use crate::proto::q_tasks_service_server::QTasksServiceServer;
use crate::service::QTasksGrpc;

/// The address [`serve`](crate::serve) users start with and the CLI's `grpc` command binds by
/// default: loopback, the port Python QTasks' gRPC plugin uses.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50051);

/// The environment variable [`Grpc::new`] reads the token from.
pub const TOKEN_ENV: &str = "QTASKS_GRPC_TOKEN";

/// The gRPC API of one app and who may change its tasks: `AddTask` and `Cancel` need the token
/// as `authorization: Bearer <token>` metadata.
#[derive(Debug, Clone)]
pub struct Grpc {
    app: App,
    access: Access,
}

impl Grpc {
    /// The API of `app`, with the token from `QTASKS_GRPC_TOKEN` or, without it, a random one
    /// (see [`token_value`](Self::token_value) to print it).
    pub fn new(app: App) -> Self {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(auth::random_token);
        Grpc {
            app,
            access: Access { token: Some(token) },
        }
    }

    /// Changing calls need this token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.access.token = Some(token.into());
        self
    }

    /// No token: the program's own tonic layer (an interceptor around
    /// [`service`](Self::service)) decides who may change anything.
    pub fn own_auth(mut self) -> Self {
        self.access.token = None;
        self
    }

    /// The token changing calls need, `None` with [`own_auth`](Self::own_auth).
    pub fn token_value(&self) -> Option<&str> {
        self.access.token.as_deref()
    }

    /// The tonic service, to add to the program's own server
    /// (`Server::builder().add_service(..)`).
    pub fn service(self) -> QTasksServiceServer<QTasksGrpc> {
        QTasksServiceServer::new(QTasksGrpc::new(self.app, self.access))
    }

    /// Serves the API on `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> Result<()> {
        let listener = bind(addr).await?;
        self.serve_on(listener, std::future::pending()).await
    }

    /// Serves the API on a bound listener (a test binds port 0 and reads the port) until
    /// `shutdown` completes; calls in flight then finish.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Worker(e.to_string()))?;
        tracing::info!(%addr, app = self.app.name(), "qtasks gRPC API (qtasks.v1.QTasksService) serving");
        if self.access.token.is_some() {
            tracing::info!("AddTask and Cancel need `authorization: Bearer <token>`");
        }
        Server::builder()
            .add_service(self.service())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await
            .map_err(|e| Error::Worker(format!("the gRPC server on {addr} stopped: {e}")))
    }
}

/// Binds `addr`, with an error that says what to do when it cannot.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config {
            key: "listen".into(),
            value: addr.to_string(),
            expected: format!("an address this process can bind ({e}); pick a free port"),
        })
}
