//! Metrics (feature `metrics`): what qtasks records through the [`metrics`](https://docs.rs/metrics)
//! facade, and a Prometheus endpoint for workers that run without the dashboard.
//!
//! ```no_run
//! # async fn demo(app: qtasks::App) -> qtasks::Result<()> {
//! // The Prometheus recorder, before the first task (the endpoints install it too).
//! qtasks::metrics::install()?;
//! let worker = app.spawn_worker();
//! // `GET http://127.0.0.1:9464/metrics`, until the process ends.
//! tokio::spawn(qtasks::metrics::serve(app.clone(), qtasks::metrics::DEFAULT_LISTEN));
//! # worker.shutdown().await?; Ok(()) }
//! ```
//!
//! The dashboard (`qtasks::web`, features `web` and `metrics`) serves the same text at
//! `/metrics`. The list of metrics, their labels and the label cardinality cap are in
//! [`qtasks_core::observe::metrics`] and in `docs/observability.md`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use qtasks_core::{App, Error, Result};

pub use qtasks_core::observe::metrics::{
    refresh, reset_handles, set_task_label_limit, task_label, task_label_limit,
    DEFAULT_TASK_LABEL_LIMIT, OTHER,
};
pub use qtasks_core::observe::prometheus::{
    handle, install, render, CONTENT_TYPE, EXECUTION_BUCKETS, QUEUE_BUCKETS,
};

/// Where [`serve`] listens unless told otherwise: loopback, port 9464 (the port OpenTelemetry's
/// Prometheus exporters use).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Serves `GET /metrics` for `app` on `addr` until the process ends (bind to
/// [`DEFAULT_LISTEN`], loopback, unless the scraper is elsewhere). Installs the Prometheus
/// recorder.
pub async fn serve(app: App, addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config {
            key: "metrics listen".into(),
            value: addr.to_string(),
            expected: format!("an address this process can bind ({e}); pick a free port"),
        })?;
    serve_on(app, listener).await
}

/// [`serve`] on a bound listener (a test binds port 0 and reads the port).
pub async fn serve_on(app: App, listener: tokio::net::TcpListener) -> Result<()> {
    install()?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Worker(e.to_string()))?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the metrics endpoint listens beyond loopback: anyone who reaches it can read the task names and queue figures");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(app.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(
    app: App,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, text: String| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "qtasks serves its metrics at /metrics\n".into(),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".into(),
        ));
    }
    Ok(match render(&app).await {
        Ok(text) => {
            let mut response = reply(StatusCode::OK, text);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot export the metrics");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot export the metrics: {e}\n"),
            )
        }
    })
}
