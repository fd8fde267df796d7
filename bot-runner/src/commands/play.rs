use musicbot_api::handoff::{HandoffRequest, Invite};
use serenity::all::{ChannelId, GuildId};

use super::{Context, Error, caller_channel, drop_placeholder, guild, guild_field, language, reply, require_dj, user};
use crate::handoff::{self, FleetLink, Offered};
use crate::i18n::Say;
use crate::music::Track;
use crate::music::listing::Entry;
use crate::music::services::{self, Link, Service};
use crate::music::source::{self, Found, Resolved, Source, classify, format_duration};

/// Play a song, or queue it: a URL (YouTube, SoundCloud, an audio file) or search words.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/play", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn play(
    ctx: Context<'_>,
    #[description = "A URL, or words to search for"]
    #[max_length = 500]
    #[autocomplete = "known_tracks"]
    query: String,
) -> Result<(), Error> {
    let guild = guild(ctx)?;
    // Everything that can be checked at once is checked before deferring, so mistakes get
    // an ephemeral answer rather than a public one.
    let source = classify(&query).map_err(user)?;
    let service = service_link(&source)?;
    let Some(channel) = caller_channel(ctx, guild).await else {
        return Err(user(Say::new("play.join_first")));
    };
    let music = ctx.data().music.clone();
    let bot_channel = music.current_channel(guild).await;
    if let Some(current) = bot_channel.filter(|c| *c != channel) {
        let busy =
            music.existing_player(guild).is_some_and(|p| p.try_lock().map(|p| !p.queue.is_empty()).unwrap_or(true));
        if busy {
            let Some(link) = ctx.data().fleet_link.clone() else {
                return Err(user(Say::new("play.busy_there").with("channel", current)));
            };
            return hand_off(ctx, &link, guild, channel, Some(current), query).await;
        }
    }
    // Looking a source up can take seconds; Discord wants an answer within three.
    ctx.defer().await?;
    // A video of a playlist plays alone; its playlist is offered.
    let playlist = source::playlist_of(&query);
    let (source, matched) = match service {
        Some((service, link)) => match music.sources.name_track(service, &link).await {
            Ok(named) => (Source::Search(named.words()), Some((service, named))),
            Err(why) => return reply(ctx, why).await,
        },
        None => (source, None),
    };
    let found = match music.sources.lookup(guild.get(), source, playlist.is_none()).await {
        Ok(r) => r,
        Err(why) => return reply(ctx, why).await,
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
        return Err(user(Say::new("play.busy_now").with("channel", current)));
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
    let (source, found) = match found {
        Found::One(source, found) => (source, found),
        Found::Many { title, entries } => return queue_playlist(ctx, guild, title, entries).await,
    };
    let length = length_of(&found);
    let said = match music.enqueue(guild, track(ctx, source, &found)).await {
        Ok(0) => Say::new("play.playing").with("length", length),
        Ok(n) => Say::new("play.queued").with("length", length).with("position", n),
        Err(e) => Say::new("play.cannot_queue").with("error", super::words(ctx, Say::from(&e))),
    };
    let mut said = said.with("title", &found.title);
    if let Some((service, named)) = matched {
        let note = Say::new("services.matched").with("service", service.name()).with("named", named_text(&named));
        let text = format!("{} {}", super::words(ctx, said), super::words(ctx, note));
        said = Say::new("common.text").with("text", text);
    }
    match playlist {
        Some(list) => super::picks::offer_playlist(ctx, said, list).await,
        None => reply(ctx, said).await,
    }
}

/// A Spotify, Apple Music or Deezer link: its track's service and link, to search for by
/// its page's metadata; its albums and playlists are refused at once.
fn service_link(source: &Source) -> Result<Option<(Service, reqwest::Url)>, Error> {
    let Source::Ytdl(url) = source else { return Ok(None) };
    let Ok(url) = reqwest::Url::parse(url) else { return Ok(None) };
    match services::link_of(&url) {
        Some(Link::Track(service)) => Ok(Some((service, url))),
        Some(Link::Collection(service)) => Err(user(Say::new("services.collection").with("service", service.name()))),
        None => Ok(None),
    }
}

/// "«Song» by Artist", as a match is labelled.
fn named_text(named: &services::Named) -> String {
    match &named.artist {
        Some(artist) => format!("«{}» — {artist}", named.title),
        None => format!("«{}»", named.title),
    }
}

/// Queues a playlist's tracks, as many as the queue takes, each resolved when it plays.
pub(super) async fn queue_playlist(
    ctx: Context<'_>,
    guild: GuildId,
    title: Option<String>,
    entries: Vec<Entry>,
) -> Result<(), Error> {
    let asked = (ctx.author().id.get(), ctx.channel_id().get());
    let (queued, first) = ctx.data().music.enqueue_entries(guild, entries, asked).await;
    let name = title.unwrap_or_else(|| super::words(ctx, Say::new("play.a_playlist")));
    let said = match first {
        Some((now, 0)) => Say::new("play.playlist_playing").with("now", now),
        _ => Say::new("play.playlist_queued"),
    };
    reply(ctx, said.with("count", queued).with("playlist", name)).await
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
        Err(why) => return reply(ctx, why).await,
    };
    let length = length_of(&found);
    let said = match music.enqueue_next(guild, track(ctx, source, &found)).await {
        Ok(0) => Say::new("play.playing").with("length", length),
        Ok(_) => Say::new("play.plays_next").with("length", length),
        Err(e) => Say::new("play.cannot_queue").with("error", super::words(ctx, Say::from(&e))),
    };
    reply(ctx, said.with("title", &found.title)).await
}

/// Choices while `/play` is typed: tracks of this server's queue and history whose title
/// has the words typed. Answered from memory, within Discord's 3 s and without a search per
/// keystroke; a choice is the track's link when it fits, else its title (a search).
async fn known_tracks(ctx: Context<'_>, partial: &str) -> serenity::all::CreateAutocompleteResponse {
    let mut choices = Vec::new();
    if let Some(player) = ctx.guild_id().and_then(|g| ctx.data().music.existing_player(g)) {
        let p = player.lock().await;
        let partial = partial.trim().to_lowercase();
        let known = p.queue.history().rev().chain(p.queue.current()).chain(p.queue.upcoming());
        let mut seen = std::collections::HashSet::new();
        for t in known.filter(|t| t.title.to_lowercase().contains(&partial)) {
            let value = match &t.source {
                Source::Http(url) | Source::Ytdl(url) | Source::Search(url) if url.len() <= 100 => url.clone(),
                _ => t.title.chars().take(100).collect(),
            };
            if seen.insert(value.clone()) {
                let name: String = t.title.chars().take(100).collect();
                choices.push(serenity::all::AutocompleteChoice::new(name, value));
            }
            if choices.len() == 25 {
                break;
            }
        }
    }
    serenity::all::CreateAutocompleteResponse::new().set_choices(choices)
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
        language: language(ctx).to_string(),
    };
    let said = match handoff::offer(bot, link, request).await {
        Offered::Taken { bot: taker, position: 0, title } => {
            Say::new("handoff.will_play").with("bot", taker).with("title", title)
        }
        Offered::Taken { bot: taker, position, title } => {
            Say::new("handoff.queued").with("bot", taker).with("title", title).with("position", position)
        }
        Offered::Failed { bot: taker } => {
            drop_placeholder(ctx).await;
            return Err(user(Say::new("handoff.no_answer").with("bot", taker).with("channel", channel)));
        }
        Offered::NoneFree { busy, refused, invite } => {
            drop_placeholder(ctx).await;
            let text = none_free(language(ctx), &bot.name, (current, channel), &busy, &refused, invite.as_ref());
            return Err(user(Say::new("common.text").with("text", text)));
        }
    };
    reply(ctx, said.with("channel", channel)).await
}

/// The answer when no bot of the fleet could take a request: who plays where, whom to invite.
fn none_free(
    language: &str,
    me: &str,
    (current, wanted): (Option<ChannelId>, ChannelId),
    busy: &[(String, String)],
    refused: &[String],
    invite: Option<&Invite>,
) -> String {
    let busy_in = |bot: &str, channel: &dyn std::fmt::Display| {
        Say::new("handoff.busy_in").with("bot", bot).with("channel", channel).in_language(language)
    };
    let mut playing: Vec<String> = current.iter().map(|c| busy_in(me, c)).collect();
    playing.extend(busy.iter().map(|(bot, channel)| busy_in(bot, channel)));
    let playing = playing.join(", ");
    let mut says = vec![match current {
        Some(_) => Say::new("handoff.all_busy").with("playing", &playing),
        None if playing.is_empty() => Say::new("handoff.cannot_join_alone").with("channel", wanted),
        None => Say::new("handoff.cannot_join_busy").with("channel", wanted).with("playing", &playing),
    }];
    if let Some(why) = refused.first() {
        says.push(Say::new("handoff.refused").with("why", why));
    }
    says.push(match invite {
        Some(invite) => Say::new("handoff.invite").with("bot", &invite.name).with("url", &invite.invite_url),
        None => Say::new("handoff.try_later"),
    });
    says.iter().map(|s| s.in_language(language)).collect()
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
        let text = none_free("en", "Alpha", here, &busy, &[], Some(&delta));
        assert!(text.starts_with("Every music bot here is busy: **Alpha** in <#11>, **Bravo** in <#12>."), "{text}");
        assert!(text.ends_with(&format!("Invite **Delta** to play here too: <{}>", delta.invite_url)), "{text}");
        let text = none_free("en", "Alpha", here, &[], &[], None);
        assert!(text.ends_with("Try again when one of them is free."), "{text}");
        // Alpha could not join #13 itself.
        let text = none_free("en", "Alpha", (None, ChannelId::new(13)), &busy, &[], None);
        assert!(text.starts_with("I can't join <#13>, and every other music bot here is busy: **Bravo** in <#12>."));
        let text = none_free("en", "Alpha", (None, ChannelId::new(13)), &[], &[], Some(&delta));
        assert!(text.starts_with("I can't join <#13>, and no other bot could take it."), "{text}");
    }
}
