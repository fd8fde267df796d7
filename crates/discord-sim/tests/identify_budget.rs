//! Discord's session start limit: `GET /gateway/bot` reports it (read with serenity's own
//! client and model), each IDENTIFY spends one, a RESUME none, the budget refills after
//! `reset_after`, and an IDENTIFY over it resets the token as Discord does.

mod support;

use std::time::Duration;

use discord_sim::{BotSpec, DiscordSim};
use serde_json::json;
use serenity::all::{Http, HttpBuilder, HttpError};
use support::*;

fn serenity_http(sim: &DiscordSim, token: &str) -> Http {
    HttpBuilder::new(token).proxy(sim.api_url()).ratelimiter_disabled(true).build()
}

async fn limit(sim: &DiscordSim, token: &str) -> serenity::model::gateway::SessionStartLimit {
    serenity_http(sim, token).get_bot_gateway().await.expect("GET /gateway/bot").session_start_limit
}

fn unauthorized(err: serenity::Error) -> bool {
    matches!(err, serenity::Error::Http(HttpError::UnsuccessfulRequest(e)) if e.status_code.as_u16() == 401)
}

#[tokio::test]
async fn each_identify_spends_one_of_the_session_start_limit_and_a_resume_none() {
    let sim = world().start().await.unwrap();
    let fresh = limit(&sim, TOKEN).await;
    assert_eq!((fresh.total, fresh.remaining, fresh.max_concurrency), (1000, 1000, 1));
    let day = 24 * 60 * 60 * 1000;
    assert!(fresh.reset_after <= day && fresh.reset_after > day - 60_000, "{}", fresh.reset_after);

    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    let session = gw.identify(TOKEN).await["session_id"].as_str().unwrap().to_string();
    gw.dispatch("GUILD_CREATE").await;
    assert_eq!(limit(&sim, TOKEN).await.remaining, 999);
    assert_eq!(limit(&sim, TOKEN2).await.remaining, 1000, "budgets are per token");

    // A resume is free, as on Discord.
    let seq = gw.seq;
    sim.bot(TOKEN).drop_gateway();
    sim.bot(TOKEN).wait_disconnected(WAIT).await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.send(json!({"op": 6, "d": {"token": format!("Bot {TOKEN}"), "session_id": session, "seq": seq}})).await;
    gw.dispatch("RESUMED").await;
    assert_eq!(limit(&sim, TOKEN).await.remaining, 999);

    let mut again = RawGateway::connect(&sim.gateway_url()).await;
    again.identify(TOKEN).await;
    assert_eq!(sim.bot(TOKEN).identifies_left(), 998);
    assert_eq!(sim.bot(TOKEN).identifies(), 2);
}

#[tokio::test]
async fn an_identify_over_the_budget_ends_every_session_and_resets_the_token() {
    crypto();
    let sim = DiscordSim::builder()
        .guild(guild())
        .bot(BotSpec::new(TOKEN).user_id(BOT_ID).in_guild(GUILD).identifies_left(1, Duration::from_secs(600)))
        .bot(BotSpec::new(TOKEN2).user_id(BOT2_ID).in_guild(GUILD))
        .start()
        .await
        .unwrap();
    let left = limit(&sim, TOKEN).await;
    assert_eq!(left.remaining, 1);
    assert!(left.reset_after <= 600_000 && left.reset_after > 590_000, "{}", left.reset_after);
    let mut first = RawGateway::connect(&sim.gateway_url()).await;
    first.identify(TOKEN).await;
    assert_eq!(limit(&sim, TOKEN).await.remaining, 0);
    let mut other = RawGateway::connect(&sim.gateway_url()).await;
    other.identify(TOKEN2).await;

    // The last identify was spent: the next one ends the open session too.
    let mut over = RawGateway::connect(&sim.gateway_url()).await;
    over.send(json!({"op": 2, "d": {"token": format!("Bot {TOKEN}"), "intents": 641, "properties": {}}})).await;
    assert_eq!(u16::from(over.closed().await.expect("a close frame").code), 4004);
    assert_eq!(u16::from(first.closed().await.expect("a close frame").code), 4004);
    let bot = sim.bot(TOKEN);
    assert!(bot.token_reset());
    assert_eq!((bot.identifies(), bot.identifies_refused()), (1, 1));

    // From now on the token is refused everywhere, whatever the budget says.
    bot.set_identifies_left(1000, Duration::from_secs(600));
    let mut later = RawGateway::connect(&sim.gateway_url()).await;
    later.send(json!({"op": 2, "d": {"token": format!("Bot {TOKEN}"), "intents": 641, "properties": {}}})).await;
    assert_eq!(u16::from(later.closed().await.expect("a close frame").code), 4004);
    let e = serenity_http(&sim, TOKEN).get_bot_gateway().await.unwrap_err();
    assert!(unauthorized(e), "REST refuses a reset token");
    assert_eq!(bot.identifies(), 1, "nothing more was accepted");

    // Another bot's session is untouched.
    assert!(sim.bot(TOKEN2).is_connected());
    other.send(json!({"op": 1, "d": other.seq})).await;
    assert_eq!(other.op(11).await["op"], 11);
}

#[tokio::test]
async fn the_budget_refills_once_reset_after_has_passed() {
    let sim = world().start().await.unwrap();
    sim.bot(TOKEN).set_identifies_left(0, Duration::from_millis(400));
    let empty = limit(&sim, TOKEN).await;
    assert_eq!(empty.remaining, 0);
    assert!(empty.reset_after <= 400, "{}", empty.reset_after);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let full = limit(&sim, TOKEN).await;
    assert_eq!(full.remaining, 1000);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    assert_eq!(sim.bot(TOKEN).identifies_left(), 999);
    assert!(!sim.bot(TOKEN).token_reset());
}

#[tokio::test]
async fn a_session_can_be_closed_right_after_ready_with_a_fatal_code() {
    let sim = world().start().await.unwrap();
    sim.bot(TOKEN).close_after_ready(Some(4014));
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.dispatch("GUILD_CREATE").await;
    assert_eq!(u16::from(gw.closed().await.expect("a close frame").code), 4014);
    sim.bot(TOKEN).wait_disconnected(WAIT).await.unwrap();

    sim.bot(TOKEN).close_after_ready(None);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    gw.dispatch("GUILD_CREATE").await;
    assert!(gw.silent_for(Duration::from_millis(300)).await, "left open once the fault is off");
    assert_eq!(sim.bot(TOKEN).identifies_left(), 998);
}
