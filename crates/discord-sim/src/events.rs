//! Changes to the simulated world and the events they cause: voice moves (of bots and
//! members), guild joins and leaves, injected interactions.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::interaction::{InteractionContext, Press, SlashCommand, component_create, interaction_create};
use super::payloads;
use super::records::InteractionRecord;
use super::spec::{ChannelKind, ChannelSpec, GuildSpec, UserSpec};
use super::state::{Endpoints, Outgoing, State, VoiceSession, random_string};

/// What kind of interaction [`State::deliver`] records, and what it is about.
struct Delivery {
    kind: u8,
    message_id: Option<u64>,
    command: String,
    command_id: u64,
}

/// Discord's voice close code for "disconnected from the channel" (kicked, moved, left).
pub const VOICE_DISCONNECTED: u16 = 4014;

impl State {
    fn user_in_guild(&self, bot: Option<usize>, guild: u64, user: u64) -> UserSpec {
        if let Some(b) = bot.map(|b| &self.bots[b].spec).filter(|s| s.user_id == user) {
            return b.user();
        }
        if let Some(b) = self.bots.iter().find(|b| b.spec.user_id == user) {
            return b.spec.user();
        }
        self.guilds
            .get(&guild)
            .and_then(|g| g.member_by_id(user))
            .cloned()
            .unwrap_or_else(|| UserSpec::new(user, format!("user{user}")))
    }

    fn is_voice_channel(&self, guild: u64, channel: u64) -> bool {
        self.guilds.get(&guild).and_then(|g| g.channel(channel)).is_some_and(|c| c.kind == ChannelKind::Voice)
    }

    /// Sets where a user sits and tells every bot in the guild (VOICE_STATE_UPDATE).
    fn set_voice_state(&mut self, guild: u64, user: UserSpec, channel: Option<u64>) {
        let Some(g) = self.guilds.get_mut(&guild) else {
            return;
        };
        g.voice_states.retain(|(u, _)| *u != user.id);
        if let Some(c) = channel {
            g.voice_states.push((user.id, c));
        }
        let session = self.voice_session_id(guild, user.id);
        let d = payloads::voice_state(guild, channel, &user, &session, &self.started_at.clone(), true);
        self.dispatch_guild(guild, "VOICE_STATE_UPDATE", d);
    }

    /// Op 4 from a bot: join, move or leave a voice channel.
    pub fn bot_voice_update(&mut self, bot: usize, session_id: &str, guild: u64, channel: Option<u64>, ep: &Endpoints) {
        self.place_bot(bot, session_id, guild, channel, false, ep);
    }

    /// Puts a bot into a voice channel (VOICE_STATE_UPDATE to the guild, VOICE_SERVER_UPDATE to
    /// the bot), then closes the voice connection it replaces, in the order Discord does.
    /// A repeated op 4 for the same channel keeps the voice server assignment unless `fresh`.
    fn place_bot(
        &mut self,
        bot: usize,
        session_id: &str,
        guild: u64,
        channel: Option<u64>,
        fresh: bool,
        ep: &Endpoints,
    ) {
        let user = self.bots[bot].spec.user();
        if !self.bots[bot].spec.guilds.contains(&guild) {
            return;
        }
        let key = (guild, user.id);
        let Some(channel) = channel else {
            let old = self.voice.remove(&key);
            self.set_voice_state(guild, user, None);
            if let Some(old) = old {
                self.retire_voice(old);
            }
            return;
        };
        if !self.is_voice_channel(guild, channel) {
            return;
        }
        let keep = !fresh && self.voice.get(&key).is_some_and(|v| v.channel == channel && v.session_id == session_id);
        let mut old = None;
        if !keep {
            let session = VoiceSession {
                channel,
                session_id: session_id.to_string(),
                token: random_string(16).to_lowercase(),
                ssrc: None,
                cipher: None,
                mode: None,
                conn: None,
                udp_peer: None,
                speaking: None,
                resumes: 0,
                blackholed: false,
                reports: Default::default(),
            };
            old = self.voice.insert(key, session);
        }
        self.set_voice_state(guild, user, Some(channel));
        let token = self.voice[&key].token.clone();
        self.dispatch(
            bot,
            Some(guild),
            "VOICE_SERVER_UPDATE",
            payloads::voice_server_update(guild, &token, &ep.voice.to_string()),
        );
        if let Some(old) = old {
            self.retire_voice(old);
        }
    }

    /// Moves a bot as an admin would (None: disconnects it): the old voice connection is closed
    /// with 4014 and, for a move, a new voice server is assigned.
    pub fn move_bot(&mut self, bot: usize, guild: u64, channel: Option<u64>, ep: &Endpoints) -> Result<()> {
        let user = self.bots[bot].spec.user_id;
        let session = self
            .voice
            .get(&(guild, user))
            .context("the bot is not connected to voice in that guild")?
            .session_id
            .clone();
        if let Some(c) = channel
            && !self.is_voice_channel(guild, c)
        {
            bail!("channel {c} is not a voice channel of guild {guild}");
        }
        self.place_bot(bot, &session, guild, channel, true, ep);
        Ok(())
    }

    fn end_voice(&mut self, guild: u64, user: u64) {
        if let Some(old) = self.voice.remove(&(guild, user)) {
            self.retire_voice(old);
        }
    }

    fn retire_voice(&mut self, old: VoiceSession) {
        if let Some(ssrc) = old.ssrc {
            self.ssrcs.remove(&ssrc);
        }
        if let Some(c) = old.conn {
            let _ = c.tx.send(Outgoing::Close(VOICE_DISCONNECTED, "Disconnected.".into()));
        }
    }

    /// A member joins, moves between or leaves voice channels.
    pub fn move_member(&mut self, guild: u64, user: u64, channel: Option<u64>) -> Result<()> {
        if let Some(c) = channel
            && !self.is_voice_channel(guild, c)
        {
            bail!("channel {c} is not a voice channel of guild {guild}");
        }
        let u = self.user_in_guild(None, guild, user);
        self.set_voice_state(guild, u, channel);
        Ok(())
    }

    /// The bot is added to a guild: GUILD_CREATE.
    pub fn join_guild(&mut self, bot: usize, guild: GuildSpec) {
        let id = guild.id;
        self.guilds.insert(id, guild);
        if !self.bots[bot].spec.guilds.contains(&id) {
            self.bots[bot].spec.guilds.push(id);
        }
        if let Some(d) = self.guild_create(bot, id) {
            self.dispatch(bot, Some(id), "GUILD_CREATE", d);
        }
    }

    /// The bot is removed from (or leaves) a guild: GUILD_DELETE.
    pub fn leave_guild(&mut self, bot: usize, guild: u64) -> bool {
        if !self.bots[bot].spec.guilds.contains(&guild) {
            return false;
        }
        let user = self.bots[bot].spec.user_id;
        self.end_voice(guild, user);
        if let Some(g) = self.guilds.get_mut(&guild) {
            g.voice_states.retain(|(u, _)| *u != user);
        }
        self.dispatch(bot, Some(guild), "GUILD_DELETE", payloads::guild_delete(guild, false));
        self.bots[bot].spec.guilds.retain(|g| *g != guild);
        self.bots[bot].guild_commands.remove(&guild);
        true
    }

    /// Dispatches INTERACTION_CREATE for a slash command (or an autocomplete question) and
    /// starts recording the replies.
    pub fn inject_interaction(&mut self, bot: usize, cmd: &SlashCommand) -> Result<InteractionRecord> {
        let place = self.place(bot, cmd.guild_id, cmd.channel_id, cmd.user_id)?;
        let b = &self.bots[bot];
        let registered = b
            .guild_commands
            .get(&place.0.id)
            .into_iter()
            .flatten()
            .chain(b.global_commands.iter())
            .find(|c| c["name"] == json!(cmd.name));
        let command_id = match registered.and_then(|c| c["id"].as_str()).and_then(|id| id.parse().ok()) {
            Some(id) => id,
            None => self.snowflake(),
        };
        let kind = if cmd.focused.is_some() { 4 } else { 2 };
        let what = Delivery { kind, message_id: None, command: cmd.name.clone(), command_id };
        Ok(self.deliver(bot, place, what, |ctx| interaction_create(cmd, ctx)))
    }

    /// A member presses a component of message `press.message_id`, which the bot sent (to a
    /// channel, or as an interaction's answer).
    pub fn inject_press(&mut self, bot: usize, press: &Press) -> Result<InteractionRecord> {
        let place = self.place(bot, press.guild_id, press.channel_id, press.user_id)?;
        let message = self
            .message_mut(bot, press.message_id)
            .map(|m| m.clone())
            .with_context(|| format!("the bot sent no message {}", press.message_id))?;
        let offered = message["components"].to_string().contains(&format!("\"custom_id\":{}", json!(press.custom_id)));
        if !offered {
            bail!("message {} has no component {:?}", press.message_id, press.custom_id);
        }
        let what =
            Delivery { kind: 3, message_id: Some(press.message_id), command: press.custom_id.clone(), command_id: 0 };
        Ok(self.deliver(bot, place, what, |ctx| component_create(press, &message, ctx)))
    }

    /// Where an interaction happens: the guild (the bot's), the channel and the member.
    fn place(&self, bot: usize, guild: u64, channel: u64, user: u64) -> Result<(GuildSpec, ChannelSpec, UserSpec)> {
        let guild = self.guilds.get(&guild).cloned().with_context(|| format!("unknown guild {guild}"))?;
        if !self.bots[bot].spec.guilds.contains(&guild.id) {
            bail!("the bot is not in guild {}", guild.id);
        }
        let channel =
            guild.channel(channel).cloned().with_context(|| format!("guild {} has no channel {channel}", guild.id))?;
        let user = self.user_in_guild(Some(bot), guild.id, user);
        Ok((guild, channel, user))
    }

    /// Dispatches the interaction `payload` builds and starts recording its answers.
    fn deliver(
        &mut self,
        bot: usize,
        (guild, channel, user): (GuildSpec, ChannelSpec, UserSpec),
        what: Delivery,
        payload: impl FnOnce(&InteractionContext<'_>) -> Value,
    ) -> InteractionRecord {
        let id = self.snowflake();
        let token = format!("aW50ZXJhY3Rpb246{}", random_string(120));
        let application_id = self.bots[bot].spec.application_id;
        let ctx = InteractionContext {
            id,
            token: &token,
            application_id,
            command_id: what.command_id,
            guild: &guild,
            channel: &channel,
            user: &user,
            joined_at: &self.started_at,
        };
        let d = payload(&ctx);
        let record = InteractionRecord {
            kind: what.kind,
            message_id: what.message_id,
            id,
            token: token.clone(),
            bot: self.bots[bot].spec.token.clone(),
            application_id,
            guild_id: guild.id,
            channel_id: channel.id,
            user,
            command: what.command,
            callback: None,
            original: None,
            followups: Vec::new(),
        };
        self.interactions.push(record.clone());
        self.interaction_created.insert(id, std::time::Instant::now());
        self.dispatch(bot, Some(guild.id), "INTERACTION_CREATE", d);
        record
    }

    /// A message bot `bot` sent, by id: to a channel, or answering an interaction.
    pub(crate) fn message_mut(&mut self, bot: usize, id: u64) -> Option<&mut Value> {
        let id = id.to_string();
        let token = self.bots[bot].spec.token.clone();
        if let Some(i) = self.bots[bot].messages.iter().position(|m| m["id"] == json!(id)) {
            return self.bots[bot].messages.get_mut(i);
        }
        self.interactions
            .iter_mut()
            .filter(|r| r.bot == token)
            .flat_map(|r| r.original.iter_mut().chain(r.followups.iter_mut()))
            .find(|m| m["id"] == json!(id))
    }
}
