//! Fleet mode following MongoDB live (SecantusDB's change streams): records inserted,
//! renamed, given a new token, deactivated and deleted change the running bots while the
//! process runs on; malformed records are skipped while the good ones run; an emptied
//! collection is held as a mass deletion; a bot the simulator refuses is retried alone; SecantusDB restarting mid-stream
//! loses no change and replays none.

use std::time::Duration;

use base64::Engine;
use discord_sim::{BotSpec, DiscordSim, DiscordSimBuilder, SlashCommand};
use mongodb::bson::{Document, doc};
use mongodb::{Collection, Database};
use musicbot_db::TokenCipher;
use serde_json::Value;
use testkit::mongo::MongoServer;

use crate::support::*;

const APP2: u64 = APP + 1;
const APP3: u64 = APP + 2;

/// A second token of `app`'s, as after a reset in the developer portal.
fn rotated_token(app: u64) -> String {
    let id = base64::engine::general_purpose::STANDARD_NO_PAD.encode(app.to_string());
    format!("{id}.Rotated.s3cr3t-{app}-second-do-not-leak")
}

fn record(app: u64, name: &str, token: &str) -> Document {
    doc! {"name": name, "clientId": app.to_string(), "token": token, "isActive": true}
}

fn sim_with(apps: &[u64]) -> DiscordSimBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = DiscordSim::builder().guild(guild().in_voice(BOB, VOICE2));
    for app in apps {
        b = b.bot(bot_spec(*app).in_guild(GUILD));
    }
    b
}

/// A fleet following the records' database `db_name`, with no token file.
async fn fleet_on(sim: &DiscordSim, mongo_port: u16, db_name: &str, key_file: &str) -> anyhow::Result<BotProcess> {
    fleet_with(sim, mongo_port, db_name, key_file, &[]).await
}

async fn fleet_with(
    sim: &DiscordSim,
    mongo_port: u16,
    db_name: &str,
    key_file: &str,
    env: &[(&'static str, &str)],
) -> anyhow::Result<BotProcess> {
    let uri = format!("mongodb://127.0.0.1:{mongo_port}/{db_name}?directConnection=true");
    let mut launch = Launch::bot(APP)
        .args(&["fleet"])
        .env("MUSICBOT_MONGODB_URI", uri)
        .env("MUSICBOT_TOKEN_KEY_FILE", key_file)
        .env("MUSICBOT_SYNC_MODE", "watch");
    for (k, v) in env {
        launch = launch.env(k, *v);
    }
    launch.token_file = false;
    let mut fleet = BotProcess::start(sim, launch).await?;
    fleet.wait_ready().await?;
    Ok(fleet)
}

/// `/bots` once `want` holds for it.
async fn bots_when(fleet: &BotProcess, what: &str, want: impl Fn(&[Value]) -> bool) -> anyhow::Result<Vec<Value>> {
    eventually(what, WAIT, async || {
        let listed = fleet.json("/bots").await.ok()?;
        let bots = listed["bots"].as_array()?.clone();
        want(&bots).then_some(bots)
    })
    .await
}

fn entry(bots: &[Value], app: u64) -> Option<&Value> {
    bots.iter().find(|b| b["clientId"].as_str().and_then(|c| c.parse::<u64>().ok()) == Some(app))
}

fn running(bots: &[Value], app: u64) -> bool {
    entry(bots, app).is_some_and(|b| b["state"] == "running" && b["guilds"] == 1)
}

struct Keys {
    cipher: TokenCipher,
    file: String,
    _dir: tempfile::TempDir,
}

fn keys() -> anyhow::Result<Keys> {
    let key = TokenCipher::generate_key();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("key");
    std::fs::write(&file, &key)?;
    Ok(Keys { cipher: TokenCipher::from_key_material(key.as_bytes())?, file: file.display().to_string(), _dir: dir })
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test]
async fn records_inserted_renamed_rotated_deactivated_and_deleted_change_the_bots_without_a_restart()
-> anyhow::Result<()> {
    let rotated = rotated_token(APP);
    let sim = sim_with(&[APP, APP2])
        .bot(BotSpec::new(rotated.clone()).application_id(APP).user_id(APP).name(format!("bot-{APP}")).in_guild(GUILD))
        .start()
        .await?;
    let tones = Tones::start().await?;
    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("fleet_live");
    let db = mongo.client().await?.database(&db_name);
    let records: Collection<Document> = db.collection("MusicBotDB");
    let keys = keys()?;
    // Removing both bots of a fleet of two within a minute is a mass deletion (the next
    // test holds one); here it must go.
    let fleet =
        fleet_with(&sim, mongo.port(), &db_name, &keys.file, &[("MUSICBOT_SYNC_ALLOW_MASS_DELETE", "true")]).await?;
    let pid = fleet.pid();
    assert_eq!(fleet.json("/health").await?["activeBots"], 0, "no record yet");

    // Insert (encrypted) → the bot connects and plays, in the same process.
    let first = sim.bot(&token_for(APP));
    let id = records.insert_one(record(APP, "Radio", &keys.cipher.encrypt(&APP.to_string(), &token_for(APP)))).await?;
    let id = id.inserted_id;
    first.wait_ready(WAIT).await?;
    bots_when(&fleet, "the inserted bot running", |b| running(b, APP)).await?;
    let i = first.inject_interaction(play(&tones.wav(440, 60)))?;
    let reply = sim.wait_reply(i.id, WAIT).await?.text();
    assert!(reply.contains("Playing"), "{reply}");
    let heard = first.wait_for_audio(GUILD, 1.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");

    // A plaintext record beside it works too, and says it is plaintext.
    records.insert_one(record(APP2, "Second", &token_for(APP2))).await?;
    sim.bot(&token_for(APP2)).wait_ready(WAIT).await?;
    bots_when(&fleet, "both bots running", |b| running(b, APP) && running(b, APP2)).await?;
    assert!(fleet.logs().contains("stored in plaintext"), "{}", fleet.logs());

    // Rename → the new name, no reconnect.
    let identifies = first.identifies();
    records.update_one(doc! {"_id": &id}, doc! {"$set": {"name": "Radio One"}}).await?;
    bots_when(&fleet, "the new name", |b| entry(b, APP).is_some_and(|e| e["name"] == "Radio One")).await?;
    assert_eq!(first.identifies(), identifies, "a rename must not reconnect the bot");

    // A presence on the record → sent on the open session (op 3), no reconnect either.
    let presence = doc! {"status": "dnd", "activity": {"type": "watching", "name": "the queue"}};
    records.update_one(doc! {"_id": &id}, doc! {"$set": {"presence": presence}}).await?;
    eventually("the record's presence sent", WAIT, async || {
        first
            .gateway_frames()
            .into_iter()
            .find(|f| f.op == 3 && f.d["status"] == "dnd" && f.d["activities"][0]["name"] == "the queue")
    })
    .await?;
    assert_eq!(first.identifies(), identifies, "a presence must not reconnect the bot");

    // Rotate the token → the old session goes, the new token connects.
    records
        .update_one(doc! {"_id": &id}, doc! {"$set": {"token": keys.cipher.encrypt(&APP.to_string(), &rotated)}})
        .await?;
    let second = sim.bot(&rotated);
    second.wait_ready(WAIT).await?;
    first.wait_disconnected(WAIT).await?;
    bots_when(&fleet, "the rotated bot running under its name", |b| {
        running(b, APP) && entry(b, APP).is_some_and(|e| e["name"] == "Radio One")
    })
    .await?;
    let i = second.inject_interaction(play(&tones.wav(550, 60)))?;
    let reply = sim.wait_reply(i.id, WAIT).await?.text();
    assert!(reply.contains("Playing"), "{reply}");
    // Both tokens are one bot user to the simulator, which keeps one recording for it:
    // the newest second is the new token's.
    eventually("the rotated token's 550 Hz", WAIT, async || {
        near(recent_hz(&second.audio_samples(GUILD), 1.0), 550.0).then_some(())
    })
    .await?;
    assert!(second.voice(GUILD).is_some());

    // Deactivate → it leaves voice and disconnects; the other bot stays.
    let other_identifies = sim.bot(&token_for(APP2)).identifies();
    records.update_one(doc! {"_id": &id}, doc! {"$set": {"isActive": false}}).await?;
    second.wait_disconnected(WAIT).await?;
    assert!(second.voice(GUILD).is_none(), "the bot left voice before disconnecting");
    bots_when(&fleet, "the deactivated bot gone", |b| entry(b, APP).is_none() && running(b, APP2)).await?;

    // Delete the other → gone from /bots; the process is the one started at first.
    records.delete_one(doc! {"clientId": APP2.to_string()}).await?;
    bots_when(&fleet, "an empty fleet", |b| b.is_empty()).await?;
    assert_eq!(sim.bot(&token_for(APP2)).identifies(), other_identifies, "the other bot never reconnected");
    assert_eq!(fleet.pid(), pid);
    assert_eq!(fleet.json("/health").await?["status"], "ok");
    let text = fleet.get("/metrics").await?.1;
    assert!(metric(&text, "musicbot_fleet_stream_events_total") >= 6.0, "{text}");
    assert_eq!(metric(&text, "musicbot_fleet_up"), 1.0, "{text}");
    sim.bot(&token_for(APP2)).wait_disconnected(WAIT).await?;
    eventually("a deleted bot's series dropped", WAIT, async || {
        let text = fleet.get("/metrics").await.ok()?.1;
        (!text.contains(&format!("bot=\"{APP2}\""))).then_some(())
    })
    .await?;
    let logs = fleet.logs();
    for token in [token_for(APP), rotated, token_for(APP2)] {
        assert!(!logs.contains(&token), "a token reached the log");
    }
    Ok(())
}

#[tokio::test]
async fn fifty_malformed_records_beside_fifty_good_ones_and_an_emptied_collection_is_held() -> anyhow::Result<()> {
    const N: u64 = 50;
    let apps: Vec<u64> = (0..N).map(|i| APP + 100 + i).collect();
    let sim = sim_with(&apps).start().await?;
    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("fleet_mixed");
    let db = mongo.client().await?.database(&db_name);
    let records: Collection<Document> = db.collection("MusicBotDB");
    let mut docs = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        docs.push(record(*app, &format!("Good {i}"), &token_for(*app)));
        // Bad in every way the rules know: a missing token, a wrong type, a token of
        // another application, an id that is no snowflake, an undecryptable token.
        docs.push(match i % 5 {
            0 => doc! {"name": format!("Bad {i}"), "clientId": (APP + 900 + i as u64).to_string()},
            1 => doc! {"name": format!("Bad {i}"), "clientId": (APP + 900 + i as u64).to_string(), "token": 7},
            2 => record(APP + 900 + i as u64, &format!("Bad {i}"), &token_for(APP)),
            3 => doc! {"name": format!("Bad {i}"), "clientId": "12ab", "token": "x.y.z"},
            _ => record(APP + 900 + i as u64, &format!("Bad {i}"), "enc:v1:AAAA"),
        });
    }
    let keys = keys()?;
    let mut fleet = fleet_on(&sim, mongo.port(), &db_name, &keys.file).await?;
    // Inserted while the fleet runs: each record arrives as its own change.
    records.insert_many(docs).await?;
    bots_when(&fleet, "every good bot running", |b| b.len() == N as usize && apps.iter().all(|a| running(b, *a)))
        .await?;
    let text = fleet.get("/metrics").await?.1;
    assert_eq!(metric(&text, "musicbot_fleet_skipped_records_current"), N as f64, "{text}");
    assert_eq!(metric(&text, "musicbot_fleet_records "), N as f64, "{text}");
    assert!(fleet.logs().contains("record skipped"), "each skipped record is logged");

    // Emptying the collection is held as a mass deletion: every bot stays up.
    records.delete_many(doc! {}).await?;
    eventually("the deletion held", WAIT, async || {
        let text = fleet.get("/metrics").await.ok()?.1;
        (metric(&text, "musicbot_fleet_deletions_held") > 0.0).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bots = fleet.json("/bots").await?;
    let still = bots["bots"].as_array().unwrap().iter().filter(|b| b["state"] == "running").count();
    // The deletes arrive one change at a time, wait for the burst to settle and are held
    // together: none goes.
    assert_eq!(still as u64, N, "{bots}");
    let text = fleet.get("/metrics").await?.1;
    assert_eq!(metric(&text, "musicbot_fleet_deletions_held"), N as f64, "{text}");
    assert!(fleet.logs().contains("holding that as a mass deletion"), "{}", fleet.logs());
    fleet.wait_ready().await?;
    Ok(())
}

#[tokio::test]
async fn a_bot_the_gateway_refuses_is_retried_alone_and_reported_and_polling_works_too() -> anyhow::Result<()> {
    // APP3's token is shaped right but unknown to the simulator: its gateway closes with 4004.
    let sim = sim_with(&[APP, APP2]).start().await?;
    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("fleet_refused");
    let records: Collection<Document> = mongo.client().await?.database(&db_name).collection("MusicBotDB");
    records.insert_many([record(APP, "Good", &token_for(APP)), record(APP3, "Refused", &token_for(APP3))]).await?;
    let keys = keys()?;
    // Polling, as where the server has no change streams: the same rules, read every second.
    let polling = [("MUSICBOT_SYNC_MODE", "poll"), ("MUSICBOT_SYNC_POLL_INTERVAL_SECONDS", "1")];
    let fleet = fleet_with(&sim, mongo.port(), &db_name, &keys.file, &polling).await?;
    let bots = bots_when(&fleet, "one running, one failed", |b| {
        running(b, APP) && entry(b, APP3).is_some_and(|e| e["state"] == "failed")
    })
    .await?;
    let refused = entry(&bots, APP3).unwrap();
    assert!(refused["error"].as_str().is_some_and(|e| !e.is_empty()), "{refused}");
    // Retried with backoff (2 s, then 4 s…), and /health stays ok, naming it.
    eventually("a second attempt", WAIT, async || {
        let text = fleet.get("/metrics").await.ok()?.1;
        (metric(&text, "musicbot_fleet_bot_restarts_total") >= 2.0).then_some(())
    })
    .await?;
    let health = fleet.json("/health").await?;
    assert_eq!((health["status"].as_str(), health["activeBots"].as_u64()), (Some("ok"), Some(1)), "{health}");
    assert_eq!(health["failedBots"][0]["clientId"], APP3.to_string(), "{health}");
    let text = fleet.get("/metrics").await?.1;
    assert_eq!(metric(&text, "musicbot_fleet_bots{state=\"failed\"}"), 1.0, "{text}");
    // The good bot still answers.
    let i = sim.bot(&token_for(APP)).inject_interaction(SlashCommand::new(GUILD, TEXT, ALICE, "queue"))?;
    sim.wait_reply(i.id, WAIT).await?;
    // A record added while polling is picked up by the next read.
    records.insert_one(record(APP2, "Polled", &token_for(APP2))).await?;
    bots_when(&fleet, "the polled record running", |b| running(b, APP2)).await?;
    let text = fleet.get("/metrics").await?.1;
    assert!(metric(&text, "musicbot_fleet_resyncs_total{reason=\"poll\"}") >= 2.0, "{text}");
    assert!(!fleet.logs().contains(&token_for(APP3)), "a token reached the log");
    Ok(())
}

#[tokio::test]
async fn secantusdb_restarted_mid_stream_loses_no_change_and_replays_none() -> anyhow::Result<()> {
    let sim = sim_with(&[APP, APP2, APP3]).start().await?;
    let mut mongo = MongoServer::start().await?;
    let db_name = MongoServer::database_name("fleet_restart");
    let db: Database = mongo.client().await?.database(&db_name);
    let records: Collection<Document> = db.collection("MusicBotDB");
    records.insert_one(record(APP, "One", &token_for(APP))).await?;
    let keys = keys()?;
    let fleet = fleet_on(&sim, mongo.port(), &db_name, &keys.file).await?;
    bots_when(&fleet, "the first bot", |b| running(b, APP)).await?;

    // A change just before the restart, and one after it.
    records.insert_one(record(APP2, "Two", &token_for(APP2))).await?;
    mongo.restart().await?;
    let records: Collection<Document> = mongo.client().await?.database(&db_name).collection("MusicBotDB");
    records.insert_one(record(APP3, "Three", &token_for(APP3))).await?;
    records.update_one(doc! {"clientId": APP.to_string()}, doc! {"$set": {"name": "One again"}}).await?;
    bots_when(&fleet, "every change after the restart", |b| {
        running(b, APP2) && running(b, APP3) && entry(b, APP).is_some_and(|e| e["name"] == "One again")
    })
    .await?;
    // Nothing handled twice started a bot twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for app in [APP, APP2, APP3] {
        assert_eq!(sim.bot(&token_for(app)).identifies(), 1, "bot {app} connected more than once");
    }
    Ok(())
}
