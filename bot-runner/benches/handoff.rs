//! Interaction → first audio through a fleet hand-off, against the same without one
//! (`cargo bench -p bot-runner --bench handoff`): two release bot-runners with one fleet
//! key and the Discord simulator. Alpha plays in one voice channel; Bob, in another, asks
//! Bravo directly, then asks Alpha, who hands the request to Bravo. Before each request
//! Bravo leaves, so both include its voice join. `BENCH_ROUNDS` (default 20) sets the count.
//! Results go to stdout; docs/benchmarks.md keeps the figures.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use discord_sim::tones::ToneServer;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, SlashCommand, UserSpec};
use musicbot_api::handoff::{DIRECTORY_PATH, FleetBot, FleetDirectory};

const GUILD: u64 = 985_000_000_000_000_001;
const TEXT: u64 = GUILD + 1;
const ROOM_A: u64 = GUILD + 2;
const ROOM_B: u64 = GUILD + 3;
const ALICE: u64 = GUILD + 10;
const BOB: u64 = GUILD + 11;
const APPS: [u64; 2] = [986_000_000_000_000_001, 986_000_000_000_000_002];
const KEY: &str = "bench-fleet-key-0123456789abcdef";

fn token(app: u64) -> String {
    format!("{}.Bench.s3cret-{app}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(app.to_string()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn start_bot(sim: &DiscordSim, app: u64, name: &str, dir: &std::path::Path) -> Result<(tokio::process::Child, u16)> {
    let port = testkit::net::free_port();
    let token_file = dir.join(format!("{app}.token"));
    std::fs::write(&token_file, token(app))?;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-runner"))
        .arg("run")
        .env_remove("DISCORD_TOKEN")
        .env_remove("MUSICBOT_MONGODB_URI")
        .env("MUSICBOT_TOKEN_FILE", &token_file)
        .env("MUSICBOT_BOT_NAME", name)
        .env("MUSICBOT_FLEET_KEY_FILE", dir.join("fleet-key"))
        .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
        .env("MUSICBOT_MEDIA_ALLOW", "127.0.0.0/8")
        .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
        .env("MUSICBOT_HTTP_PORT", port.to_string())
        .env("SSL_CERT_FILE", sim.ca_file())
        .env("RUST_LOG", "warn")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting bot-runner")?;
    Ok((child, port))
}

/// Sends `/play` as Bob to `asked` and times it to Bravo's first audio packet in room B.
async fn first_audio(sim: &DiscordSim, tones: &ToneServer, asked: u64) -> Result<Duration> {
    let bravo = sim.bot(&token(APPS[1]));
    let before = bravo.audio_packets(GUILD);
    let play = SlashCommand::new(GUILD, TEXT, BOB, "play").option("query", tones.wav(550, 30));
    let start = Instant::now();
    let i = sim.bot(&token(asked)).inject_interaction(play)?;
    loop {
        let there = bravo.voice(GUILD).is_some_and(|v| v.channel_id == ROOM_B);
        if there && bravo.audio_packets(GUILD) > before {
            let took = start.elapsed();
            sim.wait_reply(i.id, Duration::from_secs(30)).await?;
            return Ok(took);
        }
        ensure!(start.elapsed() < Duration::from_secs(30), "no audio from Bravo in room B");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bob sends Bravo away, and waits until it has left.
async fn bravo_leaves(sim: &DiscordSim) -> Result<()> {
    let bravo = sim.bot(&token(APPS[1]));
    let i = bravo.inject_interaction(SlashCommand::new(GUILD, TEXT, BOB, "leave"))?;
    sim.wait_reply(i.id, Duration::from_secs(10)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bravo.voice(GUILD).is_some() {
        ensure!(Instant::now() < deadline, "Bravo did not leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The gateway's echo of the leave, before the next join.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

async fn bench(rounds: usize) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let guild = GuildSpec::new(GUILD, "bench")
        .text_channel(TEXT, "text")
        .voice_channel(ROOM_A, "A")
        .voice_channel(ROOM_B, "B")
        .member(UserSpec::new(ALICE, "alice"))
        .member(UserSpec::new(BOB, "bob"))
        .in_voice(ALICE, ROOM_A)
        .in_voice(BOB, ROOM_B);
    let mut builder = DiscordSim::builder().guild(guild);
    for app in APPS {
        builder = builder.bot(BotSpec::new(token(app)).application_id(app).user_id(app).in_guild(GUILD));
    }
    let sim = builder.start().await?;
    let tones = ToneServer::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("fleet-key"), KEY)?;
    let (_alpha, alpha_port) = start_bot(&sim, APPS[0], "Alpha", dir.path())?;
    let (_bravo, bravo_port) = start_bot(&sim, APPS[1], "Bravo", dir.path())?;
    for app in APPS {
        sim.bot(&token(app)).wait_ready(Duration::from_secs(30)).await?;
    }
    let directory = FleetDirectory {
        fleet: "bench".into(),
        bots: [(APPS[0], "Alpha", alpha_port), (APPS[1], "Bravo", bravo_port)]
            .into_iter()
            .map(|(app, name, port)| FleetBot {
                name: name.into(),
                client_id: app.to_string(),
                shard_urls: vec![format!("http://127.0.0.1:{port}")],
            })
            .collect(),
        invites: None,
    };
    let http = reqwest::Client::new();
    for port in [alpha_port, bravo_port] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("http://127.0.0.1:{port}{DIRECTORY_PATH}");
            if http.post(url).bearer_auth(KEY).json(&directory).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            ensure!(Instant::now() < deadline, "a bot did not take the directory");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Alpha busy in room A for the whole run.
    let play = SlashCommand::new(GUILD, TEXT, ALICE, "play").option("query", tones.wav(440, 3600));
    let i = sim.bot(&token(APPS[0])).inject_interaction(play)?;
    sim.wait_reply(i.id, Duration::from_secs(30)).await?;
    sim.bot(&token(APPS[0])).wait_for_audio(GUILD, 1.0, Duration::from_secs(30)).await?;

    let (mut direct, mut handed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(first_audio(&sim, &tones, APPS[1]).await?);
        bravo_leaves(&sim).await?;
        handed.push(first_audio(&sim, &tones, APPS[0]).await?);
        bravo_leaves(&sim).await?;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("interaction → first audio of the bot that plays it, over {rounds} rounds (each with a voice join):");
    for (what, took) in [("asked directly", &mut direct), ("handed off by a busy bot", &mut handed)] {
        took.sort();
        println!(
            "  {what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            ms(percentile(took, 0.5)),
            ms(percentile(took, 0.99)),
            ms(took[took.len() - 1])
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    tokio::runtime::Runtime::new()?.block_on(bench(rounds))
}
