use std::time::Duration;

use super::{Context, Error, guild_field, is_dj, require_dj, require_listener, user};
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
        return Err(user("Nothing is playing."));
    };
    let skipped = current.title;
    let me = ctx.author().id.get();
    let mut passed = String::new();
    if !is_dj(ctx, guild) && current.requested_by != me {
        // Someone else's song, without the DJ role: a majority of the people listening.
        let listeners = channel.map_or(0, |c| ctx.data().guilds.listeners(guild, c));
        let needed = listeners / 2 + 1;
        let votes = p.vote_skip(current.id, me);
        if votes < needed {
            drop(p);
            ctx.say(format!(
                "Voted to skip **{skipped}**: {votes} of {needed} needed. Others listening can /skip too."
            ))
            .await?;
            return Ok(());
        }
        passed = format!("The vote passed ({votes} of {listeners}). ");
    }
    let next = music.advance(guild, &mut p, Ended::Skipped).await;
    drop(p);
    let reply = match next {
        Some(t) => format!("{passed}Skipped **{skipped}**. Now playing **{}**", t.title),
        None => format!("{passed}Skipped **{skipped}**. The queue is empty."),
    };
    ctx.say(reply).await?;
    Ok(())
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
        return Err(user("Nothing has played before this song yet."));
    }
    let now = music.restart_current(guild, &mut p).await;
    drop(p);
    let Some(now) = now else { return Err(user("I couldn't play the previous song.")) };
    ctx.say(format!("Back to **{}**.", now.title)).await?;
    Ok(())
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
        return Err(user("Nothing is playing."));
    };
    // From the start of its source, as a seek to 0 cannot be for a stream that does not
    // seek: the track is started again.
    p.queue.renumber_current(music.next_track_id());
    music.restart_current(guild, &mut p).await;
    drop(p);
    ctx.say(format!("Playing **{title}** again from the start.")).await?;
    Ok(())
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
    p.queue.skip_to(index).map_err(|e| user(super::queue::sentence(&e.to_string())))?;
    let now = music.restart_current(guild, &mut p).await;
    drop(p);
    let Some(now) = now else { return Err(user("I couldn't play that song.")) };
    ctx.say(format!("Skipped to **{}**.", now.title)).await?;
    Ok(())
}

/// Stop playing and clear the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/stop", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn stop(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    ctx.data().music.player(guild).lock().await.stop();
    ctx.say("Stopped, and cleared the queue.").await?;
    Ok(())
}

/// Pause the song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/pause", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn pause(ctx: Context<'_>) -> Result<(), Error> {
    set_paused(ctx, true, "Already paused. Use /resume to carry on.", "Paused.").await
}

/// Resume a paused song.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/resume", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn resume(ctx: Context<'_>) -> Result<(), Error> {
    set_paused(ctx, false, "Nothing is paused.", "Resumed.").await
}

/// `/pause` and `/resume`: `already` when the player is in that state, `done` on success.
async fn set_paused(ctx: Context<'_>, paused: bool, already: &str, done: &str) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    if p.paused == paused {
        return Err(user(already));
    }
    if !p.set_paused(paused) {
        return Err(user("Nothing is playing."));
    }
    drop(p);
    ctx.say(done).await?;
    Ok(())
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
    // Discord enforces min/max, but a client can send anything: check again.
    let Ok(level @ 0..=200) = u16::try_from(level) else {
        return Err(user(format!("The volume goes from 0 to 200; {level} is out of range.")));
    };
    let guild = require_dj(ctx).await?;
    ctx.data().music.player(guild).lock().await.set_volume(level);
    ctx.say(format!("Volume set to {level}%.")).await?;
    Ok(())
}

/// Loop nothing, the current song, or the whole queue.
#[poise::command(slash_command, guild_only, rename = "loop")]
#[tracing::instrument(name = "/loop", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn loop_(ctx: Context<'_>, #[description = "off, track or queue"] mode: LoopMode) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    ctx.data().music.player(guild).lock().await.queue.loop_mode = mode;
    let what = match mode {
        LoopMode::Off => "Looping is off.",
        LoopMode::Track => "Looping the current song.",
        LoopMode::Queue => "Looping the queue.",
    };
    ctx.say(what).await?;
    Ok(())
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
        return Err(user(format!(
            "I couldn't read `{}` as a time; try `90` or `1:30`.",
            position.chars().take(12).collect::<String>()
        )));
    };
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let p = player.lock().await;
    let Some(handle) = p.handle().cloned() else {
        return Err(user("Nothing is playing."));
    };
    if let Some(length) = p.queue.current().and_then(|t| t.duration).filter(|l| to >= *l) {
        return Err(user(format!("That's past the end of the song ({}).", format_duration(length))));
    }
    drop(p);
    // Seeking may re-open a stream; answer Discord first.
    ctx.defer().await?;
    let reply = match tokio::time::timeout(Duration::from_secs(10), handle.seek_async(to)).await {
        Ok(Ok(at)) => format!("Jumped to {}.", format_duration(at)),
        _ => "I couldn't seek in this song (its source doesn't allow it).".to_string(),
    };
    ctx.say(reply).await?;
    Ok(())
}

/// Leave the voice channel and clear the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/leave", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn leave(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    ctx.data().music.leave(guild, "asked to").await;
    ctx.say("Bye!").await?;
    Ok(())
}
