//! The music of a bot, kept across restarts. Every second (and once more at shutdown, before
//! the bot leaves voice) each guild's playback is written to a file: voice channel, the
//! track and where in it, the queue, loop mode, volume. The next process for the same bot
//! reads the file and, as each guild's GUILD_CREATE comes in, joins the same channel and
//! plays on from there, saying so once in the track's text channel.
//!
//! The file lives where the operator mounts the bot's own volume (a claim per shard: see
//! docs/architecture.md), so a replaced pod finds it and nothing else does; fleet mode and
//! plain processes name a directory with `--session-dir`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serenity::all::{ChannelId, GuildId};
use tracing::{Instrument as _, info, warn};

use super::MusicService;
use super::queue::{LoopMode, Track};
use super::source::format_duration;
use crate::i18n::Say;

/// Written once a second while anything plays: the most a kill can lose.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// A track whose end is this near gets the next one readied.
const PRELOAD_AHEAD: Duration = Duration::from_secs(10);

/// What a bot was playing, as the file holds it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// Milliseconds since the Unix epoch.
    pub saved_at_ms: u64,
    pub guilds: Vec<SavedGuild>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavedGuild {
    pub guild: u64,
    pub voice_channel: u64,
    pub volume: u16,
    pub paused: bool,
    pub loop_mode: LoopMode,
    /// Where in `current` playback was.
    pub position_ms: u64,
    pub current: Track,
    pub upcoming: Vec<Track>,
    /// What played before `current`, oldest first (for `/previous`; absent in files of
    /// versions before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Track>,
}

/// The session file of one bot.
#[derive(Clone, Debug)]
pub struct SessionStore {
    file: PathBuf,
    max_age: Duration,
}

impl SessionStore {
    /// `dir/<client id>.json`: one file per bot, so the bots of a fleet share a directory.
    pub fn new(dir: &Path, client_id: u64, max_age: Duration) -> Self {
        Self { file: dir.join(format!("{client_id}.json")), max_age }
    }

    /// Where the bot's guild settings are kept: beside its session (`<client id>.settings.json`).
    pub fn settings_file(&self) -> PathBuf {
        self.file.with_extension("settings.json")
    }

    /// The saved session, if there is one young enough. A file that does not parse is
    /// reported and ignored: the bot starts silent, as it would without one.
    pub fn load(&self) -> Option<Saved> {
        let bytes = match std::fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(file = %self.file.display(), error = %e, "cannot read the saved session");
                return None;
            }
        };
        let saved: Saved = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                warn!(file = %self.file.display(), error = %e, "the saved session does not parse; starting without it");
                return None;
            }
        };
        let age = Duration::from_millis(now_ms().saturating_sub(saved.saved_at_ms));
        if age > self.max_age {
            info!(age_s = age.as_secs(), max_age_s = self.max_age.as_secs(), "the saved session is too old; dropped");
            return None;
        }
        Some(saved)
    }

    /// Replaces the file whole (written aside, then renamed), so a kill mid-write leaves the
    /// last complete session.
    pub fn save(&self, saved: &Saved) -> std::io::Result<()> {
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(saved)?)?;
        std::fs::rename(&tmp, &self.file)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl MusicService {
    /// Every guild playing something, as it is now.
    pub async fn snapshot(&self) -> Saved {
        let mut guilds = Vec::new();
        for guild in self.guilds_with_players() {
            guilds.extend(self.saved_guild(guild).await);
        }
        Saved { saved_at_ms: now_ms(), guilds }
    }

    /// What `guild` plays, as a session keeps it (`None` when nothing does).
    pub async fn saved_guild(&self, guild: GuildId) -> Option<SavedGuild> {
        let player = self.existing_player(guild)?;
        // The call's channel, connected or not: a kill during a voice reconnect must not
        // lose the guild.
        let call = self.songbird.get(guild)?;
        let channel = call.lock().await.current_channel()?;
        let p = player.lock().await;
        let current = p.queue.current().cloned()?;
        // A stalled mixer does not answer: the watchdog's last sight of the track then.
        let position = match self.position(&p).await {
            Some(at) => at,
            None => self.watchdog.last_position(guild, current.id).unwrap_or_default(),
        };
        Some(SavedGuild {
            guild: guild.get(),
            voice_channel: channel.0.get(),
            volume: p.volume,
            paused: p.paused,
            loop_mode: p.queue.loop_mode,
            position_ms: position.as_millis() as u64,
            current,
            upcoming: p.queue.upcoming().cloned().collect(),
            history: p.queue.history().cloned().collect(),
        })
    }

    /// Writes the session one last time and stops the keeper from writing again: what
    /// follows (leaving voice at shutdown) must not be saved as "nothing plays".
    pub async fn save_for_restart(&self) {
        let Some(store) = &self.session else { return };
        let saved = self.snapshot().await;
        self.session_closed.store(true, Ordering::Relaxed);
        match store.save(&saved) {
            Ok(()) => info!(guilds = saved.guilds.len(), "session saved for the next start"),
            Err(e) => warn!(error = %e, "cannot save the session"),
        }
    }

    /// Guilds the last process was playing in, to bring back once they are available.
    pub fn expect_restore(&self, saved: Saved) {
        let mut pending = self.restore.lock().expect("restore lock");
        pending.extend(saved.guilds.into_iter().map(|g| (GuildId::new(g.guild), g)));
    }

    /// The guild's saved playback, if it has one waiting (handed out once).
    pub fn take_restore(&self, guild: GuildId) -> Option<SavedGuild> {
        self.restore.lock().expect("restore lock").remove(&guild)
    }

    /// Joins the saved channel and plays the saved queue on from where it was.
    pub async fn restore(self: &Arc<Self>, saved: SavedGuild) {
        self.restore_as(saved, Why::Restart).await;
    }

    /// [`Self::restore`], saying why in the text channel. Whether the music plays again.
    #[tracing::instrument(name = "restore", skip_all, fields(guild = saved.guild, why = ?why))]
    pub(super) async fn restore_as(self: &Arc<Self>, saved: SavedGuild, why: Why) -> bool {
        let guild = GuildId::new(saved.guild);
        if let Err(reason) = self.join(guild, ChannelId::new(saved.voice_channel)).await {
            warn!(reason = %reason.in_language("en"), "could not bring the music back");
            return false;
        }
        let player = self.player(guild);
        let mut p = player.lock().await;
        if !p.queue.is_empty() {
            // Someone asked for music while the bot was joining: theirs wins.
            return true;
        }
        p.volume = saved.volume;
        p.queue.loop_mode = saved.loop_mode;
        let text_channel = saved.current.text_channel;
        let title = saved.current.title.clone();
        for mut track in std::iter::once(saved.current).chain(saved.upcoming) {
            track.id = self.next_track_id();
            if p.queue.push(track).is_err() {
                break;
            }
        }
        p.queue.set_history(saved.history.into_iter().map(|t| Track { id: self.next_track_id(), ..t }));
        self.start_current(guild, &mut p).await;
        let at = Duration::from_millis(saved.position_ms);
        if let Some(h) = p.handle()
            && !at.is_zero()
        {
            // Applied by songbird once the source is ready; a source that cannot seek plays
            // from its start.
            let h = h.clone();
            tokio::spawn(
                async move {
                    match tokio::time::timeout(Duration::from_secs(15), seek_when_ready(&h, at)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(error = %e, "the saved position could not be sought; playing from the start")
                        }
                        Err(_) => warn!("seeking to the saved position took too long"),
                    }
                }
                .in_current_span(),
            );
        }
        if saved.paused {
            p.set_paused(true);
        }
        drop(p);
        let at_text = format_duration(at);
        let said = match why {
            Why::Restart => {
                self.metrics.sessions_restored.inc();
                info!(position_s = at.as_secs(), "session restored");
                Say::new("announce.back")
            }
            Why::Stalled => Say::new("announce.rejoined"),
        };
        self.announce(guild, text_channel, said.with("title", title).with("at", at_text)).await;
        true
    }
}

/// Why the music is brought back.
#[derive(Clone, Copy, Debug)]
pub enum Why {
    /// The process started again.
    Restart,
    /// The watchdog found the track stalled and left and rejoined.
    Stalled,
}

/// Seeks once the track is ready. songbird readies a new track itself, and a seek sent
/// meanwhile can be dropped as "replaced" by that: it is sent again, a few times.
async fn seek_when_ready(
    h: &songbird::tracks::TrackHandle,
    at: Duration,
) -> Result<(), songbird::tracks::ControlError> {
    let mut last = None;
    for _ in 0..3 {
        let _ = h.make_playable_async().await;
        match h.seek_async(at).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.expect("three tries"))
}

/// Once a second, for every guild: looks for a stalled track (see `super::watchdog`),
/// readies the next track as the current one nears its end, and writes the session (when
/// the bot has a store). Ends with the service.
pub async fn keep(music: std::sync::Weak<MusicService>) {
    let mut last: Option<Vec<SavedGuild>> = None;
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(music) = music.upgrade() else { return };
        music.watch().await;
        music.preload_due().await;
        let Some(store) = music.session.clone() else { continue };
        if music.session_closed.load(Ordering::Relaxed) {
            continue;
        }
        let saved = music.snapshot().await;
        // Written when something changed: an idle bot does not touch its disk.
        if last.as_ref() == Some(&saved.guilds) {
            continue;
        }
        let guilds = saved.guilds.clone();
        match tokio::task::spawn_blocking(move || store.save(&saved)).await {
            Ok(Ok(())) => last = Some(guilds),
            Ok(Err(e)) => warn!(error = %e, "cannot save the session"),
            Err(e) => warn!(error = %e, "saving the session panicked"),
        }
    }
}

impl MusicService {
    /// Readies the next track of every guild that is due for it.
    async fn preload_due(&self) {
        for guild in self.guilds_with_players() {
            let Some(player) = self.existing_player(guild) else { continue };
            let mut p = player.lock().await;
            self.preload_if_due(guild, &mut p).await;
        }
    }

    /// Readies the next track if the current one ends within [`PRELOAD_AHEAD`], or has no
    /// known length (then there is no "near its end" to wait for). Called again when the
    /// line behind the current track changes (moved, cleared, shuffled, removed from).
    pub async fn preload_if_due(&self, guild: GuildId, p: &mut super::Player) {
        let Some(current) = p.queue.current() else { return };
        if let Some(length) = current.duration {
            let Some(position) = self.position(p).await else { return };
            if length.saturating_sub(position) > PRELOAD_AHEAD {
                return;
            }
        }
        self.preload(guild, p).await;
    }
}

/// Pending restores by guild, for the service.
pub type Pending = std::sync::Mutex<HashMap<GuildId, SavedGuild>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::source::Source;

    fn track(n: u64) -> Track {
        Track {
            id: n,
            title: format!("t{n}"),
            source: Source::Http(format!("https://example.org/{n}.mp3")),
            duration: Some(Duration::from_secs(60)),
            requested_by: 7,
            text_channel: 9,
        }
    }

    fn saved(at_ms: u64) -> Saved {
        Saved {
            saved_at_ms: at_ms,
            guilds: vec![SavedGuild {
                guild: 1,
                voice_channel: 2,
                volume: 80,
                paused: false,
                loop_mode: LoopMode::Queue,
                position_ms: 12_345,
                current: track(1),
                upcoming: vec![track(2)],
                history: vec![track(0)],
            }],
        }
    }

    #[test]
    fn a_saved_session_reads_back_without_track_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path(), 42, Duration::from_secs(60));
        assert_eq!(store.load(), None, "nothing saved yet");
        let s = saved(now_ms());
        store.save(&s).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.guilds[0].position_ms, 12_345);
        assert_eq!(back.guilds[0].loop_mode, LoopMode::Queue);
        assert_eq!(back.guilds[0].current.id, 0, "ids are the process's own, given again on restore");
        assert_eq!(back.guilds[0].upcoming[0].title, "t2");
        assert_eq!(back.guilds[0].history[0].title, "t0");
        assert!(dir.path().join("42.json").exists());
        // A file from before the history was kept reads with none.
        let mut old = serde_json::to_value(&s).unwrap();
        old["guilds"][0].as_object_mut().unwrap().remove("history");
        let old: Saved = serde_json::from_value(old).unwrap();
        assert!(old.guilds[0].history.is_empty());
    }

    #[test]
    fn an_old_or_broken_session_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path(), 42, Duration::from_secs(60));
        store.save(&saved(now_ms() - 61_000)).unwrap();
        assert_eq!(store.load(), None, "older than the maximum age");
        std::fs::write(dir.path().join("42.json"), b"{not json").unwrap();
        assert_eq!(store.load(), None);
    }
}
