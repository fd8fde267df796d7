//! A fleet that acts as one: four bot-runners with one fleet key, three of them in a server
//! with four voice channels and a listener in each. Everyone asks the same bot; the bots
//! hand the requests on to each other over their HTTP ports, given the fleet's directory
//! as the operator gives it.

use std::time::Duration;

use discord_sim::{DiscordSim, GuildSpec, SlashCommand, UserSpec};
use musicbot_api::handoff::{DIRECTORY_PATH, FleetBot, FleetDirectory};

use crate::support::*;

const VOICE3: u64 = 910_000_000_000_000_014;
const VOICE4: u64 = 910_000_000_000_000_015;
const CAROL: u64 = 910_000_000_000_000_103;
const DAVE: u64 = 910_000_000_000_000_104;
/// Alpha is asked; Bravo and Charlie are in the server too; Delta is not.
const APPS: [u64; 4] = [APP, 930_000_000_000_000_002, 930_000_000_000_000_003, 930_000_000_000_000_004];
const KEY: &str = "fleet-key-9f8e7d6c5b4a39281706";

fn server() -> GuildSpec {
    guild()
        .voice_channel(VOICE3, "Studio")
        .voice_channel(VOICE4, "Stage")
        .member(UserSpec::new(CAROL, "carol"))
        .member(UserSpec::new(DAVE, "dave"))
        .in_voice(BOB, VOICE2)
        .in_voice(CAROL, VOICE3)
        .in_voice(DAVE, VOICE4)
}

fn play_as(user: u64, query: &str) -> SlashCommand {
    SlashCommand::new(GUILD, TEXT, user, "play").option("query", query)
}

struct Fleet {
    sim: DiscordSim,
    tones: Tones,
    bots: Vec<BotProcess>,
    _key: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut sim = DiscordSim::builder().guild(server());
        for (i, app) in APPS.into_iter().enumerate() {
            let spec = bot_spec(app).name(["Alpha", "Bravo", "Charlie", "Delta"][i]);
            sim = sim.bot(if i < 3 { spec.in_guild(GUILD) } else { spec });
        }
        let sim = sim.start().await?;
        let tones = Tones::start().await?;
        let key = tempfile::tempdir()?;
        let key_file = key.path().join("fleet-key");
        std::fs::write(&key_file, KEY)?;
        let mut bots = Vec::new();
        for (i, app) in APPS.into_iter().enumerate() {
            let launch = Launch::bot(app)
                .env("MUSICBOT_FLEET_KEY_FILE", key_file.display().to_string())
                .env("MUSICBOT_BOT_NAME", ["Alpha", "Bravo", "Charlie", "Delta"][i]);
            let mut bot = BotProcess::start(&sim, launch).await?;
            bot.wait_ready().await?;
            bots.push(bot);
        }
        let directory = FleetDirectory {
            fleet: "night-shift".into(),
            bots: APPS
                .iter()
                .zip(&bots)
                .enumerate()
                .map(|(i, (app, bot))| FleetBot {
                    name: ["Alpha", "Bravo", "Charlie", "Delta"][i].into(),
                    client_id: app.to_string(),
                    shard_urls: vec![bot.base().to_string()],
                })
                .collect(),
            invites: None,
        };
        let http = reqwest::Client::new();
        for bot in &bots {
            let url = format!("{}{DIRECTORY_PATH}", bot.base());
            let denied = http.post(&url).bearer_auth("not-the-fleet-key-at-all").json(&directory).send().await?;
            assert_eq!(denied.status(), 401, "a wrong key changes nothing");
            assert_eq!(http.post(&url).json(&directory).send().await?.status(), 401, "no key");
            assert_eq!(http.post(&url).bearer_auth(KEY).json(&directory).send().await?.status(), 204);
        }
        Ok(Self { sim, tones, bots, _key: key })
    }

    fn bot(&self, i: usize) -> discord_sim::Bot<'_> {
        self.sim.bot(&token_for(APPS[i]))
    }

    /// Asks Alpha, as `user`, for a tone; returns the reply and whether only the user saw it.
    async fn ask_alpha(&self, user: u64, hz: u32) -> anyhow::Result<(String, bool)> {
        let i = self.bot(0).inject_interaction(play_as(user, &self.tones.wav(hz, 120)))?;
        let reply = self.sim.wait_reply(i.id, WAIT).await?;
        // A deferred answer's error is a follow-up of its own, the placeholder deleted.
        let private = reply.messages().last().and_then(|m| m["flags"].as_u64()).is_some_and(|f| f & 64 != 0);
        Ok((reply.text(), private))
    }

    /// Waits until bot `i` plays `hz` in `channel`.
    async fn hears(&self, i: usize, channel: u64, hz: f64) -> anyhow::Result<()> {
        let b = self.bot(i);
        eventually(&format!("bot {i} playing {hz} Hz in {channel}"), WAIT, async || {
            let there = b.voice(GUILD).is_some_and(|v| v.channel_id == channel);
            (there && near(recent_hz(&b.audio_samples(GUILD), 0.5), hz)).then_some(())
        })
        .await
    }

    fn channel_of(&self, i: usize) -> Option<u64> {
        self.bot(i).voice(GUILD).map(|v| v.channel_id)
    }
}

fn metric(text: &str, prefix: &str) -> u64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn requests_to_a_busy_bot_are_played_by_free_bots_of_its_fleet() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;

    // Alice's request Alpha plays itself; Bob's, in another channel, goes to Bravo.
    let (said, _) = fleet.ask_alpha(ALICE, 440).await?;
    assert!(said.contains("Playing"), "{said}");
    fleet.hears(0, VOICE, 440.0).await?;
    let (said, private) = fleet.ask_alpha(BOB, 550).await?;
    assert!(said.contains("**Bravo** will play") && said.contains(&format!("<#{VOICE2}>")), "{said}");
    assert!(!private, "a public answer");
    fleet.hears(1, VOICE2, 550.0).await?;
    fleet.hears(0, VOICE, 440.0).await?;
    let bots = fleet.bots[1].json("/bots").await?;
    assert_eq!(bots["bots"][0]["fleet"], "night-shift", "{bots}");

    // Charlie hangs: Carol's request is answered with an error once Alpha gives up on it,
    // and Charlie, woken up, does not play what nobody waits for any more (its server may
    // still read the request Alpha sent: it is refused as too late).
    let charlie = fleet.bots[2].pid().to_string();
    let signal = |sig: &str| std::process::Command::new("kill").args([sig, &charlie]).status();
    assert!(signal("-STOP")?.success());
    let (said, private) = fleet.ask_alpha(CAROL, 660).await?;
    assert!(signal("-CONT")?.success());
    assert!(said.contains("**Charlie** was to play it") && said.contains("did not answer"), "{said}");
    assert!(private, "only Carol sees the error");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fleet.channel_of(2), None, "Charlie took a request too late: {}", fleet.bots[2].logs());

    // Carol and Dave at the same instant, one bot free: exactly one is served.
    let a = fleet.bot(0);
    let carol = a.inject_interaction(play_as(CAROL, &fleet.tones.wav(660, 120)))?;
    let dave = a.inject_interaction(play_as(DAVE, &fleet.tones.wav(770, 120)))?;
    let carol = fleet.sim.wait_reply(carol.id, WAIT).await?.text();
    let dave = fleet.sim.wait_reply(dave.id, WAIT).await?.text();
    let served: Vec<&String> = [&carol, &dave].into_iter().filter(|t| t.contains("**Charlie** will play")).collect();
    assert_eq!(served.len(), 1, "carol: {carol} / dave: {dave}");
    let (won, lost, hz) = if served[0] == &carol { (VOICE3, &dave, 660.0) } else { (VOICE4, &carol, 770.0) };
    fleet.hears(2, won, hz).await?;
    assert!(lost.contains("Every music bot here is busy"), "{lost}");

    // All busy: the answer names who plays where and offers Delta, who is not here yet.
    let (said, private) = fleet.ask_alpha(if won == VOICE3 { DAVE } else { CAROL }, 880).await?;
    assert!(private);
    for (bot, channel) in [("Alpha", VOICE), ("Bravo", VOICE2), ("Charlie", won)] {
        assert!(said.contains(&format!("**{bot}** in <#{channel}>")), "{said}");
    }
    assert!(said.contains("Invite **Delta**") && said.contains(&format!("client_id={}", APPS[3])), "{said}");

    // Bravo stops, free again in its channel; asked for Charlie's channel it leaves the
    // request to Charlie, who is there, instead of joining as a second bot.
    let winner = if won == VOICE3 { CAROL } else { DAVE };
    let stop = fleet.bot(1).inject_interaction(SlashCommand::new(GUILD, TEXT, BOB, "stop"))?;
    fleet.sim.wait_reply(stop.id, WAIT).await?;
    let (said, _) = fleet.ask_alpha(winner, 990).await?;
    assert!(said.contains("**Charlie** queued") && said.contains("position 1"), "{said}");
    assert_eq!(fleet.channel_of(1), Some(VOICE2), "Bravo stayed where it was");

    let metrics = fleet.bots[0].get("/metrics").await?.1;
    let alpha = APPS[0];
    assert_eq!(metric(&metrics, &format!("musicbot_handoffs_total{{bot=\"{alpha}\",outcome=\"requested\"}}")), 6);
    assert_eq!(metric(&metrics, &format!("musicbot_handoffs_total{{bot=\"{alpha}\",outcome=\"accepted\"}}")), 3);
    assert_eq!(metric(&metrics, &format!("musicbot_handoffs_total{{bot=\"{alpha}\",outcome=\"failed\"}}")), 1);
    assert_eq!(metric(&metrics, &format!("musicbot_handoffs_total{{bot=\"{alpha}\",outcome=\"refused\"}}")), 2);
    let taken = fleet.bots[1].get("/metrics").await?.1;
    assert_eq!(metric(&taken, &format!("musicbot_handoff_taken_seconds_count{{bot=\"{}\"}}", APPS[1])), 1);
    let taken = fleet.bots[2].get("/metrics").await?.1;
    assert_eq!(metric(&taken, &format!("musicbot_handoff_taken_seconds_count{{bot=\"{}\"}}", APPS[2])), 2);
    for bot in &fleet.bots {
        assert!(!bot.logs().contains(KEY), "the fleet key is never logged");
    }
    Ok(())
}

#[tokio::test]
async fn a_bot_that_cannot_join_the_callers_channel_hands_the_request_on() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    // Alpha's voice joins in this server are refused (as without the Connect permission).
    fleet.bot(0).refuse_voice(GUILD, true);
    let (said, private) = fleet.ask_alpha(ALICE, 440).await?;
    assert!(said.contains("**Bravo** will play") && said.contains(&format!("<#{VOICE}>")), "{said}");
    assert!(!private);
    fleet.hears(1, VOICE, 440.0).await?;
    assert_eq!(fleet.channel_of(0), None);
    assert!(fleet.bot(0).voice_refusals() > 0, "Alpha did try");
    Ok(())
}

#[tokio::test]
async fn a_bot_whose_fleet_key_is_missing_plays_alone() -> anyhow::Result<()> {
    let launch = Launch::bot(APP).env("MUSICBOT_FLEET_KEY_FILE", "/nonexistent/fleet-key");
    let Scene { sim, tones, bot } = Scene::start(launch).await?;
    assert!(bot.logs().contains("no fleet key"), "{}", bot.logs());
    start_playing(&sim, &sim.bot(&token_for(APP)), &tones).await?;
    let (code, _) = bot.get("/health").await?;
    assert_eq!(code, 200);
    Ok(())
}
