//! Presses on the now-playing panel's buttons (`crate::music::panel`): the same rules as
//! the commands they stand for (be in the bot's channel; with a DJ role, only DJs control
//! playback; anyone may skip their own song and vote to skip another's), answered by
//! changing the panel in place, or with a message only the presser sees.

use std::sync::Arc;

use serenity::all::{
    ComponentInteraction, Context as Serenity, CreateInteractionResponse, CreateInteractionResponseMessage,
};
use tracing::warn;

use super::{dj_only, may_control, press_language, skip_vote};
use crate::bot::Bot;
use crate::i18n::Say;
use crate::music::panel::{self, View};
use crate::music::queue::{Ended, LoopMode};

pub async fn pressed(bot: &Arc<Bot>, ctx: &Serenity, press: &ComponentInteraction) {
    let Some(guild) = press.guild_id else { return };
    let music = &bot.music;
    let language = press_language(bot, press);
    let answer = match act(bot, guild, press).await {
        Ok(()) => {
            let player = music.player(guild);
            let p = player.lock().await;
            let view = View::at(&p, music.position(&p).await.unwrap_or_default());
            let update =
                CreateInteractionResponseMessage::new().content(view.content(language)).components(view.buttons());
            CreateInteractionResponse::UpdateMessage(update)
        }
        Err(no) => {
            let text = no.in_language(language);
            CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content(text).ephemeral(true))
        }
    };
    if let Err(e) = press.create_response(&ctx.http, answer).await {
        warn!(error = %e, "could not answer a button press");
    }
}

/// Does what the button says, or says why not.
async fn act(bot: &Arc<Bot>, guild: serenity::all::GuildId, press: &ComponentInteraction) -> Result<(), Say> {
    let music = &bot.music;
    if !music.is_panel(guild, press.message.id).await {
        return Err(Say::new("panel.old"));
    }
    let Some(channel) = music.current_channel(guild).await else {
        return Err(Say::new("errors.not_in_voice"));
    };
    if bot.guilds.seat(guild, press.user.id) != Some(channel) {
        return Err(Say::new("errors.join_me").with("channel", channel));
    }
    let dj = may_control(bot, guild, press.member.as_ref());
    let player = music.player(guild);
    let mut p = player.lock().await;
    let Some(current) = p.queue.current().cloned() else {
        return Err(Say::new("errors.nothing_playing"));
    };
    match press.data.custom_id.as_str() {
        panel::SKIP => {
            let me = (press.user.id.get(), dj);
            skip_vote(bot, guild, Some(channel), &mut p, (current.id, current.requested_by), me)
                .map_err(|voted| voted.with("title", &current.title))?;
            music.advance(guild, &mut p, Ended::Skipped).await;
        }
        _ if !dj => return Err(dj_only(bot, guild)),
        panel::PAUSE => {
            let paused = !p.paused;
            p.set_paused(paused);
        }
        panel::STOP => p.stop(),
        panel::LOOP => {
            p.queue.loop_mode = match p.queue.loop_mode {
                LoopMode::Off => LoopMode::Track,
                LoopMode::Track => LoopMode::Queue,
                LoopMode::Queue => LoopMode::Off,
            };
            music.preload_if_due(guild, &mut p).await;
        }
        panel::SHUFFLE if p.queue.len() < 2 => return Err(Say::new("queue.too_few")),
        panel::SHUFFLE => {
            p.queue.shuffle(|n| fastrand::usize(..n));
            music.preload_if_due(guild, &mut p).await;
        }
        other => warn!(custom_id = other, "a button this bot never made"),
    }
    Ok(())
}
