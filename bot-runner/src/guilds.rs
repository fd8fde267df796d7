//! What a music bot knows about its guilds, kept from the gateway's events in place of
//! serenity's cache (which is off: it keeps every guild whole, channels, roles, emojis and
//! members, and at a full shard that is most of a bot's memory). Per guild: the member count
//! (for `/status`) and who sits in which voice channel, bot or not (the caller's channel,
//! the empty-channel check).
//!
//! Voice states arrive two ways: inside GUILD_CREATE, which serenity hands to a spawned task,
//! and as VOICE_STATE_UPDATE, which [`VoiceHook`] sees in the shard's own task, in order.
//! A GUILD_CREATE handled late must not undo a newer update, so updates that come before
//! their guild's GUILD_CREATE of this session is in are kept aside and laid over it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::all::{
    ChannelId, Guild as FullGuild, GuildId, ShardRunnerMessage, UserId, VoiceGatewayManager, VoiceState,
};
use serenity::futures::channel::mpsc::UnboundedSender;
use songbird::Songbird;
use tokio::sync::Notify;

#[derive(Default)]
pub struct GuildIndex {
    inner: Mutex<Inner>,
    /// Woken by each GUILD_CREATE handled, for [`GuildIndex::arrived`].
    created: Notify,
}

#[derive(Default)]
struct Inner {
    me: Option<UserId>,
    /// Counts READYs (the hook sees each before any of the events that follow it).
    session: u64,
    /// This session's READY was handled, so `unavailable` holds what it announced.
    ready: bool,
    /// The guild list of this session was handed out once complete.
    announced: bool,
    /// Guilds of this shard without a GUILD_CREATE yet (at start, or after an outage).
    unavailable: HashSet<GuildId>,
    guilds: HashMap<GuildId, Guild>,
    /// Voice updates for guilds whose GUILD_CREATE of this session is not in yet.
    early: HashMap<GuildId, HashMap<UserId, Option<Seat>>>,
    /// Each guild's preferred locale (what the bot says outside replies is in it).
    locales: HashMap<GuildId, String>,
}

struct Guild {
    members: u64,
    session: u64,
    seats: HashMap<UserId, Seat>,
}

#[derive(Clone, Copy)]
struct Seat {
    channel: ChannelId,
    bot: bool,
}

/// What a GUILD_CREATE or READY told the caller.
pub struct Created {
    /// Joined now, not announced by READY nor back from an outage.
    pub is_new: bool,
    /// Every guild of the shard, once the last one announced by READY arrived.
    pub complete: Option<Vec<u64>>,
}

impl GuildIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("guild index lock")
    }

    /// READY was handled: `guilds` are the shard's guilds (all unavailable until their
    /// GUILD_CREATE). Guilds missing from it were left while the bot was away.
    pub fn ready(&self, guilds: impl IntoIterator<Item = GuildId>) -> Option<Vec<u64>> {
        let mut i = self.lock();
        let listed: HashSet<GuildId> = guilds.into_iter().collect();
        i.guilds.retain(|g, _| listed.contains(g));
        let session = i.session;
        // Some GUILD_CREATEs may have been handled before this READY was.
        let created: HashSet<GuildId> =
            i.guilds.iter().filter(|(_, g)| g.session == session).map(|(id, _)| *id).collect();
        i.unavailable = listed.difference(&created).copied().collect();
        i.ready = true;
        i.complete()
    }

    pub fn guild_create(&self, guild: &FullGuild) -> Created {
        let seats = guild.voice_states.values().filter_map(|v| {
            let bot = guild.members.get(&v.user_id).or(v.member.as_ref()).is_some_and(|m| m.user.bot);
            Some((v.user_id, v.channel_id?, bot))
        });
        self.lock().locales.insert(guild.id, guild.preferred_locale.clone());
        self.created(guild.id, guild.member_count, seats)
    }

    /// The guild's preferred locale, from its GUILD_CREATE.
    pub fn locale(&self, guild: GuildId) -> Option<String> {
        self.lock().locales.get(&guild).cloned()
    }

    /// A GUILD_CREATE: its member count and its voice states `(user, channel, bot)`.
    fn created(&self, id: GuildId, members: u64, seats: impl Iterator<Item = (UserId, ChannelId, bool)>) -> Created {
        let mut i = self.lock();
        let was_unavailable = i.unavailable.remove(&id);
        let is_new = i.ready && !was_unavailable;
        let mut seats: HashMap<UserId, Seat> = seats.map(|(u, channel, bot)| (u, Seat { channel, bot })).collect();
        for (user, seat) in i.early.remove(&id).into_iter().flatten() {
            match seat {
                Some(s) => seats.insert(user, s),
                None => seats.remove(&user),
            };
        }
        seats.shrink_to_fit();
        let session = i.session;
        i.guilds.insert(id, Guild { members, session, seats });
        let created = Created { is_new, complete: i.complete() };
        drop(i);
        self.created.notify_waiters();
        created
    }

    /// Waits, up to `within`, for `guild`'s GUILD_CREATE of this session. serenity hands
    /// each event to a task of its own, so an interaction sent after GUILD_CREATE can be
    /// handled before it, when the caller's voice channel is not known yet.
    pub async fn arrived(&self, guild: GuildId, within: Duration) -> bool {
        let wait = async {
            loop {
                let created = self.created.notified();
                tokio::pin!(created);
                // Registered before the check, so a GUILD_CREATE in between is not missed.
                created.as_mut().enable();
                if self.has(guild) {
                    return;
                }
                created.await;
            }
        };
        tokio::time::timeout(within, wait).await.is_ok()
    }

    fn has(&self, guild: GuildId) -> bool {
        let i = self.lock();
        i.guilds.get(&guild).is_some_and(|g| g.session == i.session)
    }

    /// The bot left the guild, or (`outage`) the guild became unavailable.
    pub fn guild_delete(&self, guild: GuildId, outage: bool) {
        let mut i = self.lock();
        i.guilds.remove(&guild);
        i.early.remove(&guild);
        if outage {
            i.unavailable.insert(guild);
        } else {
            i.unavailable.remove(&guild);
        }
    }

    /// The voice channel `user` is in.
    pub fn seat(&self, guild: GuildId, user: UserId) -> Option<ChannelId> {
        self.lock().guilds.get(&guild)?.seats.get(&user).map(|s| s.channel)
    }

    /// The bots (not us) in `channel`.
    pub fn bots_in(&self, guild: GuildId, channel: ChannelId) -> Vec<UserId> {
        let i = self.lock();
        let Some(g) = i.guilds.get(&guild) else { return Vec::new() };
        g.seats.iter().filter(|(u, s)| s.channel == channel && s.bot && Some(**u) != i.me).map(|(u, _)| *u).collect()
    }

    /// People (not bots, not us) in `channel`.
    pub fn listeners(&self, guild: GuildId, channel: ChannelId) -> usize {
        let i = self.lock();
        let Some(g) = i.guilds.get(&guild) else { return 0 };
        g.seats.iter().filter(|(u, s)| s.channel == channel && !s.bot && Some(**u) != i.me).count()
    }

    /// The shard's guilds, unavailable ones too.
    pub fn ids(&self) -> Vec<GuildId> {
        let i = self.lock();
        // A guild of the last session waiting for this one's GUILD_CREATE is in both.
        let known = i.guilds.keys().filter(|g| !i.unavailable.contains(g));
        known.chain(i.unavailable.iter()).copied().collect()
    }

    /// Members of the available guilds, as their GUILD_CREATE counted them.
    pub fn members(&self) -> u64 {
        self.lock().guilds.values().map(|g| g.members).sum()
    }

    fn new_session(&self) {
        let mut i = self.lock();
        i.session += 1;
        i.ready = false;
        i.announced = false;
        i.early.clear();
    }

    fn voice_update(&self, guild: GuildId, v: &VoiceState) {
        let mut i = self.lock();
        let session = i.session;
        let Inner { guilds, early, .. } = &mut *i;
        match guilds.get_mut(&guild).filter(|g| g.session == session) {
            Some(g) => {
                let known = g.seats.get(&v.user_id).map(|s| s.bot);
                match seat(v, known) {
                    Some(s) => g.seats.insert(v.user_id, s),
                    None => g.seats.remove(&v.user_id),
                };
            }
            None => {
                early.entry(guild).or_default().insert(v.user_id, seat(v, None));
            }
        }
    }
}

impl Inner {
    fn complete(&mut self) -> Option<Vec<u64>> {
        if !self.ready || self.announced || !self.unavailable.is_empty() {
            return None;
        }
        self.announced = true;
        Some(self.guilds.keys().map(|g| g.get()).collect())
    }
}

/// A VOICE_STATE_UPDATE's seat; the member is missing from some, so a known flag stays.
fn seat(v: &VoiceState, known_bot: Option<bool>) -> Option<Seat> {
    let bot = v.member.as_ref().map(|m| m.user.bot).or(known_bot).unwrap_or(false);
    Some(Seat { channel: v.channel_id?, bot })
}

/// songbird's gateway hooks, which serenity calls in the shard's task in the order events
/// arrive, with the index fed on the way.
pub struct VoiceHook {
    pub songbird: Arc<Songbird>,
    pub guilds: Arc<GuildIndex>,
}

#[serenity::async_trait]
impl VoiceGatewayManager for VoiceHook {
    async fn initialise(&self, shard_count: u32, user_id: UserId) {
        self.guilds.lock().me = Some(user_id);
        self.songbird.initialise(shard_count, user_id).await;
    }

    /// Called on READY, before the READY is handed out.
    async fn register_shard(&self, shard_id: u32, sender: UnboundedSender<ShardRunnerMessage>) {
        self.guilds.new_session();
        self.songbird.register_shard(shard_id, sender).await;
    }

    async fn deregister_shard(&self, shard_id: u32) {
        self.songbird.deregister_shard(shard_id).await;
    }

    async fn server_update(&self, guild_id: GuildId, endpoint: &Option<String>, token: &str) {
        self.songbird.server_update(guild_id, endpoint, token).await;
    }

    async fn state_update(&self, guild_id: GuildId, voice_state: &VoiceState) {
        self.guilds.voice_update(guild_id, voice_state);
        self.songbird.state_update(guild_id, voice_state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GuildId = GuildId::new(1);
    const VOICE: ChannelId = ChannelId::new(2);

    fn update(user: u64, channel: Option<u64>) -> VoiceState {
        serde_json::from_value(serde_json::json!({
            "guild_id": "1", "channel_id": channel.map(|c| c.to_string()), "user_id": user.to_string(),
            "session_id": "s", "deaf": false, "mute": false, "self_deaf": false, "self_mute": false,
            "self_video": false, "suppress": false, "request_to_speak_timestamp": null,
        }))
        .expect("a voice state")
    }

    #[test]
    fn a_late_guild_create_does_not_undo_newer_voice_updates() {
        let index = GuildIndex::default();
        index.new_session();
        // Seen in order by the hook, while the GUILD_CREATE's task had not run yet.
        index.voice_update(G, &update(10, None));
        index.voice_update(G, &update(11, Some(2)));
        let snapshot = [(UserId::new(10), VOICE, false), (UserId::new(12), VOICE, false)];
        index.created(G, 3, snapshot.into_iter());
        assert_eq!(index.seat(G, UserId::new(10)), None, "left after the snapshot");
        assert_eq!(index.seat(G, UserId::new(11)), Some(VOICE), "joined after the snapshot");
        assert_eq!(index.seat(G, UserId::new(12)), Some(VOICE));
        // Once the snapshot is in, updates apply directly.
        index.voice_update(G, &update(12, None));
        assert_eq!(index.listeners(G, VOICE), 1);
    }

    #[tokio::test]
    async fn a_command_handled_before_its_guild_create_waits_for_it() {
        let index = Arc::new(GuildIndex::default());
        index.new_session();
        let creator = index.clone();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            creator.created(G, 1, [(UserId::new(10), VOICE, false)].into_iter());
        });
        assert!(index.arrived(G, Duration::from_secs(5)).await);
        assert_eq!(index.seat(G, UserId::new(10)), Some(VOICE));
        late.await.expect("the GUILD_CREATE task");
        // A guild that never comes is waited for no longer than asked.
        assert!(!index.arrived(GuildId::new(7), Duration::from_millis(20)).await);
        // Nor is one of the last session, until its GUILD_CREATE of this one.
        index.new_session();
        assert!(!index.arrived(G, Duration::from_millis(20)).await);
    }

    #[test]
    fn bots_and_the_bot_itself_are_not_listeners() {
        let index = GuildIndex::default();
        index.lock().me = Some(UserId::new(99));
        index.new_session();
        let snapshot =
            [(UserId::new(99), VOICE, true), (UserId::new(20), VOICE, true), (UserId::new(21), VOICE, false)];
        index.created(G, 3, snapshot.into_iter());
        assert_eq!(index.listeners(G, VOICE), 1);
        // An update without the member keeps what GUILD_CREATE said about the user.
        index.voice_update(G, &update(20, Some(2)));
        assert_eq!(index.listeners(G, VOICE), 1);
    }

    #[test]
    fn the_guild_list_is_complete_once_every_announced_guild_arrived() {
        let index = GuildIndex::default();
        index.new_session();
        let (a, b) = (GuildId::new(1), GuildId::new(2));
        // A GUILD_CREATE handled before its READY.
        let early = index.created(a, 5, std::iter::empty());
        assert!(!early.is_new && early.complete.is_none());
        assert_eq!(index.ready([a, b]), None, "b is still unavailable");
        assert_eq!(index.ids().len(), 2, "unavailable guilds are listed too");
        let last = index.created(b, 7, std::iter::empty());
        assert!(!last.is_new);
        let mut all = last.complete.expect("complete");
        all.sort();
        assert_eq!(all, vec![1, 2]);
        assert_eq!(index.members(), 12);
        // A guild joined later is new, and the list is not announced twice.
        let joined = index.created(GuildId::new(3), 1, std::iter::empty());
        assert!(joined.is_new && joined.complete.is_none());
        // An outage keeps the guild listed; a removal does not.
        index.guild_delete(a, true);
        index.guild_delete(b, false);
        let mut ids: Vec<u64> = index.ids().iter().map(|g| g.get()).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(index.members(), 1);
        // A new session's READY drops guilds left while away.
        index.new_session();
        assert_eq!(index.ready([GuildId::new(3)]), None);
        assert_eq!(index.ids(), vec![GuildId::new(3)]);
    }
}
