use poise::CreateReply;
use serenity::all::Role;

use super::{Context, Error, guild, guild_field, is_manager, reply, user, words};
use crate::i18n::Say;

/// Server settings of this bot: the DJ role, the language, the default volume.
#[poise::command(
    slash_command,
    guild_only,
    subcommands("show", "dj", "language", "volume"),
    subcommand_required,
    default_member_permissions = "MANAGE_GUILD"
)]
pub async fn settings(_: Context<'_>) -> Result<(), Error> {
    Ok(())
}

/// Show this server's settings.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/settings show", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn show(ctx: Context<'_>) -> Result<(), Error> {
    let guild = guild(ctx)?;
    let s = ctx.data().music.guild_settings.get(guild.get());
    let dj = s.dj_role.map(|r| format!("<@&{r}>")).unwrap_or_else(|| words(ctx, Say::new("settings.no_dj")));
    let language = match s.language.as_deref() {
        Some("th") => Language::Thai,
        Some(_) => Language::English,
        None => Language::Auto,
    };
    let volume = s.default_volume.unwrap_or(ctx.data().music.settings.default_volume);
    let said = Say::new("settings.shown").with("dj", dj).with("language", words(ctx, language.label()));
    let said = said.with("volume", volume);
    ctx.send(CreateReply::default().content(words(ctx, said)).ephemeral(true)).await?;
    Ok(())
}

/// Set the DJ role (leave it out to let everyone listening control playback).
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/settings dj", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn dj(
    ctx: Context<'_>,
    #[description = "Members with it control playback"] role: Option<Role>,
) -> Result<(), Error> {
    let guild = require_manager(ctx)?;
    let role = role.map(|r| r.id.get());
    save(ctx, guild.get(), |s| s.dj_role = role);
    let said = match role {
        Some(r) => Say::new("settings.dj_set").with("role", r),
        None => Say::new("settings.dj_cleared"),
    };
    reply(ctx, said).await
}

/// Reply in one language for everyone here, or in each member's own.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/settings language", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn language(ctx: Context<'_>, #[description = "The language"] language: Language) -> Result<(), Error> {
    let guild = require_manager(ctx)?;
    let code = language.code();
    save(ctx, guild.get(), |s| s.language = code.map(str::to_string));
    // Said in the language just chosen.
    let said = Say::new("settings.language_set").with("language", words(ctx, language.label()));
    reply(ctx, said).await
}

/// Set the volume a new queue starts at.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/settings volume", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn volume(
    ctx: Context<'_>,
    #[description = "0 to 200"]
    #[min = 0]
    #[max = 200]
    level: i64,
) -> Result<(), Error> {
    let level = super::control::volume_level(level)?;
    let guild = require_manager(ctx)?;
    save(ctx, guild.get(), |s| s.default_volume = Some(level));
    reply(ctx, Say::new("settings.volume_set").with("level", level)).await
}

#[derive(poise::ChoiceParameter, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    #[name = "each member's own"]
    Auto,
    #[name = "English"]
    English,
    #[name = "ไทย (Thai)"]
    Thai,
}

impl Language {
    fn code(self) -> Option<&'static str> {
        match self {
            Language::Auto => None,
            Language::English => Some("en"),
            Language::Thai => Some("th"),
        }
    }

    fn label(self) -> Say {
        Say::new(match self {
            Language::Auto => "settings.own_language",
            Language::English => "settings.english",
            Language::Thai => "settings.thai",
        })
    }
}

/// Discord shows `/settings` to managers only, but a client can send it anyway.
fn require_manager(ctx: Context<'_>) -> Result<serenity::all::GuildId, Error> {
    let guild = guild(ctx)?;
    if !is_manager(ctx) {
        return Err(user(Say::new("errors.managers_only")));
    }
    Ok(guild)
}

/// A change that cannot be written still holds until the process ends.
fn save(ctx: Context<'_>, guild: u64, change: impl FnOnce(&mut crate::settings::GuildSettings)) {
    if let Err(e) = ctx.data().music.guild_settings.update(guild, change) {
        tracing::warn!(error = %e, "could not save the guild settings; they hold until a restart");
    }
}
