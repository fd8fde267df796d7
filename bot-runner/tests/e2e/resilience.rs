//! Connections that drop: the bot comes back and the music goes on.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn a_dropped_gateway_reconnects_and_the_music_keeps_playing() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    start_playing(&sim, &b, &tones).await?;

    b.drop_gateway();
    b.wait_connections(2, WAIT).await?;
    b.wait_ready(WAIT).await?;
    let before = b.audio(GUILD).audible_seconds;
    let after = b.wait_for_audio(GUILD, before + 2.0, WAIT).await?;
    assert!(near(after.dominant_hz, 440.0), "{after:?}");
    eventually("/ready again", WAIT, async || bot.get("/ready").await.ok().filter(|(c, _)| *c == 200)).await?;

    // Commands still work on the new session.
    let np = b.inject_interaction(cmd("nowplaying"))?;
    assert!(sim.wait_reply(np.id, WAIT).await?.text().contains("60.wav"));
    Ok(())
}

#[tokio::test]
async fn a_dropped_voice_connection_is_resumed_or_rejoined() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    start_playing(&sim, &b, &tones).await?;

    // The socket dies: songbird resumes the voice session; the RTP stream goes on.
    assert!(b.drop_voice(GUILD), "a voice connection to drop");
    eventually("the voice session to resume", WAIT, async || {
        b.voice(GUILD).filter(|v| v.resumes >= 1 && v.ws_open && v.encrypted)
    })
    .await?;
    let before = b.audio(GUILD).audible_seconds;
    let heard = b.wait_for_audio(GUILD, before + 1.5, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");

    // The voice server ends the session for good (4006): the bot joins again, through the
    // gateway, and the same track plays on in a new RTP stream.
    let streams = b.audio(GUILD).streams;
    assert!(b.close_voice(GUILD, 4006));
    eventually("a new voice session", WAIT, async || (b.audio(GUILD).streams > streams).then_some(())).await?;
    let before = b.audio(GUILD).audible_seconds;
    let heard = b.wait_for_audio(GUILD, before + 1.5, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");
    assert_eq!(b.voice(GUILD).map(|v| v.channel_id), Some(VOICE));
    Ok(())
}

#[tokio::test]
async fn an_empty_channel_is_left_after_the_idle_time() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP).env("MUSICBOT_IDLE_LEAVE_SECONDS", "2")).await?;
    let b = sim.bot(&bot.token);
    start_playing(&sim, &b, &tones).await?;
    // Playing to a listener is not idle, however long it lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.guild(GUILD).unwrap().voice_channel_of(APP), Some(VOICE), "still there while Alice listens");

    sim.move_member(GUILD, ALICE, None)?;
    eventually("the bot to leave the empty channel", WAIT, async || {
        sim.guild(GUILD).unwrap().voice_channel_of(APP).is_none().then_some(())
    })
    .await?;
    eventually("/status to show no voice connection", WAIT, async || {
        bot.json("/status").await.ok().filter(|s| s["voiceConnections"] == 0)
    })
    .await?;
    Ok(())
}
