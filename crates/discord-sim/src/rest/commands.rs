//! Application commands, global and per guild: bulk overwrite, create (upsert by name), get,
//! edit, delete, with the validation Discord applies to names, descriptions and options.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, Caller, JsonBody, error, no_content, ok};
use crate::payloads;
use crate::state::{Shared, State as SimState};

type Sim = State<Arc<Shared>>;

/// Checks the caller owns `app` and, for guild commands, is in the guild.
fn check(s: &SimState, bot: usize, app: u64, guild: Option<u64>) -> Result<(), ApiError> {
    let spec = &s.bots[bot].spec;
    if spec.application_id != app {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            20012,
            "You are not authorized to perform this action on this application",
        ));
    }
    if let Some(g) = guild
        && !spec.guilds.contains(&g)
    {
        return Err(ApiError::new(StatusCode::FORBIDDEN, 50001, "Missing Access"));
    }
    Ok(())
}

fn commands_mut(s: &mut SimState, bot: usize, guild: Option<u64>) -> &mut Vec<Value> {
    match guild {
        Some(g) => s.bots[bot].guild_commands.entry(g).or_default(),
        None => &mut s.bots[bot].global_commands,
    }
}

/// The commands, as Discord lists them: the localization maps only when asked for with
/// `?with_localizations=true`.
fn list_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, query: Option<String>) -> Response {
    let localized = query.is_some_and(|q| q.split('&').any(|p| p == "with_localizations=true"));
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        let mut list = commands_mut(s, bot, guild).clone();
        if !localized {
            list.iter_mut().for_each(strip_localizations);
        }
        Ok(ok(Value::Array(list)))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn strip_localizations(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.remove("name_localizations");
            o.remove("description_localizations");
            o.values_mut().for_each(strip_localizations);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_localizations),
        _ => {}
    }
}

/// Stores `body` as a command, keeping the id of a same-named command (as Discord does).
fn upsert(s: &mut SimState, bot: usize, app: u64, guild: Option<u64>, body: &Value) -> Value {
    let existing = commands_mut(s, bot, guild).iter().position(|c| same_command(c, body));
    let id = match existing.and_then(|i| commands_mut(s, bot, guild)[i]["id"].as_str().and_then(|id| id.parse().ok())) {
        Some(id) => id,
        None => s.snowflake(),
    };
    let version = s.snowflake();
    let cmd = payloads::command(body, id, app, guild, version);
    let list = commands_mut(s, bot, guild);
    match existing {
        Some(i) => list[i] = cmd.clone(),
        None => list.push(cmd.clone()),
    }
    cmd
}

fn same_command(stored: &Value, body: &Value) -> bool {
    stored["name"] == body["name"] && stored["type"].as_u64().unwrap_or(1) == body["type"].as_u64().unwrap_or(1)
}

fn overwrite_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, body: Value) -> Response {
    let Some(bodies) = body.as_array().cloned() else {
        return invalid(json!({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]}));
    };
    if let Err(errors) = validate_all(&bodies) {
        return invalid(errors);
    }
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        let old = std::mem::take(commands_mut(s, bot, guild));
        let mut out = Vec::new();
        for b in &bodies {
            // Commands that survive an overwrite keep their ids.
            let id = match old
                .iter()
                .find(|c| same_command(c, b))
                .and_then(|c| c["id"].as_str())
                .and_then(|id| id.parse().ok())
            {
                Some(id) => id,
                None => s.snowflake(),
            };
            let version = s.snowflake();
            out.push(payloads::command(b, id, app, guild, version));
        }
        *commands_mut(s, bot, guild) = out.clone();
        Ok(ok(Value::Array(out)))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn create_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, body: Value) -> Response {
    if let Err(errors) = validate(&body) {
        return invalid(errors);
    }
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        let existed = commands_mut(s, bot, guild).iter().any(|c| same_command(c, &body));
        let cmd = upsert(s, bot, app, guild, &body);
        let mut r = ok(cmd);
        if !existed {
            *r.status_mut() = StatusCode::CREATED;
        }
        Ok(r)
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn find(list: &mut [Value], id: u64) -> Option<&mut Value> {
    list.iter_mut().find(|c| c["id"].as_str() == Some(id.to_string().as_str()))
}

fn get_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, id: u64) -> Response {
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        Ok(find(commands_mut(s, bot, guild), id).map(|c| ok(c.clone())).unwrap_or_else(unknown_command))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn edit_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, id: u64, body: Value) -> Response {
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        let version = s.snowflake();
        let Some(cmd) = find(commands_mut(s, bot, guild), id) else {
            return Ok(unknown_command());
        };
        let mut edited = cmd.clone();
        payloads::merge(&mut edited, body);
        if let Err(errors) = validate(&edited) {
            return Ok(invalid(errors));
        }
        edited["version"] = json!(version.to_string());
        *cmd = edited.clone();
        Ok(ok(edited))
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn delete_in(sim: &Shared, bot: usize, app: u64, guild: Option<u64>, id: u64) -> Response {
    sim.update(|s, _| -> Result<Response, ApiError> {
        check(s, bot, app, guild)?;
        let list = commands_mut(s, bot, guild);
        let before = list.len();
        list.retain(|c| c["id"].as_str() != Some(id.to_string().as_str()));
        Ok(if list.len() < before { no_content() } else { unknown_command() })
    })
    .unwrap_or_else(IntoResponse::into_response)
}

fn unknown_command() -> Response {
    error(StatusCode::NOT_FOUND, 10063, "Unknown application command")
}

fn invalid(errors: Value) -> Response {
    let body = json!({"code": 50035, "message": "Invalid Form Body", "errors": errors});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn bad(code: &str, message: &str) -> Value {
    json!({"_errors": [{"code": code, "message": message}]})
}

/// Discord's rules for a name: 1-32 characters, lowercase, letters, digits, `-` and `_`,
/// and any character of the Thai and Devanagari scripts (their vowel signs are marks, not
/// letters).
fn name_error(name: &Value) -> Option<Value> {
    let Some(name) = name.as_str() else {
        return Some(bad("BASE_TYPE_REQUIRED", "This field is required"));
    };
    let script = |c: char| matches!(c, '\u{0E00}'..='\u{0E7F}' | '\u{0900}'..='\u{097F}');
    let valid = (1..=32).contains(&name.chars().count())
        && name.chars().all(|c| c == '-' || c == '_' || script(c) || (c.is_alphanumeric() && !c.is_uppercase()));
    (!valid).then(|| bad("APPLICATION_COMMAND_INVALID_NAME", &format!("Command name is invalid: {name:?}")))
}

/// The locales Discord's clients can be set to, the keys of a localization map.
const LOCALES: [&str; 32] = [
    "id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no", "pl", "pt-BR",
    "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th", "zh-CN", "ja", "zh-TW", "ko",
];

/// A localization map (`name_localizations`, `description_localizations`): known locales,
/// each value valid as what it localizes.
fn localizations_error(map: &Value, check: fn(&Value) -> Option<Value>) -> Option<Value> {
    let map = map.as_object()?;
    let mut errors = Map::new();
    for (locale, value) in map {
        if !LOCALES.contains(&locale.as_str()) {
            errors.insert(locale.clone(), bad("LOCALE_INVALID", &format!("Invalid locale: {locale:?}")));
        } else if let Some(e) = check(value) {
            errors.insert(locale.clone(), e);
        }
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

/// The localization maps of a command or option, into `errors`.
fn check_localizations(v: &Value, errors: &mut Map<String, Value>) {
    if let Some(e) = localizations_error(&v["name_localizations"], name_error) {
        errors.insert("name_localizations".into(), e);
    }
    if let Some(e) = localizations_error(&v["description_localizations"], description_error) {
        errors.insert("description_localizations".into(), e);
    }
    for (i, choice) in v["choices"].as_array().into_iter().flatten().enumerate() {
        let label = |v: &Value| {
            let len = v.as_str().map_or(0, |s| s.chars().count());
            (!(1..=100).contains(&len)).then(|| bad("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
        };
        if let Some(e) = localizations_error(&choice["name_localizations"], label) {
            errors.insert(format!("choices.{i}.name_localizations"), e);
        }
    }
}

fn description_error(d: &Value) -> Option<Value> {
    let len = d.as_str().map(|d| d.chars().count()).unwrap_or(0);
    (!(1..=100).contains(&len)).then(|| bad("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
}

/// Validates one chat-input command (other command types only need a name).
fn validate(cmd: &Value) -> Result<(), Value> {
    let mut errors = Map::new();
    let chat_input = cmd["type"].as_u64().unwrap_or(1) == 1;
    if chat_input {
        if let Some(e) = name_error(&cmd["name"]) {
            errors.insert("name".into(), e);
        }
        if let Some(e) = description_error(&cmd["description"]) {
            errors.insert("description".into(), e);
        }
        if let Some(e) = options_errors(&cmd["options"]) {
            errors.insert("options".into(), e);
        }
        check_localizations(cmd, &mut errors);
    } else if cmd["name"].as_str().is_none_or(|n| n.is_empty() || n.chars().count() > 32) {
        errors.insert("name".into(), bad("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."));
    }
    if errors.is_empty() { Ok(()) } else { Err(Value::Object(errors)) }
}

fn options_errors(options: &Value) -> Option<Value> {
    let options = options.as_array()?;
    let mut errors = Map::new();
    if options.len() > 25 {
        errors.insert(
            "_errors".into(),
            json!([{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}]),
        );
    }
    let mut seen_optional = false;
    let mut names = std::collections::HashSet::new();
    for (i, o) in options.iter().enumerate() {
        let mut e = Map::new();
        if let Some(n) = name_error(&o["name"]) {
            e.insert("name".into(), n);
        } else if !names.insert(o["name"].as_str().unwrap_or_default().to_string()) {
            e.insert(
                "name".into(),
                bad("APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"),
            );
        }
        if let Some(d) = description_error(&o["description"]) {
            e.insert("description".into(), d);
        }
        check_localizations(o, &mut e);
        let required = o["required"].as_bool().unwrap_or(false);
        if required && seen_optional {
            e.insert(
                "required".into(),
                bad(
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                ),
            );
        }
        seen_optional |= !required;
        // Subcommands (1) and groups (2) carry their own options.
        if matches!(o["type"].as_u64(), Some(1 | 2))
            && let Some(sub) = options_errors(&o["options"])
        {
            e.insert("options".into(), sub);
        }
        if !e.is_empty() {
            errors.insert(i.to_string(), Value::Object(e));
        }
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

fn validate_all(bodies: &[Value]) -> Result<(), Value> {
    let mut errors = Map::new();
    let mut names = std::collections::HashSet::new();
    for (i, b) in bodies.iter().enumerate() {
        if let Err(e) = validate(b) {
            errors.insert(i.to_string(), e);
        } else if !names.insert((b["name"].as_str().unwrap_or_default().to_string(), b["type"].as_u64().unwrap_or(1))) {
            errors.insert(
                i.to_string(),
                json!({"name": bad("APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")}),
            );
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Value::Object(errors)) }
}

pub(super) async fn list(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path(app): Path<u64>,
    RawQuery(query): RawQuery,
) -> Response {
    list_in(&sim, bot, app, None, query)
}

pub(super) async fn list_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((app, guild)): Path<(u64, u64)>,
    RawQuery(query): RawQuery,
) -> Response {
    list_in(&sim, bot, app, Some(guild), query)
}

pub(super) async fn overwrite(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path(app): Path<u64>,
) -> Response {
    overwrite_in(&sim, bot, app, None, body.value())
}

pub(super) async fn overwrite_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path((app, guild)): Path<(u64, u64)>,
) -> Response {
    overwrite_in(&sim, bot, app, Some(guild), body.value())
}

pub(super) async fn create(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path(app): Path<u64>,
) -> Response {
    create_in(&sim, bot, app, None, body.value())
}

pub(super) async fn create_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path((app, guild)): Path<(u64, u64)>,
) -> Response {
    create_in(&sim, bot, app, Some(guild), body.value())
}

pub(super) async fn get_one(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((app, id)): Path<(u64, u64)>,
) -> Response {
    get_in(&sim, bot, app, None, id)
}

pub(super) async fn get_one_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((app, guild, id)): Path<(u64, u64, u64)>,
) -> Response {
    get_in(&sim, bot, app, Some(guild), id)
}

pub(super) async fn edit(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path((app, id)): Path<(u64, u64)>,
) -> Response {
    edit_in(&sim, bot, app, None, id, body.value())
}

pub(super) async fn edit_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Extension(body): Extension<JsonBody>,
    Path((app, guild, id)): Path<(u64, u64, u64)>,
) -> Response {
    edit_in(&sim, bot, app, Some(guild), id, body.value())
}

pub(super) async fn delete(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((app, id)): Path<(u64, u64)>,
) -> Response {
    delete_in(&sim, bot, app, None, id)
}

pub(super) async fn delete_guild(
    State(sim): Sim,
    Extension(Caller(bot)): Extension<Caller>,
    Path((app, guild, id)): Path<(u64, u64, u64)>,
) -> Response {
    delete_in(&sim, bot, app, Some(guild), id)
}
