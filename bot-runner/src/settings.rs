//! Per-guild settings that server managers set with `/settings`: the DJ role, the language
//! replies are in, the volume a new queue starts at. Kept beside the session file
//! (`<session dir>/<client id>.settings.json`), written whole on each change, so they
//! survive restarts and rollouts; unlike a session they never age out. Without a session
//! directory they live as long as the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tracing::warn;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GuildSettings {
    /// With a DJ role, only its holders and server managers control playback; others may
    /// add songs, skip or remove their own, and vote to skip another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dj_role: Option<u64>,
    /// A catalog's language (`en`, `th`) that replies use whatever the caller's client is
    /// set to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Percent, 0–200, for a queue that starts from nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volume: Option<u16>,
}

/// Every guild's settings of one bot.
#[derive(Debug, Default)]
pub struct GuildSettingsStore {
    file: Option<PathBuf>,
    guilds: RwLock<BTreeMap<u64, GuildSettings>>,
}

impl GuildSettingsStore {
    /// The settings saved in `file`; none saved (or no file): none set. A file that does
    /// not parse is reported, kept aside, and started over.
    pub fn open(file: Option<PathBuf>) -> Self {
        let Some(file) = file else {
            return Self::default();
        };
        let guilds = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(file = %file.display(), error = %e, "the guild settings do not parse; kept aside as .broken");
                let _ = std::fs::rename(&file, file.with_extension("json.broken"));
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot read the guild settings");
                BTreeMap::new()
            }
        };
        Self { file: Some(file), guilds: RwLock::new(guilds) }
    }

    pub fn get(&self, guild: u64) -> GuildSettings {
        self.guilds.read().expect("settings lock").get(&guild).cloned().unwrap_or_default()
    }

    /// Changes `guild`'s settings and saves them all (aside, then renamed, so a kill leaves
    /// the last whole file). An error means the change holds until the process ends only.
    pub fn update(&self, guild: u64, change: impl FnOnce(&mut GuildSettings)) -> std::io::Result<GuildSettings> {
        let mut guilds = self.guilds.write().expect("settings lock");
        let settings = guilds.entry(guild).or_default();
        change(settings);
        let now = settings.clone();
        if now == GuildSettings::default() {
            guilds.remove(&guild);
        }
        if let Some(file) = &self.file {
            let tmp = file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&*guilds)?)?;
            std::fs::rename(&tmp, file)?;
        }
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_reopen_and_a_broken_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = |bot: u64| Some(dir.path().join(format!("{bot}.settings.json")));
        let store = GuildSettingsStore::open(file(42));
        assert_eq!(store.get(7), GuildSettings::default());
        store.update(7, |s| s.dj_role = Some(99)).unwrap();
        store.update(7, |s| s.default_volume = Some(40)).unwrap();
        store.update(8, |s| s.language = Some("th".into())).unwrap();
        let again = GuildSettingsStore::open(file(42));
        assert_eq!(again.get(7), GuildSettings { dj_role: Some(99), language: None, default_volume: Some(40) });
        assert_eq!(again.get(8).language.as_deref(), Some("th"));
        assert_eq!(GuildSettingsStore::open(file(43)).get(7), GuildSettings::default(), "per bot");
        // Back to nothing set: the guild leaves the file.
        again.update(8, |s| s.language = None).unwrap();
        let text = std::fs::read_to_string(dir.path().join("42.settings.json")).unwrap();
        assert!(!text.contains("\"8\""), "{text}");

        std::fs::write(dir.path().join("42.settings.json"), b"{not json").unwrap();
        let broken = GuildSettingsStore::open(file(42));
        assert_eq!(broken.get(7), GuildSettings::default());
        assert!(dir.path().join("42.settings.json.broken").exists());
        let memory = GuildSettingsStore::open(None);
        assert_eq!(memory.update(1, |s| s.dj_role = Some(5)).unwrap().dj_role, Some(5));
    }
}
