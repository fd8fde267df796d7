//! The operator's HTTP server: probes, metrics, the seed-compatible `/bots` listing and
//! guild assignment (`POST /assignments`).

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use axum::{Extension, Router, serve};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use musicbot_api::crd::MusicBot;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub struct AppState {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub namespace: Option<String>,
    pub started: Instant,
    /// Set once the process is connected and (if elected) leading or standing by.
    pub ready: AtomicBool,
}

/// Guild assignment behind `POST /assignments`; None without MongoDB.
#[derive(Clone, Default)]
pub struct Assignments(pub Option<musicbot_db::Assigner>);

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
        .layer(Extension(assignments))
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
    serve(listener, router).with_graceful_shutdown(shutdown).await
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
