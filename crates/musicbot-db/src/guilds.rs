//! `ServerMusicBotDB` upkeep from a bot's point of view: the guilds it joins and leaves,
//! and `MusicBotDB.guildCount`. Writes are idempotent so a replayed GUILD_CREATE (every
//! gateway (re)connect sends one per guild) changes nothing. Two callers: bot-runner given
//! a URI by hand (events, [`GuildTracker::joined`] and [`GuildTracker::left`]), and the
//! operator, which holds the URI bot pods do not and follows the guilds each pod reports
//! ([`GuildTracker::sync`]).

use std::collections::BTreeSet;

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};

use crate::guild_entry::field::{ACTIVATED_AT, CREATED_AT, MUSIC_BOT_ID, REMOVED_AT, SERVER_ID, STATUS, UPDATED_AT};
use crate::records::{AssignmentStatus, BotRecord, Collections};

#[derive(Clone, Debug)]
pub struct GuildTracker {
    bots: Collection<Document>,
    guilds: Collection<Document>,
    bot_id: ObjectId,
}

impl GuildTracker {
    pub fn new(db: &Database, collections: &Collections, bot_id: ObjectId) -> Self {
        Self { bots: db.collection(&collections.bots), guilds: db.collection(&collections.guilds), bot_id }
    }

    /// The tracker of the bot with this client id, or `None` when the database has no record
    /// of it (a bot applied by hand: it runs, untracked).
    pub async fn for_client(
        db: &Database,
        collections: &Collections,
        client_id: &str,
    ) -> mongodb::error::Result<Option<Self>> {
        let found = db.collection::<Document>(&collections.bots).find_one(doc! {"clientId": client_id}).await?;
        Ok(found.and_then(|d| d.get_object_id("_id").ok()).map(|id| Self::new(db, collections, id)))
    }

    /// The bot is in `guild`: its entry becomes ACTIVE. `activatedAt` marks the transition,
    /// so it is kept when the entry was already active; a pending invite is fulfilled here.
    pub async fn joined(&self, guild: u64) -> mongodb::error::Result<()> {
        let filter = doc! {SERVER_ID: guild.to_string(), MUSIC_BOT_ID: self.bot_id, STATUS: AssignmentStatus::Active};
        if self.guilds.find_one(filter).await?.is_some() {
            return Ok(());
        }
        self.activate(guild).await
    }

    async fn activate(&self, guild: u64) -> mongodb::error::Result<()> {
        let now = DateTime::from_chrono(Utc::now());
        let filter = doc! {SERVER_ID: guild.to_string(), MUSIC_BOT_ID: self.bot_id};
        self.guilds
            .update_one(
                filter,
                doc! {
                    "$set": {STATUS: AssignmentStatus::Active, ACTIVATED_AT: now, REMOVED_AT: Bson::Null, UPDATED_AT: now},
                    "$setOnInsert": {CREATED_AT: now},
                },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// The bot left `guild` (or was kicked): REMOVED with `removedAt`.
    pub async fn left(&self, guild: u64) -> mongodb::error::Result<()> {
        let now = DateTime::from_chrono(Utc::now());
        self.guilds
            .update_one(
                doc! {SERVER_ID: guild.to_string(), MUSIC_BOT_ID: self.bot_id, STATUS: {"$ne": AssignmentStatus::Removed}},
                doc! {"$set": {STATUS: AssignmentStatus::Removed, REMOVED_AT: now, UPDATED_AT: now}},
            )
            .await?;
        Ok(())
    }

    /// After READY: entries ACTIVE in the database for guilds this shard no longer sees were
    /// left while the bot was offline; they become REMOVED. `owns` says which guilds belong
    /// to this shard. (The guilds present need nothing here: each came with a GUILD_CREATE,
    /// which the caller turns into [`GuildTracker::joined`].)
    pub async fn left_while_offline(
        &self,
        present: &[u64],
        owns: impl Fn(u64) -> bool,
    ) -> mongodb::error::Result<Vec<u64>> {
        let gone: Vec<u64> = self.active().await?.into_iter().filter(|g| owns(*g) && !present.contains(g)).collect();
        for g in &gone {
            self.left(*g).await?;
        }
        Ok(gone)
    }

    /// The guilds with an ACTIVE entry.
    async fn active(&self) -> mongodb::error::Result<BTreeSet<u64>> {
        let mut active = self
            .guilds
            .find(doc! {MUSIC_BOT_ID: self.bot_id, STATUS: AssignmentStatus::Active})
            .projection(doc! {SERVER_ID: 1})
            .await?;
        let mut out = BTreeSet::new();
        while let Some(d) = active.try_next().await? {
            if let Some(g) = d.get_str(SERVER_ID).ok().and_then(|s| s.parse::<u64>().ok()) {
                out.insert(g);
            }
        }
        Ok(out)
    }

    /// Makes the entries match `present`, the guilds the bot says it is in: each gets an
    /// ACTIVE entry (a pending invite fulfilled, a removed entry back), and an ACTIVE entry
    /// of a guild `owns` covers (the shards that reported) but absent from `present` is
    /// REMOVED. One read when nothing changed; `guildCount` is written only when something
    /// did.
    pub async fn sync(&self, present: &BTreeSet<u64>, owns: impl Fn(u64) -> bool) -> mongodb::error::Result<Synced> {
        let active = self.active().await?;
        let joined: Vec<u64> = present.difference(&active).copied().collect();
        let left: Vec<u64> = active.iter().copied().filter(|g| owns(*g) && !present.contains(g)).collect();
        for g in &joined {
            self.activate(*g).await?;
        }
        for g in &left {
            self.left(*g).await?;
        }
        let guild_count =
            if joined.is_empty() && left.is_empty() { None } else { Some(self.refresh_guild_count().await?) };
        Ok(Synced { joined, left, guild_count })
    }

    /// Sets `guildCount` from the ACTIVE entries, which every shard's process keeps, so the
    /// count is right however the bot is sharded.
    pub async fn refresh_guild_count(&self) -> mongodb::error::Result<u64> {
        let n = self.guilds.count_documents(doc! {MUSIC_BOT_ID: self.bot_id, STATUS: AssignmentStatus::Active}).await?;
        self.bots
            .update_one(
                doc! {"_id": self.bot_id},
                doc! {"$set": {"guildCount": n as i64, "updatedAt": DateTime::now()}},
            )
            .await?;
        Ok(n)
    }
}

/// What [`GuildTracker::sync`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub joined: Vec<u64>,
    pub left: Vec<u64>,
    /// The new `guildCount`, when it was written.
    pub guild_count: Option<u64>,
}

/// Which shard a guild's events go to: Discord's rule, `(guild_id >> 22) % shard_count`.
pub fn shard_of(guild: u64, count: u32) -> u32 {
    ((guild >> 22) % u64::from(count.max(1))) as u32
}

/// Every `MusicBotDB` document, parsed; malformed ones come back as errors beside their id
/// so the caller can skip them and go on.
pub async fn all_bots(
    db: &Database,
    collections: &Collections,
) -> mongodb::error::Result<Vec<(Option<ObjectId>, Result<BotRecord, crate::RecordError>)>> {
    let docs: Vec<Document> = db.collection::<Document>(&collections.bots).find(doc! {}).await?.try_collect().await?;
    Ok(docs.iter().map(|d| (d.get_object_id("_id").ok(), BotRecord::from_document(d))).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shards_follow_discords_formula() {
        assert_eq!(super::shard_of(175928847299117063, 1), 0);
        assert_eq!(super::shard_of(175928847299117063, 2), ((175928847299117063u64 >> 22) % 2) as u32);
        assert_eq!(super::shard_of(1 << 22, 2), 1);
        assert_eq!(super::shard_of(1 << 22, 0), 0, "a shard count of 0 reads as 1");
    }
}
