use super::*;
use musicbot_api::crd::{MusicBotSpec, PodOverrides};
use musicbot_api::env::{CA_FILE, TOKEN_FILE};
use musicbot_api::labels::BOT_LABEL;
use serde_json::json;

fn bot(spec: serde_json::Value) -> MusicBot {
    let spec: MusicBotSpec = serde_json::from_value(spec).unwrap();
    let mut bot = MusicBot::new("radio", spec);
    bot.metadata.namespace = Some("music".into());
    bot.metadata.uid = Some("uid-1".into());
    bot
}

fn basic() -> MusicBot {
    bot(json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token"}}))
}

fn pod_spec(sts: &StatefulSet) -> &k8s_openapi::api::core::v1::PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn one_restricted_pod_per_shard_with_the_token_as_a_file() {
    let sts = statefulset(&basic(), &BotDefaults::default(), "d1");
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].kind, "MusicBot");
    let pod = pod_spec(&sts);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.capabilities.as_ref().unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
    // The token reaches the pod only as a file from the Secret: never env, never args; the
    // fleet's key beside it, in the one directory yt-dlp is kept out of.
    let token_volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "token").unwrap();
    let sources = token_volume.projected.as_ref().unwrap().sources.as_ref().unwrap();
    let secret = sources[0].secret.as_ref().unwrap();
    assert_eq!(secret.name, "radio-token");
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "token");
    let fleet = sources[1].secret.as_ref().unwrap();
    assert_eq!(fleet.name, "musicbot-fleet-default", "no spec.fleet: the namespace's default fleet");
    assert_eq!(fleet.items.as_ref().unwrap()[0].path, "fleet-key");
    assert_eq!((secret.optional, fleet.optional), (None, Some(true)), "a bot starts without its fleet's key");
    assert_eq!(sources.len(), 2);
    let labels = sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels.get("musicbot.dev/fleet").map(String::as_str), Some("default"));
    let env = c.env.as_ref().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "MUSICBOT_FLEET_KEY_FILE"
                && e.value.as_deref() == Some(musicbot_api::env::FLEET_KEY_FILE))
    );
    assert!(env.iter().all(|e| e.value_from.as_ref().is_none_or(|v| v.secret_key_ref.is_none())));
    assert!(env.iter().any(|e| e.name == "MUSICBOT_TOKEN_FILE" && e.value.as_deref() == Some(TOKEN_FILE)));
    assert_eq!(c.args, Some(vec!["run".to_string()]));
}

#[test]
fn suspended_scales_to_zero_and_shards_set_replicas() {
    let mut b = basic();
    b.spec.shards = 3;
    assert_eq!(statefulset(&b, &BotDefaults::default(), "d").spec.unwrap().replicas, Some(3));
    b.spec.suspended = true;
    assert_eq!(statefulset(&b, &BotDefaults::default(), "d").spec.unwrap().replicas, Some(0));
}

#[test]
fn config_hash_changes_with_settings_and_token_but_not_otherwise() {
    let d = BotDefaults::default();
    let hash = |b: &MusicBot, t: &str| {
        statefulset(b, &d, t).spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let b = basic();
    assert_eq!(hash(&b, "t1"), hash(&basic(), "t1"));
    assert_ne!(hash(&b, "t1"), hash(&b, "t2"));
    let mut louder = basic();
    louder.spec.music.default_volume = 150;
    assert_ne!(hash(&b, "t1"), hash(&louder, "t1"));
}

#[test]
fn pod_overrides_apply_but_cannot_break_the_selector() {
    let mut b = basic();
    b.spec.pod = Some(PodOverrides {
        image: Some("registry.example/bot:2".into()),
        labels: [(BOT_LABEL.to_string(), "hijack".to_string()), ("team".to_string(), "a".to_string())].into(),
        node_selector: [("pool".to_string(), "music".to_string())].into(),
        ..Default::default()
    });
    let sts = statefulset(&b, &BotDefaults::default(), "d");
    let template = sts.spec.as_ref().unwrap().template.clone();
    let labels = template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels[BOT_LABEL], "radio");
    assert_eq!(labels["team"], "a");
    let pod = template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example/bot:2"));
    assert_eq!(pod.node_selector.unwrap()["pool"], "music");
}

#[test]
fn guilds_presence_and_settings_reach_the_environment() {
    let b = bot(json!({
        "clientId": "123456789012345678",
        "tokenSecretRef": {"name": "t", "key": "discord"},
        "guildIds": ["111111111111111111", "222222222222222222"],
        "music": {"defaultVolume": 80, "maxQueueLength": 50, "idleLeaveSeconds": 0, "stayInChannel": true},
        "presence": {"status": "dnd", "activity": {"type": "playing", "name": "lofi"}}
    }));
    let env: BTreeMap<String, String> =
        bot_env(&b, &BotDefaults::default()).into_iter().filter_map(|e| Some((e.name, e.value?))).collect();
    assert_eq!(env["MUSICBOT_GUILD_IDS"], "111111111111111111,222222222222222222");
    assert_eq!(env["MUSICBOT_DEFAULT_VOLUME"], "80");
    assert_eq!(env["MUSICBOT_MAX_QUEUE_LENGTH"], "50");
    assert_eq!(env["MUSICBOT_STAY_IN_CHANNEL"], "true");
    assert_eq!(env["MUSICBOT_PRESENCE_STATUS"], "dnd");
    assert_eq!(env["MUSICBOT_ACTIVITY_TYPE"], "playing");
    assert_eq!(env["MUSICBOT_ACTIVITY_NAME"], "lofi");
}

/// Hostile: a bot pod is a Discord user's `/play` away from running yt-dlp on what they
/// choose, so it holds its own token and no other credential (no MongoDB URI: that would
/// read every bot's token). Everything the operator can configure is switched on here.
#[test]
fn a_bot_pod_holds_no_credential_but_its_own_token() {
    let b = bot(json!({
        "clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token", "key": "token"},
        "shards": 2, "guildIds": ["111111111111111111"],
        "presence": {"status": "dnd", "activity": {"type": "playing", "name": "lofi"}},
        "pod": {"caBundle": {"configMapName": "corp-ca"}}
    }));
    let defaults = BotDefaults {
        discord_api_url: Some("http://10.0.0.1:5000".into()),
        media_allow: vec!["10.0.0.0/8".into()],
        ca_bundle: Some(CaBundle { config_map_name: "fleet-ca".into(), key: "ca.crt".into() }),
        ..BotDefaults::default()
    };
    let sts = statefulset(&b, &defaults, "d");
    let pod = pod_spec(&sts);
    for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
        assert!(c.env_from.is_none(), "{}: envFrom", c.name);
        for e in c.env.iter().flatten() {
            assert!(!e.name.contains("MONGO"), "{}: {}", c.name, e.name);
            let from_secret = e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref());
            assert!(from_secret.is_none(), "{}: {} reads a Secret", c.name, e.name);
            let value = e.value.as_deref().unwrap_or_default();
            assert!(!value.starts_with("mongodb"), "{}: {} holds a MongoDB URI", c.name, e.name);
        }
    }
    let secrets: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let projected = v.projected.as_ref().into_iter().flat_map(|p| p.sources.iter().flatten());
            let named = v.secret.as_ref().and_then(|s| s.secret_name.as_deref());
            named.into_iter().chain(projected.filter_map(|s| Some(s.secret.as_ref()?.name.as_str()))).next()
        })
        .collect();
    assert_eq!(secrets, ["radio-token"], "the only Secret in the pod is the bot's own token");
}

#[test]
fn a_ca_bundle_is_mounted_read_only_and_named_by_musicbot_ca_file() {
    let b = bot(json!({
        "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"},
        "pod": {"caBundle": {"configMapName": "corp-ca"}}
    }));
    let sts = statefulset(&b, &BotDefaults::default(), "d");
    let pod = pod_spec(&sts);
    let volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "ca-bundle").unwrap();
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "corp-ca");
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "ca.crt", "the key defaults to ca.crt");
    assert_eq!(cm.items.as_ref().unwrap()[0].path, "ca.crt");
    let c = &pod.containers[0];
    let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "ca-bundle").unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), (CA_MOUNT_DIR, Some(true)));
    let env = c.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "MUSICBOT_CA_FILE" && e.value.as_deref() == Some(CA_FILE)));
    assert!(CA_FILE.starts_with(&format!("{}/", mount.mount_path)));

    let custom_key = bot(json!({
        "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"},
        "pod": {"caBundle": {"configMapName": "corp-ca", "key": "bundle.pem"}}
    }));
    let (volumes, _) = pod_volumes(&custom_key, &BotDefaults::default());
    let ca = volumes.iter().find(|v| v.name == "ca-bundle").unwrap();
    assert_eq!(ca.config_map.as_ref().unwrap().items, Some(vec![key_to("bundle.pem", "ca.crt")]));
    // Without a CA bundle: no volume, no variable.
    let (volumes, mounts) = pod_volumes(&basic(), &BotDefaults::default());
    assert_eq!(volumes.len(), 2);
    assert_eq!(mounts.len(), 2);
    assert!(!bot_env(&basic(), &BotDefaults::default()).iter().any(|e| e.name == "MUSICBOT_CA_FILE"));
}

#[test]
fn the_operators_ca_bundle_serves_bots_that_name_none() {
    let fleet_ca = BotDefaults {
        ca_bundle: Some(CaBundle { config_map_name: "fleet-ca".into(), key: "ca.crt".into() }),
        ..BotDefaults::default()
    };
    let (volumes, mounts) = pod_volumes(&basic(), &fleet_ca);
    let ca = volumes.iter().find(|v| v.name == "ca-bundle").expect("the operator's CA is mounted");
    assert_eq!(ca.config_map.as_ref().unwrap().name, "fleet-ca");
    assert!(mounts.iter().any(|m| m.name == "ca-bundle" && m.mount_path == CA_MOUNT_DIR));
    assert!(bot_env(&basic(), &fleet_ca).iter().any(|e| e.name == "MUSICBOT_CA_FILE"));
    // A bot's own CA wins.
    let own = bot(json!({
        "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"},
        "pod": {"caBundle": {"configMapName": "own-ca"}}
    }));
    let (volumes, _) = pod_volumes(&own, &fleet_ca);
    let names: Vec<&str> = volumes
        .iter()
        .filter(|v| v.name == "ca-bundle")
        .filter_map(|v| Some(v.config_map.as_ref()?.name.as_str()))
        .collect();
    assert_eq!(names, ["own-ca"]);
}

#[test]
fn spec_volumes_are_added_but_cannot_replace_the_operators() {
    let b = bot(json!({
        "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"},
        "pod": {
            "volumes": [
                {"name": "cookies", "secret": {"secretName": "yt-cookies"}},
                {"name": "token", "emptyDir": {}},
                {"name": "cookies", "emptyDir": {}}
            ],
            "volumeMounts": [
                {"name": "cookies", "mountPath": "/etc/yt-dlp", "readOnly": true},
                {"name": "cookies", "mountPath": "/tmp"},
                {"name": "cookies", "mountPath": "/tmp/x"},
                {"name": "cookies", "mountPath": "/var/run/secrets/musicbot/"},
                {"name": "token", "mountPath": "/elsewhere"}
            ]
        }
    }));
    let sts = statefulset(&b, &BotDefaults::default(), "d");
    let pod = pod_spec(&sts);
    let volumes: Vec<_> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(volumes, ["token", "tmp", "cookies"]);
    let token = &pod.volumes.as_ref().unwrap()[0];
    assert!(token.projected.is_some(), "the token volume stays the operator's");
    let cookies = &pod.volumes.as_ref().unwrap()[2];
    assert_eq!(cookies.secret.as_ref().unwrap().secret_name.as_deref(), Some("yt-cookies"));
    let mounts: Vec<_> = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts, [("token", TOKEN_MOUNT_DIR), ("tmp", "/tmp"), ("cookies", "/etc/yt-dlp")]);
}

#[test]
fn startup_waits_for_the_gateway_then_readiness_and_liveness_take_over() {
    let sts = statefulset(&basic(), &BotDefaults::default(), "d");
    let c = &pod_spec(&sts).containers[0];
    let startup = c.startup_probe.as_ref().unwrap();
    assert_eq!(startup.http_get.as_ref().unwrap().path.as_deref(), Some("/ready?wait=9&startup=true"));
    let timeout = startup.timeout_seconds.unwrap();
    assert!(timeout > 9, "the probe must outlast the wait: {timeout}");
    // A bot that never connects is restarted after about 3 minutes of failures, each
    // taking the held wait (9 s) or the period, whichever is longer.
    let per_failure = startup.period_seconds.unwrap().max(9);
    let total = startup.initial_delay_seconds.unwrap_or(0) + per_failure * startup.failure_threshold.unwrap();
    assert!((150..=240).contains(&total), "{total} s");
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
}

#[test]
fn what_the_api_server_receives_keeps_its_shape() {
    let sts = serde_json::to_value(statefulset(&basic(), &BotDefaults::default(), "d")).unwrap();
    let spec = &sts["spec"];
    assert_eq!((&spec["serviceName"], &spec["podManagementPolicy"]), (&json!("radio"), &json!("Parallel")));
    assert_eq!(spec["updateStrategy"], json!({"type": "RollingUpdate"}));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["volumes"][0]["projected"]["defaultMode"], 0o440);
    assert_eq!(pod["volumes"][1], json!({"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}));
    let c = &pod["containers"][0];
    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/health", "port": "http"}));
    assert_eq!(c["resources"], json!({"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}}));
}

#[test]
fn a_session_is_a_claim_per_shard_mounted_where_bot_runner_is_told() {
    let plain = statefulset(&basic(), &BotDefaults::default(), "d");
    let spec = plain.spec.as_ref().unwrap();
    assert!(spec.volume_claim_templates.is_none() && spec.persistent_volume_claim_retention_policy.is_none());
    let env = pod_spec(&plain).containers[0].env.clone().unwrap();
    assert!(!env.iter().any(|e| e.name.starts_with("MUSICBOT_SESSION")), "no session without spec.session");

    let kept = bot(json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "radio-token"},
        "session": {"storageClassName": "fast", "maxAgeSeconds": 120}}));
    let sts = statefulset(&kept, &BotDefaults::default(), "d");
    let spec = sts.spec.as_ref().unwrap();
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("session"));
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(claim_spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let policy = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
    assert_eq!((policy.when_deleted.as_deref(), policy.when_scaled.as_deref()), (Some("Delete"), Some("Retain")));
    let c = &pod_spec(&sts).containers[0];
    let mount = c.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "session").unwrap();
    assert_eq!(mount.mount_path, SESSION_MOUNT_DIR);
    assert_ne!(mount.read_only, Some(true));
    let env = c.env.as_ref().unwrap();
    let get = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    assert_eq!(get("MUSICBOT_SESSION_DIR").as_deref(), Some(SESSION_MOUNT_DIR));
    assert_eq!(get("MUSICBOT_SESSION_MAX_AGE_SECONDS").as_deref(), Some("120"));
    // A spec volume may not take the claim's name, nor a mount its path.
    let mut hijack = kept.clone();
    hijack.spec.pod = Some(
        serde_json::from_value(json!({
            "volumes": [{"name": "session", "emptyDir": {}}],
            "volumeMounts": [{"name": "x", "mountPath": "/var/lib/musicbot/session/inner"}]
        }))
        .unwrap(),
    );
    let (volumes, mounts) = pod_volumes(&hijack, &BotDefaults::default());
    assert!(!volumes.iter().any(|v| v.name == "session"));
    assert_eq!(mounts.iter().filter(|m| m.mount_path.starts_with(SESSION_MOUNT_DIR)).count(), 1);
}
