//! One `ServerMusicBotDB` document: which bot serves (or is invited to) which guild. Guild
//! tracking, assignment and `bots remove` filter and update these documents by the names in
//! [`field`]; [`GuildEntry`] reads a whole one.

use mongodb::bson::{DateTime, oid::ObjectId};
use serde::{Deserialize, Serialize};

use crate::records::AssignmentStatus;

/// The document's field names (the seed's Prisma model, plus the timestamps assignment adds).
pub mod field {
    pub const SERVER_ID: &str = "serverId";
    pub const MUSIC_BOT_ID: &str = "musicBotId";
    pub const STATUS: &str = "status";
    pub const INVITED_AT: &str = "invitedAt";
    pub const ACTIVATED_AT: &str = "activatedAt";
    pub const REMOVED_AT: &str = "removedAt";
    pub const FAILED_AT: &str = "failedAt";
    pub const CREATED_AT: &str = "createdAt";
    pub const UPDATED_AT: &str = "updatedAt";
}

/// A `ServerMusicBotDB` document. The timestamps are optional: Prisma wrote only
/// `activatedAt` and `removedAt`, and entries from before assignment have no `invitedAt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuildEntry {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub server_id: String,
    pub music_bot_id: ObjectId,
    pub status: AssignmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

impl GuildEntry {
    /// A bare entry, as the seed wrote them: no timestamps.
    pub fn new(server_id: impl Into<String>, music_bot_id: ObjectId, status: AssignmentStatus) -> Self {
        Self {
            id: None,
            server_id: server_id.into(),
            music_bot_id,
            status,
            invited_at: None,
            activated_at: None,
            removed_at: None,
            failed_at: None,
            created_at: None,
            updated_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{self, doc};

    #[test]
    fn the_struct_reads_and_writes_the_field_names_filters_use() {
        let now = Some(DateTime::now());
        let full = GuildEntry {
            id: Some(ObjectId::new()),
            invited_at: now,
            activated_at: now,
            removed_at: now,
            failed_at: now,
            created_at: now,
            updated_at: now,
            ..GuildEntry::new("111", ObjectId::new(), AssignmentStatus::Active)
        };
        let d = bson::to_document(&full).unwrap();
        let names: Vec<&str> = d.keys().map(String::as_str).filter(|k| *k != "_id").collect();
        use field::*;
        let want =
            [SERVER_ID, MUSIC_BOT_ID, STATUS, INVITED_AT, ACTIVATED_AT, REMOVED_AT, FAILED_AT, CREATED_AT, UPDATED_AT];
        assert_eq!(names, want);
        assert_eq!(d.get_str(STATUS).unwrap(), "ACTIVE");
        assert_eq!(bson::from_document::<GuildEntry>(d).unwrap(), full);
    }

    #[test]
    fn a_seed_entry_parses() {
        let bot = ObjectId::new();
        let d = doc! {"_id": ObjectId::new(), "serverId": "111", "musicBotId": bot, "status": "PENDING_INVITE",
        "activatedAt": null};
        let e: GuildEntry = bson::from_document(d).unwrap();
        assert_eq!((e.server_id.as_str(), e.music_bot_id, e.status), ("111", bot, AssignmentStatus::PendingInvite));
        assert_eq!(e.activated_at, None);
    }
}
