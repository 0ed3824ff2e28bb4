//! The web dashboard and JSON API of qtasks, on [axum]: see, search and act on the tasks of a
//! running app.
//!
//! ```no_run
//! # async fn run(app: qtasks_core::App) -> qtasks_core::Result<()> {
//! // On loopback, with a token printed at start (or QTASKS_WEB_TOKEN):
//! qtasks_web::serve(app, "127.0.0.1:8080".parse().unwrap()).await
//! # }
//! ```
//!
//! Or mount it in an existing axum app, at any path:
//!
//! ```no_run
//! # fn mount(app: qtasks_core::App) {
//! let dashboard = qtasks_web::Dashboard::new(app).token("s3cret").router();
//! let site: axum::Router = axum::Router::new().nest("/queue", dashboard);
//! # }
//! ```
//!
//! The source, by concern: `auth` (who may change what: the token, read-only mode, the
//! cross-site checks), `api/` (the JSON API, one file per group of endpoints, and its OpenAPI
//! document), `sse` (live updates as server-sent events), `pages` (the dashboard's HTML, JS
//! and CSS from `assets/`, compiled in).
//!
//! # Security model
//!
//! - [`serve`] binds where it is told, and the CLI's `web` command binds loopback unless
//!   `--listen` says otherwise.
//! - Reading (every `GET`) is open to whoever reaches the address; every request that changes
//!   anything (`POST`, `PUT`, `PATCH`, `DELETE`) needs the dashboard's token as
//!   `Authorization: Bearer <token>` ([`Dashboard::token`]), unless the program authenticates
//!   with its own axum layer ([`Dashboard::own_auth`]).
//! - A changing request whose `Origin` is not the dashboard's own, or that a browser marks as
//!   cross-site (`Sec-Fetch-Site`), is refused: together with the token in a header (which a
//!   page of another site cannot set without a CORS grant, and none is given) this is the
//!   protection against cross-site request forgery.
//! - In read-only mode ([`Dashboard::read_only`]) every changing request is refused.
//! - Refusals are `401` (no or wrong token) or `403` (read-only, cross-site) with a JSON body
//!   `{"error": .., "message": ..}` that says why and what to do.
//! - The pages render every value from tasks as text (`textContent`), never as HTML: a result
//!   holding `<script>` shows as those characters.
#![warn(missing_docs)]

mod api;
mod auth;
#[cfg(feature = "metrics")]
mod metrics;
mod pages;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use qtasks_core::{App, Error, Result};

pub use auth::Access;

/// The dashboard of one app: its access rules, made into an axum [`Router`] by
/// [`router`](Dashboard::router).
#[derive(Debug, Clone)]
pub struct Dashboard {
    app: App,
    access: Access,
}

/// What every handler reaches: the app and the access rules.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) app: App,
    pub(crate) access: Arc<Access>,
}

impl Dashboard {
    /// A dashboard of `app`, with the token from `QTASKS_WEB_TOKEN` or, without it, a random
    /// one (see [`token_value`](Self::token_value) to print it); not read-only.
    pub fn new(app: App) -> Self {
        let token = std::env::var("QTASKS_WEB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(auth::random_token);
        Dashboard {
            app,
            access: Access {
                token: Some(token),
                read_only: false,
            },
        }
    }

    /// Changing requests need this token (`Authorization: Bearer <token>`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.access.token = Some(token.into());
        self
    }

    /// No token: the program's own axum layer (around [`router`](Self::router)) decides who
    /// may change anything. The read-only and cross-site checks still apply.
    pub fn own_auth(mut self) -> Self {
        self.access.token = None;
        self
    }

    /// Refuses every changing request (`403`).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.access.read_only = read_only;
        self
    }

    /// The token changing requests need, `None` with [`own_auth`](Self::own_auth).
    pub fn token_value(&self) -> Option<&str> {
        self.access.token.as_deref()
    }

    /// The router: the pages at `/`, the API under `/api`, and with the `metrics` feature the
    /// Prometheus metrics at `/metrics`. Mount it anywhere with `Router::nest`.
    pub fn router(self) -> Router {
        let shared = Shared {
            app: self.app,
            access: Arc::new(self.access),
        };
        let router = Router::new().merge(pages::routes());
        #[cfg(feature = "metrics")]
        let router = router.merge(metrics::routes());
        router
            .nest("/api", api::routes().merge(sse::routes()))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                auth::check,
            ))
            .with_state(shared)
    }

    /// Serves the dashboard on `addr` until the process ends; logs (and prints) the address
    /// and the link with the token.
    pub async fn serve(self, addr: SocketAddr) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config {
                key: "listen".into(),
                value: addr.to_string(),
                expected: format!("an address this process can bind ({e}); pick a free port"),
            })?;
        self.serve_on(listener).await
    }

    /// Serves the dashboard on a bound listener (a test binds port 0 and reads the port).
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> Result<()> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Worker(e.to_string()))?;
        let link = match (&self.access.token, self.access.read_only) {
            (_, true) | (None, _) => format!("http://{addr}/"),
            (Some(token), false) => format!("http://{addr}/#token={token}"),
        };
        tracing::info!(%addr, read_only = self.access.read_only, "dashboard at {link}");
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the dashboard listens beyond loopback: anyone who reaches it can read the tasks");
        }
        axum::serve(listener, self.router())
            .await
            .map_err(|e| Error::Worker(format!("the dashboard server stopped: {e}")))
    }
}

/// The dashboard's router for `app` ([`Dashboard::new`]`(app).router()`): mount it in an axum
/// app, or serve it with [`serve`].
pub fn router(app: App) -> Router {
    Dashboard::new(app).router()
}

/// Serves the dashboard of `app` on `addr` ([`Dashboard::new`]`(app).serve(addr)`).
pub async fn serve(app: App, addr: SocketAddr) -> Result<()> {
    Dashboard::new(app).serve(addr).await
}
