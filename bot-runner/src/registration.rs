//! Slash-command registration as an idempotent bulk overwrite: the commands Discord holds
//! are read first and only overwritten when they differ from ours, so restarts (and a
//! fleet of hundreds of bots) don't churn Discord's command versions or hit its limits.

use serde_json::Value;
use serenity::all::{Command, CreateCommand, GuildId, Http};

use crate::commands;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Overwritten(usize),
}

/// Deploys our commands globally, or to each of `guilds`.
pub async fn deploy(http: &Http, guilds: &[u64]) -> serenity::Result<Outcome> {
    let wanted = commands::definitions();
    let mut outcome = Outcome::Unchanged;
    if guilds.is_empty()
        && let Some(n) = put(http, None, &wanted).await?
    {
        outcome = Outcome::Overwritten(n);
    }
    for g in guilds {
        if let Some(n) = put(http, Some(GuildId::new(*g)), &wanted).await? {
            outcome = Outcome::Overwritten(n);
        }
    }
    Ok(outcome)
}

/// Removes every command, globally or in one guild.
pub async fn clear(http: &Http, guild: Option<u64>) -> serenity::Result<Outcome> {
    Ok(match put(http, guild.map(GuildId::new), &[]).await? {
        Some(_) => Outcome::Overwritten(0),
        None => Outcome::Unchanged,
    })
}

async fn put(http: &Http, guild: Option<GuildId>, wanted: &[CreateCommand]) -> serenity::Result<Option<usize>> {
    // With their localizations: without them Discord leaves out what ours carry, and every
    // start would look like a change.
    let existing = match guild {
        Some(g) => g.get_commands_with_localizations(http).await?,
        None => Command::get_global_commands_with_localizations(http).await?,
    };
    let existing: Vec<Value> = existing.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect();
    let wanted_json: Vec<Value> = wanted.iter().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect();
    if same_commands(&wanted_json, &existing) {
        return Ok(None);
    }
    let (w, e) = (serde_json::Value::from(wanted_json), serde_json::Value::from(existing));
    tracing::debug!(?guild, wanted = %w, existing = %e, "commands differ");
    let n = match guild {
        Some(g) => g.set_commands(http, wanted.to_vec()).await?.len(),
        None => Command::set_global_commands(http, wanted.to_vec()).await?.len(),
    };
    Ok(Some(n))
}

/// Whether Discord's copy already says what ours does. Discord adds fields (ids, versions,
/// defaults) and leaves out false and empty ones, so every field we send must match and
/// fields we don't send are ignored.
pub fn same_commands(wanted: &[Value], existing: &[Value]) -> bool {
    wanted.len() == existing.len()
        && wanted.iter().all(|w| existing.iter().any(|e| e.get("name") == w.get("name") && covers(e, w)))
}

fn covers(existing: &Value, wanted: &Value) -> bool {
    match (existing, wanted) {
        (Value::Object(e), Value::Object(w)) => w.iter().all(|(k, wv)| match e.get(k) {
            Some(ev) => covers(ev, wv),
            None => is_default(wv),
        }),
        (Value::Array(e), Value::Array(w)) => e.len() == w.len() && e.iter().zip(w).all(|(e, w)| covers(e, w)),
        // Numbers may come back as integers or floats (min/max values), and large ones
        // rounded: equal to within float precision is equal.
        (Value::Number(e), Value::Number(w)) => match (e.as_f64(), w.as_f64()) {
            (Some(e), Some(w)) => (e - w).abs() <= 1e-9 * e.abs().max(w.abs()).max(1.0),
            _ => false,
        },
        (Value::Null, w) => is_default(w),
        (e, w) => e == w,
    }
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) => false,
        Value::Bool(true) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discords_extra_fields_and_dropped_defaults_are_the_same_command() {
        let wanted = vec![json!({"name": "play", "description": "Play", "type": 1,
            "options": [{"type": 3, "name": "query", "description": "q", "required": true, "choices": []}],
            "integration_types": null, "dm_permission": false})];
        let existing = vec![json!({"id": "1", "application_id": "2", "version": "3", "name": "play",
            "description": "Play", "type": 1, "default_member_permissions": null,
            "options": [{"type": 3, "name": "query", "description": "q", "required": true}]})];
        assert!(same_commands(&wanted, &existing));
    }

    #[test]
    fn any_real_difference_is_a_change() {
        let base = json!({"name": "volume", "description": "Set", "options": [{"type": 4, "name": "level", "description": "d", "min_value": 0, "max_value": 200}]});
        let mut changed = base.clone();
        changed["options"][0]["max_value"] = json!(150);
        assert!(!same_commands(std::slice::from_ref(&base), &[changed]));
        let mut renamed = base.clone();
        renamed["description"] = json!("Other");
        assert!(!same_commands(std::slice::from_ref(&base), &[renamed]));
        assert!(!same_commands(std::slice::from_ref(&base), &[]), "missing command");
        assert!(!same_commands(&[], std::slice::from_ref(&base)), "a stale command to remove");
        let float = json!({"name": "volume", "description": "Set", "options": [{"type": 4, "name": "level", "description": "d", "min_value": 0.0, "max_value": 200.0}]});
        assert!(same_commands(&[base], &[float]));
    }

    #[test]
    fn our_definitions_cover_the_seed_commands() {
        let names: Vec<String> = commands::definitions()
            .iter()
            .map(|c| serde_json::to_value(c).unwrap()["name"].as_str().unwrap().to_string())
            .collect();
        for n in [
            "play",
            "skip",
            "stop",
            "pause",
            "resume",
            "queue",
            "nowplaying",
            "volume",
            "loop",
            "shuffle",
            "remove",
            "seek",
            "leave",
        ] {
            assert!(names.iter().any(|x| x == n), "missing /{n} in {names:?}");
        }
    }
}
