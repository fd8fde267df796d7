//! The multi-bot mode, as the seed ran: one process, bots from MongoDB (plaintext and
//! encrypted tokens) and from a token file, three bots playing in three voice channels of
//! one guild at once.

use discord_sim::{DiscordSim, GuildSpec, SlashCommand, UserSpec};
use mongodb::bson::{Document, doc};
use musicbot_db::TokenCipher;
use testkit::mongo::MongoServer;

use crate::support::*;

const APP2: u64 = APP + 1;
const APP3: u64 = APP + 2;
const VOICE3: u64 = VOICE2 + 1;
const CAROL: u64 = BOB + 1;

#[tokio::test]
async fn three_bots_in_one_process_play_at_once() -> anyhow::Result<()> {
    let guild = GuildSpec::new(GUILD, "Test guild")
        .text_channel(TEXT, "general")
        .voice_channel(VOICE, "Music")
        .voice_channel(VOICE2, "Lounge")
        .voice_channel(VOICE3, "Stage")
        .member(UserSpec::new(ALICE, "alice"))
        .member(UserSpec::new(BOB, "bob"))
        .member(UserSpec::new(CAROL, "carol"))
        .in_voice(ALICE, VOICE)
        .in_voice(BOB, VOICE2)
        .in_voice(CAROL, VOICE3);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = DiscordSim::builder()
        .guild(guild)
        .bot(bot_spec(APP).in_guild(GUILD))
        .bot(bot_spec(APP2).in_guild(GUILD))
        .bot(bot_spec(APP3).in_guild(GUILD))
        .start()
        .await?;
    let tones = Tones::start().await?;

    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("fleet");
    let db = mongo.client().await?.database(&db_name);
    let key = TokenCipher::generate_key();
    let cipher = TokenCipher::from_key_material(key.as_bytes())?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, &key)?;
    let bots = db.collection::<Document>("MusicBotDB");
    bots.insert_many([
        doc! {"name": "Music Bot #1", "clientId": APP.to_string(), "token": token_for(APP), "isActive": true, "guildCount": 0},
        doc! {"name": "Music Bot #2", "clientId": APP2.to_string(), "token": cipher.encrypt(&APP2.to_string(), &token_for(APP2)), "isActive": true},
        doc! {"name": "Retired", "clientId": "930000000000000099", "token": "x.y.z", "isActive": false},
        doc! {"name": "Broken", "clientId": 12345, "token": "x.y.z"},
    ])
    .await?;
    let third = dir.path().join("music-bot-3.token");
    std::fs::write(&third, token_for(APP3))?;

    let uri = format!("mongodb://127.0.0.1:{}/{db_name}?directConnection=true", mongo.port());
    let launch = Launch::bot(APP)
        .args(&["fleet", "--token-file", third.to_str().unwrap()])
        .env("MUSICBOT_MONGODB_URI", uri)
        .env("MUSICBOT_TOKEN_KEY_FILE", key_file.to_str().unwrap());
    let mut fleet = BotProcess::start(&sim, launch).await?;
    fleet.wait_ready().await?;

    let health = fleet.json("/health").await?;
    assert_eq!((health["status"].as_str(), health["activeBots"].as_u64()), (Some("ok"), Some(3)), "{health}");
    assert!(health["uptime"].as_f64().is_some(), "{health}");
    // Each bot's guild arrives (GUILD_CREATE) just after its READY.
    let listed = eventually("every bot's guild in /bots", WAIT, async || {
        fleet.json("/bots").await.ok().filter(|l| {
            l["bots"].as_array().is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["users"].as_u64() >= Some(3)))
        })
    })
    .await?;
    let mut names: Vec<&str> = listed["bots"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["Music Bot #1", "Music Bot #2", "music-bot-3"], "{listed}");
    for b in listed["bots"].as_array().unwrap() {
        assert_eq!(b["guilds"], 1, "{b}");
        assert!(b["users"].as_u64() >= Some(3), "the three listeners at least (Discord counts bots too): {b}");
    }
    let logs = fleet.logs();
    assert!(logs.contains("record skipped"), "{logs}");
    assert!(logs.contains("stored in plaintext"), "a warning for the plaintext token: {logs}");

    // Each listener asks a different bot; each bot joins that listener's channel.
    let asks = [(APP, ALICE, VOICE, 440), (APP2, BOB, VOICE2, 550), (APP3, CAROL, VOICE3, 660)];
    for (app, user, _, hz) in asks {
        let b = sim.bot(&token_for(app));
        let i =
            b.inject_interaction(SlashCommand::new(GUILD, TEXT, user, "play").option("query", tones.wav(hz, 30)))?;
        sim.wait_reply(i.id, WAIT).await?;
    }
    for (app, _, channel, hz) in asks {
        let b = sim.bot(&token_for(app));
        let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
        assert!(near(heard.dominant_hz, f64::from(hz)), "bot {app}: {heard:?}");
        assert_eq!(b.voice(GUILD).map(|v| v.channel_id), Some(channel));
    }
    for app in [APP, APP2, APP3] {
        assert!(!fleet.logs().contains(&token_for(app)), "a token reached the log");
    }
    Ok(())
}
