//! Command registration and what a user gets for a mistake.

use std::time::Duration;

use discord_sim::DiscordSim;
use mongodb::bson::{Document, doc};
use musicbot_db::TokenCipher;
use testkit::mongo::MongoServer;

use crate::support::*;

/// Every command the bot registers: the seed's thirteen, then the queue's and settings.
const COMMANDS: [&str; 21] = [
    "play",
    "skip",
    "stop",
    "pause",
    "resume",
    "queue",
    "nowplaying",
    "volume",
    "loop",
    "shuffle",
    "remove",
    "seek",
    "leave",
    "previous",
    "replay",
    "playnext",
    "move",
    "clear",
    "skipto",
    "settings",
    "search",
];

#[tokio::test]
async fn commands_are_registered_once_and_not_again_on_restart() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let token = token_for(APP);
    let puts = |sim: &discord_sim::DiscordSim| {
        sim.requests().iter().filter(|r| r.method == "PUT" && r.route().contains("/commands")).count()
    };
    let gets = |sim: &discord_sim::DiscordSim| {
        sim.requests().iter().filter(|r| r.method == "GET" && r.route().contains("/commands")).count()
    };

    let mut first = BotProcess::start(&sim, Launch::bot(APP)).await?;
    first.wait_ready().await?;
    eventually("commandsDeployed", WAIT, async || {
        first.json("/status").await.ok().filter(|s| s["commandsDeployed"] == true)
    })
    .await?;
    assert_eq!(puts(&sim), 1, "the first start overwrites once");
    let names: Vec<String> =
        sim.bot(&token).commands(None).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    for n in COMMANDS {
        assert!(names.contains(&n.to_string()), "/{n} registered globally: {names:?}");
    }
    assert_eq!(names.len(), COMMANDS.len(), "{names:?}");
    drop(first);

    let reads_before = gets(&sim);
    let mut second = BotProcess::start(&sim, Launch::bot(APP)).await?;
    second.wait_ready().await?;
    eventually("the restarted bot to read its commands", WAIT, async || (gets(&sim) > reads_before).then_some(()))
        .await?;
    eventually("commandsDeployed", WAIT, async || {
        second.json("/status").await.ok().filter(|s| s["commandsDeployed"] == true)
    })
    .await?;
    assert_eq!(puts(&sim), 1, "unchanged commands are not overwritten on restart");
    Ok(())
}

#[tokio::test]
async fn guild_ids_register_guild_commands_and_the_cli_clears_them() -> anyhow::Result<()> {
    let sim = world().start().await?;
    let token = token_for(APP);
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_GUILD_IDS", GUILD.to_string())).await?;
    bot.wait_ready().await?;
    eventually("guild commands", WAIT, async || {
        (sim.bot(&token).commands(Some(GUILD)).len() == COMMANDS.len()).then_some(())
    })
    .await?;
    assert!(sim.bot(&token).commands(None).is_empty(), "nothing global");
    drop(bot);

    // `bot-runner commands clear --client-id X --guild G`, the seed's clear script.
    let mut clear = BotProcess::start(
        &sim,
        Launch::bot(APP).args(&["commands", "clear", "--client-id", &APP.to_string(), "--guild", &GUILD.to_string()]),
    )
    .await?;
    let status = clear.wait_exit(WAIT).await?;
    assert!(status.success(), "{}", clear.logs());
    assert!(clear.logs().contains("commands cleared"), "{}", clear.logs());
    assert!(sim.bot(&token).commands(Some(GUILD)).is_empty());

    let mut deploy = BotProcess::start(&sim, Launch::bot(APP).args(&["commands", "deploy"])).await?;
    assert!(deploy.wait_exit(WAIT).await?.success(), "{}", deploy.logs());
    assert_eq!(sim.bot(&token).commands(None).len(), COMMANDS.len(), "deploy without --guild is global");
    let mut again = BotProcess::start(&sim, Launch::bot(APP).args(&["commands", "deploy"])).await?;
    assert!(again.wait_exit(WAIT).await?.success());
    assert!(again.logs().contains("already up to date"), "{}", again.logs());
    Ok(())
}

#[tokio::test]
async fn bad_arguments_get_a_polite_ephemeral_reply() -> anyhow::Result<()> {
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    let playing = b.inject_interaction(play(&tones.wav(440, 60)))?;
    sim.wait_reply(playing.id, WAIT).await?;

    let cases = [
        (cmd("volume").option("level", 500), "0 to 200"),
        (cmd("seek").option("position", "soon"), "`soon`"),
        (cmd("remove").option("position", 99), "no track 99"),
        (cmd("loop").option("mode", 7), "pick from the choices"),
        (cmd("queue").option("page", -1), "Pages start at 1"),
        (play("   "), "URL or some words"),
        (play("http://"), "URL"),
        (discord_sim::SlashCommand::new(GUILD, TEXT, BOB, "skip"), "Join me in"),
        (discord_sim::SlashCommand::new(GUILD, TEXT, BOB, "play").option("query", "anything"), "Join a voice channel"),
    ];
    for (c, want) in cases {
        let name = c.clone();
        let i = b.inject_interaction(c)?;
        let r = sim.wait_reply(i.id, WAIT).await?;
        assert!(r.ephemeral(), "{name:?}: the reply is for the caller alone: {r:?}");
        assert!(r.text().contains(want), "{name:?}: {:?} should mention {want:?}", r.text());
    }
    // Still playing: mistakes change nothing.
    let heard = b.wait_for_audio(GUILD, 1.0, Duration::from_secs(20)).await?;
    assert!(near(heard.dominant_hz, 440.0));
    Ok(())
}

#[tokio::test]
async fn the_command_scripts_cover_every_bot_in_mongodb() -> anyhow::Result<()> {
    let (app2, retired) = (APP + 1, APP + 2);
    let sim = DiscordSim::builder()
        .guild(guild())
        .bot(bot_spec(APP).in_guild(GUILD))
        .bot(bot_spec(app2).in_guild(GUILD))
        .bot(bot_spec(retired).in_guild(GUILD))
        .start()
        .await?;
    let mongo = MongoServer::shared().await;
    let db_name = MongoServer::database_name("scripts");
    let db = mongo.client().await?.database(&db_name);
    let key = TokenCipher::generate_key();
    let cipher = TokenCipher::from_key_material(key.as_bytes())?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("key"), &key)?;
    db.collection::<Document>("MusicBotDB")
        .insert_many([
            doc! {"name": "One", "clientId": APP.to_string(), "token": token_for(APP), "isActive": true},
            doc! {"name": "Two", "clientId": app2.to_string(), "token": cipher.encrypt(&app2.to_string(), &token_for(app2)), "isActive": true},
            doc! {"name": "Retired", "clientId": retired.to_string(), "token": token_for(retired), "isActive": false},
        ])
        .await?;
    let uri = format!("mongodb://127.0.0.1:{}/{db_name}?directConnection=true", mongo.port());
    let run = async |args: &[&str]| -> anyhow::Result<String> {
        let mut launch = Launch::bot(APP).args(args).env("MUSICBOT_MONGODB_URI", uri.clone());
        launch.token_file = false;
        launch = launch.env("MUSICBOT_TOKEN_KEY_FILE", dir.path().join("key").to_str().unwrap());
        let mut p = BotProcess::start(&sim, launch).await?;
        let status = p.wait_exit(WAIT).await?;
        anyhow::ensure!(status.success(), "{args:?} failed:\n{}", p.logs());
        Ok(p.logs())
    };
    let count = |app: u64| sim.bot(&token_for(app)).commands(None).len();

    let out = run(&["commands", "deploy"]).await?;
    assert!(out.contains("One (") && out.contains("Two ("), "{out}");
    assert_eq!(
        (count(APP), count(app2), count(retired)),
        (COMMANDS.len(), COMMANDS.len(), 0),
        "every active bot, and only those"
    );

    let out = run(&["commands", "clear", "--client-id", &app2.to_string()]).await?;
    assert!(out.contains("Two (") && !out.contains("One ("), "{out}");
    assert_eq!((count(APP), count(app2)), (COMMANDS.len(), 0), "one bot by client id");
    assert!(!out.contains(&token_for(APP)) && !out.contains(&token_for(app2)));
    Ok(())
}

/// Discord shows Thai command names to a Thai client (registered as localizations), and
/// each member is answered in their client's language, else the server's, else English; a
/// server's language setting overrides both.
#[tokio::test]
async fn thai_members_see_thai_commands_and_replies() -> anyhow::Result<()> {
    const CAROL: u64 = GUILD + 103;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let guild = discord_sim::GuildSpec::new(GUILD, "กิลด์ทดสอบ")
        .text_channel(TEXT, "general")
        .voice_channel(VOICE, "Music")
        .member(discord_sim::UserSpec::new(ALICE, "alice").locale("th").manager())
        .member(discord_sim::UserSpec::new(BOB, "bob").locale("fr"))
        .member(discord_sim::UserSpec::new(CAROL, "carol").locale("en-US"))
        .in_voice(ALICE, VOICE)
        .owner(ALICE)
        .locale("th");
    let sim = DiscordSim::builder().guild(guild).bot(bot_spec(APP).in_guild(GUILD)).start().await?;
    let tones = Tones::start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP)).await?;
    bot.wait_ready().await?;
    eventually("commandsDeployed", WAIT, async || {
        bot.json("/status").await.ok().filter(|s| s["commandsDeployed"] == true)
    })
    .await?;
    let b = sim.bot(&bot.token);
    let registered = b.commands(None);
    let playing = registered.iter().find(|c| c["name"] == "play").unwrap();
    assert_eq!(playing["name_localizations"]["th"], "เล่น", "{playing}");
    let description = playing["description_localizations"]["th"].as_str();
    assert!(description.is_some_and(|d| d.contains("เล่นเพลง")), "{playing}");
    assert_eq!(playing["options"][0]["name_localizations"]["th"], "เพลง");
    let looping = registered.iter().find(|c| c["name"] == "loop").unwrap();
    assert_eq!(looping["options"][0]["choices"][1]["name_localizations"]["th"], "เพลงนี้", "{looping}");
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());

    let ask = async |user: u64, c: discord_sim::SlashCommand| -> anyhow::Result<String> {
        let c = discord_sim::SlashCommand { user_id: user, ..c };
        let i = b.inject_interaction(c)?;
        Ok(sim.wait_reply(i.id, WAIT).await?.text())
    };
    assert_eq!(ask(ALICE, play(&tones.wav(440, 30))).await?, "กำลังเล่น **30.wav**");
    let queue = ask(BOB, cmd("queue")).await?;
    assert!(queue.starts_with("กำลังเล่น: **30.wav**"), "no French catalog: the server's Thai: {queue}");
    let queue = ask(CAROL, cmd("queue")).await?;
    assert!(queue.starts_with("Now playing: **30.wav**") && queue.contains("loop: off"), "{queue}");
    let refused = ask(CAROL, cmd("skip")).await?;
    assert_eq!(refused, format!("Join me in <#{VOICE}> to do that."));
    let refused = ask(BOB, cmd("skip")).await?;
    assert_eq!(refused, format!("เข้ามาในห้อง <#{VOICE}> กับบอทก่อน แล้วค่อยสั่ง"));

    let set = cmd("settings").subcommand("language").option("language", 1);
    assert_eq!(ask(ALICE, set).await?, "Language: English.");
    let queue = ask(ALICE, cmd("queue")).await?;
    assert!(queue.starts_with("Now playing: **30.wav**"), "the server's setting wins: {queue}");
    Ok(())
}
