//! The `MusicBot` custom resource: one Discord application (one token) run as a bot fleet
//! member. The CRD YAML in `crds/` is generated from these types by the operator's `crdgen`.

pub use crate::conditions::Condition;
use crate::conditions::ConditionType;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration, Volume, VolumeMount};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use schemars::transform::{RecursiveTransform, Transform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "musicbot.dev",
    version = "v1alpha1",
    kind = "MusicBot",
    plural = "musicbots",
    shortname = "mbot",
    namespaced,
    status = "MusicBotStatus",
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".spec.clientId","priority":1}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Guilds","type":"integer","jsonPath":".status.guilds"}"#,
    printcolumn = r#"{"name":"Voice","type":"integer","jsonPath":".status.voiceConnections"}"#,
    printcolumn = r#"{"name":"Fleet","type":"string","jsonPath":".status.fleet","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // Pod names (`<name>-<ordinal>`) and the StatefulSet's revision label (`<name>-<hash>`,
    // 11 characters more) must stay within 63 characters.
    validation = Rule::new("self.metadata.name.size() <= 52").message("a MusicBot's name is at most 52 characters: its pods and their labels carry it")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = no_unsigned_formats)]
pub struct MusicBotSpec {
    /// The Discord application (client) id of this bot.
    #[schemars(regex(pattern = r"^[0-9]{17,20}$"))]
    pub client_id: String,

    /// Where the bot token is: a key of a Secret in this namespace. The token itself never
    /// appears in a MusicBot.
    pub token_secret_ref: SecretKeyRef,

    /// A human-friendly name, shown in `/bots` and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub display_name: Option<String>,

    /// Stop the bot (no pod) while keeping its objects.
    #[serde(default)]
    pub suspended: bool,

    /// Guilds that get guild-scoped slash commands (instant to update); empty means the
    /// commands are registered globally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(regex(pattern = r"^[0-9]{17,20}$")))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub guild_ids: Vec<String>,

    /// Gateway shards, one pod each. Discord requires sharding from 2,500 guilds on.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 128))]
    pub shards: u32,

    /// Playback settings applied to every guild the bot serves.
    #[serde(default)]
    pub music: MusicSettings,

    /// The bot's presence (status and activity) on Discord.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,

    /// Keep what each guild is playing across restarts: a volume claim per shard holds the
    /// session, and a replaced pod plays on from where the last one stopped. Without it a
    /// new pod starts silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSettings>,

    /// The fleet this bot cooperates with: a `/play` on a bot busy in another voice channel
    /// of the server goes to a free bot of its fleet. Without it the bot is in its
    /// namespace's fleet `default` (synced bots too, unless one is set on them by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"))]
    pub fleet: Option<String>,

    /// Remove the bot's slash commands from Discord when this MusicBot is deleted.
    #[serde(default)]
    pub clear_commands_on_delete: bool,

    /// Overrides for the bot-runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,
}

fn default_shards() -> u32 {
    1
}

/// The fleet of a MusicBot without `spec.fleet`.
pub const DEFAULT_FLEET: &str = "default";

impl MusicBotSpec {
    /// The fleet the bot is in: `spec.fleet`, else its namespace's default.
    pub fn fleet_name(&self) -> &str {
        self.fleet.as_deref().unwrap_or(DEFAULT_FLEET)
    }
}

/// schemars marks unsigned integers `format: uint32`/`uint64`, which are not OpenAPI formats:
/// the API server warns about them on every apply. Their `minimum: 0` stays and says the same.
fn no_unsigned_formats(schema: &mut schemars::Schema) {
    RecursiveTransform(|s: &mut schemars::Schema| {
        if s.get("format").and_then(|f| f.as_str()).is_some_and(|f| f.starts_with("uint")) {
            s.remove("format");
        }
    })
    .transform(schema);
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of a Secret in the MusicBot's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data holding the token.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MusicSettings {
    /// Volume of a new guild queue, in percent.
    #[serde(default = "default_volume")]
    #[schemars(range(min = 0, max = 200))]
    pub default_volume: u32,
    /// Most tracks one guild can queue.
    #[serde(default = "default_max_queue")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_queue_length: u32,
    /// Leave the voice channel after this many seconds with nothing playing (0 = never).
    #[serde(default = "default_idle_leave")]
    #[schemars(range(min = 0, max = 86400))]
    pub idle_leave_seconds: u32,
    /// Stay in the voice channel when it empties or the queue ends.
    #[serde(default)]
    pub stay_in_channel: bool,
}

fn default_volume() -> u32 {
    100
}
fn default_max_queue() -> u32 {
    500
}
fn default_idle_leave() -> u32 {
    300
}

impl Default for MusicSettings {
    fn default() -> Self {
        Self {
            default_volume: default_volume(),
            max_queue_length: default_max_queue(),
            idle_leave_seconds: default_idle_leave(),
            stay_in_channel: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSettings {
    /// The StorageClass of the shards' claims (the cluster's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// A session older than this when the bot starts again is dropped, not played.
    #[serde(default = "default_session_max_age")]
    #[schemars(range(min = 10, max = 604800))]
    pub max_age_seconds: u32,
}

fn default_session_max_age() -> u32 {
    900
}

/// Size of a shard's session claim: a session is a few kilobytes of JSON.
pub const SESSION_CLAIM_SIZE: &str = "16Mi";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    #[serde(default)]
    pub status: OnlineStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnlineStatus {
    #[default]
    Online,
    Idle,
    Dnd,
    Invisible,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type", default)]
    pub kind: ActivityKind,
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActivityKind {
    Playing,
    #[default]
    Listening,
    Watching,
    Competing,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// The bot-runner image (defaults to the operator's `--bot-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra environment for bot-runner. `DISCORD_TOKEN`, `RUST_LOG` and names starting with
    /// `MUSICBOT_` are reserved (the token comes only from `tokenSecretRef`; the log level is
    /// the operator's, as trace-level logs of the Discord libraries can carry request
    /// details), and no variable may read a Secret: a bot pod holds its own token only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(e, e.name != 'DISCORD_TOKEN' && e.name != 'RUST_LOG' && !e.name.startsWith('MUSICBOT_'))",
        "message": "DISCORD_TOKEN, RUST_LOG and MUSICBOT_* are reserved: put the token in the Secret named by tokenSecretRef"
    }, {
        "rule": "self.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef))",
        "message": "spec.pod.env may not read Secrets (valueFrom.secretKeyRef): a bot pod holds its own token and nothing else"
    }]))]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// A private CA the bot trusts for its TLS connections (a proxy in front of Discord, a
    /// MongoDB with its own CA), in addition to the system's roots: a PEM bundle in a
    /// ConfigMap of the MusicBot's namespace, mounted read-only and named by
    /// `MUSICBOT_CA_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundle>,
    /// Extra volumes for the bot pod. The names `token`, `tmp`, `ca-bundle` and `session`
    /// are the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), transform = keyed_by_name)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(v, !(v.name in ['token', 'tmp', 'ca-bundle', 'session']))",
        "message": "the volume names token, tmp, ca-bundle and session are the operator's"
    }]))]
    pub volumes: Vec<Volume>,
    /// Where the bot-runner container mounts `volumes`. The operator's paths (the token's
    /// directory, `/tmp`, the CA bundle's and the session's directories) and anything below
    /// them are reserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), transform = keyed_by_mount_path)]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": RESERVED_MOUNT_RULE,
        "message": RESERVED_MOUNT_MESSAGE
    }]))]
    pub volume_mounts: Vec<VolumeMount>,
}

/// A list of Kubernetes objects keyed by one of their fields: the API server then refuses
/// duplicates (and server-side apply merges by that key). Bounding the strings the CEL rules
/// read keeps their estimated cost within the API server's budget.
fn keyed_by(schema: &mut schemars::Schema, key: &str, bounds: &[(&str, u32)]) {
    if let Some(props) = schema.get_mut("items").and_then(|i| i.get_mut("properties")) {
        for (field, max) in bounds {
            if let Some(p) = props.get_mut(*field).and_then(|p| p.as_object_mut()) {
                p.insert("maxLength".into(), (*max).into());
            }
        }
    }
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!([key]));
}

fn keyed_by_name(schema: &mut schemars::Schema) {
    // Volume names are DNS labels (63 characters).
    keyed_by(schema, "name", &[("name", 63)]);
}

fn keyed_by_mount_path(schema: &mut schemars::Schema) {
    keyed_by(schema, "mountPath", &[("name", 63), ("mountPath", 1024)]);
}

/// Mount paths of the operator's own volumes in bot pods.
pub const RESERVED_MOUNT_PATHS: [&str; 4] =
    ["/var/run/secrets/musicbot", "/tmp", "/etc/musicbot/ca", "/var/lib/musicbot/session"];
const RESERVED_MOUNT_RULE: &str = "self.all(m, !(m.mountPath in ['/var/run/secrets/musicbot', '/tmp', '/etc/musicbot/ca', \
    '/var/lib/musicbot/session']) && !m.mountPath.startsWith('/var/run/secrets/musicbot/') \
    && !m.mountPath.startsWith('/tmp/') && !m.mountPath.startsWith('/etc/musicbot/ca/') \
    && !m.mountPath.startsWith('/var/lib/musicbot/session/') && !(m.name in ['token', 'tmp', 'ca-bundle', 'session']))";
const RESERVED_MOUNT_MESSAGE: &str = "volumeMounts may not use the operator's volumes (token, tmp, ca-bundle, session) \
    or mount at or below /var/run/secrets/musicbot, /tmp, /etc/musicbot/ca or /var/lib/musicbot/session";

/// Whether a mount of `spec.pod.volumeMounts` would clash with the operator's own mounts
/// (the API server's CEL rule says the same; this also covers objects stored before it).
pub fn reserved_mount(mount: &VolumeMount) -> bool {
    let path = mount.mount_path.trim_end_matches('/');
    RESERVED_VOLUMES.contains(&mount.name.as_str())
        || RESERVED_MOUNT_PATHS.iter().any(|r| path == *r || path.starts_with(&format!("{r}/")))
}

/// Names of the operator's own volumes in bot pods.
pub const RESERVED_VOLUMES: [&str; 4] = ["token", "tmp", "ca-bundle", "session"];

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundle {
    /// A ConfigMap in the MusicBot's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub config_map_name: String,
    /// The key holding the PEM certificates.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub const ALL: [Self; 3] = [Self::Always, Self::IfNotPresent, Self::Never];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = no_unsigned_formats)]
pub struct MusicBotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Guilds the bot is in (summed over shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guilds: Option<u64>,
    /// Users in those guilds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// Voice channels the bot is connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_connections: Option<u64>,
    /// The bot's first pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_shards: Option<u32>,
    /// While the operator keeps the bot's pods stopped because one crash-looped with its
    /// token's daily IDENTIFYs down to the reserve: until when (RFC 3339), just after
    /// Discord refills them. The pods start again then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify_held_until: Option<String>,
    /// The fleet the bot is in (`spec.fleet`, or `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum Phase {
    /// Objects are being created or the pods are starting.
    Pending,
    /// Every shard is ready.
    Running,
    /// Some shards are not ready.
    Degraded,
    /// `spec.suspended` is true: no pods.
    Suspended,
    /// The bot cannot run until its input is fixed (e.g. the token cannot be resolved).
    Failed,
    /// The bot waits for Discord to refill its token's daily IDENTIFYs before it connects
    /// (its pod waits, or the operator keeps it stopped): `IdentifiesAvailable` says until when.
    Held,
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Pending, Phase::Running, Phase::Degraded, Phase::Suspended, Phase::Failed, Phase::Held];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Degraded => "Degraded",
            Phase::Suspended => "Suspended",
            Phase::Failed => "Failed",
            Phase::Held => "Held",
        }
    }
}

impl MusicBotStatus {
    /// The condition of type `type_`, if the operator set one.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

impl MusicBot {
    /// What `/bots` and logs call this bot.
    pub fn display_name(&self) -> String {
        self.spec.display_name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}
