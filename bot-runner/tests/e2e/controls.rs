//! Queue, skip, pause/resume, volume and loop change what the simulator hears.

use std::time::Duration;

use discord_sim::{Bot, DiscordSim, SlashCommand};

use crate::support::*;

async fn say(sim: &DiscordSim, b: &Bot<'_>, c: SlashCommand) -> anyhow::Result<String> {
    let i = b.inject_interaction(c)?;
    Ok(sim.wait_reply(i.id, WAIT).await?.text())
}

/// Waits until `more` seconds of audible audio arrived beyond what had.
async fn hear_more(b: &Bot<'_>, more: f64) -> anyhow::Result<()> {
    let now = b.audio(GUILD).audible_seconds;
    b.wait_for_audio(GUILD, now + more, WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn queued_tracks_play_in_order_and_skip_moves_on() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    assert_eq!(say(&sim, &b, play(&tones.wav(440, 3))).await?, "Playing **3.wav**");
    assert_eq!(say(&sim, &b, play(&tones.wav(660, 30))).await?, "Queued **30.wav** at position 1");
    assert_eq!(say(&sim, &b, play(&tones.wav(880, 30))).await?, "Queued **30.wav** at position 2");
    let queue = say(&sim, &b, cmd("queue")).await?;
    assert!(
        queue.contains("Now playing: **3.wav**") && queue.contains("1. 30.wav") && queue.contains("2. 30.wav"),
        "{queue}"
    );

    b.wait_for_audio(GUILD, 1.0, WAIT).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 440.0), "the first track first");
    // The 3 s track ends by itself; the next in line follows.
    b.wait_for_audio(GUILD, 4.5, WAIT).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 660.0), "then the second");

    assert_eq!(say(&sim, &b, cmd("skip")).await?, "Skipped **30.wav**. Now playing **30.wav**");
    hear_more(&b, 1.5).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 880.0), "skip moved to the third");

    assert_eq!(say(&sim, &b, cmd("stop")).await?, "Stopped, and cleared the queue.");
    let q = b.inject_interaction(cmd("queue"))?;
    let q = sim.wait_reply(q.id, WAIT).await?;
    assert!(q.ephemeral() && q.text().contains("empty"), "{q:?}");
    Ok(())
}

#[tokio::test]
async fn pause_resume_and_volume_are_heard() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    say(&sim, &b, play(&tones.wav(440, 60))).await?;
    b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    let loud = recent_rms(&b.audio_samples(GUILD), 1.0);

    assert_eq!(say(&sim, &b, cmd("pause")).await?, "Paused.");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused_at = b.audio(GUILD).audible_seconds;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = b.audio(GUILD).audible_seconds;
    assert!(after - paused_at < 0.2, "nothing is heard while paused: {paused_at} → {after}");

    assert_eq!(say(&sim, &b, cmd("resume")).await?, "Resumed.");
    hear_more(&b, 1.0).await?;

    assert_eq!(say(&sim, &b, cmd("volume").option("level", 50)).await?, "Volume set to 50%.");
    hear_more(&b, 1.5).await?;
    let quiet = recent_rms(&b.audio_samples(GUILD), 1.0);
    let ratio = quiet / loud;
    assert!((0.4..0.6).contains(&ratio), "half the volume: rms {loud:.3} → {quiet:.3} (×{ratio:.2})");
    Ok(())
}

#[tokio::test]
async fn track_loop_repeats_a_short_track() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    say(&sim, &b, play(&tones.wav(550, 2))).await?;
    assert_eq!(say(&sim, &b, cmd("loop").option("mode", 1)).await?, "Looping the current song.");
    // A 2 s track heard for 6 s was played three times.
    let heard = b.wait_for_audio(GUILD, 6.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 550.0), "{heard:?}");
    let np = say(&sim, &b, cmd("nowplaying")).await?;
    assert!(np.contains("loop: track"), "{np}");

    assert_eq!(say(&sim, &b, cmd("loop").option("mode", 0)).await?, "Looping is off.");
    Ok(())
}
