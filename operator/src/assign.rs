//! Guild assignment on the operator: `POST /assignments {"guildId": "..."}` picks the
//! least-loaded active bot not yet in the guild (see `musicbot_db::assignment`), and a
//! sweeper turns unused invites FAILED once they time out and deletes FAILED entries past
//! their retention.
//!
//! The endpoint writes to MongoDB for whoever calls it, so it takes a bearer token (none
//! configured: it refuses with 503 rather than open up) and a rate limit shared by every
//! caller of this replica.
//!
//! `POST /fleet/invite` is the same choice for the bots of the sync's fleet (the default
//! fleet of the sync namespace), which a bot asks when no bot of its fleet is free in a
//! server: it presents the fleet's key, not the assignments token, so a bot pod gets no
//! power beyond "which bot should this server invite" (rate limited apart from the admins').

use crate::http::AppState;
use crate::metrics::Metrics;
use anyhow::Context as _;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use musicbot_api::crd::DEFAULT_FLEET;
use musicbot_api::handoff::{Invite, InviteRequest};
use musicbot_api::labels::{FLEET_KEY, fleet_key_secret};
use musicbot_db::{AssignError, Assigner, Assignment};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What `POST /assignments` needs: MongoDB (the assigner), the bearer token callers must
/// present, and the rate limit. Either of the first two missing: 503.
#[derive(Clone)]
pub struct Assignments {
    assigner: Option<Assigner>,
    token: Option<AssignmentsToken>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// The sync namespace, whose default fleet may ask `POST /fleet/invite`.
    fleet_namespace: Option<String>,
    fleet_limiter: Arc<DefaultDirectRateLimiter>,
}

impl Default for Assignments {
    fn default() -> Self {
        Self::new(None, None, RateLimit::default())
    }
}

impl Assignments {
    pub fn new(assigner: Option<Assigner>, token: Option<AssignmentsToken>, limit: RateLimit) -> Self {
        Self {
            assigner,
            token,
            limiter: Arc::new(RateLimiter::direct(limit.quota())),
            fleet_namespace: None,
            fleet_limiter: Arc::new(RateLimiter::direct(limit.quota())),
        }
    }

    /// Answers `POST /fleet/invite` for the bots of `namespace`'s default fleet (those the
    /// sync makes there), with their own rate limit.
    pub fn with_fleet(mut self, namespace: String) -> Self {
        self.fleet_namespace = Some(namespace);
        self
    }
}

/// Requests per second this replica answers, with bursts of up to `burst`; the rest get 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 5, burst: 20 }
    }
}

impl RateLimit {
    fn quota(self) -> Quota {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(nz(self.per_second)).allow_burst(nz(self.burst))
    }
}

/// The bearer token of `POST /assignments`, kept only as its SHA-256: comparing digests
/// in constant time says nothing about the token's bytes or its length, and the process
/// holds no copy of the secret to leak.
#[derive(Clone)]
pub struct AssignmentsToken([u8; 32]);

impl std::fmt::Debug for AssignmentsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssignmentsToken(<redacted>)")
    }
}

/// Shorter tokens are refused: the rate limit slows guessing, a long random token makes it
/// hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

impl AssignmentsToken {
    /// The token is the file's content without surrounding whitespace (a trailing newline
    /// from `echo` or an editor is not part of it).
    pub fn new(token: &str) -> anyhow::Result<Self> {
        let token = token.trim();
        anyhow::ensure!(
            token.len() >= MIN_TOKEN_LEN,
            "the assignments token is {} bytes long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
            token.len()
        );
        anyhow::ensure!(
            token.bytes().all(|b| b.is_ascii_graphic()),
            "the assignments token must be printable ASCII without spaces (it travels in an HTTP header)"
        );
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the assignments token file {}", path.display()))?;
        Self::new(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Whether `Authorization` carries `Bearer <this token>`.
    fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization.and_then(|v| v.to_str().ok()).and_then(bearer) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.0).into()
    }
}

/// The credentials of `Bearer <credentials>`; the scheme is case-insensitive (RFC 9110).
/// Hand-written: one split does not warrant axum-extra's typed headers.
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    guild_id: String,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": msg}))).into_response()
}

/// `POST /assignments`: 201 with the chosen bot and its invite URL; 401 without the right
/// bearer token, 429 over the rate limit, 400 for a bad body or guild id, 404 when the
/// fleet has no active bot, 409 when every active bot is already in (or invited to) the
/// guild, 503 without a configured token or MongoDB. Errors are JSON `{"error": "..."}`
/// and never repeat what the caller sent as a credential.
pub(crate) async fn create(
    State(s): State<Arc<AppState>>,
    Extension(assignments): Extension<Assignments>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &assignments.token else {
        s.metrics.sync.assignment("disabled");
        return error(StatusCode::SERVICE_UNAVAILABLE, "guild assignment is off: set --assignments-token-file");
    };
    if !token.admits(headers.get(header::AUTHORIZATION)) {
        s.metrics.sync.assignment("unauthorized");
        return unauthorized();
    }
    if assignments.limiter.check().is_err() {
        s.metrics.sync.assignment("rate_limited");
        return rate_limited();
    }
    let Some(assigner) = &assignments.assigner else {
        s.metrics.sync.assignment("disabled");
        return error(StatusCode::SERVICE_UNAVAILABLE, "guild assignment needs MongoDB: set --mongodb-uri");
    };
    let guild = match serde_json::from_slice::<Request>(&body) {
        Ok(r) => r.guild_id,
        Err(e) => {
            s.metrics.sync.assignment("invalid_request");
            return error(StatusCode::BAD_REQUEST, &format!("expected {{\"guildId\": \"...\"}}: {e}"));
        }
    };
    let (status, result, body) = match assigner.assign(&guild).await {
        Ok(a) => {
            info!(guild = %a.guild_id, client_id = %a.client_id, load = a.load, "assigned a bot to a guild");
            let body = json!({
                "guildId": a.guild_id,
                "clientId": a.client_id,
                "name": a.name,
                "inviteUrl": a.invite_url,
                "expiresAt": a.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            (StatusCode::CREATED, "assigned", body)
        }
        Err(e) => refusal(&e),
    };
    s.metrics.sync.assignment(result);
    (status, Json(body)).into_response()
}

/// The answer, metric result and body of a failed assignment.
fn refusal(e: &AssignError) -> (StatusCode, &'static str, serde_json::Value) {
    let (status, result) = match e {
        AssignError::InvalidGuild(_) => (StatusCode::BAD_REQUEST, "invalid_guild"),
        AssignError::NoActiveBot => (StatusCode::NOT_FOUND, "no_active_bot"),
        AssignError::AllInGuild(_) => (StatusCode::CONFLICT, "all_in_guild"),
        AssignError::Db(_) => (StatusCode::BAD_GATEWAY, "error"),
    };
    if status == StatusCode::BAD_GATEWAY {
        warn!("guild assignment failed: {e}");
    }
    (status, result, json!({"error": e.to_string()}))
}

fn unauthorized() -> Response {
    let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn rate_limited() -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "too many assignment requests; try again in a second");
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// `POST /fleet/invite`: 200 with the [`Invite`] guild assignment chose for the guild (the
/// one already pending there, if any); 401 unless the bearer is the key of the sync
/// namespace's default fleet, 429 over this endpoint's own rate limit, otherwise the
/// answers of `POST /assignments`. The key is read from its Secret on each call (after the
/// rate limit, which bounds those reads), so a rotated key counts at once.
pub(crate) async fn fleet_invite(
    State(s): State<Arc<AppState>>,
    Extension(assignments): Extension<Assignments>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(assigner), Some(ns)) = (&assignments.assigner, &assignments.fleet_namespace) else {
        s.metrics.sync.fleet_invite("disabled");
        return error(StatusCode::SERVICE_UNAVAILABLE, "fleet invites need MongoDB: set --mongodb-uri");
    };
    if assignments.fleet_limiter.check().is_err() {
        s.metrics.sync.fleet_invite("rate_limited");
        return rate_limited();
    }
    let secret = match Api::<Secret>::namespaced(s.client.clone(), ns).get_opt(&fleet_key_secret(DEFAULT_FLEET)).await {
        Ok(secret) => secret,
        Err(e) => {
            s.metrics.sync.fleet_invite("error");
            warn!("could not read the sync fleet's key: {e}");
            return error(StatusCode::BAD_GATEWAY, "could not read the fleet's key");
        }
    };
    let key = secret.as_ref().and_then(|s| s.data.as_ref()?.get(FLEET_KEY)).map(|k| String::from_utf8_lossy(&k.0));
    let key = key.and_then(|k| AssignmentsToken::new(&k).ok());
    if !key.is_some_and(|k| k.admits(headers.get(header::AUTHORIZATION))) {
        s.metrics.sync.fleet_invite("unauthorized");
        return unauthorized();
    }
    let guild = match serde_json::from_slice::<InviteRequest>(&body) {
        Ok(r) => r.guild_id,
        Err(e) => {
            s.metrics.sync.fleet_invite("invalid_request");
            return error(StatusCode::BAD_REQUEST, &format!("expected {{\"guildId\": \"...\"}}: {e}"));
        }
    };
    let (status, result, body) = match assigner.invite(&guild).await {
        Ok(Assignment { guild_id, client_id, name, invite_url, .. }) => {
            info!(guild = %guild_id, %client_id, "a fleet bot asked whom to invite");
            let invite = Invite { name, client_id, invite_url };
            (StatusCode::OK, "invited", serde_json::to_value(invite).expect("an invite serialises"))
        }
        Err(e) => refusal(&e),
    };
    s.metrics.sync.fleet_invite(result);
    (status, Json(body)).into_response()
}

/// How often unused invites are looked for: a quarter of the timeout, between 1 and 30 s.
fn sweep_interval(invite_timeout: Duration) -> Duration {
    (invite_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Turns timed-out PENDING_INVITE entries FAILED, and deletes FAILED entries past their
/// retention, until `shutdown` is cancelled (leader only: the writes are idempotent, but
/// one sweeper is enough).
pub async fn expire_invites(assigner: Assigner, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let every = sweep_interval(assigner.invite_timeout());
    loop {
        match assigner.expire_stale().await {
            Ok(0) => {}
            Ok(n) => {
                metrics.sync.expired(n);
                info!(count = n, "unused invites timed out: FAILED, their slots are free");
            }
            Err(e) => {
                metrics.sync.follow.error("mongodb");
                warn!("could not expire unused invites: {e}");
            }
        }
        match assigner.purge_failed().await {
            Ok(0) => {}
            Ok(n) => info!(count = n, "deleted FAILED guild entries past their retention"),
            Err(e) => {
                metrics.sync.follow.error("mongodb");
                warn!("could not delete old FAILED guild entries: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_often_enough_for_short_timeouts_and_rarely_for_long_ones() {
        assert_eq!(sweep_interval(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(sweep_interval(Duration::from_secs(40)), Duration::from_secs(10));
        assert_eq!(sweep_interval(Duration::from_secs(3600)), Duration::from_secs(30));
    }
}
