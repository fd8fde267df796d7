//! The now-playing panel: one message per guild, in the text channel the current track was
//! asked for in, with buttons (pause/resume, skip, stop, loop, shuffle) and a progress line.
//! It is posted or edited when a track starts and when the music stops, and answered in
//! place on each press (`crate::commands::buttons`); it never ticks by itself, so a fleet
//! of bots does not spend Discord's rate limits on progress bars.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateButton, CreateMessage, EditMessage, GuildId, MessageId,
};
use tracing::{Instrument as _, warn};

use super::MusicService;
use super::player::Player;
use super::queue::LoopMode;
use super::source::format_duration;
use crate::i18n::Say;

/// The buttons' ids: `np:<action>`.
pub const PAUSE: &str = "np:pause";
pub const SKIP: &str = "np:skip";
pub const STOP: &str = "np:stop";
pub const LOOP: &str = "np:loop";
pub const SHUFFLE: &str = "np:shuffle";

/// Where each guild's panel is.
pub type Panels = tokio::sync::Mutex<HashMap<GuildId, (ChannelId, MessageId)>>;

/// What the panel shows, read from the player.
pub struct View {
    pub channel: Option<ChannelId>,
    pub title: Option<String>,
    pub position: Duration,
    pub length: Option<Duration>,
    pub paused: bool,
    pub loop_mode: LoopMode,
    pub volume: u16,
    pub waiting: usize,
}

impl View {
    /// The player as it is, `position` into its current track.
    pub fn at(p: &Player, position: Duration) -> Self {
        let current = p.queue.current();
        Self {
            channel: current.map(|t| ChannelId::new(t.text_channel)),
            title: current.map(|t| t.title.clone()),
            position,
            length: current.and_then(|t| t.duration),
            paused: p.paused,
            loop_mode: p.queue.loop_mode,
            volume: p.volume,
            waiting: p.queue.len(),
        }
    }

    /// The panel's text in `language`.
    pub fn content(&self, language: &str) -> String {
        let Some(title) = &self.title else {
            return Say::new("panel.stopped").in_language(language);
        };
        let at = format_duration(self.position);
        let progress = match self.length {
            Some(length) => format!("{} {at} / {}", bar(self.position, length), format_duration(length)),
            None => at,
        };
        let state = Say::new(if self.paused { "panel.paused" } else { "panel.playing" });
        let mode = Say::new(match self.loop_mode {
            LoopMode::Off => "queue.mode_off",
            LoopMode::Track => "queue.mode_track",
            LoopMode::Queue => "queue.mode_queue",
        });
        Say::new("panel.now")
            .with("state", state.in_language(language))
            .with("title", title)
            .with("progress", progress)
            .with("volume", self.volume)
            .with("mode", mode.in_language(language))
            .with("waiting", self.waiting)
            .in_language(language)
    }

    /// The buttons, none once the music stopped.
    pub fn buttons(&self) -> Vec<CreateActionRow> {
        if self.title.is_none() {
            return Vec::new();
        }
        let button = |id: &str, emoji: &str, on: bool| {
            let style = if on { ButtonStyle::Primary } else { ButtonStyle::Secondary };
            CreateButton::new(id).label(emoji).style(style)
        };
        vec![CreateActionRow::Buttons(vec![
            button(PAUSE, if self.paused { "▶" } else { "⏸" }, self.paused),
            button(SKIP, "⏭", false),
            button(STOP, "⏹", false),
            button(LOOP, if self.loop_mode == LoopMode::Track { "🔂" } else { "🔁" }, self.loop_mode != LoopMode::Off),
            button(SHUFFLE, "🔀", false),
        ])]
    }
}

/// `▬▬▬🔘▬▬▬▬▬▬`: where `position` is in `length`.
fn bar(position: Duration, length: Duration) -> String {
    const CELLS: usize = 12;
    let at = if length.is_zero() { 0.0 } else { position.as_secs_f64() / length.as_secs_f64() };
    let knob = ((at.clamp(0.0, 1.0) * (CELLS - 1) as f64).round()) as usize;
    (0..CELLS).map(|i| if i == knob { '🔘' } else { '▬' }).collect()
}

impl MusicService {
    /// Shows what plays now on `guild`'s panel: a new message where the current track was
    /// asked for (the old one deleted), or the same one edited. Sent from a task of its own,
    /// in order, so the player's lock is not held over Discord's answer. Called as a track
    /// starts or the music stops, so the mixer is not asked where the track is (at its start,
    /// on the path of every track change).
    pub fn refresh_panel(self: &Arc<Self>, guild: GuildId, p: &Player) {
        let view = View::at(p, Duration::ZERO);
        let music = self.clone();
        let task = async move {
            let language = music.language(guild);
            let (content, buttons) = (view.content(&language), view.buttons());
            let mut panels = music.panels.lock().await;
            let shown = panels.get(&guild).copied();
            // The same channel (or the music stopped): edited in place.
            if let Some((channel, message)) = shown.filter(|(c, _)| view.channel.is_none_or(|w| w == *c)) {
                let edit = EditMessage::new().content(content).components(buttons);
                if let Err(e) = channel.edit_message(&music.http, message, edit).await {
                    warn!(%guild, error = %e, "could not update the now-playing message");
                    panels.remove(&guild);
                }
            } else if let Some(channel) = view.channel {
                if let Some((old_channel, old_message)) = shown {
                    let _ = old_channel.delete_message(&music.http, old_message).await;
                }
                let sent = channel.send_message(&music.http, CreateMessage::new().content(content).components(buttons));
                match sent.await {
                    Ok(m) => {
                        panels.insert(guild, (channel, m.id));
                    }
                    Err(e) => {
                        warn!(%guild, error = %e, "could not post the now-playing message");
                        panels.remove(&guild);
                    }
                }
            }
        };
        tokio::spawn(task.in_current_span());
    }

    /// Whether `message` is `guild`'s panel (a press on an older one changes nothing).
    pub async fn is_panel(&self, guild: GuildId, message: MessageId) -> bool {
        self.panels.lock().await.get(&guild).is_some_and(|(_, m)| *m == message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(title: Option<&str>) -> View {
        View {
            channel: Some(ChannelId::new(5)),
            title: title.map(str::to_string),
            position: Duration::from_secs(30),
            length: Some(Duration::from_secs(120)),
            paused: false,
            loop_mode: LoopMode::Queue,
            volume: 80,
            waiting: 2,
        }
    }

    #[test]
    fn the_panel_shows_the_track_where_it_is_and_the_buttons_for_it() {
        let v = view(Some("Song"));
        let text = v.content("en");
        assert!(text.contains("**Song**") && text.contains("0:30 / 2:00") && text.contains("loop: queue"), "{text}");
        assert!(text.contains("▬▬▬🔘▬"), "a quarter of the way: {text}");
        let rows = serde_json::to_value(v.buttons()).unwrap();
        let ids: Vec<&str> =
            rows[0]["components"].as_array().unwrap().iter().map(|b| b["custom_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [PAUSE, SKIP, STOP, LOOP, SHUFFLE]);
        assert_ne!(v.content("th"), text);
        let stopped = view(None);
        assert!(stopped.buttons().is_empty());
        assert_eq!(stopped.content("en"), Say::new("panel.stopped").in_language("en"));
        assert_eq!(bar(Duration::ZERO, Duration::ZERO).chars().next(), Some('🔘'));
        assert_eq!(bar(Duration::from_secs(9), Duration::from_secs(3)).chars().last(), Some('🔘'));
    }
}
