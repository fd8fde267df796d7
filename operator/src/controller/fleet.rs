//! A fleet's key and directory. The bots of a fleet (a namespace's MusicBots with the same
//! `spec.fleet`) hand each other requests over their HTTP ports with the fleet's key; the
//! operator makes the key (a Secret per fleet, mounted beside each bot's token) and tells
//! every bot pod of the fleet where the others are. Why: docs/architecture.md, "Fleets".
//!
//! The directory is built from the fleet's pods alone (their fleet label, their ordinal,
//! and the client id and name the operator put in their environment), so a MusicBot that
//! does not deserialize cannot keep the rest of its fleet from their directory.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use musicbot_api::crd::{DEFAULT_FLEET, MusicBot};
use musicbot_api::env::var;
use musicbot_api::handoff::{DIRECTORY_PATH, FleetBot, FleetDirectory};
use musicbot_api::labels::{self, FLEET_KEY, FLEET_LABEL};
use rand::RngCore as _;
use tracing::{info, warn};

use super::{Context, Error};

/// The label Kubernetes puts on a StatefulSet's pods: their ordinal, the shard.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A new fleet key: 32 random bytes, URL-safe base64.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The Secret holding `fleet`'s key: made by the operator, owned by no MusicBot (the
/// fleet's bots share it), so it outlives them until deleted by hand.
fn key_secret(fleet: &str, key: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(labels::fleet_key_secret(fleet)),
            labels: Some(BTreeMap::from([
                (FLEET_LABEL.to_string(), fleet.to_string()),
                (labels::MANAGED_BY_LABEL.to_string(), labels::OPERATOR.to_string()),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(FLEET_KEY.to_string(), ByteString(key.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

fn env_value(pod: &Pod, name: &str) -> Option<String> {
    let container = pod.spec.as_ref()?.containers.iter().find(|c| c.name == "bot-runner")?;
    container.env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
}

/// The fleet's directory from its pods: every running pod with an address, as a bot (by
/// client id) with one URL per shard ("" for a shard with no pod running).
pub(crate) fn directory(fleet: &str, pods: &[Pod], http_port: u16) -> FleetDirectory {
    let mut bots: BTreeMap<String, FleetBot> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let Some(status) = pod.status.as_ref().filter(|s| s.phase.as_deref() == Some("Running")) else { continue };
        let (Some(ip), Some(client_id)) = (status.pod_ip.as_deref(), env_value(pod, var::CLIENT_ID)) else { continue };
        let shards: usize = env_value(pod, var::SHARD_COUNT).and_then(|n| n.parse().ok()).unwrap_or(1).clamp(1, 128);
        let Some(shard) = pod.labels().get(POD_INDEX_LABEL).and_then(|i| i.parse::<usize>().ok()) else { continue };
        if shard >= shards {
            continue;
        }
        let bot = bots.entry(client_id.clone()).or_insert_with(|| FleetBot {
            name: env_value(pod, var::BOT_NAME).unwrap_or_else(|| client_id.clone()),
            client_id,
            shard_urls: vec![String::new(); shards],
        });
        if let Some(url) = bot.shard_urls.get_mut(shard) {
            *url = format!("http://{}", super::reconcile::join_host_port(ip, http_port));
        }
    }
    FleetDirectory { fleet: fleet.to_string(), bots: bots.into_values().collect(), invites: None }
}

/// The fleet's key, made now if the fleet has none yet.
pub(super) async fn ensure_key(bot: &MusicBot, ctx: &Context) -> Result<String, Error> {
    let ns = bot.namespace().ok_or(Error::NotNamespaced)?;
    let fleet = bot.spec.fleet_name();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = labels::fleet_key_secret(fleet);
    if let Some(found) = secrets.get_opt(&name).await? {
        return Ok(key_of(&found).unwrap_or_default());
    }
    match secrets.create(&PostParams::default(), &key_secret(fleet, &new_key())).await {
        Ok(made) => {
            info!(secret = %name, fleet, "made the fleet's key");
            Ok(key_of(&made).unwrap_or_default())
        }
        // Another bot of the fleet made it a moment ago.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Ok(secrets.get_opt(&name).await?.as_ref().and_then(key_of).unwrap_or_default())
        }
        Err(e) => Err(e.into()),
    }
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.and_then(|c| c.iter().find(|c| c.name == "bot-runner")).map_or(0, |c| c.restart_count)
}

fn key_of(secret: &Secret) -> Option<String> {
    let bytes = &secret.data.as_ref()?.get(FLEET_KEY)?.0;
    String::from_utf8(bytes.clone()).ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

/// Tells each pod of `bot`'s fleet the fleet's directory, when it changed since that pod's
/// bot-runner was last told (a restarted container is told again). A pod that does not
/// take it is told again at the next reconcile.
pub(super) async fn push_directory(bot: &MusicBot, key: &str, ctx: &Context) -> Result<(), Error> {
    if key.is_empty() {
        warn!(fleet = bot.spec.fleet_name(), "the fleet's key Secret has no key: no hand-offs");
        return Ok(());
    }
    let ns = bot.namespace().ok_or(Error::NotNamespaced)?;
    let fleet = bot.spec.fleet_name();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{}=bot-runner,{FLEET_LABEL}={fleet}", labels::NAME_LABEL);
    let pods = pods.list(&ListParams::default().labels(&selector)).await?.items;
    let mut directory = directory(fleet, &pods, ctx.defaults.http_port);
    if let Some((_, url)) = ctx.fleet_invites.as_ref().filter(|(sync_ns, _)| *sync_ns == ns && fleet == DEFAULT_FLEET) {
        directory.invites = Some(url.clone());
    }
    let digest = crate::digest::short(&[&serde_json::to_vec(&directory).expect("a directory serialises")]);
    let told = ctx.fleet_directories.lock().expect("directories lock").get(&(ns.clone(), fleet.to_string())).cloned();
    let told = told.unwrap_or_default();
    let mut now_told: HashMap<String, String> = HashMap::new();
    for pod in &pods {
        let (Some(uid), Some(ip)) = (pod.uid(), pod.status.as_ref().and_then(|s| s.pod_ip.clone())) else { continue };
        // A restarted container is a new bot-runner that knows no directory yet.
        let uid = format!("{uid}/{}", restarts(pod));
        if told.get(&uid) == Some(&digest) {
            now_told.insert(uid, digest.clone());
            continue;
        }
        let url = format!("http://{}{DIRECTORY_PATH}", super::reconcile::join_host_port(&ip, ctx.defaults.http_port));
        let sent = ctx.http.post(&url).bearer_auth(key).json(&directory).timeout(std::time::Duration::from_secs(2));
        match sent.send().await.map(|r| r.status()) {
            Ok(s) if s.is_success() => {
                now_told.insert(uid, digest.clone());
            }
            // Starting, or a bot-runner before fleets: told again next time.
            Ok(s) => warn!(pod = %pod.name_any(), status = %s, "a bot pod did not take its fleet's directory"),
            Err(_) => {}
        }
    }
    ctx.fleet_directories.lock().expect("directories lock").insert((ns, fleet.to_string()), now_told);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(bot: &str, index: u32, shards: u32, ip: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{bot}-{index}"), "labels": {POD_INDEX_LABEL: index.to_string()}},
            "spec": {"containers": [{"name": "bot-runner", "env": [
                {"name": var::CLIENT_ID, "value": format!("{}", 100 + bot.len())},
                {"name": var::BOT_NAME, "value": bot.to_uppercase()},
                {"name": var::SHARD_COUNT, "value": shards.to_string()},
            ]}]},
            "status": {"phase": phase, "podIP": ip},
        }))
        .unwrap()
    }

    #[test]
    fn the_directory_lists_each_bot_once_with_a_url_per_shard() {
        let pods = [
            pod("ab", 1, 2, Some("10.0.0.2"), "Running"),
            pod("ab", 0, 2, Some("10.0.0.1"), "Running"),
            pod("c", 0, 1, Some("fd00::3"), "Running"),
            pod("dddd", 0, 1, Some("10.0.0.4"), "Pending"),
            pod("eeeee", 0, 1, None, "Running"),
        ];
        let d = directory("night", &pods, 8080);
        assert_eq!(d.fleet, "night");
        let bots: Vec<(&str, &str, Vec<&str>)> = d
            .bots
            .iter()
            .map(|b| (b.name.as_str(), b.client_id.as_str(), b.shard_urls.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            bots,
            [
                ("C", "101", vec!["http://[fd00::3]:8080"]),
                ("AB", "102", vec!["http://10.0.0.1:8080", "http://10.0.0.2:8080"]),
            ]
        );
        // A shard whose pod is not running has no URL yet.
        let d = directory("night", &pods[..1], 8080);
        assert_eq!(d.bots[0].shard_urls, ["", "http://10.0.0.2:8080"]);
    }

    #[test]
    fn a_new_key_is_random_and_its_secret_is_labelled_for_the_admission_policy() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let s = key_secret("night", &a);
        assert_eq!(s.metadata.name.as_deref(), Some("musicbot-fleet-night"));
        assert_eq!(s.labels().get(FLEET_LABEL).map(String::as_str), Some("night"));
        assert_eq!(s.labels().get(labels::MANAGED_BY_LABEL).map(String::as_str), Some(labels::OPERATOR));
        assert_eq!(key_of(&s), Some(a));
    }
}
