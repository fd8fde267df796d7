//! The main gateway over plain ws: HELLO, IDENTIFY/RESUME, heartbeats, op 4 voice updates;
//! everything else the bot sends is recorded.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::records::GatewayFrame;
use super::state::{Conn, Outgoing, Shared};

/// Close codes from Discord's gateway documentation.
pub mod close {
    pub const UNKNOWN_ERROR: u16 = 4000;
    pub const UNKNOWN_OPCODE: u16 = 4001;
    pub const DECODE_ERROR: u16 = 4002;
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    pub const INVALID_SEQ: u16 = 4007;
    pub const SESSION_TIMED_OUT: u16 = 4009;
    pub const INVALID_SHARD: u16 = 4010;
    pub const SHARDING_REQUIRED: u16 = 4011;
    pub const INVALID_API_VERSION: u16 = 4012;
    pub const INVALID_INTENTS: u16 = 4013;
    pub const DISALLOWED_INTENTS: u16 = 4014;
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, shared.clone()));
    }
}

pub(crate) fn close_frame(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = Conn { id: shared.update(|s, _| s.conn_id()), tx };
    let interval = shared.endpoints.heartbeat_interval.as_millis() as u64;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null});
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let mut bot: Option<usize> = None;
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => handle(&shared, &conn, &mut bot, &text),
                Some(Ok(Message::Binary(_))) => {
                    let _ = conn.tx.send(Outgoing::Close(close::DECODE_ERROR, "Error while decoding payload.".into()));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Outgoing::Frame(v)) => {
                    if sink.send(Message::text(v.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = sink.send(close_frame(code, reason)).await;
                    break;
                }
                Some(Outgoing::Drop) | None => break,
            },
        }
    }
    shared.update(|s, _| s.disconnected(conn.id));
}

fn handle(shared: &Shared, conn: &Conn, bot: &mut Option<usize>, text: &str) {
    let close = |code: u16, reason: &str| {
        let _ = conn.tx.send(Outgoing::Close(code, reason.to_string()));
    };
    let Ok(payload) = serde_json::from_str::<Value>(text) else {
        return close(close::DECODE_ERROR, "Error while decoding payload.");
    };
    let op = payload["op"].as_u64().unwrap_or(u64::MAX);
    let d = payload["d"].clone();
    let resume_url = shared.endpoints.gateway_url();
    shared.update(|s, ep| {
        if let Some(b) = *bot {
            s.record_frame(b, GatewayFrame { op, d: d.clone() });
        }
        match op {
            // HEARTBEAT: acknowledged unless a test turned acks off for this bot.
            1 => {
                if bot.is_none_or(|b| s.bots[b].ack_heartbeats) {
                    let _ = conn.tx.send(Outgoing::Frame(json!({"op": 11, "d": null, "s": null, "t": null})));
                }
            }
            // IDENTIFY
            2 => {
                if bot.is_some() {
                    return close(close::ALREADY_AUTHENTICATED, "Already authenticated.");
                }
                let Some(b) = d["token"].as_str().and_then(|t| s.authenticated(t.strip_prefix("Bot ").unwrap_or(t)))
                else {
                    return close(close::AUTHENTICATION_FAILED, "Authentication failed.");
                };
                let shard = match d["shard"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
                    .as_deref()
                {
                    None => [0, 1],
                    Some([id, total]) if id < total => [*id as u32, *total as u32],
                    Some(_) => return close(close::INVALID_SHARD, "Invalid shard."),
                };
                s.record_frame(b, GatewayFrame { op, d: d.clone() });
                if !s.bots[b].budget.spend(std::time::Instant::now()) {
                    // Discord: "all active sessions for the app will be terminated, the bot
                    // token will be reset, and the owner will receive an email notification".
                    tracing::warn!(bot = %s.bots[b].spec.name, "IDENTIFY over the session start limit: token reset");
                    s.reset_token(b);
                    return close(close::AUTHENTICATION_FAILED, "Authentication failed.");
                }
                *bot = Some(b);
                s.identify(b, conn.clone(), shard, d["intents"].as_u64().unwrap_or(0), &resume_url);
                tracing::info!(bot = %s.bots[b].spec.name, ?shard, "gateway session identified");
                if let Some(code) = s.bots[b].close_after_ready {
                    // After READY and the GUILD_CREATEs, which the channel sends first.
                    close(code, &format!("closed after READY by test ({code})"));
                }
            }
            // RESUME
            6 => {
                let Some(b) = d["token"].as_str().and_then(|t| s.authenticated(t.strip_prefix("Bot ").unwrap_or(t)))
                else {
                    return close(close::AUTHENTICATION_FAILED, "Authentication failed.");
                };
                *bot = Some(b);
                s.record_frame(b, GatewayFrame { op, d: d.clone() });
                let session = d["session_id"].as_str().unwrap_or_default();
                let resumed = s.resume(b, conn.clone(), session, d["seq"].as_u64().unwrap_or(0));
                tracing::info!(bot = %s.bots[b].spec.name, resumed, "gateway RESUME");
                if !resumed {
                    let _ = conn.tx.send(Outgoing::Frame(json!({"op": 9, "d": false, "s": null, "t": null})));
                }
            }
            _ if bot.is_none() => close(close::NOT_AUTHENTICATED, "Not authenticated."),
            // VOICE_STATE_UPDATE
            4 => {
                let b = bot.expect("checked above");
                let Some(session) = s.session_of(b, conn.id).map(|x| x.id.clone()) else {
                    return;
                };
                let guild = snowflake(&d["guild_id"]);
                let channel = snowflake(&d["channel_id"]);
                if let Some(guild) = guild {
                    s.bot_voice_update(b, &session, guild, channel, ep);
                }
            }
            // PRESENCE_UPDATE, REQUEST_GUILD_MEMBERS, REQUEST_SOUNDBOARD_SOUNDS: recorded only.
            3 | 8 | 31 => {}
            _ => close(close::UNKNOWN_OPCODE, "Unknown opcode."),
        }
    });
}

/// A snowflake as clients send it: a string (Discord's form) or a number (songbird's op 4).
fn snowflake(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
