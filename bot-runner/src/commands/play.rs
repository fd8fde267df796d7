use musicbot_api::handoff::{HandoffRequest, Invite};
use poise::CreateReply;
use serenity::all::{ChannelId, GuildId};

use super::{Context, Error, caller_channel, drop_placeholder, guild, guild_field, require_dj, user};
use crate::handoff::{self, FleetLink, Offered};
use crate::music::Track;
use crate::music::source::{Resolved, Source, classify, format_duration};

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
            let Some(link) = ctx.data().fleet_link.clone() else {
                return Err(user(format!("I'm playing in <#{current}>; join me there to add songs.")));
            };
            return hand_off(ctx, &link, guild, channel, Some(current), query).await;
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
    // From here until the track is queued, a hand-off from the fleet must not take the bot
    // to another channel of this guild (it waits for this turn, then finds the bot busy);
    // one may have done so during the lookup.
    let turn = music.handoff_turn(guild);
    let turn = turn.lock().await;
    let bot_channel = music.current_channel(guild).await;
    if let Some(current) = bot_channel.filter(|c| *c != channel)
        && music.is_busy(guild).await
    {
        drop_placeholder(ctx).await;
        return Err(user(format!("I'm playing in <#{current}> now; join me there to add songs.")));
    }
    if bot_channel != Some(channel)
        && let Err(why) = music.join(guild, channel).await
    {
        // This bot cannot join the caller's channel (no permission there, a voice server
        // that refuses it): another bot of the fleet may.
        if let Some(link) = ctx.data().fleet_link.clone() {
            drop(turn);
            return hand_off(ctx, &link, guild, channel, None, query).await;
        }
        // Nothing will play: the caller alone hears why, instead of a public "Playing".
        drop_placeholder(ctx).await;
        return Err(user(why));
    }
    let length = length_of(&found);
    let reply = match music.enqueue(guild, track(ctx, source, &found)).await {
        Ok(0) => format!("Playing **{}**{length}", found.title),
        Ok(n) => format!("Queued **{}**{length} at position {n}", found.title),
        Err(e) => format!("I couldn't queue **{}**: {e}.", found.title),
    };
    ctx.send(CreateReply::default().content(reply)).await?;
    Ok(())
}

/// Put a song at the front of the queue, to play after the current one.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/playnext", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn playnext(
    ctx: Context<'_>,
    #[description = "A URL, or words to search for"]
    #[max_length = 500]
    query: String,
) -> Result<(), Error> {
    let source = classify(&query).map_err(user)?;
    // Only where the bot plays already: to start somewhere, /play (which can hand off).
    let guild = require_dj(ctx).await?;
    let music = ctx.data().music.clone();
    ctx.defer().await?;
    let (source, found) = match music.sources.resolve(guild.get(), source).await {
        Ok(r) => r,
        Err(why) => {
            ctx.send(CreateReply::default().content(why)).await?;
            return Ok(());
        }
    };
    let length = length_of(&found);
    let reply = match music.enqueue_next(guild, track(ctx, source, &found)).await {
        Ok(0) => format!("Playing **{}**{length}", found.title),
        Ok(_) => format!("**{}**{length} plays next", found.title),
        Err(e) => format!("I couldn't queue **{}**: {e}.", found.title),
    };
    ctx.send(CreateReply::default().content(reply)).await?;
    Ok(())
}

/// The queue's track for what `ctx`'s caller asked, once looked up.
fn track(ctx: Context<'_>, source: Source, found: &Resolved) -> Track {
    Track {
        id: ctx.data().music.next_track_id(),
        title: found.title.clone(),
        source,
        duration: found.duration,
        requested_by: ctx.author().id.get(),
        text_channel: ctx.channel_id().get(),
    }
}

/// " (3:25)", or nothing when the length is not known.
fn length_of(found: &Resolved) -> String {
    found.duration.map(|d| format!(" ({})", format_duration(d))).unwrap_or_default()
}

/// Busy in `current` (or, without one, unable to join `channel`): another bot of the fleet
/// takes the request for `channel`, or the caller is told who is busy where and whom to
/// invite.
async fn hand_off(
    ctx: Context<'_>,
    link: &FleetLink,
    guild: GuildId,
    channel: ChannelId,
    current: Option<ChannelId>,
    query: String,
) -> Result<(), Error> {
    let asked_at_ms = handoff::now_ms();
    let bot = ctx.data();
    bot.metrics.handoff("requested");
    // Asking the fleet can take as long as a lookup and a voice join.
    ctx.defer().await?;
    let request = HandoffRequest {
        id: ctx.id().to_string(),
        to: String::new(),
        guild_id: guild.to_string(),
        voice_channel_id: channel.to_string(),
        text_channel_id: ctx.channel_id().to_string(),
        user_id: ctx.author().id.to_string(),
        query,
        from: bot.name.clone(),
        from_client_id: bot.client_id().to_string(),
        asked_at_ms,
    };
    let reply = match handoff::offer(bot, link, request).await {
        Offered::Taken { bot: taker, position: 0, title } => {
            format!("**{taker}** will play **{title}** in <#{channel}>.")
        }
        Offered::Taken { bot: taker, position, title } => {
            format!("**{taker}** queued **{title}** in <#{channel}> at position {position}.")
        }
        Offered::Failed { bot: taker } => {
            drop_placeholder(ctx).await;
            return Err(user(format!(
                "**{taker}** was to play it in <#{channel}> but did not answer. Please try again."
            )));
        }
        Offered::NoneFree { busy, refused, invite } => {
            drop_placeholder(ctx).await;
            return Err(user(none_free(&bot.name, (current, channel), &busy, &refused, invite.as_ref())));
        }
    };
    ctx.send(CreateReply::default().content(reply)).await?;
    Ok(())
}

/// The answer when no bot of the fleet could take a request: who plays where, whom to invite.
fn none_free(
    me: &str,
    (current, wanted): (Option<ChannelId>, ChannelId),
    busy: &[(String, String)],
    refused: &[String],
    invite: Option<&Invite>,
) -> String {
    let mut playing: Vec<String> = current.iter().map(|c| format!("**{me}** in <#{c}>")).collect();
    playing.extend(busy.iter().map(|(bot, channel)| format!("**{bot}** in <#{channel}>")));
    let mut text = match (current, playing.is_empty()) {
        (Some(_), _) => format!("Every music bot here is busy: {}.", playing.join(", ")),
        (None, true) => format!("I can't join <#{wanted}>, and no other bot could take it."),
        (None, false) => {
            format!("I can't join <#{wanted}>, and every other music bot here is busy: {}.", playing.join(", "))
        }
    };
    if let Some(why) = refused.first() {
        text.push_str(&format!(" Another could not take it: {why}"));
    }
    match invite {
        Some(invite) => {
            text.push_str(&format!(" Invite **{}** to play here too: <{}>", invite.name, invite.invite_url))
        }
        None => text.push_str(" Try again when one of them is free."),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_without_a_free_bot_names_the_busy_channels_and_whom_to_invite() {
        let delta = Invite {
            name: "Delta".into(),
            client_id: "44".into(),
            invite_url: "https://discord.com/oauth2/authorize?client_id=44&guild_id=9".into(),
        };
        let busy = [("Bravo".to_string(), "12".to_string())];
        let here = (Some(ChannelId::new(11)), ChannelId::new(13));
        let text = none_free("Alpha", here, &busy, &[], Some(&delta));
        assert!(text.starts_with("Every music bot here is busy: **Alpha** in <#11>, **Bravo** in <#12>."), "{text}");
        assert!(text.ends_with(&format!("Invite **Delta** to play here too: <{}>", delta.invite_url)), "{text}");
        let text = none_free("Alpha", here, &[], &[], None);
        assert!(text.ends_with("Try again when one of them is free."), "{text}");
        // Alpha could not join #13 itself.
        let text = none_free("Alpha", (None, ChannelId::new(13)), &busy, &[], None);
        assert!(text.starts_with("I can't join <#13>, and every other music bot here is busy: **Bravo** in <#12>."));
        let text = none_free("Alpha", (None, ChannelId::new(13)), &[], &[], Some(&delta));
        assert!(text.starts_with("I can't join <#13>, and no other bot could take it."), "{text}");
    }
}
