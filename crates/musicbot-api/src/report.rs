//! bot-runner's `/status` answer, which the operator reads into a MusicBot's status. One
//! type on both sides, and no field defaults: an answer missing a field fails to parse (and
//! is reported as such) instead of reading as 0.

use serde::{Deserialize, Serialize};

/// What one bot-runner process (one pod; several bots in fleet mode) reports: totals at the
/// top, one entry per bot below.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub guilds: u64,
    pub users: u64,
    pub voice_connections: u64,
    /// Every bot's gateway is READY.
    pub gateway_connected: bool,
    /// Every bot's slash commands are registered.
    pub commands_deployed: bool,
    pub shard: ShardInfo,
    pub bots: Vec<BotReport>,
}

/// One bot's numbers, as `/status` and `/bots` show them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BotReport {
    pub name: String,
    pub client_id: String,
    pub guilds: u64,
    pub users: u64,
    pub voice_connections: u64,
    pub gateway_connected: bool,
    pub commands_deployed: bool,
    /// The guilds this bot is in on this shard (Discord snowflakes), once its gateway was
    /// READY; the operator writes the bot's `ServerMusicBotDB` entries from them, so bot
    /// pods need no database access.
    pub guild_ids: Vec<String>,
    /// Why the Discord client stopped, if it did (a refused token, disallowed intents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// IDENTIFYs left in the token's session start limit (Discord: 1,000 a day) when the
    /// bot last read it from `GET /gateway/bot`, less the IDENTIFY it then made, if any.
    /// Absent until the bot has read it (and from bot-runners that do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifies_remaining: Option<u64>,
    /// When Discord refills that budget (RFC 3339), as of the same reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifies_reset_at: Option<String>,
    /// Set while the bot holds back its IDENTIFY because the budget is down to its reserve:
    /// when it will look again (RFC 3339), just after Discord's reset. The gateway stays
    /// unconnected until then; the process stays up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify_held_until: Option<String>,
    /// Times a playing track stopped moving and the bot rejoined its channel to play on.
    pub voice_stalls: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: u32,
    pub count: u32,
}

impl Default for ShardInfo {
    fn default() -> Self {
        Self { id: 0, count: 1 }
    }
}

impl StatusReport {
    /// The totals of `bots`, served as `shard`.
    pub fn of(shard: ShardInfo, bots: Vec<BotReport>) -> Self {
        let sum = |f: fn(&BotReport) -> u64| bots.iter().map(f).sum();
        let all = |f: fn(&BotReport) -> bool| !bots.is_empty() && bots.iter().all(f);
        Self {
            guilds: sum(|b| b.guilds),
            users: sum(|b| b.users),
            voice_connections: sum(|b| b.voice_connections),
            gateway_connected: all(|b| b.gateway_connected),
            commands_deployed: all(|b| b.commands_deployed),
            shard,
            bots,
        }
    }

    /// The first error one of the bots reports.
    pub fn error(&self) -> Option<&str> {
        self.bots.iter().filter_map(|b| b.last_error.as_deref()).find(|e| !e.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot(name: &str, guilds: u64, connected: bool, error: Option<&str>) -> BotReport {
        BotReport {
            name: name.into(),
            client_id: "123456789012345678".into(),
            guilds,
            users: guilds * 10,
            voice_connections: 1,
            gateway_connected: connected,
            commands_deployed: true,
            guild_ids: (1..=guilds).map(|g| (g << 22).to_string()).collect(),
            last_error: error.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_bot_runner_serves_is_the_one_the_operator_reads() {
        let report = StatusReport::of(
            ShardInfo { id: 1, count: 2 },
            vec![bot("a", 3, true, None), bot("b", 4, false, Some("4004 authentication failed"))],
        );
        let wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["voiceConnections"], 2);
        assert_eq!(wire["shard"], json!({"id": 1, "count": 2}));
        assert_eq!(wire["bots"][1]["lastError"], "4004 authentication failed");
        assert!(wire["bots"][0].get("lastError").is_none());
        assert_eq!(wire["bots"][0]["guildIds"], json!(["4194304", "8388608", "12582912"]));
        let read: StatusReport = serde_json::from_value(wire).unwrap();
        assert_eq!(read, report);
        assert_eq!((read.guilds, read.users, read.gateway_connected), (7, 70, false));
        assert_eq!(read.error(), Some("4004 authentication failed"));
    }

    #[test]
    fn a_renamed_or_missing_field_fails_instead_of_reading_as_zero() {
        let mut wire =
            serde_json::to_value(StatusReport::of(ShardInfo::default(), vec![bot("a", 3, true, None)])).unwrap();
        let guilds = wire.as_object_mut().unwrap().remove("guilds").unwrap();
        wire["guildCount"] = guilds;
        let e = serde_json::from_value::<StatusReport>(wire).unwrap_err();
        assert!(e.to_string().contains("missing field `guilds`"), "{e}");
    }

    #[test]
    fn an_answer_without_guild_ids_fails_instead_of_reading_as_no_guilds() {
        // Read as none, an older bot-runner's answer would have the operator mark every
        // guild of the bot left.
        let mut wire =
            serde_json::to_value(StatusReport::of(ShardInfo::default(), vec![bot("a", 3, true, None)])).unwrap();
        wire["bots"][0].as_object_mut().unwrap().remove("guildIds");
        let e = serde_json::from_value::<StatusReport>(wire).unwrap_err();
        assert!(e.to_string().contains("missing field `guildIds`"), "{e}");
    }

    #[test]
    fn the_identify_budget_is_optional_both_ways() {
        // An older bot-runner's answer has none of it; a held bot's has all of it.
        let plain = serde_json::to_value(bot("a", 1, true, None)).unwrap();
        assert!(plain.get("identifiesRemaining").is_none() && plain.get("identifyHeldUntil").is_none());
        let held = BotReport {
            identifies_remaining: Some(3),
            identifies_reset_at: Some("2026-12-01T20:00:00Z".into()),
            identify_held_until: Some("2026-12-01T20:00:01Z".into()),
            ..bot("a", 1, false, None)
        };
        let wire = serde_json::to_value(&held).unwrap();
        assert_eq!(wire["identifiesRemaining"], 3);
        assert_eq!(wire["identifyHeldUntil"], "2026-12-01T20:00:01Z");
        assert_eq!(serde_json::from_value::<BotReport>(wire).unwrap(), held);
    }

    #[test]
    fn no_bots_is_neither_connected_nor_deployed() {
        let empty = StatusReport::of(ShardInfo::default(), Vec::new());
        assert!(!empty.gateway_connected && !empty.commands_deployed);
        assert_eq!(empty.error(), None);
    }
}
