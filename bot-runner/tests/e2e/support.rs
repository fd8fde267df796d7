//! The world of the bot-runner tests: a Discord simulator, a server of test tones, and the
//! real `bot-runner` binary as a child process configured the way the operator does it
//! (environment variables and a token file), so what is tested is what runs in a pod.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use discord_sim::{BotSpec, DiscordSim, DiscordSimBuilder, GuildSpec, SlashCommand, UserSpec};

pub const GUILD: u64 = 910_000_000_000_000_001;
pub const TEXT: u64 = 910_000_000_000_000_011;
pub const VOICE: u64 = 910_000_000_000_000_012;
pub const VOICE2: u64 = 910_000_000_000_000_013;
pub const ALICE: u64 = 910_000_000_000_000_101;
pub const BOB: u64 = 910_000_000_000_000_102;
pub const APP: u64 = 930_000_000_000_000_001;
pub const WAIT: Duration = Duration::from_secs(40);

/// A token shaped like Discord's: its first part is the application id in base64.
pub fn token_for(app: u64) -> String {
    let id = base64::engine::general_purpose::STANDARD_NO_PAD.encode(app.to_string());
    format!("{id}.SimTok.s3cr3t-{app}-do-not-leak")
}

pub fn guild() -> GuildSpec {
    GuildSpec::new(GUILD, "Test guild")
        .text_channel(TEXT, "general")
        .voice_channel(VOICE, "Music")
        .voice_channel(VOICE2, "Lounge")
        .member(UserSpec::new(ALICE, "alice"))
        .member(UserSpec::new(BOB, "bob"))
        .in_voice(ALICE, VOICE)
        .owner(ALICE)
}

pub fn bot_spec(app: u64) -> BotSpec {
    BotSpec::new(token_for(app)).application_id(app).user_id(app).name(format!("bot-{app}"))
}

/// One guild with Alice in its voice channel, and one bot in it.
pub fn world() -> DiscordSimBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    DiscordSim::builder().guild(guild()).bot(bot_spec(APP).in_guild(GUILD))
}

pub fn play(query: &str) -> SlashCommand {
    SlashCommand::new(GUILD, TEXT, ALICE, "play").option("query", query)
}

pub fn cmd(name: &str) -> SlashCommand {
    SlashCommand::new(GUILD, TEXT, ALICE, name)
}

pub use discord_sim::tones::ToneServer as Tones;

/// A running `bot-runner`; killed on drop. Its log is kept for assertions and failures.
pub struct BotProcess {
    child: tokio::process::Child,
    pub base: String,
    pub log: PathBuf,
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // The test harness shows captured output only for failing tests.
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(150).collect();
        eprintln!("---- bot-runner log (last lines) ----");
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

pub struct Launch<'a> {
    /// Written to the token file, unless `None` (then no MUSICBOT_TOKEN_FILE is set).
    pub token: String,
    pub token_file: bool,
    /// Trust the simulator's CA through SSL_CERT_FILE (the usual way in these tests).
    pub ssl_cert_file: bool,
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
}

impl<'a> Launch<'a> {
    pub fn bot(app: u64) -> Self {
        Self { token: token_for(app), token_file: true, ssl_cert_file: true, args: vec!["run".into()], env: Vec::new() }
    }

    pub fn env(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }

    /// No SSL_CERT_FILE: the bot sees the system's roots only (plus what it is told).
    pub fn without_ssl_cert_file(mut self) -> Self {
        self.ssl_cert_file = false;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }
}

impl BotProcess {
    pub async fn start(sim: &DiscordSim, launch: Launch<'_>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{}\n", launch.token))?;
        let log = dir.path().join("bot-runner.log");
        let port = testkit::net::free_port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-runner"));
        cmd.args(&launch.args)
            .env_remove("DISCORD_TOKEN")
            .env_remove("MUSICBOT_MONGODB_URI")
            .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
            .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
            .env("MUSICBOT_HTTP_PORT", port.to_string())
            .env("MUSICBOT_YTDLP", testkit::bins::yt_dlp()?)
            // The tone servers are on loopback, which /play refuses unless allowed.
            .env("MUSICBOT_MEDIA_ALLOW", "127.0.0.0/8")
            .env("RUST_LOG", "info,bot_runner=debug,serenity=warn,songbird=warn")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::OpenOptions::new().append(true).open(&log)?))
            .kill_on_drop(true);
        // The voice gateway's certificate comes from the simulator's CA.
        if launch.ssl_cert_file {
            cmd.env("SSL_CERT_FILE", sim.ca_file());
        } else {
            cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        }
        if launch.token_file {
            cmd.env("MUSICBOT_TOKEN_FILE", &token_file);
        } else {
            cmd.env_remove("MUSICBOT_TOKEN_FILE");
        }
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting bot-runner")?;
        Ok(Self { child, base: format!("http://127.0.0.1:{port}"), log, token: launch.token, _dir: dir })
    }

    /// The bot's HTTP endpoints.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.base)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub async fn json(&self, path: &str) -> Result<serde_json::Value> {
        let (code, body) = self.get(path).await?;
        if code != 200 {
            bail!("GET {path} answered {code}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Waits until `/ready` answers 200 (the gateway is READY).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = self.get("/ready").await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("bot-runner exited with {status}:\n{}", self.logs());
            }
            if Instant::now() > deadline {
                bail!("bot-runner not ready after {WAIT:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub async fn terminate(&mut self) -> Result<(std::process::ExitStatus, Duration)> {
        let started = Instant::now();
        let ok = std::process::Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?.success();
        if !ok {
            bail!("kill -TERM failed");
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok((status, started.elapsed()))
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(timeout, self.child.wait()).await??)
    }
}

/// The usual scene: the one-guild world, the tone server, and a ready bot.
pub struct Scene {
    pub sim: DiscordSim,
    pub tones: Tones,
    pub bot: BotProcess,
}

impl Scene {
    pub async fn start(launch: Launch<'_>) -> Result<Self> {
        let sim = world().start().await?;
        let tones = Tones::start().await?;
        let mut bot = BotProcess::start(&sim, launch).await?;
        bot.wait_ready().await?;
        Ok(Self { sim, tones, bot })
    }
}

/// Alice asks for a 60 s 440 Hz tone; returns once a second of it was heard.
pub async fn start_playing(sim: &DiscordSim, b: &discord_sim::Bot<'_>, tones: &Tones) -> Result<()> {
    let i = b.inject_interaction(play(&tones.wav(440, 60)))?;
    sim.wait_reply(i.id, WAIT).await?;
    b.wait_for_audio(GUILD, 1.0, WAIT).await?;
    Ok(())
}

/// Waits until `f` holds, polling.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dominant frequency of the newest `seconds` of audible audio the simulator kept.
pub fn recent_hz(samples: &[f32], seconds: f64) -> Option<f64> {
    let n = ((seconds * 48_000.0) as usize).min(samples.len());
    discord_sim::audio::dominant_frequency(&samples[samples.len() - n..], 48_000)
}

/// RMS of the newest `seconds` of audible audio.
pub fn recent_rms(samples: &[f32], seconds: f64) -> f64 {
    let n = ((seconds * 48_000.0) as usize).min(samples.len()).max(1);
    let tail = &samples[samples.len().saturating_sub(n)..];
    (tail.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / tail.len() as f64).sqrt()
}

pub fn near(hz: Option<f64>, want: f64) -> bool {
    hz.is_some_and(|h| (h - want).abs() <= 5.0)
}
