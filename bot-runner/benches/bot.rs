//! bot-runner's benchmark (`cargo bench -p bot-runner --bench bot`), against the Discord
//! simulator with the release binary as a child process, beside the seed's stack
//! (discord.js 14, @discordjs/voice 0.19; see `seed/`) on the same simulator:
//! - memory: one bot idle at 10 guilds, one bot at a full shard of realistic guilds, 50 bots
//!   as 50 processes (PSS summed) and in one process (fleet mode; discord.js: 50 clients);
//! - interaction acknowledgement latency (INTERACTION_CREATE sent → callback received);
//! - CPU per playing stream, N guilds at once, re-encoded (WAV in) and Opus passthrough
//!   (WebM in), ours and the seed's.
//!
//! Results go to stdout as table rows; docs/benchmarks.md keeps the figures.

mod procfs;
mod seed;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use discord_sim::tones::ToneServer;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, SlashCommand, UserSpec};
use procfs::{Memory, mib};
use seed::Seed;

const APP: u64 = 950_000_000_000_000_001;
const BASE: u64 = 960_000_000_000_000_000;

fn token(app: u64) -> String {
    format!("{}.Bench.s3cret", base64::engine::general_purpose::STANDARD_NO_PAD.encode(app.to_string()))
}

/// A size from the environment, e.g. `BENCH_SHARD_GUILDS=500`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn gid(i: u64) -> u64 {
    BASE + i * 1000
}

/// Guild i: text channel +1, voice channel +2, listener +3 sitting in it.
fn guild(i: u64) -> GuildSpec {
    let g = gid(i);
    GuildSpec::new(g, format!("g{i}"))
        .text_channel(g + 1, "text")
        .voice_channel(g + 2, "voice")
        .member(UserSpec::new(g + 3, format!("u{i}")))
        .in_voice(g + 3, g + 2)
}

/// A guild as a GUILD_CREATE for GUILDS | GUILD_VOICE_STATES brings it: its channels and
/// roles, a member count, and as members only the bot and whoever sits in voice.
fn realistic_guild(i: u64) -> GuildSpec {
    let g = gid(i);
    let mut spec = guild(i).member_count(env_or("BENCH_MEMBERS", 1000));
    for c in 0..env_or("BENCH_TEXT_CHANNELS", 15) {
        spec = spec.text_channel(g + 10 + c, format!("text-{c}"));
    }
    for c in 0..env_or("BENCH_VOICE_CHANNELS", 4) {
        spec = spec.voice_channel(g + 200 + c, format!("voice-{c}"));
    }
    for r in 0..env_or("BENCH_ROLES", 12) {
        spec = spec.role(g + 400 + r, format!("role-{r}"));
    }
    spec
}

/// `bots` bots (application ids APP, APP+1, …), each in every one of the guilds.
async fn world(guilds: u64, bots: u64, make: fn(u64) -> GuildSpec) -> Result<DiscordSim> {
    let mut b = DiscordSim::builder().interaction_deadline(Duration::from_secs(30));
    for i in 0..guilds {
        b = b.guild(make(i));
    }
    for k in 0..bots {
        let mut bot = BotSpec::new(token(APP + k)).application_id(APP + k).user_id(APP + k);
        for i in 0..guilds {
            bot = bot.in_guild(gid(i));
        }
        b = b.bot(bot);
    }
    b.start().await
}

/// One bot-runner process (one bot, or `fleet` mode with several).
struct Ours {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Ours {
    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    fn spawn(sim: &DiscordSim, apps: &[u64]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let files: Vec<String> = apps
            .iter()
            .map(|app| {
                let f = dir.path().join(format!("{app}.token"));
                std::fs::write(&f, token(*app)).map(|()| f.to_string_lossy().into_owned())
            })
            .collect::<Result<_, _>>()?;
        let port = testkit::net::free_port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-runner"));
        if apps.len() > 1 {
            cmd.arg("fleet").env("MUSICBOT_TOKEN_FILES", files.join(","));
        } else {
            cmd.env("MUSICBOT_TOKEN_FILE", &files[0]);
        }
        let child = cmd
            .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
            .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
            .env("MUSICBOT_HTTP_PORT", port.to_string())
            .env("MUSICBOT_IDLE_LEAVE_SECONDS", "0")
            // The tone server is on loopback, which /play refuses by default.
            .env("MUSICBOT_MEDIA_ALLOW", "127.0.0.0/8")
            .env("SSL_CERT_FILE", sim.ca_file())
            .env("RUST_LOG", "warn")
            .env_remove("MUSICBOT_MONGODB_URI")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting bot-runner")?;
        Ok(Self { child, _dir: dir, port })
    }

    /// Waits until /bots counts `users` members over every guild (each GUILD_CREATE in).
    async fn wait_users(&self, users: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("http://127.0.0.1:{}/bots", self.port);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["bots"]
                    .as_array()
                    .is_some_and(|b| b.iter().filter_map(|b| b["users"].as_u64()).sum::<u64>() >= users)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("bot-runner did not see {users} members in time");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start(sim: &DiscordSim, apps: &[u64], users: u64) -> Result<Self> {
        let p = Self::spawn(sim, apps)?;
        p.wait_users(users).await?;
        Ok(p)
    }
}

/// The seed's bots, `apps` as discord.js clients in one node process, all guilds in.
async fn seed_bots(seed: &Seed, sim: &DiscordSim, apps: &[u64]) -> Result<(tokio::process::Child, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, apps.iter().map(|a| token(*a) + "\n").collect::<String>())?;
    let mut child = seed.spawn(
        "bots.js",
        &[("SEED_TOKEN_FILE", tokens.to_string_lossy().into_owned()), ("SEED_API", format!("{}/api", sim.api_url()))],
    )?;
    seed::wait_line(&mut child, "ready", Duration::from_secs(180)).await?;
    Ok((child, dir))
}

fn settle() -> Duration {
    Duration::from_secs(env_or("BENCH_SETTLE_SECONDS", 5))
}

fn row(case: &str, theirs: f64, ours: f64, unit: &str) {
    println!("| {case} | {theirs:.1} {unit} | {ours:.1} {unit} | {:.2} |", ours / theirs);
}

/// The seed's stack and ours at rest: figures in MiB, ratio ours / theirs.
async fn memory(seed: &Seed) -> Result<()> {
    println!("| memory, after {} s at rest | discord.js | bot-runner | ratio |", settle().as_secs());
    println!("|---|---|---|---|");
    let members = env_or("BENCH_MEMBERS", 1000);

    // One bot, 10 guilds.
    let guilds = env_or("BENCH_IDLE_GUILDS", 10);
    let sim = world(guilds, 1, realistic_guild).await?;
    let (theirs, _t) = seed_bots(seed, &sim, &[APP]).await?;
    tokio::time::sleep(settle()).await;
    let t = Memory::of(theirs.id().context("pid")?)?;
    drop(theirs);
    let ours = Ours::start(&sim, &[APP], guilds * members).await?;
    tokio::time::sleep(settle()).await;
    let (c0, t0) = (procfs::cpu(&[ours.pid()]), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = (procfs::cpu(&[ours.pid()]) - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let o = Memory::of(ours.pid())?;
    drop((ours, sim));
    let idle = format!("1 bot, {guilds} guilds");
    row(&format!("{idle}, RSS"), mib(t.rss), mib(o.rss), "MiB");
    row(
        &format!("{idle}, anonymous (heap, stacks: not shared with another process)"),
        mib(t.anonymous),
        mib(o.anonymous),
        "MiB",
    );
    println!("(bot-runner idle: {:.2} % of a core)", idle_cpu * 100.0);

    // One bot, a full shard.
    let guilds = env_or("BENCH_SHARD_GUILDS", 2500);
    let sim = world(guilds, 1, realistic_guild).await?;
    let started = Instant::now();
    let (theirs, _t) = seed_bots(seed, &sim, &[APP]).await?;
    let their_sync = started.elapsed();
    tokio::time::sleep(settle()).await;
    let t = Memory::of(theirs.id().context("pid")?)?;
    drop(theirs);
    let started = Instant::now();
    let ours = Ours::start(&sim, &[APP], guilds * members).await?;
    let our_sync = started.elapsed();
    tokio::time::sleep(settle()).await;
    let o = Memory::of(ours.pid())?;
    let hwm = peak_rss(ours.pid());
    drop((ours, sim));
    row(&format!("1 bot, {guilds} guilds, RSS"), mib(t.rss), mib(o.rss), "MiB");
    println!(
        "(start → every guild in: discord.js {:.1} s, bot-runner {:.1} s; bot-runner's peak RSS {:.1} MiB)",
        their_sync.as_secs_f64(),
        our_sync.as_secs_f64(),
        mib(hwm)
    );

    // Many bots, each in the same guilds.
    let bots = env_or("BENCH_FLEET_BOTS", 50);
    let guilds = env_or("BENCH_FLEET_GUILDS", 10);
    let apps: Vec<u64> = (0..bots).map(|k| APP + k).collect();
    let sim = world(guilds, bots, realistic_guild).await?;
    let (theirs, _t) = seed_bots(seed, &sim, &apps).await?;
    tokio::time::sleep(settle()).await;
    let t = Memory::of(theirs.id().context("pid")?)?;
    drop(theirs);
    let fleet = Ours::start(&sim, &apps, bots * guilds * members).await?;
    tokio::time::sleep(settle()).await;
    let f = Memory::of(fleet.pid())?;
    drop(fleet);
    let one = Ours::start(&sim, &apps[..1], guilds * members).await?;
    tokio::time::sleep(settle()).await;
    let single = Memory::of(one.pid())?;
    drop(one);
    let procs: Vec<Ours> = apps.iter().map(|a| Ours::spawn(&sim, &[*a])).collect::<Result<_>>()?;
    for p in &procs {
        p.wait_users(guilds * members).await?;
    }
    tokio::time::sleep(settle()).await;
    let pids: Vec<u32> = procs.iter().map(Ours::pid).collect();
    let many = Memory::sum(&pids)?;
    drop(procs);
    let case = format!("{bots} bots × {guilds} guilds");
    row(&format!("{case}: discord.js one process, bot-runner fleet mode, PSS"), mib(t.pss), mib(f.pss), "MiB");
    row(
        &format!("{case}: discord.js one process, bot-runner {bots} processes, PSS summed"),
        mib(t.pss),
        mib(many.pss),
        "MiB",
    );
    println!(
        "(bot-runner: fleet mode {:.2} MiB PSS per extra bot; {bots} processes {:.2} MiB PSS and {:.2} MiB anonymous each; RSS summed {:.0} MiB)",
        mib(f.pss.saturating_sub(single.pss)) / (bots.max(2) - 1) as f64,
        mib(many.pss) / bots as f64,
        mib(many.anonymous) / bots as f64,
        mib(many.rss),
    );
    Ok(())
}

/// VmHWM of a process, in KiB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// WAV: decoded, mixed and encoded to Opus again.
    Reencoded,
    /// Opus in WebM, as YouTube's best audio: the packets are sent as they are.
    Passthrough,
}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    Ours,
    Seed,
}

/// N guilds playing the two-minute tone at once; CPU and memory of the player (the seed's
/// ffmpeg children included) over a window once every guild is heard.
async fn streams(seed: Option<&Seed>, n: u64, input: Input, stack: Stack) -> Result<()> {
    let sim = world(n, 1, guild).await?;
    let tones = ToneServer::start().await?;
    let media = match input {
        Input::Passthrough => tones.webm(440, 120),
        Input::Reencoded => tones.wav(440, 120),
    };
    let bot = sim.bot(&token(APP));
    // Kept alive while measuring.
    let mut _ours = None;
    let mut _theirs = None;
    let root = match stack {
        Stack::Ours => {
            let p = Ours::start(&sim, &[APP], n).await?;
            for i in 0..n {
                let g = gid(i);
                let cmd = SlashCommand::new(g, g + 1, g + 3, "play").option("query", media.clone());
                let id = bot.inject_interaction(cmd)?.id;
                let reply = sim.wait_reply(id, Duration::from_secs(60)).await?.text();
                if !reply.starts_with("Playing") {
                    bail!("guild {i}: /play answered {reply:?}");
                }
            }
            let pid = p.pid();
            _ours = Some(p);
            pid
        }
        Stack::Seed => {
            let seed = seed.context("the seed's stack is not installed")?;
            let dir = tempfile::tempdir()?;
            let tokens = dir.path().join("tokens");
            std::fs::write(&tokens, token(APP))?;
            let targets: Vec<[String; 2]> = (0..n).map(|i| [gid(i).to_string(), (gid(i) + 2).to_string()]).collect();
            let mut child = seed.spawn(
                "voice.js",
                &[
                    ("SEED_TOKEN_FILE", tokens.to_string_lossy().into_owned()),
                    ("SEED_API", format!("{}/api", sim.api_url())),
                    ("SEED_TARGETS", serde_json::to_string(&targets)?),
                    ("SEED_MEDIA", media.clone()),
                    ("SEED_INPUT", if input == Input::Passthrough { "webm" } else { "arbitrary" }.into()),
                    ("NODE_EXTRA_CA_CERTS", sim.ca_file().to_string_lossy().into_owned()),
                ],
            )?;
            seed::wait_line(&mut child, "playing", Duration::from_secs(180)).await?;
            let pid = child.id().context("pid")?;
            _theirs = Some((child, dir));
            pid
        }
    };
    for i in 0..n {
        bot.wait_for_audio(gid(i), 1.0, Duration::from_secs(60)).await?;
    }
    // Streams are counted by the frames the simulator received in the window (50 a second
    // make one stream), so a stream that drops frames does not flatter the figure.
    let packets = || (0..n).map(|i| bot.audio_packets(gid(i))).sum::<u64>();
    let window = Duration::from_secs(env_or("BENCH_WINDOW_SECONDS", 10));
    let pids = procfs::tree(root);
    let (c0, t0, f0, d0) = (procfs::cpu(&pids), Instant::now(), packets(), procfs::udp_receive_drops()?);
    tokio::time::sleep(window).await;
    let (c1, t1, f1, d1) = (procfs::cpu(&pids), Instant::now(), packets(), procfs::udp_receive_drops()?);
    let mem = Memory::sum(&pids)?;
    let secs = (t1 - t0).as_secs_f64();
    let cores = (c1 - c0).as_secs_f64() / secs;
    let streams = (f1 - f0) as f64 / 50.0 / secs;
    let heard: Vec<_> = (0..n).map(|i| bot.audio(gid(i))).collect();
    let gaps: u32 = heard.iter().map(|a| a.gaps).sum();
    let missing: u64 = heard.iter().map(|a| a.missing_frames).sum();
    println!(
        "| {} | {} | {n} | {:.1} % | {streams:.1} | **{:.0}** | {:.1} MiB | {:.1} MiB | {gaps} | {missing} | {} |",
        if stack == Stack::Ours { "bot-runner" } else { "discord.js" },
        if input == Input::Passthrough { "passthrough (WebM)" } else { "re-encoded (WAV)" },
        cores * 100.0,
        streams / cores.max(1e-9),
        mib(mem.pss),
        mib(mem.rss),
        d1 - d0,
    );
    Ok(())
}

async fn ack_latency(rounds: usize) -> Result<()> {
    let sim = world(1, 1, guild).await?;
    let _p = Ours::start(&sim, &[APP], 1).await?;
    let bot = sim.bot(&token(APP));
    let g = gid(0);
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
    // BENCH_PHASES picks some of the measurements, e.g. `passthrough` alone to profile it;
    // BENCH_STACKS `ours` leaves the seed's stack (and npm) out.
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "memory,ack,reencode,passthrough".into());
    let run = |phase: &str| phases.split(',').any(|p| p.trim() == phase);
    let stacks = std::env::var("BENCH_STACKS").unwrap_or_else(|_| "seed,ours".into());
    let with_seed = stacks.split(',').any(|s| s.trim() == "seed");
    let with_ours = stacks.split(',').any(|s| s.trim() == "ours");
    // BENCH_STREAMS: guilds playing at once, a list of sizes: a process has a fixed cost per
    // 20 ms tick, so the cost per stream falls as guilds are added.
    let sizes: Vec<u64> = std::env::var("BENCH_STREAMS")
        .unwrap_or_else(|_| "5,20,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seed = if with_seed { Some(Seed::install()?) } else { None };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        if run("memory") {
            memory(seed.as_ref().context("the memory comparison needs the seed's stack (BENCH_STACKS)")?).await?;
        }
        if run("ack") {
            ack_latency(300).await?;
        }
        println!(
            "| stack | input | guilds | CPU | streams heard | streams per core | PSS | RSS | gaps | frames missing | dropped by the simulator's socket |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for &n in &sizes {
            for (phase, input) in [("reencode", Input::Reencoded), ("passthrough", Input::Passthrough)] {
                if !run(phase) {
                    continue;
                }
                // The seed's encoders have crashed its process at high counts: say so, go on.
                if with_seed && let Err(e) = streams(seed.as_ref(), n, input, Stack::Seed).await {
                    println!("| discord.js | {phase} | {n} | failed: {e:#} |");
                }
                if with_ours {
                    streams(None, n, input, Stack::Ours).await?;
                }
            }
        }
        Ok(())
    })
}
