//! Command-line flags of the operator, each with an environment fallback.

use clap::{Args, Parser, ValueEnum};
use k8s_openapi::api::core::v1::ResourceRequirements;
use musicbot_api::crd::ImagePullPolicy;
use std::path::PathBuf;
use std::time::Duration;

// The flags of `musicbot-operator [run]`. `Parser` (which implies `Args`) so it can be
// flattened into the CLI and still be inspected on its own (`Config::command()`); no
// struct-level `#[command]` or doc comment, which would leak into the commands it is
// flattened into.
#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Watch MusicBots in this namespace only (default: every namespace).
    #[arg(long, env = "MUSICBOT_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of the HTTP server (/health, /ready, /metrics, /bots).
    #[arg(long, env = "MUSICBOT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,

    /// bot-runner image for MusicBots that do not set spec.pod.image.
    #[arg(long, env = "MUSICBOT_BOT_IMAGE", default_value = "ghcr.io/musicbot-operator/bot-runner:0.1.0")]
    pub bot_image: String,

    /// Repositories (without tag, comma-separated) a MusicBot's spec.pod.image may come
    /// from besides --bot-image's. A bot naming another image is not started.
    #[arg(long, env = "MUSICBOT_BOT_IMAGE_REPOSITORIES", value_delimiter = ',')]
    pub bot_image_repositories: Vec<String>,

    /// imagePullPolicy of bot pods (default: Kubernetes' own default).
    #[arg(long, env = "MUSICBOT_BOT_IMAGE_PULL_POLICY", value_parser = parse_pull_policy)]
    pub bot_image_pull_policy: Option<ImagePullPolicy>,

    /// Resources of bot pods, as JSON (a ResourceRequirements), unless a MusicBot sets its own.
    #[arg(long, env = "MUSICBOT_BOT_RESOURCES", value_parser = parse_resources)]
    pub bot_resources: Option<ResourceRequirements>,

    /// Port bot-runner listens on in its pod (probes, metrics, /status).
    #[arg(long, env = "MUSICBOT_BOT_HTTP_PORT", default_value_t = 8080)]
    pub bot_http_port: u16,

    /// Discord API base URL, for bot pods and for clearing commands (point it at the simulator in tests).
    #[arg(long, env = "MUSICBOT_DISCORD_API_URL", default_value = "https://discord.com/api/v10")]
    pub discord_api_url: String,

    /// Private address ranges (CIDR, comma-separated) bots may fetch media from besides
    /// public addresses, e.g. a media server in the cluster. Everything internal is refused
    /// otherwise.
    #[arg(long, env = "MUSICBOT_BOT_MEDIA_ALLOW", value_delimiter = ',', value_parser = parse_cidr)]
    pub bot_media_allow: Vec<String>,

    /// A private CA for every bot whose spec names none (`CONFIGMAP` or `CONFIGMAP/KEY`, key
    /// default `ca.crt`): a ConfigMap of that name in each bot's namespace.
    #[arg(long, env = "MUSICBOT_BOT_CA_BUNDLE", value_parser = parse_ca_bundle)]
    pub bot_ca_bundle: Option<musicbot_api::crd::CaBundle>,

    /// Seconds between refreshes of a running bot's guild/user/voice counts.
    #[arg(long, env = "MUSICBOT_STATUS_INTERVAL_SECONDS", default_value_t = 60)]
    pub status_interval_seconds: u64,

    /// Most MusicBots reconciled at once.
    #[arg(long, env = "MUSICBOT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Take part in leader election through a Lease, so several replicas can run.
    #[arg(long, env = "MUSICBOT_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the leader Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "MUSICBOT_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader Lease.
    #[arg(long, env = "MUSICBOT_LEADER_ELECTION_LEASE", default_value = "musicbot-operator-leader")]
    pub leader_election_lease: String,

    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, env = "MUSICBOT_LEADER_ELECTION_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,

    /// This replica's identity in the Lease (default: the pod name from $POD_NAME or $HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// This replica's pod IP. Bots of the MongoDB sync's fleet ask it whom to invite to a
    /// server (guild assignment, at `http://<it>:<--http-addr's port>/fleet/invite`);
    /// without it they offer the invite of a fleet bot not yet in the server.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,

    /// Log format.
    #[arg(long, env = "MUSICBOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    pub log_filter: String,

    #[command(flatten)]
    pub mongo: MongoArgs,

    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Where the bot records are, and the key of their tokens: shared by the operator and the
/// `bots` commands.
#[derive(Args, Debug, Clone)]
pub struct MongoArgs {
    #[command(flatten)]
    pub records: musicbot_db::connect::RecordsArgs,

    /// File holding the token-encryption key: 32 raw bytes, or their base64.
    #[arg(long, env = "MUSICBOT_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
}

/// How the sync learns about changes (shared with bot-runner's fleet mode).
pub use musicbot_db::follow::Mode as SyncMode;

/// The MongoDB sync and guild assignment (active when --mongodb-uri is set).
#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// Namespace of the synced Secrets and MusicBots (default: the operator's own namespace, else "default").
    #[arg(long, env = "MUSICBOT_SYNC_NAMESPACE")]
    pub sync_namespace: Option<String>,

    /// How the records are followed (the flags fleet mode takes too).
    #[command(flatten)]
    pub follow: musicbot_db::connect::FollowArgs,

    /// Seconds an assigned bot's invite stays PENDING_INVITE before it becomes FAILED.
    #[arg(long, env = "MUSICBOT_INVITE_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub invite_timeout_seconds: u64,

    /// Seconds a FAILED guild entry (an invite never used) is kept before it is deleted.
    #[arg(long, env = "MUSICBOT_FAILED_INVITE_RETENTION_SECONDS", default_value_t = 86400)]
    pub failed_invite_retention_seconds: u64,

    /// File holding the bearer token `POST /assignments` requires (at least 16 characters).
    /// Without it the endpoint answers 503.
    #[arg(long, env = "MUSICBOT_ASSIGNMENTS_TOKEN_FILE")]
    pub assignments_token_file: Option<PathBuf>,

    /// `POST /assignments` requests per second one replica answers; beyond it and the burst, 429.
    #[arg(long, env = "MUSICBOT_ASSIGNMENTS_PER_SECOND", default_value_t = 5)]
    pub assignments_per_second: u32,

    /// Requests `POST /assignments` answers at once before the per-second rate applies.
    #[arg(long, env = "MUSICBOT_ASSIGNMENTS_BURST", default_value_t = 20)]
    pub assignments_burst: u32,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn status_interval(&self) -> Duration {
        Duration::from_secs(self.status_interval_seconds.max(1))
    }

    /// The namespace this process runs in (from its service account), if in a pod.
    pub fn own_namespace() -> Option<String> {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn sync_namespace(&self) -> String {
        self.sync.sync_namespace.clone().or_else(Self::own_namespace).unwrap_or_else(|| "default".into())
    }

    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("musicbot-operator-{}", std::process::id()))
    }
}

fn parse_pull_policy(value: &str) -> Result<ImagePullPolicy, String> {
    ImagePullPolicy::ALL
        .into_iter()
        .find(|p| p.as_str() == value)
        .ok_or_else(|| format!("{value:?} is not Always, IfNotPresent or Never"))
}

fn parse_resources(value: &str) -> Result<ResourceRequirements, String> {
    serde_json::from_str(value).map_err(|e| format!("not a ResourceRequirements in JSON: {e}"))
}

fn parse_cidr(value: &str) -> Result<String, String> {
    let bad = || format!("{value:?} is not an address range like 10.0.0.0/8");
    let (addr, len) = value.split_once('/').ok_or_else(bad)?;
    let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok(value.to_string())
}

fn parse_ca_bundle(value: &str) -> Result<musicbot_api::crd::CaBundle, String> {
    let (name, key) = value.split_once('/').unwrap_or((value, "ca.crt"));
    if name.is_empty() || key.is_empty() {
        return Err(format!("{value:?} is not CONFIGMAP or CONFIGMAP/KEY"));
    }
    Ok(musicbot_api::crd::CaBundle { config_map_name: name.into(), key: key.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_pod_flags_are_parsed_into_their_types() {
        assert_eq!(parse_pull_policy("Never"), Ok(ImagePullPolicy::Never));
        assert!(parse_pull_policy("never").is_err());
        let r = parse_resources(r#"{"limits": {"memory": "64Mi"}}"#).unwrap();
        assert_eq!(r.limits.unwrap()["memory"].0, "64Mi");
        assert!(parse_resources("64Mi").is_err());
        assert_eq!(parse_cidr("10.244.0.1/32").as_deref(), Ok("10.244.0.1/32"));
        assert!(
            parse_cidr("10.244.0.1").is_err()
                && parse_cidr("10.0.0.0/33").is_err()
                && parse_cidr("fd00::/129").is_err()
        );
    }

    #[test]
    fn a_ca_bundle_flag_names_a_config_map_and_maybe_its_key() {
        let plain = parse_ca_bundle("corp-ca").unwrap();
        assert_eq!((plain.config_map_name.as_str(), plain.key.as_str()), ("corp-ca", "ca.crt"));
        let keyed = parse_ca_bundle("corp-ca/bundle.pem").unwrap();
        assert_eq!((keyed.config_map_name.as_str(), keyed.key.as_str()), ("corp-ca", "bundle.pem"));
        assert!(parse_ca_bundle("/x").is_err());
        assert!(parse_ca_bundle("corp-ca/").is_err());
    }
}
