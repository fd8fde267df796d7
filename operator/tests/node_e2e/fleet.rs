//! A fleet that acts as one, on the node: four MusicBots of one `spec.fleet`, three of them
//! in a server with four voice channels and a listener in each. Everyone asks the same bot;
//! the others take what it cannot, pod to pod, with the key and the directory the operator
//! gave them; a bot killed while it holds a request leaves it answered, and played by no one.
//! And the MongoDB sync's fleet: with no bot free, whom to invite is guild assignment's
//! choice, asked of the operator's pod with the fleet's key.

use std::time::{Duration, Instant};

use discord_sim::{GuildSpec, SlashCommand, UserSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use crate::bots::create_token;
use crate::product::{Product, Slot, WAIT, host_pid_of, kill, product};
use crate::run;

const GUILD: u64 = 940_000_000_000_900_000;
const TEXT: u64 = GUILD + 11;
/// A voice channel and its listener for each of four people.
const SEATS: [(u64, u64); 4] =
    [(GUILD + 21, GUILD + 101), (GUILD + 22, GUILD + 102), (GUILD + 23, GUILD + 103), (GUILD + 24, GUILD + 104)];
/// alpha, bravo and charlie are in the server; delta is not.
const BOTS: [(&str, u64); 4] = [("alpha", 8), ("bravo", 9), ("charlie", 12), ("delta", 13)];

fn server() -> GuildSpec {
    let mut g = GuildSpec::new(GUILD, "Fleet guild").text_channel(TEXT, "general");
    for (i, (voice, user)) in SEATS.into_iter().enumerate() {
        g = g
            .voice_channel(voice, format!("Room {i}"))
            .member(UserSpec::new(user, format!("listener-{i}")))
            .in_voice(user, voice);
    }
    g.owner(SEATS[0].1)
}

fn play(seat: usize, query: &str) -> SlashCommand {
    SlashCommand::new(GUILD, TEXT, SEATS[seat].1, "play").option("query", query)
}

fn musicbot(name: &str, slot: &Slot) -> String {
    format!(
        "apiVersion: musicbot.dev/v1alpha1\nkind: MusicBot\nmetadata: {{name: {name}}}\nspec:\n  clientId: \"{}\"\n  \
         tokenSecretRef: {{name: {name}-token}}\n  displayName: {name}\n  fleet: night\n  \
         pod:\n    caBundle: {{configMapName: discord-ca}}\n",
        slot.client_id()
    )
}

/// Waits until bot `token` plays `hz` in `channel` of the fleet's guild; returns when.
async fn hears(p: &Product, token: &str, channel: u64, hz: f64) -> Instant {
    hears_in(p, token, GUILD, channel, hz).await
}

async fn hears_in(p: &Product, token: &str, guild: u64, channel: u64, hz: f64) -> Instant {
    let b = p.sim.bot(token);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let there = b.voice(guild).is_some_and(|v| v.channel_id == channel);
        let audio = b.audio(guild);
        if there && audio.dominant_hz.is_some_and(|f| (f - hz).abs() < 5.0) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{hz} Hz never heard in {channel}: {audio:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `bot`'s pod is Ready again after its container restarted.
async fn wait_restarted(p: &Product, ns: &str, bot: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let pod = p.wait_pod_ready(ns, bot, None).await;
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        if statuses.iter().any(|c| c.restart_count > 0 && c.ready) {
            return;
        }
        assert!(Instant::now() < deadline, "{bot} was not restarted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn three_channels_asking_one_bot_are_played_by_three_bots_of_its_fleet() {
    run(async {
        let p = product().await;
        let ns = p.namespace("node-fleet").await;
        let tokens: Vec<String> = BOTS.iter().map(|(_, slot)| Slot::new(*slot).token(0)).collect();
        for token in &tokens[..3] {
            p.sim.bot(token).join_guild(server());
        }
        for ((name, slot), token) in BOTS.iter().zip(&tokens) {
            create_token(p, &ns, name, token);
            p.apply(&ns, &musicbot(name, &Slot::new(*slot)));
        }
        for (name, _) in BOTS {
            p.wait_pod_ready(&ns, name, None).await;
        }
        let key = Api::<Secret>::namespaced(p.client.clone(), &ns).get("musicbot-fleet-night").await.unwrap();
        assert_eq!(key.labels().get("musicbot.dev/fleet").map(String::as_str), Some("night"));
        assert!(key.meta().owner_references.is_none(), "the fleet's bots share it");
        let wide = p.node.kubectl_ok(&["get", "mbot", "-n", &ns, "-o", "wide"]).unwrap();
        assert!(wide.lines().next().is_some_and(|h| h.contains("FLEET")), "{wide}");
        assert_eq!(wide.lines().filter(|l| l.contains(" night")).count(), 4, "{wide}");

        let alpha = p.sim.bot(&tokens[0]);
        alpha.wait_ready(WAIT).await.unwrap();
        let ask = async |seat: usize, hz: u32| {
            let i = alpha.inject_interaction(play(seat, &p.tones.wav(hz, 120))).unwrap();
            let asked = Instant::now();
            (p.sim.wait_reply(i.id, Duration::from_secs(40)).await.unwrap().text(), asked)
        };
        let (said, _) = ask(0, 440).await;
        assert!(said.contains("Playing"), "{said}");
        hears(p, &tokens[0], SEATS[0].0, 440.0).await;

        // The directory reaches every pod within a status interval or two of the last one
        // starting: until then a busy alpha knows no one to hand to.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (said, asked) = loop {
            let (said, asked) = ask(1, 550).await;
            if said.contains("will play") || Instant::now() > deadline {
                break (said, asked);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        assert!(said.contains("**bravo** will play") && said.contains(&format!("<#{}>", SEATS[1].0)), "{said}");
        let heard = hears(p, &tokens[1], SEATS[1].0, 550.0).await;
        eprintln!("hand-off across pods: interaction to first audio {:.2} s", (heard - asked).as_secs_f64());
        hears(p, &tokens[0], SEATS[0].0, 440.0).await;

        // charlie is killed while it holds Carol's request (stopped first, so that the kill
        // lands mid-request): alpha answers her at once, and the request is played by no one,
        // not even by charlie's next container.
        let charlie = p.wait_pod_ready(&ns, "charlie", None).await;
        let pid = host_pid_of(&charlie, "bot-runner");
        kill(pid, "STOP");
        let i = alpha.inject_interaction(play(2, &p.tones.wav(660, 120))).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        kill(pid, "KILL");
        let said = p.sim.wait_reply(i.id, Duration::from_secs(10)).await.unwrap().text();
        assert!(said.contains("**charlie** was to play it") && said.contains("did not answer"), "{said}");
        p.sim.bot(&tokens[2]).wait_disconnected(WAIT).await.unwrap();
        p.sim.bot(&tokens[2]).wait_ready(WAIT).await.unwrap();
        wait_restarted(p, &ns, "charlie").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(p.sim.bot(&tokens[2]).voice(GUILD), None, "the killed request was played");

        // Two at once, one bot free: charlie serves exactly one; the other is told who is
        // busy where, and given delta's invite.
        let (carol, dave) = tokio::join!(ask(2, 660), ask(3, 770));
        let (carol, dave) = (carol.0, dave.0);
        let served: Vec<&String> =
            [&carol, &dave].into_iter().filter(|t| t.contains("**charlie** will play")).collect();
        assert_eq!(served.len(), 1, "carol: {carol} / dave: {dave}");
        let (won, lost, hz) =
            if served[0] == &carol { (SEATS[2].0, &dave, 660.0) } else { (SEATS[3].0, &carol, 770.0) };
        hears(p, &tokens[2], won, hz).await;
        for (bot, channel) in [("alpha", SEATS[0].0), ("bravo", SEATS[1].0), ("charlie", won)] {
            assert!(lost.contains(&format!("**{bot}** in <#{channel}>")), "{lost}");
        }
        let delta = Slot::new(BOTS[3].1).client_id();
        assert!(lost.contains("Invite **delta**") && lost.contains(&format!("client_id={delta}")), "{lost}");
        assert_eq!(p.sim.bot(&tokens[3]).voice(GUILD), None, "delta is not in the server");

        p.node.kubectl_ok(&["delete", "mbot", "--all", "-n", &ns, "--wait=true", "--timeout=90s"]).unwrap();
    })
}

/// The sync's fleet (records from MongoDB): one bot in a server with two voice channels,
/// busy in one; asked for the other, it offers the bot guild assignment picks (a pending
/// invite recorded in MongoDB), the same one when asked again.
#[test]
fn with_no_free_bot_the_sync_fleet_offers_guild_assignments_invite() {
    run(async {
        const GUILD: u64 = 940_000_000_000_910_000;
        const TEXT: u64 = GUILD + 11;
        const SEATS: [(u64, u64); 2] = [(GUILD + 21, GUILD + 101), (GUILD + 22, GUILD + 102)];
        let p = product().await;
        let (here, away) = (Slot::new(14), Slot::new(15));
        let db = p.mongo.client().await.unwrap().database("musicbot");
        let records = db.collection::<mongodb::bson::Document>("MusicBotDB");
        for (slot, name) in [(&here, "Record Here"), (&away, "Record Away")] {
            let record = mongodb::bson::doc! {"name": name, "clientId": slot.client_id(), "token": slot.token(0),
            "isActive": true, "guildCount": 0};
            records.insert_one(record).await.unwrap();
        }
        let mut server = GuildSpec::new(GUILD, "Sync fleet guild").text_channel(TEXT, "general");
        for (i, (voice, user)) in SEATS.into_iter().enumerate() {
            server = server
                .voice_channel(voice, format!("Room {i}"))
                .member(UserSpec::new(user, format!("listener-{i}")))
                .in_voice(user, voice);
        }
        let bot = p.sim.bot(&here.token(0));
        bot.join_guild(server.owner(SEATS[0].1));
        for slot in [&here, &away] {
            p.wait_pod_ready(&p.release_ns, &format!("bot-{}", slot.client_id()), None).await;
        }
        bot.wait_ready(WAIT).await.unwrap();
        let ask = async |seat: usize, hz: u32| {
            let command = SlashCommand::new(GUILD, TEXT, SEATS[seat].1, "play").option("query", p.tones.wav(hz, 120));
            let i = bot.inject_interaction(command).unwrap();
            p.sim.wait_reply(i.id, Duration::from_secs(40)).await.unwrap().text()
        };
        let said = ask(0, 440).await;
        assert!(said.contains("Playing"), "{said}");
        hears_in(p, &here.token(0), GUILD, SEATS[0].0, 440.0).await;

        // Guild assignment knows the bot is in the server once the operator has read its
        // /status; until then it could pick that very bot.
        let guilds = db.collection::<musicbot_db::GuildEntry>("ServerMusicBotDB");
        let here_id = records.find_one(mongodb::bson::doc! {"clientId": here.client_id()}).await.unwrap().unwrap();
        let here_id = here_id.get_object_id("_id").unwrap();
        let deadline = Instant::now() + WAIT;
        let in_server = mongodb::bson::doc! {"serverId": GUILD.to_string(), "musicBotId": here_id, "status": "ACTIVE"};
        while guilds.count_documents(in_server.clone()).await.unwrap() == 0 {
            assert!(Instant::now() < deadline, "the operator never recorded the bot in the server");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Until the directory reaches the pod, the bot knows no one to offer.
        let deadline = Instant::now() + Duration::from_secs(60);
        let said = loop {
            let said = ask(1, 550).await;
            if said.contains("Invite **") || Instant::now() > deadline {
                break said;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        assert!(
            said.starts_with(&format!("Every music bot here is busy: **Record Here** in <#{}>.", SEATS[0].0)),
            "{said}"
        );
        let pending: Vec<musicbot_db::GuildEntry> = futures::TryStreamExt::try_collect(
            guilds.find(mongodb::bson::doc! {"serverId": GUILD.to_string(), "status": "PENDING_INVITE"}).await.unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(pending.len(), 1, "one pending invite for the server: {pending:?}");
        let invited = records.find_one(mongodb::bson::doc! {"_id": pending[0].music_bot_id}).await.unwrap().unwrap();
        let (name, client_id) = (invited.get_str("name").unwrap(), invited.get_str("clientId").unwrap());
        assert_ne!(client_id, here.client_id(), "the bot in the server is not the one to invite");
        assert!(
            said.ends_with(&format!(
                "Invite **{name}** to play here too: <{}>",
                musicbot_db::invite_url(client_id, Some(&GUILD.to_string()))
            )),
            "{said}"
        );

        // Asked again: the same bot, no second invite.
        let again = ask(1, 550).await;
        assert_eq!(again, said);
        let count =
            guilds.count_documents(mongodb::bson::doc! {"serverId": GUILD.to_string(), "status": "PENDING_INVITE"});
        assert_eq!(count.await.unwrap(), 1);
        assert_eq!(p.sim.bot(&away.token(0)).voice(GUILD), None, "the invited bot is not in the server");
    })
}
