use std::time::Duration;

use super::{Context, Error, guild_field, is_dj, reply, require_dj, require_listener, skip_vote, user};
use crate::i18n::Say;
use crate::music::queue::{Ended, LoopMode};
use crate::music::source::{format_duration, parse_position};

/// Skip to the next song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/skip", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn skip(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_listener(ctx).await?;
    let music = ctx.data().music.clone();
    let channel = music.current_channel(guild).await;
    let player = music.player(guild);
    let mut p = player.lock().await;
    let Some(current) = p.queue.current().cloned() else {
        return Err(user(Say::new("errors.nothing_playing")));
    };
    let skipped = current.title;
    let me = (ctx.author().id.get(), is_dj(ctx, guild));
    let passed = match skip_vote(ctx.data(), guild, channel, &mut p, (current.id, current.requested_by), me) {
        Ok(passed) => passed,
        Err(voted) => {
            drop(p);
            return reply(ctx, voted.with("title", &skipped)).await;
        }
    };
    let next = music.advance(guild, &mut p, Ended::Skipped).await;
    drop(p);
    let said = match next {
        Some(t) => Say::new("control.skipped_next").with("next", t.title),
        None => Say::new("control.skipped_end"),
    };
    let passed = passed.map(|p| super::words(ctx, p)).unwrap_or_default();
    reply(ctx, said.with("skipped", skipped).with("passed", passed)).await
}

/// Go back to the song that played before.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/previous", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn previous(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let music = ctx.data().music.clone();
    let player = music.player(guild);
    let mut p = player.lock().await;
    if p.queue.previous().is_none() {
        return Err(user(Say::new("control.no_previous")));
    }
    let now = music.restart_current(guild, &mut p).await;
    drop(p);
    let Some(now) = now else { return Err(user(Say::new("control.previous_failed"))) };
    reply(ctx, Say::new("control.back_to").with("title", now.title)).await
}

/// Play the current song again from its start.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/replay", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn replay(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let music = ctx.data().music.clone();
    let player = music.player(guild);
    let mut p = player.lock().await;
    let Some(title) = p.queue.current().map(|t| t.title.clone()) else {
        return Err(user(Say::new("errors.nothing_playing")));
    };
    // From the start of its source, as a seek to 0 cannot be for a stream that does not
    // seek: the track is started again.
    p.queue.renumber_current(music.next_track_id());
    music.restart_current(guild, &mut p).await;
    drop(p);
    reply(ctx, Say::new("control.replaying").with("title", title)).await
}

/// Skip to a song in the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/skipto", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn skipto(
    ctx: Context<'_>,
    #[description = "Its number in /queue"]
    #[min = 1]
    #[max = 10000]
    position: i64,
) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let music = ctx.data().music.clone();
    let player = music.player(guild);
    let mut p = player.lock().await;
    let index = usize::try_from(position).unwrap_or(0);
    p.queue.skip_to(index).map_err(|e| user(Say::from(&e)))?;
    let now = music.restart_current(guild, &mut p).await;
    drop(p);
    let Some(now) = now else { return Err(user(Say::new("control.skipto_failed"))) };
    reply(ctx, Say::new("control.skipped_to").with("title", now.title)).await
}

/// Stop playing and clear the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/stop", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn stop(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let music = ctx.data().music.clone();
    let player = music.player(guild);
    let mut p = player.lock().await;
    p.stop();
    music.refresh_panel(guild, &p);
    drop(p);
    reply(ctx, Say::new("control.stopped")).await
}

/// Pause the song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/pause", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn pause(ctx: Context<'_>) -> Result<(), Error> {
    set_paused(ctx, true, "control.already_paused", "control.paused").await
}

/// Resume a paused song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/resume", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn resume(ctx: Context<'_>) -> Result<(), Error> {
    set_paused(ctx, false, "control.not_paused", "control.resumed").await
}

/// `/pause` and `/resume`: `already` when the player is in that state, `done` on success.
async fn set_paused(ctx: Context<'_>, paused: bool, already: &'static str, done: &'static str) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    if p.paused == paused {
        return Err(user(Say::new(already)));
    }
    if !p.set_paused(paused) {
        return Err(user(Say::new("errors.nothing_playing")));
    }
    drop(p);
    reply(ctx, Say::new(done)).await
}

/// A volume option's value, 0–200 %. Discord enforces the option's min and max, but a client
/// can send anything: checked again.
pub(super) fn volume_level(level: i64) -> Result<u16, Error> {
    match u16::try_from(level) {
        Ok(level @ 0..=200) => Ok(level),
        _ => Err(user(Say::new("control.volume_range").with("level", level))),
    }
}

/// Set the volume, in percent.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/volume", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn volume(
    ctx: Context<'_>,
    #[description = "0 to 200"]
    #[min = 0]
    #[max = 200]
    level: i64,
) -> Result<(), Error> {
    let level = volume_level(level)?;
    let guild = require_dj(ctx).await?;
    ctx.data().music.player(guild).lock().await.set_volume(level);
    reply(ctx, Say::new("control.volume_set").with("level", level)).await
}

/// Loop nothing, the current song, or the whole queue.
#[poise::command(slash_command, guild_only, rename = "loop")]
#[tracing::instrument(name = "/loop", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn loop_(ctx: Context<'_>, #[description = "off, track or queue"] mode: LoopMode) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    ctx.data().music.player(guild).lock().await.queue.loop_mode = mode;
    let what = match mode {
        LoopMode::Off => "control.loop_off",
        LoopMode::Track => "control.loop_track",
        LoopMode::Queue => "control.loop_queue",
    };
    reply(ctx, Say::new(what)).await
}

/// Jump to a position in the song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/seek", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn seek(
    ctx: Context<'_>,
    #[description = "Seconds, or m:ss"]
    #[max_length = 12]
    position: String,
) -> Result<(), Error> {
    let Some(to) = parse_position(&position) else {
        let input: String = position.chars().take(12).collect();
        return Err(user(Say::new("control.seek_unreadable").with("input", input)));
    };
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let p = player.lock().await;
    let Some(handle) = p.handle().cloned() else {
        return Err(user(Say::new("errors.nothing_playing")));
    };
    if let Some(length) = p.queue.current().and_then(|t| t.duration).filter(|l| to >= *l) {
        return Err(user(Say::new("control.seek_past_end").with("length", format_duration(length))));
    }
    drop(p);
    // Seeking may re-open a stream; answer Discord first.
    ctx.defer().await?;
    let said = match tokio::time::timeout(Duration::from_secs(10), handle.seek_async(to)).await {
        Ok(Ok(at)) => Say::new("control.seek_done").with("at", format_duration(at)),
        _ => Say::new("control.seek_cannot"),
    };
    reply(ctx, said).await
}

/// Leave the voice channel and clear the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/leave", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn leave(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    ctx.data().music.leave(guild, "asked to").await;
    reply(ctx, Say::new("control.bye")).await
}
