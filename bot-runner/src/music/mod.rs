//! Music for one bot: a player per guild (queue + the songbird track playing now), joined
//! to songbird's voice calls. Commands and songbird's events both go through here.

mod events;
pub mod idle;
pub mod player;
pub mod queue;
pub mod source;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::all::{Cache, ChannelId, GuildId, Http};
use songbird::{CoreEvent, Event, Songbird};
use tracing::{info, warn};

use crate::metrics::BotMetrics;
pub use player::Player;
pub use queue::{LoopMode, Track};
pub use source::{Source, Sources};

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
    pub cache: Arc<Cache>,
    pub sources: Sources,
    pub settings: MusicSettings,
    pub metrics: Arc<BotMetrics>,
    players: Mutex<HashMap<GuildId, Arc<tokio::sync::Mutex<Player>>>>,
    next_track_id: AtomicU64,
}

impl MusicService {
    pub fn new(
        songbird: Arc<Songbird>,
        http: Arc<Http>,
        cache: Arc<Cache>,
        sources: Sources,
        settings: MusicSettings,
        metrics: Arc<BotMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            songbird,
            http,
            cache,
            sources,
            settings,
            metrics,
            players: Mutex::new(HashMap::new()),
            next_track_id: AtomicU64::new(1),
        })
    }

    pub fn next_track_id(&self) -> u64 {
        self.next_track_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The guild's player, made on first use with the bot's default settings.
    pub fn player(&self, guild: GuildId) -> Arc<tokio::sync::Mutex<Player>> {
        let mut players = self.players.lock().expect("players lock");
        players.entry(guild).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Player::new(&self.settings)))).clone()
    }

    pub fn existing_player(&self, guild: GuildId) -> Option<Arc<tokio::sync::Mutex<Player>>> {
        self.players.lock().expect("players lock").get(&guild).cloned()
    }

    pub fn guilds_with_players(&self) -> Vec<GuildId> {
        self.players.lock().expect("players lock").keys().copied().collect()
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

    /// Voice connections that are up right now.
    pub async fn voice_connections(&self) -> usize {
        // Collected first: songbird's map must not stay locked across an await.
        let calls: Vec<_> = self.songbird.iter().map(|(_, call)| call).collect();
        let mut n = 0;
        for call in calls {
            n += usize::from(call.lock().await.current_connection().is_some());
        }
        n
    }

    /// Joins (or moves to) `channel`. The first join in a guild installs the handler that
    /// rejoins after a lost voice connection.
    pub async fn join(self: &Arc<Self>, guild: GuildId, channel: ChannelId) -> Result<(), String> {
        let player = self.player(guild);
        let call = self.songbird.join(guild, channel).await.map_err(|e| {
            warn!(%guild, %channel, error = %e, "joining voice failed");
            format!("I couldn't join that voice channel ({e}).")
        })?;
        let mut p = player.lock().await;
        if !p.events_installed {
            call.lock().await.add_global_event(
                Event::Core(CoreEvent::DriverDisconnect),
                events::Rejoin { music: Arc::downgrade(self), guild },
            );
            p.events_installed = true;
        }
        p.touch();
        Ok(())
    }

    /// The voice channel the bot is in, as songbird knows it.
    pub async fn current_channel(&self, guild: GuildId) -> Option<ChannelId> {
        let call = self.songbird.get(guild)?;
        let channel = call.lock().await.current_channel()?;
        Some(ChannelId::new(channel.0.get()))
    }

    /// Leaves voice and forgets the guild's queue.
    pub async fn leave(&self, guild: GuildId, why: &str) {
        let player = self.players.lock().expect("players lock").remove(&guild);
        if let Some(player) = player {
            player.lock().await.stop();
        }
        if self.songbird.get(guild).is_some() {
            if let Err(e) = self.songbird.remove(guild).await {
                warn!(%guild, error = %e, "leaving voice failed");
            }
            info!(%guild, why, "left voice");
        }
    }

    /// Leaves every voice channel, for shutdown.
    pub async fn leave_all(&self) {
        let guilds: Vec<GuildId> = self.songbird.iter().map(|(g, _)| GuildId::new(g.0.get())).collect();
        for g in guilds {
            self.leave(g, "shutting down").await;
        }
    }

    /// Says something in a text channel; failures are logged, never fatal.
    pub async fn announce(&self, channel: u64, text: impl Into<String>) {
        let text = text.into();
        if let Err(e) = ChannelId::new(channel).say(&self.http, text).await {
            warn!(channel, error = %e, "could not post to the text channel");
        }
    }
}
