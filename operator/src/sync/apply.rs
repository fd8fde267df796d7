//! The sync's Kubernetes side: list what it manages, carry out steps, report problems as
//! Events. It changes or deletes only objects labelled as made by the sync.

use super::desired::{self, Desired, FIELD_MANAGER, ObjectKind};
use super::plan::{Applied, Step};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use musicbot_api::crd::MusicBot;
use musicbot_api::labels::{RECORD_LABEL, SYNC_ERROR, SYNC_HASH, SYNC_HELD};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tracing::debug;

/// What the cluster holds in the sync namespace.
pub(crate) struct Listing {
    /// Synced MusicBots by name.
    pub(crate) applied: BTreeMap<String, Applied>,
    /// Names of MusicBots and Secrets a person (or another tool) made: never touched.
    pub(crate) unmanaged: HashSet<String>,
    /// Synced Secrets by name.
    pub(crate) managed_secrets: BTreeSet<String>,
}

/// Whether the sync already knows who owns a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    Managed,
    Unmanaged,
    /// Neither name exists (per a listing just made).
    Free,
    /// Not seen yet: look before writing.
    Unknown,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Applied(Applied),
    Deleted,
    NameTaken { kind: ObjectKind, name: String },
}

pub(crate) struct KubeSide {
    namespace: String,
    collection: String,
    bots: Api<MusicBot>,
    secrets: Api<Secret>,
    recorder: Recorder,
}

impl KubeSide {
    pub(crate) fn new(client: Client, namespace: &str, collection: &str, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance };
        Self {
            namespace: namespace.into(),
            collection: collection.into(),
            bots: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            recorder: Recorder::new(client, reporter),
        }
    }

    pub(crate) async fn list(&self) -> Result<Listing, kube::Error> {
        let secrets = self.secrets.list_metadata(&ListParams::default()).await?;
        let mut unmanaged = HashSet::new();
        let mut managed_secrets = BTreeSet::new();
        for s in secrets.items {
            if desired::is_managed(s.metadata.labels.as_ref()) {
                managed_secrets.insert(s.name_any());
            } else {
                unmanaged.insert(s.name_any());
            }
        }
        let mut applied = BTreeMap::new();
        for bot in self.bots.list(&ListParams::default()).await?.items {
            let name = bot.name_any();
            if !desired::is_managed(bot.metadata.labels.as_ref()) {
                unmanaged.insert(name);
                continue;
            }
            let annotations = bot.annotations();
            let entry = Applied {
                record_key: bot.labels().get(RECORD_LABEL).cloned().unwrap_or_default(),
                hash: annotations.get(SYNC_HASH).cloned().unwrap_or_default(),
                invalid: annotations.get(SYNC_ERROR).cloned(),
                secret: managed_secrets.contains(&desired::secret_name(&name)),
                suspended: bot.spec.suspended,
            };
            applied.insert(name, entry);
        }
        Ok(Listing { applied, unmanaged, managed_secrets })
    }

    /// Carries out one step for the MusicBot `name`. `current` is what the sync last knew of it.
    #[tracing::instrument(level = "debug", skip_all, fields(musicbot = name, op = step.op()))]
    pub(crate) async fn execute(
        &self,
        name: &str,
        step: Step,
        known: Known,
        current: Option<Applied>,
    ) -> Result<Outcome, kube::Error> {
        match step {
            Step::Apply(want) => {
                if let Some(taken) = self.taken_by_hand(name, known).await? {
                    return Ok(taken);
                }
                self.apply(name, &want, current.as_ref()).await?;
                Ok(Outcome::Applied(Applied {
                    record_key: want.record_key.clone(),
                    hash: want.hash.clone(),
                    invalid: None,
                    secret: true,
                    suspended: want.suspended,
                }))
            }
            Step::MarkInvalid(why) => {
                self.set_sync_error(name, Some(&why)).await?;
                let mut applied = current.unwrap_or_else(|| Applied {
                    record_key: String::new(),
                    hash: String::new(),
                    invalid: None,
                    secret: true,
                    suspended: false,
                });
                applied.invalid = Some(why);
                Ok(Outcome::Applied(applied))
            }
            Step::Delete => {
                self.delete_managed_bot(name).await?;
                self.delete_managed_secret(&desired::secret_name(name)).await?;
                Ok(Outcome::Deleted)
            }
        }
    }

    /// The hand-made object in the way of the MusicBot `name` or its Secret, if any.
    async fn taken_by_hand(&self, name: &str, known: Known) -> Result<Option<Outcome>, kube::Error> {
        let musicbot = || Outcome::NameTaken { kind: ObjectKind::MusicBot, name: name.into() };
        match known {
            Known::Managed | Known::Free => Ok(None),
            Known::Unmanaged => Ok(Some(musicbot())),
            Known::Unknown => {
                if let Some(b) = self.bots.get_metadata_opt(name).await?
                    && !desired::is_managed(b.metadata.labels.as_ref())
                {
                    return Ok(Some(musicbot()));
                }
                let secret_name = desired::secret_name(name);
                if let Some(s) = self.secrets.get_metadata_opt(&secret_name).await?
                    && !desired::is_managed(s.metadata.labels.as_ref())
                {
                    return Ok(Some(Outcome::NameTaken { kind: ObjectKind::Secret, name: secret_name }));
                }
                Ok(None)
            }
        }
    }

    /// Server-side applies the Secret and the MusicBot a record wants.
    async fn apply(&self, name: &str, want: &Desired, current: Option<&Applied>) -> Result<(), kube::Error> {
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        // Secret first: a MusicBot whose Secret is missing would flash TokenNotResolved.
        self.secrets.patch(&desired::secret_name(name), &apply, &Patch::Apply(&want.secret())).await?;
        self.bots.patch(name, &apply, &Patch::Apply(&want.musicbot(&now()))).await?;
        if current.is_some_and(|c| c.invalid.is_some()) {
            self.set_sync_error(name, None).await?;
        }
        Ok(())
    }

    async fn set_sync_error(&self, name: &str, why: Option<&str>) -> Result<(), kube::Error> {
        self.set_annotation(name, SYNC_ERROR, why).await
    }

    /// Sets (or, with None, removes) one annotation of a synced MusicBot.
    async fn set_annotation(&self, name: &str, key: &str, value: Option<&str>) -> Result<(), kube::Error> {
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.bots.patch(name, &params, &Patch::Merge(&patch)).await.map(|_| ())
    }

    async fn delete_managed_bot(&self, name: &str) -> Result<(), kube::Error> {
        let Some(meta) = self.bots.get_metadata_opt(name).await? else { return Ok(()) };
        if !desired::is_managed(meta.metadata.labels.as_ref()) {
            return Ok(());
        }
        ignore_gone(self.bots.delete(name, &only(meta.metadata.uid)).await.map(|_| ()))
    }

    pub(crate) async fn delete_managed_secret(&self, name: &str) -> Result<(), kube::Error> {
        let Some(meta) = self.secrets.get_metadata_opt(name).await? else { return Ok(()) };
        if !desired::is_managed(meta.metadata.labels.as_ref()) {
            return Ok(());
        }
        ignore_gone(self.secrets.delete(name, &only(meta.metadata.uid)).await.map(|_| ()))
    }

    /// A Warning Event about a record that is not synced. It regards the record itself
    /// (`kubectl get events` shows `MusicBotDB/<_id>`), or the hand-made object in the way.
    pub(crate) async fn warn(
        &self,
        record_key: &str,
        reason: &str,
        note: &str,
        in_the_way: Option<(ObjectKind, &str)>,
    ) {
        let regarding = match in_the_way {
            Some((kind, name)) => ObjectReference {
                api_version: Some(kind.api_version().into_owned()),
                kind: Some(kind.kind().into_owned()),
                name: Some(name.into()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            None => ObjectReference {
                api_version: Some(MusicBot::api_version(&()).into_owned()),
                kind: Some(self.collection.clone()),
                name: Some(desired::event_safe(record_key)),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
        };
        let note: String = format!("{}/{record_key}: {note}", self.collection).chars().take(1000).collect();
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &regarding).await {
            debug!("could not publish Event {reason}: {e}");
        }
    }
}

impl KubeSide {
    /// A Warning Event on a synced MusicBot whose deletion is held, where `kubectl describe`
    /// shows it.
    pub(crate) async fn held(&self, name: &str, note: &str) {
        let regarding = ObjectReference {
            api_version: Some(MusicBot::api_version(&()).into_owned()),
            kind: Some(MusicBot::kind(&()).into_owned()),
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "MassDeletionHeld".into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &regarding).await {
            debug!("could not publish Event MassDeletionHeld: {e}");
        }
        // The controller turns this into the MusicBot's Synced condition.
        if let Err(e) = self.set_annotation(name, SYNC_HELD, Some(note)).await {
            debug!("could not mark {name} as held: {e}");
        }
    }

    /// A held MusicBot whose record came back: its Synced condition clears.
    pub(crate) async fn released(&self, name: &str) {
        if let Err(e) = ignore_gone(self.set_annotation(name, SYNC_HELD, None).await) {
            debug!("could not clear the hold on {name}: {e}");
        }
    }
}

fn only(uid: Option<String>) -> DeleteParams {
    DeleteParams { preconditions: Some(Preconditions { uid, resource_version: None }), ..DeleteParams::background() }
}

/// Already gone (404) or replaced meanwhile (409 on the uid precondition): nothing to delete.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        other => other,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
