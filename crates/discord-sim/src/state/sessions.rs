//! Gateway session bookkeeping: which session a dispatch goes to (shards, intents), its
//! sequence numbers and resume backlog, and binding connections on IDENTIFY and RESUME.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::{Conn, Outgoing, Session, State, random_string};
use crate::validate;

/// Resume backlog per session; Discord keeps a few minutes' worth.
const BACKLOG: usize = 10_000;

impl State {
    /// Dispatches an event to one bot: to the session whose shard covers `guild`
    /// (shard 0 for events outside guilds).
    pub fn dispatch(&mut self, bot: usize, guild: Option<u64>, t: &str, d: Value) {
        let targets: Vec<usize> = self.bots[bot]
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| match guild {
                Some(g) => shard_of(g, s.shard[1]) == s.shard[0],
                None => s.shard[0] == 0,
            })
            .map(|(i, _)| i)
            .collect();
        for i in targets {
            self.dispatch_to_session(bot, i, t, d.clone());
        }
    }

    /// Dispatches to every bot in `guild`.
    pub fn dispatch_guild(&mut self, guild: u64, t: &str, d: Value) {
        let bots: Vec<usize> = (0..self.bots.len()).filter(|b| self.bots[*b].spec.guilds.contains(&guild)).collect();
        for b in bots {
            self.dispatch(b, Some(guild), t, d.clone());
        }
    }

    pub fn dispatch_to_session(&mut self, bot: usize, session: usize, t: &str, mut d: Value) {
        let s = &mut self.bots[bot].sessions[session];
        if !filter_by_intents(t, &mut d, s.intents) {
            return;
        }
        s.seq += 1;
        let payload = json!({"op": 0, "s": s.seq, "t": t, "d": d});
        if let Err(e) = validate::gateway(&payload) {
            tracing::error!(error = %e, "gateway payload serenity would misread");
            self.payload_errors.push(e);
        }
        let s = &mut self.bots[bot].sessions[session];
        s.backlog.push_back(payload.clone());
        if s.backlog.len() > BACKLOG {
            s.backlog.pop_front();
        }
        if let Some(conn) = &s.conn {
            let _ = conn.tx.send(Outgoing::Frame(payload));
        }
    }

    /// Sends a non-dispatch payload (heartbeat ack, invalid session, reconnect) on the live
    /// connections of a bot, or only on `conn`.
    pub fn send_op(&mut self, bot: usize, op: u8, d: Value) {
        for s in &self.bots[bot].sessions {
            if let Some(c) = &s.conn {
                let _ = c.tx.send(Outgoing::Frame(json!({"op": op, "d": d, "s": null, "t": null})));
            }
        }
    }

    /// Closes (or drops) every live gateway connection of a bot.
    pub fn close_gateway(&mut self, bot: usize, how: impl Fn() -> Outgoing) {
        for s in &mut self.bots[bot].sessions {
            if let Some(c) = s.conn.take() {
                let _ = c.tx.send(how());
            }
        }
    }

    /// Discord's answer to an IDENTIFY over the session start limit: every session of the
    /// bot ends (4004) and its token stops working.
    pub fn reset_token(&mut self, bot: usize) {
        let b = &mut self.bots[bot];
        b.token_reset = true;
        b.identifies_refused += 1;
        self.close_gateway(bot, || {
            Outgoing::Close(crate::gateway::close::AUTHENTICATION_FAILED, "Authentication failed.".into())
        });
        self.forget_sessions(bot);
    }

    /// Forgets sessions (after op 9 or a non-resumable close): a RESUME then fails.
    pub fn forget_sessions(&mut self, bot: usize) {
        self.bots[bot].sessions.clear();
    }

    /// Binds a connection to a new session and sends READY and the shard's GUILD_CREATEs.
    pub fn identify(&mut self, bot: usize, conn: Conn, shard: [u32; 2], intents: u64, resume_url: &str) -> String {
        let shard = [shard[0], shard[1].max(1)];
        let session_id = random_string(32);
        let b = &mut self.bots[bot];
        b.identifies += 1;
        // A new IDENTIFY for a shard replaces its earlier session.
        b.sessions.retain(|s| s.shard != shard);
        b.sessions.push(Session {
            id: session_id.clone(),
            shard,
            intents,
            seq: 0,
            backlog: VecDeque::new(),
            conn: Some(conn),
        });
        let idx = b.sessions.len() - 1;
        let guild_ids: Vec<u64> =
            b.spec.guilds.iter().copied().filter(|g| shard_of(*g, shard[1]) == shard[0]).collect();
        let ready = crate::payloads::ready(&b.spec, &guild_ids, &session_id, resume_url, shard);
        self.dispatch_to_session(bot, idx, "READY", ready);
        for g in guild_ids {
            if let Some(payload) = self.guild_create(bot, g) {
                self.dispatch_to_session(bot, idx, "GUILD_CREATE", payload);
            }
        }
        session_id
    }

    /// Rebinds a connection to an existing session, replays what it missed, then RESUMED.
    pub fn resume(&mut self, bot: usize, conn: Conn, session_id: &str, seq: u64) -> bool {
        let b = &mut self.bots[bot];
        let Some(idx) = b.sessions.iter().position(|s| s.id == session_id) else {
            return false;
        };
        b.resumes += 1;
        let s = &mut b.sessions[idx];
        for payload in s.backlog.iter().filter(|p| p["s"].as_u64().unwrap_or(0) > seq) {
            let _ = conn.tx.send(Outgoing::Frame(payload.clone()));
        }
        if let Some(old) = s.conn.replace(conn) {
            let _ = old.tx.send(Outgoing::Close(4000, "session resumed elsewhere".into()));
        }
        self.dispatch_to_session(bot, idx, "RESUMED", json!({}));
        true
    }

    /// Unbinds a closed connection; its session stays resumable.
    pub fn disconnected(&mut self, conn_id: u64) {
        for b in &mut self.bots {
            for s in &mut b.sessions {
                if s.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                    s.conn = None;
                }
            }
        }
    }

    /// The session a connection is bound to.
    pub fn session_of(&self, bot: usize, conn_id: u64) -> Option<&Session> {
        self.bots[bot].sessions.iter().find(|s| s.conn.as_ref().is_some_and(|c| c.id == conn_id))
    }
}

fn shard_of(guild: u64, total: u32) -> u32 {
    ((guild >> 22) % u64::from(total.max(1))) as u32
}

const INTENT_GUILDS: u64 = 1 << 0;
const INTENT_GUILD_VOICE_STATES: u64 = 1 << 7;

/// Whether a session with `intents` receives event `t`; strips what the intents do not cover
/// (voice states from GUILD_CREATE without GUILD_VOICE_STATES).
fn filter_by_intents(t: &str, d: &mut Value, intents: u64) -> bool {
    match t {
        "GUILD_CREATE" => {
            if intents & INTENT_GUILD_VOICE_STATES == 0 {
                d["voice_states"] = json!([]);
            }
            intents & INTENT_GUILDS != 0
        }
        "GUILD_UPDATE" | "GUILD_DELETE" | "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "CHANNEL_DELETE" => {
            intents & INTENT_GUILDS != 0
        }
        "VOICE_STATE_UPDATE" => intents & INTENT_GUILD_VOICE_STATES != 0,
        _ => true,
    }
}
