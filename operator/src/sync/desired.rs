//! Pure: a good `MusicBotDB` record → the Secret and the MusicBot the sync wants in the
//! cluster, and the labels and annotations that tell synced objects from hand-made ones.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use musicbot_api::crd::{MusicBot, Presence};
use musicbot_api::labels::{MANAGED_BY_LABEL, RECORD_LABEL, SYNC, SYNC_HASH, SYNCED_AT, SYNCED_FROM};
use musicbot_db::BotRecord;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Field manager of the sync's server-side applies (the controller's is the operator's name).
pub(crate) const FIELD_MANAGER: &str = SYNC;
/// Key of the token in the synced Secret.
pub(crate) const TOKEN_KEY: &str = "token";
/// The CRD's limit on `displayName`.
const DISPLAY_NAME_MAX: usize = 100;

/// The two kinds of object the sync writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Secret,
    MusicBot,
}

impl ObjectKind {
    pub(crate) fn kind(self) -> Cow<'static, str> {
        match self {
            ObjectKind::Secret => Secret::kind(&()),
            ObjectKind::MusicBot => MusicBot::kind(&()),
        }
    }

    pub(crate) fn api_version(self) -> Cow<'static, str> {
        match self {
            ObjectKind::Secret => Secret::api_version(&()),
            ObjectKind::MusicBot => MusicBot::api_version(&()),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind())
    }
}

/// One MusicBot per Discord application: the name follows the client id, which is stable,
/// DNS-safe and unique among synced records (duplicates are skipped).
pub(crate) fn bot_name(client_id: &str) -> String {
    format!("bot-{client_id}")
}

pub(crate) fn client_of(bot_name: &str) -> &str {
    bot_name.strip_prefix("bot-").unwrap_or("")
}

pub(crate) fn secret_name(bot_name: &str) -> String {
    format!("{bot_name}-token")
}

pub(crate) fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(MANAGED_BY_LABEL)).is_some_and(|v| v == SYNC)
}

/// What a good record wants. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Desired {
    pub(crate) name: String,
    pub(crate) record_key: String,
    /// `<collection>/<_id>`.
    pub(crate) synced_from: String,
    pub(crate) client_id: String,
    pub(crate) display_name: String,
    pub(crate) suspended: bool,
    /// The record's own `presence`, if it has one (a presence set by hand is kept otherwise).
    pub(crate) presence: Option<Presence>,
    token: String,
    pub(crate) hash: String,
}

impl fmt::Debug for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desired")
            .field("name", &self.name)
            .field("synced_from", &self.synced_from)
            .field("display_name", &self.display_name)
            .field("suspended", &self.suspended)
            .field("presence", &self.presence)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl Desired {
    /// `token` is the plaintext (decrypted) token, already checked for shape.
    pub(crate) fn new(collection: &str, record_key: &str, record: &BotRecord, token: &str) -> Self {
        let name = bot_name(&record.client_id);
        let display_name = truncate(record.name.trim(), DISPLAY_NAME_MAX);
        let display_name = if display_name.is_empty() { record.client_id.clone() } else { display_name };
        let synced_from = format!("{collection}/{record_key}");
        let suspended = !record.is_active;
        let suspended_text = suspended.to_string();
        let presence = record.presence.as_ref().map(|p| serde_json::to_string(p).expect("a presence serialises"));
        let mut parts = vec![name.as_str(), &synced_from, &record.client_id, &display_name, &suspended_text, token];
        // Only when set, so records without one keep the hash they had before presences.
        parts.extend(presence.as_deref());
        let hash = digest(&parts);
        Self {
            name,
            record_key: record_key.into(),
            synced_from,
            client_id: record.client_id.clone(),
            display_name,
            suspended,
            presence: record.presence.clone(),
            token: token.into(),
            hash,
        }
    }

    fn labels(&self) -> Value {
        json!({MANAGED_BY_LABEL: SYNC, RECORD_LABEL: self.record_key})
    }

    /// The MusicBot to server-side apply. Only the fields the record decides are here, so
    /// fields a person adds to a synced MusicBot (shards, music settings) are kept.
    pub(crate) fn musicbot(&self, synced_at: &str) -> Value {
        let mut bot = json!({
            "apiVersion": ObjectKind::MusicBot.api_version(),
            "kind": ObjectKind::MusicBot.kind(),
            "metadata": {
                "name": self.name,
                "labels": self.labels(),
                "annotations": {SYNCED_FROM: self.synced_from, SYNCED_AT: synced_at, SYNC_HASH: self.hash},
            },
            "spec": {
                "clientId": self.client_id,
                "tokenSecretRef": {"name": secret_name(&self.name), "key": TOKEN_KEY},
                "displayName": self.display_name,
                "suspended": self.suspended,
            }
        });
        if let Some(p) = &self.presence {
            bot["spec"]["presence"] = serde_json::to_value(p).expect("a presence serialises");
        }
        bot
    }

    /// The Secret to server-side apply: the token, as the controller and bot pods read it.
    pub(crate) fn secret(&self) -> Secret {
        let labels: BTreeMap<String, String> = serde_json::from_value(self.labels()).expect("string labels");
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(secret_name(&self.name)),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(SYNCED_FROM.to_string(), self.synced_from.clone())])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(self.token.as_bytes().to_vec()))])),
            ..Default::default()
        }
    }
}

/// A short digest; the token enters it only mixed with the other fields, and tokens carry
/// enough entropy that 64 bits of SHA-256 reveal nothing usable.
fn digest(parts: &[&str]) -> String {
    let mut chunks: Vec<&[u8]> = vec![b"sync-v1"];
    for p in parts {
        chunks.extend([&[0u8][..], p.as_bytes()]);
    }
    crate::digest::short(&chunks)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// A name safe for an Event about a record (`<name>.<suffix>` must be a DNS subdomain):
/// an ObjectId's hex as it is, anything else hashed.
pub(crate) fn event_safe(record_key: &str) -> String {
    let ok = !record_key.is_empty()
        && record_key.len() <= 200
        && record_key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && record_key.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && record_key.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok { record_key.to_string() } else { format!("record-{}", digest(&[record_key])) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    const CLIENT: &str = "123456789012345678";
    const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gx1y2z.secret-part";

    fn record(name: &str, active: bool) -> BotRecord {
        BotRecord {
            id: ObjectId::parse_str("650000000000000000000001").unwrap(),
            name: name.into(),
            client_id: CLIENT.into(),
            token: "enc:v1:stored".into(),
            is_active: active,
            guild_count: 0,
            presence: None,
        }
    }

    #[test]
    fn a_record_becomes_a_labelled_musicbot_and_its_secret() {
        let r = record("Music Bot #1", false);
        let d = Desired::new("MusicBotDB", &r.id.to_hex(), &r, TOKEN);
        let bot = d.musicbot("2026-11-26T00:00:00Z");
        assert_eq!(bot["metadata"]["name"], "bot-123456789012345678");
        assert_eq!(bot["metadata"]["labels"][MANAGED_BY_LABEL], SYNC);
        assert_eq!(bot["metadata"]["labels"][RECORD_LABEL], "650000000000000000000001");
        assert_eq!(bot["metadata"]["annotations"][SYNCED_FROM], "MusicBotDB/650000000000000000000001");
        assert_eq!(bot["metadata"]["annotations"][SYNCED_AT], "2026-11-26T00:00:00Z");
        assert_eq!(bot["spec"]["suspended"], true, "isActive: false suspends");
        assert_eq!(bot["spec"]["displayName"], "Music Bot #1");
        assert_eq!(bot["spec"]["tokenSecretRef"]["name"], "bot-123456789012345678-token");
        let secret = d.secret();
        assert_eq!(secret.metadata.name.as_deref(), Some("bot-123456789012345678-token"));
        assert_eq!(secret.data.unwrap()[TOKEN_KEY].0, TOKEN.as_bytes());
        assert!(is_managed(secret.metadata.labels.as_ref()));
        assert!(!bot.to_string().contains("secret-part"), "the MusicBot never holds the token");
        assert!(!format!("{d:?}").contains("secret-part"), "Debug hides the token");
    }

    #[test]
    fn the_hash_changes_exactly_when_the_record_asks_for_something_else() {
        let r = record("A", true);
        let key = r.id.to_hex();
        let a = Desired::new("MusicBotDB", &key, &r, TOKEN);
        assert_eq!(a.hash, Desired::new("MusicBotDB", &key, &r, TOKEN).hash);
        assert_ne!(a.hash, Desired::new("MusicBotDB", &key, &r, "MTIz.other.token").hash);
        assert_ne!(a.hash, Desired::new("MusicBotDB", &key, &record("B", true), TOKEN).hash);
        assert_ne!(a.hash, Desired::new("MusicBotDB", &key, &record("A", false), TOKEN).hash);
        let mut stored_differently = r.clone();
        stored_differently.token = "plain".into();
        assert_eq!(
            a.hash,
            Desired::new("MusicBotDB", &key, &stored_differently, TOKEN).hash,
            "re-encryption is no change"
        );
        assert!(!TOKEN.contains(&a.hash));
        // A presence is synced, and changes the hash; none leaves the MusicBot's own alone.
        assert!(a.musicbot("t")["spec"].get("presence").is_none());
        let mut present = r.clone();
        present.presence = Some(serde_json::from_value(serde_json::json!({"status": "idle"})).unwrap());
        let p = Desired::new("MusicBotDB", &key, &present, TOKEN);
        assert_ne!(a.hash, p.hash);
        assert_eq!(p.musicbot("t")["spec"]["presence"], serde_json::json!({"status": "idle"}));
    }

    #[test]
    fn long_or_blank_names_fit_the_crd() {
        let d = Desired::new("C", "k", &record(&"é".repeat(150), true), TOKEN);
        assert_eq!(d.display_name.chars().count(), 100);
        assert_eq!(Desired::new("C", "k", &record("  ", true), TOKEN).display_name, CLIENT);
    }

    #[test]
    fn names_and_event_names() {
        assert_eq!(client_of(&bot_name(CLIENT)), CLIENT);
        assert_eq!(client_of("radio"), "");
        assert_eq!(event_safe("650000000000000000000001"), "650000000000000000000001");
        let odd = event_safe("String(\"My Bot\")");
        assert!(odd.starts_with("record-") && odd.len() == 23, "{odd}");
        assert!(!is_managed(None));
    }
}
