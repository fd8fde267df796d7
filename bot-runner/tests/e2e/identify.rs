//! The identify budget governor against the simulator's session start limit: a token down
//! to its reserve is held (up, healthy, not ready, reported) and connects after Discord's
//! reset; a crash loop spends no more than the identifies above the reserve.

use std::time::{Duration, Instant};

use discord_sim::DiscordSim;

use crate::support::*;

fn world_with(remaining: u32, reset_after: Duration) -> discord_sim::DiscordSimBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    DiscordSim::builder().guild(guild()).bot(bot_spec(APP).in_guild(GUILD).identifies_left(remaining, reset_after))
}

/// The bot's entry in `/status`.
async fn report(bot: &BotProcess) -> anyhow::Result<serde_json::Value> {
    Ok(bot.json("/status").await?["bots"][0].clone())
}

#[tokio::test]
async fn a_token_at_its_reserve_is_held_and_connects_after_the_reset() -> anyhow::Result<()> {
    let reset_after = Duration::from_secs(8);
    let sim = world_with(3, reset_after).start().await?;
    let reset_at = Instant::now() + reset_after;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    let held = eventually("the bot to report its hold", WAIT, async || {
        report(&bot).await.ok().filter(|r| r["identifyHeldUntil"].is_string())
    })
    .await?;
    assert_eq!(held["identifiesRemaining"], 3, "{held}");
    assert_eq!(held["gatewayConnected"], false, "{held}");
    let until = chrono::DateTime::parse_from_rfc3339(held["identifyHeldUntil"].as_str().unwrap())?;
    let reset = chrono::DateTime::parse_from_rfc3339(held["identifiesResetAt"].as_str().unwrap())?;
    assert!(until >= reset, "looks again after the reset: {held}");
    assert_eq!(b.identifies(), 0, "no identify spent from the reserve");

    // Up and healthy (the kubelet must not restart it), not ready, started for the startup probe.
    let (code, health) = bot.get("/health").await?;
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health)?;
    assert_eq!(health["heldBots"][0]["clientId"], APP.to_string(), "{health}");
    assert_eq!(bot.get("/ready").await?.0, 503);
    let (code, body) = bot.get("/ready?wait=1&startup=true").await?;
    assert_eq!(code, 200, "{body}");
    let metrics = bot.get("/metrics").await?.1;
    for series in [
        format!("musicbot_identify_holds_total{{bot=\"{APP}\"}} 1"),
        format!("musicbot_identifies_remaining{{bot=\"{APP}\"}} 3"),
    ] {
        assert!(metrics.contains(&series), "{series} missing from\n{metrics}");
    }

    // After Discord's reset: one identify, from the refilled budget.
    bot.wait_ready().await?;
    assert!(Instant::now() >= reset_at, "connected before the reset");
    assert_eq!((b.identifies(), b.identifies_left()), (1, 999));
    let after = report(&bot).await?;
    assert!(after.get("identifyHeldUntil").is_none(), "{after}");
    assert_eq!(after["identifiesRemaining"], 999, "{after}");

    let logs = bot.logs();
    assert_eq!(logs.matches("identify budget at its reserve").count(), 1, "logged once:\n{logs}");
    let secret = bot.token.split('.').next_back().unwrap().to_string();
    for text in [logs, metrics, held.to_string(), health.to_string()] {
        assert!(!text.contains(&bot.token) && !text.contains(&secret), "the token shows in {text}");
    }
    Ok(())
}

/// A bot whose gateway is closed with a fatal code right after every READY exits each time
/// (as in a crash-looping pod). With 5 identifies left and the default reserve of 3 it spends
/// two, then waits: the token keeps its reserve and is never reset. A SIGTERM ends the wait.
#[tokio::test]
async fn a_crash_loop_spends_only_the_identifies_above_the_reserve() -> anyhow::Result<()> {
    let sim = world_with(5, Duration::from_secs(3600)).start().await?;
    let b = sim.bot(&token_for(APP));
    b.close_after_ready(Some(discord_sim::gateway::close::DISALLOWED_INTENTS));
    for run in 1..=2 {
        let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
        let status = bot.wait_exit(WAIT).await?;
        assert!(!status.success(), "run {run} exits non-zero after the fatal close:\n{}", bot.logs());
        assert_eq!(b.identifies(), run);
    }
    let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
    let held = eventually("the third run to hold", WAIT, async || {
        report(&bot).await.ok().filter(|r| r["identifyHeldUntil"].is_string())
    })
    .await?;
    assert_eq!(held["identifiesRemaining"], 3, "{held}");
    assert_eq!((b.identifies(), b.identifies_left(), b.token_reset()), (2, 3, false));

    let (status, _) = bot.terminate().await?;
    assert!(status.success(), "a held bot stops cleanly on SIGTERM:\n{}", bot.logs());
    assert!(bot.logs().contains("stopped while waiting for identifies"), "{}", bot.logs());
    assert_eq!(b.identifies(), 2);
    Ok(())
}

/// Without a reserve the bot spends the last identify, but never one more: Discord would
/// reset the token.
#[tokio::test]
async fn with_no_reserve_the_last_identify_is_spent_and_the_token_kept() -> anyhow::Result<()> {
    let sim = world_with(1, Duration::from_secs(3600)).start().await?;
    let b = sim.bot(&token_for(APP));
    let mut first = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_IDENTIFY_RESERVE", "0")).await?;
    first.wait_ready().await?;
    assert_eq!(report(&first).await?["identifiesRemaining"], 0);
    first.terminate().await?;
    let second = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_IDENTIFY_RESERVE", "0")).await?;
    eventually("the second run to hold", WAIT, async || {
        report(&second).await.ok().filter(|r| r["identifyHeldUntil"].is_string())
    })
    .await?;
    assert_eq!((b.identifies(), b.identifies_refused(), b.token_reset()), (1, 0, false));
    Ok(())
}
