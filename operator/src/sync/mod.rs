//! MongoDB → cluster sync: every `MusicBotDB` record becomes a Secret (its token) and a
//! MusicBot labelled as made by the sync, kept in step through change streams (polling
//! where the server has none). See docs/sync.md.
//!
//! - `desired`: pure record → objects; `plan`: pure mirror of the collection and the step per
//!   MusicBot; `apply`: the Kubernetes side; `stream`/`resume`: following MongoDB.
//! - Runs on the elected leader only, beside the controller.

mod apply;
mod desired;
pub mod metrics;
mod plan;

use crate::config::SyncMode;
use crate::metrics::Metrics;
use apply::{Known, KubeSide, Outcome};
use futures::StreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};
use musicbot_db::follow::{self, DeletionGuard, Follower, Mirror, Removal, ResyncReason, SkipReason};
use musicbot_db::{Collections, TokenCipher};
use plan::{Applied, Problem, Step};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Writes to Kubernetes in flight during a resync.
const CONCURRENCY: usize = 16;
/// How often MusicBots whose last write failed are retried.
const RETRY_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the synced Secrets and MusicBots.
    pub namespace: String,
    pub collections: Collections,
    /// Where the resume token is kept.
    pub state_collection: String,
    pub mode: SyncMode,
    pub poll_interval: Duration,
    /// Full resyncs while following a change stream, as a safety net for objects deleted
    /// or edited by hand.
    pub resync_interval: Duration,
    /// This replica, for Events.
    pub instance: Option<String>,
    /// Deleting more than this share of the synced MusicBots at once (or all of them) is
    /// held until `allow_mass_delete`.
    pub max_delete_percent: u8,
    /// The override: mass deletions go through.
    pub allow_mass_delete: bool,
}

/// Runs the sync until `stop` is cancelled. Never returns early: MongoDB or Kubernetes
/// failures are retried with backoff.
pub async fn run(
    client: kube::Client,
    db: Database,
    cipher: Option<Arc<TokenCipher>>,
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    info!(
        namespace = %settings.namespace,
        collection = %settings.collections.bots,
        mode = ?settings.mode,
        encryption = cipher.is_some(),
        "starting the MongoDB sync"
    );
    let mut syncer = Syncer::new(client, &db, cipher, &settings, metrics);
    let mut resume =
        follow::ResumeStore::new(&db, &settings.state_collection, &settings.collections.bots, &settings.namespace);
    let follow = follow::Settings {
        mode: settings.mode,
        poll_interval: settings.poll_interval,
        resync_interval: settings.resync_interval,
    };
    follow::run(&mut syncer, &mut resume, &follow, &stop).await;
    info!("the MongoDB sync stopped");
}

/// A failure that interrupts following MongoDB.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl SyncError {
    fn side(&self) -> &'static str {
        match self {
            SyncError::Mongo(_) => "mongodb",
            SyncError::Kube(_) => "kubernetes",
        }
    }
}

impl Follower for Syncer {
    type Error = SyncError;

    fn records(&self) -> &Collection<Document> {
        &self.records
    }

    async fn resync(&mut self, reason: ResyncReason) -> Result<(), SyncError> {
        self.resync_all(reason).await
    }

    async fn on_change(&mut self, id: &Bson) -> Result<(), SyncError> {
        self.record_changed(id).await
    }

    async fn tick(&mut self) {
        self.retry_dirty().await;
        if self.guard.settled() {
            self.converge(BTreeSet::new(), false).await;
            self.report().await;
        }
    }

    fn set_up(&self, up: bool) {
        self.metrics.sync.follow.set_up(up);
    }

    fn event_handled(&self, lag: Option<Duration>) {
        self.metrics.sync.follow.stream_event(lag);
    }

    fn failed(&self, error: &SyncError) {
        self.metrics.sync.follow.error(error.side());
    }
}

/// The sync's state: the mirror of the collection and what it last applied.
struct Syncer {
    kube: KubeSide,
    records: Collection<Document>,
    collection: String,
    cipher: Option<Arc<TokenCipher>>,
    mirror: Mirror,
    /// Synced MusicBots by name.
    applied: BTreeMap<String, Applied>,
    /// Names of hand-made objects, as of the last resync.
    unmanaged: HashSet<String>,
    /// MusicBot names whose record cannot be synced because the name is taken: name → record.
    name_taken: BTreeMap<String, (String, Problem)>,
    /// MusicBot names whose last write failed; retried.
    dirty: BTreeSet<String>,
    last_retry: Instant,
    /// What was last reported per record, so each problem is logged and evented once.
    reported: HashMap<String, String>,
    plaintext_warned: HashSet<String>,
    /// Holds the removal of too many MusicBots at once (by MusicBot name).
    guard: DeletionGuard,
    metrics: Arc<Metrics>,
}

impl Syncer {
    fn new(
        client: kube::Client,
        db: &Database,
        cipher: Option<Arc<TokenCipher>>,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            kube: KubeSide::new(client, &settings.namespace, &settings.collections.bots, settings.instance.clone()),
            records: db.collection(&settings.collections.bots),
            collection: settings.collections.bots.clone(),
            cipher,
            mirror: Mirror::default(),
            applied: BTreeMap::new(),
            unmanaged: HashSet::new(),
            name_taken: BTreeMap::new(),
            dirty: BTreeSet::new(),
            last_retry: Instant::now(),
            reported: HashMap::new(),
            plaintext_warned: HashSet::new(),
            guard: DeletionGuard::new(settings.max_delete_percent, settings.allow_mass_delete),
            metrics,
        }
    }

    /// Reads every record and every synced object, and converges all of them.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, reason = reason.as_str()))]
    async fn resync_all(&mut self, reason: ResyncReason) -> Result<(), SyncError> {
        let started = Instant::now();
        self.metrics.sync.follow.resync(reason);
        let mirror = Mirror::read(&self.records, self.cipher.as_deref()).await?;
        let listing = self.kube.list().await?;
        self.mirror = mirror;
        self.applied = listing.applied;
        self.unmanaged = listing.unmanaged;
        self.name_taken.clear();
        let names: BTreeSet<String> =
            self.mirror.clients().map(desired::bot_name).chain(self.applied.keys().cloned()).collect();
        self.converge(names, true).await;
        self.delete_orphaned_secrets(&listing.managed_secrets).await;
        self.report().await;
        let took_ms = started.elapsed().as_millis() as u64;
        let (records, synced) = (self.mirror.len(), self.applied.len());
        // Polling resyncs all the time: only the first and unusual ones are worth a line.
        if reason.is_routine() {
            tracing::debug!(records, synced, took_ms, "full resync done");
        } else {
            info!(records, synced, took_ms, "full resync done");
        }
        Ok(())
    }

    /// Secrets left behind (e.g. by a crash between deleting a MusicBot and its Secret).
    async fn delete_orphaned_secrets(&self, managed_secrets: &BTreeSet<String>) {
        let wanted: HashSet<String> = self.applied.keys().map(|n| desired::secret_name(n)).collect();
        for orphan in managed_secrets.iter().filter(|s| !wanted.contains(*s)) {
            if let Err(e) = self.kube.delete_managed_secret(orphan).await {
                warn!(secret = %orphan, "could not delete an orphaned synced Secret: {e}");
            } else {
                self.metrics.sync.write("delete");
            }
        }
    }

    /// One record changed (inserted, updated, replaced or deleted): re-read it and converge
    /// the MusicBots it touches.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, record = %follow::record_key(id)))]
    async fn record_changed(&mut self, id: &Bson) -> Result<(), SyncError> {
        let (key, old) = self.mirror.reread(&self.records, id, self.cipher.as_deref()).await?;
        let names = plan::affected(&key, old.as_ref(), self.mirror.get(&key), self.applied.iter());
        self.converge(names, false).await;
        self.report().await;
        Ok(())
    }

    /// Retries MusicBots whose last write failed.
    async fn retry_dirty(&mut self) {
        if self.dirty.is_empty() || self.last_retry.elapsed() < RETRY_EVERY {
            return;
        }
        self.last_retry = Instant::now();
        let names = std::mem::take(&mut self.dirty);
        self.converge(names, false).await;
        self.report().await;
    }

    /// Brings the MusicBots `names` in line with the mirror: decides each one's step, carries
    /// the steps out concurrently, and keeps what came of them.
    async fn converge(&mut self, mut names: BTreeSet<String>, from_listing: bool) {
        // Held deletions are decided again each time, so they count towards any new ones.
        names.extend(self.guard.held().iter().chain(self.guard.waiting()).cloned());
        let steps: Vec<Planned> = names.into_iter().filter_map(|name| self.plan(name, from_listing)).collect();
        let steps = self.hold_mass_deletion(steps).await;
        let kube = &self.kube;
        let results: Vec<_> = futures::stream::iter(steps)
            .map(|p| async move {
                let record = match &p.step {
                    Step::Apply(d) => Some(d.record_key.clone()),
                    _ => None,
                };
                let op = p.step.op();
                let result = kube.execute(&p.name, p.step, p.known, p.current).await;
                (p.name, record, op, result)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, record, op, result) in results {
            self.keep(name, record, op, result);
        }
        let plaintext = self.mirror.plaintext().len();
        self.metrics.sync.follow.set_records(self.applied.len(), plaintext);
    }

    /// Takes the deletions (and deactivations, which stop a bot as surely) out of `steps`
    /// while their burst settles, and for good when they are too many at once (see
    /// [`follow::guard`]), and reports what is held.
    async fn hold_mass_deletion(&mut self, steps: Vec<Planned>) -> Vec<Planned> {
        let removal = |p: &Planned| match &p.step {
            Step::Delete => Some(Removal::Delete),
            Step::Apply(want) if want.suspended && p.current.as_ref().is_some_and(|c| !c.suspended) => {
                Some(Removal::Deactivate)
            }
            Step::Apply(_) | Step::MarkInvalid(_) => None,
        };
        let proposed: BTreeMap<String, Removal> =
            steps.iter().filter_map(|p| Some((p.name.clone(), removal(p)?))).collect();
        let previously = self.guard.held().clone();
        let verdict = self.guard.check(&proposed, self.applied.len(), |n| self.applied.contains_key(n));
        if verdict.changed {
            self.report_held(&previously, &verdict).await;
        }
        self.metrics.sync.follow.set_deletions_held(verdict.held.len());
        steps.into_iter().filter(|p| !verdict.held.contains(&p.name) && !verdict.waiting.contains(&p.name)).collect()
    }

    /// Says once per change of the held set what is held and how to let it go.
    async fn report_held(&self, previously: &BTreeSet<String>, verdict: &follow::Verdict) {
        let (held, deleting, fleet) = (&verdict.held, verdict.removing, verdict.fleet);
        for name in previously.difference(held) {
            self.kube.released(name).await;
        }
        if held.is_empty() {
            info!("no deletion is held any more");
            return;
        }
        let percent = self.guard.max_percent();
        warn!(
            held = held.len(),
            deleting,
            fleet,
            max_percent = percent,
            "the records of {deleting} of {fleet} synced MusicBots are gone or deactivated: holding that as a \
             mass deletion (an emptied or renamed collection?); restore the records, or restart with \
             --sync-allow-mass-delete to let it go"
        );
        let note = format!(
            "its record is gone from {} or deactivated, as are those of {deleting} of {fleet} synced MusicBots \
             (more than {percent} %): its deletion or suspension is held; restore the records, or let it go \
             with --sync-allow-mass-delete",
            self.collection
        );
        for name in held.difference(previously) {
            self.kube.held(name, &note).await;
        }
    }

    /// The step for one MusicBot, if it needs one, and what is known of who owns its name.
    fn plan(&mut self, name: String, from_listing: bool) -> Option<Planned> {
        let current = self.applied.get(&name).cloned();
        let step = plan::decide(&self.mirror, &self.collection, &name, current.as_ref());
        if step.is_none() {
            self.name_taken.remove(&name);
            self.dirty.remove(&name);
        }
        let taken = || self.unmanaged.contains(&name) || self.unmanaged.contains(&desired::secret_name(&name));
        let known = match (current.is_some(), from_listing) {
            (true, _) => Known::Managed,
            (false, true) if taken() => Known::Unmanaged,
            // The listing was just made: no need to look again.
            (false, true) => Known::Free,
            (false, false) => Known::Unknown,
        };
        Some(Planned { step: step?, name, known, current })
    }

    /// Keeps what came of one MusicBot's step.
    fn keep(&mut self, name: String, record: Option<String>, op: &'static str, result: Result<Outcome, kube::Error>) {
        match result {
            Ok(Outcome::Applied(a)) => {
                self.metrics.sync.write(op);
                info!(musicbot = %name, record = %a.record_key, op, "synced");
                self.applied.insert(name.clone(), a);
                self.name_taken.remove(&name);
                self.dirty.remove(&name);
            }
            Ok(Outcome::Deleted) => {
                self.metrics.sync.write(op);
                info!(musicbot = %name, "record gone: deleted its MusicBot and Secret");
                self.applied.remove(&name);
                self.dirty.remove(&name);
            }
            Ok(Outcome::NameTaken { kind, name: taken }) => {
                let problem = Problem::NameTaken { kind, name: taken };
                self.name_taken.insert(name.clone(), (record.unwrap_or_default(), problem));
                self.dirty.remove(&name);
            }
            Err(e) => {
                self.metrics.sync.follow.error("kubernetes");
                warn!(musicbot = %name, op, "could not sync; retrying: {e}");
                self.dirty.insert(name);
            }
        }
    }

    /// Logs, events and counts each new problem once; updates the gauges.
    async fn report(&mut self) {
        let current = self.problems();
        let mut counts: BTreeMap<SkipReason, usize> = BTreeMap::new();
        for (key, (client, problem)) in &current {
            *counts.entry(problem.reason()).or_default() += 1;
            let text = problem.to_string();
            if self.reported.get(key) == Some(&text) {
                continue;
            }
            let reason = problem.reason().as_str();
            warn!(record = %key, client_id = client.as_deref().unwrap_or("-"), reason, "record skipped: {text}");
            self.metrics.sync.follow.skipped_first_seen(problem.reason());
            let in_the_way = match problem {
                Problem::NameTaken { kind, name } => Some((*kind, name.as_str())),
                _ => None,
            };
            self.kube.warn(key, "RecordSkipped", &text, in_the_way).await;
            self.reported.insert(key.clone(), text);
        }
        self.reported.retain(|k, _| current.contains_key(k));
        self.metrics.sync.follow.set_skipped(&counts);
        self.warn_plaintext();
    }

    /// Every record kept out of the cluster, by record key: its client id and why.
    fn problems(&self) -> BTreeMap<String, (Option<String>, Problem)> {
        let mut current: BTreeMap<String, (Option<String>, Problem)> = self
            .mirror
            .problems()
            .into_iter()
            .map(|(k, c, p)| (k.to_string(), (c.map(str::to_string), Problem::Content(p))))
            .collect();
        for (name, (record, problem)) in &self.name_taken {
            current.insert(record.clone(), (Some(desired::client_of(name).to_string()), problem.clone()));
        }
        current
    }

    /// Warns once per record whose token is stored in plaintext.
    fn warn_plaintext(&mut self) {
        let fresh: Vec<String> = self
            .mirror
            .plaintext()
            .into_iter()
            .filter(|k| self.plaintext_warned.insert(k.to_string()))
            .map(str::to_string)
            .collect();
        // One line per record for a few, one line in all for an old database's many.
        const HINT: &str = "run `musicbot-operator bots encrypt` with the token key";
        if fresh.len() <= 5 {
            for key in &fresh {
                warn!(record = %key, "the record's token is stored in plaintext; {HINT}");
            }
        } else {
            warn!(count = fresh.len(), first = %fresh[0], "records store their token in plaintext; {HINT}");
        }
    }
}

/// One MusicBot's step, as [`Syncer::converge`] hands it to the Kubernetes side.
struct Planned {
    name: String,
    step: Step,
    known: Known,
    current: Option<Applied>,
}
