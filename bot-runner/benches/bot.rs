//! bot-runner's benchmark (`cargo bench -p bot-runner --bench bot`), against the Discord
//! simulator with the release binary as a child process:
//! - idle memory of one bot process;
//! - CPU per playing stream, N guilds at once, re-encoded (WAV → Opus) and Opus passthrough;
//! - interaction acknowledgement latency (INTERACTION_CREATE sent → callback received).
//!
//! Results go to stdout; docs/benchmarks.md keeps the figures.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use discord_sim::tones::ToneServer;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, SlashCommand, UserSpec};

const APP: u64 = 950_000_000_000_000_001;
const BASE: u64 = 960_000_000_000_000_000;

fn token() -> String {
    format!("{}.Bench.s3cret", base64::engine::general_purpose::STANDARD_NO_PAD.encode(APP.to_string()))
}

/// Guild i: text channel +1, voice channel +2, listener +3 sitting in it.
fn guild(i: u64) -> GuildSpec {
    let g = BASE + i * 10;
    GuildSpec::new(g, format!("g{i}"))
        .text_channel(g + 1, "text")
        .voice_channel(g + 2, "voice")
        .member(UserSpec::new(g + 3, format!("u{i}")))
        .in_voice(g + 3, g + 2)
}

async fn world(guilds: u64) -> Result<DiscordSim> {
    let mut b = DiscordSim::builder().interaction_deadline(Duration::from_secs(30));
    let mut bot = BotSpec::new(token()).application_id(APP).user_id(APP);
    for i in 0..guilds {
        b = b.guild(guild(i));
        bot = bot.in_guild(BASE + i * 10);
    }
    b.bot(bot).start().await
}

struct Proc {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

async fn start(sim: &DiscordSim) -> Result<Proc> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("token"), token())?;
    let port = testkit::net::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-runner"))
        .env("MUSICBOT_TOKEN_FILE", dir.path().join("token"))
        .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
        .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
        .env("MUSICBOT_HTTP_PORT", port.to_string())
        .env("MUSICBOT_IDLE_LEAVE_SECONDS", "0")
        .env("SSL_CERT_FILE", sim.ca_file())
        .env("RUST_LOG", "warn")
        .env_remove("MUSICBOT_MONGODB_URI")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting bot-runner")?;
    let p = Proc { child, _dir: dir, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{}/ready", p.port)).await.is_ok_and(|r| r.status() == 200) {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("bot-runner not ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proc_field(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(key)).context("no such field")?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

/// User + system CPU time of a process.
fn cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("odd stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// UDP datagrams the kernel dropped for a full receive buffer (machine-wide), from
/// /proc/net/snmp: frames the simulator never saw are not the bot's fault.
fn udp_receive_drops() -> Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().context("no Udp: header")?, udp.next().context("no Udp: values")?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors").context("no RcvbufErrors")?;
    Ok(values.split_whitespace().nth(at).context("short Udp: line")?.parse()?)
}

async fn idle_memory() -> Result<()> {
    let sim = world(1).await?;
    let p = start(&sim).await?;
    let pid = p.child.id().context("pid")?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (c0, t0) = (cpu(pid)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu(pid)? - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    println!(
        "idle: RSS {:.1} MiB (peak {:.1} MiB), {:.2}% of a core, one bot in one guild",
        proc_field(pid, "VmRSS:")? as f64 / 1024.0,
        proc_field(pid, "VmHWM:")? as f64 / 1024.0,
        idle_cpu * 100.0
    );
    Ok(())
}

async fn streams(n: u64, passthrough: bool) -> Result<()> {
    let sim = world(n).await?;
    let tones = ToneServer::start().await?;
    let p = start(&sim).await?;
    let bot = sim.bot(&token());
    for i in 0..n {
        let g = BASE + i * 10;
        let url = if passthrough { tones.dca(440, 120) } else { tones.wav(440, 120) };
        let cmd = SlashCommand::new(g, g + 1, g + 3, "play").option("query", url);
        let id = bot.inject_interaction(cmd)?.id;
        let reply = sim.wait_reply(id, Duration::from_secs(60)).await?.text();
        if !reply.starts_with("Playing") {
            bail!("guild {i}: /play answered {reply:?}");
        }
    }
    for i in 0..n {
        bot.wait_for_audio(BASE + i * 10, 1.0, Duration::from_secs(60)).await?;
    }
    let pid = p.child.id().context("pid")?;
    // Streams are counted by the frames the simulator received in the window (50 a second
    // make one stream), so a stream that drops frames does not flatter the figure.
    let packets = || (0..n).map(|i| bot.audio_packets(BASE + i * 10)).sum::<u64>();
    let (c0, t0, f0, d0) = (cpu(pid)?, Instant::now(), packets(), udp_receive_drops()?);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (c1, t1, f1, d1) = (cpu(pid)?, Instant::now(), packets(), udp_receive_drops()?);
    let window = (t1 - t0).as_secs_f64();
    let cores = (c1 - c0).as_secs_f64() / window;
    let streams = (f1 - f0) as f64 / 50.0 / window;
    let heard: Vec<_> = (0..n).map(|i| bot.audio(BASE + i * 10)).collect();
    let gaps: u32 = heard.iter().map(|a| a.gaps).sum();
    let missing: u64 = heard.iter().map(|a| a.missing_frames).sum();
    println!(
        "{n} guilds {}: {:.1}% of a core for {streams:.1} streams' worth of frames → {:.0} streams per core; RSS {:.1} MiB; gaps heard {gaps}, frames missing {missing}, dropped by the simulator's socket {}",
        if passthrough { "passthrough (Opus in)" } else { "re-encoded (PCM in)" },
        cores * 100.0,
        streams / cores.max(1e-9),
        proc_field(pid, "VmRSS:")? as f64 / 1024.0,
        d1 - d0
    );
    Ok(())
}

async fn ack_latency(rounds: usize) -> Result<()> {
    let sim = world(1).await?;
    let _p = start(&sim).await?;
    let bot = sim.bot(&token());
    let g = BASE;
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let id = bot.inject_interaction(SlashCommand::new(g, g + 1, g + 3, "queue"))?.id;
        sim.wait_interaction(id, Duration::from_secs(10), |i| i.callback.is_some()).await?;
        took.push(started.elapsed());
    }
    took.sort();
    let q = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    println!(
        "acknowledgement over {rounds} /queue interactions: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q(0.50).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        took[took.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // BENCH_PHASES picks some of the measurements, e.g. `passthrough` alone to profile it.
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "idle,ack,reencode,passthrough".into());
    let run = |phase: &str| phases.split(',').any(|p| p.trim() == phase);
    // BENCH_STREAMS: guilds playing at once, a list of sizes: a process has a fixed cost per
    // 20 ms tick, so the cost per stream falls as guilds are added.
    let sizes: Vec<u64> = std::env::var("BENCH_STREAMS")
        .unwrap_or_else(|_| "5,20,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        if run("idle") {
            idle_memory().await?;
        }
        if run("ack") {
            ack_latency(300).await?;
        }
        for &n in &sizes {
            if run("reencode") {
                streams(n, false).await?;
            }
            if run("passthrough") {
                streams(n, true).await?;
            }
        }
        Ok(())
    })
}
