//! The voice watchdog. A track songbird says is playing whose position has not moved for
//! [`STALL_AFTER`] is stalled: a source that stopped sending (songbird's mixer then waits
//! on it, and the whole call goes quiet), or a mixer or voice session that stopped. So is
//! one the voice server has not heard for as long: a server that sends RTCP receiver
//! reports (the simulator does, one a second) says how far the bot's packets got, and a
//! highest sequence number that stops rising while the bot sends means the path drops
//! them (a NAT that forgot the binding, a server that forgot the session). The bot leaves
//! the channel and joins it again on a new call, and plays the queue on from where it was
//! (for an unheard call, from where listeners stopped hearing), as after a restart. A guild
//! that stalls [`GIVE_UP_AFTER`] times in a row, without a minute of music between, makes
//! the bot report itself unhealthy: the kubelet then restarts it, and the saved session
//! brings the music back.
//!
//! A voice server that never sends reports is never taken for deaf: the watch on what it
//! hears starts with its first report, and goes on across the watchdog's own rejoins.

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
    guilds: Mutex<Guilds>,
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

impl Watch {
    fn stalled(&mut self, now: Instant, unheard: Duration) -> Verdict {
        self.stalls += 1;
        self.still_since = now;
        self.healed_at = Some(now);
        Verdict::Stalled { in_a_row: self.stalls, unheard }
    }
}

/// What the voice server's reports say it heard of a guild's call.
struct Hearing {
    /// The call's SSRC, from its connect event: reports on another are of an old call.
    ssrc: Option<u32>,
    /// The highest sequence number the server reported receiving on this call.
    highest: Option<u32>,
    /// When the server last reported more of the audio, or when audio was last not due.
    advanced_at: Instant,
    /// The server reports on this guild's calls: from now on their silence counts.
    armed: bool,
}

#[derive(Default)]
struct Guilds {
    watches: HashMap<GuildId, Watch>,
    hearing: HashMap<GuildId, Hearing>,
}

impl Guilds {
    /// No audio is due from `guild` now: its reports' silence starts counting afresh.
    fn excuse(&mut self, guild: GuildId) {
        if let Some(h) = self.hearing.get_mut(&guild) {
            h.advanced_at = Instant::now();
        }
    }
}

/// What one look at a guild found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// `unheard`: how long listeners have heard nothing although the track moved on (zero
    /// for a track that stopped moving): the music resumes that far back.
    Stalled {
        in_a_row: u32,
        unheard: Duration,
    },
}

/// The report blocks `(source SSRC, extended highest sequence number)` of an RTCP sender
/// or receiver report, as songbird hands it over decrypted: the body from `payload_offset`
/// (counted from the packet's start, its 8-byte header included, whatever songbird's doc
/// says) to `payload_end_pad` before the end. Nothing for other packets, or for a packet
/// too short for what its header claims.
pub fn report_blocks(packet: &[u8], payload_offset: usize, payload_end_pad: usize) -> Vec<(u32, u32)> {
    const SENDER_INFO: usize = 20;
    const BLOCK: usize = 24;
    let (Some(&first), Some(&kind)) = (packet.first(), packet.get(1)) else { return Vec::new() };
    let skip = match kind {
        200 => SENDER_INFO,
        201 => 0,
        _ => return Vec::new(),
    };
    let end = packet.len().saturating_sub(payload_end_pad);
    let Some(body) = packet.get(payload_offset + skip..end) else { return Vec::new() };
    let count = usize::from(first & 0x1F);
    body.chunks_exact(BLOCK)
        .take(count)
        .map(|b| {
            let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            (word(0), word(8))
        })
        .collect()
}

impl Watchdog {
    /// Records where `guild`'s track `track` is (`None`: songbird did not answer in time,
    /// which is a stall too) and says whether it is stalled.
    pub fn observe(&self, guild: GuildId, track: u64, position: Option<Duration>, now: Instant) -> Verdict {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        let Guilds { watches, hearing } = &mut *guilds;
        let w = watches.entry(guild).or_insert(Watch {
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
        let unheard = hearing
            .get_mut(&guild)
            .filter(|h| h.armed && h.ssrc.is_some())
            .map(|h| (now.duration_since(h.advanced_at), h))
            .filter(|(unheard, _)| *unheard >= STALL_AFTER);
        if let Some((unheard, h)) = unheard {
            // Its next call gets a fresh start.
            h.advanced_at = now;
            w.position = position.unwrap_or(w.position).saturating_sub(unheard);
            w.track = track;
            return w.stalled(now, unheard);
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
        w.stalled(now, Duration::ZERO)
    }

    /// A call of `guild` connected with `ssrc`: its audio is due from now on.
    pub fn connected(&self, guild: GuildId, ssrc: u32, now: Instant) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        let h = guilds.hearing.entry(guild).or_insert(Hearing {
            ssrc: None,
            highest: None,
            advanced_at: now,
            armed: false,
        });
        (h.ssrc, h.highest, h.advanced_at) = (Some(ssrc), None, now);
    }

    /// The voice server reported receiving `guild`'s packets up to `highest` on `ssrc`.
    pub fn reported(&self, guild: GuildId, ssrc: u32, highest: u32, now: Instant) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        let Some(h) = guilds.hearing.get_mut(&guild).filter(|h| h.ssrc == Some(ssrc)) else { return };
        if h.highest.is_none_or(|seen| highest > seen) {
            (h.highest, h.advanced_at, h.armed) = (Some(highest), now, true);
        }
    }

    /// The last position seen of `guild`'s track, for a session saved while it is stalled.
    pub fn last_position(&self, guild: GuildId, track: u64) -> Option<Duration> {
        let guilds = self.guilds.lock().expect("watchdog lock");
        guilds.watches.get(&guild).filter(|w| w.track == track).map(|w| w.position)
    }

    /// Stops watching `guild` for now (stopped, paused, joining, loading): no audio is due,
    /// and its next stall starts a new count.
    pub fn forget(&self, guild: GuildId) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        guilds.watches.remove(&guild);
        guilds.excuse(guild);
    }

    /// No audio is due from `guild` right now (joining, or its track still loading).
    pub fn excuse(&self, guild: GuildId) {
        self.guilds.lock().expect("watchdog lock").excuse(guild);
    }

    /// The bot left `guild`'s voice: everything about it goes.
    pub fn left(&self, guild: GuildId) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        guilds.watches.remove(&guild);
        guilds.hearing.remove(&guild);
    }

    /// Takes `guild`'s watch away, to put back with [`Watchdog::put_back`] after a rejoin
    /// (which leaves the channel, which forgets it).
    fn take(&self, guild: GuildId) -> (Option<Watch>, Option<Hearing>) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        (guilds.watches.remove(&guild), guilds.hearing.remove(&guild))
    }

    fn put_back(&self, guild: GuildId, (watch, hearing): (Option<Watch>, Option<Hearing>)) {
        let mut guilds = self.guilds.lock().expect("watchdog lock");
        if let Some(mut w) = watch {
            w.rejoining = true;
            guilds.watches.insert(guild, w);
        }
        if let Some(h) = hearing {
            // Armed as it was; the new call's connect gives it its SSRC.
            guilds.hearing.insert(guild, Hearing { ssrc: None, highest: None, advanced_at: Instant::now(), ..h });
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
                    self.watchdog.excuse(guild);
                    continue;
                }
                match self.track_state(&p).await {
                    // Still being fetched and probed: not playing yet.
                    Some(s) if s.ready != ReadyState::Playable => {
                        self.watchdog.excuse(guild);
                        continue;
                    }
                    state => (track, state.map(|s| s.position)),
                }
            };
            if let Verdict::Stalled { in_a_row, unheard } =
                self.watchdog.observe(guild, track, position, Instant::now())
            {
                self.metrics.voice_stalls.inc();
                if in_a_row >= GIVE_UP_AFTER {
                    let why = format!("the music stalled {in_a_row} times in a row in guild {guild}");
                    warn!(%guild, in_a_row, "voice keeps stalling; asking to be restarted");
                    self.watchdog.give_up(why);
                }
                let music = self.clone();
                tokio::spawn(async move { music.heal(guild, unheard).await });
            }
        }
    }

    /// Leaves and joins again on a new call, playing on from the last position seen, or
    /// `unheard` before the position now (what listeners heard last).
    async fn heal(self: &Arc<Self>, guild: GuildId, unheard: Duration) {
        let Some(mut saved) = self.saved_guild(guild).await else { return };
        saved.position_ms = saved.position_ms.saturating_sub(unheard.as_millis() as u64);
        let why = if unheard.is_zero() { "the music stalled" } else { "the voice server hears nothing" };
        warn!(%guild, position_s = saved.position_ms / 1000, why, "rejoining");
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

    fn stalled(in_a_row: u32) -> Verdict {
        Verdict::Stalled { in_a_row, unheard: Duration::ZERO }
    }

    #[test]
    fn a_position_that_stops_moving_is_a_stall_and_repeats_are_counted() {
        let w = Watchdog::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(1)), at(0)), Verdict::Fine);
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(1)), Verdict::Fine, "moving");
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(5)), Verdict::Fine, "still, but not long");
        assert_eq!(w.observe(G, 1, Some(Duration::from_secs(2)), at(6)), stalled(1));
        // No answer from songbird counts as not moving.
        assert_eq!(w.observe(G, 1, None, at(11)), stalled(2));
        assert_eq!(w.last_position(G, 1), Some(Duration::from_secs(2)));
        // The track a rejoin brings back (a new id) goes on counting...
        let watch = w.take(G);
        w.put_back(G, watch);
        assert_eq!(w.observe(G, 2, Some(Duration::ZERO), at(12)), Verdict::Fine);
        assert_eq!(w.observe(G, 2, Some(Duration::ZERO), at(17)), stalled(3));
        // ...another track starts a new count, and so does a minute of music.
        assert_eq!(w.observe(G, 3, Some(Duration::ZERO), at(18)), Verdict::Fine);
        assert_eq!(w.observe(G, 3, Some(Duration::ZERO), at(23)), stalled(1));
        assert_eq!(w.observe(G, 3, Some(Duration::from_secs(70)), at(90)), Verdict::Fine);
        assert_eq!(w.observe(G, 3, Some(Duration::from_secs(70)), at(95)), stalled(1));
    }

    #[test]
    fn a_call_the_server_stops_hearing_is_a_stall_from_where_listeners_stopped() {
        let w = Watchdog::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let pos = |s: u64| Some(Duration::from_secs(s));
        // No reports yet: never deaf, however long.
        w.connected(G, 7, at(0));
        assert_eq!(w.observe(G, 1, pos(1), at(1_000)), Verdict::Fine);
        assert_eq!(w.observe(G, 1, pos(9), at(9_000)), Verdict::Fine, "a server that sends no reports");
        // Reports of another call's SSRC, or that do not advance, do not count as heard.
        w.reported(G, 7, 100, at(9_000));
        w.reported(G, 8, 900, at(12_000));
        w.reported(G, 7, 100, at(13_000));
        assert_eq!(w.observe(G, 1, pos(13), at(13_000)), Verdict::Fine, "four seconds unheard");
        assert_eq!(
            w.observe(G, 1, pos(15), at(15_000)),
            Verdict::Stalled { in_a_row: 1, unheard: Duration::from_secs(6) }
        );
        assert_eq!(w.last_position(G, 1), pos(9), "where the listeners stopped hearing");
        // The rejoin's call is watched from its own connect on; reports advancing are heard.
        let watch = w.take(G);
        w.put_back(G, watch);
        w.connected(G, 9, at(16_000));
        w.reported(G, 9, 3, at(17_000));
        w.reported(G, 9, 60, at(18_000));
        assert_eq!(w.observe(G, 2, pos(10), at(22_000)), Verdict::Fine);
        assert_eq!(
            w.observe(G, 2, pos(14), at(23_500)),
            Verdict::Stalled { in_a_row: 2, unheard: Duration::from_millis(5_500) },
            "still armed, the count going on"
        );
        // Leaving forgets that the server reports at all.
        w.left(G);
        w.connected(G, 10, at(30_000));
        assert_eq!(w.observe(G, 3, pos(1), at(40_000)), Verdict::Fine);
    }

    #[test]
    fn report_blocks_are_read_from_receiver_and_sender_reports_only() {
        let block =
            |ssrc: u32, highest: u32| [&ssrc.to_be_bytes()[..], &[0; 4], &highest.to_be_bytes(), &[0; 12]].concat();
        let header = |kind: u8, count: u8| vec![0x80 | count, kind, 0, 0, 0, 0, 0, 1];
        let rr = [header(201, 2), block(5, 70), block(6, 80), vec![0xAA; 20]].concat();
        assert_eq!(report_blocks(&rr, 8, 20), vec![(5, 70), (6, 80)]);
        let sr = [header(200, 1), vec![0; 20], block(5, 71)].concat();
        assert_eq!(report_blocks(&sr, 8, 0), vec![(5, 71)]);
        assert!(report_blocks(&[header(202, 1), block(5, 1)].concat(), 8, 0).is_empty(), "SDES");
        assert!(report_blocks(&header(201, 3)[..5], 8, 0).is_empty(), "too short");
        assert!(report_blocks(&[0x81], 8, 40).is_empty());
        assert_eq!(report_blocks(&[header(201, 1), block(5, 9)].concat(), 8, 50), vec![], "padding past the end");
    }
}
