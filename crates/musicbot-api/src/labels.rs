//! Labels, annotations and finalizers: how the controller, the sync and anyone with
//! `kubectl` tell the fleet's objects apart. Named once here, read by spelling nowhere else.

use std::collections::BTreeMap;

pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// `managed-by` of the bot workloads the controller makes, and its field manager.
pub const OPERATOR: &str = "musicbot-operator";
/// `managed-by` of the Secrets and MusicBots the sync makes from records, and its field
/// manager. Only objects carrying it are ever changed or deleted by the sync.
pub const SYNC: &str = "musicbot-operator-sync";

/// Which MusicBot a pod or StatefulSet runs.
pub const BOT_LABEL: &str = "musicbot.dev/bot";
/// Digest of a bot pod's configuration (the token only as a salted digest): a change rolls
/// the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "musicbot.dev/config-hash";
/// Held on a MusicBot until its commands are cleared from Discord (when asked for).
pub const FINALIZER: &str = "musicbot.dev/cleanup";

/// The record's `_id` (hex), on a synced Secret and MusicBot.
pub const RECORD_LABEL: &str = "musicbot.dev/record-id";
/// `<collection>/<_id>`: the record a MusicBot came from.
pub const SYNCED_FROM: &str = "musicbot.dev/synced-from";
/// RFC 3339 time of the last write from that record.
pub const SYNCED_AT: &str = "musicbot.dev/synced-at";
/// Digest of what the record asked for, so an unchanged record causes no write.
pub const SYNC_HASH: &str = "musicbot.dev/sync-hash";
/// Set while the record is invalid: the last good version keeps running.
pub const SYNC_ERROR: &str = "musicbot.dev/sync-error";
/// Set while the sync holds this MusicBot's deletion or suspension as part of a mass
/// deletion (an emptied or renamed collection?): why, and how to let it go.
pub const SYNC_HELD: &str = "musicbot.dev/sync-held";

/// Labels selecting one bot's pods. The StatefulSet's selector is immutable: keep it minimal.
/// On a fleet's key Secret and its bots' pods: the fleet's name.
pub const FLEET_LABEL: &str = "musicbot.dev/fleet";
/// The key of the fleet key Secret that holds the key.
pub const FLEET_KEY: &str = "key";

/// The Secret holding `fleet`'s key, in the fleet's namespace (the operator makes it).
pub fn fleet_key_secret(fleet: &str) -> String {
    format!("musicbot-fleet-{fleet}")
}

pub fn selector_labels(bot: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), "bot-runner".to_string()), (BOT_LABEL.to_string(), bot.to_string())])
}

/// The label selector of objects the sync manages.
pub fn synced_selector() -> String {
    format!("{MANAGED_BY_LABEL}={SYNC}")
}
