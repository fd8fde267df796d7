//! A guild's queue as plain data: what played, what plays now, what comes next, and the
//! loop mode. No I/O here, so every rule (loop, skip, previous, move, shuffle, remove,
//! paging, the length limit) is unit-tested; the player drives it.

use std::collections::VecDeque;
use std::time::Duration;

use poise::ChoiceParameter;
use serde::{Deserialize, Serialize};

use super::source::Source;

/// Saved with the session (see `super::session`) as it is, but for the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Track {
    /// Unique within the process; ties songbird's events to the track they are about.
    #[serde(skip)]
    pub id: u64,
    pub title: String,
    pub source: Source,
    pub duration: Option<Duration>,
    pub requested_by: u64,
    /// Where to say that the track failed.
    pub text_channel: u64,
}

#[derive(ChoiceParameter, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoopMode {
    #[default]
    #[name = "off"]
    Off,
    #[name = "track"]
    Track,
    #[name = "queue"]
    Queue,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the queue is full ({0} tracks at most)")]
    Full(usize),
    #[error("there is no track {index} in the queue (it has {len})")]
    NoSuchTrack { index: usize, len: usize },
}

impl From<&QueueError> for crate::i18n::Say {
    fn from(e: &QueueError) -> Self {
        use crate::i18n::Say;
        match e {
            QueueError::Full(max) => Say::new("queue.full").with("max", max),
            QueueError::NoSuchTrack { index, len } => {
                Say::new("queue.no_such_track").with("index", index).with("len", len)
            }
        }
    }
}

/// Tracks kept for `/previous`, newest last.
pub const HISTORY: usize = 50;

#[derive(Debug)]
pub struct Queue {
    /// What played before `current` (finished or skipped; not failed), oldest first.
    history: VecDeque<Track>,
    current: Option<Track>,
    upcoming: VecDeque<Track>,
    pub loop_mode: LoopMode,
    max_len: usize,
}

/// How the current track ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Finished,
    Failed,
    Skipped,
}

pub struct Page<'a> {
    pub number: usize,
    pub pages: usize,
    /// 1-based positions in the upcoming list, with their tracks.
    pub tracks: Vec<(usize, &'a Track)>,
}

impl Queue {
    pub fn new(max_len: usize) -> Self {
        Self {
            history: VecDeque::new(),
            current: None,
            upcoming: VecDeque::new(),
            loop_mode: LoopMode::Off,
            max_len: max_len.max(1),
        }
    }

    pub fn current(&self) -> Option<&Track> {
        self.current.as_ref()
    }

    /// What plays after the current track if it finishes, as `advance` would pick it.
    pub fn next_up(&self) -> Option<&Track> {
        match self.loop_mode {
            LoopMode::Track => self.current.as_ref(),
            LoopMode::Queue => self.upcoming.front().or(self.current.as_ref()),
            LoopMode::Off => self.upcoming.front(),
        }
    }

    /// The tracks waiting, in order, not counting the one playing.
    pub fn upcoming(&self) -> impl Iterator<Item = &Track> {
        self.upcoming.iter()
    }

    /// What played before, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Track> {
        self.history.iter()
    }

    /// Gives the current track a new id (`/replay` plays it again as a new songbird track:
    /// the old one's end event must not be taken for the new one's).
    pub fn renumber_current(&mut self, id: u64) {
        if let Some(t) = self.current.as_mut() {
            t.id = id;
        }
    }

    /// Puts back a saved history (the newest [`HISTORY`] of it).
    pub fn set_history(&mut self, tracks: impl IntoIterator<Item = Track>) {
        self.history.clear();
        for t in tracks {
            self.remember(t);
        }
    }

    /// Tracks waiting, not counting the one playing.
    pub fn len(&self) -> usize {
        self.upcoming.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.upcoming.is_empty()
    }

    /// Adds a track; returns its place in line (0 = it plays now, because nothing did).
    pub fn push(&mut self, track: Track) -> Result<usize, QueueError> {
        self.insert(track, false)
    }

    /// Adds a track to the front of the line (`/playnext`); 0 when it plays now.
    pub fn push_next(&mut self, track: Track) -> Result<usize, QueueError> {
        self.insert(track, true)
    }

    fn insert(&mut self, track: Track, next: bool) -> Result<usize, QueueError> {
        if self.upcoming.len() + usize::from(self.current.is_some()) >= self.max_len {
            return Err(QueueError::Full(self.max_len));
        }
        if self.current.is_none() && self.upcoming.is_empty() {
            self.current = Some(track);
            return Ok(0);
        }
        if next {
            self.upcoming.push_front(track);
            return Ok(1);
        }
        self.upcoming.push_back(track);
        Ok(self.upcoming.len())
    }

    fn remember(&mut self, track: Track) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(track);
    }

    /// Moves on after the current track ended and returns what plays next. A track that
    /// failed is not looped (it would fail again); a skip leaves track-loop behind for the
    /// next track but keeps the skipped one in a looping queue.
    pub fn advance(&mut self, how: Ended) -> Option<&Track> {
        let ended = self.current.take();
        if let Some(t) = ended.as_ref().filter(|_| how != Ended::Failed) {
            // A track repeating itself is one play in the history, not one per round.
            if !(self.loop_mode == LoopMode::Track && how == Ended::Finished) {
                self.remember(t.clone());
            }
        }
        match (self.loop_mode, how, ended) {
            (LoopMode::Track, Ended::Finished, Some(t)) => self.current = Some(t),
            (LoopMode::Queue, Ended::Finished | Ended::Skipped, Some(t)) => {
                self.upcoming.push_back(t);
                self.current = self.upcoming.pop_front();
            }
            _ => self.current = self.upcoming.pop_front(),
        }
        self.current.as_ref()
    }

    /// Goes back to the track that played before (`/previous`): it plays now, and the one
    /// that was playing comes next. `None` (and nothing changes) without a history. In a
    /// looping queue the track is taken from where the loop put it, so it is not there twice.
    pub fn previous(&mut self) -> Option<&Track> {
        let back = self.history.pop_back()?;
        if self.loop_mode == LoopMode::Queue
            && let Some(i) = self.upcoming.iter().rposition(|t| t.id == back.id)
        {
            self.upcoming.remove(i);
        }
        if let Some(now) = self.current.take() {
            self.upcoming.push_front(now);
        }
        self.current = Some(back);
        self.current.as_ref()
    }

    /// Jumps to the upcoming track at 1-based `position` (`/skipto`): the tracks before it
    /// are dropped (kept at the end in a looping queue; never played, so not history),
    /// then the current one is skipped.
    pub fn skip_to(&mut self, position: usize) -> Result<Option<&Track>, QueueError> {
        let len = self.upcoming.len();
        if position == 0 || position > len {
            return Err(QueueError::NoSuchTrack { index: position, len });
        }
        let passed: Vec<Track> = self.upcoming.drain(..position - 1).collect();
        if self.loop_mode == LoopMode::Queue {
            self.upcoming.extend(passed);
        }
        Ok(self.advance(Ended::Skipped))
    }

    /// Moves the upcoming track at 1-based `from` to `to` (`/move`); returns it.
    pub fn move_track(&mut self, from: usize, to: usize) -> Result<&Track, QueueError> {
        let len = self.upcoming.len();
        for index in [from, to] {
            if index == 0 || index > len {
                return Err(QueueError::NoSuchTrack { index, len });
            }
        }
        let track = self.upcoming.remove(from - 1).expect("checked above");
        self.upcoming.insert(to - 1, track);
        Ok(&self.upcoming[to - 1])
    }

    /// Empties the line but lets the current track play on (`/clear`); returns how many
    /// tracks were waiting.
    pub fn clear_upcoming(&mut self) -> usize {
        let n = self.upcoming.len();
        self.upcoming.clear();
        n
    }

    /// Empties everything (`/stop`).
    pub fn clear(&mut self) {
        if let Some(t) = self.current.take() {
            self.remember(t);
        }
        self.upcoming.clear();
    }

    pub fn shuffle(&mut self, mut rand_below: impl FnMut(usize) -> usize) {
        let q = self.upcoming.make_contiguous();
        for i in (1..q.len()).rev() {
            q.swap(i, rand_below(i + 1));
        }
    }

    /// Removes the upcoming track at a 1-based position, as `/queue` numbers them.
    pub fn remove(&mut self, position: usize) -> Result<Track, QueueError> {
        let len = self.upcoming.len();
        position
            .checked_sub(1)
            .and_then(|i| self.upcoming.remove(i))
            .ok_or(QueueError::NoSuchTrack { index: position, len })
    }

    /// Page `number` (1-based, clamped) of the upcoming tracks.
    pub fn page(&self, number: usize, per_page: usize) -> Page<'_> {
        let per_page = per_page.max(1);
        let pages = self.upcoming.len().div_ceil(per_page).max(1);
        let number = number.clamp(1, pages);
        let tracks = self
            .upcoming
            .iter()
            .enumerate()
            .skip((number - 1) * per_page)
            .take(per_page)
            .map(|(i, t)| (i + 1, t))
            .collect();
        Page { number, pages, tracks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: u64) -> Track {
        Track {
            id,
            title: format!("t{id}"),
            source: Source::Http(format!("http://x/{id}.mp3")),
            duration: None,
            requested_by: 1,
            text_channel: 2,
        }
    }

    fn queue(ids: &[u64]) -> Queue {
        let mut q = Queue::new(100);
        for id in ids {
            q.push(track(*id)).unwrap();
        }
        q
    }

    fn ids(q: &Queue) -> (Option<u64>, Vec<u64>) {
        (q.current().map(|t| t.id), q.upcoming.iter().map(|t| t.id).collect())
    }

    #[test]
    fn the_first_track_plays_at_once_the_rest_wait_in_line() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(track(1)), Ok(0));
        assert_eq!(q.push(track(2)), Ok(1));
        assert_eq!(q.push(track(3)), Ok(2));
        assert_eq!(ids(&q), (Some(1), vec![2, 3]));
    }

    #[test]
    fn without_loop_tracks_play_once() {
        let mut q = queue(&[1, 2]);
        assert_eq!(q.advance(Ended::Finished).map(|t| t.id), Some(2));
        assert_eq!(q.advance(Ended::Finished).map(|t| t.id), None);
        assert!(q.is_empty());
    }

    #[test]
    fn track_loop_repeats_until_skipped_and_never_repeats_a_failure() {
        let mut q = queue(&[1, 2, 3]);
        q.loop_mode = LoopMode::Track;
        assert_eq!(q.advance(Ended::Finished).map(|t| t.id), Some(1));
        assert_eq!(q.advance(Ended::Skipped).map(|t| t.id), Some(2));
        assert_eq!(q.advance(Ended::Failed).map(|t| t.id), Some(3));
    }

    #[test]
    fn queue_loop_cycles_and_keeps_skipped_tracks() {
        let mut q = queue(&[1, 2]);
        q.loop_mode = LoopMode::Queue;
        assert_eq!(q.advance(Ended::Finished).map(|t| t.id), Some(2));
        assert_eq!(q.advance(Ended::Skipped).map(|t| t.id), Some(1));
        assert_eq!(ids(&q), (Some(1), vec![2]));
        assert_eq!(q.advance(Ended::Failed).map(|t| t.id), Some(2), "a failed track leaves the loop");
        assert_eq!(ids(&q), (Some(2), vec![]));
        assert_eq!(q.advance(Ended::Finished).map(|t| t.id), Some(2), "a queue of one loops on itself");
    }

    #[test]
    fn next_up_is_what_advance_picks_after_a_finished_track() {
        for mode in [LoopMode::Off, LoopMode::Track, LoopMode::Queue] {
            for ids_now in [&[1u64][..], &[1, 2, 3]] {
                let mut q = queue(ids_now);
                q.loop_mode = mode;
                let predicted = q.next_up().map(|t| t.id);
                assert_eq!(q.advance(Ended::Finished).map(|t| t.id), predicted, "{mode:?} {ids_now:?}");
            }
        }
        assert_eq!(Queue::new(5).next_up(), None);
    }

    #[test]
    fn previous_goes_back_through_what_played_and_what_was_skipped() {
        let mut q = queue(&[1, 2, 3]);
        assert_eq!(q.previous(), None, "nothing played yet");
        assert_eq!(ids(&q), (Some(1), vec![2, 3]));
        q.advance(Ended::Finished);
        q.advance(Ended::Skipped);
        assert_eq!(ids(&q), (Some(3), vec![]));
        assert_eq!(q.previous().map(|t| t.id), Some(2));
        assert_eq!(ids(&q), (Some(2), vec![3]), "the one playing comes next");
        assert_eq!(q.previous().map(|t| t.id), Some(1));
        assert_eq!(ids(&q), (Some(1), vec![2, 3]));
        // A failure is not history; /stop keeps what was playing.
        q.advance(Ended::Failed);
        assert_eq!(q.history().count(), 0);
        q.clear();
        assert_eq!(q.previous().map(|t| t.id), Some(2), "after /stop, what played last comes back");
        assert_eq!(ids(&q), (Some(2), vec![]));
    }

    #[test]
    fn history_is_bounded_and_counts_a_looping_track_once() {
        let mut q = queue(&[1]);
        q.loop_mode = LoopMode::Track;
        for _ in 0..5 {
            q.advance(Ended::Finished);
        }
        assert_eq!(q.history().count(), 0, "a track looping on itself is not history yet");
        q.loop_mode = LoopMode::Off;
        for id in 2..(HISTORY as u64 + 10) {
            q.push(track(id)).unwrap();
            q.advance(Ended::Finished);
        }
        assert_eq!(q.history().count(), HISTORY);
        assert_eq!(q.history().last().map(|t| t.id), Some(HISTORY as u64 + 8));
    }

    #[test]
    fn previous_in_a_looping_queue_does_not_duplicate_the_track() {
        let mut q = queue(&[1, 2, 3]);
        q.loop_mode = LoopMode::Queue;
        q.advance(Ended::Finished);
        assert_eq!(ids(&q), (Some(2), vec![3, 1]));
        assert_eq!(q.previous().map(|t| t.id), Some(1));
        assert_eq!(ids(&q), (Some(1), vec![2, 3]));
    }

    #[test]
    fn play_next_skip_to_move_and_clear_change_the_line() {
        let mut q = queue(&[1, 2, 3, 4]);
        assert_eq!(q.push_next(track(9)), Ok(1));
        assert_eq!(ids(&q), (Some(1), vec![9, 2, 3, 4]));
        assert_eq!(q.move_track(1, 4).map(|t| t.id), Ok(9));
        assert_eq!(ids(&q), (Some(1), vec![2, 3, 4, 9]));
        assert_eq!(q.move_track(0, 1).err(), Some(QueueError::NoSuchTrack { index: 0, len: 4 }));
        assert_eq!(q.move_track(1, 5).err(), Some(QueueError::NoSuchTrack { index: 5, len: 4 }));
        assert_eq!(q.skip_to(3).map(|t| t.map(|t| t.id)), Ok(Some(4)));
        assert_eq!(ids(&q), (Some(4), vec![9]));
        assert_eq!(q.history().map(|t| t.id).collect::<Vec<_>>(), [1], "the skipped track; not those passed over");
        assert_eq!(q.skip_to(2).err(), Some(QueueError::NoSuchTrack { index: 2, len: 1 }));
        assert_eq!(q.clear_upcoming(), 1);
        assert_eq!(ids(&q), (Some(4), vec![]), "the current track plays on");
        let mut empty = Queue::new(3);
        assert_eq!(empty.push_next(track(1)), Ok(0), "into an empty queue it plays now");
        let mut looping = queue(&[1, 2, 3, 4]);
        looping.loop_mode = LoopMode::Queue;
        assert_eq!(looping.skip_to(3).map(|t| t.map(|t| t.id)), Ok(Some(4)));
        assert_eq!(ids(&looping), (Some(4), vec![2, 3, 1]), "a looping queue keeps what it passed");
    }

    #[test]
    fn the_limit_counts_the_playing_track() {
        let mut q = Queue::new(2);
        q.push(track(1)).unwrap();
        q.push(track(2)).unwrap();
        assert_eq!(q.push(track(3)), Err(QueueError::Full(2)));
    }

    #[test]
    fn remove_is_one_based_and_checked() {
        let mut q = queue(&[1, 2, 3]);
        assert_eq!(q.remove(2).map(|t| t.id), Ok(3));
        assert_eq!(q.remove(0), Err(QueueError::NoSuchTrack { index: 0, len: 1 }));
        assert_eq!(q.remove(5), Err(QueueError::NoSuchTrack { index: 5, len: 1 }));
        assert_eq!(ids(&q), (Some(1), vec![2]));
    }

    #[test]
    fn shuffle_permutes_only_the_upcoming_tracks() {
        let mut q = queue(&[1, 2, 3, 4, 5]);
        q.shuffle(|_| 0);
        let (current, mut rest) = ids(&q);
        assert_eq!(current, Some(1));
        assert_ne!(rest, vec![2, 3, 4, 5]);
        rest.sort();
        assert_eq!(rest, vec![2, 3, 4, 5]);
    }

    #[test]
    fn pages_are_numbered_and_clamped() {
        let q = queue(&(1..=26).collect::<Vec<_>>());
        let p = q.page(1, 10);
        assert_eq!((p.number, p.pages, p.tracks.len(), p.tracks[0].0, p.tracks[0].1.id), (1, 3, 10, 1, 2));
        let p = q.page(9, 10);
        assert_eq!((p.number, p.tracks.len(), p.tracks[4].0), (3, 5, 25));
        let empty = Queue::new(5);
        assert_eq!((empty.page(1, 10).pages, empty.page(1, 10).tracks.len()), (1, 0));
    }
}
