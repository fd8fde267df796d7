//! Command line: flags with `MUSICBOT_*` environment fallbacks, the names the operator sets
//! in bot pods (musicbot-api's `env` contract). The token never comes from a flag value:
//! argv is world-readable in `/proc`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use musicbot_api::crd::{ActivityKind, OnlineStatus};
use musicbot_api::env::{LogFormat, var};

use crate::music::guard::MediaPolicy;
use crate::music::listing::SearchSite;
use crate::music::source::Limits;
use crate::sandbox::SandboxArgs;
use musicbot_db::connect::RecordsArgs;

#[derive(Parser, Debug)]
#[command(name = "bot-runner", version, about = "A Discord music bot (serenity + songbird), one per token")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Flags of `run`, so a bare `bot-runner` runs the bot.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one bot (the default).
    Run(Box<RunArgs>),
    /// Run several bots in one process: every active bot in MongoDB, or one per token file.
    Fleet(Box<FleetArgs>),
    /// Deploy or clear slash commands without starting a gateway (the seed's scripts).
    #[command(subcommand)]
    Commands(CommandsCommand),
    /// Runs yt-dlp confined (what the bot itself runs in place of yt-dlp).
    #[command(name = "ytdlp-sandbox", hide = true)]
    YtdlpSandbox(SandboxArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// File holding the bot token (as the operator mounts it). Without it the token is read
    /// from $DISCORD_TOKEN, for local use.
    #[arg(long, env = var::TOKEN_FILE)]
    pub token_file: Option<PathBuf>,

    /// Discord application (client) id; taken from the token when absent.
    #[arg(long, env = var::CLIENT_ID)]
    pub client_id: Option<String>,

    /// Name shown in /bots and logs.
    #[arg(long, env = var::BOT_NAME)]
    pub bot_name: Option<String>,

    /// Guilds that get guild-scoped commands (comma-separated); empty registers them globally.
    #[arg(long, env = var::GUILD_IDS, value_delimiter = ',')]
    pub guild_ids: Vec<u64>,

    /// This process's shard and the bot's shard count.
    #[arg(long, env = var::SHARD_ID, default_value_t = 0)]
    pub shard_id: u32,
    #[arg(long, env = var::SHARD_COUNT, default_value_t = 1)]
    pub shard_count: u32,

    #[command(flatten)]
    pub presence: PresenceArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Token files, one bot each (instead of, or besides, the bots in MongoDB).
    #[arg(long = "token-file", env = "MUSICBOT_TOKEN_FILES", value_delimiter = ',')]
    pub token_files: Vec<PathBuf>,

    /// Token-encryption key file, for `enc:v1:` tokens in MongoDB.
    #[arg(long, env = "MUSICBOT_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,

    /// Guilds that get guild-scoped commands, for every bot; empty registers them globally.
    #[arg(long, env = var::GUILD_IDS, value_delimiter = ',')]
    pub guild_ids: Vec<u64>,

    #[command(flatten)]
    pub presence: PresenceArgs,

    /// How the records are followed: the operator's sync flags.
    #[command(flatten)]
    pub follow: musicbot_db::connect::FollowArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Subcommand, Debug)]
pub enum CommandsCommand {
    /// Register the slash commands (a bulk overwrite, skipped when nothing changed).
    Deploy(Box<CommandsArgs>),
    /// Remove every slash command.
    Clear(Box<CommandsArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct CommandsArgs {
    /// Only this bot (default: every active bot in MongoDB, or the bot of --token-file/$DISCORD_TOKEN).
    #[arg(long)]
    pub client_id: Option<String>,

    /// Only this guild's commands (default: global ones).
    #[arg(long, requires = "client_id")]
    pub guild: Option<u64>,

    /// Token file of a single bot, when not using MongoDB.
    #[arg(long, env = var::TOKEN_FILE)]
    pub token_file: Option<PathBuf>,

    #[arg(long, env = "MUSICBOT_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,

    #[command(flatten)]
    pub records: RecordsArgs,

    #[arg(long, env = var::DISCORD_API_URL)]
    pub discord_api_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    // The records, for guild tracking and fleet mode (optional: without MongoDB the bot runs
    // all the same).
    #[command(flatten)]
    pub records: RecordsArgs,

    /// Discord API base URL; point it at the simulator (`http://127.0.0.1:PORT`) to run
    /// without Discord. Discord's own URL keeps serenity's rate limiter on.
    #[arg(long, env = var::DISCORD_API_URL)]
    pub discord_api_url: Option<String>,

    /// PEM file of extra CA certificates to trust besides the system's roots (for a voice
    /// server or API behind a private CA). Unlike SSL_CERT_FILE, which replaces the
    /// system's roots, this adds to them.
    #[arg(long, env = var::CA_FILE)]
    pub ca_file: Option<PathBuf>,

    /// Port of /health, /ready, /metrics, /status and /bots.
    #[arg(long, env = var::HTTP_PORT, default_value_t = 8080)]
    pub http_port: u16,

    /// Address the HTTP server binds.
    #[arg(long, env = "MUSICBOT_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: String,

    /// File holding the key of this bot's fleet: with it, a bot busy in another voice
    /// channel hands `/play` to a free bot of the fleet, and takes such requests from them
    /// (`POST /fleet/play`, `POST /fleet/directory`, the key as a bearer token).
    #[arg(long, env = var::FLEET_KEY_FILE)]
    pub fleet_key_file: Option<PathBuf>,

    #[command(flatten)]
    pub music: MusicArgs,

    /// yt-dlp (or a compatible program) for YouTube, SoundCloud and search.
    #[arg(long, env = "MUSICBOT_YTDLP", default_value = "yt-dlp")]
    pub ytdlp: String,

    #[command(flatten)]
    pub media: MediaArgs,

    #[command(flatten)]
    pub session: SessionArgs,

    /// /health fails once the gateway has been down this long, so the kubelet restarts us.
    #[arg(long, env = "MUSICBOT_GATEWAY_STUCK_SECONDS", default_value_t = 300)]
    pub gateway_stuck_seconds: u64,

    /// Identifies kept in reserve: with this many (or fewer) of the token's daily 1,000
    /// left, the bot does not connect but waits, up and reporting, for Discord's reset.
    #[arg(long, env = "MUSICBOT_IDENTIFY_RESERVE", default_value_t = 3)]
    pub identify_reserve: u64,

    /// Seconds a `/search` menu or a playlist offer can be picked from before it is taken
    /// off its message.
    #[arg(long, env = "MUSICBOT_MENU_EXPIRY_SECONDS", default_value_t = 120)]
    pub menu_expiry_seconds: u64,

    /// Time allowed for leaving voice and closing gateways on SIGTERM.
    #[arg(long, env = "MUSICBOT_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// text or json.
    #[arg(long, env = var::LOG_FORMAT, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,serenity=warn,songbird=warn")]
    pub log_filter: String,
}

#[derive(Args, Debug, Clone)]
pub struct MusicArgs {
    /// Volume of a new guild queue, in percent (0–200).
    #[arg(long, env = var::DEFAULT_VOLUME, default_value_t = 100, value_parser = clap::value_parser!(u16).range(0..=200))]
    pub default_volume: u16,

    /// Most tracks one guild can queue.
    #[arg(long, env = var::MAX_QUEUE_LENGTH, default_value_t = 500)]
    pub max_queue_length: usize,

    /// Leave voice after this many seconds idle: nothing playing, or nobody listening (0 = never).
    #[arg(long, env = var::IDLE_LEAVE_SECONDS, default_value_t = 300)]
    pub idle_leave_seconds: u64,

    /// Stay in the voice channel when it empties or the queue ends.
    #[arg(long, env = var::STAY_IN_CHANNEL, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub stay_in_channel: bool,
}

impl MusicArgs {
    pub fn idle_leave(&self) -> Option<Duration> {
        (self.idle_leave_seconds > 0 && !self.stay_in_channel).then(|| Duration::from_secs(self.idle_leave_seconds))
    }
}

/// Where the music is kept across restarts (see `music::session`).
#[derive(Args, Debug, Clone)]
pub struct SessionArgs {
    /// Directory of the session files (one per bot): what each guild plays, written every
    /// second and at shutdown, played on by the next start. Unset: a restart starts silent.
    #[arg(long, env = var::SESSION_DIR)]
    pub session_dir: Option<PathBuf>,

    /// A session older than this at start is dropped instead of played.
    #[arg(long, env = var::SESSION_MAX_AGE_SECONDS, default_value_t = 900)]
    pub session_max_age_seconds: u64,
}

/// What `/play` may fetch, and how much.
#[derive(Args, Debug, Clone)]
pub struct MediaArgs {
    /// Address ranges (CIDR) media may come from besides public addresses: a private media
    /// server. Loopback, private, link-local, CGNAT and unique-local ranges are refused
    /// otherwise, after DNS resolution and on every redirect.
    #[arg(long, env = var::MEDIA_ALLOW, value_delimiter = ',')]
    pub media_allow: Vec<IpNet>,

    /// More ranges to refuse, e.g. a cluster's pod or service range that is public.
    #[arg(long, env = "MUSICBOT_MEDIA_DENY", value_delimiter = ',')]
    pub media_deny: Vec<IpNet>,

    /// Longest track accepted, in minutes, where its length is known before it plays.
    #[arg(long, env = "MUSICBOT_MAX_TRACK_MINUTES", default_value_t = 180)]
    pub max_track_minutes: u64,

    /// Largest audio file accepted, in MB, where the server says its size.
    #[arg(long, env = "MUSICBOT_MAX_FILE_MB", default_value_t = 200)]
    pub max_file_mb: u64,

    /// Longest a `/play` may spend finding its track (HEAD, or yt-dlp), in seconds.
    #[arg(long, env = "MUSICBOT_RESOLVE_TIMEOUT_SECONDS", default_value_t = 30)]
    pub resolve_timeout_seconds: u64,

    /// Most tracks one playlist or album adds to a queue (the queue's own limit holds too).
    #[arg(long, env = "MUSICBOT_PLAYLIST_MAX", default_value_t = 100)]
    pub playlist_max: usize,

    /// Where `/play` words and `/search` look: a yt-dlp search key (`ytsearch` for YouTube,
    /// `scsearch` for SoundCloud) or the URL of a page whose media yt-dlp lists, with
    /// `{query}` for the words.
    #[arg(long, env = "MUSICBOT_SEARCH", default_value = "ytsearch", value_parser = SearchSite::parse)]
    pub search: SearchSite,

    /// Where Spotify, Apple Music and Deezer track pages are read from instead of the
    /// services' own sites (`spotify=URL,apple=URL,deezer=URL`): a mirror.
    #[arg(long, env = "MUSICBOT_LINK_PAGE_BASES", value_delimiter = ',')]
    pub link_page_bases: Vec<String>,
}

impl MediaArgs {
    pub fn policy(&self) -> MediaPolicy {
        MediaPolicy::new(self.media_allow.clone(), self.media_deny.clone())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            resolve: Duration::from_secs(self.resolve_timeout_seconds.max(1)),
            max_track: Duration::from_secs(self.max_track_minutes.saturating_mul(60)),
            max_file_bytes: self.max_file_mb.saturating_mul(1 << 20),
            playlist_max: self.playlist_max.max(1),
            ..Limits::default()
        }
    }
}

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceArgs {
    /// online, idle, dnd or invisible.
    #[arg(long, env = var::PRESENCE_STATUS)]
    pub presence_status: Option<OnlineStatus>,
    /// playing, listening, watching or competing.
    #[arg(long, env = var::ACTIVITY_TYPE, requires = "activity_name")]
    pub activity_type: Option<ActivityKind>,
    #[arg(long, env = var::ACTIVITY_NAME)]
    pub activity_name: Option<String>,
}

impl From<&musicbot_api::crd::Presence> for PresenceArgs {
    /// A presence of the contract's shape (a record's, in fleet mode) as the flags give one.
    fn from(p: &musicbot_api::crd::Presence) -> Self {
        Self {
            presence_status: Some(p.status),
            activity_type: p.activity.as_ref().map(|a| a.kind),
            activity_name: p.activity.as_ref().map(|a| a.name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_environment_configures_a_bot() {
        // Every variable of the contract, as the operator writes it; the shard id is the
        // pod's ordinal there, 1 here.
        let contract = musicbot_api::env::example();
        let args: Vec<String> = std::iter::once("bot-runner".to_string())
            .chain(
                contract
                    .vars()
                    .into_iter()
                    .flat_map(|(name, source)| {
                        let value = match source {
                            musicbot_api::env::Source::Value(v) => Some(v),
                            musicbot_api::env::Source::ShardOrdinal => Some("1".into()),
                        };
                        let flag =
                            format!("--{}", name.trim_start_matches("MUSICBOT_").to_lowercase().replace('_', "-"));
                        value.map(|v| [flag, v])
                    })
                    .flatten(),
            )
            .collect();
        // Flags and env share names; parsing the flags proves every variable has a home.
        let run = Cli::try_parse_from(args).unwrap().run;
        assert_eq!(run.token_file.as_deref(), Some(std::path::Path::new(musicbot_api::env::TOKEN_FILE)));
        assert_eq!(run.client_id.as_deref(), Some(contract.client_id.as_str()));
        assert_eq!(run.bot_name.as_deref(), Some(contract.bot_name.as_str()));
        assert_eq!((run.shard_id, run.shard_count), (1, contract.shard_count));
        let guilds: Vec<u64> = contract.guild_ids.iter().map(|g| g.parse().unwrap()).collect();
        assert_eq!(run.guild_ids, guilds);
        let (common, music) = (&run.common, &contract.music);
        assert_eq!(common.http_port, contract.http_port);
        assert_eq!(u32::from(common.music.default_volume), music.default_volume);
        assert_eq!(common.music.max_queue_length, music.max_queue_length as usize);
        assert_eq!(common.music.idle_leave_seconds, u64::from(music.idle_leave_seconds));
        assert_eq!(common.music.stay_in_channel, music.stay_in_channel);
        assert_eq!(common.music.idle_leave(), None, "staying in the channel disables idle leave");
        assert_eq!(common.log_format, contract.log_format);
        assert_eq!(common.ca_file.as_deref(), Some(std::path::Path::new(musicbot_api::env::CA_FILE)));
        assert_eq!(common.discord_api_url, contract.discord_api_url);
        let presence = contract.presence.unwrap();
        assert_eq!(run.presence.presence_status, Some(presence.status));
        assert_eq!(run.presence.activity_type, presence.activity.as_ref().map(|a| a.kind));
        assert_eq!(run.presence.activity_name, presence.activity.map(|a| a.name));
        let allowed: Vec<String> = common.media.media_allow.iter().map(|n| n.to_string()).collect();
        assert_eq!(allowed, contract.media_allow);
        assert_eq!(common.records.mongodb_uri, None, "the operator gives a bot pod no MongoDB URI");
    }

    #[test]
    fn command_scripts_read_the_records_where_the_fleet_does() {
        let cli = Cli::try_parse_from([
            "bot-runner",
            "commands",
            "deploy",
            "--mongodb-database",
            "prod",
            "--bots-collection",
            "Bots",
            "--guilds-collection",
            "Guilds",
        ])
        .unwrap();
        let Some(Command::Commands(CommandsCommand::Deploy(args))) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(args.records.mongodb_database.as_deref(), Some("prod"));
        let cols = args.records.collections();
        assert_eq!((cols.bots.as_str(), cols.guilds.as_str()), ("Bots", "Guilds"));
    }

    #[test]
    fn the_token_has_no_flag() {
        let e = Cli::try_parse_from(["bot-runner", "--token", "abc"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["bot-runner", "--default-volume", "500"]).is_err());
        assert!(Cli::try_parse_from(["bot-runner", "--guild-ids", "abc"]).is_err());
    }
}
