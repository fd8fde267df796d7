//! Guild join/leave → the seed's `ServerMusicBotDB` documents, and `guildCount`.

use discord_sim::GuildSpec;
use mongodb::bson::{Document, doc, oid::ObjectId};
use testkit::mongo::MongoServer;

use crate::support::*;

const GUILD2: u64 = 940_000_000_000_000_001;

#[tokio::test]
async fn joins_and_leaves_are_written_to_mongodb() -> anyhow::Result<()> {
    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("tracking");
    let db = mongo.client().await?.database(&db_name);
    let bot_id = ObjectId::new();
    db.collection::<Document>("MusicBotDB")
        .insert_one(doc! {"_id": bot_id, "name": "Music Bot #1", "clientId": APP.to_string(), "token": "unused", "isActive": true, "guildCount": 0})
        .await?;
    let servers = db.collection::<Document>("ServerMusicBotDB");
    let entry = |g: u64| {
        let servers = servers.clone();
        async move { servers.find_one(doc! {"serverId": g.to_string(), "musicBotId": bot_id}).await.ok().flatten() }
    };
    let guild_count = || {
        let db = db.clone();
        async move {
            db.collection::<Document>("MusicBotDB")
                .find_one(doc! {"_id": bot_id})
                .await
                .ok()
                .flatten()?
                .get_i64("guildCount")
                .ok()
        }
    };

    let sim = world().guild(GuildSpec::new(GUILD2, "Second").text_channel(GUILD2 + 1, "chat")).start().await?;
    let uri = format!("mongodb://127.0.0.1:{}/{db_name}?directConnection=true", mongo.port());
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_MONGODB_URI", uri)).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);

    let first =
        eventually("GUILD ACTIVE", WAIT, async || entry(GUILD).await.filter(|d| d.get_str("status") == Ok("ACTIVE")))
            .await?;
    assert!(first.get_datetime("activatedAt").is_ok(), "{first}");
    eventually("guildCount 1", WAIT, async || (guild_count().await == Some(1)).then_some(())).await?;

    b.join_guild(sim.guild(GUILD2).unwrap());
    eventually("GUILD2 ACTIVE", WAIT, async || entry(GUILD2).await.filter(|d| d.get_str("status") == Ok("ACTIVE")))
        .await?;
    eventually("guildCount 2", WAIT, async || (guild_count().await == Some(2)).then_some(())).await?;

    assert!(b.leave_guild(GUILD));
    let removed =
        eventually("GUILD REMOVED", WAIT, async || entry(GUILD).await.filter(|d| d.get_str("status") == Ok("REMOVED")))
            .await?;
    assert!(removed.get_datetime("removedAt").is_ok(), "{removed}");
    assert_eq!(removed.get_datetime("activatedAt")?, first.get_datetime("activatedAt")?, "history kept");
    eventually("guildCount 1", WAIT, async || (guild_count().await == Some(1)).then_some(())).await?;

    let status = bot.json("/status").await?;
    assert_eq!(status["guilds"], 1, "{status}");
    assert!(!bot.logs().contains(&bot.token), "the token never reaches the log");
    Ok(())
}

#[tokio::test]
async fn without_mongodb_the_bot_runs_all_the_same() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    // A URI nobody listens on: tracking fails, the music does not.
    let dead = format!(
        "mongodb://127.0.0.1:{}/x?directConnection=true&serverSelectionTimeoutMS=500",
        testkit::net::free_port()
    );
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_MONGODB_URI", dead)).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let i = b.inject_interaction(play(&tones.wav(440, 10)))?;
    sim.wait_reply(i.id, WAIT).await?;
    let heard = b.wait_for_audio(GUILD, 1.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0));
    assert!(bot.logs().contains("guilds are not tracked"), "{}", bot.logs());
    Ok(())
}

/// As in a pod: no MongoDB URI, and `/status` says which guilds the bot is in, which the
/// operator writes to MongoDB for it.
#[tokio::test]
async fn status_lists_the_guilds_the_bot_is_in_for_the_operator() -> anyhow::Result<()> {
    let sim = world().guild(GuildSpec::new(GUILD2, "Second").text_channel(GUILD2 + 1, "chat")).start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let guild_ids = |want: Vec<u64>| {
        let want: Vec<String> = want.iter().map(u64::to_string).collect();
        let bot = &bot;
        async move {
            let status = bot.json("/status").await.ok()?;
            let mut ids: Vec<String> = serde_json::from_value(status["bots"][0]["guildIds"].clone()).ok()?;
            ids.sort();
            (ids == want).then_some(())
        }
    };
    eventually("guildIds [GUILD]", WAIT, async || guild_ids(vec![GUILD]).await).await?;
    b.join_guild(sim.guild(GUILD2).unwrap());
    let mut both = vec![GUILD, GUILD2];
    both.sort_by_key(u64::to_string);
    eventually("guildIds [GUILD, GUILD2]", WAIT, async || guild_ids(both.clone()).await).await?;
    assert!(b.leave_guild(GUILD));
    eventually("guildIds [GUILD2]", WAIT, async || guild_ids(vec![GUILD2]).await).await?;
    assert!(!bot.logs().contains("MongoDB"), "no database in sight: {}", bot.logs());
    Ok(())
}
