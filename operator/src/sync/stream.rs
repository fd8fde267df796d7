//! Following MongoDB: a change stream resumed from the stored token, or polling.
//!
//! Order matters for "nothing missed": the stream is opened first, then the full resync
//! reads the collection, then the stream's events are handled. A change made during the
//! resync is both read and delivered; handling it twice is harmless, as every event is
//! handled by re-reading the record and applying only differences.

use super::resume::ResumeStore;
use super::{Settings, SyncError, Syncer};
use mongodb::bson::Document;
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::error::ErrorKind;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long one getMore waits for changes. The server answers as soon as a change arrives;
/// this bounds how late shutdown, retries and the periodic resync run when nothing changes.
const MAX_AWAIT: Duration = Duration::from_millis(500);

pub enum Ended {
    Shutdown,
    /// The collection was dropped or renamed: start over from a resync.
    Invalidated,
    /// The server has no change streams (a standalone mongod, some compatible servers).
    Unsupported(String),
    Failed(SyncError),
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

async fn open(
    syncer: &Syncer,
    token: Option<mongodb::change_stream::event::ResumeToken>,
) -> mongodb::error::Result<ChangeStream<ChangeStreamEvent<Document>>> {
    syncer.records.watch().max_await_time(MAX_AWAIT).resume_after(token).await
}

pub async fn follow(
    syncer: &mut Syncer,
    resume: &mut ResumeStore,
    needs_resync: &mut Option<&'static str>,
    settings: &Settings,
    stop: &CancellationToken,
) -> Ended {
    let token = match resume.current().await {
        Ok(t) => t,
        Err(e) => return Ended::Failed(e.into()),
    };
    let resuming = token.is_some();
    let mut stream = match open(syncer, token).await {
        Ok(s) => s,
        Err(e) if is_unsupported(&e) => return Ended::Unsupported(e.to_string()),
        // The server answered but refused the token (too old, from another database, ...):
        // start afresh, and resync so nothing between the token and now is missed.
        Err(e) if resuming && command_code(&e).is_some() => match open(syncer, None).await {
            Ok(s) => {
                warn!("could not resume the change stream ({e}); starting a new one after a full resync");
                resume.clear().await;
                *needs_resync = Some("resume_failed");
                s
            }
            Err(e) if is_unsupported(&e) => return Ended::Unsupported(e.to_string()),
            Err(e) => return Ended::Failed(e.into()),
        },
        Err(e) => return Ended::Failed(e.into()),
    };
    if resuming && *needs_resync != Some("resume_failed") {
        info!("change stream resumed from the stored token");
    }
    if let Some(reason) = *needs_resync {
        if let Err(e) = syncer.resync(reason).await {
            return Ended::Failed(e);
        }
        *needs_resync = None;
    }
    syncer.metrics.sync.set_up(true);
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
        match next {
            Ok(Some(event)) => {
                let lag = lag_of(&event);
                match event.operation_type {
                    OperationType::Insert | OperationType::Update | OperationType::Replace | OperationType::Delete => {
                        let Some(id) = event.document_key.as_ref().and_then(|k| k.get("_id")) else { continue };
                        if let Err(e) = syncer.on_change(id).await {
                            // Not advancing the token: the event comes again after reopening.
                            return Ended::Failed(e);
                        }
                        syncer.metrics.sync.stream_event(lag);
                        resume.advance(stream.resume_token()).await;
                    }
                    OperationType::Invalidate
                    | OperationType::Drop
                    | OperationType::Rename
                    | OperationType::DropDatabase => {
                        warn!(op = ?event.operation_type, "the records collection was dropped or renamed; resyncing");
                        resume.clear().await;
                        *needs_resync = Some("invalidated");
                        return Ended::Invalidated;
                    }
                    _ => resume.advance_idle(stream.resume_token()).await,
                }
            }
            Ok(None) => resume.advance_idle(stream.resume_token()).await,
            Err(e) => return Ended::Failed(e.into()),
        }
        syncer.retry_dirty().await;
        if last_resync.elapsed() >= settings.resync_interval {
            last_resync = Instant::now();
            if let Err(e) = syncer.resync("periodic").await {
                return Ended::Failed(e);
            }
        }
    }
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
pub async fn poll(syncer: &mut Syncer, settings: &Settings, stop: &CancellationToken) -> Ended {
    loop {
        if stop.is_cancelled() {
            return Ended::Shutdown;
        }
        if let Err(e) = syncer.resync("poll").await {
            return Ended::Failed(e);
        }
        syncer.metrics.sync.set_up(true);
        tokio::select! {
            _ = tokio::time::sleep(settings.poll_interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}
