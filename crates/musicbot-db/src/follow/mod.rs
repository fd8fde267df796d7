//! Following the `MusicBotDB` collection live, for whoever acts on its records: the
//! operator's sync (records → Secrets and MusicBots) and bot-runner's fleet mode (records →
//! running bots). Both get the same semantics from here:
//!
//! - `stream`: a change stream resumed from a stored token, a full resync at start and when
//!   resuming fails, polling where the server has no change streams;
//! - `resume`: where the resume token is kept;
//! - `rules`: how a record is read and why one is skipped, and which record wins a client id;
//! - `guard`: the mass-deletion hold;
//! - `metrics`: what following measures, under the same names for both.
//!
//! The acting side implements [`Follower`]; [`run`] drives it until told to stop.

pub mod guard;
pub mod metrics;
pub mod resume;
pub mod rules;
mod stream;

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};
use mongodb::Collection;
use mongodb::bson::{Bson, Document};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use guard::{DeletionGuard, Removal, Verdict, is_mass_deletion};
pub use metrics::FollowMetrics;
pub use resume::ResumeStore;
pub use rules::{Good, Mirror, Parsed, Problem, SkipReason, parse, record_key};

/// Why the whole collection is read again: the `reason` label of the resync metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncReason {
    /// Following (re)started.
    Start,
    /// The stored resume token was refused: changes after it may have been missed.
    ResumeFailed,
    /// The records collection was dropped or renamed.
    Invalidated,
    /// The safety net while following a change stream (the resync interval).
    Periodic,
    /// Every poll, where the server has no change streams.
    Poll,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Start => "start",
            ResyncReason::ResumeFailed => "resume_failed",
            ResyncReason::Invalidated => "invalidated",
            ResyncReason::Periodic => "periodic",
            ResyncReason::Poll => "poll",
        }
    }

    /// Resyncs that come all the time, not worth a line at `info` each.
    pub fn is_routine(self) -> bool {
        matches!(self, ResyncReason::Poll | ResyncReason::Periodic)
    }
}

/// How changes are learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Mode {
    /// Change streams; polling when the server has none.
    Auto,
    /// Change streams only.
    Watch,
    /// A full read every poll interval.
    Poll,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub poll_interval: Duration,
    /// Full resyncs while following a change stream: a safety net for state changed behind
    /// the follower's back.
    pub resync_interval: Duration,
}

/// The side that acts on the records. Every handler re-reads and applies differences only,
/// so an event handled twice (during a resync, or replayed after a reconnect) changes
/// nothing the second time.
pub trait Follower: Send {
    type Error: std::fmt::Display + From<mongodb::error::Error> + Send;

    /// The records collection.
    fn records(&self) -> &Collection<Document>;

    /// Reads every record and converges all of them.
    fn resync(&mut self, reason: ResyncReason) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The record `id` was inserted, updated, replaced or deleted.
    fn on_change(&mut self, id: &Bson) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Between events (at least every half second while following): retries and the like.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether the follower is following MongoDB now (for an `_up` gauge).
    fn set_up(&self, up: bool);

    /// A change-stream event was handled, `lag` after it happened in MongoDB.
    fn event_handled(&self, lag: Option<Duration>);

    /// Following was interrupted by `error` (counted, then retried with backoff).
    fn failed(&self, error: &Self::Error);
}

/// Waits between attempts to follow MongoDB again: 0.5 s doubling to 30 s, for ever.
fn reconnect_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
        .build()
}

/// Follows the records until `stop` is cancelled. Never returns early: failures on either
/// side are retried with backoff; the resume token is stored before returning.
pub async fn run<F: Follower>(
    follower: &mut F,
    resume: &mut ResumeStore,
    settings: &Settings,
    stop: &CancellationToken,
) {
    let mut mode = settings.mode;
    let mut needs_resync = Some(ResyncReason::Start);
    let mut backoff = reconnect_backoff();
    while !stop.is_cancelled() {
        let ended = match mode {
            Mode::Poll => stream::poll(follower, settings, stop).await,
            Mode::Auto | Mode::Watch => stream::follow(follower, resume, &mut needs_resync, settings, stop).await,
        };
        follower.set_up(false);
        match ended {
            stream::Ended::Shutdown => break,
            stream::Ended::Invalidated => backoff = reconnect_backoff(),
            stream::Ended::Unsupported(why) if mode == Mode::Auto => {
                warn!("change streams are unavailable ({why}); polling every {:?}", settings.poll_interval);
                mode = Mode::Poll;
            }
            stream::Ended::Unsupported(why) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                warn!(retry_in = ?delay, "change streams are unavailable ({why}) and the mode is watch");
                follower.failed(&why.into());
                sleep_or_stop(delay, stop).await;
            }
            stream::Ended::Failed(e) => {
                follower.failed(&e);
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                warn!(retry_in = ?delay, "following MongoDB was interrupted: {e}");
                sleep_or_stop(delay, stop).await;
            }
        }
        if mode == Mode::Poll {
            backoff = reconnect_backoff();
        }
    }
    resume.flush().await;
    info!("stopped following MongoDB");
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}
