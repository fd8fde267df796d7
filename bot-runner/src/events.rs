//! Gateway events the bot acts on, besides commands: READY (register commands), guilds
//! coming and going (MongoDB tracking), and the bot itself being disconnected from voice.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serenity::all::FullEvent;
use tracing::{Instrument as _, info, warn};

use crate::bot::Bot;
use crate::commands::Error;
use crate::registration;
use crate::tracking::GuildEvent;

#[tracing::instrument(name = "event", skip_all, fields(bot = %fw.user_data.name))]
pub async fn handle(fw: poise::FrameworkContext<'_, Arc<Bot>, Error>, event: &FullEvent) -> Result<(), Error> {
    let bot = fw.user_data;
    match event {
        FullEvent::Ready { data_about_bot: ready } => {
            info!(user = %ready.user.name, guilds = ready.guilds.len(), "gateway ready");
            if let Some(present) = bot.guilds.ready(ready.guilds.iter().map(|g| g.id)) {
                track(bot, GuildEvent::Present(present, bot.shard));
            }
            // The index now lists every guild of the shard.
            bot.guilds_known.store(true, Ordering::Relaxed);
            // Once per process: a reconnect's READY needs no new registration.
            if !bot.commands_deployed.load(Ordering::Relaxed) {
                let (bot, http) = (bot.clone(), fw.serenity_context.http.clone());
                tokio::spawn(
                    async move {
                        match registration::deploy(&http, &bot.guild_ids).await {
                            Ok(outcome) => {
                                info!(?outcome, "slash commands");
                                bot.commands_deployed.store(true, Ordering::Relaxed);
                            }
                            Err(e) => warn!(error = %e, "registering slash commands failed"),
                        }
                    }
                    .in_current_span(),
                );
            }
        }
        // serenity's `is_new` and CacheReady come from its cache, which is off: the index
        // tells both.
        FullEvent::GuildCreate { guild, .. } => {
            let created = bot.guilds.guild_create(guild);
            if created.is_new {
                info!(guild = %guild.id, name = %guild.name, "joined a guild");
            }
            track(bot, GuildEvent::Joined(guild.id.get()));
            if let Some(saved) = bot.music.take_restore(guild.id) {
                let music = bot.music.clone();
                tokio::spawn(async move { music.restore(saved).await }.in_current_span());
            }
            if let Some(present) = created.complete {
                track(bot, GuildEvent::Present(present, bot.shard));
            }
        }
        // `unavailable` means an outage, not that the bot was removed.
        FullEvent::GuildDelete { incomplete, .. } => {
            bot.guilds.guild_delete(incomplete.id, incomplete.unavailable);
            if !incomplete.unavailable {
                info!(guild = %incomplete.id, "left a guild");
                bot.music.leave(incomplete.id, "removed from the guild").await;
                track(bot, GuildEvent::Left(incomplete.id.get()));
            }
        }
        // poise runs commands and autocomplete; presses of the panel's buttons are ours.
        FullEvent::InteractionCreate { interaction: serenity::all::Interaction::Component(press) }
            if press.data.custom_id.starts_with("np:") =>
        {
            crate::commands::buttons::pressed(bot, fw.serenity_context, press).await;
        }
        FullEvent::InteractionCreate { interaction: serenity::all::Interaction::Component(press) }
            if press.data.custom_id.starts_with(crate::commands::picks::PREFIX) =>
        {
            crate::commands::picks::picked(bot, fw.serenity_context, press).await;
        }
        FullEvent::VoiceStateUpdate { new, .. } => {
            let me = fw.serenity_context.cache.current_user().id;
            if new.user_id == me
                && new.channel_id.is_none()
                && let Some(guild) = new.guild_id
                && !bot.music.is_own_leave_echo(guild)
            {
                // Someone disconnected the bot: its queue goes with it.
                bot.music.leave(guild, "disconnected from voice").await;
            }
        }
        _ => {}
    }
    Ok(())
}

fn track(bot: &Bot, event: GuildEvent) {
    if let Some(t) = bot.tracking.lock().expect("tracking lock").as_ref() {
        t.send(event);
    }
}
