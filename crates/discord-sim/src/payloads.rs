//! JSON shapes the simulator sends, written after Discord's API reference (v10).
//!
//! serenity's model structs are `#[non_exhaustive]`, so they cannot be built here; instead
//! `tests/discord_payloads.rs` deserializes every builder's output into the matching serenity
//! type, and `validate.rs` checks each dispatch at run time.

use serde_json::{Value, json};

use super::spec::{BotSpec, ChannelKind, ChannelSpec, GuildSpec, UserSpec};

/// VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS, READ_MESSAGE_HISTORY, CONNECT, SPEAK, USE_VAD,
/// USE_APPLICATION_COMMANDS: what @everyone holds in a fresh guild, enough for a music bot.
pub const EVERYONE_PERMISSIONS: u64 =
    (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 20) | (1 << 21) | (1 << 25) | (1 << 31);

pub const LOCALE: &str = "en-US";

/// MANAGE_GUILD, which a member marked as a manager holds besides @everyone's.
pub const MANAGE_GUILD: u64 = 1 << 5;

pub fn now() -> String {
    serenity::model::Timestamp::now().to_string()
}

pub fn user(u: &UserSpec) -> Value {
    json!({
        "id": u.id.to_string(),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.name,
        "avatar": null,
        "bot": u.bot,
        "public_flags": 0,
    })
}

/// `GET /users/@me` and READY's `user`.
pub fn current_user(bot: &BotSpec) -> Value {
    let mut v = user(&bot.user());
    let extra = json!({"verified": true, "mfa_enabled": false, "flags": 0, "email": null, "locale": LOCALE});
    merge(&mut v, extra);
    v
}

pub fn member(u: &UserSpec, joined_at: &str) -> Value {
    json!({
        "user": user(u),
        "nick": null,
        "avatar": null,
        "roles": u.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    })
}

/// A member as interactions carry it: with the permissions they hold in the channel.
pub fn interaction_member(u: &UserSpec, joined_at: &str) -> Value {
    let mut v = member(u, joined_at);
    let permissions = EVERYONE_PERMISSIONS | if u.manager { MANAGE_GUILD } else { 0 };
    merge(&mut v, json!({"permissions": permissions.to_string()}));
    v
}

pub fn channel(c: &ChannelSpec, guild_id: u64, position: usize) -> Value {
    let mut v = json!({
        "id": c.id.to_string(),
        "type": c.kind.code(),
        "guild_id": guild_id.to_string(),
        "name": c.name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": false,
        "parent_id": null,
        "flags": 0,
    });
    let extra = match c.kind {
        ChannelKind::Text => {
            json!({"topic": null, "last_message_id": null, "rate_limit_per_user": 0})
        }
        ChannelKind::Voice => {
            json!({"bitrate": 64000, "user_limit": 0, "rtc_region": null, "last_message_id": null, "rate_limit_per_user": 0})
        }
    };
    merge(&mut v, extra);
    v
}

pub fn everyone_role(guild_id: u64) -> Value {
    json!({
        "id": guild_id.to_string(),
        "name": "@everyone",
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": EVERYONE_PERMISSIONS.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

fn role(id: u64, name: &str, position: usize) -> Value {
    json!({
        "id": id.to_string(),
        "name": name,
        "color": 0x3498DB,
        "colors": {"primary_color": 0x3498DB, "secondary_color": null, "tertiary_color": null},
        "hoist": true,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": "1071698660929",
        "managed": false,
        "mentionable": true,
        "flags": 0,
    })
}

/// A voice state; `with_guild` for VOICE_STATE_UPDATE (GUILD_CREATE's list omits guild_id).
pub fn voice_state(
    guild_id: u64,
    channel_id: Option<u64>,
    member_user: &UserSpec,
    session_id: &str,
    joined_at: &str,
    with_guild: bool,
) -> Value {
    let mut v = json!({
        "channel_id": channel_id.map(|c| c.to_string()),
        "user_id": member_user.id.to_string(),
        "session_id": session_id,
        "deaf": false,
        "mute": false,
        "self_deaf": false,
        "self_mute": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    });
    if with_guild {
        merge(&mut v, json!({"guild_id": guild_id.to_string(), "member": member(member_user, joined_at)}));
    }
    v
}

/// The fields a guild object has both in REST (`GET /guilds/{id}`) and in GUILD_CREATE.
fn guild_base(g: &GuildSpec) -> Value {
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": g.owner_id().to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": std::iter::once(everyone_role(g.id))
            .chain(g.roles.iter().enumerate().map(|(i, (id, name))| role(*id, name, i + 1)))
            .collect::<Vec<_>>(),
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": LOCALE,
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
    })
}

/// `GET /guilds/{id}` (serenity: `PartialGuild`).
pub fn rest_guild(g: &GuildSpec) -> Value {
    let mut v = guild_base(g);
    let members = g.members.len() as u64;
    merge(&mut v, json!({"approximate_member_count": members, "approximate_presence_count": members}));
    v
}

/// GUILD_CREATE for a bot: the guild with channels, members (incl. the bot) and voice states.
pub fn guild_create(g: &GuildSpec, bot: &BotSpec, joined_at: &str, voice_session: impl Fn(u64) -> String) -> Value {
    let mut v = guild_base(g);
    let mut members: Vec<Value> = g.members.iter().map(|m| member(m, joined_at)).collect();
    if g.member_by_id(bot.user_id).is_none() {
        members.push(member(&bot.user(), joined_at));
    }
    let member_count = g.member_count.unwrap_or(0).max(members.len() as u64);
    let voice_states: Vec<Value> = g
        .voice_states
        .iter()
        .map(|(user_id, channel_id)| {
            let u = g.member_by_id(*user_id).cloned().unwrap_or_else(|| {
                if *user_id == bot.user_id { bot.user() } else { UserSpec::new(*user_id, format!("user{user_id}")) }
            });
            voice_state(g.id, Some(*channel_id), &u, &voice_session(*user_id), joined_at, false)
        })
        .collect();
    let channels: Vec<Value> = g.channels.iter().enumerate().map(|(i, c)| channel(c, g.id, i)).collect();
    merge(
        &mut v,
        json!({
            "joined_at": joined_at,
            "large": member_count > 250,
            "unavailable": false,
            "member_count": member_count,
            "members": members,
            "voice_states": voice_states,
            "channels": channels,
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }),
    );
    v
}

/// GUILD_DELETE: `unavailable: false` (or absent) means the bot was removed from the guild.
pub fn guild_delete(guild_id: u64, unavailable: bool) -> Value {
    json!({"id": guild_id.to_string(), "unavailable": unavailable})
}

pub fn ready(bot: &BotSpec, guild_ids: &[u64], session_id: &str, resume_url: &str, shard: [u32; 2]) -> Value {
    json!({
        "v": 10,
        "user": current_user(bot),
        "guilds": guild_ids.iter().map(|id| json!({"id": id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "shard": shard,
        "application": {"id": bot.application_id.to_string(), "flags": 0},
        "private_channels": [],
        "presences": [],
        "relationships": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["simulator"],
        "user_settings": {},
    })
}

pub fn voice_server_update(guild_id: u64, token: &str, endpoint: &str) -> Value {
    json!({"token": token, "guild_id": guild_id.to_string(), "endpoint": endpoint})
}

/// `GET /oauth2/applications/@me`.
pub fn application_info(bot: &BotSpec, owner: &UserSpec) -> Value {
    json!({
        "id": bot.application_id.to_string(),
        "name": bot.name,
        "icon": null,
        "description": "",
        "rpc_origins": [],
        "bot_public": true,
        "bot_require_code_grant": false,
        "owner": user(owner),
        "verify_key": "0".repeat(64),
        "team": null,
        "flags": 0,
        "bot": user(&bot.user()),
        "role_connections_verification_url": null,
        "approximate_guild_count": bot.guilds.len(),
        "approximate_user_install_count": 0,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "integration_types_config": {"0": {}},
    })
}

/// An entry of `GET /users/@me/guilds`.
pub fn guild_info(g: &GuildSpec, bot: &BotSpec) -> Value {
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "icon": null,
        "owner": g.owner_id() == bot.user_id,
        "permissions": EVERYONE_PERMISSIONS.to_string(),
        "features": [],
    })
}

/// A stored application command, completed the way Discord completes a registration body.
pub fn command(body: &Value, id: u64, application_id: u64, guild_id: Option<u64>, version: u64) -> Value {
    let mut v = json!({
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": null,
        "nsfw": false,
        "contexts": null,
        "integration_types": [0],
        "name_localizations": null,
        "description_localizations": null,
    });
    if guild_id.is_none() {
        merge(&mut v, json!({"dm_permission": true}));
    }
    merge(&mut v, body.clone());
    merge(
        &mut v,
        json!({"id": id.to_string(), "application_id": application_id.to_string(), "version": version.to_string()}),
    );
    if let Some(g) = guild_id {
        merge(&mut v, json!({"guild_id": g.to_string()}));
    }
    v
}

/// What identifies a message's origin; fields are added to the body the bot sent.
pub struct MessageContext<'a> {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub author: &'a UserSpec,
    pub application_id: Option<u64>,
    /// Set for replies to interactions (type 20, with webhook_id = application id).
    pub interaction: Option<(u64, &'a UserSpec, &'a str)>,
    pub timestamp: &'a str,
}

/// A message built from a create-message body (content, embeds, flags, components).
pub fn message(body: &Value, ctx: &MessageContext<'_>) -> Value {
    let field = |k: &str, default: Value| body.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    let mut v = json!({
        "id": ctx.id.to_string(),
        "channel_id": ctx.channel_id.to_string(),
        "author": user(ctx.author),
        "content": field("content", json!("")),
        "timestamp": ctx.timestamp,
        "edited_timestamp": null,
        "tts": field("tts", json!(false)),
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": field("embeds", json!([])),
        "components": field("components", json!([])),
        "pinned": false,
        "type": if ctx.interaction.is_some() { 20 } else { 0 },
        "flags": field("flags", json!(0)),
    });
    if let Some(g) = ctx.guild_id {
        merge(&mut v, json!({"guild_id": g.to_string()}));
    }
    if let Some(app) = ctx.application_id {
        merge(&mut v, json!({"application_id": app.to_string()}));
    }
    if let Some((interaction_id, by, name)) = ctx.interaction {
        merge(
            &mut v,
            json!({
                "webhook_id": ctx.application_id.unwrap_or(ctx.author.id).to_string(),
                "interaction_metadata": {
                    "id": interaction_id.to_string(),
                    "type": 2,
                    "user": user(by),
                    "authorizing_integration_owners": {"0": ctx.guild_id.unwrap_or(0).to_string()},
                    "name": name,
                },
            }),
        );
    }
    v
}

/// Applies an edit body to a stored message (only the fields the edit names change).
pub fn edit_message(message: &mut Value, edit: &Value, timestamp: &str) {
    // A null in an edit body clears the field.
    for (key, empty) in [("content", json!("")), ("embeds", json!([])), ("components", json!([])), ("flags", json!(0))]
    {
        if let Some(v) = edit.get(key) {
            message[key] = if v.is_null() { empty } else { v.clone() };
        }
    }
    message["edited_timestamp"] = json!(timestamp);
}

/// Discord's error body.
pub fn error(code: u32, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Shallow merge: keys of `extra` overwrite those of `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
}
