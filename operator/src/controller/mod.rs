//! The MusicBot controller: watches MusicBots, their StatefulSets and pods, and the Secrets
//! holding their tokens, and reconciles each bot into one bot-runner pod per shard.

mod commands;
mod fleet;
mod guilds;
mod identify;
pub mod reconcile;
mod status;
mod token;
pub(crate) mod workload;

use crate::metrics::Metrics;
use futures::{Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Predicate, WatchStreamExt, predicates};
use musicbot_api::conditions::Reason;
use musicbot_api::crd::MusicBot;
use musicbot_api::labels;
// The module only: `watcher()` below is this module's own, which every watch goes through.
use kube::runtime::watcher::{self};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
// `statefulset`: the chart test checks the admission policy against what is really built.
pub use workload::{BotDefaults, statefulset};

const FIELD_MANAGER: &str = "musicbot-operator";

/// What the controller watches: a MusicBot, or the reason a stored one does not deserialize
/// (stored while the CRD's schema was looser, or by another version of the operator). A bad
/// object then fails alone, instead of failing the list and the watch of every MusicBot.
pub type Guarded = DeserializeGuard<MusicBot>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("MusicBot is not namespaced")]
    NotNamespaced,
    #[error("Discord API: {0}")]
    Discord(String),
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Finalizer(inner) => match &**inner {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
            Error::NotNamespaced => "spec",
            Error::Discord(_) => "discord",
        }
    }
}

pub struct Context {
    pub client: Client,
    defaults: BotDefaults,
    recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// For bots' `/status` and Discord's API (never sends the token anywhere else).
    http: reqwest::Client,
    discord_api_url: String,
    /// How often a running bot's counts are refreshed.
    status_interval: Duration,
    /// Most reconciles running at once; bounds memory and API load in a burst.
    pub concurrency: u16,
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
    /// With MongoDB: bots' guilds written from their pods' `/status` (the pods hold no URI).
    guilds: Option<guilds::GuildSync>,
    /// The resourceVersion of each bot's StatefulSet as its last reconcile saw it.
    seen_statefulsets: SeenVersions,
    /// Per (namespace, fleet): the digest of the directory each bot-runner (by pod uid and
    /// container restarts) was last told.
    fleet_directories: Mutex<HashMap<(String, String), HashMap<String, String>>>,
    /// Identify holds this operator set, by (namespace, name): the cache can hand the next
    /// reconcile a MusicBot whose status does not show the hold yet.
    pub(crate) holds: Mutex<HashMap<(String, String), chrono::DateTime<chrono::Utc>>>,
    /// With MongoDB and a known address: (the sync namespace, this operator's
    /// `/fleet/invite` URL), given in the directory of that namespace's default fleet.
    fleet_invites: Option<(String, String)>,
}

impl Context {
    pub fn new(
        client: Client,
        defaults: BotDefaults,
        metrics: Arc<Metrics>,
        discord_api_url: String,
        status_interval: Duration,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            metrics,
            // No redirects: a bot pod (whoever runs in it) must not make the operator fetch
            // another address, in the cluster or beyond it, nor hand a Discord call elsewhere.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client"),
            discord_api_url,
            status_interval,
            concurrency: 16,
            failures: Mutex::new(HashMap::new()),
            guilds: None,
            seen_statefulsets: SeenVersions::default(),
            fleet_directories: Mutex::default(),
            holds: Mutex::default(),
            fleet_invites: None,
        }
    }

    /// Tracks bots' guilds in these records. Only the leader runs the controller, so only
    /// the leader writes.
    pub fn with_guild_tracking(mut self, db: mongodb::Database, collections: musicbot_db::Collections) -> Self {
        self.guilds = Some(guilds::GuildSync::new(db, collections));
        self
    }

    /// Tells the bots of `namespace`'s default fleet (the sync's) to ask `url` whom to
    /// invite to a server none of them is free in.
    pub fn with_fleet_invites(mut self, namespace: String, url: String) -> Self {
        self.fleet_invites = Some((namespace, url));
        self
    }
}

/// Versions of objects a reconcile has already seen, by namespace and name. A watch event
/// carrying such a version is the echo of the reconcile's own write (or of a state it read):
/// reconciling again for it would find nothing new. The StatefulSet an apply creates
/// otherwise brought a second, idle reconcile of every new bot.
#[derive(Default)]
struct SeenVersions(Mutex<HashMap<(String, String), String>>);

impl SeenVersions {
    fn saw<K: Resource>(&self, obj: &K) {
        let meta = obj.meta();
        if let (Some(ns), Some(name), Some(version)) = (&meta.namespace, &meta.name, &meta.resource_version) {
            self.0.lock().expect("not poisoned").insert((ns.clone(), name.clone()), version.clone());
        }
    }

    /// Whether `obj` is in the version last seen; forgets that version either way, as
    /// every later event is news.
    fn is_echo<K: Resource>(&self, obj: &K) -> bool {
        let meta = obj.meta();
        let key = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        let seen = self.0.lock().expect("not poisoned").remove(&key);
        seen.is_some() && seen == meta.resource_version
    }

    fn forget(&self, namespace: &str, name: &str) {
        self.0.lock().expect("not poisoned").remove(&(namespace.to_string(), name.to_string()));
    }
}

/// Requeue a failing bot with exponential backoff (5 s doubling up to 5 min), so a broken
/// object neither hot-loops nor waits long after it is fixed.
pub fn error_policy(bot: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*bot);
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let n = failures.entry(key).and_modify(|n| *n += 1).or_insert(0);
    let delay = Duration::from_secs(5u64.saturating_mul(1 << (*n).min(6))).min(Duration::from_secs(300));
    warn!(bot = %bot.name_any(), namespace = ?bot.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn bots_using_secret(store: &Store<Guarded>, secret_ns: Option<String>, secret_name: &str) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|b| {
            b.0.as_ref().is_ok_and(|b| b.namespace() == secret_ns && b.spec.token_secret_ref.name == secret_name)
        })
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

/// One reconcile, valid or not, in a span naming the bot.
#[tracing::instrument(skip_all, fields(bot = %bot.name_any(), namespace = bot.namespace().as_deref().unwrap_or_default()))]
async fn reconcile_guarded(bot: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    match &bot.0 {
        // The finalizer helper wants the MusicBot itself behind its own Arc.
        Ok(valid) => reconcile::reconcile(Arc::new(valid.clone()), ctx).await,
        Err(invalid) => invalid_bot(&bot, invalid, &ctx).await,
    }
}

/// A MusicBot that does not deserialize is not reconciled: a Warning Event and a log line
/// say why. One being deleted loses the operator's finalizer, as its cleanup cannot run
/// without a spec, so that it does not hang in deletion.
async fn invalid_bot(bot: &Guarded, invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    warn!(error = %invalid.error, "the MusicBot does not deserialize; not reconciling it");
    let deleted = invalid.metadata.deletion_timestamp.is_some();
    let what = if deleted { "deleted without its cleanup" } else { "not reconciled" };
    let note = format!("{what}: the object does not match the MusicBot type: {}", invalid.error);
    let event = Event {
        type_: EventType::Warning,
        reason: Reason::InvalidObject.as_str().into(),
        // An Event's note holds at most 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: if deleted { "Cleanup" } else { "Reconcile" }.into(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &bot.object_ref(&())).await?;
    let finalizers = invalid.metadata.finalizers.clone().unwrap_or_default();
    if deleted && finalizers.iter().any(|f| f == labels::FINALIZER) {
        let (ns, name) = (bot.namespace().ok_or(Error::NotNamespaced)?, bot.name_any());
        let others: Vec<&String> = finalizers.iter().filter(|f| *f != labels::FINALIZER).collect();
        // The resourceVersion makes this a compare-and-swap: another writer's finalizers stay.
        let patch = serde_json::json!({
            "metadata": {"finalizers": others, "resourceVersion": invalid.metadata.resource_version}
        });
        Api::<Guarded>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.metrics.forget(&ns, &name);
    }
    // Its watch brings it back once it is edited.
    Ok(Action::await_change())
}

/// Every watch of the controller goes through here, not through kube-runtime's `watcher`
/// alone, whose use left the operator deaf for 30–130 s after an API server restart:
/// - the Controller puts one client-go style backoff (0.8 s doubling to 30 s, plus up to
///   100 % jitter) over all its watches together, reset only by a success. While the API
///   server was down it grew to 30–60 s, and the operator slept through the server's return;
/// - a restarted API server's watch cache starts at etcd's current revision, so it answers
///   every resumed watch 410 Gone. The watcher re-lists by itself after that, but the error
///   still counted as a failure: each watch, in turn, cost another 30–60 s of backoff.
///
/// So a 410 is no failure here, each watch backs off on its own and briefly (a retry costs
/// the API server one request), and errors are logged here and kept from the Controller,
/// whose shared backoff then never engages.
fn watcher<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    let mut failing = false;
    watcher::watcher(api, config)
        .filter(|event| {
            let gone = matches!(event, Err(watcher::Error::WatchError(status)) if status.code == 410);
            if gone {
                debug!("watch expired (410 Gone); re-listing");
            }
            future::ready(!gone)
        })
        .backoff(watch_backoff())
        .filter_map(move |event| {
            future::ready(match event {
                Ok(event) => {
                    if std::mem::take(&mut failing) {
                        info!(%kind, "watching the Kubernetes API again");
                    }
                    Some(Ok(event))
                }
                Err(error) => {
                    // Once per outage and watch at `warn`; the retries at `debug`.
                    if std::mem::replace(&mut failing, true) {
                        debug!(%kind, %error, "watch failed; retrying");
                    } else {
                        warn!(%kind, %error, "watch failed; retrying every few seconds");
                    }
                    None
                }
            })
        })
}

/// 0.5 s doubling to 2 s, each delay plus up to its own length of jitter: a watch is back
/// within 4 s of the API server answering.
fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .into()
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    // Secrets and StatefulSets are watched as metadata only: the operator never caches
    // token data, and needs nothing of a StatefulSet to know which bot to reconcile.
    type Meta<K> = Api<PartialObjectMeta<K>>;
    let pods: Meta<Pod> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (bots, stsets, secrets): (Api<Guarded>, Meta<StatefulSet>, Meta<Secret>) = match &namespace {
        Some(ns) => {
            (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns), Api::namespaced(client, ns))
        }
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
    };
    let bot_pods =
        watcher::Config::default().labels(&format!("{}=bot-runner,{}", labels::NAME_LABEL, labels::BOT_LABEL));
    let managed = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY_LABEL, labels::OPERATOR));
    let (reader, writer) = reflector::store();
    let bots = reflector::reflector(writer, watcher(bots, watcher::Config::default().any_semantic()));
    // The operator's own status writes change neither the generation (the spec) nor the
    // metadata, and would otherwise bring every bot straight back for nothing. The store
    // still gets every change: reconciles read the latest status from it.
    let bot_changes = bots.applied_objects().predicate_filter(
        predicates::generation
            .combine(predicates::labels)
            .combine(predicates::annotations)
            .combine(predicates::finalizers),
        Default::default(),
    );
    let controller = Controller::for_stream(bot_changes, reader);
    let store = controller.store();
    let secret_changes = watcher(secrets, watcher::Config::default().any_semantic()).touched_objects();
    info!(namespace = namespace.as_deref().unwrap_or("<all>"), "starting the MusicBot controller");
    let echoes = ctx.clone();
    let stset_changes = watcher(stsets, managed)
        .touched_objects()
        .try_filter(move |sts| future::ready(!echoes.seen_statefulsets.is_echo(sts)));
    controller
        .owns_stream(stset_changes)
        .watches_stream(secret_changes, move |secret| bots_using_secret(&store, secret.namespace(), &secret.name_any()))
        // A pod that cannot pull, crashes or cannot be scheduled changes nothing the
        // StatefulSet shows: watch the bot pods themselves (metadata only, by their label).
        .watches_stream(watcher(pods, bot_pods).touched_objects(), |pod| {
            let bot = pod.labels().get(labels::BOT_LABEL)?;
            Some(ObjectRef::new(bot).within(&pod.namespace()?))
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.concurrency))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile_guarded, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok((obj, _)) => {
                        ctx.failures.lock().expect("not poisoned").remove(&obj);
                    }
                    Err(e) => tracing::debug!("controller: {e}"),
                }
            }
        })
        .await;
    info!("the MusicBot controller stopped");
}

#[cfg(test)]
mod tests {
    use super::SeenVersions;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(name: &str, version: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("music".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_the_version_a_reconcile_saw_is_an_echo_and_only_once() {
        let seen = SeenVersions::default();
        assert!(!seen.is_echo(&sts("radio", "7")), "nothing seen yet");
        seen.saw(&sts("radio", "7"));
        assert!(!seen.is_echo(&sts("jazz", "7")), "another bot's StatefulSet");
        assert!(seen.is_echo(&sts("radio", "7")));
        assert!(!seen.is_echo(&sts("radio", "7")), "an echo is dropped once");

        seen.saw(&sts("radio", "8"));
        assert!(!seen.is_echo(&sts("radio", "9")), "a later change (status, edit, deletion) is news");
        assert!(!seen.is_echo(&sts("radio", "8")), "and clears what was seen");

        seen.saw(&sts("radio", "10"));
        seen.forget("music", "radio");
        assert!(!seen.is_echo(&sts("radio", "10")));
    }
}
