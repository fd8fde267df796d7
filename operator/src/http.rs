//! The operator's HTTP server: probes, metrics, the seed-compatible `/bots` listing and
//! guild assignment (`POST /assignments`).
//!
//! Served by hand on hyper's HTTP/1 connection rather than `axum::serve`, which has no
//! header-read timeout: a client that opens connections and trickles headers (slowloris)
//! would otherwise hold each one forever.

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use musicbot_api::crd::MusicBot;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

/// The largest request body taken: `POST /assignments` needs well under a hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A request (its body read and its answer made) that takes longer gets 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may take to send a request's headers. hyper arms the same timer
/// while a kept-alive connection waits for its next request, so it is the idle timeout too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open requests get this long to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppState {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub namespace: Option<String>,
    pub started: Instant,
    /// Set once the process is connected and (if elected) leading or standing by.
    pub ready: AtomicBool,
}

pub use crate::assign::{Assignments, AssignmentsToken, RateLimit};

/// The routes, with guild assignment answering 503 (no MongoDB).
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Assignments::default())
}

pub fn router_with(state: Arc<AppState>, assignments: Assignments) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/bots", get(bots))
        .route("/assignments", post(crate::assign::create))
        .route(musicbot_api::handoff::INVITE_PATH, post(crate::assign::fleet_invite))
        .layer(Extension(assignments))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .with_state(state)
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router_with(listener, router, HEADER_READ_TIMEOUT, shutdown).await
}

/// Serves `router` over HTTP/1 (all that probes, Prometheus and curl speak) until
/// `shutdown`, then gives open requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve_router_with(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: pause rather than spin, as axum does.
                    warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let conn = http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!("HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("HTTP requests still open at shutdown were cut off"),
    }
    Ok(())
}

async fn health(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok", "uptime": s.started.elapsed().as_secs_f64()}))
}

async fn ready(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

/// One bot in `/bots`, shaped like the seed's answer.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct BotSummary {
    pub name: String,
    pub client_id: String,
    pub guilds: u64,
    pub users: u64,
    pub namespace: String,
    pub phase: Option<String>,
    pub voice_connections: u64,
}

fn summarize(bot: &MusicBot) -> BotSummary {
    let status = bot.status.clone().unwrap_or_default();
    BotSummary {
        name: bot.display_name(),
        client_id: bot.spec.client_id.clone(),
        guilds: status.guilds.unwrap_or(0),
        users: status.users.unwrap_or(0),
        namespace: bot.namespace().unwrap_or_default(),
        phase: status.phase.map(|p| p.as_str().to_string()),
        voice_connections: status.voice_connections.unwrap_or(0),
    }
}

async fn bots(State(s): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let api: Api<MusicBot> = match &s.namespace {
        Some(ns) => Api::namespaced(s.client.clone(), ns),
        None => Api::all(s.client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("listing MusicBots: {e}")))?;
    let bots: Vec<BotSummary> = list.items.iter().map(summarize).collect();
    Ok(Json(serde_json::json!({ "bots": bots })))
}
