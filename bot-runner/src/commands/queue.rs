use std::fmt::Write;

use super::{Context, Error, guild, guild_field, is_dj, reply, require_dj, require_listener, user, words};
use crate::i18n::Say;
use crate::music::queue::LoopMode;
use crate::music::source::format_duration;

const PER_PAGE: usize = 10;

/// Show the queue, a page at a time.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/queue", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn queue(
    ctx: Context<'_>,
    #[description = "Page number"]
    #[min = 1]
    #[max = 1000]
    page: Option<i64>,
) -> Result<(), Error> {
    let guild = guild(ctx)?;
    let page = match page {
        None => 1,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => return Err(user(Say::new("queue.bad_page").with("page", n))),
    };
    let Some(player) = ctx.data().music.existing_player(guild) else {
        return Err(user(Say::new("queue.empty")));
    };
    let p = player.lock().await;
    let Some(current) = p.queue.current() else {
        return Err(user(Say::new("queue.empty")));
    };
    let mut text = words(ctx, Say::new("queue.now").with("title", &current.title));
    text.push('\n');
    let shown = p.queue.page(page, PER_PAGE);
    for (n, t) in &shown.tracks {
        let length = t.duration.map(|d| format!(" ({})", format_duration(d))).unwrap_or_default();
        let _ = writeln!(text, "{n}. {}{length}", t.title);
    }
    let footer = Say::new("queue.footer")
        .with("page", shown.number)
        .with("pages", shown.pages)
        .with("waiting", p.queue.len())
        .with("mode", words(ctx, mode(p.queue.loop_mode)));
    text.push_str(&words(ctx, footer));
    drop(p);
    ctx.say(text).await?;
    Ok(())
}

/// Show the song playing now.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/nowplaying", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn nowplaying(ctx: Context<'_>) -> Result<(), Error> {
    let guild = guild(ctx)?;
    let music = ctx.data().music.clone();
    let Some(player) = music.existing_player(guild) else {
        return Err(user(Say::new("errors.nothing_playing")));
    };
    let p = player.lock().await;
    let Some(track) = p.queue.current().cloned() else {
        return Err(user(Say::new("errors.nothing_playing")));
    };
    let at = music.position(&p).await.map(format_duration).unwrap_or_else(|| "0:00".into());
    let length = track.duration.map(|d| format!(" / {}", format_duration(d))).unwrap_or_default();
    let state = if p.paused { words(ctx, Say::new("queue.paused")) } else { String::new() };
    let said = Say::new("queue.nowplaying")
        .with("title", track.title)
        .with("state", state)
        .with("at", at)
        .with("length", length)
        .with("volume", p.volume)
        .with("mode", words(ctx, mode(p.queue.loop_mode)));
    drop(p);
    reply(ctx, said).await
}

/// Shuffle the songs waiting in the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/shuffle", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn shuffle(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    if p.queue.len() < 2 {
        return Err(user(Say::new("queue.too_few")));
    }
    p.queue.shuffle(|n| fastrand::usize(..n));
    ctx.data().music.preload_if_due(guild, &mut p).await;
    let n = p.queue.len();
    drop(p);
    reply(ctx, Say::new("queue.shuffled").with("count", n)).await
}

/// Remove a song from the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/remove", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn remove(
    ctx: Context<'_>,
    #[description = "Its number in /queue"]
    #[min = 1]
    #[max = 10000]
    position: i64,
) -> Result<(), Error> {
    let guild = require_listener(ctx).await?;
    let player = ctx.data().music.player(guild);
    let removed = {
        let mut p = player.lock().await;
        let index = usize::try_from(position).unwrap_or(0);
        let theirs = p.queue.upcoming().nth(index.wrapping_sub(1)).map(|t| t.requested_by);
        if theirs.is_some_and(|by| by != ctx.author().id.get()) && !is_dj(ctx, guild) {
            return Err(user(Say::new("queue.not_yours")));
        }
        let removed = p.queue.remove(index).map_err(|e| user(Say::from(&e)))?;
        ctx.data().music.preload_if_due(guild, &mut p).await;
        removed
    };
    reply(ctx, Say::new("queue.removed").with("title", removed.title)).await
}

/// Move a song to another place in the queue.
#[poise::command(slash_command, guild_only, rename = "move")]
#[tracing::instrument(name = "/move", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn move_(
    ctx: Context<'_>,
    #[description = "Its number in /queue"]
    #[min = 1]
    #[max = 10000]
    from: i64,
    #[description = "The number it should have"]
    #[min = 1]
    #[max = 10000]
    to: i64,
) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    let (from, to) = (usize::try_from(from).unwrap_or(0), usize::try_from(to).unwrap_or(0));
    let title = p.queue.move_track(from, to).map_err(|e| user(Say::from(&e)))?.title.clone();
    ctx.data().music.preload_if_due(guild, &mut p).await;
    drop(p);
    reply(ctx, Say::new("queue.moved").with("title", title).with("to", to)).await
}

/// Remove every song waiting in the queue (the current one plays on).
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/clear", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn clear(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    let n = p.queue.clear_upcoming();
    if n == 0 {
        return Err(user(Say::new("queue.nothing_waiting")));
    }
    ctx.data().music.preload_if_due(guild, &mut p).await;
    drop(p);
    let said = if n == 1 { Say::new("queue.cleared_one") } else { Say::new("queue.cleared").with("count", n) };
    reply(ctx, said).await
}

/// A loop mode's name, as `/queue` and `/nowplaying` show it.
fn mode(m: LoopMode) -> Say {
    Say::new(match m {
        LoopMode::Off => "queue.mode_off",
        LoopMode::Track => "queue.mode_track",
        LoopMode::Queue => "queue.mode_queue",
    })
}
