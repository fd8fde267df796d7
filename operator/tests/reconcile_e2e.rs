//! The controller against the real API server and controller manager: MusicBot in,
//! StatefulSet and Pod out, kept right through edits, Secret rotation, suspension, bad
//! input and deletion.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use musicbot_api::crd::{MusicBot, Phase};
use musicbot_api::labels::CONFIG_HASH_ANNOTATION;
use musicbot_operator::controller::BotDefaults;
use serde_json::json;

fn spec() -> serde_json::Value {
    json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}, "displayName": "Radio"})
}

async fn statefulset(client: &Client, ns: &str, name: &str) -> StatefulSet {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually(&format!("StatefulSet {name}"), || async { api.get_opt(name).await.unwrap() }).await
}

fn config_hash(sts: &StatefulSet) -> String {
    sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

async fn pod_hash(client: &Client, ns: &str, pod: &str) -> Option<String> {
    let p = Api::<Pod>::namespaced(client.clone(), ns).get_opt(pod).await.unwrap()?;
    p.metadata.deletion_timestamp.is_none().then(|| p.annotations().get(CONFIG_HASH_ANNOTATION).cloned()).flatten()
}

async fn phase(client: &Client, ns: &str, name: &str) -> Option<Phase> {
    Api::<MusicBot>::namespaced(client.clone(), ns).get(name).await.unwrap().status.and_then(|s| s.phase)
}

async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn a_musicbot_becomes_a_pod_that_follows_spec_and_token_changes() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "lifecycle").await.unwrap();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "first")).await;
    create_bot(&client, &ns, "radio", spec()).await;

    let sts = statefulset(&client, &ns, "radio").await;
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(sts.owner_references()[0].name, "radio");
    let first = config_hash(&sts);
    let hash = eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;
    assert_eq!(hash, first);
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get("radio-0").await.unwrap();
    let pod_spec = pod.spec.unwrap();
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    let sources = pod_spec.volumes.unwrap()[0].projected.clone().unwrap().sources.unwrap();
    assert_eq!(sources[0].secret.as_ref().map(|s| s.name.as_str()), Some("radio-token"));
    // The namespace's default fleet got its key before the pod that mounts it.
    assert_eq!(sources[1].secret.as_ref().map(|s| s.name.as_str()), Some("musicbot-fleet-default"));
    let key = Api::<Secret>::namespaced(client.clone(), &ns).get("musicbot-fleet-default").await.unwrap();
    assert_eq!(key.data.as_ref().and_then(|d| d.get("key")).map(|k| k.0.len()), Some(43), "32 random bytes");
    assert_eq!(phase(&client, &ns, "radio").await, Some(Phase::Pending)); // no kubelet: never ready

    // Edit the spec: the template changes and the pod is replaced.
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    bots.patch("radio", &PatchParams::default(), &Patch::Merge(json!({"spec": {"music": {"defaultVolume": 60}}})))
        .await
        .unwrap();
    let second = eventually("hash after edit", || async {
        let h = config_hash(&statefulset(&client, &ns, "radio").await);
        (h != first).then_some(h)
    })
    .await;
    eventually("pod rolled after edit", || async {
        (pod_hash(&client, &ns, "radio-0").await? == second).then_some(())
    })
    .await;

    // Rotate the token in the Secret, without touching the MusicBot.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let rotated = json!({"stringData": {"token": token_for(CLIENT_ID, "second")}});
    secrets.patch("radio-token", &PatchParams::default(), &Patch::Merge(rotated)).await.unwrap();
    let third = eventually("hash after rotation", || async {
        let h = config_hash(&statefulset(&client, &ns, "radio").await);
        (h != second).then_some(h)
    })
    .await;
    eventually("pod rolled after rotation", || async {
        (pod_hash(&client, &ns, "radio-0").await? == third).then_some(())
    })
    .await;
    // The digest on the template must not be the token or part of it.
    assert!(!token_for(CLIENT_ID, "second").contains(&third));
}

#[tokio::test]
async fn suspend_scales_to_zero_and_resume_brings_the_pod_back() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "suspend").await.unwrap();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "s")).await;
    create_bot(&client, &ns, "radio", spec()).await;
    eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;

    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    bots.patch("radio", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspended": true}}))).await.unwrap();
    eventually("no pod while suspended", || async { pod_hash(&client, &ns, "radio-0").await.is_none().then_some(()) })
        .await;
    assert_eq!(statefulset(&client, &ns, "radio").await.spec.unwrap().replicas, Some(0), "objects are kept");
    eventually("phase Suspended", || async {
        (phase(&client, &ns, "radio").await == Some(Phase::Suspended)).then_some(())
    })
    .await;

    bots.patch("radio", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspended": false}}))).await.unwrap();
    eventually("pod back after resume", || pod_hash(&client, &ns, "radio-0")).await;
    eventually("Suspended and Resumed events", || async {
        let reasons = event_reasons(&client, &ns, "radio").await;
        (reasons.iter().any(|r| r == "Suspended") && reasons.iter().any(|r| r == "Resumed")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_or_bad_token_is_reported_and_fixing_the_secret_starts_the_bot() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "badtoken").await.unwrap();
    let op = start_operator(&client, &ns, BotDefaults::default());
    create_bot(&client, &ns, "radio", spec()).await;

    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let reason = |b: MusicBot| {
        let c = b.status?.conditions.into_iter().find(|c| c.type_ == "TokenResolved")?;
        (c.status == "False").then_some(c.reason)
    };
    let r = eventually("TokenResolved=False", || async { reason(bots.get("radio").await.unwrap()) }).await;
    assert_eq!(r, "SecretNotFound");
    assert_eq!(phase(&client, &ns, "radio").await, Some(Phase::Failed));
    eventually("a TokenNotResolved Event", || async {
        event_reasons(&client, &ns, "radio").await.iter().any(|r| r == "TokenNotResolved").then_some(())
    })
    .await;

    // A Secret with an empty token, then one of another application: still no pod.
    create_secret(&client, &ns, "radio-token", "token", "").await;
    eventually("TokenEmpty", || async { (reason(bots.get("radio").await.unwrap())? == "TokenEmpty").then_some(()) })
        .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let foreign = json!({"stringData": {"token": token_for("999999999999999999", "x")}});
    secrets.patch("radio-token", &PatchParams::default(), &Patch::Merge(foreign)).await.unwrap();
    eventually("ClientIdMismatch", || async {
        (reason(bots.get("radio").await.unwrap())? == "ClientIdMismatch").then_some(())
    })
    .await;
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(stsets.get_opt("radio").await.unwrap().is_none(), "no StatefulSet without a usable token");

    // Fix the Secret only: the bot starts.
    let good = json!({"stringData": {"token": token_for(CLIENT_ID, "good")}});
    secrets.patch("radio-token", &PatchParams::default(), &Patch::Merge(good)).await.unwrap();
    statefulset(&client, &ns, "radio").await;
    eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;

    // No hot loop: a handful of reconciles, not hundreds.
    let text = op.metrics.encode();
    let count: f64 = text
        .lines()
        .filter(|l| l.starts_with("musicbot_operator_reconciles_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(count < 60.0, "{count} reconciles for a few changes: a hot loop?\n{text}");
}

/// Hostile: a MusicBot editor names a miner as the bot's image.
#[tokio::test]
async fn an_image_from_another_repository_is_refused_and_a_fixed_one_runs() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "image").await.unwrap();
    let defaults = BotDefaults {
        image: "ghcr.io/acme/bot-runner:1".into(),
        image_repositories: vec!["registry.internal/music/bot-runner".into()],
        ..BotDefaults::default()
    };
    let _op = start_operator(&client, &ns, defaults);
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "img")).await;
    let mut miner = spec();
    miner["pod"] = json!({"image": "registry.example/miner:1"});
    create_bot(&client, &ns, "radio", miner).await;

    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let ready_reason = || async {
        let c = bots.get("radio").await.unwrap().status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        Some((c.reason, c.message))
    };
    let refused = |want: &'static str| {
        let ready_reason = &ready_reason;
        async move { ready_reason().await.filter(|(r, _)| r == want) }
    };
    let (_, message) = eventually("Ready=ImageNotAllowed", || refused("ImageNotAllowed")).await;
    assert!(message.contains("ghcr.io/acme/bot-runner, registry.internal/music/bot-runner"), "{message}");
    assert_eq!(phase(&client, &ns, "radio").await, Some(Phase::Failed));
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let note = eventually("an ImageNotAllowed Warning Event", || async {
        events.list(&ListParams::default()).await.unwrap().items.into_iter().find_map(|e| {
            let ours = e.regarding.as_ref()?.name.as_deref() == Some("radio");
            (ours && e.reason.as_deref() == Some("ImageNotAllowed") && e.type_.as_deref() == Some("Warning"))
                .then_some(e.note?)
        })
    })
    .await;
    assert!(note.contains("allowed: ghcr.io/acme/bot-runner, registry.internal/music/bot-runner"), "{note}");
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    assert!(stsets.get_opt("radio").await.unwrap().is_none(), "no StatefulSet for a refused image");

    // A listed repository: the bot runs that image.
    let set_image = |image: &'static str| {
        let bots = bots.clone();
        async move {
            let patch = json!({"spec": {"pod": {"image": image}}});
            bots.patch("radio", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        }
    };
    set_image("registry.internal/music/bot-runner:2").await;
    let image_of = |sts: &StatefulSet| {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone().unwrap()
    };
    assert_eq!(image_of(&statefulset(&client, &ns, "radio").await), "registry.internal/music/bot-runner:2");
    eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;

    // Back to the miner: Failed again, and the StatefulSet keeps the image it had.
    set_image("registry.example/miner:1").await;
    eventually("Ready=ImageNotAllowed again", || refused("ImageNotAllowed")).await;
    assert_eq!(image_of(&stsets.get("radio").await.unwrap()), "registry.internal/music/bot-runner:2");
}

#[tokio::test]
async fn deleting_a_musicbot_runs_the_finalizer_and_collects_its_children() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "delete").await.unwrap();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "d")).await;
    create_bot(&client, &ns, "radio", spec()).await;
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    eventually("finalizer added", || async {
        bots.get("radio").await.unwrap().finalizers().iter().any(|f| f == "musicbot.dev/cleanup").then_some(())
    })
    .await;
    let sts = statefulset(&client, &ns, "radio").await;
    eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;

    bots.delete("radio", &DeleteParams::background()).await.unwrap();
    eventually("MusicBot gone", || async { bots.get_opt("radio").await.unwrap().is_none().then_some(()) }).await;
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("StatefulSet collected", || async {
        let now = stsets.get_opt("radio").await.unwrap();
        now.is_none_or(|s| s.uid() != sts.uid()).then_some(())
    })
    .await;
    eventually("pod collected", || async { pod_hash(&client, &ns, "radio-0").await.is_none().then_some(()) }).await;
    eventually("a Deleted Event", || async {
        event_reasons(&client, &ns, "radio").await.iter().any(|r| r == "Deleted").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ca_bundle_is_mounted_into_the_bot_pod_and_named_by_musicbot_ca_file() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "cabundle").await.unwrap();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "ca")).await;
    let mut spec = spec();
    spec["pod"] = json!({
        "caBundle": {"configMapName": "corp-ca", "key": "root.pem"},
        "volumes": [{"name": "cookies", "secret": {"secretName": "yt-cookies"}}],
        "volumeMounts": [{"name": "cookies", "mountPath": "/etc/yt-dlp", "readOnly": true}]
    });
    create_bot(&client, &ns, "radio", spec).await;

    let sts = statefulset(&client, &ns, "radio").await;
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "ca-bundle").expect("a ca-bundle volume");
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "corp-ca");
    let item = &cm.items.as_ref().unwrap()[0];
    assert_eq!((item.key.as_str(), item.path.as_str()), ("root.pem", "ca.crt"));
    let c = &pod.containers[0];
    let mounts = c.volume_mounts.as_ref().unwrap();
    let ca = mounts.iter().find(|m| m.name == "ca-bundle").expect("the CA mounted");
    assert_eq!((ca.mount_path.as_str(), ca.read_only), ("/etc/musicbot/ca", Some(true)));
    let env = c.env.as_ref().unwrap();
    let ca_file = env.iter().find(|e| e.name == "MUSICBOT_CA_FILE").expect("MUSICBOT_CA_FILE");
    assert_eq!(ca_file.value.as_deref(), Some("/etc/musicbot/ca/ca.crt"));
    assert!(mounts.iter().any(|m| m.name == "cookies" && m.mount_path == "/etc/yt-dlp"));
    assert!(pod.volumes.unwrap().iter().any(|v| v.name == "cookies"));

    // The pod the StatefulSet controller makes carries it too (the API server admitted it).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let made = eventually("pod radio-0", || async { pods.get_opt("radio-0").await.unwrap() }).await;
    let made_env = made.spec.unwrap().containers[0].env.clone().unwrap();
    assert!(made_env.iter().any(|e| e.name == "MUSICBOT_CA_FILE"));
}

#[tokio::test]
async fn adding_a_session_recreates_the_statefulset_with_a_claim_per_shard_and_keeps_the_pod_until_it_rolls() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "session").await.unwrap();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "s")).await;
    create_bot(&client, &ns, "radio", spec()).await;
    eventually("pod radio-0", || pod_hash(&client, &ns, "radio-0")).await;
    let before = statefulset(&client, &ns, "radio").await;
    assert!(before.spec.as_ref().unwrap().volume_claim_templates.is_none());

    // Claim templates are immutable: the operator must delete (orphaning) and re-apply.
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let session = json!({"spec": {"session": {"storageClassName": "none-here"}}});
    bots.patch("radio", &PatchParams::default(), &Patch::Merge(session)).await.unwrap();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let after = eventually("the StatefulSet made again with a claim template", || async {
        let sts = api.get_opt("radio").await.unwrap()?;
        let templates = sts.spec.as_ref()?.volume_claim_templates.clone()?;
        (sts.uid() != before.uid() && templates[0].metadata.name.as_deref() == Some("session")).then_some(sts)
    })
    .await;
    let claim = &after.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("none-here"));
    // The shard's pod belongs to the new StatefulSet (adopted, then rolled).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("radio-0 owned by the new StatefulSet", || async {
        let pod = pods.get_opt("radio-0").await.unwrap()?;
        pod.owner_references().iter().any(|o| Some(&o.uid) == after.uid().as_ref()).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let ours: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("MusicBot"))
        .map(|e| format!("{:?}: {:?}", e.reason, e.note))
        .collect();
    assert!(!ours.iter().any(|r| r.contains("Failed")), "no reconcile failed: {ours:?}");
}
