//! Fleet mode following MongoDB: every active record runs a bot in this process, and a
//! record inserted, deactivated, deleted or given a new token changes the running set
//! without a restart. The record rules, the change stream and the mass-deletion hold are
//! musicbot-db's (`follow`), the same the operator's sync runs on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document};
use mongodb::{Collection, Database};
use musicbot_api::Token;
use musicbot_db::follow::{self, DeletionGuard, Follower, Mirror, Parsed, Removal, ResyncReason, SkipReason};
use musicbot_db::{Collections, TokenCipher};
use tracing::{debug, info, warn};

use super::{Fleet, Seat};
use crate::bot::{BotSpec, Runtime};
use crate::cli::PresenceArgs;

/// What a record's bot was started with: a new token means a new bot.
struct Seated {
    record_key: String,
    token: Token,
    name: String,
    presence: PresenceArgs,
}

/// What a record wants of its bot.
struct Wanted {
    record_key: String,
    token: Token,
    name: String,
    presence: PresenceArgs,
}

pub struct FleetRecords {
    records: Collection<Document>,
    collection: String,
    cipher: Option<Arc<TokenCipher>>,
    mirror: Mirror,
    fleet: Arc<Fleet>,
    rt: Runtime,
    /// The spec every bot of the fleet shares (guild ids, presence); name from the record.
    template: BotSpec,
    /// Bots started from records, by client id (bots from token files are not here).
    seated: BTreeMap<u64, Seated>,
    /// Client ids run from `--token-file`: their records are not used.
    from_files: HashSet<u64>,
    guard: DeletionGuard,
    /// What was last reported per record, so each problem is logged once.
    reported: HashMap<String, String>,
    plaintext_warned: HashSet<String>,
}

impl FleetRecords {
    #[allow(clippy::too_many_arguments)] // one call site, each a different part of the process
    pub fn new(
        db: &Database,
        collections: &Collections,
        cipher: Option<Arc<TokenCipher>>,
        fleet: Arc<Fleet>,
        rt: Runtime,
        template: BotSpec,
        from_files: HashSet<u64>,
        guard: DeletionGuard,
    ) -> Self {
        Self {
            records: db.collection(&collections.bots),
            collection: collections.bots.clone(),
            cipher,
            mirror: Mirror::default(),
            fleet,
            rt,
            template,
            seated: BTreeMap::new(),
            from_files,
            guard,
            reported: HashMap::new(),
            plaintext_warned: HashSet::new(),
        }
    }

    /// Brings the running set in line with the mirror: starts, restarts, renames and
    /// stops bots (the stops held when they are a mass deletion).
    async fn converge(&mut self) {
        let mut wanted: BTreeMap<u64, Wanted> = BTreeMap::new();
        for (key, good) in self.mirror.winners() {
            let id = good.token.client_id();
            if good.record.is_active && !self.from_files.contains(&id) {
                let presence = good.record.presence.as_ref().map(PresenceArgs::from);
                wanted.insert(
                    id,
                    Wanted {
                        record_key: key.to_string(),
                        token: good.token.clone(),
                        name: good.record.name.clone(),
                        presence: presence.unwrap_or_else(|| self.template.presence.clone()),
                    },
                );
            }
        }
        let mut proposed = BTreeMap::new();
        for (id, seated) in &self.seated {
            if wanted.contains_key(id) {
                continue;
            }
            // The sync's rule: a record that turned invalid keeps its last good bot running.
            if let Some(Parsed::Bad { .. }) = self.mirror.get(&seated.record_key) {
                continue;
            }
            let deactivated = self.mirror.winner(&id.to_string()).is_some();
            proposed.insert(id.to_string(), if deactivated { Removal::Deactivate } else { Removal::Delete });
        }
        let previously = self.guard.held().clone();
        let verdict = self
            .guard
            .check(&proposed, self.seated.len(), |n| n.parse().is_ok_and(|id: u64| self.seated.contains_key(&id)));
        if verdict.changed {
            self.report_held(&previously, &verdict);
        }
        self.rt.metrics.fleet().follow.set_deletions_held(verdict.held.len());

        let mut stopping = Vec::new();
        for name in proposed.keys().filter(|n| !verdict.held.contains(*n) && !verdict.waiting.contains(*n)) {
            let Ok(id) = name.parse::<u64>() else { continue };
            if let (Some(seated), Some(seat)) = (self.seated.remove(&id), self.fleet.remove(id)) {
                info!(bot = %seated.name, record = %seated.record_key, "record gone or deactivated: stopping the bot");
                stopping.push(seat);
            }
        }
        for (id, Wanted { record_key, token, name, presence }) in wanted {
            match self.seated.get_mut(&id) {
                Some(s) if s.token == token => {
                    let seat = self.fleet.seat(id);
                    if s.name != name {
                        info!(bot = %name, was = %s.name, "renamed");
                        if let Some(seat) = &seat {
                            seat.rename(&name);
                        }
                        s.name = name;
                    }
                    if s.presence != presence {
                        info!(bot = %s.name, "the record's presence changed");
                        if let Some(seat) = &seat {
                            seat.set_presence(&presence).await;
                        }
                        s.presence = presence;
                    }
                    s.record_key = record_key;
                }
                current => {
                    let restart = current.is_some();
                    let spec = BotSpec {
                        name: name.clone(),
                        client_id: Some(id),
                        presence: presence.clone(),
                        ..self.template.clone()
                    };
                    let seat = Seat::spawn(spec, token.clone(), self.rt.clone());
                    if let Some(old) = self.fleet.insert(seat) {
                        stopping.push(old);
                    }
                    if restart {
                        info!(bot = %name, record = %record_key, "the record's token changed: restarting the bot");
                    } else {
                        info!(bot = %name, record = %record_key, "starting a bot for the record");
                    }
                    self.seated.insert(id, Seated { record_key, token, name, presence });
                }
            }
        }
        // Leaving voice takes a moment per bot: all at once, after the new ones are seated.
        futures::future::join_all(stopping.iter().map(|s| s.stop())).await;
        self.report();
    }

    fn report_held(&self, previously: &std::collections::BTreeSet<String>, verdict: &follow::Verdict) {
        if verdict.held.is_empty() {
            if !previously.is_empty() {
                info!("no bot's removal is held any more");
            }
            return;
        }
        warn!(
            held = verdict.held.len(),
            deleting = verdict.removing,
            fleet = verdict.fleet,
            max_percent = self.guard.max_percent(),
            "the records of {} of {} bots are gone or deactivated: holding that as a mass deletion (an emptied or \
             renamed collection?); restore the records, or restart with --sync-allow-mass-delete to let it go",
            verdict.removing,
            verdict.fleet
        );
    }

    /// Logs and counts each new problem once; updates the gauges.
    fn report(&mut self) {
        let metrics = &self.rt.metrics.fleet().follow;
        let mut counts: BTreeMap<SkipReason, usize> = BTreeMap::new();
        let mut current = HashSet::new();
        for (key, client, problem) in self.mirror.problems() {
            *counts.entry(problem.reason()).or_default() += 1;
            current.insert(key.to_string());
            let text = problem.to_string();
            if self.reported.get(key) == Some(&text) {
                continue;
            }
            let reason = problem.reason().as_str();
            warn!(record = %key, client_id = client.unwrap_or("-"), reason, "record skipped: {text}");
            metrics.skipped_first_seen(problem.reason());
            self.reported.insert(key.to_string(), text);
        }
        self.reported.retain(|k, _| current.contains(k));
        metrics.set_skipped(&counts);
        let plaintext = self.mirror.plaintext();
        metrics.set_records(self.seated.len(), plaintext.len());
        for key in plaintext {
            if self.plaintext_warned.insert(key.to_string()) {
                warn!(record = %key, "the record's token is stored in plaintext; encrypt it with `musicbot-operator bots encrypt`");
            }
        }
    }
}

impl Follower for FleetRecords {
    type Error = mongodb::error::Error;

    fn records(&self) -> &Collection<Document> {
        &self.records
    }

    #[tracing::instrument(skip_all, fields(collection = %self.collection, reason = reason.as_str()))]
    async fn resync(&mut self, reason: ResyncReason) -> Result<(), Self::Error> {
        let started = Instant::now();
        self.rt.metrics.fleet().follow.resync(reason);
        self.mirror = Mirror::read(&self.records, self.cipher.as_deref()).await?;
        self.converge().await;
        let (records, bots, took_ms) = (self.mirror.len(), self.seated.len(), started.elapsed().as_millis() as u64);
        if reason.is_routine() {
            debug!(records, bots, took_ms, "full resync done");
        } else {
            info!(records, bots, took_ms, "full resync done");
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(collection = %self.collection, record = %follow::record_key(id)))]
    async fn on_change(&mut self, id: &Bson) -> Result<(), Self::Error> {
        self.mirror.reread(&self.records, id, self.cipher.as_deref()).await?;
        self.converge().await;
        Ok(())
    }

    async fn tick(&mut self) {
        if self.guard.settled() {
            self.converge().await;
        }
    }

    fn set_up(&self, up: bool) {
        self.rt.metrics.fleet().follow.set_up(up);
    }

    fn event_handled(&self, lag: Option<Duration>) {
        self.rt.metrics.fleet().follow.stream_event(lag);
    }

    fn failed(&self, _: &Self::Error) {
        self.rt.metrics.fleet().follow.error("mongodb");
    }
}
