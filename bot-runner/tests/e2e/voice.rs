//! Voice as it must work from a pod: a simulator on another address than 127.0.0.1, a
//! voice join that fails (no call left behind, an honest reply, no voice connection
//! counted), and a private CA given through MUSICBOT_CA_FILE instead of SSL_CERT_FILE.

use std::net::{IpAddr, SocketAddr};

use crate::support::*;

/// Loopback, but not 127.0.0.1: what a pod sees as the bridge address, here.
const OTHER: [u8; 4] = [127, 0, 0, 2];

fn host_of(url: &str) -> IpAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().and_then(|h| h.parse::<SocketAddr>().ok()).map(|a| a.ip()).expect("host:port")
}

#[tokio::test]
async fn a_bot_plays_through_a_simulator_on_another_address() -> anyhow::Result<()> {
    let ip = IpAddr::from(OTHER);
    let sim = world().bind(ip).start().await?;
    let tones = Tones::start_on(ip).await?;
    for url in [sim.api_url(), sim.gateway_url(), format!("wss://{}", sim.voice_endpoint()), tones.wav(440, 1)] {
        assert_eq!(host_of(&url), ip, "{url}");
    }
    let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&tones.wav(440, 30)))?;
    let reply = sim.wait_reply(play.id, WAIT).await?;
    assert_eq!(reply.text(), "Playing **30.wav**", "{reply:?}");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");

    // Every socket listens on 127.0.0.2 alone, so the bot reached each at that address:
    // REST (its requests), the gateway (its session), the voice gateway over TLS with the
    // certificate naming 127.0.0.2 (the open, keyed voice session) and UDP (the audio).
    assert!(!sim.requests().is_empty() && b.identifies() >= 1);
    let voice = b.voice(GUILD).expect("a voice session");
    assert!(voice.ws_open && voice.encrypted, "{voice:?}");
    assert_eq!(sim.voice_udp_addr().ip(), ip);
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());
    Ok(())
}

/// The reply to a failed `/play`: only the caller sees it (the public placeholder is gone).
fn assert_private_error(reply: &discord_sim::InteractionRecord, needle: &str) {
    assert!(reply.original.is_none(), "the public placeholder is deleted: {reply:?}");
    let last = reply.followups.last().expect("a follow-up");
    assert!(last["flags"].as_u64().is_some_and(|f| f & 64 != 0), "ephemeral: {last}");
    let text = reply.text();
    assert!(text.contains(needle), "{text:?} should say {needle:?}");
    assert!(!text.contains("Playing"), "{text}");
}

#[tokio::test]
async fn a_failed_voice_join_leaves_no_call_and_says_so() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);

    b.refuse_voice(GUILD, true);
    let first = b.inject_interaction(play(&tones.wav(440, 30)))?;
    let reply = sim.wait_reply(first.id, WAIT).await?;
    assert_private_error(&reply, "couldn't join");
    assert!(b.voice_refusals() >= 1, "the voice gateway was asked and refused");
    let status = bot.json("/status").await?;
    assert_eq!(status["voiceConnections"], 0, "a refused join is no voice connection: {status}");
    assert!(bot.logs().contains("joining voice failed"), "logged");

    // Voice works again: the next /play joins afresh (no dead call taken for a live one).
    b.refuse_voice(GUILD, false);
    let second = b.inject_interaction(play(&tones.wav(440, 30)))?;
    let reply = sim.wait_reply(second.id, WAIT).await?;
    assert_eq!(reply.text(), "Playing **30.wav**", "{reply:?}");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");
    let status = bot.json("/status").await?;
    assert_eq!(status["voiceConnections"], 1, "{status}");
    Ok(())
}

#[tokio::test]
async fn a_ca_file_adds_the_simulators_ca_to_the_system_roots() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let launch = Launch::bot(APP).without_ssl_cert_file().env("MUSICBOT_CA_FILE", sim.ca_file().to_str().unwrap());
    let mut bot = BotProcess::start(&sim, launch).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&tones.wav(440, 30)))?;
    assert_eq!(sim.wait_reply(play.id, WAIT).await?.text(), "Playing **30.wav**");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");

    // In addition to the system's roots, not instead of them (this machine has some).
    let logs = bot.logs();
    let line = logs.lines().find(|l| l.contains("trusting extra CA certificates")).expect("the bundle is logged");
    let system_roots: usize = line
        .split("system_roots=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no system_roots in {line}"));
    let on_this_machine = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .map(|s| s.matches("BEGIN CERTIFICATE").count())
        .unwrap_or(0);
    assert!(on_this_machine > 0, "the test machine has system roots to keep");
    assert!(system_roots > 0, "{line}");
    assert!(line.contains("extra=1"), "{line}");
    Ok(())
}

#[tokio::test]
async fn an_untrusted_voice_certificate_is_named_as_the_reason() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).without_ssl_cert_file()).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);

    let play = b.inject_interaction(play(&tones.wav(440, 30)))?;
    let reply = sim.wait_reply(play.id, WAIT).await?;
    assert_private_error(&reply, "voice server certificate not trusted: set MUSICBOT_CA_FILE");
    assert!(bot.logs().contains("voice server certificate not trusted"), "the log says why too");
    let status = bot.json("/status").await?;
    assert_eq!(status["voiceConnections"], 0, "{status}");
    Ok(())
}
