//! Typed views of the seed's documents. Parsing is explicit (not `#[derive(Deserialize)]`)
//! so a malformed record yields an error that names the field, and the rest of the fleet
//! goes on.

use mongodb::bson::{self as bson, Bson, Document, oid::ObjectId};
use musicbot_api::crd::Presence;
use std::fmt;

/// Collection names; the seed's Prisma models by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collections {
    pub bots: String,
    pub guilds: String,
}

impl Default for Collections {
    fn default() -> Self {
        Self { bots: "MusicBotDB".into(), guilds: "ServerMusicBotDB".into() }
    }
}

/// A `ServerMusicBotDB.status`; serde and [`AssignmentStatus::as_str`] spell it as the seed
/// does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignmentStatus {
    PendingInvite,
    Active,
    Removed,
    Failed,
}

impl AssignmentStatus {
    /// The statuses that take one of a bot's slots: in the guild, or invited to it.
    pub const HOLDS_A_SLOT: [Self; 2] = [Self::Active, Self::PendingInvite];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingInvite => "PENDING_INVITE",
            Self::Active => "ACTIVE",
            Self::Removed => "REMOVED",
            Self::Failed => "FAILED",
        }
    }
}

/// So filters and updates can hold a status as it is (`doc! {STATUS: AssignmentStatus::Active}`).
impl From<AssignmentStatus> for Bson {
    fn from(status: AssignmentStatus) -> Self {
        Bson::String(status.as_str().into())
    }
}

impl fmt::Display for AssignmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `MusicBotDB` document. `token` is the stored value: plaintext in old databases,
/// `enc:v1:…` once encrypted (see [`crate::cipher`]). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BotRecord {
    pub id: ObjectId,
    pub name: String,
    pub client_id: String,
    pub token: String,
    pub is_active: bool,
    pub guild_count: i64,
    /// Not in the seed's model: an optional `presence` subdocument, shaped as a MusicBot's
    /// `spec.presence` (`{status, activity: {type, name}}`).
    pub presence: Option<Presence>,
}

impl fmt::Debug for BotRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("token", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("guild_count", &self.guild_count)
            .field("presence", &self.presence)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType { field: &'static str, expected: &'static str, found: String },
    #[error("field `clientId` {0:?} is not a Discord snowflake (digits only, 17 to 20 of them)")]
    BadClientId(String),
    #[error("field `token` is empty")]
    EmptyToken,
}

impl BotRecord {
    /// Reads a `MusicBotDB` document. `isActive` and `guildCount` default as Prisma's schema
    /// did (true, 0); `name` falls back to the client id.
    pub fn from_document(doc: &Document) -> Result<Self, RecordError> {
        let id = match doc.get("_id") {
            Some(Bson::ObjectId(id)) => *id,
            Some(other) => return Err(wrong("_id", "an ObjectId", other)),
            None => return Err(RecordError::Missing("_id")),
        };
        let client_id = string(doc, "clientId")?.ok_or(RecordError::Missing("clientId"))?;
        if !is_snowflake(&client_id) {
            return Err(RecordError::BadClientId(client_id));
        }
        let token = string(doc, "token")?.ok_or(RecordError::Missing("token"))?;
        if token.trim().is_empty() {
            return Err(RecordError::EmptyToken);
        }
        let name = string(doc, "name")?.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| client_id.clone());
        let is_active = match doc.get("isActive") {
            None | Some(Bson::Null) => true,
            Some(Bson::Boolean(b)) => *b,
            Some(other) => return Err(wrong("isActive", "a boolean", other)),
        };
        let guild_count = match doc.get("guildCount") {
            None | Some(Bson::Null) => 0,
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(other) => return Err(wrong("guildCount", "an integer", other)),
        };
        let presence = match doc.get("presence") {
            None | Some(Bson::Null) => None,
            Some(b) => Some(presence(b)?),
        };
        Ok(Self { id, name, client_id, token, is_active, guild_count, presence })
    }
}

/// The CRD's shape and limits, so a record's presence is one a MusicBot would accept.
fn presence(b: &Bson) -> Result<Presence, RecordError> {
    const EXPECTED: &str = "a presence ({status, activity: {type, name of 1 to 128 characters}})";
    let p: Presence = bson::from_bson(b.clone()).map_err(|_| wrong("presence", EXPECTED, b))?;
    match &p.activity {
        Some(a) if a.name.trim().is_empty() || a.name.chars().count() > 128 => Err(wrong("presence", EXPECTED, b)),
        _ => Ok(p),
    }
}

fn string(doc: &Document, field: &'static str) -> Result<Option<String>, RecordError> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong(field, "a string", other)),
    }
}

fn wrong(field: &'static str, expected: &'static str, found: &Bson) -> RecordError {
    RecordError::WrongType { field, expected, found: format!("{:?}", found.element_type()) }
}

/// Discord ids are 64-bit integers written in decimal: 17–20 digits for anything created
/// since 2015.
pub fn is_snowflake(s: &str) -> bool {
    (17..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_seed_document_parses() {
        let id = ObjectId::new();
        let d = doc! {"_id": id, "name": "Music Bot #1", "clientId": "123456789012345678", "token": "a.b.c",
        "isActive": true, "guildCount": 5, "createdAt": "whatever"};
        let r = BotRecord::from_document(&d).unwrap();
        assert_eq!(
            (r.id, r.name.as_str(), r.client_id.as_str(), r.is_active, r.guild_count),
            (id, "Music Bot #1", "123456789012345678", true, 5)
        );
        assert!(!format!("{r:?}").contains("a.b.c"), "Debug must not show the token");
    }

    #[test]
    fn defaults_follow_prisma() {
        let r =
            BotRecord::from_document(&doc! {"_id": ObjectId::new(), "clientId": "123456789012345678", "token": "t"})
                .unwrap();
        assert_eq!((r.name.as_str(), r.is_active, r.guild_count), ("123456789012345678", true, 0));
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let id = ObjectId::new();
        let cases = [
            (doc! {"_id": id, "token": "t"}, RecordError::Missing("clientId")),
            (doc! {"_id": id, "clientId": "123456789012345678"}, RecordError::Missing("token")),
            (doc! {"_id": id, "clientId": "123456789012345678", "token": "  "}, RecordError::EmptyToken),
            (doc! {"_id": id, "clientId": "12ab", "token": "t"}, RecordError::BadClientId("12ab".into())),
        ];
        for (d, want) in cases {
            assert_eq!(BotRecord::from_document(&d).unwrap_err(), want, "{d}");
        }
        let e = BotRecord::from_document(&doc! {"_id": id, "clientId": 5, "token": "t"}).unwrap_err();
        assert!(matches!(e, RecordError::WrongType { field: "clientId", .. }), "{e}");
        let e = BotRecord::from_document(
            &doc! {"_id": id, "clientId": "123456789012345678", "token": "t", "isActive": "yes"},
        )
        .unwrap_err();
        assert!(matches!(e, RecordError::WrongType { field: "isActive", .. }), "{e}");
    }

    #[test]
    fn a_presence_reads_as_a_musicbots_and_a_bad_one_names_the_field() {
        use musicbot_api::crd::{ActivityKind, OnlineStatus};
        let base = doc! {"_id": ObjectId::new(), "clientId": "123456789012345678", "token": "t"};
        let with = |p: Bson| {
            let mut d = base.clone();
            d.insert("presence", p);
            BotRecord::from_document(&d)
        };
        let r = with(doc! {"status": "dnd", "activity": {"type": "watching", "name": "the queue"}}.into()).unwrap();
        let p = r.presence.unwrap();
        assert_eq!(
            (p.status, p.activity.as_ref().map(|a| (a.kind, a.name.as_str()))),
            (OnlineStatus::Dnd, Some((ActivityKind::Watching, "the queue")))
        );
        assert_eq!(
            with(doc! {}.into()).unwrap().presence.unwrap().status,
            OnlineStatus::Online,
            "defaults as the CRD's"
        );
        for bad in [
            Bson::from("online"),
            doc! {"status": "busy"}.into(),
            doc! {"activity": {"name": ""}}.into(),
            doc! {"activity": {"name": "x".repeat(129)}}.into(),
        ] {
            let e = with(bad.clone()).unwrap_err();
            assert!(matches!(e, RecordError::WrongType { field: "presence", .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn snowflakes() {
        assert!(is_snowflake("123456789012345678"));
        assert!(is_snowflake("18446744073709551615"));
        assert!(!is_snowflake("18446744073709551616"), "overflows u64");
        assert!(!is_snowflake("1234"));
        assert!(!is_snowflake("12345678901234567a"));
    }

    #[test]
    fn statuses_are_spelled_alike_by_serde_and_as_str() {
        for s in [
            AssignmentStatus::PendingInvite,
            AssignmentStatus::Active,
            AssignmentStatus::Removed,
            AssignmentStatus::Failed,
        ] {
            let bson = mongodb::bson::to_bson(&s).unwrap();
            assert_eq!(bson, Bson::from(s));
            assert_eq!(mongodb::bson::from_bson::<AssignmentStatus>(bson).unwrap(), s);
        }
        assert!(mongodb::bson::from_bson::<AssignmentStatus>(Bson::String("active".into())).is_err());
    }
}
