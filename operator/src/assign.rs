//! Guild assignment on the operator: `POST /assignments {"guildId": "..."}` picks the
//! least-loaded active bot not yet in the guild (see `musicbot_db::assignment`), and a
//! sweeper turns unused invites FAILED once they time out.

use crate::http::{AppState, Assignments};
use crate::metrics::Metrics;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use musicbot_db::{AssignError, Assigner};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    guild_id: String,
}

/// `POST /assignments`: 201 with the chosen bot and its invite URL; 400 for a bad body or
/// guild id, 404 when the fleet has no active bot, 409 when every active bot is already in
/// (or invited to) the guild, 503 without MongoDB. Errors are JSON `{"error": "..."}`.
pub(crate) async fn create(
    State(s): State<Arc<AppState>>,
    Extension(Assignments(assigner)): Extension<Assignments>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let Some(assigner) = &assigner else {
        let msg = "guild assignment needs MongoDB: set --mongodb-uri";
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": msg})));
    };
    let guild = match serde_json::from_slice::<Request>(&body) {
        Ok(r) => r.guild_id,
        Err(e) => {
            s.metrics.sync.assignment("invalid_request");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("expected {{\"guildId\": \"...\"}}: {e}")})),
            );
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
        Err(e) => {
            let (status, result) = match &e {
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
    };
    s.metrics.sync.assignment(result);
    (status, Json(body))
}

/// How often unused invites are looked for: a quarter of the timeout, between 1 and 30 s.
fn sweep_interval(invite_timeout: Duration) -> Duration {
    (invite_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Turns timed-out PENDING_INVITE entries FAILED until `shutdown` is cancelled (leader
/// only: the write is idempotent, but one sweeper is enough).
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
                metrics.sync.error("mongodb");
                warn!("could not expire unused invites: {e}");
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
