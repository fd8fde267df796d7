//! Music for one bot: a player per guild (queue + the songbird track playing now), joined
//! to songbird's voice calls. Commands and songbird's events both go through here.

mod events;
pub mod guard;
pub mod idle;
pub mod listing;
pub mod panel;
pub mod player;
pub mod proxy;
pub mod queue;
pub mod services;
pub mod session;
pub mod source;
pub mod watchdog;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serenity::all::{ChannelId, GuildId, Http};
use songbird::error::JoinError;
use songbird::{CoreEvent, Event, Songbird};
use tracing::{info, warn};

use crate::guilds::GuildIndex;
use crate::i18n::Say;
use crate::metrics::BotMetrics;
use crate::settings::GuildSettingsStore;
pub use player::Player;
pub use queue::Track;
pub use session::SessionStore;
pub use source::Sources;

#[derive(Clone, Debug)]
pub struct MusicSettings {
    pub default_volume: u16,
    pub max_queue_length: usize,
    /// `None`: never leave for idleness (idle leave 0, or stay-in-channel).
    pub idle_leave: Option<Duration>,
}

pub struct MusicService {
    pub songbird: Arc<Songbird>,
    pub http: Arc<Http>,
    pub guilds: Arc<GuildIndex>,
    pub sources: Sources,
    pub settings: MusicSettings,
    pub metrics: Arc<BotMetrics>,
    players: Mutex<HashMap<GuildId, Arc<tokio::sync::Mutex<Player>>>>,
    /// Guilds whose voice driver is connected, as songbird's connect and disconnect events
    /// say. songbird's call keeps its channel after the driver failed or while it is still
    /// connecting, so the call map cannot tell a working connection from a dead one.
    connected: Mutex<HashSet<GuildId>>,
    next_track_id: AtomicU64,
    /// Where the session is kept across restarts, if anywhere.
    session: Option<SessionStore>,
    /// Set once the session was saved for shutdown: nothing after it may overwrite it.
    session_closed: AtomicBool,
    /// Saved guilds waiting for their GUILD_CREATE to be brought back.
    restore: session::Pending,
    pub watchdog: watchdog::Watchdog,
    /// When the bot last left each guild's voice itself: the gateway's echo of that leave
    /// must not be taken for someone disconnecting the bot (it can come after a new join).
    own_leaves: Mutex<HashMap<GuildId, Instant>>,
    /// Hand-offs from the fleet are taken one guild at a time.
    handoff_turns: Mutex<HashMap<GuildId, Arc<tokio::sync::Mutex<()>>>>,
    /// What server managers set with `/settings`, kept beside the session.
    pub guild_settings: GuildSettingsStore,
    /// Each guild's now-playing message.
    panels: panel::Panels,
}

/// How long after leaving a voice state update with no channel is taken for its echo.
const OWN_LEAVE_ECHO: Duration = Duration::from_secs(5);

impl MusicService {
    pub fn new(
        songbird: Arc<Songbird>,
        http: Arc<Http>,
        guilds: Arc<GuildIndex>,
        sources: Sources,
        settings: MusicSettings,
        metrics: Arc<BotMetrics>,
        session: Option<SessionStore>,
    ) -> Arc<Self> {
        let guild_settings = GuildSettingsStore::open(session.as_ref().map(SessionStore::settings_file));
        Arc::new(Self {
            songbird,
            http,
            guilds,
            sources,
            settings,
            metrics,
            players: Mutex::new(HashMap::new()),
            connected: Mutex::new(HashSet::new()),
            next_track_id: AtomicU64::new(1),
            session,
            session_closed: AtomicBool::new(false),
            restore: Default::default(),
            watchdog: Default::default(),
            own_leaves: Mutex::new(HashMap::new()),
            handoff_turns: Mutex::new(HashMap::new()),
            guild_settings,
            panels: Default::default(),
        })
    }

    pub fn next_track_id(&self) -> u64 {
        self.next_track_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The guild's player, made on first use with the bot's default settings.
    pub fn player(&self, guild: GuildId) -> Arc<tokio::sync::Mutex<Player>> {
        let mut players = self.players.lock().expect("players lock");
        let new = || {
            let mut player = Player::new(&self.settings);
            if let Some(volume) = self.guild_settings.get(guild.get()).default_volume {
                player.volume = volume;
            }
            Arc::new(tokio::sync::Mutex::new(player))
        };
        players.entry(guild).or_insert_with(new).clone()
    }

    pub fn existing_player(&self, guild: GuildId) -> Option<Arc<tokio::sync::Mutex<Player>>> {
        self.players.lock().expect("players lock").get(&guild).cloned()
    }

    pub fn guilds_with_players(&self) -> Vec<GuildId> {
        self.players.lock().expect("players lock").keys().copied().collect()
    }

    /// The lock a hand-off of `guild` holds from the check that the bot is free to its join.
    pub fn handoff_turn(&self, guild: GuildId) -> Arc<tokio::sync::Mutex<()>> {
        self.handoff_turns.lock().expect("hand-off lock").entry(guild).or_default().clone()
    }

    /// Whether the bot has music for someone in `guild`: a track playing or queued. A bot
    /// in a channel with an empty queue may be taken elsewhere.
    pub async fn is_busy(&self, guild: GuildId) -> bool {
        match self.existing_player(guild) {
            Some(p) => !p.lock().await.queue.is_empty(),
            None => false,
        }
    }

    /// Tracks waiting across every guild, for the queue-length metric.
    pub async fn queued_tracks(&self) -> usize {
        let players: Vec<_> = self.players.lock().expect("players lock").values().cloned().collect();
        let mut n = 0;
        for p in players {
            n += p.lock().await.queue.len();
        }
        n
    }

    /// Voice connections that are up right now: drivers connected, not calls that exist.
    pub fn voice_connections(&self) -> usize {
        self.connected.lock().expect("connected lock").len()
    }

    /// Whether the guild's voice driver is connected (audio can reach listeners).
    pub fn is_connected(&self, guild: GuildId) -> bool {
        self.connected.lock().expect("connected lock").contains(&guild)
    }

    pub(crate) fn set_connected(&self, guild: GuildId, up: bool) {
        let mut connected = self.connected.lock().expect("connected lock");
        if up {
            connected.insert(guild);
        } else {
            connected.remove(&guild);
        }
    }

    /// Joins (or moves to) `channel`. The guild's call gets, once, the handlers that track
    /// its driver's state and rejoin after a lost connection. A join that fails leaves no
    /// call (and no player) behind, so the next `/play` starts from scratch instead of
    /// taking the dead call for a working one.
    pub async fn join(self: &Arc<Self>, guild: GuildId, channel: ChannelId) -> Result<(), Say> {
        let player = self.player(guild);
        let call = self.songbird.get_or_insert(guild);
        {
            let mut p = player.lock().await;
            if !p.events_on.as_ref().is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&call))) {
                let mut c = call.lock().await;
                let link = events::DriverState { music: Arc::downgrade(self), guild, call: Arc::downgrade(&call) };
                for e in [CoreEvent::DriverConnect, CoreEvent::DriverReconnect, CoreEvent::DriverDisconnect] {
                    c.add_global_event(Event::Core(e), link.clone());
                }
                c.add_global_event(
                    Event::Core(CoreEvent::DriverDisconnect),
                    events::Rejoin { music: Arc::downgrade(self), guild },
                );
                c.add_global_event(
                    Event::Core(CoreEvent::RtcpPacket),
                    events::Reports { music: Arc::downgrade(self), guild },
                );
                p.events_on = Some(Arc::downgrade(&call));
            }
        }
        // The player's lock is not held here: joining can take seconds of retries.
        match self.songbird.join(guild, channel).await {
            Ok(_) => {
                // The driver's connect result; its DriverConnect event says the same a moment later.
                self.set_connected(guild, true);
                player.lock().await.touch();
                Ok(())
            }
            Err(e) => {
                let why = join_failure(&e);
                warn!(%guild, %channel, error = %e, reason = %why.in_language("en"), "joining voice failed");
                self.leave(guild, "joining voice failed").await;
                let why = why.in_language(&self.language(guild));
                Err(Say::new("voice.cannot_join").with("channel", channel).with("why", why))
            }
        }
    }

    /// The voice channel the bot is in and connected to. A call whose driver is not
    /// connected (still joining, failed, reconnecting) does not count.
    pub async fn current_channel(&self, guild: GuildId) -> Option<ChannelId> {
        if !self.is_connected(guild) {
            return None;
        }
        let call = self.songbird.get(guild)?;
        let channel = call.lock().await.current_channel()?;
        Some(ChannelId::new(channel.0.get()))
    }

    /// Leaves voice and forgets the guild's queue.
    pub async fn leave(&self, guild: GuildId, why: &str) {
        self.watchdog.left(guild);
        let player = self.players.lock().expect("players lock").remove(&guild);
        if let Some(player) = player {
            player.lock().await.stop();
        }
        // Its buttons would act on nothing.
        if let Some((channel, message)) = self.panels.lock().await.remove(&guild) {
            let _ = channel.delete_message(&self.http, message).await;
        }
        self.set_connected(guild, false);
        if self.songbird.get(guild).is_some() {
            self.own_leaves.lock().expect("own leaves lock").insert(guild, Instant::now());
            if let Err(e) = self.songbird.remove(guild).await {
                warn!(%guild, error = %e, "leaving voice failed");
            }
            info!(%guild, why, "left voice");
        }
    }

    /// Whether a voice state update putting the bot in no channel is the echo of its own
    /// recent leave (handed out once).
    pub fn is_own_leave_echo(&self, guild: GuildId) -> bool {
        let left = self.own_leaves.lock().expect("own leaves lock").remove(&guild);
        left.is_some_and(|at| at.elapsed() < OWN_LEAVE_ECHO)
    }

    /// Leaves every voice channel, for shutdown.
    pub async fn leave_all(&self) {
        let guilds: Vec<GuildId> = self.songbird.iter().map(|(g, _)| GuildId::new(g.0.get())).collect();
        for g in guilds {
            self.leave(g, "shutting down").await;
        }
    }

    /// The language the bot speaks in `guild` outside replies: the server's setting, else
    /// its preferred locale.
    pub fn language(&self, guild: GuildId) -> String {
        let overridden = self.guild_settings.get(guild.get()).language;
        crate::i18n::language(overridden.as_deref(), None, self.guilds.locale(guild).as_deref()).to_string()
    }

    /// Says something in a text channel of `guild`, in its language; failures are logged,
    /// never fatal.
    pub async fn announce(&self, guild: GuildId, channel: u64, say: Say) {
        let text = say.in_language(&self.language(guild));
        if let Err(e) = ChannelId::new(channel).say(&self.http, text).await {
            warn!(channel, error = %e, "could not post to the text channel");
        }
    }
}

/// Why a voice join failed, in words a server admin can act on. songbird's error types
/// for the websocket are private, so the TLS cause is read from the error's debug form
/// (rustls names it `InvalidCertificate(UnknownIssuer)` and the like).
pub fn join_failure(e: &JoinError) -> Say {
    Say::new(match e {
        JoinError::TimedOut => "voice.timed_out",
        JoinError::Driver(_) if is_untrusted_certificate(&format!("{e:?}")) => "voice.untrusted",
        JoinError::Driver(_) => "voice.unreachable",
        _ => "voice.not_sent",
    })
}

fn is_untrusted_certificate(debug: &str) -> bool {
    ["InvalidCertificate", "UnknownIssuer", "NotValidForName", "BadSignature", "CertExpired"]
        .iter()
        .any(|needle| debug.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_are_named() {
        // What songbird's error looks like when rustls rejects the voice server's chain.
        let tls = "Driver(Ws(Ws(Tls(Rustls(InvalidCertificate(UnknownIssuer))))))";
        assert!(is_untrusted_certificate(tls));
        assert!(!is_untrusted_certificate("Driver(Ws(WsClosed(Some(CloseFrame { code: Library(4004) }))))"));
        assert!(!is_untrusted_certificate("Driver(TimedOut)"));
        assert!(join_failure(&JoinError::TimedOut).in_language("en").contains("in time"));
    }
}
