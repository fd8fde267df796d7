//! Server settings and who controls playback: a manager sets a DJ role; then only its
//! holders (and managers) control playback, others vote to skip someone else's song (a
//! majority of the listeners), remove only their own, and the settings outlive the process.

use discord_sim::{DiscordSim, GuildSpec, OptionValue, SlashCommand, UserSpec};

use crate::support::*;

const CAROL: u64 = GUILD + 103;
const DAVE: u64 = GUILD + 104;
const DJ: u64 = GUILD + 50;

fn dj_guild() -> GuildSpec {
    GuildSpec::new(GUILD, "Test guild")
        .text_channel(TEXT, "general")
        .voice_channel(VOICE, "Music")
        .role(DJ, "DJ")
        .member(UserSpec::new(ALICE, "alice").manager())
        .member(UserSpec::new(BOB, "bob"))
        .member(UserSpec::new(CAROL, "carol"))
        .member(UserSpec::new(DAVE, "dave").with_role(DJ))
        .in_voice(ALICE, VOICE)
        .in_voice(BOB, VOICE)
        .in_voice(CAROL, VOICE)
        .in_voice(DAVE, VOICE)
        .owner(ALICE)
}

fn by(user: u64, name: &str) -> SlashCommand {
    SlashCommand::new(GUILD, TEXT, user, name)
}

/// The answer, and whether only the caller sees it.
async fn ask(sim: &DiscordSim, b: &discord_sim::Bot<'_>, c: SlashCommand) -> anyhow::Result<(String, bool)> {
    let i = b.inject_interaction(c)?;
    let r = sim.wait_reply(i.id, WAIT).await?;
    Ok((r.text(), r.ephemeral()))
}

#[tokio::test]
async fn a_dj_role_limits_control_and_others_vote_to_skip() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = DiscordSim::builder().guild(dj_guild()).bot(bot_spec(APP).in_guild(GUILD)).start().await?;
    let tones = Tones::start().await?;
    let dir = tempfile::tempdir()?;
    let launch = || Launch::bot(APP).env("MUSICBOT_SESSION_DIR", dir.path().display().to_string());
    let mut bot = BotProcess::start(&sim, launch()).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&token_for(APP));

    let (said, _) = ask(&sim, &b, by(ALICE, "play").option("query", tones.wav(440, 60))).await?;
    assert!(said.starts_with("Playing"), "{said}");
    assert_eq!(ask(&sim, &b, by(BOB, "pause")).await?, ("Paused.".into(), false), "no DJ role: anyone listening");
    assert_eq!(ask(&sim, &b, by(BOB, "resume")).await?.0, "Resumed.");

    let set_dj = |user: u64| by(user, "settings").subcommand("dj").option("role", OptionValue::Role(DJ));
    let (refused, ephemeral) = ask(&sim, &b, set_dj(BOB)).await?;
    assert!(ephemeral && refused.contains("Only server managers"), "{refused}");
    let (said, _) = ask(&sim, &b, set_dj(ALICE)).await?;
    assert!(said.contains(&format!("<@&{DJ}>")), "{said}");
    let (refused, ephemeral) = ask(&sim, &b, by(BOB, "pause")).await?;
    assert!(ephemeral && refused.contains(&format!("Only members with <@&{DJ}>")), "{refused}");
    assert_eq!(ask(&sim, &b, by(DAVE, "pause")).await?.0, "Paused.", "the DJ may");
    assert_eq!(ask(&sim, &b, by(ALICE, "resume")).await?.0, "Resumed.", "a manager may");

    // Bob's own song he may remove; Alice's not.
    ask(&sim, &b, by(ALICE, "play").option("query", tones.wav(550, 60))).await?;
    ask(&sim, &b, by(BOB, "play").option("query", tones.wav(660, 61))).await?;
    let (refused, ephemeral) = ask(&sim, &b, by(BOB, "remove").option("position", 1)).await?;
    assert!(ephemeral && refused.contains("only the songs you added"), "{refused}");
    assert_eq!(ask(&sim, &b, by(BOB, "remove").option("position", 2)).await?.0, "Removed **61.wav**.");

    // Three people listening (Dave leaves): Bob's vote alone does not skip Alice's song;
    // Carol's makes two of three.
    sim.move_member(GUILD, DAVE, None)?;
    b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    let (said, _) = ask(&sim, &b, by(BOB, "skip")).await?;
    assert_eq!(said, "Voted to skip **60.wav**: 1 of 2 needed. Others listening can /skip too.");
    assert_eq!(ask(&sim, &b, by(BOB, "skip")).await?.0, said, "a member votes once");
    let heard = b.audio(GUILD).audible_seconds;
    b.wait_for_audio(GUILD, heard + 1.0, WAIT).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 440.0), "still Alice's song");
    let (said, _) = ask(&sim, &b, by(CAROL, "skip")).await?;
    assert_eq!(said, "The vote passed (2 of 3). Skipped **60.wav**. Now playing **60.wav**");
    let heard = b.audio(GUILD).audible_seconds;
    b.wait_for_audio(GUILD, heard + 1.5, WAIT).await?;
    assert!(near(recent_hz(&b.audio_samples(GUILD), 1.0), 550.0), "skipped by the vote");

    // The settings outlive the process; a new queue starts at the default volume set.
    let (said, _) = ask(&sim, &b, by(ALICE, "settings").subcommand("volume").option("level", 30)).await?;
    assert_eq!(said, "New queues start at 30%.");
    bot.terminate().await?;
    let mut bot = BotProcess::start(&sim, launch()).await?;
    bot.wait_ready().await?;
    let (shown, ephemeral) = ask(&sim, &b, by(ALICE, "settings").subcommand("show")).await?;
    assert!(ephemeral && shown.contains(&format!("DJ role: <@&{DJ}>")) && shown.contains("30%"), "{shown}");
    ask(&sim, &b, by(ALICE, "leave")).await.ok();
    ask(&sim, &b, by(ALICE, "play").option("query", tones.wav(440, 60))).await?;
    let np = ask(&sim, &b, by(ALICE, "nowplaying")).await?.0;
    assert!(np.contains("volume 30%"), "{np}");
    drop(bot);
    Ok(())
}
