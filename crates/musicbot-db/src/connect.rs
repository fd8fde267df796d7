//! Opening the records' database and loading the token key: the operator (sync, assignment,
//! `bots` commands) and bot-runner (guild tracking, fleet mode, command scripts) do it alike.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use mongodb::Database;
use mongodb::options::ClientOptions;

#[cfg(feature = "cli")]
use musicbot_api::env::var;

use crate::TokenCipher;

const DEFAULT_DATABASE: &str = "musicbot";

/// Where the records are, as flags with environment fallbacks. One set for the operator,
/// its `bots` commands and bot-runner, so a fleet configured once is read alike by all.
#[cfg(feature = "cli")]
#[derive(clap::Args, Debug, Clone)]
pub struct RecordsArgs {
    /// MongoDB connection string of the bot records (unset: no MongoDB).
    // hide_env_values: the URI may hold a password, and --help would print it.
    #[arg(long, env = var::MONGODB_URI, hide_env_values = true)]
    pub mongodb_uri: Option<String>,

    /// Database of the records (default: the one named in the URI, else "musicbot").
    #[arg(long, env = var::MONGODB_DATABASE)]
    pub mongodb_database: Option<String>,

    /// Collection of the bot records (the seed's Prisma model name by default).
    #[arg(long, env = var::BOTS_COLLECTION, default_value = "MusicBotDB")]
    pub bots_collection: String,

    /// Collection of the guild assignments (the seed's Prisma model name by default).
    #[arg(long, env = var::GUILDS_COLLECTION, default_value = "ServerMusicBotDB")]
    pub guilds_collection: String,
}

/// How the records are followed live: the operator's sync and bot-runner's fleet mode take
/// the same flags.
#[cfg(feature = "cli")]
#[derive(clap::Args, Debug, Clone)]
pub struct FollowArgs {
    /// How changes to the records are learnt.
    #[arg(long, env = "MUSICBOT_SYNC_MODE", value_enum, default_value_t = crate::follow::Mode::Auto)]
    pub sync_mode: crate::follow::Mode,

    /// Seconds between reads of the whole collection when polling.
    #[arg(long, env = "MUSICBOT_SYNC_POLL_INTERVAL_SECONDS", default_value_t = 10)]
    pub sync_poll_interval_seconds: u64,

    /// Seconds between full resyncs while following a change stream (repairs what was changed by hand).
    #[arg(long, env = "MUSICBOT_SYNC_RESYNC_INTERVAL_SECONDS", default_value_t = 600)]
    pub sync_resync_interval_seconds: u64,

    /// Collection (in the records' database) where the change-stream resume token is kept.
    #[arg(long, env = "MUSICBOT_SYNC_STATE_COLLECTION", default_value = "MusicBotOperatorSync")]
    pub sync_state_collection: String,

    /// Deleting or deactivating more than this percentage of the bots at once (or all of them, e.g. an emptied or
    /// renamed collection) is held until --sync-allow-mass-delete.
    #[arg(long, env = "MUSICBOT_SYNC_MAX_DELETE_PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub sync_max_delete_percent: u8,

    /// Let held mass deletions go through (set it, restart, then unset it).
    #[arg(long, env = "MUSICBOT_SYNC_ALLOW_MASS_DELETE")]
    pub sync_allow_mass_delete: bool,
}

#[cfg(feature = "cli")]
impl FollowArgs {
    pub fn settings(&self) -> crate::follow::Settings {
        crate::follow::Settings {
            mode: self.sync_mode,
            poll_interval: Duration::from_secs(self.sync_poll_interval_seconds.max(1)),
            resync_interval: Duration::from_secs(self.sync_resync_interval_seconds.max(10)),
        }
    }

    pub fn guard(&self) -> crate::follow::DeletionGuard {
        crate::follow::DeletionGuard::new(self.sync_max_delete_percent, self.sync_allow_mass_delete)
    }
}

#[cfg(feature = "cli")]
impl RecordsArgs {
    /// The URI, unless unset or blank.
    pub fn uri(&self) -> Option<&str> {
        self.mongodb_uri.as_deref().filter(|u| !u.trim().is_empty())
    }

    pub fn collections(&self) -> crate::Collections {
        crate::Collections { bots: self.bots_collection.clone(), guilds: self.guilds_collection.clone() }
    }

    /// The records' database (see [`open_database`]), or `None` without a URI.
    pub async fn open(&self, app_name: &str) -> anyhow::Result<Option<Database>> {
        match self.uri() {
            Some(uri) => Ok(Some(open_database(uri, self.mongodb_database.as_deref(), app_name).await?)),
            None => Ok(None),
        }
    }
}

/// `flag`, else the database named in the URI, else "musicbot".
fn database_name(flag: Option<&str>, from_uri: Option<&str>) -> String {
    flag.or(from_uri).filter(|n| !n.is_empty()).unwrap_or(DEFAULT_DATABASE).to_string()
}

/// Connects lazily: the driver dials on first use, so an unreachable server is retried by
/// whoever uses it rather than failing start-up. The URI is never echoed (it may hold a
/// password).
pub async fn open_database(uri: &str, database: Option<&str>, app_name: &str) -> anyhow::Result<Database> {
    let mut options = ClientOptions::parse(uri).await.context("the MongoDB URI is not valid")?;
    options.app_name.get_or_insert_with(|| app_name.into());
    options.server_selection_timeout.get_or_insert(Duration::from_secs(10));
    let name = database_name(database, options.default_database.as_deref());
    let client = mongodb::Client::with_options(options).context("creating the MongoDB client")?;
    Ok(client.database(&name))
}

/// Reads the token key (32 raw bytes, or base64), as mounted from a Kubernetes Secret.
pub fn load_key(path: &Path) -> anyhow::Result<TokenCipher> {
    let material = std::fs::read(path).with_context(|| format!("reading the token key file {}", path.display()))?;
    TokenCipher::from_key_material(&material).with_context(|| format!("the token key in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_prefers_the_flag_then_the_uri() {
        assert_eq!(database_name(Some("a"), Some("b")), "a");
        assert_eq!(database_name(None, Some("b")), "b");
        assert_eq!(database_name(None, None), "musicbot");
    }

    #[test]
    fn keys_load_from_files_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("key");
        std::fs::write(&good, format!("{}\n", TokenCipher::generate_key())).unwrap();
        assert!(load_key(&good).is_ok());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "too short").unwrap();
        let e = format!("{:#}", load_key(&bad).unwrap_err());
        assert!(e.contains("32 bytes"), "{e}");
        assert!(!e.contains("too short"), "the key material is never echoed: {e}");
        assert!(load_key(&dir.path().join("missing")).is_err());
    }
}
