use poise::CreateReply;

use super::{Context, Error, caller_channel, drop_placeholder, guild, guild_field, user};
use crate::music::Track;
use crate::music::source::{classify, format_duration};

/// Play a song, or queue it: a URL (YouTube, SoundCloud, an audio file) or search words.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/play", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn play(
    ctx: Context<'_>,
    #[description = "A URL, or words to search for"]
    #[max_length = 500]
    query: String,
) -> Result<(), Error> {
    let guild = guild(ctx)?;
    // Everything that can be checked at once is checked before deferring, so mistakes get
    // an ephemeral answer rather than a public one.
    let source = classify(&query).map_err(user)?;
    let Some(channel) = caller_channel(ctx, guild).await else {
        return Err(user("Join a voice channel first, then ask me again."));
    };
    let music = ctx.data().music.clone();
    let bot_channel = music.current_channel(guild).await;
    if let Some(current) = bot_channel.filter(|c| *c != channel) {
        let busy =
            music.existing_player(guild).is_some_and(|p| p.try_lock().map(|p| !p.queue.is_empty()).unwrap_or(true));
        if busy {
            return Err(user(format!("I'm playing in <#{current}>; join me there to add songs.")));
        }
    }
    // Looking a source up can take seconds; Discord wants an answer within three.
    ctx.defer().await?;
    let (source, found) = match music.sources.resolve(guild.get(), source).await {
        Ok(r) => r,
        Err(why) => {
            ctx.send(CreateReply::default().content(why)).await?;
            return Ok(());
        }
    };
    if bot_channel != Some(channel)
        && let Err(why) = music.join(guild, channel).await
    {
        // Nothing will play: the caller alone hears why, instead of a public "Playing".
        drop_placeholder(ctx).await;
        return Err(user(why));
    }
    let track = Track {
        id: music.next_track_id(),
        title: found.title.clone(),
        source,
        duration: found.duration,
        requested_by: ctx.author().id.get(),
        text_channel: ctx.channel_id().get(),
    };
    let length = found.duration.map(|d| format!(" ({})", format_duration(d))).unwrap_or_default();
    let reply = match music.enqueue(guild, track).await {
        Ok(0) => format!("Playing **{}**{length}", found.title),
        Ok(n) => format!("Queued **{}**{length} at position {n}", found.title),
        Err(e) => format!("I couldn't queue **{}**: {e}.", found.title),
    };
    ctx.send(CreateReply::default().content(reply)).await?;
    Ok(())
}
