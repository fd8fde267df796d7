//! The slash commands, poise style: one small function each, state in the bot's per-guild
//! players. Mistakes a user can make are `UserError`s and get a polite ephemeral reply.
//! Every reply is a [`Say`], put into the caller's language (see `crate::i18n`).

pub mod buttons;
mod control;
pub mod picks;
mod play;
mod queue;
mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use poise::CreateReply;
use serenity::all::{ChannelId, GuildId};
use tracing::{error, warn};

use crate::bot::Bot;
use crate::i18n::{self, Say};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Context<'a> = poise::Context<'a, Arc<Bot>, Error>;

/// Something the user can fix; shown to them alone.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.in_language("en"))]
pub struct UserError(pub Say);

pub fn user(say: Say) -> Error {
    Box::new(UserError(say))
}

/// The language to answer `ctx`'s caller in.
fn language(ctx: Context<'_>) -> &'static str {
    let (caller, server) = match ctx {
        poise::Context::Application(a) => (Some(a.interaction.locale.as_str()), a.interaction.guild_locale.as_deref()),
        poise::Context::Prefix(_) => (None, None),
    };
    language_in(ctx.data(), ctx.guild_id(), caller, server)
}

/// The language to answer the member who pressed `press` in.
fn press_language(bot: &Bot, press: &serenity::all::ComponentInteraction) -> &'static str {
    language_in(bot, press.guild_id, Some(&press.locale), press.guild_locale.as_deref())
}

/// The server's setting, else the caller's client, else the server's preferred locale.
fn language_in(bot: &Bot, guild: Option<GuildId>, caller: Option<&str>, server: Option<&str>) -> &'static str {
    let overridden = guild.and_then(|g| bot.music.guild_settings.get(g.get()).language);
    i18n::language(overridden.as_deref(), caller, server)
}

/// `say` in the caller's language.
fn words(ctx: Context<'_>, say: Say) -> String {
    say.in_language(language(ctx))
}

/// Answers with `say`, for everyone in the channel to see.
async fn reply(ctx: Context<'_>, say: Say) -> Result<(), Error> {
    ctx.send(CreateReply::default().content(words(ctx, say))).await?;
    Ok(())
}

pub fn all() -> Vec<poise::Command<Arc<Bot>, Error>> {
    let mut commands = vec![
        play::play(),
        control::skip(),
        control::stop(),
        control::pause(),
        control::resume(),
        queue::queue(),
        queue::nowplaying(),
        control::volume(),
        control::loop_(),
        queue::shuffle(),
        queue::remove(),
        control::seek(),
        control::leave(),
        control::previous(),
        control::replay(),
        play::playnext(),
        queue::move_(),
        queue::clear(),
        control::skipto(),
        settings::settings(),
        picks::search(),
    ];
    i18n::localize(&mut commands);
    commands
}

/// What Discord stores for our commands: the definitions `deploy` compares and overwrites.
pub fn definitions() -> Vec<serenity::all::CreateCommand> {
    poise::builtins::create_application_commands(&all())
}

pub fn options() -> poise::FrameworkOptions<Arc<Bot>, Error> {
    poise::FrameworkOptions {
        commands: all(),
        on_error: |e| Box::pin(on_error(e)),
        pre_command: |ctx| Box::pin(async move { ctx.set_invocation_data(Instant::now()).await }),
        post_command: |ctx| Box::pin(async move { observe(ctx, true).await }),
        event_handler: |fw, event| Box::pin(crate::events::handle(fw, event)),
        // Owners are not used; fetching them is a request we don't need.
        initialize_owners: false,
        ..Default::default()
    }
}

async fn observe(ctx: Context<'_>, ok: bool) {
    if let Some(start) = ctx.invocation_data::<Instant>().await {
        ctx.data().metrics.observe_command(&ctx.command().name, ok, start.elapsed());
    }
}

async fn ephemeral(ctx: Context<'_>, say: Say) {
    if let Err(e) = ctx.send(CreateReply::default().content(words(ctx, say)).ephemeral(true)).await {
        warn!(error = %e, "could not send an error reply");
    }
}

async fn on_error(err: poise::FrameworkError<'_, Arc<Bot>, Error>) {
    use poise::FrameworkError as E;
    match err {
        E::Command { error, ctx, .. } => {
            observe(ctx, false).await;
            match error.downcast_ref::<UserError>() {
                Some(u) => ephemeral(ctx, u.0.clone()).await,
                None => {
                    error!(command = %ctx.command().name, error = %error, "command failed");
                    ephemeral(ctx, Say::new("errors.internal")).await;
                }
            }
        }
        E::ArgumentParse { error, input, ctx, .. } => {
            observe(ctx, false).await;
            let what = input.map(|i| format!(" `{}`", i.chars().take(100).collect::<String>())).unwrap_or_default();
            ephemeral(ctx, Say::new("errors.bad_value").with("what", what).with("error", error)).await;
        }
        // poise's word for an option value outside the definition (an unknown choice, a
        // wrong type): the client sent something Discord's UI would not have offered.
        E::CommandStructureMismatch { description, ctx, .. } => {
            warn!(description, "command options did not match the definition");
            ephemeral(
                poise::Context::Application(ctx),
                Say::new("errors.bad_options").with("description", description),
            )
            .await;
        }
        E::GuildOnly { ctx, .. } => ephemeral(ctx, Say::new("errors.guild_only")).await,
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                warn!(error = %e, "could not report an error");
            }
        }
    }
}

/// Deletes the public "thinking…" placeholder of a deferred command, so the error reply that
/// follows is a new message only the caller sees (a follow-up would otherwise take the
/// placeholder's place, public).
async fn drop_placeholder(ctx: Context<'_>) {
    if let poise::Context::Application(a) = ctx
        && let Err(e) = a.interaction.delete_response(ctx.http()).await
    {
        warn!(error = %e, "could not delete the deferred reply");
    }
}

/// The `guild` field of a command's span (`None`, so left out, in a DM).
fn guild_field(ctx: Context<'_>) -> Option<u64> {
    ctx.guild_id().map(GuildId::get)
}

/// The guild of a guild-only command.
fn guild(ctx: Context<'_>) -> Result<GuildId, Error> {
    ctx.guild_id().ok_or_else(|| user(Say::new("errors.guild_only")))
}

/// How long a command waits for its guild's GUILD_CREATE to be handled.
const GUILD_CREATE_WAIT: Duration = Duration::from_millis(1500);

/// The voice channel the caller is in, from the bot's guild index.
async fn caller_channel(ctx: Context<'_>, guild: GuildId) -> Option<ChannelId> {
    let guilds = &ctx.data().guilds;
    // Within Discord's 3 s to answer, with room left for the answer itself.
    guilds.arrived(guild, GUILD_CREATE_WAIT).await;
    guilds.seat(guild, ctx.author().id)
}

/// The caller as a member of the guild, as the interaction carries them (roles and
/// permissions included).
fn member(ctx: Context<'_>) -> Option<&serenity::all::Member> {
    match ctx {
        poise::Context::Application(a) => a.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    }
}

/// Holds Manage Server.
fn is_manager(ctx: Context<'_>) -> bool {
    manages(member(ctx))
}

fn manages(member: Option<&serenity::all::Member>) -> bool {
    member.and_then(|m| m.permissions).is_some_and(|p| p.manage_guild())
}

/// May control playback: anyone, until a DJ role is set; then its holders and managers.
fn is_dj(ctx: Context<'_>, guild: GuildId) -> bool {
    may_control(ctx.data(), guild, member(ctx))
}

fn may_control(bot: &Bot, guild: GuildId, member: Option<&serenity::all::Member>) -> bool {
    match bot.music.guild_settings.get(guild.get()).dj_role {
        None => true,
        Some(role) => manages(member) || member.is_some_and(|m| m.roles.iter().any(|r| r.get() == role)),
    }
}

/// [`require_listener`], and a DJ (see [`is_dj`]).
async fn require_dj(ctx: Context<'_>) -> Result<GuildId, Error> {
    let guild = require_listener(ctx).await?;
    if !is_dj(ctx, guild) {
        return Err(user(dj_only(ctx.data(), guild)));
    }
    Ok(guild)
}

/// Why a member without the DJ role may not do that.
fn dj_only(bot: &Bot, guild: GuildId) -> Say {
    let role = bot.music.guild_settings.get(guild.get()).dj_role.unwrap_or_default();
    Say::new("errors.dj_only").with("role", role)
}

/// Whether `user`'s skip of the current `track` goes ahead: a DJ's, or that of the member
/// who asked for it, does; anyone else's is a vote, which carries with a majority of the
/// people listening in `channel`. `Ok(Some(..))`: the vote carried, said so; `Err`: the
/// vote so far.
fn skip_vote(
    bot: &Bot,
    guild: GuildId,
    channel: Option<ChannelId>,
    p: &mut crate::music::Player,
    (track, requested_by): (u64, u64),
    (user, dj): (u64, bool),
) -> Result<Option<Say>, Say> {
    if dj || requested_by == user {
        return Ok(None);
    }
    let listeners = channel.map_or(0, |c| bot.guilds.listeners(guild, c));
    let needed = listeners / 2 + 1;
    let votes = p.vote_skip(track, user);
    if votes < needed {
        return Err(Say::new("control.voted").with("votes", votes).with("needed", needed));
    }
    Ok(Some(Say::new("control.vote_passed").with("votes", votes).with("listeners", listeners)))
}

/// Playback controls are for people listening: the caller must be in the bot's channel.
async fn require_listener(ctx: Context<'_>) -> Result<GuildId, Error> {
    let guild = guild(ctx)?;
    let Some(bot_channel) = ctx.data().music.current_channel(guild).await else {
        return Err(user(Say::new("errors.not_in_voice")));
    };
    if caller_channel(ctx, guild).await != Some(bot_channel) {
        return Err(user(Say::new("errors.join_me").with("channel", bot_channel)));
    }
    Ok(guild)
}
