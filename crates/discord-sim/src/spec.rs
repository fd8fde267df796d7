//! What a test declares: guilds (with channels, members and who sits in which voice channel)
//! and bots (token, ids, which guilds they are in).

/// A user account: a guild member or a bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub id: u64,
    pub name: String,
    pub bot: bool,
    /// Roles of the member (ids from the guild's `roles`).
    pub roles: Vec<u64>,
    /// Holds Manage Server (the owner holds every permission anyway).
    pub manager: bool,
    /// The Discord client's language (interactions' `locale`); default en-US.
    pub locale: Option<String>,
}

impl UserSpec {
    pub fn new(id: u64, name: impl Into<String>) -> Self {
        Self { id, name: name.into(), bot: false, roles: Vec::new(), manager: false, locale: None }
    }

    pub fn with_role(mut self, role: u64) -> Self {
        self.roles.push(role);
        self
    }

    /// A member with Manage Server.
    pub fn manager(mut self) -> Self {
        self.manager = true;
        self
    }

    /// The language the member's Discord client is set to, e.g. `th`.
    pub fn locale(mut self, locale: impl Into<String>) -> Self {
        self.locale = Some(locale.into());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Text,
    Voice,
}

impl ChannelKind {
    /// Discord's channel type number.
    pub fn code(self) -> u8 {
        match self {
            ChannelKind::Text => 0,
            ChannelKind::Voice => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    pub id: u64,
    pub name: String,
    pub kind: ChannelKind,
}

/// A guild as the simulator holds it; `voice_states` changes while a test runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuildSpec {
    pub id: u64,
    pub name: String,
    pub owner_id: Option<u64>,
    pub channels: Vec<ChannelSpec>,
    pub members: Vec<UserSpec>,
    /// (user, voice channel) for everyone currently in a voice channel.
    pub voice_states: Vec<(u64, u64)>,
    /// Roles besides @everyone: (id, name).
    pub roles: Vec<(u64, String)>,
    /// Members Discord counts, when more than `members` lists: a GUILD_CREATE for
    /// GUILDS | GUILD_VOICE_STATES carries only the bot's own member and those in voice.
    pub member_count: Option<u64>,
    /// The community's preferred locale (`guild_locale`); default en-US.
    pub locale: Option<String>,
}

impl GuildSpec {
    pub fn new(id: u64, name: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            owner_id: None,
            channels: Vec::new(),
            members: Vec::new(),
            voice_states: Vec::new(),
            roles: Vec::new(),
            member_count: None,
            locale: None,
        }
    }

    /// The server's preferred locale, e.g. `th`.
    pub fn locale(mut self, locale: impl Into<String>) -> Self {
        self.locale = Some(locale.into());
        self
    }

    pub fn role(mut self, id: u64, name: impl Into<String>) -> Self {
        self.roles.push((id, name.into()));
        self
    }

    /// The member count GUILD_CREATE reports (at least the members listed).
    pub fn member_count(mut self, count: u64) -> Self {
        self.member_count = Some(count);
        self
    }

    pub fn text_channel(mut self, id: u64, name: impl Into<String>) -> Self {
        self.channels.push(ChannelSpec { id, name: name.into(), kind: ChannelKind::Text });
        self
    }

    pub fn voice_channel(mut self, id: u64, name: impl Into<String>) -> Self {
        self.channels.push(ChannelSpec { id, name: name.into(), kind: ChannelKind::Voice });
        self
    }

    pub fn member(mut self, user: UserSpec) -> Self {
        self.members.push(user);
        self
    }

    /// Puts a member into a voice channel before the bot connects (shows up in GUILD_CREATE).
    pub fn in_voice(mut self, user_id: u64, channel_id: u64) -> Self {
        self.voice_states.retain(|(u, _)| *u != user_id);
        self.voice_states.push((user_id, channel_id));
        self
    }

    pub fn owner(mut self, user_id: u64) -> Self {
        self.owner_id = Some(user_id);
        self
    }

    pub fn channel(&self, id: u64) -> Option<&ChannelSpec> {
        self.channels.iter().find(|c| c.id == id)
    }

    pub fn member_by_id(&self, id: u64) -> Option<&UserSpec> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn voice_channel_of(&self, user_id: u64) -> Option<u64> {
        self.voice_states.iter().find(|(u, _)| *u == user_id).map(|(_, c)| *c)
    }

    /// The owner: the declared one, else the first human member, else a fixed placeholder id.
    pub fn owner_id(&self) -> u64 {
        self.owner_id.or_else(|| self.members.iter().find(|m| !m.bot).map(|m| m.id)).unwrap_or(1)
    }
}

/// A bot application, identified by its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotSpec {
    pub token: String,
    /// 0 = assigned by the simulator.
    pub user_id: u64,
    /// 0 = same as `user_id` (as for every bot created since 2016).
    pub application_id: u64,
    pub name: String,
    pub guilds: Vec<u64>,
    /// Reported by `GET /gateway/bot`.
    pub shards: u32,
    /// IDENTIFYs left and when the budget refills (default: all 1,000, in 24 hours).
    pub identify_budget: Option<(u32, std::time::Duration)>,
}

impl BotSpec {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            user_id: 0,
            application_id: 0,
            name: String::new(),
            guilds: Vec::new(),
            shards: 1,
            identify_budget: None,
        }
    }

    pub fn user_id(mut self, id: u64) -> Self {
        self.user_id = id;
        self
    }

    pub fn application_id(mut self, id: u64) -> Self {
        self.application_id = id;
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn in_guild(mut self, guild_id: u64) -> Self {
        if !self.guilds.contains(&guild_id) {
            self.guilds.push(guild_id);
        }
        self
    }

    /// Starts the token with `remaining` IDENTIFYs left of Discord's 1,000, refilled
    /// `reset_after` from the simulator's start.
    pub fn identifies_left(mut self, remaining: u32, reset_after: std::time::Duration) -> Self {
        self.identify_budget = Some((remaining, reset_after));
        self
    }

    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = shards.max(1);
        self
    }

    pub fn user(&self) -> UserSpec {
        UserSpec { bot: true, ..UserSpec::new(self.user_id, self.name.clone()) }
    }
}
