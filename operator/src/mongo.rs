//! Connecting to the records' MongoDB and loading the token key, for the sync, guild
//! assignment and the `bots` commands alike.

use crate::config::MongoArgs;
use anyhow::Context as _;
use mongodb::Database;
pub(crate) use musicbot_db::connect::load_key;
use musicbot_db::{Collections, TokenCipher};
use std::sync::Arc;

/// An open handle on the records.
#[derive(Clone, Debug)]
pub struct Records {
    pub db: Database,
    pub collections: Collections,
    pub cipher: Option<Arc<TokenCipher>>,
}

impl MongoArgs {
    pub fn configured(&self) -> bool {
        self.records.uri().is_some()
    }

    /// Connects lazily (see [`musicbot_db::connect::open_database`]). The key, if
    /// configured, must load.
    pub async fn open(&self) -> anyhow::Result<Records> {
        let db = self
            .records
            .open("musicbot-operator")
            .await?
            .context("no MongoDB configured: set --mongodb-uri or MUSICBOT_MONGODB_URI")?;
        let cipher = match &self.token_key_file {
            Some(path) => Some(Arc::new(load_key(path)?)),
            None => None,
        };
        Ok(Records { db, collections: self.records.collections(), cipher })
    }
}
