//! The simulator's gateway, driven by a bare websocket client: handshake, heartbeats, resume,
//! injected events and faults. Every payload is parsed with serenity's model types.

mod support;

use std::time::Duration;

use discord_sim::{DiscordSim, SlashCommand};
use serde_json::{Value, json};
use serenity::all::{
    ChannelId, CommandDataOptionValue, GuildCreateEvent, GuildDeleteEvent, GuildId, Interaction, Ready, UserId,
    VoiceServerUpdateEvent, VoiceState,
};
use serenity::model::event::GatewayEvent;
use support::*;

fn parse<T: serde::de::DeserializeOwned>(d: &Value) -> T {
    serde_json::from_value(d.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{d:#}", std::any::type_name::<T>()))
}

fn assert_clean(sim: &DiscordSim) {
    assert!(sim.payload_errors().is_empty(), "{:#?}", sim.payload_errors());
}

#[tokio::test]
async fn identify_gets_ready_and_guild_create_as_serenity_reads_them() {
    let sim = world().heartbeat_interval(Duration::from_millis(5_000)).start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    assert_eq!(gw.hello["d"]["heartbeat_interval"], 5_000);
    assert!(matches!(parse::<GatewayEvent>(&gw.hello), GatewayEvent::Hello(5_000)));

    let ready: Ready = parse(&gw.identify(TOKEN).await);
    assert_eq!((ready.user.id.get(), ready.application.id.get()), (BOT_ID, BOT_ID));
    assert_eq!(ready.guilds.iter().map(|g| (g.id.get(), g.unavailable)).collect::<Vec<_>>(), [(GUILD, true)]);
    assert_eq!(ready.resume_gateway_url, sim.gateway_url());
    assert_eq!(gw.seq, 1);

    let guild = parse::<GuildCreateEvent>(&gw.dispatch("GUILD_CREATE").await).guild;
    assert_eq!((guild.id.get(), guild.name.as_str(), guild.owner_id.get()), (GUILD, "Simulated guild", ALICE));
    assert_eq!(guild.channels.len(), 3);
    assert_eq!(guild.channels[&ChannelId::new(VOICE)].kind, serenity::all::ChannelType::Voice);
    assert_eq!(guild.members.len(), 3, "alice, bob and the bot itself");
    assert!(guild.members[&UserId::new(BOT_ID)].user.bot);
    assert_eq!(guild.voice_states[&UserId::new(ALICE)].channel_id, Some(ChannelId::new(VOICE)));

    gw.send(json!({"op": 1, "d": gw.seq})).await;
    assert_eq!(gw.next().await["op"], 11);
    assert!(sim.bot(TOKEN).is_connected());
    assert_eq!(sim.bot(TOKEN).identifies(), 1);
    let sent: Vec<u64> = sim.bot(TOKEN).gateway_frames().iter().map(|f| f.op).collect();
    assert_eq!(sent, [2, 1]);
    assert_clean(&sim);
}

/// The shape Discord sends for GUILDS | GUILD_VOICE_STATES: roles, the full member count,
/// but as members only the bot and whoever sits in voice.
#[tokio::test]
async fn a_large_guild_counts_members_it_does_not_list_and_carries_its_roles() {
    crypto();
    let sim = DiscordSim::builder()
        .guild(guild().role(GUILD + 500, "DJ").member_count(5_000))
        .bot(discord_sim::BotSpec::new(TOKEN).user_id(BOT_ID).in_guild(GUILD))
        .start()
        .await
        .unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    let guild = parse::<GuildCreateEvent>(&gw.dispatch("GUILD_CREATE").await).guild;
    assert_eq!((guild.member_count, guild.large), (5_000, true));
    assert_eq!(guild.members.len(), 3, "alice, bob and the bot");
    let mut roles: Vec<&str> = guild.roles.values().map(|r| r.name.as_str()).collect();
    roles.sort();
    assert_eq!(roles, ["@everyone", "DJ"]);
    assert_clean(&sim);
}

#[tokio::test]
async fn bad_tokens_and_early_payloads_are_closed_with_discords_codes() {
    let sim = world().start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.send(json!({"op": 2, "d": {"token": "Bot nope", "intents": 0, "properties": {}}})).await;
    assert_eq!(u16::from(gw.closed().await.expect("a close frame").code), 4004);

    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.send(json!({"op": 4, "d": {"guild_id": GUILD.to_string(), "channel_id": null}})).await;
    assert_eq!(u16::from(gw.closed().await.expect("a close frame").code), 4003);

    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.send(json!({"op": 2, "d": {"token": TOKEN}})).await;
    assert_eq!(u16::from(gw.closed().await.expect("a close frame").code), 4005);
}

#[tokio::test]
async fn resume_replays_missed_events_then_resumed() {
    let sim = world().start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    let session = gw.identify(TOKEN).await["session_id"].as_str().unwrap().to_string();
    gw.dispatch("GUILD_CREATE").await;
    let seq = gw.seq;
    sim.bot(TOKEN).drop_gateway();
    assert!(gw.closed().await.is_none(), "dropped without a close frame");
    sim.bot(TOKEN).wait_disconnected(WAIT).await.unwrap();

    // What happens while the bot is away is delivered on resume.
    sim.move_member(GUILD, BOB, Some(VOICE2)).unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.send(json!({"op": 6, "d": {"token": format!("Bot {TOKEN}"), "session_id": session, "seq": seq}})).await;
    let missed = gw.next().await;
    assert_eq!((missed["t"].as_str(), missed["s"].as_u64()), (Some("VOICE_STATE_UPDATE"), Some(seq + 1)));
    let resumed = gw.next().await;
    assert_eq!((resumed["t"].as_str(), resumed["s"].as_u64()), (Some("RESUMED"), Some(seq + 2)));
    assert!(matches!(parse::<GatewayEvent>(&resumed), GatewayEvent::Dispatch(_, _)));
    assert_eq!(sim.bot(TOKEN).resumes(), 1);
    sim.bot(TOKEN).wait_ready(WAIT).await.unwrap();

    // An unknown session cannot be resumed: op 9, not resumable.
    let mut other = RawGateway::connect(&sim.gateway_url()).await;
    other.send(json!({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 1}})).await;
    assert_eq!(other.next().await, json!({"op": 9, "d": false, "s": null, "t": null}));
    assert_clean(&sim);
}

#[tokio::test]
async fn heartbeat_acks_can_be_withheld() {
    let sim = world().start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.dispatch("GUILD_CREATE").await;
    sim.bot(TOKEN).set_heartbeat_acks(false);
    gw.send(json!({"op": 1, "d": gw.seq})).await;
    assert!(gw.silent_for(Duration::from_millis(500)).await, "no ACK while acks are off");
    sim.bot(TOKEN).set_heartbeat_acks(true);
    gw.send(json!({"op": 1, "d": gw.seq})).await;
    assert_eq!(gw.next().await["op"], 11);
}

#[tokio::test]
async fn injected_events_parse_as_serenity_models() {
    let sim = world().start().await.unwrap();
    let bot = sim.bot(TOKEN);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.dispatch("GUILD_CREATE").await;

    // A slash command with typed options, from alice in #general.
    let cmd = SlashCommand::new(GUILD, TEXT, ALICE, "play")
        .option("query", "never gonna")
        .option("volume", 40)
        .option("loud", true)
        .option("for", discord_sim::OptionValue::User(BOB));
    let injected = bot.inject_interaction(cmd).unwrap();
    let Interaction::Command(c) = parse::<Interaction>(&gw.dispatch("INTERACTION_CREATE").await) else {
        panic!("a command interaction")
    };
    assert_eq!((c.id.get(), c.token.as_str(), c.data.name.as_str()), (injected.id, injected.token.as_str(), "play"));
    assert_eq!((c.guild_id, c.channel_id, c.user.id.get()), (Some(GuildId::new(GUILD)), ChannelId::new(TEXT), ALICE));
    assert_eq!(c.member.as_ref().unwrap().user.name, "alice");
    let values: Vec<_> = c.data.options.iter().map(|o| (o.name.as_str(), o.value.clone())).collect();
    assert_eq!(
        values,
        [
            ("query", CommandDataOptionValue::String("never gonna".into())),
            ("volume", CommandDataOptionValue::Integer(40)),
            ("loud", CommandDataOptionValue::Boolean(true)),
            ("for", CommandDataOptionValue::User(UserId::new(BOB))),
        ]
    );
    assert_eq!(c.data.resolved.users[&UserId::new(BOB)].name, "bob");

    // Subcommands nest the options.
    bot.inject_interaction(SlashCommand::new(GUILD, TEXT, BOB, "queue").subcommand("remove").option("position", 2))
        .unwrap();
    let Interaction::Command(c) = parse::<Interaction>(&gw.dispatch("INTERACTION_CREATE").await) else {
        panic!("a command interaction")
    };
    let CommandDataOptionValue::SubCommand(inner) = &c.data.options[0].value else {
        panic!("a subcommand: {:?}", c.data.options)
    };
    assert_eq!((c.data.options[0].name.as_str(), inner[0].name.as_str()), ("remove", "position"));

    // A member moves between voice channels.
    sim.move_member(GUILD, BOB, Some(VOICE)).unwrap();
    let vs: VoiceState = parse(&gw.dispatch("VOICE_STATE_UPDATE").await);
    assert_eq!(
        (vs.user_id.get(), vs.channel_id, vs.guild_id),
        (BOB, Some(ChannelId::new(VOICE)), Some(GuildId::new(GUILD)))
    );
    sim.move_member(GUILD, BOB, None).unwrap();
    assert_eq!(parse::<VoiceState>(&gw.dispatch("VOICE_STATE_UPDATE").await).channel_id, None);
    assert!(sim.move_member(GUILD, BOB, Some(TEXT)).is_err(), "a text channel is no voice channel");

    // The bot asks to join voice (op 4): its voice state, then the voice server to dial.
    gw.send(json!({"op": 4, "d": {"guild_id": GUILD.to_string(), "channel_id": VOICE.to_string(), "self_mute": false, "self_deaf": true}})).await;
    let own: VoiceState = parse(&gw.dispatch("VOICE_STATE_UPDATE").await);
    assert_eq!((own.user_id.get(), own.channel_id), (BOT_ID, Some(ChannelId::new(VOICE))));
    let server: VoiceServerUpdateEvent = parse(&gw.dispatch("VOICE_SERVER_UPDATE").await);
    assert_eq!(
        (server.guild_id, server.endpoint.as_deref()),
        (Some(GuildId::new(GUILD)), Some(sim.voice_endpoint().as_str()))
    );
    assert!(!server.token.is_empty());
    assert_eq!(sim.guild(GUILD).unwrap().voice_channel_of(BOT_ID), Some(VOICE));

    // Joining and leaving guilds.
    bot.join_guild(other_guild());
    let joined = parse::<GuildCreateEvent>(&gw.dispatch("GUILD_CREATE").await).guild;
    assert_eq!(joined.id.get(), OTHER_GUILD);
    assert!(bot.leave_guild(OTHER_GUILD));
    let left = parse::<GuildDeleteEvent>(&gw.dispatch("GUILD_DELETE").await).guild;
    assert_eq!((left.id.get(), left.unavailable), (OTHER_GUILD, false));
    assert!(!bot.leave_guild(OTHER_GUILD));
    assert!(bot.inject_interaction(SlashCommand::new(OTHER_GUILD, OTHER_TEXT, BOB, "play")).is_err());
    assert_clean(&sim);
}

#[tokio::test]
async fn faults_close_invalidate_and_reconnect() {
    let sim = world().start().await.unwrap();
    let bot = sim.bot(TOKEN);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    bot.close_gateway(4000);
    assert_eq!(u16::from(gw.closed().await.expect("a close frame").code), 4000);

    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    bot.request_reconnect();
    assert_eq!(gw.op(7).await["op"], 7);
    bot.invalidate_session(false);
    assert_eq!(gw.op(9).await["d"], false);
    assert_eq!(bot.identifies(), 2);
}

#[tokio::test]
async fn several_bots_have_their_own_sessions_and_guilds() {
    let sim = world().start().await.unwrap();
    let mut alpha = RawGateway::connect(&sim.gateway_url()).await;
    let mut beta = RawGateway::connect(&sim.gateway_url()).await;
    let a: Ready = parse(&alpha.identify(TOKEN).await);
    let b: Ready = parse(&beta.identify(TOKEN2).await);
    assert_ne!(a.session_id, b.session_id);
    assert_eq!((a.user.id.get(), b.user.id.get()), (BOT_ID, BOT2_ID));
    assert_eq!(parse::<GuildCreateEvent>(&alpha.dispatch("GUILD_CREATE").await).guild.id.get(), GUILD);
    assert_eq!(parse::<GuildCreateEvent>(&beta.dispatch("GUILD_CREATE").await).guild.id.get(), OTHER_GUILD);

    sim.bot(TOKEN2).inject_interaction(SlashCommand::new(OTHER_GUILD, OTHER_TEXT, BOB, "skip")).unwrap();
    let Interaction::Command(c) = parse::<Interaction>(&beta.dispatch("INTERACTION_CREATE").await) else {
        panic!("a command")
    };
    assert_eq!(c.application_id.get(), BOT2_ID);
    assert!(alpha.silent_for(Duration::from_millis(300)).await, "the other bot sees nothing");
    assert_clean(&sim);
}

#[tokio::test]
async fn each_shard_gets_the_guilds_it_owns() {
    crypto();
    let sim = DiscordSim::builder()
        .guild(guild())
        .guild(other_guild())
        .bot(discord_sim::BotSpec::new(TOKEN).user_id(BOT_ID).in_guild(GUILD).in_guild(OTHER_GUILD).shards(2))
        .start()
        .await
        .unwrap();
    // (guild_id >> 22) % 2: GUILD is on shard 0, OTHER_GUILD on shard 1.
    let mut shard0 = RawGateway::connect(&sim.gateway_url()).await;
    let mut shard1 = RawGateway::connect(&sim.gateway_url()).await;
    let r0: Ready = parse(&shard0.identify_shard(TOKEN, [0, 2]).await);
    let r1: Ready = parse(&shard1.identify_shard(TOKEN, [1, 2]).await);
    assert_eq!(r0.guilds.iter().map(|g| g.id.get()).collect::<Vec<_>>(), [GUILD]);
    assert_eq!(r1.guilds.iter().map(|g| g.id.get()).collect::<Vec<_>>(), [OTHER_GUILD]);
    assert_eq!(r1.shard.map(|s| (s.id.0, s.total)), Some((1, 2)));

    sim.bot(TOKEN).inject_interaction(SlashCommand::new(OTHER_GUILD, OTHER_TEXT, BOB, "skip")).unwrap();
    assert_eq!(shard1.dispatch("INTERACTION_CREATE").await["guild_id"], OTHER_GUILD.to_string());
    shard0.dispatch("GUILD_CREATE").await;
    assert!(shard0.silent_for(Duration::from_millis(300)).await, "shard 0 does not see shard 1's guild");

    let mut bad = RawGateway::connect(&sim.gateway_url()).await;
    bad.send(json!({"op": 2, "d": {"token": TOKEN, "shard": [2, 2]}})).await;
    assert_eq!(u16::from(bad.closed().await.expect("a close frame").code), 4010);
    assert_clean(&sim);
}

#[tokio::test]
async fn events_outside_the_identified_intents_are_not_sent() {
    let sim = world().start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify_with(TOKEN, [0, 1], 1).await; // GUILDS only, no GUILD_VOICE_STATES
    let guild = parse::<GuildCreateEvent>(&gw.dispatch("GUILD_CREATE").await).guild;
    assert!(guild.voice_states.is_empty(), "voice states need GUILD_VOICE_STATES");
    sim.move_member(GUILD, BOB, Some(VOICE)).unwrap();
    sim.bot(TOKEN).inject_interaction(SlashCommand::new(GUILD, TEXT, BOB, "queue")).unwrap();
    let next = gw.next().await;
    assert_eq!(next["t"], "INTERACTION_CREATE", "the VOICE_STATE_UPDATE was filtered out");
    assert_clean(&sim);
}
