//! End to end: an unmodified serenity + songbird bot, pointed at the simulator, registers a
//! command, answers `/play` by joining the caller's voice channel and playing a 440 Hz tone;
//! the simulator decrypts and decodes what arrives over UDP and measures it.
//!
//! One test per binary: `SSL_CERT_FILE` is set before the runtime starts any thread.

mod support;

use std::time::{Duration, Instant};

use discord_sim::{SimTls, SlashCommand};
use serenity::all::{
    ClientBuilder, Context, CreateCommand, EditInteractionResponse, EventHandler, GatewayIntents, GuildId, HttpBuilder,
    Interaction, Ready,
};
use serenity::async_trait;
use songbird::SerenityInit;
use songbird::input::Input;
use support::*;

const TONE_HZ: f64 = 440.0;

/// The smallest music bot: `/play` joins the caller's voice channel and plays the tone.
struct ToneBot;

#[async_trait]
impl EventHandler for ToneBot {
    async fn ready(&self, ctx: Context, _: Ready) {
        let play = CreateCommand::new("play").description("Play a 440 Hz test tone");
        GuildId::new(GUILD).set_commands(&ctx.http, vec![play]).await.expect("registering /play");
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Interaction::Command(cmd) = interaction else {
            return;
        };
        cmd.defer(&ctx.http).await.expect("deferring");
        let guild_id = cmd.guild_id.expect("a guild command");
        let channel =
            ctx.cache.guild(guild_id).and_then(|g| g.voice_states.get(&cmd.user.id).and_then(|v| v.channel_id));
        let reply = match channel {
            Some(channel) => {
                let manager = songbird::get(&ctx).await.expect("songbird is registered");
                let call = manager.join(guild_id, channel).await.expect("joining voice");
                call.lock().await.play_input(Input::from(discord_sim::tones::wav(TONE_HZ, 4.0)));
                format!("Playing a {TONE_HZ} Hz tone")
            }
            None => "Join a voice channel first".to_string(),
        };
        cmd.edit_response(&ctx.http, EditInteractionResponse::new().content(reply)).await.expect("answering");
    }
}

#[test]
fn a_serenity_songbird_bot_plays_a_tone_the_simulator_hears() {
    // RUST_LOG=songbird=debug shows the voice handshake when this fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    crypto();
    let tls = SimTls::generate().unwrap();
    // SAFETY: no other thread exists yet (the runtime is built below, and this binary holds a
    // single test), so nothing reads the environment concurrently.
    unsafe { std::env::set_var("SSL_CERT_FILE", tls.ca_file()) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(play_a_tone(tls));
}

async fn play_a_tone(tls: SimTls) {
    let sim = world().tls(tls).start().await.unwrap();
    let bot = sim.bot(TOKEN);

    let http = HttpBuilder::new(TOKEN).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    let mut client = ClientBuilder::new_with_http(http, GatewayIntents::GUILDS | GatewayIntents::GUILD_VOICE_STATES)
        .event_handler(ToneBot)
        .register_songbird()
        .await
        .expect("building the client");
    let shards = client.shard_manager.clone();
    let running = tokio::spawn(async move { client.start().await });

    bot.wait_ready(Duration::from_secs(30)).await.unwrap();
    sim.wait_for_request(Duration::from_secs(30), "the guild command registration", |r| {
        r.method == "PUT" && r.status == 200
    })
    .await
    .unwrap();
    assert_eq!(bot.commands(Some(GUILD))[0]["name"], "play");

    let started = Instant::now();
    let play = bot.inject_interaction(SlashCommand::new(GUILD, TEXT, ALICE, "play")).unwrap();
    let reply = sim.wait_reply(play.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(reply.content(), Some("Playing a 440 Hz tone"));

    let voice = bot.wait_voice_connected(GUILD, Duration::from_secs(30)).await.unwrap();
    assert_eq!((voice.channel_id, voice.mode.as_deref()), (VOICE, Some("aead_aes256_gcm_rtpsize")));
    let first = bot.wait_for_audio(GUILD, 1.0, Duration::from_secs(30)).await.unwrap();
    let to_first_second = started.elapsed();
    let stats = bot.wait_for_audio(GUILD, 3.0, Duration::from_secs(30)).await.unwrap();
    eprintln!("first second of audio after {to_first_second:?}: {first:?}\nafter 3 s: {stats:?}");

    let hz = first.dominant_hz.expect("audible audio has a frequency");
    assert!((hz - TONE_HZ).abs() <= 5.0, "dominant frequency {hz} Hz, expected {TONE_HZ} ± 5 Hz");
    let hz = stats.dominant_hz.unwrap();
    assert!((hz - TONE_HZ).abs() <= 5.0, "dominant frequency over 3 s {hz} Hz");
    assert_eq!(
        (stats.gaps, stats.streams, stats.decrypt_failures, stats.decode_failures),
        (0, 1, 0, 0),
        "one uninterrupted stream: {stats:?}"
    );
    assert_eq!(bot.voice(GUILD).unwrap().speaking, Some(1), "songbird announced it is speaking");
    assert!(sim.guild(GUILD).unwrap().voice_channel_of(bot.user_id()) == Some(VOICE));

    assert!(sim.unknown_requests().is_empty(), "routes the simulator lacks: {:#?}", sim.unknown_requests());
    assert!(sim.payload_errors().is_empty(), "payloads serenity/songbird would misread: {:#?}", sim.payload_errors());

    shards.shutdown_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
