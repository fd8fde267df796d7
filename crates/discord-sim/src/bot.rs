//! A handle on one simulated bot: its gateway sessions, commands, voice connection and
//! audio, and the faults a test injects into them.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::state::{self, Outgoing, State};
use super::{
    AudioStats, BotSpec, DiscordSim, GatewayFrame, GuildSpec, InteractionRecord, Press, SlashCommand, VoiceConnection,
};

/// One bot of the simulator, by token.
pub struct Bot<'a> {
    pub(super) sim: &'a DiscordSim,
    pub(super) idx: usize,
}

impl Bot<'_> {
    fn read<R>(&self, f: impl FnOnce(&state::BotState) -> R) -> R {
        self.sim.shared.read(|s| f(&s.bots[self.idx]))
    }

    pub fn spec(&self) -> BotSpec {
        self.read(|b| b.spec.clone())
    }

    pub fn user_id(&self) -> u64 {
        self.read(|b| b.spec.user_id)
    }

    pub fn application_id(&self) -> u64 {
        self.read(|b| b.spec.application_id)
    }

    /// A gateway connection is identified (or resumed) and open.
    pub fn is_connected(&self) -> bool {
        self.read(|b| b.sessions.iter().any(|s| s.conn.is_some()))
    }

    /// Waits until the bot has identified or resumed on an open gateway connection.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.sim
            .shared
            .wait_for(timeout, "the bot to connect to the gateway", |s| {
                s.bots[self.idx].sessions.iter().any(|x| x.conn.is_some()).then_some(())
            })
            .await
    }

    /// Waits until no gateway connection of the bot is open.
    pub async fn wait_disconnected(&self, timeout: Duration) -> Result<()> {
        self.sim
            .shared
            .wait_for(timeout, "the bot to disconnect", |s| {
                s.bots[self.idx].sessions.iter().all(|x| x.conn.is_none()).then_some(())
            })
            .await
    }

    /// IDENTIFYs accepted so far.
    pub fn identifies(&self) -> u32 {
        self.read(|b| b.identifies)
    }

    /// RESUMEs accepted so far.
    pub fn resumes(&self) -> u32 {
        self.read(|b| b.resumes)
    }

    /// Sets the token's session start limit: `remaining` IDENTIFYs left of 1,000, refilled
    /// `reset_after` from now.
    pub fn set_identifies_left(&self, remaining: u32, reset_after: Duration) {
        self.sim.shared.update(|s, _| s.bots[self.idx].budget = state::IdentifyBudget::new(remaining, reset_after));
    }

    /// IDENTIFYs left in the token's budget, as `GET /gateway/bot` would answer now.
    pub fn identifies_left(&self) -> u32 {
        self.sim.shared.update(|s, _| {
            let b = &mut s.bots[self.idx].budget;
            b.report(std::time::Instant::now())["remaining"].as_u64().unwrap_or(0) as u32
        })
    }

    /// IDENTIFYs refused for want of budget (the first of them reset the token).
    pub fn identifies_refused(&self) -> u32 {
        self.read(|b| b.identifies_refused)
    }

    /// Whether Discord reset this token after an IDENTIFY over the budget: the gateway
    /// closes with 4004 and REST answers 401 for it from then on.
    pub fn token_reset(&self) -> bool {
        self.read(|b| b.token_reset)
    }

    /// Fault: every session identified from now on is closed with `code` right after its
    /// READY and GUILD_CREATEs (4004, 4013 and 4014 end serenity's client: a bot that then
    /// exits is in a crash loop); `None` stops it.
    pub fn close_after_ready(&self, code: Option<u16>) {
        self.sim.shared.update(|s, _| s.bots[self.idx].close_after_ready = code);
    }

    /// Waits until at least `n` IDENTIFYs plus RESUMEs were accepted and a connection is open.
    pub async fn wait_connections(&self, n: u32, timeout: Duration) -> Result<()> {
        self.sim
            .shared
            .wait_for(timeout, &format!("{n} gateway sessions"), |s| {
                let b = &s.bots[self.idx];
                (b.identifies + b.resumes >= n && b.sessions.iter().any(|x| x.conn.is_some())).then_some(())
            })
            .await
    }

    /// Everything the bot sent over the gateway, in order.
    pub fn gateway_frames(&self) -> Vec<GatewayFrame> {
        self.read(|b| b.received.clone())
    }

    /// Registered commands: global (None) or for a guild.
    pub fn commands(&self, guild: Option<u64>) -> Vec<Value> {
        self.read(|b| match guild {
            Some(g) => b.guild_commands.get(&g).cloned().unwrap_or_default(),
            None => b.global_commands.clone(),
        })
    }

    /// Messages the bot posted with `POST /channels/{id}/messages`.
    pub fn messages(&self) -> Vec<Value> {
        self.read(|b| b.messages.clone())
    }

    /// Dispatches INTERACTION_CREATE for a slash command; the record's `id` finds the replies.
    pub fn inject_interaction(&self, cmd: SlashCommand) -> Result<InteractionRecord> {
        self.sim.shared.update(|s, _| s.inject_interaction(self.idx, &cmd))
    }

    /// An autocomplete question: `cmd` built with [`SlashCommand::typing`].
    pub fn inject_autocomplete(&self, cmd: SlashCommand) -> Result<InteractionRecord> {
        anyhow::ensure!(cmd.focused.is_some(), "an autocomplete question needs the option being typed");
        self.inject_interaction(cmd)
    }

    /// A member presses a button or picks in a select menu of a message the bot sent.
    pub fn press(&self, press: Press) -> Result<InteractionRecord> {
        self.sim.shared.update(|s, _| s.inject_press(self.idx, &press))
    }

    /// A message the bot sent (to a channel, or answering an interaction), as it is now.
    pub fn message(&self, id: u64) -> Option<Value> {
        self.sim.shared.update(|s, _| s.message_mut(self.idx, id).map(|m| m.clone()))
    }

    /// The bot is added to a guild (GUILD_CREATE); the guild is declared or replaced.
    pub fn join_guild(&self, guild: GuildSpec) {
        self.sim.shared.update(|s, _| s.join_guild(self.idx, guild));
    }

    /// The bot is removed from a guild (GUILD_DELETE). False if it was not in it.
    pub fn leave_guild(&self, guild: u64) -> bool {
        self.sim.shared.update(|s, _| s.leave_guild(self.idx, guild))
    }

    /// Sends any dispatch event (for events the simulator does not model).
    pub fn dispatch(&self, guild: Option<u64>, event: &str, d: Value) {
        self.sim.shared.update(|s, _| s.dispatch(self.idx, guild, event, d));
    }

    /// Fault: drops the gateway TCP connection without a close frame.
    pub fn drop_gateway(&self) {
        self.sim.shared.update(|s, _| s.close_gateway(self.idx, || Outgoing::Drop));
    }

    /// Fault: closes the gateway with a close code (4000 resumable, 4004 bad token, 4009 timed
    /// out, ...). Codes after which Discord does not allow a resume also forget the session.
    pub fn close_gateway(&self, code: u16) {
        self.sim.shared.update(|s, _| {
            s.close_gateway(self.idx, || Outgoing::Close(code, format!("closed by test ({code})")));
            if matches!(code, 4007 | 4009) {
                s.forget_sessions(self.idx);
            }
        });
    }

    /// Fault: stop (false) or resume (true) acknowledging heartbeats.
    pub fn set_heartbeat_acks(&self, on: bool) {
        self.sim.shared.update(|s, _| s.bots[self.idx].ack_heartbeats = on);
    }

    /// Fault: op 9 INVALID_SESSION; not resumable also forgets the session.
    pub fn invalidate_session(&self, resumable: bool) {
        self.sim.shared.update(|s, _| {
            s.send_op(self.idx, 9, json!(resumable));
            if !resumable {
                s.forget_sessions(self.idx);
            }
        });
    }

    /// Op 7 RECONNECT: Discord asks the bot to reconnect and resume.
    pub fn request_reconnect(&self) {
        self.sim.shared.update(|s, _| s.send_op(self.idx, 7, Value::Null));
    }

    /// Fault: moves the bot to another voice channel (None: disconnects it) as an admin would.
    pub fn move_to(&self, guild: u64, channel: Option<u64>) -> Result<()> {
        self.sim.shared.update(|s, ep| s.move_bot(self.idx, guild, channel, ep))
    }

    /// The bot's voice connection in a guild.
    pub fn voice(&self, guild: u64) -> Option<VoiceConnection> {
        let user = self.user_id();
        self.sim.shared.read(|s| voice_view(s, guild, user))
    }

    /// Waits until the bot's voice connection in `guild` is open and has a key (may send audio).
    pub async fn wait_voice_connected(&self, guild: u64, timeout: Duration) -> Result<VoiceConnection> {
        let user = self.user_id();
        self.sim
            .shared
            .wait_for(timeout, "the voice connection", |s| {
                voice_view(s, guild, user).filter(|v| v.ws_open && v.encrypted)
            })
            .await
    }

    /// Fault: drops the voice websocket (TCP) without a close frame. False without one.
    pub fn drop_voice(&self, guild: u64) -> bool {
        self.voice_conn(guild, Outgoing::Drop)
    }

    /// Fault: closes the voice websocket with a code (4015 asks songbird to resume).
    pub fn close_voice(&self, guild: u64, code: u16) -> bool {
        self.voice_conn(guild, Outgoing::Close(code, format!("closed by test ({code})")))
    }

    /// Fault: the voice server silently takes in none of the UDP of the bot's current voice
    /// session in `guild` (no audio heard, no receiver reports), as when a NAT forgot the
    /// path or the server forgot the session; the websocket stays up. A new session (the bot
    /// leaves and joins again) is not affected. False without a session.
    pub fn blackhole_voice(&self, guild: u64) -> bool {
        let user = self.user_id();
        self.sim.shared.update(|s, _| match s.voice.get_mut(&(guild, user)) {
            Some(v) => {
                v.blackholed = true;
                true
            }
            None => false,
        })
    }

    fn voice_conn(&self, guild: u64, out: Outgoing) -> bool {
        let user = self.user_id();
        self.sim.shared.update(|s, _| match s.voice.get_mut(&(guild, user)).and_then(|v| v.conn.take()) {
            Some(c) => c.tx.send(out).is_ok(),
            None => false,
        })
    }

    /// Fault: the voice gateway refuses (on) or accepts again (off) the bot's IDENTIFY in
    /// `guild`, closing with 4004, so every voice join there fails after TLS and the websocket
    /// opened; the main gateway's voice state and server updates still come as usual.
    pub fn refuse_voice(&self, guild: u64, on: bool) {
        self.sim.shared.update(|s, _| {
            let refused = &mut s.bots[self.idx].voice_refused;
            if on {
                refused.insert(guild);
            } else {
                refused.remove(&guild);
            }
        });
    }

    /// Voice IDENTIFYs refused by [`Bot::refuse_voice`] so far.
    pub fn voice_refusals(&self) -> u32 {
        self.read(|b| b.voice_refusals)
    }

    /// What the bot's audio in `guild` measured so far (all zero before any audio).
    pub fn audio(&self, guild: u64) -> AudioStats {
        let key = (guild, self.user_id());
        self.sim.shared.read(|s| s.audio.get(&key).map(|a| a.stats()).unwrap_or_default())
    }

    /// Packets decoded so far from the bot in `guild`: `audio(guild).packets` without the
    /// frequency analysis, cheap enough to read while measuring the bot.
    pub fn audio_packets(&self, guild: u64) -> u64 {
        let key = (guild, self.user_id());
        self.sim.shared.read(|s| s.audio.get(&key).map_or(0, |a| a.packets()))
    }

    /// The audible audio kept (mono, 48 kHz, at most the last minute) for custom analysis.
    pub fn audio_samples(&self, guild: u64) -> Vec<f32> {
        let key = (guild, self.user_id());
        self.sim.shared.read(|s| s.audio.get(&key).map(|a| a.samples()).unwrap_or_default())
    }

    /// The Opus payloads the bot sent in `guild` as they arrived (decrypted, the last 10 s).
    pub fn opus_payloads(&self, guild: u64) -> Vec<Vec<u8>> {
        let key = (guild, self.user_id());
        self.sim.shared.read(|s| s.audio.get(&key).map(|a| a.payloads()).unwrap_or_default())
    }

    /// Waits until `seconds` of audible audio arrived from the bot in `guild`.
    pub async fn wait_for_audio(&self, guild: u64, seconds: f64, timeout: Duration) -> Result<AudioStats> {
        let key = (guild, self.user_id());
        self.sim
            .shared
            .wait_for(timeout, &format!("{seconds} s of audio"), |s| {
                s.audio.get(&key).filter(|a| a.audible_seconds() >= seconds).map(|a| a.stats())
            })
            .await
            .with_context(|| format!("audio so far: {:?}", self.audio(guild)))
    }
}

fn voice_view(s: &State, guild: u64, user: u64) -> Option<VoiceConnection> {
    let v = s.voice.get(&(guild, user))?;
    Some(VoiceConnection {
        guild_id: guild,
        user_id: user,
        channel_id: v.channel,
        ws_open: v.conn.is_some() && v.ssrc.is_some(),
        ssrc: v.ssrc,
        encrypted: v.cipher.is_some(),
        mode: v.mode.clone(),
        speaking: v.speaking,
        resumes: v.resumes,
        reports_sent: v.reports.sent,
        blackholed: v.blackholed,
    })
}
