//! REST over plain http under `/api/v10` (serenity's `HttpBuilder::proxy` swaps only the
//! `https://discord.com` part of its URLs, so the version prefix stays).
//!
//! Every request is recorded; unknown routes answer 404 and are flagged; routes other than
//! `/gateway`, interaction callbacks and webhooks (which Discord authenticates by their
//! token in the path) need `Authorization: Bot <a configured token>`, else 401.

mod commands;
mod guilds;
mod interactions;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::payloads;
use super::records::RecordedRequest;
use super::state::Shared;

pub const API_PREFIX: &str = "/api/v10";

type Sim = State<Arc<Shared>>;

/// The bot a valid `Authorization` header names (index into `State::bots`).
#[derive(Clone, Copy)]
pub(crate) struct Caller(pub usize);

/// The request body: JSON, or the `payload_json` part of a multipart body.
#[derive(Clone)]
pub(crate) struct JsonBody(pub Option<Value>);

impl JsonBody {
    fn value(&self) -> Value {
        self.0.clone().unwrap_or(Value::Null)
    }
}

/// Set on responses by handlers that know the acting bot without an `Authorization` header.
#[derive(Clone)]
pub(crate) struct ActingBot(pub String);

#[derive(Clone)]
struct UnknownRoute;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let authed = Router::new()
        .route("/gateway/bot", get(guilds::gateway_bot))
        .route("/users/@me", get(guilds::current_user))
        .route("/users/@me/guilds", get(guilds::current_user_guilds))
        .route("/users/@me/guilds/{guild}", delete(guilds::leave_guild))
        .route("/users/{user}", get(guilds::user))
        .route("/oauth2/applications/@me", get(guilds::application_info))
        .route("/applications/@me", get(guilds::application_info))
        .route("/applications/{app}/commands", get(commands::list).put(commands::overwrite).post(commands::create))
        .route(
            "/applications/{app}/commands/{command}",
            get(commands::get_one).patch(commands::edit).delete(commands::delete),
        )
        .route(
            "/applications/{app}/guilds/{guild}/commands",
            get(commands::list_guild).put(commands::overwrite_guild).post(commands::create_guild),
        )
        .route(
            "/applications/{app}/guilds/{guild}/commands/{command}",
            get(commands::get_one_guild).patch(commands::edit_guild).delete(commands::delete_guild),
        )
        .route("/channels/{channel}", get(guilds::channel))
        .route("/channels/{channel}/messages", post(guilds::create_message))
        .route(
            "/channels/{channel}/messages/{message}",
            axum::routing::patch(guilds::edit_message).delete(guilds::delete_message),
        )
        .route("/channels/{channel}/typing", post(guilds::typing))
        .route("/guilds/{guild}", get(guilds::guild))
        .route("/guilds/{guild}/channels", get(guilds::guild_channels))
        .route("/guilds/{guild}/members", get(guilds::members))
        .route("/guilds/{guild}/members/{user}", get(guilds::member))
        .route("/guilds/{guild}/roles", get(guilds::roles))
        .route_layer(middleware::from_fn(require_bot));
    let open = Router::new()
        .route("/gateway", get(guilds::gateway))
        .route("/interactions/{id}/{token}/callback", post(interactions::callback))
        .route("/webhooks/{app}/{token}", post(interactions::followup))
        .route(
            "/webhooks/{app}/{token}/messages/{message}",
            get(interactions::get_message).patch(interactions::edit_message).delete(interactions::delete_message),
        );
    Router::new()
        .nest(API_PREFIX, authed.merge(open))
        .fallback(unknown)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

/// A refusal in Discord's shape: a status and a `{"code", "message"}` body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: &'static str,
}

impl ApiError {
    pub const fn new(status: StatusCode, code: u32, message: &'static str) -> Self {
        Self { status, code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// Discord's error body with a status.
pub(crate) fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, axum::Json(payloads::error(code, message))).into_response()
}

pub(crate) fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn unknown() -> Response {
    let mut r = error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    r.extensions_mut().insert(UnknownRoute);
    r
}

async fn require_bot(req: Request, next: Next) -> Response {
    if req.extensions().get::<Caller>().is_none() {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    next.run(req).await
}

async fn record(State(shared): Sim, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 64 << 20).await.unwrap_or_default();
    let body = parse_body(&parts.headers, bytes.clone()).await;
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bot "))
        .map(str::to_string);
    // A token Discord has reset authenticates nothing: 401 like any unknown one.
    let caller = token.as_deref().and_then(|t| shared.read(|s| s.authenticated(t)));
    let (method, path, query) =
        (parts.method.to_string(), parts.uri.path().to_string(), parts.uri.query().map(str::to_string));
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(JsonBody(body.clone()));
    if let Some(c) = caller {
        req.extensions_mut().insert(Caller(c));
    }
    let resp = next.run(req).await;
    let bot = match resp.extensions().get::<ActingBot>() {
        Some(ActingBot(t)) => Some(t.clone()),
        None => caller.and(token),
    };
    let known_route = resp.extensions().get::<UnknownRoute>().is_none();
    if !known_route {
        tracing::warn!(%method, %path, "REST route the simulator does not know");
    }
    let status = resp.status().as_u16();
    shared.update(|s, _| s.requests.push(RecordedRequest { method, path, query, body, status, bot, known_route }));
    resp
}

async fn parse_body(headers: &HeaderMap, bytes: axum::body::Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"));
    if !multipart {
        return serde_json::from_slice(&bytes).ok();
    }
    // Attachments travel as multipart with the JSON in `payload_json`; the files are not kept.
    let mut req = Request::new(Body::from(bytes));
    *req.headers_mut() = headers.clone();
    let mut form = Multipart::from_request(req, &()).await.ok()?;
    let mut files = Vec::new();
    let mut payload = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("payload_json") => {
                payload = field.text().await.ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
            }
            _ => files.push(json!({"name": field.name(), "filename": field.file_name()})),
        }
    }
    let mut payload = payload.unwrap_or_else(|| json!({}));
    if !files.is_empty() {
        payload["_files"] = Value::Array(files);
    }
    Some(payload)
}
