//! Interactions a test injects (INTERACTION_CREATE): slash commands (type 2), presses of
//! message components (type 3) and autocomplete questions (type 4).

use serde_json::{Map, Value, json};

use super::payloads;
use super::spec::{ChannelSpec, GuildSpec, UserSpec};

/// An option value, typed as Discord types them.
#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    String(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
    User(u64),
    Channel(u64),
    Role(u64),
}

impl OptionValue {
    /// Discord's application command option type.
    pub fn kind(&self) -> u8 {
        match self {
            OptionValue::String(_) => 3,
            OptionValue::Integer(_) => 4,
            OptionValue::Boolean(_) => 5,
            OptionValue::User(_) => 6,
            OptionValue::Channel(_) => 7,
            OptionValue::Role(_) => 8,
            OptionValue::Number(_) => 10,
        }
    }

    fn json(&self) -> Value {
        match self {
            OptionValue::String(s) => json!(s),
            OptionValue::Integer(i) => json!(i),
            OptionValue::Number(n) => json!(n),
            OptionValue::Boolean(b) => json!(b),
            OptionValue::User(id) | OptionValue::Channel(id) | OptionValue::Role(id) => {
                json!(id.to_string())
            }
        }
    }
}

impl From<&str> for OptionValue {
    fn from(v: &str) -> Self {
        OptionValue::String(v.to_string())
    }
}
impl From<String> for OptionValue {
    fn from(v: String) -> Self {
        OptionValue::String(v)
    }
}
impl From<i64> for OptionValue {
    fn from(v: i64) -> Self {
        OptionValue::Integer(v)
    }
}
impl From<i32> for OptionValue {
    fn from(v: i32) -> Self {
        OptionValue::Integer(v.into())
    }
}
impl From<f64> for OptionValue {
    fn from(v: f64) -> Self {
        OptionValue::Number(v)
    }
}
impl From<bool> for OptionValue {
    fn from(v: bool) -> Self {
        OptionValue::Boolean(v)
    }
}

/// A slash command as a user would invoke it: `/name [subcommand] option:value ...`.
#[derive(Clone, Debug)]
pub struct SlashCommand {
    pub guild_id: u64,
    pub channel_id: u64,
    pub user_id: u64,
    pub name: String,
    pub subcommand: Option<String>,
    pub options: Vec<(String, OptionValue)>,
    /// The option being typed, for an autocomplete question.
    pub focused: Option<String>,
}

impl SlashCommand {
    pub fn new(guild_id: u64, channel_id: u64, user_id: u64, name: impl Into<String>) -> Self {
        Self { guild_id, channel_id, user_id, name: name.into(), subcommand: None, options: Vec::new(), focused: None }
    }

    /// The user is typing `partial` into option `name`: sent as an autocomplete question
    /// (`Bot::inject_autocomplete`).
    pub fn typing(mut self, name: impl Into<String>, partial: impl Into<String>) -> Self {
        let name = name.into();
        self.options.push((name.clone(), OptionValue::String(partial.into())));
        self.focused = Some(name);
        self
    }

    pub fn option(mut self, name: impl Into<String>, value: impl Into<OptionValue>) -> Self {
        self.options.push((name.into(), value.into()));
        self
    }

    /// Puts the options under a subcommand (`/name subcommand ...`).
    pub fn subcommand(mut self, name: impl Into<String>) -> Self {
        self.subcommand = Some(name.into());
        self
    }
}

/// A press on a component of a message the bot sent: a button, or a choice in a select menu.
#[derive(Clone, Debug)]
pub struct Press {
    pub guild_id: u64,
    pub channel_id: u64,
    pub user_id: u64,
    pub message_id: u64,
    pub custom_id: String,
    /// 2 a button, 3 a string select.
    pub component_type: u8,
    pub values: Vec<String>,
}

impl Press {
    pub fn button(guild_id: u64, channel_id: u64, user_id: u64, message_id: u64, custom_id: impl Into<String>) -> Self {
        let custom_id = custom_id.into();
        Self { guild_id, channel_id, user_id, message_id, custom_id, component_type: 2, values: Vec::new() }
    }

    pub fn select(
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        message_id: u64,
        custom_id: impl Into<String>,
        values: &[&str],
    ) -> Self {
        let values = values.iter().map(|v| v.to_string()).collect();
        Self { values, component_type: 3, ..Self::button(guild_id, channel_id, user_id, message_id, custom_id) }
    }
}

/// Everything an INTERACTION_CREATE needs besides the command itself.
pub(crate) struct InteractionContext<'a> {
    pub id: u64,
    pub token: &'a str,
    pub application_id: u64,
    pub command_id: u64,
    pub guild: &'a GuildSpec,
    pub channel: &'a ChannelSpec,
    pub user: &'a UserSpec,
    pub joined_at: &'a str,
}

pub(crate) fn interaction_create(cmd: &SlashCommand, ctx: &InteractionContext<'_>) -> Value {
    let option = |(name, v): &(String, OptionValue)| {
        let mut o = json!({"name": name, "type": v.kind(), "value": v.json()});
        if cmd.focused.as_ref() == Some(name) {
            o["focused"] = json!(true);
        }
        o
    };
    let options: Vec<Value> = cmd.options.iter().map(option).collect();
    let options = match &cmd.subcommand {
        Some(sub) => vec![json!({"name": sub, "type": 1, "options": options})],
        None => options,
    };
    let mut data = json!({
        "id": ctx.command_id.to_string(),
        "name": cmd.name,
        "type": 1,
        "options": options,
        "guild_id": ctx.guild.id.to_string(),
    });
    let resolved = resolved(cmd, ctx);
    if !resolved.is_empty() {
        data["resolved"] = Value::Object(resolved);
    }
    envelope(if cmd.focused.is_some() { 4 } else { 2 }, data, ctx)
}

/// A press on a component of `message`.
pub(crate) fn component_create(press: &Press, message: &Value, ctx: &InteractionContext<'_>) -> Value {
    let mut data = json!({"custom_id": press.custom_id, "component_type": press.component_type});
    if press.component_type == 3 {
        data["values"] = json!(press.values);
    }
    let mut v = envelope(3, data, ctx);
    v["message"] = message.clone();
    v
}

fn envelope(kind: u8, data: Value, ctx: &InteractionContext<'_>) -> Value {
    let guild_id = ctx.guild.id.to_string();
    let guild_locale = ctx.guild.locale.as_deref().unwrap_or(payloads::LOCALE);
    json!({
        "id": ctx.id.to_string(),
        "application_id": ctx.application_id.to_string(),
        "type": kind,
        "data": data,
        "guild_id": guild_id,
        "guild": {"id": guild_id, "locale": guild_locale, "features": []},
        "channel_id": ctx.channel.id.to_string(),
        "channel": payloads::channel(ctx.channel, ctx.guild.id, 0),
        "member": payloads::interaction_member(ctx.user, ctx.joined_at),
        "token": ctx.token,
        "version": 1,
        "app_permissions": payloads::EVERYONE_PERMISSIONS.to_string(),
        "locale": ctx.user.locale.as_deref().unwrap_or(payloads::LOCALE),
        "guild_locale": guild_locale,
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild_id},
        "context": 0,
        "attachment_size_limit": 10_485_760,
    })
}

/// The `resolved` map Discord adds for user, channel and role options.
fn resolved(cmd: &SlashCommand, ctx: &InteractionContext<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |kind: &str, id: u64, v: Value| {
        let e = out.entry(kind).or_insert_with(|| json!({}));
        e[id.to_string()] = v;
    };
    for (_, v) in &cmd.options {
        match v {
            OptionValue::User(id) => {
                let u = ctx.guild.member_by_id(*id).cloned().unwrap_or_else(|| UserSpec::new(*id, format!("user{id}")));
                put("users", *id, payloads::user(&u));
                let mut m = payloads::interaction_member(&u, ctx.joined_at);
                m.as_object_mut().map(|o| o.remove("user"));
                put("members", *id, m);
            }
            OptionValue::Channel(id) => {
                if let Some(c) = ctx.guild.channel(*id) {
                    let mut ch = payloads::channel(c, ctx.guild.id, 0);
                    ch["permissions"] = json!(payloads::EVERYONE_PERMISSIONS.to_string());
                    put("channels", *id, ch);
                }
            }
            OptionValue::Role(id) => {
                let mut role = payloads::everyone_role(ctx.guild.id);
                role["id"] = json!(id.to_string());
                role["name"] = json!(format!("role{id}"));
                put("roles", *id, role);
            }
            _ => {}
        }
    }
    out
}
