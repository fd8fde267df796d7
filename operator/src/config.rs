//! Command-line flags of the operator, each with an environment fallback.

use clap::{Parser, ValueEnum};
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(name = "musicbot-operator", version, about = "Runs fleets of Discord music bots on Kubernetes")]
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

    /// imagePullPolicy of bot pods (default: Kubernetes' own default).
    #[arg(long, env = "MUSICBOT_BOT_IMAGE_PULL_POLICY")]
    pub bot_image_pull_policy: Option<String>,

    /// Resources of bot pods, as JSON (a ResourceRequirements), unless a MusicBot sets its own.
    #[arg(long, env = "MUSICBOT_BOT_RESOURCES")]
    pub bot_resources: Option<String>,

    /// Port bot-runner listens on in its pod (probes, metrics, /status).
    #[arg(long, env = "MUSICBOT_BOT_HTTP_PORT", default_value_t = 8080)]
    pub bot_http_port: u16,

    /// Discord API base URL, for bot pods and for clearing commands (point it at the simulator in tests).
    #[arg(long, env = "MUSICBOT_DISCORD_API_URL", default_value = "https://discord.com/api/v10")]
    pub discord_api_url: String,

    /// Secret name and key (`name/key`) holding the MongoDB URI bot pods use for guild tracking.
    #[arg(long, env = "MUSICBOT_BOT_MONGODB_URI_SECRET")]
    pub bot_mongodb_uri_secret: Option<String>,

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

    /// Log format.
    #[arg(long, env = "MUSICBOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,kube=warn")]
    pub log_filter: String,
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

    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("musicbot-operator-{}", std::process::id()))
    }
}
