//! The change stream's resume token, kept in MongoDB beside the records it is about, so a
//! reconnect (or an operator's new leader) continues where the last stream stopped: nothing
//! missed, nothing replayed.
//!
//! One document per (collection, scope) in the state collection — the scope is the sync's
//! namespace, or `fleet` for bot-runner's fleet mode:
//! `{_id: "MusicBotDB@music", resumeToken: {...}, updatedAt: Date}`.

use mongodb::bson::{self, Document, doc};
use mongodb::change_stream::event::ResumeToken;
use mongodb::{Collection, Database};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How often a token that only moved because time passed (no events) is written.
const IDLE_SAVE_EVERY: Duration = Duration::from_secs(60);

pub struct ResumeStore {
    coll: Collection<Document>,
    key: String,
    loaded: bool,
    current: Option<ResumeToken>,
    saved: Option<ResumeToken>,
    saved_at: Instant,
}

impl ResumeStore {
    pub fn new(db: &Database, state_collection: &str, bots_collection: &str, scope: &str) -> Self {
        Self {
            coll: db.collection(state_collection),
            key: format!("{bots_collection}@{scope}"),
            loaded: false,
            current: None,
            saved: None,
            saved_at: Instant::now(),
        }
    }

    /// The token to resume from: the stored one on first use, then the latest handled.
    pub(crate) async fn current(&mut self) -> mongodb::error::Result<Option<ResumeToken>> {
        if !self.loaded {
            let found = self.coll.find_one(doc! {"_id": &self.key}).await?;
            self.current = found.and_then(|d| d.get("resumeToken").cloned()).and_then(|b| {
                bson::from_bson::<ResumeToken>(b)
                    .inspect_err(|e| warn!("ignoring an unreadable stored resume token: {e}"))
                    .ok()
            });
            self.saved = self.current.clone();
            self.loaded = true;
        }
        Ok(self.current.clone())
    }

    /// Records that everything up to `token` is handled, and stores it. A failed write is
    /// only logged: the token stays in memory and the next write catches up.
    pub(crate) async fn advance(&mut self, token: Option<ResumeToken>) {
        if token.is_some() {
            self.current = token;
        }
        self.write().await;
    }

    /// Like [`Self::advance`] while no events arrive: the server's post-batch token moves on
    /// with time; writing it now and then keeps a restart from resuming far back.
    pub(crate) async fn advance_idle(&mut self, token: Option<ResumeToken>) {
        if token.is_some() {
            self.current = token;
        }
        if self.saved_at.elapsed() >= IDLE_SAVE_EVERY {
            self.write().await;
        }
    }

    /// Stores the current token now (at shutdown).
    pub async fn flush(&mut self) {
        self.write().await;
    }

    /// Forgets the token (resuming from it failed, or the stream was invalidated).
    pub(crate) async fn clear(&mut self) {
        self.current = None;
        self.loaded = true;
        if let Err(e) = self.coll.delete_one(doc! {"_id": &self.key}).await {
            warn!("could not delete the stored resume token: {e}");
        }
        self.saved = None;
    }

    async fn write(&mut self) {
        if self.current == self.saved {
            return;
        }
        let Some(token) = &self.current else { return };
        let value = match bson::to_bson(token) {
            Ok(v) => v,
            Err(e) => {
                warn!("could not encode the resume token: {e}");
                return;
            }
        };
        let result = self
            .coll
            .update_one(
                doc! {"_id": &self.key},
                doc! {"$set": {"resumeToken": value, "updatedAt": bson::DateTime::now()}},
            )
            .upsert(true)
            .await;
        match result {
            Ok(_) => {
                self.saved = self.current.clone();
                self.saved_at = Instant::now();
                debug!("stored the resume token");
            }
            Err(e) => warn!("could not store the resume token (kept in memory): {e}"),
        }
    }
}
