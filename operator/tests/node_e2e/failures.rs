//! What goes wrong with real pods shows in the MusicBot's phase, conditions and Events,
//! never as "Pending" forever: each case is made to happen on the node for real.

use musicbot_api::crd::{MusicBot, Phase};

use crate::bots::create_token;
use crate::product::{Slot, product};
use crate::run;

fn ready_reason(bot: &MusicBot) -> Option<(String, String)> {
    let status = bot.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((ready.reason.clone(), ready.message.clone()))
}

/// Applies a bot whose pod cannot run for `reason`, and checks the MusicBot and its Event.
async fn shows_in_status(
    slot: u64,
    name: &str,
    token_generation: u32,
    extra_spec: &str,
    reason: &str,
    message_part: &str,
) {
    let p = product().await;
    let slot = Slot::new(slot);
    let ns = p.namespace(&format!("node-{name}")).await;
    create_token(p, &ns, name, &slot.token(token_generation));
    p.apply(&ns, &p.musicbot_yaml(name, &slot, extra_spec));
    let bot = p
        .wait_musicbot(&ns, name, &format!("Ready=False with reason {reason}"), |b| {
            ready_reason(b).is_some_and(|(r, m)| r == reason && m.contains(message_part))
        })
        .await;
    let phase = bot.status.as_ref().and_then(|s| s.phase);
    assert!(phase.is_some_and(|ph| ph != Phase::Pending && ph != Phase::Running), "phase {phase:?} for {reason}");
    let events = p.events(&ns, name, reason);
    assert!(events.contains("Warning"), "no Warning Event {reason} for {name}:\n{events}");
}

#[test]
fn an_image_that_cannot_be_pulled_shows_in_status_and_an_event() {
    run(shows_in_status(
        5,
        "nopull",
        0,
        "  pod:\n    image: localhost/bot-runner:no-such-tag\n",
        "ImagePullFailed",
        "localhost/bot-runner:no-such-tag",
    ))
}

#[test]
fn a_bot_in_crash_loop_shows_its_last_exit() {
    // A token of the right shape that the simulator does not know: Discord answers 401,
    // bot-runner exits, the kubelet restarts it with growing back-off.
    run(shows_in_status(
        6,
        "crashing",
        9,
        "  pod:\n    caBundle: {configMapName: discord-ca}\n",
        "CrashLoopBackOff",
        "exit code",
    ))
}

#[test]
fn a_pod_that_cannot_be_scheduled_shows_why() {
    run(shows_in_status(
        7,
        "unplaced",
        0,
        "  pod:\n    nodeSelector: {musicbot.dev/no-such-node: \"yes\"}\n",
        "Unschedulable",
        "node",
    ))
}
