//! Gateway discovery, the current user and application, and the guild, channel, member and
//! message routes a music bot calls.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, Caller, JsonBody, error, no_content, ok};
use crate::payloads::{self, MessageContext};
use crate::spec::{GuildSpec, UserSpec};
use crate::state::{Shared, State as SimState};

type Sim = State<Arc<Shared>>;

pub(super) async fn gateway(State(sim): Sim) -> Response {
    ok(json!({"url": sim.endpoints.gateway_url()}))
}

pub(super) async fn gateway_bot(State(sim): Sim, Extension(Caller(bot)): Extension<Caller>) -> Response {
    let (shards, limit) =
        sim.update(|s, _| (s.bots[bot].spec.shards, s.bots[bot].budget.report(std::time::Instant::now())));
    ok(json!({
        "url": sim.endpoints.gateway_url(),
        "shards": shards,
        "session_start_limit": limit,
    }))
}

pub(super) async fn current_user(State(sim): Sim, Extension(Caller(bot)): Extension<Caller>) -> Response {
    ok(sim.read(|s| payloads::current_user(&s.bots[bot].spec)))
}

pub(super) async fn current_user_guilds(State(sim): Sim, Extension(Caller(bot)): Extension<Caller>) -> Response {
    ok(sim.read(|s| {
        let spec = &s.bots[bot].spec;
        Value::Array(
            spec.guilds.iter().filter_map(|g| s.guilds.get(g)).map(|g| payloads::guild_info(g, spec)).collect(),
        )
    }))
}

pub(super) async fn leave_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(guild): Path<u64>,
) -> Response {
    if sim.update(|s, _| s.leave_guild(bot, guild)) { no_content() } else { unknown_guild() }
}

pub(super) async fn user(State(sim): Sim, Path(user): Path<u64>) -> Response {
    sim.read(|s| find_user(s, user))
        .map(|u| ok(payloads::user(&u)))
        .unwrap_or_else(|| error(StatusCode::NOT_FOUND, 10013, "Unknown User"))
}

fn find_user(s: &SimState, user: u64) -> Option<UserSpec> {
    s.bots
        .iter()
        .map(|b| b.spec.user())
        .find(|u| u.id == user)
        .or_else(|| s.guilds.values().find_map(|g| g.member_by_id(user).cloned()))
}

pub(super) async fn application_info(State(sim): Sim, Extension(Caller(bot)): Extension<Caller>) -> Response {
    ok(sim.read(|s| {
        let spec = &s.bots[bot].spec;
        let owner =
            spec.guilds.iter().filter_map(|g| s.guilds.get(g)).find_map(|g| g.member_by_id(g.owner_id()).cloned());
        payloads::application_info(spec, &owner.unwrap_or_else(|| UserSpec::new(1, "owner")))
    }))
}

fn unknown_guild() -> Response {
    error(StatusCode::NOT_FOUND, 10004, "Unknown Guild")
}

fn unknown_channel() -> Response {
    error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
}

/// A guild the bot is in.
fn bot_guild(s: &SimState, bot: usize, guild: u64) -> Result<&GuildSpec, ApiError> {
    let g = s.guilds.get(&guild).ok_or(ApiError::new(StatusCode::NOT_FOUND, 10004, "Unknown Guild"))?;
    if !s.bots[bot].spec.guilds.contains(&guild) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 50001, "Missing Access"));
    }
    Ok(g)
}

/// The guild holding a channel, among the bot's guilds.
fn channel_guild(s: &SimState, bot: usize, channel: u64) -> Option<&GuildSpec> {
    s.bots[bot].spec.guilds.iter().filter_map(|g| s.guilds.get(g)).find(|g| g.channel(channel).is_some())
}

pub(super) async fn channel(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(channel): Path<u64>,
) -> Response {
    sim.read(|s| {
        let g = channel_guild(s, bot, channel)?;
        let pos = g.channels.iter().position(|c| c.id == channel)?;
        Some(ok(payloads::channel(&g.channels[pos], g.id, pos)))
    })
    .unwrap_or_else(unknown_channel)
}

pub(super) async fn create_message(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path(channel): Path<u64>,
) -> Response {
    let body = body.0.unwrap_or(json!({}));
    sim.update(|s, _| {
        let Some(guild) = channel_guild(s, bot, channel).map(|g| g.id) else {
            return unknown_channel();
        };
        let empty =
            ["content", "embeds", "components", "sticker_ids", "_files", "poll"].iter().all(|k| match &body[*k] {
                Value::String(c) => c.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Null => true,
                _ => false,
            });
        if empty {
            return error(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message");
        }
        let id = s.snowflake();
        let author = s.bots[bot].spec.user();
        let ctx = MessageContext {
            id,
            channel_id: channel,
            guild_id: Some(guild),
            author: &author,
            application_id: None,
            interaction: None,
            timestamp: &payloads::now(),
        };
        let msg = payloads::message(&body, &ctx);
        s.bots[bot].messages.push(msg.clone());
        ok(msg)
    })
}

/// A message the bot posted to `channel`, by id.
fn channel_message(s: &mut SimState, bot: usize, channel: u64, id: u64) -> Option<&mut Value> {
    let (channel, id) = (json!(channel.to_string()), json!(id.to_string()));
    s.bots[bot].messages.iter_mut().find(|m| m["channel_id"] == channel && m["id"] == id)
}

fn unknown_message() -> Response {
    error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
}

pub(super) async fn edit_message(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path((channel, message)): Path<(u64, u64)>,
) -> Response {
    let body = body.0.unwrap_or(json!({}));
    sim.update(|s, _| match channel_message(s, bot, channel, message) {
        Some(m) => {
            payloads::edit_message(m, &body, &payloads::now());
            ok(m.clone())
        }
        None => unknown_message(),
    })
}

pub(super) async fn delete_message(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((channel, message)): Path<(u64, u64)>,
) -> Response {
    sim.update(|s, _| {
        let (c, m) = (json!(channel.to_string()), json!(message.to_string()));
        let messages = &mut s.bots[bot].messages;
        let before = messages.len();
        messages.retain(|x| !(x["channel_id"] == c && x["id"] == m));
        if messages.len() == before { unknown_message() } else { no_content() }
    })
}

pub(super) async fn typing(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(channel): Path<u64>,
) -> Response {
    if sim.read(|s| channel_guild(s, bot, channel).is_some()) { no_content() } else { unknown_channel() }
}

pub(super) async fn guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(guild): Path<u64>,
) -> Response {
    sim.read(|s| bot_guild(s, bot, guild).map(|g| ok(payloads::rest_guild(g))))
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn guild_channels(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(guild): Path<u64>,
) -> Response {
    sim.read(|s| {
        bot_guild(s, bot, guild).map(|g| {
            ok(Value::Array(g.channels.iter().enumerate().map(|(i, c)| payloads::channel(c, g.id, i)).collect()))
        })
    })
    .unwrap_or_else(IntoResponse::into_response)
}

/// Members with the bot itself, as Discord lists them.
fn members_of(s: &SimState, bot: usize, g: &GuildSpec) -> Vec<UserSpec> {
    let mut all = g.members.clone();
    let me = s.bots[bot].spec.user();
    if g.member_by_id(me.id).is_none() {
        all.push(me);
    }
    all
}

pub(super) async fn members(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(guild): Path<u64>,
) -> Response {
    sim.read(|s| -> Result<Response, ApiError> {
        let g = bot_guild(s, bot, guild)?;
        Ok(ok(Value::Array(members_of(s, bot, g).iter().map(|m| payloads::member(m, &s.started_at)).collect())))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn member(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((guild, user)): Path<(u64, u64)>,
) -> Response {
    sim.read(|s| -> Result<Response, ApiError> {
        let g = bot_guild(s, bot, guild)?;
        let m = members_of(s, bot, g).into_iter().find(|m| m.id == user).ok_or(ApiError::new(
            StatusCode::NOT_FOUND,
            10007,
            "Unknown Member",
        ))?;
        Ok(ok(payloads::member(&m, &s.started_at)))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn roles(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(guild): Path<u64>,
) -> Response {
    sim.read(|s| bot_guild(s, bot, guild).map(|g| ok(json!([payloads::everyone_role(g.id)]))))
        .unwrap_or_else(IntoResponse::into_response)
}
