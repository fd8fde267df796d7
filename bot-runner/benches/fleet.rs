//! Fleet mode following MongoDB (`cargo bench -p bot-runner --bench fleet`): the release
//! `bot-runner fleet` against SecantusDB and the Discord simulator. Records are inserted one
//! at a time while the fleet runs; each is timed from the insert's acknowledgement to the
//! simulator seeing that bot's gateway identified and open (READY sent).
//! `BENCH_INSERTS` (default 100) sets the count. Results go to stdout; docs/benchmarks.md
//! keeps the figures.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use discord_sim::{BotSpec, DiscordSim, GuildSpec};
use mongodb::bson::{Document, doc};
use testkit::mongo::MongoServer;

const BASE_APP: u64 = 970_000_000_000_000_001;
const GUILD: u64 = 980_000_000_000_000_001;

fn token(app: u64) -> String {
    format!("{}.Bench.s3cret-{app}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(app.to_string()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench(inserts: u64) -> Result<()> {
    let apps: Vec<u64> = (0..inserts).map(|i| BASE_APP + i).collect();
    let mut builder = DiscordSim::builder().guild(GuildSpec::new(GUILD, "bench").text_channel(GUILD + 1, "text"));
    for app in &apps {
        builder = builder.bot(BotSpec::new(token(*app)).application_id(*app).user_id(*app).in_guild(GUILD));
    }
    let sim = builder.start().await?;
    let mongo = MongoServer::start().await?;
    let db_name = "fleet_bench";
    let records = mongo.client().await?.database(db_name).collection::<Document>("MusicBotDB");

    let dir = tempfile::tempdir()?;
    let port = testkit::net::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bot-runner"))
        .arg("fleet")
        .env_remove("DISCORD_TOKEN")
        .env("MUSICBOT_MONGODB_URI", format!("mongodb://127.0.0.1:{}/{db_name}?directConnection=true", mongo.port()))
        .env("MUSICBOT_SYNC_MODE", "watch")
        .env("MUSICBOT_DISCORD_API_URL", sim.api_url())
        .env("MUSICBOT_HTTP_HOST", "127.0.0.1")
        .env("MUSICBOT_HTTP_PORT", port.to_string())
        .env("SSL_CERT_FILE", sim.ca_file())
        .env("RUST_LOG", "warn")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting bot-runner fleet")?;
    // Ready once it follows the (empty) collection.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.get(format!("http://127.0.0.1:{port}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        anyhow::ensure!(Instant::now() < deadline, "the fleet did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut took = Vec::new();
    for app in &apps {
        let record =
            doc! {"name": format!("bench {app}"), "clientId": app.to_string(), "token": token(*app), "isActive": true};
        records.insert_one(record).await?;
        let inserted = Instant::now();
        sim.bot(&token(*app)).wait_ready(Duration::from_secs(30)).await?;
        took.push(inserted.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fleet mode, insert → bot READY over {inserts} inserts (one at a time, the fleet growing to {inserts} bots):"
    );
    println!(
        "  p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms   (goal: p99 ≤ 1 s)",
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().unwrap())
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes harness flags (`--bench`); there is nothing to select.
    let inserts = std::env::var("BENCH_INSERTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(bench(inserts))
}
