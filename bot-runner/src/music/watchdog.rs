//! The voice watchdog. A track songbird says is playing whose position has not moved for
//! [`STALL_AFTER`] is stalled: a source that stopped sending (songbird's mixer then waits
//! on it, and the whole call goes quiet), or a mixer or voice session that stopped. The
//! bot leaves the channel and joins it again on a new call, and plays the queue on from
//! where it was, as after a restart. A guild that stalls [`GIVE_UP_AFTER`] times in a row,
//! without a minute of music between, makes the bot report itself unhealthy: the kubelet
//! then restarts it, and the saved session brings the music back.
//!
//! What it cannot see: audio that songbird sends and the network drops. songbird reads
//! nothing back from the voice server's UDP socket (without its `receive` feature it does
//! not even listen), so a path that silently drops packets looks to the bot like one that
//! delivers them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serenity::all::GuildId;
use songbird::tracks::ReadyState;
use tracing::{info, warn};

use super::MusicService;

/// A position this long unchanged while playing is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(5);
/// Stalls in a row after which the bot asks to be restarted.
pub const GIVE_UP_AFTER: u32 = 3;
/// Tries to join again after leaving a stalled call.
const REJOIN_TRIES: u32 = 3;
/// Music this long without a stall clears a guild's count.
const HEALED_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Watchdog {
    guilds: Mutex<HashMap<GuildId, Watch>>,
    /// Why the bot should be restarted, once a guild kept stalling.
    unhealthy: Mutex<Option<String>>,
}

struct Watch {
    track: u64,
    position: Duration,
    /// Since when the position has not moved.
    still_since: Instant,
    /// Stalls in a row, and when the last one was healed.
    stalls: u32,
    healed_at: Option<Instant>,
    /// A rejoin is bringing the track back (under a new id): the count goes on with it.
    rejoining: bool,
}

/// What one look at a guild found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    Stalled { in_a_row: u32 },
}

impl Watchdog {
    /// Records where `guild`'s track `track` is (`None`: songbird did not answer in time,
    /// which is a stall too) and says whether it is stalled.
    pub fn observe(&self, guild: GuildId, track: u64, position: Option<Duration>, now: Instant) -> Verdict {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        let w = guilds.entry(guild).or_insert(Watch {
            track,
            position: position.unwrap_or_default(),
            still_since: now,
            stalls: 0,
            healed_at: None,
            rejoining: false,
        });
        if w.healed_at.is_some_and(|t| now.duration_since(t) >= HEALED_AFTER) {
            w.stalls = 0;
            w.healed_at = None;
        }
        if w.track != track && !std::mem::take(&mut w.rejoining) {
            // Another track (skipped to, or asked for after a stop): a new count.
            w.stalls = 0;
            w.healed_at = None;
        }
        let moved = position.is_some_and(|p| p != w.position) || w.track != track;
        if moved {
            w.track = track;
            w.position = position.unwrap_or_default();
            w.still_since = now;
            return Verdict::Fine;
        }
        if now.duration_since(w.still_since) < STALL_AFTER {
            return Verdict::Fine;
        }
        w.stalls += 1;
        w.still_since = now;
        w.healed_at = Some(now);
        Verdict::Stalled { in_a_row: w.stalls }
    }

    /// The last position seen of `guild`'s track, for a session saved while it is stalled.
    pub fn last_position(&self, guild: GuildId, track: u64) -> Option<Duration> {
        let guilds = self.guilds.lock().expect("watchdog lock");
        guilds.get(&guild).filter(|w| w.track == track).map(|w| w.position)
    }

    /// Forgets `guild` (stopped, paused, left): its next stall starts a new count.
    pub fn forget(&self, guild: GuildId) {
        self.guilds.lock().expect("watchdog lock").remove(&guild);
    }

    /// Takes `guild`'s watch away, to put back with [`Watchdog::put_back`] after a rejoin
    /// (which leaves the channel, which forgets it).
    fn take(&self, guild: GuildId) -> Option<Watch> {
        self.guilds.lock().expect("watchdog lock").remove(&guild)
    }

    fn put_back(&self, guild: GuildId, watch: Option<Watch>) {
        if let Some(mut w) = watch {
            w.rejoining = true;
            self.guilds.lock().expect("watchdog lock").insert(guild, w);
        }
    }

    pub fn give_up(&self, why: String) {
        *self.unhealthy.lock().expect("watchdog lock") = Some(why);
    }

    /// Why the bot wants a restart, if it does.
    pub fn unhealthy(&self) -> Option<String> {
        self.unhealthy.lock().expect("watchdog lock").clone()
    }
}

impl MusicService {
    /// Looks at every guild that should be playing; heals the stalled ones.
    pub(super) async fn watch(self: &Arc<Self>) {
        for guild in self.guilds_with_players() {
            let Some(player) = self.existing_player(guild) else { continue };
            let (track, position) = {
                let p = player.lock().await;
                let track = p.queue.current().map(|t| t.id);
                let Some(track) = track.filter(|_| p.is_playing()) else {
                    // Stopped or paused: the next stall starts a new count.
                    self.watchdog.forget(guild);
                    continue;
                };
                // Joining (or rejoining after a stall: the count goes on) is not stalling.
                if !self.is_connected(guild) {
                    continue;
                }
                match self.track_state(&p).await {
                    // Still being fetched and probed: not playing yet.
                    Some(s) if s.ready != ReadyState::Playable => continue,
                    state => (track, state.map(|s| s.position)),
                }
            };
            if let Verdict::Stalled { in_a_row } = self.watchdog.observe(guild, track, position, Instant::now()) {
                self.metrics.voice_stalls.inc();
                if in_a_row >= GIVE_UP_AFTER {
                    let why = format!("the music stalled {in_a_row} times in a row in guild {guild}");
                    warn!(%guild, in_a_row, "voice keeps stalling; asking to be restarted");
                    self.watchdog.give_up(why);
                }
                let music = self.clone();
                tokio::spawn(async move { music.heal(guild).await });
            }
        }
    }

    /// Leaves and joins again on a new call, playing on from the last position seen.
    async fn heal(self: &Arc<Self>, guild: GuildId) {
        let Some(saved) = self.saved_guild(guild).await else { return };
        warn!(%guild, position_s = saved.position_ms / 1000, "the music stalled; rejoining");
        let watch = self.watchdog.take(guild);
        self.leave(guild, "the music stalled").await;
        self.watchdog.put_back(guild, watch);
        // The gateway's answer to the leave can cancel a join sent right behind it.
        for attempt in 1..=REJOIN_TRIES {
            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
            if self.restore_as(saved.clone(), super::session::Why::Stalled).await {
                info!(%guild, attempt, "rejoined after a stall");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GuildId = GuildId::new(1);

    #[test]
    fn a_position_that_stops_moving_is_a_stall_and_repeats_are_counted() {
        let w = Watchdog::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(1)), at(0)), Verdict::Fine);
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(1)), Verdict::Fine, "moving");
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(5)), Verdict::Fine, "still, but not long");
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(6)), Verdict::Stalled { in_a_row: 1 });
        // No answer from songbird counts as not moving.
        assert_eq!(w.observe(G, 1, None, at(11)), Verdict::Stalled { in_a_row: 2 });
        assert_eq!(w.last_position(G, 1), Some(Duration::from_secs(2)));
        // The track a rejoin brings back (a new id) goes on counting...
        let watch = w.take(G);
        w.put_back(G, watch);
        assert_eq!(w.observe(G, 2, Some(Duration::ZERO), at(12)), Verdict::Fine);
        assert_eq!(w.observe(G, 2, Some(Duration::ZERO), at(17)), Verdict::Stalled { in_a_row: 3 });
        // ...another track starts a new count, and so does a minute of music.
        assert_eq!(w.observe(G, 3, Some(Duration::ZERO), at(18)), Verdict::Fine);
        assert_eq!(w.observe(G, 3, Some(Duration::ZERO), at(23)), Verdict::Stalled { in_a_row: 1 });
        assert_eq!(w.observe(G, 3, Some(Duration::from_secs(70)), at(90)), Verdict::Fine);
        assert_eq!(w.observe(G, 3, Some(Duration::from_secs(70)), at(95)), Verdict::Stalled { in_a_row: 1 });
    }
}
