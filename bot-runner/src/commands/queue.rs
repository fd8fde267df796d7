use std::fmt::Write;

use poise::ChoiceParameter;

use super::{Context, Error, guild, guild_field, is_dj, require_dj, require_listener, user};
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
        Some(n) => return Err(user(format!("Pages start at 1; {n} is not a page."))),
    };
    let Some(player) = ctx.data().music.existing_player(guild) else {
        return Err(user("The queue is empty. Use /play to add a song."));
    };
    let p = player.lock().await;
    let Some(current) = p.queue.current() else {
        return Err(user("The queue is empty. Use /play to add a song."));
    };
    let mut text = format!("Now playing: **{}**\n", current.title);
    let shown = p.queue.page(page, PER_PAGE);
    for (n, t) in &shown.tracks {
        let length = t.duration.map(|d| format!(" ({})", format_duration(d))).unwrap_or_default();
        let _ = writeln!(text, "{n}. {}{length}", t.title);
    }
    let _ = write!(
        text,
        "Page {}/{} · {} waiting · loop: {}",
        shown.number,
        shown.pages,
        p.queue.len(),
        p.queue.loop_mode.name()
    );
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
        return Err(user("Nothing is playing."));
    };
    let p = player.lock().await;
    let Some(track) = p.queue.current().cloned() else {
        return Err(user("Nothing is playing."));
    };
    let at = music.position(&p).await.map(format_duration).unwrap_or_else(|| "0:00".into());
    let length = track.duration.map(|d| format!(" / {}", format_duration(d))).unwrap_or_default();
    let state = if p.paused { " (paused)" } else { "" };
    let text = format!(
        "**{}**{state} · {at}{length} · volume {}% · loop: {}",
        track.title,
        p.volume,
        p.queue.loop_mode.name()
    );
    drop(p);
    ctx.say(text).await?;
    Ok(())
}

/// Shuffle the songs waiting in the queue.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/shuffle", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn shuffle(ctx: Context<'_>) -> Result<(), Error> {
    let guild = require_dj(ctx).await?;
    let player = ctx.data().music.player(guild);
    let mut p = player.lock().await;
    if p.queue.len() < 2 {
        return Err(user("There's nothing to shuffle: fewer than two songs are waiting."));
    }
    p.queue.shuffle(|n| fastrand::usize(..n));
    ctx.data().music.preload_if_due(guild, &mut p).await;
    let n = p.queue.len();
    drop(p);
    ctx.say(format!("Shuffled {n} songs.")).await?;
    Ok(())
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
            return Err(user("You can remove only the songs you added."));
        }
        let removed = p.queue.remove(index).map_err(|e| user(sentence(&e.to_string())))?;
        ctx.data().music.preload_if_due(guild, &mut p).await;
        removed
    };
    ctx.say(format!("Removed **{}**.", removed.title)).await?;
    Ok(())
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
    let title = p.queue.move_track(from, to).map_err(|e| user(sentence(&e.to_string())))?.title.clone();
    ctx.data().music.preload_if_due(guild, &mut p).await;
    drop(p);
    ctx.say(format!("Moved **{title}** to position {to}.")).await?;
    Ok(())
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
        return Err(user("No songs are waiting in the queue."));
    }
    ctx.data().music.preload_if_due(guild, &mut p).await;
    drop(p);
    let songs = if n == 1 { "song" } else { "songs" };
    ctx.say(format!("Cleared {n} {songs} from the queue.")).await?;
    Ok(())
}

/// A queue error as a sentence for the user.
pub(super) fn sentence(error: &str) -> String {
    let mut c = error.chars();
    let capitalised: String = c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default();
    format!("{capitalised}.")
}
