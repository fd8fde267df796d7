//! One guild's playback: the queue, the songbird track playing now, volume and pause. The
//! queue decides what comes next; this starts and stops songbird tracks to match.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serenity::all::GuildId;
use songbird::tracks::{PlayMode, Track as SongbirdTrack, TrackHandle};
use songbird::{Event, TrackEvent};
use tracing::{info, warn};

use super::events::TrackEnd;
use super::listing::Entry;
use super::queue::{Ended, Queue, QueueError, Track};
use super::{MusicService, MusicSettings};
use crate::i18n::Say;

/// How long songbird's mixer gets to answer about a track.
const MIXER_ANSWER: Duration = Duration::from_millis(500);

pub struct Player {
    pub queue: Queue,
    /// Percent, 0–200.
    pub volume: u16,
    pub paused: bool,
    now: Option<(u64, TrackHandle)>,
    /// The track that plays next, already on the call, paused, and being readied (its
    /// source fetched and probed), so it starts the moment the current one ends.
    next: Option<(u64, TrackHandle)>,
    /// Since when nothing has been playing to anyone (`None`: busy).
    pub idle_since: Option<Instant>,
    /// The call our songbird event handlers are on; a new call (after a leave) needs its own.
    pub(super) events_on: Option<std::sync::Weak<tokio::sync::Mutex<songbird::Call>>>,
    /// Votes to skip the track with this id: who voted.
    skip_votes: (u64, std::collections::BTreeSet<u64>),
}

impl Player {
    pub fn new(settings: &MusicSettings) -> Self {
        Self {
            queue: Queue::new(settings.max_queue_length),
            volume: settings.default_volume,
            paused: false,
            now: None,
            next: None,
            idle_since: Some(Instant::now()),
            events_on: None,
            skip_votes: Default::default(),
        }
    }

    /// `user` votes to skip track `track`; returns the votes it has (a vote for an earlier
    /// track does not count, and a member votes once).
    pub fn vote_skip(&mut self, track: u64, user: u64) -> usize {
        if self.skip_votes.0 != track {
            self.skip_votes = (track, Default::default());
        }
        self.skip_votes.1.insert(user);
        self.skip_votes.1.len()
    }

    pub fn is_playing(&self) -> bool {
        self.now.is_some() && !self.paused
    }

    pub fn handle(&self) -> Option<&TrackHandle> {
        self.now.as_ref().map(|(_, h)| h)
    }

    /// Is `id` the track songbird is playing for us? Events of tracks already replaced are stale.
    pub fn is_current(&self, id: u64) -> bool {
        self.now.as_ref().is_some_and(|(n, _)| *n == id)
    }

    pub fn touch(&mut self) {
        self.idle_since = if self.is_playing() { None } else { Some(Instant::now()) };
    }

    /// Stops the track and empties the queue.
    pub fn stop(&mut self) {
        for (_, h) in self.now.take().into_iter().chain(self.next.take()) {
            let _ = h.stop();
        }
        self.queue.clear();
        self.paused = false;
        self.touch();
    }

    pub fn set_volume(&mut self, percent: u16) {
        self.volume = percent;
        for (_, h) in self.now.iter().chain(&self.next) {
            let _ = h.set_volume(gain(percent));
        }
    }

    pub fn set_paused(&mut self, paused: bool) -> bool {
        let Some(h) = self.handle() else { return false };
        let ok = if paused { h.pause() } else { h.play() }.is_ok();
        if ok {
            self.paused = paused;
            self.touch();
        }
        ok
    }
}

fn gain(percent: u16) -> f32 {
    f32::from(percent) / 100.0
}

impl MusicService {
    /// Queues a track, starting it if nothing plays. Returns its place in line (0 = now).
    pub async fn enqueue(self: &Arc<Self>, guild: GuildId, track: Track) -> Result<usize, QueueError> {
        self.enqueue_at(guild, track, false).await
    }

    /// [`Self::enqueue`] at the front of the line (`/playnext`).
    pub async fn enqueue_next(self: &Arc<Self>, guild: GuildId, track: Track) -> Result<usize, QueueError> {
        self.enqueue_at(guild, track, true).await
    }

    async fn enqueue_at(self: &Arc<Self>, guild: GuildId, track: Track, next: bool) -> Result<usize, QueueError> {
        let player = self.player(guild);
        let mut p = player.lock().await;
        let position = if next { p.queue.push_next(track)? } else { p.queue.push(track)? };
        match position {
            0 => self.start_current(guild, &mut p).await,
            1 => self.preload_if_due(guild, &mut p).await,
            _ => {}
        }
        Ok(position)
    }

    /// Queues `entries` (a playlist's, a pick's) for `user`, who asked in `text_channel`, as
    /// many as the queue takes, under one hold of the player. Returns how many went in, and
    /// the first one's title and place in line (0 = it plays now).
    pub async fn enqueue_entries(
        self: &Arc<Self>,
        guild: GuildId,
        entries: Vec<Entry>,
        (user, text_channel): (u64, u64),
    ) -> (usize, Option<(String, usize)>) {
        let player = self.player(guild);
        let mut p = player.lock().await;
        let (mut queued, mut first) = (0, None);
        for e in entries {
            let title = e.title.clone();
            let track = Track {
                id: self.next_track_id(),
                title: e.title,
                source: e.source,
                duration: e.duration,
                requested_by: user,
                text_channel,
            };
            match p.queue.push(track) {
                Ok(position) => {
                    queued += 1;
                    first.get_or_insert((title, position));
                }
                Err(_) => break,
            }
        }
        match first {
            Some((_, 0)) => self.start_current(guild, &mut p).await,
            Some((_, 1)) => self.preload_if_due(guild, &mut p).await,
            _ => {}
        }
        (queued, first)
    }

    /// Ends the current track the way `how` says and starts the next, if any. Returns the
    /// track that now plays.
    pub async fn advance(self: &Arc<Self>, guild: GuildId, p: &mut Player, how: Ended) -> Option<Track> {
        p.queue.advance(how);
        self.restart_current(guild, p).await
    }

    /// Plays the queue's current track from its start, after the queue changed which track
    /// that is (`/previous`, `/skipto`, a track that ended): what songbird plays is stopped.
    pub async fn restart_current(self: &Arc<Self>, guild: GuildId, p: &mut Player) -> Option<Track> {
        if let Some((_, h)) = p.now.take() {
            let _ = h.stop();
        }
        p.paused = false;
        self.start_current(guild, p).await;
        p.queue.current().cloned()
    }

    /// Plays the queue's current track through songbird. A track that cannot even start is
    /// reported and skipped, so one bad source never stalls the queue.
    pub(super) async fn start_current(self: &Arc<Self>, guild: GuildId, p: &mut Player) {
        loop {
            let Some(track) = p.queue.current().cloned() else {
                p.touch();
                self.refresh_panel(guild, p);
                return;
            };
            let Some(call) = self.songbird.get(guild) else {
                // Not in voice any more (kicked, or left): nothing can play.
                p.queue.clear();
                p.next = None;
                p.touch();
                return;
            };
            let handle = match self.take_prepared(p, track.id).await {
                Some(ready) => ready,
                None => call.lock().await.play_only_input(self.sources.input(&track.source)),
            };
            let _ = handle.set_volume(gain(p.volume));
            let end = TrackEnd { music: Arc::downgrade(self), guild, track: track.id };
            let hooked = handle.add_event(Event::Track(TrackEvent::End), end.clone()).is_ok()
                && handle.add_event(Event::Track(TrackEvent::Error), end).is_ok();
            if hooked {
                self.metrics.tracks_started.inc();
                info!(%guild, track = track.id, title = %track.title, "track started");
                p.now = Some((track.id, handle));
                p.touch();
                self.refresh_panel(guild, p);
                self.preload_if_due(guild, p).await;
                return;
            }
            self.metrics.tracks_failed.inc();
            warn!(%guild, track = track.id, "songbird dropped the track before it started");
            p.queue.advance(Ended::Failed);
        }
    }

    /// The prepared next track, playing, if it is `id` and still sound; any other prepared
    /// track is dropped (the queue changed since it was readied).
    async fn take_prepared(&self, p: &mut Player, id: u64) -> Option<TrackHandle> {
        let (next, handle) = p.next.take()?;
        let state = tokio::time::timeout(MIXER_ANSWER, handle.get_info()).await;
        let sound = next == id
            && state.is_ok_and(|s| {
                s.is_ok_and(|s| !matches!(s.playing, PlayMode::Errored(_) | PlayMode::End | PlayMode::Stop))
            });
        if !sound || handle.play().is_err() {
            let _ = handle.stop();
            return None;
        }
        Some(handle)
    }

    /// Readies what plays after the current track, unless it is ready already: songbird
    /// fetches and probes it on the call, paused, while the current one plays. Called as the
    /// current track nears its end (and at once when its length is unknown).
    pub(super) async fn preload(&self, guild: GuildId, p: &mut Player) {
        let want = p.queue.next_up().cloned();
        if p.next.as_ref().map(|(id, _)| *id) == want.as_ref().map(|t| t.id) {
            return;
        }
        if let Some((_, old)) = p.next.take() {
            let _ = old.stop();
        }
        // Track loop replays the track playing now: its source is read again from the start.
        let (Some(track), Some(call)) = (want, self.songbird.get(guild)) else { return };
        let ready = SongbirdTrack::from(self.sources.input(&track.source)).pause().volume(gain(p.volume));
        let handle = call.lock().await.play(ready);
        // Readied in songbird's thread pool; the answer is read when it is wanted.
        drop(handle.make_playable());
        self.metrics.tracks_preloaded.inc();
        tracing::debug!(%guild, track = track.id, title = %track.title, "next track preloading");
        p.next = Some((track.id, handle));
    }

    /// A songbird track ended or failed. Stale events (of a track we already moved past)
    /// are ignored.
    pub(super) async fn track_finished(self: &Arc<Self>, guild: GuildId, id: u64, failure: Option<String>) {
        let Some(player) = self.existing_player(guild) else { return };
        let mut p = player.lock().await;
        if !p.is_current(id) {
            return;
        }
        let how = match &failure {
            None => Ended::Finished,
            Some(reason) => {
                self.metrics.tracks_failed.inc();
                let track = p.queue.current().cloned();
                warn!(%guild, track = id, reason, "track failed");
                if let Some(t) = track {
                    let said = Say::new("announce.failed").with("title", &t.title).with("reason", reason);
                    self.announce(guild, t.text_channel, said).await;
                }
                Ended::Failed
            }
        };
        self.advance(guild, &mut p, how).await;
    }

    /// Where the current track is, for `/nowplaying`.
    pub async fn position(&self, p: &Player) -> Option<Duration> {
        self.track_state(p).await.map(|s| s.position)
    }

    /// songbird's state of the current track. Its mixer answers between two packets, and
    /// not at all while a stalled source holds it: the question is bounded.
    pub async fn track_state(&self, p: &Player) -> Option<songbird::tracks::TrackState> {
        let asked = p.handle()?.get_info();
        tokio::time::timeout(MIXER_ANSWER, asked).await.ok()?.ok()
    }
}
