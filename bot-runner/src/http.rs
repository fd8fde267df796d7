//! `/health` (liveness), `/ready` (readiness), `/metrics`, `/status` (for the operator) and
//! `/bots` (the seed's listing). Nothing here can show a token: reports hold none.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::fleet::Fleet;
use crate::metrics::Metrics;

#[derive(Clone)]
struct App {
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
}

pub fn router(fleet: Arc<Fleet>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/bots", get(bots))
        .with_state(App { fleet, metrics })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(fleet, metrics)).with_graceful_shutdown(shutdown).await
}

async fn health(State(app): State<App>) -> Response {
    let h = app.fleet.health().await;
    let code = if h.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(h.body)).into_response()
}

async fn ready(State(app): State<App>) -> Response {
    if app.fleet.ready().await {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "gateway not ready\n").into_response()
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    // Reports refresh the gauges before they are encoded.
    app.fleet.reports().await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
        .into_response()
}

async fn status(State(app): State<App>) -> Json<serde_json::Value> {
    Json(app.fleet.status().await)
}

async fn bots(State(app): State<App>) -> Json<serde_json::Value> {
    Json(app.fleet.bots().await)
}
