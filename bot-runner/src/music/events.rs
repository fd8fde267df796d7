//! songbird's events, handed back to the music service on a task of their own: songbird
//! runs handlers one after another, and ours wait on a guild's lock.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use backon::Retryable as _;
use serenity::all::{ChannelId, GuildId};
use songbird::events::context_data::{DisconnectKind, DisconnectReason};
use songbird::tracks::PlayMode;
use songbird::{Event, EventContext, EventHandler};
use tracing::{info, warn};

use super::MusicService;

#[derive(Clone)]
pub(super) struct TrackEnd {
    pub music: Weak<MusicService>,
    pub guild: GuildId,
    pub track: u64,
}

#[serenity::async_trait]
impl EventHandler for TrackEnd {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let failure = match ctx {
            EventContext::Track(states) => states.iter().find_map(|(state, _)| match &state.playing {
                PlayMode::Errored(e) => Some(e.to_string()),
                _ => None,
            }),
            _ => None,
        };
        if let Some(music) = self.music.upgrade() {
            let (guild, track) = (self.guild, self.track);
            tokio::spawn(async move { music.track_finished(guild, track, failure).await });
        }
        None
    }
}

/// Keeps the music service's count of connected drivers: connect and reconnect mark the
/// guild up, any disconnect (failed connect, failed reconnect, a dropped session, a leave)
/// down. Runs inline, so the events of one call are applied in the order songbird sent them.
#[derive(Clone)]
pub(super) struct DriverState {
    pub music: Weak<MusicService>,
    pub guild: GuildId,
    /// The call this handler is on: events of a call already replaced (left, then joined
    /// again) must not touch the new call's state.
    pub call: Weak<tokio::sync::Mutex<songbird::Call>>,
}

#[serenity::async_trait]
impl EventHandler for DriverState {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let music = self.music.upgrade()?;
        let current = music.songbird.get(self.guild)?;
        if !std::ptr::eq(Arc::as_ptr(&current), self.call.as_ptr()) {
            return None;
        }
        match ctx {
            EventContext::DriverConnect(c) | EventContext::DriverReconnect(c) => {
                music.set_connected(self.guild, true);
                music.watchdog.connected(self.guild, c.ssrc, Instant::now());
            }
            EventContext::DriverDisconnect(d) => {
                info!(guild = %self.guild, kind = ?d.kind, reason = ?d.reason, "voice driver disconnected");
                music.set_connected(self.guild, false);
            }
            _ => {}
        }
        None
    }
}

/// Hands the voice server's RTCP reports on the bot's audio to the watchdog. Runs inline:
/// it only takes a lock to note a number.
pub(super) struct Reports {
    pub music: Weak<MusicService>,
    pub guild: GuildId,
}

#[serenity::async_trait]
impl EventHandler for Reports {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let EventContext::RtcpPacket(data) = ctx else { return None };
        let music = self.music.upgrade()?;
        let blocks = super::watchdog::report_blocks(&data.packet, data.payload_offset, data.payload_end_pad);
        for (ssrc, highest) in blocks {
            music.watchdog.reported(self.guild, ssrc, highest, Instant::now());
        }
        None
    }
}

/// Seconds between the five tries to rejoin: a voice server that restarts is back within
/// seconds, and one that does not is not worth a listener's wait.
const REJOIN_DELAYS: [u64; 4] = [1, 2, 3, 4];

/// Why a rejoin ended without a call.
enum Rejoined {
    /// The bot left meanwhile: nothing to rejoin.
    NotWanted,
    Failed,
}

/// Brings the bot back after songbird gave up on a voice connection it did not end itself
/// (the voice server went away, the socket died): the queue plays on once it is back.
pub(super) struct Rejoin {
    pub music: Weak<MusicService>,
    pub guild: GuildId,
}

#[serenity::async_trait]
impl EventHandler for Rejoin {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        let EventContext::DriverDisconnect(data) = ctx else { return None };
        // A failed first connect is the joiner's to report (and it removes the call); so is
        // a failed attempt of this handler's own rejoin.
        if matches!(data.kind, DisconnectKind::Connect) {
            return None;
        }
        let reason = data.reason?;
        if matches!(reason, DisconnectReason::Requested) {
            return None;
        }
        let music = self.music.upgrade()?;
        let (guild, channel) = (self.guild, ChannelId::new(data.channel_id.0.get()));
        warn!(%guild, %channel, ?reason, "voice connection lost; rejoining");
        tokio::spawn(async move {
            let mut attempts = 0u32;
            let rejoin = || {
                attempts += 1;
                let (music, attempt) = (music.clone(), attempts);
                async move {
                    // A player that is gone means we left on purpose meanwhile.
                    if music.existing_player(guild).is_none() {
                        return Err(Rejoined::NotWanted);
                    }
                    match music.songbird.join(guild, channel).await {
                        Ok(_) => {
                            info!(%guild, attempt, "voice rejoined");
                            Ok(())
                        }
                        Err(e) => {
                            warn!(%guild, attempt, error = %e, "rejoining voice failed");
                            Err(Rejoined::Failed)
                        }
                    }
                }
            };
            let result = rejoin
                .retry(REJOIN_DELAYS.map(Duration::from_secs).into_iter())
                .when(|e| matches!(e, Rejoined::Failed))
                .await;
            if let Err(Rejoined::Failed) = result {
                // Given up: no call may stay behind looking joined.
                music.leave(guild, "voice connection lost").await;
            }
        });
        None
    }
}
