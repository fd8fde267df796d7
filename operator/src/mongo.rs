//! Connecting to the records' MongoDB and loading the token key, for the sync, guild
//! assignment and the `bots` commands alike.

use crate::config::MongoArgs;
use anyhow::Context as _;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use musicbot_db::{Collections, TokenCipher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_DATABASE: &str = "musicbot";

/// An open handle on the records.
#[derive(Clone, Debug)]
pub struct Records {
    pub db: Database,
    pub collections: Collections,
    pub cipher: Option<Arc<TokenCipher>>,
}

impl MongoArgs {
    pub fn configured(&self) -> bool {
        self.mongodb_uri.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    pub fn collections(&self) -> Collections {
        Collections { bots: self.bots_collection.clone(), guilds: self.guilds_collection.clone() }
    }

    /// Connects lazily (the driver dials on first use, so an unreachable server is retried
    /// by the sync rather than failing start-up). The key, if configured, must load.
    pub async fn open(&self) -> anyhow::Result<Records> {
        let uri = self
            .mongodb_uri
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .context("no MongoDB configured: set --mongodb-uri or MUSICBOT_MONGODB_URI")?;
        // The URI is never echoed: it may hold a password.
        let mut options = ClientOptions::parse(uri).await.context("--mongodb-uri is not a valid MongoDB URI")?;
        options.app_name.get_or_insert_with(|| "musicbot-operator".into());
        options.server_selection_timeout.get_or_insert(Duration::from_secs(10));
        let name = database_name(self.mongodb_database.as_deref(), options.default_database.as_deref());
        let client = Client::with_options(options).context("creating the MongoDB client")?;
        let cipher = match &self.token_key_file {
            Some(path) => Some(Arc::new(load_key(path)?)),
            None => None,
        };
        Ok(Records { db: client.database(&name), collections: self.collections(), cipher })
    }
}

/// `--mongodb-database`, else the database named in the URI, else "musicbot".
pub fn database_name(flag: Option<&str>, from_uri: Option<&str>) -> String {
    flag.or(from_uri).filter(|n| !n.is_empty()).unwrap_or(DEFAULT_DATABASE).to_string()
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
