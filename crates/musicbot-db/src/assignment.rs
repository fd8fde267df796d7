//! Guild assignment, which the seed did by hand: asked for a bot for guild G, pick the
//! least-loaded active bot not yet in G, write a `PENDING_INVITE` entry and hand back its
//! invite URL. The bot's own process turns the entry `ACTIVE` when it joins G
//! ([`crate::GuildTracker::joined`]); an invite not used in time becomes `FAILED`
//! ([`Assigner::expire_stale`]), which frees the slot.
//!
//! Load = the bot's `ACTIVE` plus `PENDING_INVITE` entries: a pending invite reserves its
//! slot, so a burst of requests spreads over the fleet instead of all going to the bot
//! that was least loaded a moment ago.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};
use mongodb::{Collection, Database};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::guild_entry::field::{
    ACTIVATED_AT, CREATED_AT, FAILED_AT, INVITED_AT, MUSIC_BOT_ID, REMOVED_AT, SERVER_ID, STATUS, UPDATED_AT,
};
use crate::invite::invite_url;
use crate::records::{AssignmentStatus, BotRecord, Collections, is_snowflake};

/// One bot chosen for one guild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub bot_id: ObjectId,
    pub client_id: String,
    pub name: String,
    pub guild_id: String,
    pub invite_url: String,
    /// After this the invite counts as unused and the entry becomes FAILED.
    pub expires_at: DateTime<Utc>,
    /// The bot's load before this assignment.
    pub load: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    #[error("guild id {0:?} is not a Discord snowflake (digits only, 17 to 20 of them)")]
    InvalidGuild(String),
    #[error("no active bot in the fleet")]
    NoActiveBot,
    #[error("every active bot is already in guild {0} or invited to it")]
    AllInGuild(String),
    #[error("MongoDB: {0}")]
    Db(#[from] mongodb::error::Error),
}

#[derive(Clone, Debug)]
pub struct Assigner {
    db: Database,
    collections: Collections,
    invite_timeout: Duration,
    failed_retention: Duration,
}

const MAX_INVITE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a FAILED entry is kept (for whoever looks into why an invite went unused)
/// before [`Assigner::purge_failed`] deletes it.
pub const DEFAULT_FAILED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The server error code of a write that would break a unique index.
const DUPLICATE_KEY: i32 = 11000;

impl Assigner {
    /// `invite_timeout` is capped at a year, which keeps the date arithmetic in range.
    pub fn new(db: &Database, collections: &Collections, invite_timeout: Duration) -> Self {
        let invite_timeout = invite_timeout.min(MAX_INVITE_TIMEOUT);
        Self {
            db: db.clone(),
            collections: collections.clone(),
            invite_timeout,
            failed_retention: DEFAULT_FAILED_RETENTION,
        }
    }

    /// FAILED entries older than `retention` are deleted by [`Assigner::purge_failed`]
    /// (capped at a year, as the invite timeout is).
    pub fn with_failed_retention(mut self, retention: Duration) -> Self {
        self.failed_retention = retention.min(MAX_INVITE_TIMEOUT);
        self
    }

    fn timeout(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.invite_timeout).unwrap_or(chrono::Duration::days(365))
    }

    /// Creates the indexes of `ServerMusicBotDB` (idempotent: an index that exists with the
    /// same keys and options is left as it is). The unique one on (serverId, musicBotId)
    /// makes "one entry per guild and bot" the database's rule, so two replicas claiming
    /// the same pair at once cannot both insert; the others serve the filters of
    /// assignment, the sweeper and guild tracking.
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let index = |keys: Document, unique: bool| {
            let options = mongodb::options::IndexOptions::builder().unique(unique.then_some(true)).build();
            mongodb::IndexModel::builder().keys(keys).options(options).build()
        };
        self.guilds()
            .create_indexes([
                index(doc! {SERVER_ID: 1, MUSIC_BOT_ID: 1}, true),
                index(doc! {MUSIC_BOT_ID: 1, STATUS: 1}, false),
                index(doc! {STATUS: 1, INVITED_AT: 1}, false),
                index(doc! {STATUS: 1, FAILED_AT: 1}, false),
            ])
            .await?;
        Ok(())
    }

    pub fn invite_timeout(&self) -> Duration {
        self.invite_timeout
    }

    fn guilds(&self) -> Collection<Document> {
        self.db.collection(&self.collections.guilds)
    }

    /// Picks a bot for `guild` and records the pending invite.
    pub async fn assign(&self, guild: &str) -> Result<Assignment, AssignError> {
        if !is_snowflake(guild) {
            return Err(AssignError::InvalidGuild(guild.to_string()));
        }
        // Stale invites must not keep holding slots until the next sweep.
        self.expire_stale().await?;
        self.assign_now(guild).await
    }

    /// [`Assigner::assign`] once the guild id is checked and stale invites are expired.
    async fn assign_now(&self, guild: &str) -> Result<Assignment, AssignError> {
        let bots: Vec<BotRecord> = crate::guilds::all_bots(&self.db, &self.collections)
            .await?
            .into_iter()
            .filter_map(|(_, parsed)| parsed.ok())
            .filter(|b| b.is_active)
            .collect();
        if bots.is_empty() {
            return Err(AssignError::NoActiveBot);
        }
        let loads = self.loads().await?;
        let in_guild = self.bots_in_guild(guild).await?;
        for (bot, load) in candidates(&bots, &loads, &in_guild) {
            let now = Utc::now();
            if self.claim(bot.id, guild, now).await? {
                return Ok(Assignment {
                    bot_id: bot.id,
                    client_id: bot.client_id.clone(),
                    name: bot.name.clone(),
                    guild_id: guild.to_string(),
                    invite_url: invite_url(&bot.client_id, Some(guild)),
                    expires_at: now + self.timeout(),
                    load,
                });
            }
            // Another request claimed this pair between our read and write: next bot.
        }
        Err(AssignError::AllInGuild(guild.to_string()))
    }

    /// The bot to invite to `guild`: the one already invited there, while its invite is
    /// good and its record active, else a new [`Assigner::assign`]. A server told "invite
    /// X" and asking again is told X again; asking does not take a slot of every bot in turn.
    pub async fn invite(&self, guild: &str) -> Result<Assignment, AssignError> {
        if !is_snowflake(guild) {
            return Err(AssignError::InvalidGuild(guild.to_string()));
        }
        self.expire_stale().await?;
        let pending: Vec<Document> = self
            .guilds()
            .find(doc! {SERVER_ID: guild, STATUS: AssignmentStatus::PendingInvite})
            .sort(doc! {INVITED_AT: -1})
            .await?
            .try_collect()
            .await?;
        if !pending.is_empty() {
            let bots = crate::guilds::all_bots(&self.db, &self.collections).await?;
            for entry in &pending {
                let Ok(id) = entry.get_object_id(MUSIC_BOT_ID) else { continue };
                let Some(bot) = bots.iter().filter_map(|(_, b)| b.as_ref().ok()).find(|b| b.id == id && b.is_active)
                else {
                    continue;
                };
                let invited = entry.get_datetime(INVITED_AT).or_else(|_| entry.get_datetime(CREATED_AT));
                let invited = invited.map(|t| t.to_chrono()).unwrap_or_else(|_| Utc::now());
                let load = self.loads().await?.get(&id).copied().unwrap_or(1).saturating_sub(1);
                return Ok(Assignment {
                    bot_id: id,
                    client_id: bot.client_id.clone(),
                    name: bot.name.clone(),
                    guild_id: guild.to_string(),
                    invite_url: invite_url(&bot.client_id, Some(guild)),
                    expires_at: invited + self.timeout(),
                    load,
                });
            }
        }
        self.assign_now(guild).await
    }

    /// Slots held per bot: ACTIVE and PENDING_INVITE entries.
    async fn loads(&self) -> mongodb::error::Result<HashMap<ObjectId, u64>> {
        let pipeline = [
            doc! {"$match": {STATUS: {"$in": holds_a_slot()}}},
            doc! {"$group": {"_id": format!("${MUSIC_BOT_ID}"), "n": {"$sum": 1}}},
        ];
        let rows: Vec<Document> = self.guilds().aggregate(pipeline).await?.try_collect().await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id = r.get_object_id("_id").ok()?;
                let n = match r.get("n")? {
                    Bson::Int32(n) => i64::from(*n),
                    Bson::Int64(n) => *n,
                    Bson::Double(n) => *n as i64,
                    _ => return None,
                };
                Some((id, n.max(0) as u64))
            })
            .collect())
    }

    async fn bots_in_guild(&self, guild: &str) -> mongodb::error::Result<HashSet<ObjectId>> {
        let rows: Vec<Document> = self
            .guilds()
            .find(doc! {SERVER_ID: guild, STATUS: {"$in": holds_a_slot()}})
            .projection(doc! {MUSIC_BOT_ID: 1})
            .await?
            .try_collect()
            .await?;
        Ok(rows.iter().filter_map(|r| r.get_object_id(MUSIC_BOT_ID).ok()).collect())
    }

    /// Writes the PENDING_INVITE entry unless the pair already holds a slot. One document per
    /// (guild, bot), as [`crate::GuildTracker::joined`] expects: an old REMOVED or FAILED
    /// entry is reused.
    async fn claim(&self, bot: ObjectId, guild: &str, now: DateTime<Utc>) -> mongodb::error::Result<bool> {
        let now = bson_time(now);
        let pending = doc! {
            STATUS: AssignmentStatus::PendingInvite,
            INVITED_AT: now,
            UPDATED_AT: now,
            ACTIVATED_AT: Bson::Null,
            REMOVED_AT: Bson::Null,
        };
        let reused = self
            .guilds()
            .update_one(
                doc! {SERVER_ID: guild, MUSIC_BOT_ID: bot, STATUS: {"$in": [AssignmentStatus::Removed, AssignmentStatus::Failed]}},
                doc! {"$set": pending.clone()},
            )
            .await?;
        if reused.modified_count == 1 {
            return Ok(true);
        }
        let mut fresh = pending;
        fresh.insert(CREATED_AT, now);
        let inserted = self
            .guilds()
            .update_one(doc! {SERVER_ID: guild, MUSIC_BOT_ID: bot}, doc! {"$setOnInsert": fresh})
            .upsert(true)
            .await;
        match inserted {
            Ok(r) => Ok(r.upserted_id.is_some()),
            // Another replica inserted the pair between our filter and our insert; the
            // unique index refused ours: the pair is taken.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes FAILED entries whose `failedAt` is older than the retention: an unused
    /// invite's record is kept a while to be looked into, not for ever. Returns how many.
    pub async fn purge_failed(&self) -> mongodb::error::Result<u64> {
        let retention = chrono::Duration::from_std(self.failed_retention).unwrap_or(chrono::Duration::days(365));
        let cutoff = bson_time(Utc::now() - retention);
        let result =
            self.guilds().delete_many(doc! {STATUS: AssignmentStatus::Failed, FAILED_AT: {"$lt": cutoff}}).await?;
        Ok(result.deleted_count)
    }

    /// PENDING_INVITE entries older than the invite timeout become FAILED. Entries from
    /// before assignment existed have no `invitedAt`; their `createdAt` counts instead.
    pub async fn expire_stale(&self) -> mongodb::error::Result<u64> {
        let now = Utc::now();
        let cutoff = bson_time(now - self.timeout());
        let now = bson_time(now);
        let result = self
            .guilds()
            .update_many(
                doc! {
                    STATUS: AssignmentStatus::PendingInvite,
                    "$or": [
                        {INVITED_AT: {"$lt": cutoff}},
                        {INVITED_AT: {"$exists": false}, CREATED_AT: {"$lt": cutoff}},
                    ],
                },
                doc! {"$set": {STATUS: AssignmentStatus::Failed, FAILED_AT: now, UPDATED_AT: now}},
            )
            .await?;
        Ok(result.modified_count)
    }
}

/// Active bots not yet in the guild, least loaded first (ties: the older record, so the
/// order is stable). A client id recorded twice counts once, as its oldest record, which is
/// the one the sync runs.
fn candidates<'a>(
    bots: &'a [BotRecord],
    loads: &HashMap<ObjectId, u64>,
    in_guild: &HashSet<ObjectId>,
) -> Vec<(&'a BotRecord, u64)> {
    let mut oldest: BTreeMap<&str, &BotRecord> = BTreeMap::new();
    for b in bots.iter().filter(|b| b.is_active) {
        let slot = oldest.entry(b.client_id.as_str()).or_insert(b);
        if b.id < slot.id {
            *slot = b;
        }
    }
    let mut out: Vec<(&BotRecord, u64)> = oldest
        .into_values()
        .filter(|b| !in_guild.contains(&b.id))
        .map(|b| (b, loads.get(&b.id).copied().unwrap_or(0)))
        .collect();
    out.sort_by_key(|(b, load)| (*load, b.id));
    out
}

/// `{"$in": ...}` of the statuses that hold a slot.
fn holds_a_slot() -> Vec<Bson> {
    AssignmentStatus::HOLDS_A_SLOT.map(Bson::from).to_vec()
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn bson_time(t: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(n: u8, active: bool, client: &str) -> BotRecord {
        let mut id = [0u8; 12];
        id[11] = n;
        BotRecord {
            id: ObjectId::from_bytes(id),
            name: format!("bot {n}"),
            client_id: client.into(),
            token: "x".into(),
            is_active: active,
            guild_count: 0,
            presence: None,
        }
    }

    #[test]
    fn least_loaded_active_bot_not_in_the_guild_comes_first() {
        let bots = [
            bot(1, true, "100000000000000001"),
            bot(2, false, "100000000000000002"),
            bot(3, true, "100000000000000003"),
            bot(4, true, "100000000000000004"),
        ];
        let loads = HashMap::from([(bots[0].id, 2), (bots[2].id, 1)]);
        let in_guild = HashSet::from([bots[3].id]);
        let order: Vec<_> = candidates(&bots, &loads, &in_guild).into_iter().map(|(b, l)| (b.id, l)).collect();
        assert_eq!(order, vec![(bots[2].id, 1), (bots[0].id, 2)], "inactive and already-present bots are left out");
    }

    #[test]
    fn ties_go_to_the_older_record_and_duplicates_count_once() {
        let bots = [
            bot(5, true, "100000000000000005"),
            bot(1, true, "100000000000000001"),
            bot(9, true, "100000000000000005"),
        ];
        let order: Vec<_> =
            candidates(&bots, &HashMap::new(), &HashSet::new()).into_iter().map(|(b, _)| b.id).collect();
        assert_eq!(order, vec![bots[1].id, bots[0].id]);
    }
}
