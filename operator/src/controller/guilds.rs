//! Guild tracking for bot pods: bot pods hold no MongoDB credential (one would read every
//! bot's token), so the operator, which reads each pod's `/status` anyway, writes the
//! bot's `ServerMusicBotDB` entries and `guildCount` from the guild ids the pods report.
//! State-based: what the reporting shards say they are in is the truth for their guilds;
//! the guilds of a shard that did not answer are left as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use musicbot_db::guilds::shard_of;
use musicbot_db::{Collections, GuildTracker};
use tracing::{debug, info, warn};

use super::status::PodReport;

/// The guilds each reporting shard is in, and the shard count they were counted with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    shard_count: u32,
    shards: BTreeMap<u32, BTreeSet<u64>>,
}

impl Seen {
    /// What the pods report for the bot with `client_id`. A bot whose gateway is not READY
    /// has not received its guilds yet; its shard tells nothing and is left out.
    pub fn from_reports(client_id: &str, reports: &[PodReport]) -> Self {
        let mut seen = Self::default();
        for r in reports {
            let shard = r.report.shard;
            for bot in r.report.bots.iter().filter(|b| b.client_id == client_id && b.gateway_connected) {
                seen.shard_count = shard.count.max(1);
                let guilds = seen.shards.entry(shard.id).or_default();
                guilds.extend(bot.guild_ids.iter().filter_map(|g| g.parse::<u64>().ok()));
            }
        }
        seen
    }

    fn present(&self) -> BTreeSet<u64> {
        self.shards.values().flatten().copied().collect()
    }

    fn owns(&self, guild: u64) -> bool {
        self.shards.contains_key(&shard_of(guild, self.shard_count))
    }
}

pub struct GuildSync {
    db: mongodb::Database,
    collections: Collections,
    /// What was last written per bot (by client id), so an unchanged report costs nothing:
    /// not even a read. Lost on restart, which costs one read per bot.
    written: Mutex<HashMap<String, Seen>>,
}

impl GuildSync {
    pub fn new(db: mongodb::Database, collections: Collections) -> Self {
        Self { db, collections, written: Mutex::new(HashMap::new()) }
    }

    /// Brings the bot's entries in line with its pods' reports. MongoDB trouble is logged
    /// and retried at the next reconcile: it must not hold up the bot's status.
    pub async fn sync(&self, client_id: &str, reports: &[PodReport]) {
        let seen = Seen::from_reports(client_id, reports);
        if seen.shards.is_empty() || self.written.lock().expect("not poisoned").get(client_id) == Some(&seen) {
            return;
        }
        match self.write(client_id, &seen).await {
            Ok(()) => {
                self.written.lock().expect("not poisoned").insert(client_id.to_string(), seen);
            }
            Err(e) => warn!(error = %e, "guild tracking: writing the bot's guilds failed; retrying later"),
        }
    }

    async fn write(&self, client_id: &str, seen: &Seen) -> mongodb::error::Result<()> {
        let Some(tracker) = GuildTracker::for_client(&self.db, &self.collections, client_id).await? else {
            debug!("guild tracking: no MusicBotDB record for this bot");
            return Ok(());
        };
        let synced = tracker.sync(&seen.present(), |g| seen.owns(g)).await?;
        if let Some(count) = synced.guild_count {
            info!(joined = ?synced.joined, left = ?synced.left, guild_count = count, "guild tracking");
        }
        Ok(())
    }

    /// A deleted bot's memory goes with it.
    pub fn forget(&self, client_id: &str) {
        self.written.lock().expect("not poisoned").remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicbot_api::report::{BotReport, ShardInfo, StatusReport};

    fn pod(shard: (u32, u32), client_id: &str, connected: bool, guilds: &[u64]) -> PodReport {
        let bot = BotReport {
            client_id: client_id.into(),
            gateway_connected: connected,
            guild_ids: guilds.iter().map(u64::to_string).collect(),
            ..Default::default()
        };
        let report = StatusReport::of(ShardInfo { id: shard.0, count: shard.1 }, vec![bot]);
        PodReport { pod: format!("radio-{}", shard.0), report }
    }

    #[test]
    fn only_connected_shards_of_this_bot_speak_for_their_guilds() {
        let (a, b) = (1u64 << 22, 2u64 << 22); // shard 1 and shard 0 of 2
        let reports =
            [pod((1, 2), "1", true, &[a]), pod((0, 2), "1", false, &[b]), pod((0, 2), "2", true, &[b, 3 << 22])];
        let seen = Seen::from_reports("1", &reports);
        assert_eq!(seen.present(), BTreeSet::from([a]));
        assert!(seen.owns(3 << 22) && !seen.owns(b), "shard 0 did not report: its guilds are left alone");
        assert!(Seen::from_reports("3", &reports).shards.is_empty());
    }
}
