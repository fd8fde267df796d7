//! `/play` of a track the test serves: the simulator hears it, at the right pitch.

use crate::support::*;

#[tokio::test]
async fn play_a_served_file_and_hear_it() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&tones.wav(440, 5)))?;
    let reply = sim.wait_reply(play.id, WAIT).await?;
    assert_eq!(reply.response_type(), Some(5), "/play defers: looking up a source can take seconds");
    assert_eq!(reply.text(), "Playing **5.wav**", "{reply:?}");

    let voice = b.wait_voice_connected(GUILD, WAIT).await?;
    assert_eq!(voice.channel_id, VOICE, "joins the caller's channel");
    let heard = b.wait_for_audio(GUILD, 3.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");
    assert_eq!((heard.decrypt_failures, heard.decode_failures), (0, 0), "{heard:?}");

    // /status counts the voice connection; /nowplaying names the track.
    let status = bot.json("/status").await?;
    assert_eq!(status["voiceConnections"], 1, "{status}");
    assert_eq!(status["guilds"], 1, "{status}");
    let np = b.inject_interaction(cmd("nowplaying"))?;
    let np = sim.wait_reply(np.id, WAIT).await?;
    assert!(np.text().starts_with("**5.wav**"), "{np:?}");

    assert!(sim.unknown_requests().is_empty(), "routes the simulator lacks: {:#?}", sim.unknown_requests());
    Ok(())
}

#[tokio::test]
async fn a_page_goes_through_yt_dlp() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&tones.page(660, 6)))?;
    let reply = sim.wait_reply(play.id, WAIT).await?;
    // yt-dlp's generic extractor names the track after the URL's last part.
    assert_eq!(reply.text(), "Playing **6**", "{reply:?}");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 660.0), "{heard:?}");
    Ok(())
}

#[tokio::test]
async fn a_failing_source_is_reported_and_the_queue_moves_on() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    // A dead link is caught before it is queued, and said so (without the server's status).
    let dead = b.inject_interaction(play(&tones.missing()))?;
    let dead = sim.wait_reply(dead.id, WAIT).await?;
    assert!(dead.text().contains("didn't give me audio") && !dead.text().contains("404"), "{dead:?}");

    // A file that is not audio fails when it starts: the bot says why and plays the next one.
    let broken = b.inject_interaction(play(&tones.broken()))?;
    assert_eq!(sim.wait_reply(broken.id, WAIT).await?.text(), "Playing **noise.mp3**");
    let good = b.inject_interaction(play(&tones.wav(440, 4)))?;
    sim.wait_reply(good.id, WAIT).await?;
    let said = eventually("the failure to be announced", WAIT, async || {
        b.messages()
            .into_iter()
            .find(|m| m["content"].as_str().is_some_and(|c| c.contains("Couldn't play **noise.mp3**")))
    })
    .await?;
    assert_eq!(said["channel_id"], TEXT.to_string(), "said where it was asked for: {said}");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "the next track plays: {heard:?}");
    let metrics = bot.get("/metrics").await?.1;
    assert!(metrics.contains(&format!("musicbot_tracks_failed_total{{bot=\"{APP}\"}} 1")), "{metrics}");
    Ok(())
}

/// Plays an Opus file and checks that songbird sent its packets as they are (one track at
/// 100 %): every packet heard is one of the file's own.
async fn passes_opus_through(url: impl Fn(&Tones) -> String, title: &str) -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&url(&tones)))?;
    assert_eq!(sim.wait_reply(play.id, WAIT).await?.text(), format!("Playing **{title}**"));
    let heard = b.wait_for_audio(GUILD, 4.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");
    assert_eq!(heard.gaps, 0, "{heard:?}");

    let source: std::collections::HashSet<Vec<u8>> = discord_sim::tones::opus_frames(440.0, 8.0)?.into_iter().collect();
    let sent = b.opus_payloads(GUILD);
    let foreign = sent.iter().filter(|p| !source.contains(*p)).count();
    assert!(sent.len() >= 150, "{} packets", sent.len());
    assert!(foreign <= 2, "{foreign} of {} packets were re-encoded", sent.len());
    Ok(())
}

#[tokio::test]
async fn opus_in_dca_is_passed_through() -> anyhow::Result<()> {
    passes_opus_through(|t| t.dca(440, 8), "8.dca").await
}

/// YouTube's best audio is Opus in WebM: the demuxer must be there, and passthrough work.
#[tokio::test]
async fn opus_in_webm_is_passed_through() -> anyhow::Result<()> {
    passes_opus_through(|t| t.webm(440, 8), "8.webm").await
}
