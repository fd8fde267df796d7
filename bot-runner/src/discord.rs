//! Talking to Discord (or the simulator): the REST client, intents and presence.

use serenity::all::{ActivityData, GatewayIntents, Http, HttpBuilder, OnlineStatus};

use musicbot_api::Token;
use musicbot_api::crd::{ActivityKind, OnlineStatus as Status};

use crate::cli::PresenceArgs;

/// Guilds (for GUILD_CREATE/DELETE and the cache) and voice states (to find the caller's
/// channel and to notice an empty one). Neither is privileged.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_VOICE_STATES
}

/// The base serenity's REST routes are redirected to, or `None` for Discord itself.
/// serenity's proxy replaces `https://discord.com`, so a documented base such as
/// `http://host/api/v10` is cut back to its origin.
pub fn api_origin(url: Option<&str>) -> Option<String> {
    let url = url?.trim().trim_end_matches('/');
    let origin = ["/api/v10", "/api/v9", "/api"].iter().find_map(|s| url.strip_suffix(s)).unwrap_or(url);
    let is_discord = matches!(reqwest::Url::parse(origin).ok()?.host_str(), Some("discord.com" | "discordapp.com"));
    (!is_discord && !origin.is_empty()).then(|| origin.to_string())
}

/// serenity's REST client. The rate limiter stays on against Discord; serenity ignores the
/// proxy while it is on, so a redirected client runs without it (the simulator does not
/// rate-limit).
pub fn http(token: &Token, api_url: Option<&str>, application_id: u64) -> Http {
    let mut b = HttpBuilder::new(token.expose());
    // serenity builds its client with the built-in roots only; with extra CAs configured
    // (MUSICBOT_CA_FILE) it gets one that also trusts those.
    if !crate::ca::extra_roots().is_empty()
        && let Ok(client) = crate::ca::http_client_builder().build()
    {
        b = b.client(client);
    }
    if let Some(origin) = api_origin(api_url) {
        b = b.proxy(origin).ratelimiter_disabled(true);
    }
    b.application_id(application_id.into()).build()
}

pub fn status(p: &PresenceArgs) -> OnlineStatus {
    match p.presence_status {
        None | Some(Status::Online) => OnlineStatus::Online,
        Some(Status::Idle) => OnlineStatus::Idle,
        Some(Status::Dnd) => OnlineStatus::DoNotDisturb,
        Some(Status::Invisible) => OnlineStatus::Invisible,
    }
}

pub fn activity(p: &PresenceArgs) -> Option<ActivityData> {
    let name = p.activity_name.clone()?;
    Some(match p.activity_type.unwrap_or_default() {
        ActivityKind::Playing => ActivityData::playing(name),
        ActivityKind::Listening => ActivityData::listening(name),
        ActivityKind::Watching => ActivityData::watching(name),
        ActivityKind::Competing => ActivityData::competing(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_become_origins() {
        assert_eq!(api_origin(Some("http://127.0.0.1:5000")), Some("http://127.0.0.1:5000".into()));
        assert_eq!(api_origin(Some("http://127.0.0.1:5000/api/v10/")), Some("http://127.0.0.1:5000".into()));
        assert_eq!(api_origin(Some("https://discord.com/api/v10")), None, "Discord keeps the rate limiter");
        assert_eq!(api_origin(None), None);
        assert_eq!(api_origin(Some("not a url")), None);
    }
}
