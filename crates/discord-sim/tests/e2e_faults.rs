//! The simulator's faults against unmodified serenity + songbird: while a tone plays, the
//! voice socket drops, the gateway drops, heartbeats go unacknowledged, and an admin moves the
//! bot. Asserts that the bot recovers and the audio keeps arriving, not the exact sequence
//! (serenity's resume is timing-sensitive).
//!
//! One test per binary: `SSL_CERT_FILE` is set before the runtime starts any thread.

mod support;

use std::time::Duration;

use discord_sim::{Bot, SimTls, SlashCommand};
use serenity::all::{ClientBuilder, Context, EventHandler, GatewayIntents, GuildId, HttpBuilder, Interaction};
use serenity::async_trait;
use songbird::SerenityInit;
use songbird::input::{Input, RawAdapter};
use support::*;

/// 48 kHz stereo f32 samples of a tone, endless enough for the test.
fn tone(hz: f32, seconds: f32) -> Input {
    let frames = (seconds * 48_000.0) as usize;
    let mut bytes = Vec::with_capacity(frames * 8);
    for i in 0..frames {
        let s = 0.4 * (2.0 * std::f32::consts::PI * hz * i as f32 / 48_000.0).sin();
        bytes.extend_from_slice(&s.to_le_bytes());
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    RawAdapter::new(std::io::Cursor::new(bytes), 48_000, 2).into()
}

struct ToneBot;

#[async_trait]
impl EventHandler for ToneBot {
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(cmd) = interaction else {
            return;
        };
        cmd.defer(&ctx.http).await.expect("deferring");
        let manager = songbird::get(&ctx).await.expect("songbird is registered");
        let call =
            manager.join(GuildId::new(GUILD), serenity::all::ChannelId::new(VOICE)).await.expect("joining voice");
        call.lock().await.play_input(tone(660.0, 60.0));
        let edit = serenity::all::EditInteractionResponse::new().content("playing");
        cmd.edit_response(&ctx.http, edit).await.expect("answering");
    }
}

/// Waits for `more` seconds of audio beyond what arrived so far.
async fn more_audio(bot: &Bot<'_>, more: f64) -> f64 {
    let before = bot.audio(GUILD).audible_seconds;
    let after = bot.wait_for_audio(GUILD, before + more, Duration::from_secs(30)).await.unwrap();
    let hz = after.dominant_hz.unwrap();
    assert!((hz - 660.0).abs() <= 5.0, "{after:?}");
    after.audible_seconds
}

#[test]
fn serenity_and_songbird_recover_from_the_simulators_faults() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    crypto();
    let tls = SimTls::generate().unwrap();
    // SAFETY: no other thread exists yet; this binary holds a single test.
    unsafe { std::env::set_var("SSL_CERT_FILE", tls.ca_file()) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(faults(tls));
}

async fn faults(tls: SimTls) {
    let sim = world().tls(tls).heartbeat_interval(Duration::from_millis(1_000)).start().await.unwrap();
    let bot = sim.bot(TOKEN);
    let http = HttpBuilder::new(TOKEN).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    let mut client = ClientBuilder::new_with_http(http, GatewayIntents::GUILDS | GatewayIntents::GUILD_VOICE_STATES)
        .event_handler(ToneBot)
        .register_songbird()
        .await
        .unwrap();
    let shards = client.shard_manager.clone();
    let running = tokio::spawn(async move { client.start().await });
    bot.wait_ready(WAIT).await.unwrap();
    let play = bot.inject_interaction(SlashCommand::new(GUILD, TEXT, ALICE, "play")).unwrap();
    sim.wait_reply(play.id, Duration::from_secs(30)).await.unwrap();
    more_audio(&bot, 1.0).await;

    // The voice websocket drops: songbird resumes it; UDP audio goes on.
    assert!(bot.drop_voice(GUILD));
    bot.wait_voice_connected(GUILD, Duration::from_secs(30)).await.unwrap();
    more_audio(&bot, 1.0).await;
    eprintln!("after voice drop: {:?}", bot.voice(GUILD));

    // The gateway drops: serenity reconnects (resume or identify).
    let sessions = bot.identifies() + bot.resumes();
    bot.drop_gateway();
    bot.wait_connections(sessions + 1, Duration::from_secs(30)).await.unwrap();
    more_audio(&bot, 1.0).await;

    // Heartbeats go unacknowledged: serenity treats the connection as a zombie and reconnects.
    let sessions = bot.identifies() + bot.resumes();
    bot.set_heartbeat_acks(false);
    bot.wait_connections(sessions + 1, Duration::from_secs(30)).await.unwrap();
    bot.set_heartbeat_acks(true);

    // An admin moves the bot: songbird follows to the new channel and keeps playing.
    bot.move_to(GUILD, Some(VOICE2)).unwrap();
    let moved = bot.wait_voice_connected(GUILD, Duration::from_secs(30)).await.unwrap();
    assert_eq!(moved.channel_id, VOICE2);
    let total = more_audio(&bot, 1.0).await;
    eprintln!("identifies {} resumes {} audio {:?}", bot.identifies(), bot.resumes(), bot.audio(GUILD));
    assert!(total >= 4.0);
    let audio = bot.audio(GUILD);
    assert!(audio.streams >= 2, "the move starts a new RTP stream: {audio:?}");
    assert!(audio.missing_frames < 500, "timestamps of different streams are not compared: {audio:?}");
    assert!(sim.unknown_requests().is_empty(), "{:#?}", sim.unknown_requests());
    assert!(sim.payload_errors().is_empty(), "{:#?}", sim.payload_errors());

    shards.shutdown_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
