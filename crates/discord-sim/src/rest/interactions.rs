//! Interaction callbacks and the interaction webhook (follow-ups, `@original`).
//! Authenticated by the interaction token in the path, as Discord does.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{ActingBot, JsonBody, error, no_content, ok};
use crate::payloads::{self, MessageContext};
use crate::records::InteractionRecord;
use crate::state::{Shared, State as SimState};

type Sim = State<Arc<Shared>>;

/// Discord's "loading" flag on a deferred response's placeholder message.
const LOADING: u64 = 128;

fn with_bot(mut r: Response, token: Option<String>) -> Response {
    if let Some(t) = token {
        r.extensions_mut().insert(ActingBot(t));
    }
    r
}

fn unknown_interaction() -> Response {
    error(StatusCode::NOT_FOUND, 10062, "Unknown interaction")
}

fn unknown_webhook() -> Response {
    error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook")
}

fn unknown_message() -> Response {
    error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
}

/// Builds a message the bot sends in reply to an interaction.
fn reply(s: &mut SimState, rec: &InteractionRecord, body: &Value) -> Value {
    let id = s.snowflake();
    let bot = s.bot_index(&rec.bot).map(|b| s.bots[b].spec.user()).expect("interactions belong to configured bots");
    let ctx = MessageContext {
        id,
        channel_id: rec.channel_id,
        guild_id: Some(rec.guild_id),
        author: &bot,
        application_id: Some(rec.application_id),
        interaction: Some((rec.id, &rec.user, &rec.command)),
        timestamp: &payloads::now(),
    };
    payloads::message(body, &ctx)
}

pub(crate) async fn callback(
    State(sim): Sim,
    Extension(body): Extension<JsonBody>,
    Path((id, token)): Path<(u64, String)>,
) -> Response {
    let body = body.0.unwrap_or(Value::Null);
    sim.update(|s, _| {
        let Some(i) = s.interactions.iter().position(|r| r.id == id && r.token == token) else {
            return with_bot(unknown_interaction(), None);
        };
        let bot = Some(s.interactions[i].bot.clone());
        // Discord forgets an interaction not answered within its deadline (3 s).
        if s.interaction_created.get(&id).is_some_and(|t| t.elapsed() > s.interaction_deadline) {
            return with_bot(unknown_interaction(), bot);
        }
        if s.interactions[i].callback.is_some() {
            return with_bot(error(StatusCode::BAD_REQUEST, 40060, "Interaction has already been acknowledged."), bot);
        }
        let rec = s.interactions[i].clone();
        let data = body.get("data").cloned().unwrap_or(json!({}));
        // What each kind of interaction may be answered with, as Discord allows it.
        let allowed = match rec.kind {
            3 => [4, 5, 6, 7, 9].as_slice(),
            4 => &[8],
            _ => &[4, 5, 9, 12],
        };
        let kind = body["type"].as_u64().unwrap_or(0);
        if !allowed.contains(&kind) {
            return with_bot(error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body"), bot);
        }
        let original = match kind {
            4 => Some(reply(s, &rec, &data)),
            5 => {
                let flags = data["flags"].as_u64().unwrap_or(0) & 64 | LOADING;
                Some(reply(s, &rec, &json!({"content": "", "flags": flags})))
            }
            7 => {
                // The pressed component's message changes in place.
                let b = s.bot_index(&rec.bot).expect("interactions belong to configured bots");
                if let Some(m) = rec.message_id.and_then(|id| s.message_mut(b, id)) {
                    payloads::edit_message(m, &data, &payloads::now());
                }
                None
            }
            8 if data["choices"].as_array().is_none_or(|c| c.len() > 25) => {
                return with_bot(error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body (25 choices at most)"), bot);
            }
            _ => None,
        };
        let r = &mut s.interactions[i];
        r.callback = Some(body.clone());
        r.original = original;
        with_bot(no_content(), bot)
    })
}

/// The interaction behind a webhook path, once it has been acknowledged.
fn webhook(s: &SimState, app: u64, token: &str) -> Option<usize> {
    s.interactions.iter().position(|r| r.application_id == app && r.token == token && r.callback.is_some())
}

pub(crate) async fn followup(
    State(sim): Sim,
    Extension(body): Extension<JsonBody>,
    Path((app, token)): Path<(u64, String)>,
) -> Response {
    let body = body.0.unwrap_or(json!({}));
    sim.update(|s, _| {
        let Some(i) = webhook(s, app, &token) else {
            return unknown_webhook();
        };
        let rec = s.interactions[i].clone();
        let msg = reply(s, &rec, &body);
        s.interactions[i].followups.push(msg.clone());
        with_bot(ok(msg), Some(rec.bot))
    })
}

enum Target {
    Original,
    Followup(usize),
}

fn target(rec: &InteractionRecord, message: &str) -> Option<Target> {
    if message == "@original" {
        return rec.original.as_ref().map(|_| Target::Original);
    }
    rec.followups.iter().position(|m| m["id"].as_str() == Some(message)).map(Target::Followup)
}

fn message_mut<'a>(rec: &'a mut InteractionRecord, t: &Target) -> &'a mut Value {
    match t {
        Target::Original => rec.original.as_mut().expect("target checked"),
        Target::Followup(i) => &mut rec.followups[*i],
    }
}

pub(crate) async fn get_message(State(sim): Sim, Path((app, token, message)): Path<(u64, String, String)>) -> Response {
    sim.update(|s, _| {
        let Some(i) = webhook(s, app, &token) else {
            return unknown_webhook();
        };
        let rec = &mut s.interactions[i];
        let bot = Some(rec.bot.clone());
        match target(rec, &message) {
            Some(t) => with_bot(ok(message_mut(rec, &t).clone()), bot),
            None => with_bot(unknown_message(), bot),
        }
    })
}

pub(crate) async fn edit_message(
    State(sim): Sim,
    Extension(body): Extension<JsonBody>,
    Path((app, token, message)): Path<(u64, String, String)>,
) -> Response {
    let body = body.0.unwrap_or(json!({}));
    sim.update(|s, _| {
        let Some(i) = webhook(s, app, &token) else {
            return unknown_webhook();
        };
        // A press answered with a deferred update: its `@original` is the pressed message.
        let (kind, pressed, token) =
            (s.interactions[i].kind, s.interactions[i].message_id, s.interactions[i].bot.clone());
        if kind == 3 && message == "@original" && s.interactions[i].original.is_none() {
            let b = s.bot_index(&token).expect("interactions belong to configured bots");
            let Some(m) = pressed.and_then(|id| s.message_mut(b, id)) else {
                return with_bot(unknown_message(), Some(token));
            };
            payloads::edit_message(m, &body, &payloads::now());
            return with_bot(ok(m.clone()), Some(token));
        }
        let rec = &mut s.interactions[i];
        let bot = Some(rec.bot.clone());
        let Some(t) = target(rec, &message) else {
            return with_bot(unknown_message(), bot);
        };
        let msg = message_mut(rec, &t);
        payloads::edit_message(msg, &body, &payloads::now());
        // Editing a deferred response's placeholder is how the bot answers: it stops loading.
        if let Some(f) = msg["flags"].as_u64() {
            msg["flags"] = json!(f & !LOADING);
        }
        with_bot(ok(msg.clone()), bot)
    })
}

pub(crate) async fn delete_message(
    State(sim): Sim,
    Path((app, token, message)): Path<(u64, String, String)>,
) -> Response {
    sim.update(|s, _| {
        let Some(i) = webhook(s, app, &token) else {
            return unknown_webhook();
        };
        let rec = &mut s.interactions[i];
        let bot = Some(rec.bot.clone());
        match target(rec, &message) {
            Some(Target::Original) => rec.original = None,
            Some(Target::Followup(f)) => {
                rec.followups.remove(f);
            }
            None => return with_bot(unknown_message(), bot),
        }
        with_bot(no_content(), bot)
    })
}
