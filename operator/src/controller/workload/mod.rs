//! The desired bot-runner StatefulSet for a MusicBot: a pure function of the spec, the
//! operator's defaults and the token's digest, unit-tested without an API server.

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection, SecurityContext, Volume,
    VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use musicbot_api::crd::{CaBundle, ImagePullPolicy, MusicBot, PodOverrides, SESSION_CLAIM_SIZE, SessionSettings};
use musicbot_api::env::{BotEnv, CA_MOUNT_DIR, LogFormat, SESSION_MOUNT_DIR, TOKEN_MOUNT_DIR};
use musicbot_api::labels::{self, CONFIG_HASH_ANNOTATION, selector_labels};
use std::collections::BTreeMap;

mod image;
pub(crate) use image::{ImageNotAllowed, check as check_image};

/// How long the startup probe's `/ready` request waits for the gateway (bot-runner holds
/// it that long), within the probe's timeout.
/// `startup=true`: a bot waiting for Discord to refill its identifies has started too (it
/// is up, and not ready until it connects); older bot-runners ignore the parameter.
const STARTUP_PROBE_PATH: &str = "/ready?wait=9&startup=true";
const RUNNER_UID: i64 = 65532;
/// The container port's name, which the probes address it by.
const HTTP_PORT_NAME: &str = "http";
/// The volume (a claim template: one claim per shard) the session is kept on.
const SESSION_VOLUME: &str = "session";

/// Operator-wide settings for bot pods (flags of the operator, values of the chart).
#[derive(Clone, Debug)]
pub struct BotDefaults {
    pub image: String,
    /// Repositories bot images may come from besides `image`'s (`--bot-image-repositories`).
    pub image_repositories: Vec<String>,
    pub image_pull_policy: Option<ImagePullPolicy>,
    pub resources: ResourceRequirements,
    /// Port bot-runner serves /health, /ready, /metrics and /status on.
    pub http_port: u16,
    /// Discord API base URL handed to bot-runner (unset: Discord itself).
    pub discord_api_url: Option<String>,
    pub log_format: LogFormat,
    /// Private address ranges (CIDR) bots may fetch media from (`--bot-media-allow`).
    pub media_allow: Vec<String>,
    /// The private CA of bots whose spec names none (`--bot-ca-bundle`): a ConfigMap each
    /// bot's namespace holds, e.g. a corporate proxy's CA for the whole fleet.
    pub ca_bundle: Option<CaBundle>,
}

impl BotDefaults {
    /// The CA bundle `bot` trusts besides the system's roots: its own, else the operator's.
    fn ca_bundle_of<'a>(&'a self, bot: &'a MusicBot) -> Option<&'a CaBundle> {
        bot.spec.pod.as_ref().and_then(|p| p.ca_bundle.as_ref()).or(self.ca_bundle.as_ref())
    }
}

fn quantities<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, Quantity> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

impl Default for BotDefaults {
    fn default() -> Self {
        Self {
            image: "ghcr.io/musicbot-operator/bot-runner:latest".into(),
            image_repositories: Vec::new(),
            image_pull_policy: None,
            resources: ResourceRequirements {
                requests: Some(quantities([("cpu", "50m"), ("memory", "48Mi")])),
                limits: Some(quantities([("memory", "256Mi")])),
                ..Default::default()
            },
            http_port: 8080,
            discord_api_url: None,
            log_format: LogFormat::Json,
            media_allow: Vec::new(),
            ca_bundle: None,
        }
    }
}

fn labels(bot: &MusicBot) -> BTreeMap<String, String> {
    let mut all = selector_labels(&bot.name_any());
    all.insert(labels::INSTANCE_LABEL.into(), bot.name_any());
    all.insert(labels::FLEET_LABEL.into(), bot.spec.fleet_name().into());
    all.insert(labels::MANAGED_BY_LABEL.into(), labels::OPERATOR.into());
    all.insert(labels::COMPONENT_LABEL.into(), "music-bot".into());
    all
}

/// Environment for bot-runner derived from the spec (never the token: that is a file).
fn bot_env(bot: &MusicBot, defaults: &BotDefaults) -> Vec<EnvVar> {
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
        session_max_age_seconds: spec.session.as_ref().map(|s| s.max_age_seconds),
        fleet_key: true,
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
fn config_hash(env: &[EnvVar], token_digest: &str) -> String {
    crate::digest::short(&[&serde_json::to_vec(env).expect("json"), token_digest.as_bytes()])
}

/// The StatefulSet running `bot`: one pod per shard, none while suspended.
pub fn statefulset(bot: &MusicBot, defaults: &BotDefaults, token_digest: &str) -> StatefulSet {
    let name = bot.name_any();
    let owner = bot.controller_owner_ref(&()).expect("MusicBot has a name and uid once stored");
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: bot.namespace(),
            labels: Some(labels(bot)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(if bot.spec.suspended { 0 } else { bot.spec.shards as i32 }),
            service_name: Some(name.clone()),
            // Shards are independent gateway sessions: start and replace them together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(selector_labels(&name)), ..Default::default() },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: pod_template(bot, defaults, token_digest),
            volume_claim_templates: bot.spec.session.as_ref().map(|s| vec![session_claim(s)]),
            // A shard's session goes with its MusicBot, and stays while the bot is scaled
            // down (suspended, or held) to be played on when it comes back.
            persistent_volume_claim_retention_policy: bot.spec.session.as_ref().map(|_| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                }
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The claim each shard keeps its session on (mounted at [`SESSION_MOUNT_DIR`]).
fn session_claim(session: &SessionSettings) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(SESSION_VOLUME.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: session.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(quantities([("storage", SESSION_CLAIM_SIZE)])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The same StatefulSet with no pods, while the operator holds a crash-looping bot for its
/// identify budget; the spec's replicas come back with the next build after the hold.
pub(crate) fn held(mut sts: StatefulSet) -> StatefulSet {
    if let Some(spec) = sts.spec.as_mut() {
        spec.replicas = Some(0);
    }
    sts
}

fn pod_template(bot: &MusicBot, defaults: &BotDefaults, token_digest: &str) -> PodTemplateSpec {
    let name = bot.name_any();
    let pod = bot.spec.pod.clone().unwrap_or_default();
    let env = bot_env(bot, defaults);
    let mut pod_labels = labels(bot);
    pod_labels.extend(pod.labels.clone());
    pod_labels.extend(selector_labels(&name)); // user labels must not break the selector
    let mut pod_annotations = pod.annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(&env, token_digest));
    let (volumes, volume_mounts) = pod_volumes(bot, defaults);
    let container = bot_runner(&pod, defaults, env, volume_mounts);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(pod_annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            // Bot pods never talk to the Kubernetes API.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(30),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUNNER_UID),
                run_as_group: Some(RUNNER_UID),
                fs_group: Some(RUNNER_UID),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                ..Default::default()
            }),
            node_selector: Some(pod.node_selector),
            tolerations: Some(pod.tolerations),
            priority_class_name: pod.priority_class_name,
            containers: vec![container],
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

/// The bot-runner container: restricted, its state only in `/tmp`, probed over HTTP.
fn bot_runner(pod: &PodOverrides, defaults: &BotDefaults, env: Vec<EnvVar>, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "bot-runner".into(),
        image: Some(pod.image.clone().unwrap_or_else(|| defaults.image.clone())),
        image_pull_policy: pod.image_pull_policy.or(defaults.image_pull_policy).map(|p| p.as_str().into()),
        args: Some(vec!["run".into()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.into()),
            container_port: defaults.http_port.into(),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        startup_probe: Some(startup_probe()),
        // Both run only once the startup probe has passed.
        liveness_probe: Some(http_probe("/health", 10, 3, 2)),
        readiness_probe: Some(http_probe("/ready", 5, 2, 2)),
        // A crash's last log lines become its termination message, which the MusicBot's
        // status quotes.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: Some(pod.resources.clone().unwrap_or_else(|| defaults.resources.clone())),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(timeout),
        ..Default::default()
    }
}

/// The startup probe asks `/ready` to wait up to 9 s for the gateway, so a bot that starts
/// normally passes its first probe without a failure (each failure is a Warning Event).
/// Probes run back to back while one is held (the kubelet's ticker does not queue ticks),
/// so a bot that cannot reach the gateway fails once every ~9–10 s and is restarted after
/// 20 failures, about 3 minutes. The 1 s initial delay leaves bot-runner time to listen.
fn startup_probe() -> Probe {
    Probe { initial_delay_seconds: Some(1), ..http_probe(STARTUP_PROBE_PATH, 1, 20, 10) }
}

fn secret_projection(secret: &str, key: &str, path: &str, optional: bool) -> VolumeProjection {
    VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.into(),
            items: Some(vec![key_to(key, path)]),
            optional: optional.then_some(true),
        }),
        ..Default::default()
    }
}

fn key_to(key: &str, path: &str) -> KeyToPath {
    KeyToPath { key: key.into(), path: path.into(), ..Default::default() }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// The operator's volumes and mounts (token, /tmp, the CA bundle), then the spec's own. A
/// spec volume or mount clashing with the operator's is dropped: the CRD's rules refuse
/// those, and a bot stored before them must still get its token and nothing in its place.
fn pod_volumes(bot: &MusicBot, defaults: &BotDefaults) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &bot.spec;
    let mut volumes = vec![
        // The token and the fleet's key, one directory: bot-runner keeps yt-dlp out of it.
        Volume {
            name: "token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    secret_projection(&spec.token_secret_ref.name, &spec.token_secret_ref.key, "token", false),
                    // A fleet without its key (the Secret deleted, or not made) only loses
                    // its hand-offs: the bot starts all the same.
                    secret_projection(
                        &labels::fleet_key_secret(spec.fleet_name()),
                        labels::FLEET_KEY,
                        "fleet-key",
                        true,
                    ),
                ]),
                default_mode: Some(0o440),
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("512Mi".into())), ..Default::default() }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![mount("token", TOKEN_MOUNT_DIR, true), mount("tmp", "/tmp", false)];
    if let Some(ca) = defaults.ca_bundle_of(bot) {
        volumes.push(Volume {
            name: "ca-bundle".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: ca.config_map_name.clone(),
                items: Some(vec![key_to(&ca.key, "ca.crt")]),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("ca-bundle", CA_MOUNT_DIR, true));
    }
    // The volume itself is the claim template's, which the StatefulSet adds to each pod.
    if spec.session.is_some() {
        mounts.push(mount(SESSION_VOLUME, SESSION_MOUNT_DIR, false));
    }
    let Some(pod) = &spec.pod else { return (volumes, mounts) };
    let mut names: std::collections::BTreeSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
    for v in &pod.volumes {
        if !musicbot_api::crd::RESERVED_VOLUMES.contains(&v.name.as_str()) && names.insert(v.name.clone()) {
            volumes.push(v.clone());
        }
    }
    mounts.extend(pod.volume_mounts.iter().filter(|m| !musicbot_api::crd::reserved_mount(m)).cloned());
    (volumes, mounts)
}

#[cfg(test)]
mod tests;
