//! Leaving voice when idle: nothing playing, or nobody but bots left to hear it, for the
//! configured time. One pass a second over the guilds that have a player.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serenity::all::{ChannelId, GuildId, UserId};

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
    let listening = channel.is_some_and(|c| listeners(music, guild, c) > 0);
    let mut p = player.lock().await;
    if p.is_playing() && listening {
        p.idle_since = None;
        return false;
    }
    let since = *p.idle_since.get_or_insert_with(Instant::now);
    // A player that never got a channel is left over from a failed join: forget it too.
    since.elapsed() >= limit
}

/// People (not bots, not us) in the bot's voice channel.
pub fn listeners(music: &MusicService, guild: GuildId, channel: ChannelId) -> usize {
    let me: UserId = music.cache.current_user().id;
    let Some(g) = music.cache.guild(guild) else { return 0 };
    g.voice_states
        .values()
        .filter(|v| v.channel_id == Some(channel) && v.user_id != me)
        .filter(|v| {
            !g.members.get(&v.user_id).map(|m| m.user.bot).or(v.member.as_ref().map(|m| m.user.bot)).unwrap_or(false)
        })
        .count()
}
