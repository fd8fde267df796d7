//! Leaving voice when idle: nothing playing, or nobody but bots left to hear it, for the
//! configured time. One pass a second over the guilds that have a player.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serenity::all::GuildId;

use super::MusicService;

/// Runs until the music service is dropped.
pub async fn sweep(music: Weak<MusicService>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(music) = music.upgrade() else { return };
        let Some(limit) = music.settings.idle_leave else { return };
        for guild in music.guilds_with_players() {
            if is_idle_too_long(&music, guild, limit).await {
                music.leave(guild, "idle").await;
            }
        }
    }
}

async fn is_idle_too_long(music: &Arc<MusicService>, guild: GuildId, limit: Duration) -> bool {
    let Some(player) = music.existing_player(guild) else { return false };
    let channel = music.current_channel(guild).await;
    let listening = channel.is_some_and(|c| music.guilds.listeners(guild, c) > 0);
    let mut p = player.lock().await;
    if p.is_playing() && listening {
        p.idle_since = None;
        return false;
    }
    let since = *p.idle_since.get_or_insert_with(Instant::now);
    // A player that never got a channel is left over from a failed join: forget it too.
    since.elapsed() >= limit
}
