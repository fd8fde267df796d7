//! The `MusicBot` custom resource: one Discord application (one token) run as a bot fleet
//! member. The CRD YAML in `crds/` is generated from these types by the `crdgen` binary.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Discord snowflakes are 64-bit integers written in decimal; real ones have 17 to 20 digits.
pub const SNOWFLAKE_PATTERN: &str = r"^[0-9]{17,20}$";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
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
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
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
    /// Extra environment for bot-runner. Names starting with `MUSICBOT_` and `DISCORD_TOKEN`
    /// are reserved: the token comes only from `tokenSecretRef`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(e, e.name != 'DISCORD_TOKEN' && !e.name.startsWith('MUSICBOT_'))",
        "message": "DISCORD_TOKEN and MUSICBOT_* are reserved: put the token in the Secret named by tokenSecretRef"
    }]))]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
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
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Pending, Phase::Running, Phase::Degraded, Phase::Suspended, Phase::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Degraded => "Degraded",
            Phase::Suspended => "Suspended",
            Phase::Failed => "Failed",
        }
    }
}

/// A Kubernetes-style condition (`metav1.Condition`'s shape).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition types the operator sets.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const TOKEN_RESOLVED: &str = "TokenResolved";
    pub const GATEWAY_CONNECTED: &str = "GatewayConnected";
    pub const COMMANDS_DEPLOYED: &str = "CommandsDeployed";
    pub const SYNCED: &str = "Synced";
}

impl MusicBot {
    /// What `/bots` and logs call this bot.
    pub fn display_name(&self) -> String {
        self.spec.display_name.clone().unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

/// The CRD as the YAML committed in `crds/` and the chart.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    Ok(format!("---\n{}", serde_yaml::to_string(&MusicBot::crd())?))
}
