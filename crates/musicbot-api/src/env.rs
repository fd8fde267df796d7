//! The environment the operator gives a bot pod, which is bot-runner's configuration there.
//! The operator writes it from a [`BotEnv`]; bot-runner reads the same names (its flags'
//! environment fallbacks name the constants in [`var`]). The token is never among them: it
//! is a file, named by [`var::TOKEN_FILE`], and nothing here reads a Secret: a bot pod
//! holds its own token and no other credential (the MongoDB variables below are for
//! bot-runner run by hand; in Kubernetes the operator tracks guilds itself).

use std::str::FromStr;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

use crate::crd::{ActivityKind, MusicSettings, OnlineStatus, Presence};

/// Prefix of every variable of the contract; `spec.pod.env` may not use it.
pub const RESERVED_PREFIX: &str = "MUSICBOT_";

/// The variables' names.
pub mod var {
    pub const TOKEN_FILE: &str = "MUSICBOT_TOKEN_FILE";
    pub const CLIENT_ID: &str = "MUSICBOT_CLIENT_ID";
    pub const BOT_NAME: &str = "MUSICBOT_BOT_NAME";
    pub const HTTP_PORT: &str = "MUSICBOT_HTTP_PORT";
    pub const SHARD_COUNT: &str = "MUSICBOT_SHARD_COUNT";
    pub const SHARD_ID: &str = "MUSICBOT_SHARD_ID";
    pub const DEFAULT_VOLUME: &str = "MUSICBOT_DEFAULT_VOLUME";
    pub const MAX_QUEUE_LENGTH: &str = "MUSICBOT_MAX_QUEUE_LENGTH";
    pub const IDLE_LEAVE_SECONDS: &str = "MUSICBOT_IDLE_LEAVE_SECONDS";
    pub const STAY_IN_CHANNEL: &str = "MUSICBOT_STAY_IN_CHANNEL";
    pub const LOG_FORMAT: &str = "MUSICBOT_LOG_FORMAT";
    pub const CA_FILE: &str = "MUSICBOT_CA_FILE";
    pub const GUILD_IDS: &str = "MUSICBOT_GUILD_IDS";
    pub const PRESENCE_STATUS: &str = "MUSICBOT_PRESENCE_STATUS";
    pub const ACTIVITY_TYPE: &str = "MUSICBOT_ACTIVITY_TYPE";
    pub const ACTIVITY_NAME: &str = "MUSICBOT_ACTIVITY_NAME";
    pub const DISCORD_API_URL: &str = "MUSICBOT_DISCORD_API_URL";
    pub const MONGODB_URI: &str = "MUSICBOT_MONGODB_URI";
    pub const MONGODB_DATABASE: &str = "MUSICBOT_MONGODB_DATABASE";
    pub const BOTS_COLLECTION: &str = "MUSICBOT_BOTS_COLLECTION";
    pub const GUILDS_COLLECTION: &str = "MUSICBOT_GUILDS_COLLECTION";
    pub const MEDIA_ALLOW: &str = "MUSICBOT_MEDIA_ALLOW";
    pub const SESSION_DIR: &str = "MUSICBOT_SESSION_DIR";
    pub const SESSION_MAX_AGE_SECONDS: &str = "MUSICBOT_SESSION_MAX_AGE_SECONDS";
    pub const FLEET_KEY_FILE: &str = "MUSICBOT_FLEET_KEY_FILE";
}

/// The StatefulSet controller labels each pod with its ordinal: shard id = ordinal.
pub const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

/// Where bot pods find their token (a projected key of the token Secret).
pub const TOKEN_MOUNT_DIR: &str = "/var/run/secrets/musicbot";
pub const TOKEN_FILE: &str = "/var/run/secrets/musicbot/token";
/// Where a CA bundle is mounted in bot pods.
pub const CA_MOUNT_DIR: &str = "/etc/musicbot/ca";
pub const CA_FILE: &str = "/etc/musicbot/ca/ca.crt";
/// Where a shard's session claim is mounted in bot pods.
pub const SESSION_MOUNT_DIR: &str = "/var/lib/musicbot/session";

/// Beside the token, in the same volume: what keeps yt-dlp from the token keeps it from
/// the key too.
pub const FLEET_KEY_FILE: &str = "/var/run/secrets/musicbot/fleet-key";

/// How bot-runner writes its logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// A value that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of: {}", expected.join(", "))]
pub struct UnknownValue {
    value: String,
    expected: &'static [&'static str],
}

fn parse_name<T: Copy>(
    value: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    names: &'static [&'static str],
) -> Result<T, UnknownValue> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(value))
        .ok_or_else(|| UnknownValue { value: value.into(), expected: names })
}

impl FromStr for LogFormat {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name(s, &[Self::Text, Self::Json], Self::as_str, &["text", "json"])
    }
}

impl OnlineStatus {
    pub const ALL: [Self; 4] = [Self::Online, Self::Idle, Self::Dnd, Self::Invisible];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Idle => "idle",
            Self::Dnd => "dnd",
            Self::Invisible => "invisible",
        }
    }
}

impl FromStr for OnlineStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name(s, &Self::ALL, Self::as_str, &["online", "idle", "dnd", "invisible"])
    }
}

impl ActivityKind {
    pub const ALL: [Self; 4] = [Self::Playing, Self::Listening, Self::Watching, Self::Competing];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Playing => "playing",
            Self::Listening => "listening",
            Self::Watching => "watching",
            Self::Competing => "competing",
        }
    }
}

impl FromStr for ActivityKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        parse_name(s, &Self::ALL, Self::as_str, &["playing", "listening", "watching", "competing"])
    }
}

/// Everything a bot pod is told, besides its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotEnv {
    pub client_id: String,
    pub bot_name: String,
    pub http_port: u16,
    pub shard_count: u32,
    pub music: MusicSettings,
    pub log_format: LogFormat,
    /// A CA bundle is mounted at [`CA_FILE`].
    pub ca_bundle: bool,
    pub guild_ids: Vec<String>,
    pub presence: Option<Presence>,
    pub discord_api_url: Option<String>,
    /// Private address ranges (CIDR) `/play` may fetch from besides public addresses.
    pub media_allow: Vec<String>,
    /// The session is kept at [`SESSION_MOUNT_DIR`], dropped when older than this.
    pub session_max_age_seconds: Option<u32>,
    /// The fleet's key is mounted at [`FLEET_KEY_FILE`].
    pub fleet_key: bool,
}

/// A variable's value in the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Value(String),
    /// The pod's ordinal in its StatefulSet.
    ShardOrdinal,
}

impl BotEnv {
    /// The variables, in a stable order (their digest rolls the pods when one changes).
    pub fn vars(&self) -> Vec<(&'static str, Source)> {
        let value = |name, v: String| (name, Source::Value(v));
        let music = &self.music;
        let mut vars = vec![
            value(var::TOKEN_FILE, TOKEN_FILE.into()),
            value(var::CLIENT_ID, self.client_id.clone()),
            value(var::BOT_NAME, self.bot_name.clone()),
            value(var::HTTP_PORT, self.http_port.to_string()),
            value(var::SHARD_COUNT, self.shard_count.to_string()),
            (var::SHARD_ID, Source::ShardOrdinal),
            value(var::DEFAULT_VOLUME, music.default_volume.to_string()),
            value(var::MAX_QUEUE_LENGTH, music.max_queue_length.to_string()),
            value(var::IDLE_LEAVE_SECONDS, music.idle_leave_seconds.to_string()),
            value(var::STAY_IN_CHANNEL, music.stay_in_channel.to_string()),
            value(var::LOG_FORMAT, self.log_format.as_str().into()),
        ];
        if self.ca_bundle {
            vars.push(value(var::CA_FILE, CA_FILE.into()));
        }
        if !self.guild_ids.is_empty() {
            vars.push(value(var::GUILD_IDS, self.guild_ids.join(",")));
        }
        if let Some(presence) = &self.presence {
            vars.push(value(var::PRESENCE_STATUS, presence.status.as_str().into()));
            if let Some(activity) = &presence.activity {
                vars.push(value(var::ACTIVITY_TYPE, activity.kind.as_str().into()));
                vars.push(value(var::ACTIVITY_NAME, activity.name.clone()));
            }
        }
        if let Some(url) = &self.discord_api_url {
            vars.push(value(var::DISCORD_API_URL, url.clone()));
        }
        if !self.media_allow.is_empty() {
            vars.push(value(var::MEDIA_ALLOW, self.media_allow.join(",")));
        }
        if let Some(max_age) = self.session_max_age_seconds {
            vars.push(value(var::SESSION_DIR, SESSION_MOUNT_DIR.into()));
            vars.push(value(var::SESSION_MAX_AGE_SECONDS, max_age.to_string()));
        }
        if self.fleet_key {
            vars.push(value(var::FLEET_KEY_FILE, FLEET_KEY_FILE.into()));
        }
        vars
    }

    /// [`BotEnv::vars`] as a container's environment.
    pub fn env_vars(&self) -> Vec<EnvVar> {
        self.vars().into_iter().map(|(name, source)| env_var(name, source)).collect()
    }
}

pub fn env_var(name: &str, source: Source) -> EnvVar {
    let from = |s: EnvVarSource| EnvVar { name: name.into(), value_from: Some(s), ..Default::default() };
    match source {
        Source::Value(v) => EnvVar { name: name.into(), value: Some(v), ..Default::default() },
        Source::ShardOrdinal => from(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: POD_INDEX_FIELD.into(), ..Default::default() }),
            ..Default::default()
        }),
    }
}

/// A full example, for the readers' tests: every variable set.
pub fn example() -> BotEnv {
    BotEnv {
        client_id: "123456789012345678".into(),
        bot_name: "Radio".into(),
        http_port: 8081,
        shard_count: 2,
        music: MusicSettings {
            default_volume: 80,
            max_queue_length: 50,
            idle_leave_seconds: 60,
            stay_in_channel: true,
        },
        log_format: LogFormat::Json,
        ca_bundle: true,
        guild_ids: vec!["111111111111111111".into(), "222222222222222222".into()],
        presence: Some(Presence {
            status: OnlineStatus::Dnd,
            activity: Some(crate::crd::Activity { kind: ActivityKind::Playing, name: "lofi".into() }),
        }),
        discord_api_url: Some("http://10.244.0.1:5000".into()),
        media_allow: vec!["10.244.0.1/32".into(), "192.168.50.0/24".into()],
        session_max_age_seconds: Some(600),
        fleet_key: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_reserved_named_once_and_the_token_is_a_file() {
        let vars = example().vars();
        let names: Vec<&str> = vars.iter().map(|(n, _)| *n).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with(RESERVED_PREFIX)));
        assert!(!names.iter().any(|n| n.contains("TOKEN") && *n != var::TOKEN_FILE));
        assert_eq!(names.len(), 21, "the example sets every variable: {names:?}");
    }

    #[test]
    fn values_are_written_as_bot_runner_parses_them() {
        let env = example().env_vars();
        let get = |n: &str| env.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get(var::GUILD_IDS).value.as_deref(), Some("111111111111111111,222222222222222222"));
        assert_eq!(get(var::PRESENCE_STATUS).value.as_deref(), Some("dnd"));
        assert_eq!(get(var::STAY_IN_CHANNEL).value.as_deref(), Some("true"));
        let shard = get(var::SHARD_ID).value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(shard.field_path, POD_INDEX_FIELD);
    }

    #[test]
    fn enum_values_round_trip_through_their_names() {
        for s in OnlineStatus::ALL {
            assert_eq!(s.as_str().parse::<OnlineStatus>(), Ok(s));
        }
        for k in ActivityKind::ALL {
            assert_eq!(k.as_str().to_uppercase().parse::<ActivityKind>(), Ok(k));
        }
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        let e = "loud".parse::<OnlineStatus>().unwrap_err();
        assert_eq!(e.to_string(), "\"loud\" is not one of: online, idle, dnd, invisible");
    }
}
