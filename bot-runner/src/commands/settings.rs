use poise::CreateReply;
use serenity::all::Role;

use super::{Context, Error, guild, guild_field, is_manager, user};

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
    let dj =
        s.dj_role.map(|r| format!("<@&{r}>")).unwrap_or_else(|| "none (everyone listening controls playback)".into());
    let language = s.language.unwrap_or_else(|| "each member's own".into());
    let volume = s.default_volume.unwrap_or(ctx.data().music.settings.default_volume);
    let text = format!("DJ role: {dj}\nLanguage: {language}\nDefault volume: {volume}%");
    ctx.send(CreateReply::default().content(text).ephemeral(true)).await?;
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
    save(ctx, guild.get(), |s| s.dj_role = role)?;
    let text = match role {
        Some(r) => format!("Only members with <@&{r}> (and server managers) control playback now."),
        None => "No DJ role: everyone listening controls playback.".to_string(),
    };
    ctx.say(text).await?;
    Ok(())
}

/// Reply in one language for everyone here, or in each member's own.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/settings language", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn language(ctx: Context<'_>, #[description = "The language"] language: Language) -> Result<(), Error> {
    let guild = require_manager(ctx)?;
    let code = language.code();
    save(ctx, guild.get(), |s| s.language = code.map(str::to_string))?;
    ctx.say(format!("Language: {}.", language.label())).await?;
    Ok(())
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
    let Ok(level @ 0..=200) = u16::try_from(level) else {
        return Err(user(format!("The volume goes from 0 to 200; {level} is out of range.")));
    };
    let guild = require_manager(ctx)?;
    save(ctx, guild.get(), |s| s.default_volume = Some(level))?;
    ctx.say(format!("New queues start at {level}%.")).await?;
    Ok(())
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

    fn label(self) -> &'static str {
        match self {
            Language::Auto => "each member's own",
            Language::English => "English",
            Language::Thai => "ไทย",
        }
    }
}

/// Discord shows `/settings` to managers only, but a client can send it anyway.
fn require_manager(ctx: Context<'_>) -> Result<serenity::all::GuildId, Error> {
    let guild = guild(ctx)?;
    if !is_manager(ctx) {
        return Err(user("Only server managers (Manage Server) can change my settings."));
    }
    Ok(guild)
}

fn save(ctx: Context<'_>, guild: u64, change: impl FnOnce(&mut crate::settings::GuildSettings)) -> Result<(), Error> {
    if let Err(e) = ctx.data().music.guild_settings.update(guild, change) {
        tracing::warn!(error = %e, "could not save the guild settings; they hold until a restart");
    }
    Ok(())
}
