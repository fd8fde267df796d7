//! The simulator's REST side: authentication, unknown routes, application commands, and the
//! routes a bot reads, each answer parsed by serenity's own HTTP client and models.

mod support;

use discord_sim::DiscordSim;
use serde_json::json;
use serenity::all::{
    ChannelId, Command, CommandOptionType, CreateCommand, CreateCommandOption, CreateMessage, GuildId, Http,
    HttpBuilder, HttpError, UserId,
};
use support::*;

fn serenity_http(sim: &DiscordSim, token: &str) -> Http {
    let http = HttpBuilder::new(token).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    http.set_application_id(sim.bot(token).application_id().into());
    http
}

fn status_of(err: serenity::Error) -> (u16, isize, Vec<String>) {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(e)) => (
            e.status_code.as_u16(),
            e.error.code,
            e.error.errors.iter().map(|x| format!("{} {}", x.path, x.code)).collect(),
        ),
        other => panic!("expected an HTTP error status, got {other:?}"),
    }
}

#[tokio::test]
async fn rest_needs_a_configured_bot_token() {
    let sim = world().start().await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/users/@me", sim.api_base());
    for auth in [None, Some("Bot wrong-token"), Some(TOKEN), Some(&format!("Bearer {TOKEN}") as &str)] {
        let mut req = client.get(&url);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "Authorization {auth:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["message"], "401: Unauthorized");
    }
    let me = client.get(&url).header("Authorization", format!("Bot {TOKEN}")).send().await.unwrap();
    assert_eq!(me.status(), 200);

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 5);
    assert!(recorded[..4].iter().all(|r| r.status == 401 && r.bot.is_none() && r.known_route));
    assert_eq!((recorded[4].status, recorded[4].bot.as_deref(), recorded[4].route()), (200, Some(TOKEN), "/users/@me"));
    assert!(sim.unknown_requests().is_empty());
}

#[tokio::test]
async fn unknown_routes_answer_404_and_are_recorded() {
    let sim = world().start().await.unwrap();
    let client = reqwest::Client::new();
    let auth = format!("Bot {TOKEN}");
    let wrong_version = format!("{}/api/v9/users/@me", sim.api_url());
    let unmodelled = format!("{}/guilds/{GUILD}/bans", sim.api_base());
    for url in [&wrong_version, &unmodelled] {
        let resp = client.get(url).header("Authorization", &auth).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{url}");
    }
    // A known route answers even without a token-protected path (`/gateway` is public).
    assert_eq!(client.get(format!("{}/gateway", sim.api_base())).send().await.unwrap().status(), 200);

    let unknown = sim.unknown_requests();
    assert_eq!(
        unknown.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/api/v9/users/@me", &format!("/api/v10/guilds/{GUILD}/bans") as &str]
    );
    assert!(unknown.iter().all(|r| r.status == 404 && r.method == "GET"));
}

fn play_command() -> CreateCommand {
    CreateCommand::new("play")
        .description("Play a song")
        .add_option(CreateCommandOption::new(CommandOptionType::String, "query", "URL or search").required(true))
        .add_option(CreateCommandOption::new(CommandOptionType::Integer, "volume", "0-100"))
}

#[tokio::test]
async fn command_overwrite_list_and_delete_through_serenity() {
    let sim = world().start().await.unwrap();
    let http = serenity_http(&sim, TOKEN);

    let first =
        Command::set_global_commands(&http, vec![play_command(), CreateCommand::new("skip").description("Skip")])
            .await
            .unwrap();
    assert_eq!(first.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["play", "skip"]);
    assert_eq!(first[0].options.len(), 2);
    assert!(first[0].options[0].required);

    // An overwrite keeps the id of a command that stays and drops the others.
    let second =
        Command::set_global_commands(&http, vec![play_command(), CreateCommand::new("stop").description("Stop")])
            .await
            .unwrap();
    assert_eq!(second[0].id, first[0].id);
    assert_ne!(second[1].id, first[1].id);
    let listed = Command::get_global_commands(&http).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| (c.id, c.name.as_str())).collect::<Vec<_>>(),
        [(first[0].id, "play"), (second[1].id, "stop")]
    );

    Command::delete_global_command(&http, second[1].id).await.unwrap();
    assert_eq!(sim.bot(TOKEN).commands(None).len(), 1);
    let (status, code, _) = status_of(Command::delete_global_command(&http, second[1].id).await.unwrap_err());
    assert_eq!((status, code), (404, 10063));

    // Guild commands are separate from global ones.
    let guild = GuildId::new(GUILD);
    guild.set_commands(&http, vec![CreateCommand::new("queue").description("Show the queue")]).await.unwrap();
    assert_eq!(guild.get_commands(&http).await.unwrap()[0].guild_id, Some(guild));
    assert_eq!(sim.bot(TOKEN).commands(Some(GUILD))[0]["name"], "queue");
    assert_eq!(Command::get_global_commands(&http).await.unwrap().len(), 1);

    // A guild the bot is not in, and invalid bodies, fail as on Discord.
    let (status, code, _) =
        status_of(GuildId::new(OTHER_GUILD).set_commands(&http, vec![play_command()]).await.unwrap_err());
    assert_eq!((status, code), (403, 50001));
    let bad = vec![
        CreateCommand::new("Play").description("upper case"),
        CreateCommand::new("ok").description(""),
        play_command(),
        play_command(),
    ];
    let (status, code, errors) = status_of(Command::set_global_commands(&http, bad).await.unwrap_err());
    assert_eq!((status, code), (400, 50035));
    assert_eq!(
        errors,
        [
            "0.name APPLICATION_COMMAND_INVALID_NAME",
            "1.description BASE_TYPE_BAD_LENGTH",
            "3.name APPLICATION_COMMANDS_DUPLICATE_NAME"
        ]
    );
    assert_eq!(sim.bot(TOKEN).commands(None).len(), 1, "a rejected overwrite changes nothing");

    let puts: Vec<_> = sim.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts[0].route(), format!("/applications/{BOT_ID}/commands"));
    let query = &puts[0].body.as_ref().unwrap()[0]["options"][0];
    assert_eq!((&query["type"], &query["name"], &query["required"]), (&json!(3), &json!("query"), &json!(true)));
    assert!(sim.unknown_requests().is_empty());
}

#[tokio::test]
async fn rest_answers_parse_as_serenity_models() {
    let sim = world().start().await.unwrap();
    let http = serenity_http(&sim, TOKEN);

    assert_eq!(http.get_gateway().await.unwrap().url, sim.gateway_url());
    assert_eq!(http.get_bot_gateway().await.unwrap().shards, 1);
    let me = http.get_current_user().await.unwrap();
    assert_eq!((me.id.get(), me.name.as_str(), me.bot), (BOT_ID, "alpha", true));
    let app = http.get_current_application_info().await.unwrap();
    assert_eq!((app.id.get(), app.owner.map(|o| o.id.get())), (BOT_ID, Some(ALICE)));
    let guilds = http.get_guilds(None, None).await.unwrap();
    assert_eq!(guilds.iter().map(|g| g.id.get()).collect::<Vec<_>>(), [GUILD]);
    let guild = http.get_guild(GuildId::new(GUILD)).await.unwrap();
    assert_eq!((guild.name.as_str(), guild.owner_id.get()), ("Simulated guild", ALICE));
    let channels = http.get_channels(GuildId::new(GUILD)).await.unwrap();
    assert_eq!(channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["general", "Music", "Lounge"]);
    let voice = http.get_channel(ChannelId::new(VOICE)).await.unwrap().guild().unwrap();
    assert_eq!(voice.kind, serenity::all::ChannelType::Voice);
    let alice = http.get_member(GuildId::new(GUILD), UserId::new(ALICE)).await.unwrap();
    assert_eq!(alice.user.name, "alice");
    assert_eq!(
        http.get_guild_members(GuildId::new(GUILD), Some(10), None).await.unwrap().len(),
        3,
        "alice, bob and the bot"
    );
    assert_eq!(http.get_guild_roles(GuildId::new(GUILD)).await.unwrap()[0].name, "@everyone");
    assert_eq!(http.get_user(UserId::new(BOB)).await.unwrap().name, "bob");
    http.broadcast_typing(ChannelId::new(TEXT)).await.unwrap();
    let sent = ChannelId::new(TEXT).send_message(&http, CreateMessage::new().content("Now playing")).await.unwrap();
    assert_eq!(
        (sent.content.as_str(), sent.author.id.get(), sent.guild_id),
        ("Now playing", BOT_ID, Some(GuildId::new(GUILD)))
    );
    assert_eq!(sim.bot(TOKEN).messages()[0]["content"], "Now playing");

    // Errors a bot must handle.
    let (status, code, _) = status_of(http.get_guild(GuildId::new(OTHER_GUILD)).await.unwrap_err());
    assert_eq!((status, code), (403, 50001));
    let (status, code, _) = status_of(ChannelId::new(OTHER_TEXT).say(&http, "hi").await.unwrap_err());
    assert_eq!((status, code), (404, 10003));
    let (status, code, _) =
        status_of(ChannelId::new(TEXT).send_message(&http, CreateMessage::new()).await.unwrap_err());
    assert_eq!((status, code), (400, 50006));

    http.leave_guild(GuildId::new(GUILD)).await.unwrap();
    assert!(http.get_guilds(None, None).await.unwrap().is_empty());

    assert!(sim.unknown_requests().is_empty(), "{:?}", sim.unknown_requests());
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());
}

/// Localized names and descriptions: Thai names (vowel signs and all) are valid, unknown
/// locales and bad names are refused, and the maps come back only when asked for.
#[tokio::test]
async fn command_localizations_are_checked_and_listed_only_when_asked_for() {
    let sim = world().start().await.unwrap();
    let http = HttpBuilder::new(TOKEN).proxy(sim.api_url()).ratelimiter_disabled(true).build();
    http.set_application_id(BOT_ID.into());
    let thai = CreateCommand::new("play")
        .description("Play a song")
        .name_localized("th", "เล่น")
        .description_localized("th", "เล่นเพลง")
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "query", "What to play")
                .name_localized("th", "เพลง")
                .add_string_choice_localized("lofi", "lofi", [("th", "โลไฟ")]),
        );
    Command::set_global_commands(&http, vec![thai]).await.unwrap();
    let plain = Command::get_global_commands(&http).await.unwrap();
    assert!(plain[0].name_localizations.is_none(), "{:?}", plain[0].name_localizations);
    let localized = Command::get_global_commands_with_localizations(&http).await.unwrap();
    assert_eq!(localized[0].name_localizations.as_ref().unwrap()["th"], "เล่น");
    assert_eq!(localized[0].options[0].name_localizations.as_ref().unwrap()["th"], "เพลง");

    for bad in [
        CreateCommand::new("play").description("x").name_localized("xx", "play"),
        CreateCommand::new("play").description("x").name_localized("th", "เล่น เพลง"),
        CreateCommand::new("play").description("x").description_localized("th", ""),
    ] {
        let (status, code, errors) = status_of(Command::set_global_commands(&http, vec![bad]).await.unwrap_err());
        assert_eq!((status, code), (400, 50035), "{errors:?}");
    }
}
