//! Music that survives the process: a bot stopped with SIGTERM or killed with SIGKILL and
//! started again on the same session directory plays on in the same channel, from where it
//! was (a ramp's pitch tells the second), with its queue and volume; and the next track of
//! a queue is readied before the current one ends, so they play back to back.

use std::time::Duration;

use discord_sim::audio::ramp_around;
use discord_sim::{DiscordSim, SlashCommand};

use crate::support::*;

const RAMP_HZ: u32 = 300;

fn with_session(dir: &std::path::Path) -> Launch<'static> {
    Launch::bot(APP).env("MUSICBOT_SESSION_DIR", dir.display().to_string())
}

async fn started(sim: &DiscordSim, launch: Launch<'_>) -> anyhow::Result<BotProcess> {
    let mut bot = BotProcess::start(sim, launch).await?;
    bot.wait_ready().await?;
    Ok(bot)
}

async fn ask(sim: &DiscordSim, b: &discord_sim::Bot<'_>, command: SlashCommand) -> anyhow::Result<String> {
    let i = b.inject_interaction(command)?;
    Ok(sim.wait_reply(i.id, WAIT).await?.text())
}

/// Audible seconds heard so far in the test guild.
fn audible(b: &discord_sim::Bot<'_>) -> f64 {
    b.audio(GUILD).audible_seconds
}

/// Waits until `more` audible seconds were heard after `from`.
async fn heard_past(b: &discord_sim::Bot<'_>, from: f64, more: f64) -> anyhow::Result<()> {
    eventually("audio after the restart", WAIT, async || (audible(b) >= from + more).then_some(())).await
}

/// The ramp's second before the stop and after the start again, around `cut`.
fn positions(b: &discord_sim::Bot<'_>, cut: f64) -> (f64, f64) {
    let (samples, heard) = (b.audio_samples(GUILD), audible(b));
    ramp_around(&samples, heard, cut, f64::from(RAMP_HZ)).expect("audio on both sides of the restart")
}

#[tokio::test]
async fn a_stopped_or_killed_bot_plays_on_from_where_it_was_with_its_queue() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Scene { sim, tones, mut bot } = Scene::start(with_session(dir.path())).await?;
    let b = sim.bot(&token_for(APP));

    let reply = ask(&sim, &b, play(&tones.ramp(RAMP_HZ, 24))).await?;
    assert!(reply.contains("Playing"), "{reply}");
    ask(&sim, &b, play(&tones.wav(880, 30))).await?;
    ask(&sim, &b, cmd("volume").option("level", 50)).await?;
    b.wait_for_audio(GUILD, 5.0, WAIT).await?;

    // SIGTERM: saved as it stops.
    bot.terminate().await?;
    let cut = audible(&b);
    let mut bot = started(&sim, with_session(dir.path())).await?;
    heard_past(&b, cut, 1.5).await?;
    let (stopped, resumed) = positions(&b, cut);
    eprintln!("SIGTERM: stopped at ramp second {stopped:.0}, resumed at {resumed:.0}");
    assert!((resumed - stopped).abs() <= 2.0, "stopped at {stopped}, resumed at {resumed}");
    assert!(stopped >= 4.0, "the ramp had played for a while: {stopped}");
    assert_eq!(b.voice(GUILD).map(|v| v.channel_id), Some(VOICE), "the same channel");
    // Half the volume: the ramp's amplitude 0.4 is a sine of RMS 0.28.
    let rms = recent_rms(&b.audio_samples(GUILD), 1.0);
    assert!((0.10..0.18).contains(&rms), "the volume of 50% came back: RMS {rms}");
    let said: Vec<String> = b.messages().iter().filter_map(|m| m["content"].as_str().map(str::to_string)).collect();
    assert_eq!(said.iter().filter(|m| m.contains("I'm back")).count(), 1, "{said:?}");
    let queue = ask(&sim, &b, cmd("queue")).await?;
    assert!(queue.contains("1. 30.wav"), "the queue came back: {queue}");

    // SIGKILL: from the last second saved.
    kill9(bot.pid());
    bot.wait_exit(Duration::from_secs(10)).await?;
    let cut = audible(&b);
    let _bot = started(&sim, with_session(dir.path())).await?;
    heard_past(&b, cut, 1.5).await?;
    let (stopped, resumed) = positions(&b, cut);
    eprintln!("SIGKILL: stopped at ramp second {stopped:.0}, resumed at {resumed:.0}");
    assert!((resumed - stopped).abs() <= 2.0, "stopped at {stopped}, resumed at {resumed}");

    // The queue goes on after the ramp.
    eventually("the queued 880 Hz after the ramp", Duration::from_secs(60), async || {
        near(recent_hz(&b.audio_samples(GUILD), 0.5), 880.0).then_some(())
    })
    .await?;
    let pauses = b.audio(GUILD).pauses;
    eprintln!("pauses heard (s): {pauses:?}");
    Ok(())
}

#[tokio::test]
async fn a_session_older_than_the_maximum_age_is_not_played() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Scene { sim, tones, mut bot } = Scene::start(with_session(dir.path())).await?;
    let b = sim.bot(&token_for(APP));
    ask(&sim, &b, play(&tones.wav(440, 60))).await?;
    b.wait_for_audio(GUILD, 1.0, WAIT).await?;
    bot.terminate().await?;
    let packets = b.audio(GUILD).packets;
    // Older than 10 s by the time it is read: dropped.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let bot = started(&sim, with_session(dir.path()).env("MUSICBOT_SESSION_MAX_AGE_SECONDS", "10")).await?;
    eventually("the old session dropped", WAIT, async || bot.logs().contains("too old").then_some(())).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.audio(GUILD).packets, packets, "nothing played");
    assert!(b.voice(GUILD).is_none(), "not rejoined");
    Ok(())
}

/// Waits until the bot sends nothing for half a second.
async fn quiet(b: &discord_sim::Bot<'_>) -> anyhow::Result<()> {
    for _ in 0..120 {
        let before = b.audio(GUILD).packets;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if b.audio(GUILD).packets == before {
            return Ok(());
        }
    }
    anyhow::bail!("the bot never went quiet")
}

async fn hear(b: &discord_sim::Bot<'_>, hz: f64) -> anyhow::Result<()> {
    eventually(&format!("{hz} Hz"), Duration::from_secs(60), async || {
        near(recent_hz(&b.audio_samples(GUILD), 0.3), hz).then_some(())
    })
    .await
}

#[tokio::test]
async fn queued_files_and_pages_play_back_to_back() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&token_for(APP));
    // Pages go through yt-dlp, which takes a second or more to start: only a next track
    // readied in advance starts without a pause.
    for (first, second) in [(tones.wav(440, 6), tones.wav(660, 3)), (tones.page(440, 10), tones.page(660, 3))] {
        ask(&sim, &b, play(&first)).await?;
        hear(&b, 440.0).await?;
        // From here on, a pause is one between the two tracks.
        let before = b.audio(GUILD).pauses.len();
        ask(&sim, &b, play(&second)).await?;
        hear(&b, 660.0).await?;
        let pauses = b.audio(GUILD).pauses;
        let between = pauses[before..].iter().copied().fold(0.0, f64::max);
        eprintln!("{second}: pause between the tracks {:.0} ms", between * 1000.0);
        assert!(between < 0.1, "a pause of {between} s between {first} and {second}: {pauses:?}");
        quiet(&b).await?;
    }
    let metrics = bot.get("/metrics").await?.1;
    let preloaded = metrics.lines().find(|l| l.starts_with("musicbot_tracks_preloaded_total")).unwrap_or_default();
    assert!(preloaded.ends_with(" 2"), "{preloaded}");
    Ok(())
}

fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -KILL {pid}");
}

#[tokio::test]
async fn a_call_whose_udp_the_server_stops_taking_in_is_rejoined_and_plays_on_from_the_last_heard_second()
-> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&token_for(APP));
    ask(&sim, &b, play(&tones.ramp(RAMP_HZ, 40))).await?;
    b.wait_for_audio(GUILD, 4.0, WAIT).await?;
    let before = b.voice(GUILD).expect("in voice");
    assert!(before.reports_sent > 0, "the server reports what it hears: {before:?}");

    // songbird goes on sending, its websocket stays up, nothing reaches the server: only the
    // reports that stop rising tell the bot.
    assert!(b.blackhole_voice(GUILD));
    let cut = audible(&b);
    heard_past(&b, cut, 3.0).await?;
    let after = b.voice(GUILD).expect("in voice again");
    assert_ne!(after.ssrc, before.ssrc, "a new voice session");
    assert!(!after.blackholed);
    let (stopped, resumed) = positions(&b, cut);
    eprintln!("blackholed at ramp second {stopped:.0}, resumed at {resumed:.0}");
    assert!((resumed - stopped).abs() <= 2.0, "the listeners stopped at {stopped}, it resumed at {resumed}");
    let status = bot.json("/status").await?;
    assert_eq!(status["bots"][0]["voiceStalls"], 1, "{status}");
    let said: Vec<String> = b.messages().iter().filter_map(|m| m["content"].as_str().map(str::to_string)).collect();
    assert_eq!(said.iter().filter(|m| m.contains("stalled")).count(), 1, "{said:?}");
    assert!(bot.logs().contains("the voice server hears nothing"), "the log says why");
    Ok(())
}

#[tokio::test]
async fn a_source_that_stops_sending_is_healed_by_rejoining_and_one_that_keeps_stopping_fails_health()
-> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&token_for(APP));

    // The file's first answer stops after 4 s of audio; songbird's mixer waits on it and
    // the call goes quiet. The watchdog rejoins, and the file is asked for again, whole.
    ask(&sim, &b, play(&tones.stalling(440, 30, false))).await?;
    b.wait_for_audio(GUILD, 3.0, WAIT).await?;
    let cut = audible(&b);
    let streams = b.audio(GUILD).streams;
    heard_past(&b, cut + 1.0, 3.0).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 0.5), 440.0));
    assert!(b.audio(GUILD).streams > streams, "a new voice connection: {:?}", b.audio(GUILD));
    let status = bot.json("/status").await?;
    // Once, and sometimes twice: the first new call's track can sit at 0:00 without
    // playing (not understood yet; the second rejoin always brought the music back here).
    let stalls = status["bots"][0]["voiceStalls"].as_u64().unwrap_or_default();
    assert!((1..=2).contains(&stalls), "{status}");
    let said: Vec<String> = b.messages().iter().filter_map(|m| m["content"].as_str().map(str::to_string)).collect();
    assert!(said.iter().any(|m| m.contains("stalled")), "{said:?}");
    assert_eq!(bot.json("/health").await?["status"], "ok");

    // Every answer stalls: after three rejoins in a row the bot asks to be restarted.
    ask(&sim, &b, cmd("stop")).await?;
    ask(&sim, &b, play(&tones.stalling(550, 30, true))).await?;
    let health = eventually("/health failing", Duration::from_secs(90), async || {
        let (code, body) = bot.get("/health").await.ok()?;
        (code == 503).then_some(body)
    })
    .await?;
    assert!(health.contains("stalled 3 times in a row"), "{health}");
    let metrics = bot.get("/metrics").await?.1;
    let counted = metrics.lines().find(|l| l.starts_with("musicbot_voice_stalls_total")).unwrap_or_default();
    let counted: u64 = counted.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_default();
    assert!(counted >= stalls + 3, "{counted} stalls counted: {stalls}, then three in a row");
    Ok(())
}
