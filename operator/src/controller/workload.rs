//! The desired bot-runner StatefulSet for a MusicBot: a pure function of the spec, the
//! operator's defaults and the token's digest, unit-tested without an API server.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::{Resource, ResourceExt};
use musicbot_api::crd::{CaBundle, ImagePullPolicy, MusicBot};
use musicbot_api::env::{BotEnv, CA_MOUNT_DIR, LogFormat, MongoEnv, TOKEN_MOUNT_DIR};
use musicbot_api::labels::{self, CONFIG_HASH_ANNOTATION, selector_labels};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How long the startup probe's `/ready` request waits for the gateway (bot-runner holds
/// it that long), within the probe's timeout.
pub const STARTUP_PROBE_PATH: &str = "/ready?wait=9";
const RUNNER_UID: i64 = 65532;

/// Operator-wide settings for bot pods (flags of the operator, values of the chart).
#[derive(Clone, Debug)]
pub struct BotDefaults {
    pub image: String,
    pub image_pull_policy: Option<ImagePullPolicy>,
    pub resources: ResourceRequirements,
    /// Port bot-runner serves /health, /ready, /metrics and /status on.
    pub http_port: u16,
    /// Discord API base URL handed to bot-runner (unset: Discord itself).
    pub discord_api_url: Option<String>,
    /// The MongoDB URI's Secret key and where the records live (when not where bot-runner
    /// looks by default), passed to bot-runner for guild tracking.
    pub mongodb: Option<MongoEnv>,
    pub log_format: LogFormat,
    /// Private address ranges (CIDR) bots may fetch media from (`--bot-media-allow`).
    pub media_allow: Vec<String>,
    /// The private CA of bots whose spec names none (`--bot-ca-bundle`): a ConfigMap each
    /// bot's namespace holds, e.g. a corporate proxy's CA for the whole fleet.
    pub ca_bundle: Option<CaBundle>,
}

impl BotDefaults {
    /// The CA bundle `bot` trusts besides the system's roots: its own, else the operator's.
    pub fn ca_bundle_of<'a>(&'a self, bot: &'a MusicBot) -> Option<&'a CaBundle> {
        bot.spec.pod.as_ref().and_then(|p| p.ca_bundle.as_ref()).or(self.ca_bundle.as_ref())
    }
}

impl Default for BotDefaults {
    fn default() -> Self {
        Self {
            image: "ghcr.io/musicbot-operator/bot-runner:latest".into(),
            image_pull_policy: None,
            resources: serde_json::from_value(json!({
                "requests": {"cpu": "50m", "memory": "48Mi"},
                "limits": {"memory": "256Mi"}
            }))
            .expect("static resources"),
            http_port: 8080,
            discord_api_url: None,
            mongodb: None,
            log_format: LogFormat::Json,
            media_allow: Vec::new(),
            ca_bundle: None,
        }
    }
}

fn labels(bot: &MusicBot) -> BTreeMap<String, String> {
    let mut all = selector_labels(&bot.name_any());
    all.insert(labels::INSTANCE_LABEL.into(), bot.name_any());
    all.insert(labels::MANAGED_BY_LABEL.into(), labels::OPERATOR.into());
    all.insert(labels::COMPONENT_LABEL.into(), "music-bot".into());
    all
}

/// Environment for bot-runner derived from the spec (never the token: that is a file).
pub fn bot_env(bot: &MusicBot, defaults: &BotDefaults) -> Vec<EnvVar> {
    let spec = &bot.spec;
    let contract = BotEnv {
        client_id: spec.client_id.clone(),
        bot_name: bot.display_name(),
        http_port: defaults.http_port,
        shard_count: spec.shards,
        music: spec.music.clone(),
        log_format: defaults.log_format,
        ca_bundle: defaults.ca_bundle_of(bot).is_some(),
        guild_ids: spec.guild_ids.clone(),
        presence: spec.presence.clone(),
        discord_api_url: defaults.discord_api_url.clone(),
        media_allow: defaults.media_allow.clone(),
        mongodb: defaults.mongodb.clone(),
    };
    let mut env = contract.env_vars();
    // Read-only root filesystem: yt-dlp and friends write under $HOME.
    env.push(EnvVar { name: "HOME".into(), value: Some("/tmp".into()), ..Default::default() });
    if let Some(pod) = &spec.pod {
        env.extend(pod.env.iter().cloned());
    }
    env
}

/// A short digest of everything that should restart the bot when it changes. The token
/// enters only as `token_digest` (itself a salted hash), so the annotation reveals nothing.
pub fn config_hash(env: &[EnvVar], token_digest: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(env).expect("json"));
    h.update(token_digest.as_bytes());
    hex(&h.finalize()[..8])
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The StatefulSet running `bot`: one pod per shard, none while suspended.
pub fn statefulset(bot: &MusicBot, defaults: &BotDefaults, token_digest: &str) -> StatefulSet {
    let name = bot.name_any();
    let spec = &bot.spec;
    let pod = spec.pod.clone().unwrap_or_default();
    let env = bot_env(bot, defaults);
    let mut pod_labels = labels(bot);
    pod_labels.extend(pod.labels.clone());
    pod_labels.extend(selector_labels(&name)); // user labels must not break the selector
    let mut pod_annotations = pod.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(&env, token_digest));
    let resources = pod.resources.clone().unwrap_or_else(|| defaults.resources.clone());
    let pull_policy = pod.image_pull_policy.or(defaults.image_pull_policy).map(ImagePullPolicy::as_str);
    let probe = |path: &str, period: i32, failures: i32| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 2});
    let (volumes, volume_mounts) = pod_volumes(bot, defaults);
    let owner = bot.controller_owner_ref(&()).expect("MusicBot has a name and uid once stored");

    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": bot.namespace(),
            "labels": labels(bot),
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": if spec.suspended { 0 } else { spec.shards },
            "serviceName": name,
            // Shards are independent gateway sessions: start and replace them together.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(&name)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {
                    // Bot pods never talk to the Kubernetes API.
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": RUNNER_UID,
                        "runAsGroup": RUNNER_UID,
                        "fsGroup": RUNNER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "nodeSelector": pod.node_selector,
                    "tolerations": pod.tolerations,
                    "priorityClassName": pod.priority_class_name,
                    "containers": [{
                        "name": "bot-runner",
                        "image": pod.image.clone().unwrap_or_else(|| defaults.image.clone()),
                        "imagePullPolicy": pull_policy,
                        "args": ["run"],
                        "env": env,
                        "ports": [{"name": "http", "containerPort": defaults.http_port, "protocol": "TCP"}],
                        "startupProbe": startup_probe(),
                        // Both run only once the startup probe has passed.
                        "livenessProbe": probe("/health", 10, 3),
                        "readinessProbe": probe("/ready", 5, 2),
                        // A crash's last log lines become its termination message, which
                        // the MusicBot's status quotes.
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "resources": resources,
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "privileged": false,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": volume_mounts,
                    }],
                    "volumes": volumes,
                }
            }
        }
    }))
    .expect("the StatefulSet template is well-formed")
}

/// The startup probe asks `/ready` to wait up to 9 s for the gateway, so a bot that starts
/// normally passes its first probe without a failure (each failure is a Warning Event).
/// Probes run back to back while one is held (the kubelet's ticker does not queue ticks),
/// so a bot that cannot reach the gateway fails once every ~9–10 s and is restarted after
/// 20 failures, about 3 minutes. The 1 s initial delay leaves bot-runner time to listen.
pub fn startup_probe() -> Value {
    json!({
        "httpGet": {"path": STARTUP_PROBE_PATH, "port": "http"},
        "initialDelaySeconds": 1,
        "periodSeconds": 1,
        "timeoutSeconds": 10,
        "failureThreshold": 20,
    })
}

/// The operator's volumes and mounts (token, /tmp, the CA bundle), then the spec's own. A
/// spec volume or mount clashing with the operator's is dropped: the CRD's rules refuse
/// those, and a bot stored before them must still get its token and nothing in its place.
pub fn pod_volumes(bot: &MusicBot, defaults: &BotDefaults) -> (Vec<Value>, Vec<Value>) {
    let spec = &bot.spec;
    let mut volumes = vec![
        json!({"name": "token", "secret": {
            "secretName": spec.token_secret_ref.name,
            "items": [{"key": spec.token_secret_ref.key, "path": "token"}],
            "defaultMode": 0o440,
        }}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}),
    ];
    let mut mounts = vec![
        json!({"name": "token", "mountPath": TOKEN_MOUNT_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    if let Some(ca) = defaults.ca_bundle_of(bot) {
        volumes.push(json!({"name": "ca-bundle", "configMap": {
            "name": ca.config_map_name,
            "items": [{"key": ca.key, "path": "ca.crt"}],
            "defaultMode": 0o444,
        }}));
        mounts.push(json!({"name": "ca-bundle", "mountPath": CA_MOUNT_DIR, "readOnly": true}));
    }
    let Some(pod) = &spec.pod else { return (volumes, mounts) };
    let mut names: std::collections::BTreeSet<String> =
        volumes.iter().filter_map(|v| v["name"].as_str().map(str::to_string)).collect();
    for v in &pod.volumes {
        if !musicbot_api::crd::RESERVED_VOLUMES.contains(&v.name.as_str()) && names.insert(v.name.clone()) {
            volumes.push(serde_json::to_value(v).expect("Volume serializes"));
        }
    }
    for m in pod.volume_mounts.iter().filter(|m| !musicbot_api::crd::reserved_mount(m)) {
        mounts.push(serde_json::to_value(m).expect("VolumeMount serializes"));
    }
    (volumes, mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicbot_api::crd::{MusicBotSpec, PodOverrides};
    use musicbot_api::env::{CA_FILE, TOKEN_FILE};
    use musicbot_api::labels::BOT_LABEL;

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
        // The token reaches the pod only as a file from the Secret: never env, never args.
        let token_volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "token").unwrap();
        let secret = token_volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("radio-token"));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "token");
        let env = c.env.as_ref().unwrap();
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

    #[test]
    fn bot_pods_look_for_their_record_where_the_sync_reads() {
        let b = bot(json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "t"}}));
        let names = |d: &BotDefaults| -> Vec<String> { bot_env(&b, d).into_iter().map(|e| e.name).collect() };
        assert!(!names(&BotDefaults::default()).iter().any(|n| n.contains("MONGODB") || n.contains("COLLECTION")));
        let mongodb = MongoEnv {
            uri_secret: musicbot_api::env::SecretKey { name: "mongo".into(), key: "uri".into() },
            database: None,
            bots_collection: Some("Bots".into()),
            guilds_collection: None,
        };
        let env = bot_env(&b, &BotDefaults { mongodb: Some(mongodb), ..BotDefaults::default() });
        let get = |n: &str| env.iter().find(|e| e.name == n);
        assert_eq!(get("MUSICBOT_BOTS_COLLECTION").unwrap().value.as_deref(), Some("Bots"));
        assert!(get("MUSICBOT_GUILDS_COLLECTION").is_none());
        let uri = get("MUSICBOT_MONGODB_URI").unwrap().value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(uri.name, "mongo");
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
        let ca = volumes.iter().find(|v| v["name"] == "ca-bundle").unwrap();
        assert_eq!(ca["configMap"]["items"], json!([{"key": "bundle.pem", "path": "ca.crt"}]));
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
        let ca = volumes.iter().find(|v| v["name"] == "ca-bundle").expect("the operator's CA is mounted");
        assert_eq!(ca["configMap"]["name"], "fleet-ca");
        assert!(mounts.iter().any(|m| m["name"] == "ca-bundle" && m["mountPath"] == CA_MOUNT_DIR));
        assert!(bot_env(&basic(), &fleet_ca).iter().any(|e| e.name == "MUSICBOT_CA_FILE"));
        // A bot's own CA wins.
        let own = bot(json!({
            "clientId": "123456789012345678", "tokenSecretRef": {"name": "t"},
            "pod": {"caBundle": {"configMapName": "own-ca"}}
        }));
        let (volumes, _) = pod_volumes(&own, &fleet_ca);
        let names: Vec<&Value> =
            volumes.iter().filter(|v| v["name"] == "ca-bundle").map(|v| &v["configMap"]["name"]).collect();
        assert_eq!(names, [&json!("own-ca")]);
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
        assert!(token.secret.is_some(), "the token volume stays the Secret");
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
        assert_eq!(startup.http_get.as_ref().unwrap().path.as_deref(), Some("/ready?wait=9"));
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
}
