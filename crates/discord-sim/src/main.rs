//! Runs the Discord simulator by hand, for local development without a Discord account.
//! See docs/simulator.md.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use discord_sim::tones::ToneServer;
use discord_sim::{BotSpec, DiscordSim, GuildSpec, OptionValue, Ports, SlashCommand, UserSpec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about = "A Discord simulator on loopback: REST (http), gateway (ws), voice (wss + UDP)")]
struct Args {
    /// Address to listen on and to hand to bots in every URL and endpoint (e.g. a test
    /// cluster's bridge address, which pods can reach). The voice certificate names it.
    #[arg(long, env = "DISCORD_SIM_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Bot tokens to accept (repeat for several bots).
    #[arg(
        long = "token",
        env = "DISCORD_SIM_TOKENS",
        value_delimiter = ',',
        default_value = "MTIzNDU2Nzg5MDEyMzQ1Njc4.dev.token"
    )]
    tokens: Vec<String>,
    /// Number of guilds; each has #general, a "Music" voice channel and a member sitting in it.
    #[arg(long, default_value_t = 1)]
    guilds: u64,
    /// REST port (0: any free port).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    #[arg(long, default_value_t = 0)]
    gateway_port: u16,
    #[arg(long, default_value_t = 0)]
    voice_port: u16,
    #[arg(long, default_value_t = 0)]
    udp_port: u16,
    /// Gateway heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 41_250)]
    heartbeat_ms: u64,
    /// Seconds a bot has to answer an interaction.
    #[arg(long, default_value_t = 3)]
    interaction_deadline: u64,
}

/// Ids are fixed so a developer can type them.
fn guild(n: u64) -> GuildSpec {
    let base = 100_000_000_000_000_000 + n * 1_000;
    GuildSpec::new(base, format!("Sim guild {n}"))
        .text_channel(base + 1, "general")
        .voice_channel(base + 2, "Music")
        .member(UserSpec::new(base + 10, "alice"))
        .member(UserSpec::new(base + 11, "bob"))
        .in_voice(base + 10, base + 2)
        .owner(base + 10)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(run(args));
    // Not a plain drop: reading stdin blocks a thread that a runtime drop would wait for
    // until a line is typed. `run` has already dropped the simulator (and its temporary
    // directory); that thread is left to the process exit.
    rt.shutdown_background();
    result
}

async fn run(args: Args) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "discord_sim=info".into());
    musicbot_runtime::init_logs(musicbot_api::env::LogFormat::Text, &filter);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let guilds: Vec<GuildSpec> = (1..=args.guilds).map(guild).collect();
    let mut builder = DiscordSim::builder()
        .bind(args.bind)
        .ports(Ports { api: args.api_port, gateway: args.gateway_port, voice: args.voice_port, udp: args.udp_port })
        .heartbeat_interval(Duration::from_millis(args.heartbeat_ms))
        .interaction_deadline(Duration::from_secs(args.interaction_deadline));
    for g in &guilds {
        builder = builder.guild(g.clone());
    }
    for t in &args.tokens {
        builder = builder.bot(guilds.iter().fold(BotSpec::new(t), |b, g| b.in_guild(g.id)));
    }
    // Installed before anything is printed: whoever read the URLs may signal at once, and
    // the default action would leave the temporary directory behind. Streams made once, so
    // a signal between two turns of the loop is not missed.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let sim = Arc::new(builder.start().await?);
    // Something to play without the internet: bot-runner fetches these like any audio file.
    let tones = ToneServer::start_on(args.bind).await?;

    print_welcome(&sim, &tones, &guilds);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Without a terminal (stdin at EOF) the simulator keeps serving until a signal.
    let mut stdin_open = true;
    let mut report = tokio::time::interval(Duration::from_secs(5));
    let mut watchers = JoinSet::new();
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = report.tick() => print_audio(&sim, &guilds),
            line = lines.next_line(), if stdin_open => match line? {
                Some(line) if !line.trim().is_empty() => {
                    if let Err(e) = command(&sim, &mut watchers, &guilds[0], &args.tokens[0], &line) {
                        println!("! {e:#}");
                    }
                }
                Some(_) => {}
                None => stdin_open = false,
            },
        }
    }
    println!("Stopping.");
    drop(tones);
    // Reply watchers hold the other references to the simulator: once they are gone, this
    // drop is the last and removes the temporary directory.
    watchers.shutdown().await;
    drop(sim);
    Ok(())
}

/// Where everything listens and what there is to talk to, for the developer at the terminal.
fn print_welcome(sim: &DiscordSim, tones: &ToneServer, guilds: &[GuildSpec]) {
    println!("Discord simulator running.");
    println!("  API base (HttpBuilder::proxy): {}", sim.api_url());
    println!("  REST as documented:            {}", sim.api_base());
    println!("  gateway:                       {}", sim.gateway_url());
    println!("  voice gateway (wss):           {}", sim.voice_endpoint());
    println!("  CA file (SSL_CERT_FILE):       {}", sim.ca_file().display());
    println!(
        "  temporary directory:           {} (removed on exit)",
        sim.ca_file().parent().map(|p| p.display().to_string()).unwrap_or_default()
    );
    for b in sim.bots() {
        println!("  bot {:?}: token {:?}, user/application id {}", b.name, b.token, b.user_id);
    }
    for g in guilds {
        println!(
            "  guild {} {:?}: #general {}, voice \"Music\" {}, alice {} (in voice), bob {}",
            g.id,
            g.name,
            g.id + 1,
            g.id + 2,
            g.id + 10,
            g.id + 11
        );
    }
    println!("  test tones:                    {} (any Hz and seconds in the path;", tones.wav(440, 30));
    println!("                                 also /dca/440/30.dca and /webm/440/30.webm, the same tone in Opus)");
    println!(
        "Type a slash command to send it from alice in the first guild, e.g. `/play query:{}`;",
        tones.wav(440, 30)
    );
    println!("`@TOKEN /cmd ...` picks a bot. Ctrl-C (or SIGTERM) stops.");
}

/// Injects the command; the reply is printed when it comes, so the prompt stays responsive.
fn command(
    sim: &Arc<DiscordSim>,
    watchers: &mut JoinSet<()>,
    g: &GuildSpec,
    default_token: &str,
    line: &str,
) -> Result<()> {
    let mut words = line.split_whitespace().peekable();
    let token = match words.peek().and_then(|w| w.strip_prefix('@')) {
        Some(t) => {
            let t = t.to_string();
            words.next();
            t
        }
        None => default_token.to_string(),
    };
    let name = words.next().and_then(|w| w.strip_prefix('/')).context("a command starts with /")?;
    let mut cmd = SlashCommand::new(g.id, g.id + 1, g.id + 10, name);
    let rest: Vec<&str> = words.collect();
    // `key:value with spaces key2:value` → options; the value runs to the next `key:`.
    let mut current: Option<(String, Vec<&str>)> = None;
    for w in rest {
        match w.split_once(':') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                if let Some((k, v)) = current.take() {
                    cmd = cmd.option(k, option_value(&v.join(" ")));
                }
                current = Some((k.to_string(), vec![v]));
            }
            _ => current.as_mut().context("options look like key:value")?.1.push(w),
        }
    }
    if let Some((k, v)) = current {
        cmd = cmd.option(k, option_value(&v.join(" ")));
    }
    let rec = sim.try_bot(&token).with_context(|| format!("no bot has token {token:?}"))?.inject_interaction(cmd)?;
    let sim = sim.clone();
    watchers.spawn(async move {
        match sim.wait_reply(rec.id, Duration::from_secs(30)).await {
            Ok(r) => println!("< {}{}", if r.ephemeral() { "(ephemeral) " } else { "" }, r.text()),
            Err(e) => println!("! no reply: {e}"),
        }
    });
    Ok(())
}

fn option_value(v: &str) -> OptionValue {
    if let Ok(i) = v.parse::<i64>() {
        return OptionValue::Integer(i);
    }
    match v {
        "true" => OptionValue::Boolean(true),
        "false" => OptionValue::Boolean(false),
        _ => OptionValue::String(v.to_string()),
    }
}

fn print_audio(sim: &DiscordSim, guilds: &[GuildSpec]) {
    for b in sim.bots() {
        let bot = sim.bot(&b.token);
        for g in guilds {
            let a = bot.audio(g.id);
            if a.packets > 0 {
                let hz = a.dominant_hz.map(|h| format!("{h:.1} Hz")).unwrap_or_else(|| "-".into());
                println!(
                    "  audio {} in {}: {:.1} s ({:.1} s audible), dominant {hz}, {} gaps",
                    b.name, g.id, a.seconds, a.audible_seconds, a.gaps
                );
            }
        }
    }
}
