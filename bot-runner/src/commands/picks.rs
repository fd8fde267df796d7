//! Choices a message offers: the results of `/search` in a select menu, and "queue the whole
//! playlist" under a `/play` of a video that belongs to one. Each is kept for a while under
//! an id its component carries (`pick:<id>`); only the member it was offered to may take
//! it, once, and an untaken menu is taken off its message when it expires.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poise::CreateReply;
use serenity::all::{
    ButtonStyle, ComponentInteraction, ComponentInteractionDataKind, Context as Serenity, CreateActionRow,
    CreateButton, CreateInteractionResponse, CreateInteractionResponseMessage, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, EditInteractionResponse, GuildId,
};
use tracing::{Instrument as _, warn};

use super::{Context, Error, caller_channel, guild, guild_field, user, words};
use crate::bot::Bot;
use crate::i18n::Say;
use crate::music::listing::Entry;
use crate::music::source::{Found, Source, format_duration};

/// The id prefix of these components.
pub const PREFIX: &str = "pick:";
/// Offers kept at once; the oldest goes first.
const KEPT: usize = 256;
/// Results `/search` shows.
const RESULTS: usize = 5;

enum Offer {
    Results(Vec<Entry>),
    Playlist(String),
}

struct Pending {
    id: u64,
    guild: GuildId,
    user: u64,
    at: Instant,
    offer: Offer,
}

/// What is on offer, in this process.
#[derive(Default)]
pub struct Picks {
    pending: Mutex<VecDeque<Pending>>,
    next: std::sync::atomic::AtomicU64,
}

impl Picks {
    fn put(&self, guild: GuildId, user: u64, offer: Offer) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut pending = self.pending.lock().expect("picks lock");
        if pending.len() == KEPT {
            pending.pop_front();
        }
        pending.push_back(Pending { id, guild, user, at: Instant::now(), offer });
        id
    }

    /// Takes offer `id` if it is still there and young enough.
    fn take(&self, id: u64, within: Duration) -> Option<Pending> {
        let mut pending = self.pending.lock().expect("picks lock");
        let i = pending.iter().position(|p| p.id == id)?;
        pending.remove(i).filter(|p| p.at.elapsed() <= within)
    }

    fn is_pending(&self, id: u64) -> bool {
        self.pending.lock().expect("picks lock").iter().any(|p| p.id == id)
    }
}

/// Search, and pick one of the top results.
#[poise::command(slash_command, guild_only)]
#[tracing::instrument(name = "/search", skip_all, fields(bot = %ctx.data().name, guild = guild_field(ctx)))]
pub async fn search(
    ctx: Context<'_>,
    #[description = "Words to search for"]
    #[max_length = 200]
    words: String,
) -> Result<(), Error> {
    let guild = guild(ctx)?;
    let words = words.trim().to_string();
    if words.is_empty() {
        return Err(user(Say::new("source.empty")));
    }
    if caller_channel(ctx, guild).await.is_none() {
        return Err(user(Say::new("play.join_first")));
    }
    ctx.defer_ephemeral().await?;
    let results = match ctx.data().music.sources.search(&words, RESULTS).await {
        Ok(r) => r,
        Err(why) => {
            ctx.send(CreateReply::default().content(super::words(ctx, why)).ephemeral(true)).await?;
            return Ok(());
        }
    };
    let mut text = super::words(ctx, Say::new("search.results").with("words", &words));
    let mut options = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let length = r.duration.map(|d| format!(" ({})", format_duration(d))).unwrap_or_default();
        text.push_str(&format!("\n{}. {}{length}", i + 1, r.title));
        let label: String = format!("{}. {}{length}", i + 1, r.title).chars().take(100).collect();
        options.push(CreateSelectMenuOption::new(label, i.to_string()));
    }
    let id = ctx.data().picks.put(guild, ctx.author().id.get(), Offer::Results(results));
    let placeholder = super::words(ctx, Say::new("search.pick"));
    let menu = CreateSelectMenu::new(format!("{PREFIX}{id}"), CreateSelectMenuKind::String { options })
        .placeholder(placeholder);
    let reply = CreateReply::default().content(text).components(vec![CreateActionRow::SelectMenu(menu)]);
    let sent = ctx.send(reply.ephemeral(true)).await?;
    expire_later(ctx, id, sent.message().await?.id);
    Ok(())
}

/// The answer to a `/play` of a video of a playlist: `said`, and a button to queue the list.
pub(super) async fn offer_playlist(ctx: Context<'_>, said: Say, playlist: String) -> Result<(), Error> {
    let guild = guild(ctx)?;
    let id = ctx.data().picks.put(guild, ctx.author().id.get(), Offer::Playlist(playlist));
    let label = words(ctx, Say::new("play.queue_playlist"));
    let button = CreateButton::new(format!("{PREFIX}{id}")).label(label).style(ButtonStyle::Secondary);
    let reply =
        CreateReply::default().content(words(ctx, said)).components(vec![CreateActionRow::Buttons(vec![button])]);
    let sent = ctx.send(reply).await?;
    expire_later(ctx, id, sent.message().await?.id);
    Ok(())
}

/// Takes the offer's component off `message` (the command's answer, a follow-up of its
/// deferral) once it expires untaken.
fn expire_later(ctx: Context<'_>, id: u64, message: serenity::all::MessageId) {
    let poise::Context::Application(a) = ctx else { return };
    let (interaction, http) = (a.interaction.clone(), ctx.serenity_context().http.clone());
    let (picks, expiry) = (ctx.data().clone(), ctx.data().pick_expiry);
    let text = words(ctx, Say::new("search.expired"));
    tokio::spawn(
        async move {
            tokio::time::sleep(expiry).await;
            if picks.picks.is_pending(id) {
                let _ = picks.picks.take(id, Duration::MAX);
                let edit = serenity::all::CreateInteractionResponseFollowup::new().content(text).components(vec![]);
                if let Err(e) = interaction.edit_followup(&http, message, edit).await {
                    warn!(error = %e, "could not take an expired menu off its message");
                }
            }
        }
        .in_current_span(),
    );
}

/// A pick on one of these components.
pub async fn picked(bot: &std::sync::Arc<Bot>, ctx: &Serenity, press: &ComponentInteraction) {
    let Some(guild) = press.guild_id else { return };
    let language = super::press_language(bot, press);
    let private = |say: Say| {
        let message = CreateInteractionResponseMessage::new().content(say.in_language(language)).ephemeral(true);
        CreateInteractionResponse::Message(message)
    };
    let id: u64 = press.data.custom_id.trim_start_matches(PREFIX).parse().unwrap_or(0);
    let owner = bot.picks.pending.lock().expect("picks lock").iter().find(|p| p.id == id).map(|p| p.user);
    if owner.is_some_and(|u| u != press.user.id.get()) {
        let _ = press.create_response(&ctx.http, private(Say::new("search.not_yours"))).await;
        return;
    }
    let Some(pending) = bot.picks.take(id, bot.pick_expiry).filter(|p| p.guild == guild) else {
        let gone = CreateInteractionResponseMessage::new().content(Say::new("search.expired").in_language(language));
        let _ =
            press.create_response(&ctx.http, CreateInteractionResponse::UpdateMessage(gone.components(vec![]))).await;
        return;
    };
    // Looking up and joining take seconds: the message says so at once.
    if let Err(e) = press.create_response(&ctx.http, CreateInteractionResponse::Acknowledge).await {
        warn!(error = %e, "could not acknowledge a pick");
        return;
    }
    let said = match take(bot, guild, press, pending.offer, language).await {
        Ok(said) | Err(said) => said.in_language(language),
    };
    if let Err(e) =
        press.edit_response(&ctx.http, EditInteractionResponse::new().content(said).components(vec![])).await
    {
        warn!(error = %e, "could not answer a pick");
    }
}

/// Queues what was picked in the picker's voice channel.
async fn take(
    bot: &Bot,
    guild: GuildId,
    press: &ComponentInteraction,
    offer: Offer,
    language: &str,
) -> Result<Say, Say> {
    let music = &bot.music;
    let Some(channel) = bot.guilds.seat(guild, press.user.id) else {
        return Err(Say::new("play.join_first"));
    };
    let entries = match offer {
        Offer::Results(results) => {
            let index = match &press.data.kind {
                ComponentInteractionDataKind::StringSelect { values } => values.first().and_then(|v| v.parse().ok()),
                _ => None,
            };
            let entry = index.and_then(|i: usize| results.into_iter().nth(i)).ok_or(Say::new("search.expired"))?;
            vec![entry]
        }
        Offer::Playlist(url) => match music.sources.lookup(guild.get(), Source::Ytdl(url), true).await? {
            Found::Many { entries, .. } => entries,
            Found::One(..) => return Err(Say::new("source.cannot_load")),
        },
    };
    let bot_channel = music.current_channel(guild).await;
    if let Some(current) = bot_channel.filter(|c| *c != channel)
        && music.is_busy(guild).await
    {
        return Err(Say::new("play.busy_now").with("channel", current));
    }
    if bot_channel != Some(channel) {
        music.join(guild, channel).await?;
    }
    let asked = (press.user.id.get(), press.channel_id.get());
    let (queued, first) = music.enqueue_entries(guild, entries, asked).await;
    Ok(match (queued, first) {
        (1, Some((title, 0))) => Say::new("play.playing").with("title", title).with("length", ""),
        (1, Some((title, n))) => Say::new("play.queued").with("title", title).with("length", "").with("position", n),
        (n, _) => {
            let playlist = Say::new("play.a_playlist").in_language(language);
            Say::new("play.playlist_queued").with("count", n).with("playlist", playlist)
        }
    })
}
