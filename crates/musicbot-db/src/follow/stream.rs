//! Following MongoDB: a change stream resumed from the stored token, or polling.
//!
//! Order matters for "nothing missed": the stream is opened first, then the full resync
//! reads the collection, then the stream's events are handled. A change made during the
//! resync is both read and delivered; handling it twice is harmless, as every event is
//! handled by re-reading the record and applying only differences.

use super::resume::ResumeStore;
use super::{Follower, ResyncReason, Settings};
use mongodb::bson::Document;
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::error::ErrorKind;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long one getMore waits for changes. The server answers as soon as a change arrives;
/// this bounds how late shutdown, retries and the periodic resync run when nothing changes.
const MAX_AWAIT: Duration = Duration::from_millis(500);

pub(super) enum Ended<E> {
    Shutdown,
    /// The collection was dropped or renamed: start over from a resync.
    Invalidated,
    /// The server has no change streams (a standalone mongod, some compatible servers).
    Unsupported(mongodb::error::Error),
    Failed(E),
}

/// Error codes meaning "this server cannot do change streams".
const UNSUPPORTED: [i32; 3] = [
    40573, // the $changeStream stage is only supported on replica sets
    40324, // unrecognized pipeline stage name
    115,   // CommandNotSupported
];

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

fn is_unsupported(e: &mongodb::error::Error) -> bool {
    command_code(e).is_some_and(|c| UNSUPPORTED.contains(&c))
}

type Stream = ChangeStream<ChangeStreamEvent<Document>>;

async fn open<F: Follower>(follower: &F, token: Option<ResumeToken>) -> mongodb::error::Result<Stream> {
    follower.records().watch().max_await_time(MAX_AWAIT).resume_after(token).await
}

/// Follows the change stream until shutdown, an error or an invalidation; first resyncs if
/// `needs_resync` says so (and clears it once done).
#[tracing::instrument(skip_all, fields(collection = %follower.records().name()))]
pub(super) async fn follow<F: Follower>(
    follower: &mut F,
    resume: &mut ResumeStore,
    needs_resync: &mut Option<ResyncReason>,
    settings: &Settings,
    stop: &CancellationToken,
) -> Ended<F::Error> {
    let mut stream = match open_resumed(follower, resume, needs_resync).await {
        Ok(s) => s,
        Err(ended) => return ended,
    };
    if let Some(reason) = *needs_resync {
        if let Err(e) = follower.resync(reason).await {
            return Ended::Failed(e);
        }
        *needs_resync = None;
    }
    follower.set_up(true);
    let mut last_resync = Instant::now();
    loop {
        if stop.is_cancelled() {
            resume.advance(stream.resume_token()).await;
            return Ended::Shutdown;
        }
        let next = tokio::select! {
            next = stream.next_if_any() => next,
            _ = stop.cancelled() => continue,
        };
        let handled = match next {
            // The stream is not polled while the event is handled: its token stays the one after it.
            Ok(Some(event)) => handle(follower, resume, stream.resume_token(), event).await,
            Ok(None) => {
                resume.advance_idle(stream.resume_token()).await;
                Ok(())
            }
            Err(e) => Err(Ended::Failed(e.into())),
        };
        if let Err(ended) = handled {
            if matches!(ended, Ended::Invalidated) {
                *needs_resync = Some(ResyncReason::Invalidated);
            }
            return ended;
        }
        follower.tick().await;
        if last_resync.elapsed() >= settings.resync_interval {
            last_resync = Instant::now();
            if let Err(e) = follower.resync(ResyncReason::Periodic).await {
                return Ended::Failed(e);
            }
        }
    }
}

/// Opens the stream from the stored token. A token the server refuses (too old, from
/// another database, ...) is dropped for a new stream, with a resync so nothing between the
/// token and now is missed.
async fn open_resumed<F: Follower>(
    follower: &F,
    resume: &mut ResumeStore,
    needs_resync: &mut Option<ResyncReason>,
) -> Result<Stream, Ended<F::Error>> {
    let token = resume.current().await.map_err(|e| Ended::Failed(e.into()))?;
    let resuming = token.is_some();
    let refused = match open(follower, token).await {
        Ok(s) => {
            if resuming {
                info!("change stream resumed from the stored token");
            }
            return Ok(s);
        }
        Err(e) if is_unsupported(&e) => return Err(Ended::Unsupported(e)),
        Err(e) if resuming && command_code(&e).is_some() => e,
        Err(e) => return Err(Ended::Failed(e.into())),
    };
    match open(follower, None).await {
        Ok(s) => {
            warn!("could not resume the change stream ({refused}); starting a new one after a full resync");
            resume.clear().await;
            *needs_resync = Some(ResyncReason::ResumeFailed);
            Ok(s)
        }
        Err(e) if is_unsupported(&e) => Err(Ended::Unsupported(e)),
        Err(e) => Err(Ended::Failed(e.into())),
    }
}

/// Handles one event: a record change is acted on, then `token` (the one after the event) is
/// stored; a dropped or renamed collection ends the stream with [`Ended::Invalidated`].
async fn handle<F: Follower>(
    follower: &mut F,
    resume: &mut ResumeStore,
    token: Option<ResumeToken>,
    event: ChangeStreamEvent<Document>,
) -> Result<(), Ended<F::Error>> {
    match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace | OperationType::Delete => {
            let Some(id) = event.document_key.as_ref().and_then(|k| k.get("_id")) else { return Ok(()) };
            // On failure the token stays put: the event comes again after reopening.
            follower.on_change(id).await.map_err(Ended::Failed)?;
            follower.event_handled(lag_of(&event));
            resume.advance(token).await;
        }
        OperationType::Invalidate | OperationType::Drop | OperationType::Rename | OperationType::DropDatabase => {
            warn!(op = ?event.operation_type, "the records collection was dropped or renamed; resyncing");
            resume.clear().await;
            return Err(Ended::Invalidated);
        }
        _ => resume.advance_idle(token).await,
    }
    Ok(())
}

/// Time from the change in MongoDB to now (the event's wall time, else its cluster time,
/// which has whole seconds only).
fn lag_of(event: &ChangeStreamEvent<Document>) -> Option<Duration> {
    let at = match (event.wall_time, event.cluster_time) {
        (Some(wall), _) => SystemTime::UNIX_EPOCH + Duration::from_millis(wall.timestamp_millis().max(0) as u64),
        (None, Some(ts)) => SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(ts.time)),
        (None, None) => return None,
    };
    Some(SystemTime::now().duration_since(at).unwrap_or_default())
}

/// Where change streams are unavailable: a full resync every poll interval.
#[tracing::instrument(skip_all, fields(collection = %follower.records().name()))]
pub(super) async fn poll<F: Follower>(
    follower: &mut F,
    settings: &Settings,
    stop: &CancellationToken,
) -> Ended<F::Error> {
    loop {
        if stop.is_cancelled() {
            return Ended::Shutdown;
        }
        if let Err(e) = follower.resync(ResyncReason::Poll).await {
            return Ended::Failed(e);
        }
        follower.set_up(true);
        tokio::select! {
            _ = tokio::time::sleep(settings.poll_interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}
