//! Queue, skip, pause/resume, volume, loop, previous, play-next, move, skip-to, replay and
//! clear change what the simulator hears.

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

/// Answers that only the caller sees (a mistake): (ephemeral, text).
async fn told(sim: &DiscordSim, b: &Bot<'_>, c: SlashCommand) -> anyhow::Result<(bool, String)> {
    let i = b.inject_interaction(c)?;
    let r = sim.wait_reply(i.id, WAIT).await?;
    Ok((r.ephemeral(), r.text()))
}

/// Waits until the tone heard for the last second is `hz`.
async fn hear_tone(b: &Bot<'_>, hz: f64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let heard = recent_hz(&b.audio_samples(GUILD), 1.0);
        if near(heard, hz) {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{hz} Hz never heard; last {heard:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn previous_playnext_move_skipto_replay_and_clear_change_what_is_heard() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    // Lengths tell the tracks apart in replies (a tone file is named by its seconds).
    let (first, second, third, fourth) =
        (tones.wav(440, 31), tones.wav(550, 32), tones.wav(660, 33), tones.wav(770, 34));

    assert_eq!(
        told(&sim, &b, cmd("previous")).await?,
        (true, "I'm not in a voice channel. Use /play to start.".into())
    );
    assert_eq!(say(&sim, &b, play(&first)).await?, "Playing **31.wav**");
    let (ephemeral, nothing) = told(&sim, &b, cmd("previous")).await?;
    assert!(ephemeral && nothing.contains("Nothing has played before"), "{nothing}");
    assert_eq!(say(&sim, &b, play(&second)).await?, "Queued **32.wav** at position 1");
    assert_eq!(say(&sim, &b, play(&third)).await?, "Queued **33.wav** at position 2");
    assert_eq!(say(&sim, &b, cmd("playnext").option("query", fourth.as_str())).await?, "**34.wav** plays next");
    assert_eq!(say(&sim, &b, cmd("move").option("from", 3).option("to", 1)).await?, "Moved **33.wav** to position 1.");
    let queue = say(&sim, &b, cmd("queue")).await?;
    assert!(queue.contains("1. 33.wav\n2. 34.wav\n3. 32.wav"), "{queue}");
    for (c, want) in [
        (cmd("move").option("from", 1).option("to", 9), "There is no track 9 in the queue (it has 3)."),
        (cmd("skipto").option("position", 0), "There is no track 0 in the queue (it has 3)."),
    ] {
        assert_eq!(told(&sim, &b, c).await?, (true, want.to_string()));
    }
    hear_tone(&b, 440.0).await?;

    assert_eq!(say(&sim, &b, cmd("skipto").option("position", 2)).await?, "Skipped to **34.wav**.");
    hear_tone(&b, 770.0).await?;
    assert_eq!(say(&sim, &b, cmd("previous")).await?, "Back to **31.wav**.");
    hear_tone(&b, 440.0).await?;
    let queue = say(&sim, &b, cmd("queue")).await?;
    assert!(queue.contains("1. 34.wav\n2. 32.wav") && !queue.contains("33.wav"), "skipped over: {queue}");

    // /replay starts the track again: its first seconds are heard twice.
    b.wait_for_audio(GUILD, b.audio(GUILD).audible_seconds + 3.0, WAIT).await?;
    let before = b.audio(GUILD).audible_seconds;
    assert_eq!(say(&sim, &b, cmd("replay")).await?, "Playing **31.wav** again from the start.");
    let np = say(&sim, &b, cmd("nowplaying")).await?;
    assert!(np.starts_with("**31.wav** · 0:0"), "back at the start: {np}");
    hear_more(&b, 1.0).await?;
    assert!(b.audio(GUILD).audible_seconds > before, "it plays on");
    hear_tone(&b, 440.0).await?;

    assert_eq!(say(&sim, &b, cmd("clear")).await?, "Cleared 2 songs from the queue.");
    hear_more(&b, 1.0).await?;
    hear_tone(&b, 440.0).await?;
    let (ephemeral, empty) = told(&sim, &b, cmd("clear")).await?;
    assert!(ephemeral && empty.contains("No songs are waiting"), "{empty}");
    let queue = say(&sim, &b, cmd("queue")).await?;
    assert!(queue.contains("Now playing: **31.wav**") && queue.contains("0 waiting"), "{queue}");
    Ok(())
}

/// The now-playing panel: one message with buttons, each press heard and shown in place; a
/// press from someone not listening gets a private no.
#[tokio::test]
async fn the_now_playing_panels_buttons_change_what_is_heard() -> anyhow::Result<()> {
    use discord_sim::Press;
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    say(&sim, &b, play(&tones.wav(440, 61))).await?;
    // The second is short, so that looping it is heard; a third waits behind it.
    say(&sim, &b, play(&tones.wav(550, 3))).await?;
    say(&sim, &b, play(&tones.wav(770, 30))).await?;
    let panels = || -> Vec<serde_json::Value> {
        b.messages()
            .into_iter()
            .filter(|m| {
                m["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("61.wav") || c.contains("**3.wav**") || c.starts_with("⏹"))
            })
            .collect()
    };
    let panel = eventually("the now-playing message", WAIT, async || panels().into_iter().next()).await?;
    let id: u64 = panel["id"].as_str().unwrap().parse()?;
    assert!(panel["content"].as_str().unwrap().contains("▶ Now playing **61.wav**"), "{panel}");
    let press = |custom: &str| Press::button(GUILD, TEXT, ALICE, id, custom);
    let pressed = async |p: Press| -> anyhow::Result<discord_sim::InteractionRecord> {
        let i = b.press(p)?;
        sim.wait_reply(i.id, WAIT).await
    };
    let content = || b.message(id).and_then(|m| m["content"].as_str().map(str::to_string)).unwrap_or_default();
    hear_tone(&b, 440.0).await?;

    let no = pressed(Press::button(GUILD, TEXT, BOB, id, "np:pause")).await?;
    assert!(no.ephemeral() && no.text().contains(&format!("Join me in <#{VOICE}>")), "{no:?}");

    assert_eq!(pressed(press("np:pause")).await?.response_type(), Some(7), "the panel changes in place");
    assert!(content().starts_with("⏸ Paused **61.wav**"), "{}", content());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused_at = b.audio(GUILD).audible_seconds;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(b.audio(GUILD).audible_seconds - paused_at < 0.2, "silent while paused");
    pressed(press("np:pause")).await?;
    assert!(content().starts_with("▶ Now playing **61.wav**"), "{}", content());
    hear_more(&b, 1.0).await?;

    pressed(press("np:skip")).await?;
    hear_tone(&b, 550.0).await?;
    pressed(press("np:loop")).await?;
    assert!(content().contains("loop: track"), "{}", content());
    eventually("the panel shows the next track", WAIT, async || content().contains("**3.wav**").then_some(())).await?;
    // Looping the 3 s track: well past its end it is still what plays, not the third.
    let looped_from = b.audio(GUILD).audible_seconds;
    b.wait_for_audio(GUILD, looped_from + 5.0, WAIT).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 550.0), "the looped track plays again");
    // One track waits: nothing to shuffle, and the presser alone is told.
    let shuffled = pressed(press("np:shuffle")).await?;
    assert!(shuffled.ephemeral() && shuffled.text().contains("nothing to shuffle"), "{shuffled:?}");
    pressed(press("np:stop")).await?;
    assert!(content().starts_with("⏹ Nothing is playing"), "{}", content());
    assert_eq!(b.message(id).unwrap()["components"], serde_json::json!([]), "no buttons once stopped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = b.audio(GUILD).audible_seconds;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(b.audio(GUILD).audible_seconds - stopped_at < 0.2, "stopped");
    assert_eq!(panels().len(), 1, "one panel per guild: {:?}", panels());
    Ok(())
}
