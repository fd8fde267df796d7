//! The identify budget on the node: a bot whose token has 5 of Discord's daily 1,000
//! IDENTIFYs left crash-loops (the simulator closes its gateway with a fatal code right after
//! every READY, so bot-runner exits and the kubelet restarts it). bot-runner spends only what
//! is above its reserve of 3; the operator sees the held pod restarted while low, stops the
//! pods until Discord's reset, and says so in the MusicBot and an Event; after the reset the
//! bot starts again and stays up.

use std::time::{Duration, Instant};

use discord_sim::gateway::close::DISALLOWED_INTENTS;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use musicbot_api::crd::{MusicBot, Phase};

use crate::bots::create_token;
use crate::product::{Product, Slot, WAIT, product};
use crate::run;

const CA: &str = "  pod:\n    caBundle: {configMapName: discord-ca}\n";
/// bot-runner's default `--identify-reserve`.
const RESERVE: u32 = 3;
const LEFT: u32 = 5;

fn condition(bot: &MusicBot, type_: &str) -> Option<(String, String, String)> {
    let c = bot.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn replicas(p: &Product, ns: &str, name: &str) -> Option<i32> {
    Api::<StatefulSet>::namespaced(p.client.clone(), ns).get(name).await.ok()?.spec?.replicas
}

#[test]
fn a_bot_with_5_identifies_left_in_a_crash_loop_spends_no_more_than_allowed_and_shows_why_it_is_held() {
    run(async {
        let p = product().await;
        let slot = Slot::new(11);
        let name = "budget";
        let token = slot.token(0);
        let sim = p.sim.bot(&token);
        // Long enough for two crashes and the kubelet's back-offs (10 s, 20 s) before it.
        let reset_after = Duration::from_secs(150);
        sim.set_identifies_left(LEFT, reset_after);
        let reset_at = Instant::now() + reset_after;
        sim.close_after_ready(Some(DISALLOWED_INTENTS));
        let ns = p.namespace(&format!("node-{name}")).await;
        create_token(p, &ns, name, &token);
        p.apply(&ns, &p.musicbot_yaml(name, &slot, CA));

        let held = p
            .wait_musicbot(&ns, name, "Held with IdentifiesAvailable=False (IdentifyHeld)", |b| {
                let s = b.status.clone().unwrap_or_default();
                s.phase == Some(Phase::Held)
                    && s.identify_held_until.is_some()
                    && condition(b, "IdentifiesAvailable")
                        .is_some_and(|(st, r, _)| st == "False" && r == "IdentifyHeld")
            })
            .await;
        let spent = sim.identifies();
        eprintln!("held after {spent} identifies; {} left", sim.identifies_left());
        assert!(spent <= LEFT - RESERVE, "{spent} identifies spent of the {} allowed", LEFT - RESERVE);
        assert!(spent >= 1, "the bot never connected: no crash loop was made");
        assert!(sim.identifies_left() >= RESERVE && !sim.token_reset());

        // Why, and until when, in the MusicBot and an Event.
        let until = held.status.as_ref().unwrap().identify_held_until.clone().unwrap();
        let (_, _, message) = condition(&held, "IdentifiesAvailable").unwrap();
        assert!(message.contains(&until) && message.contains("identifies left"), "{message}");
        let (_, ready_reason, _) = condition(&held, "Ready").unwrap();
        assert_eq!(ready_reason, "IdentifyHeld");
        let events = p.events(&ns, name, "IdentifyHeld");
        assert!(events.contains("Warning") && events.contains(&until), "no IdentifyHeld Event:\n{events}");
        let table = p.node.kubectl_ok(&["get", "mbot", name, "-n", &ns]).unwrap();
        assert!(table.contains("Held"), "kubectl get mbot:\n{table}");

        // No more restarts: no pods until the reset.
        assert_eq!(replicas(p, &ns, name).await, Some(0));
        let deadline = Instant::now() + WAIT;
        while !p.pods(&ns, name).await.is_empty() {
            assert!(Instant::now() < deadline, "the held bot's pod is still there");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(sim.identifies(), spent, "nothing spent while held");

        // Discord's reset: the crash's cause is gone too; the bot starts and stays up.
        sim.close_after_ready(None);
        let deadline = reset_at + WAIT;
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(p.client.clone(), &ns);
        loop {
            let ready = pods
                .get(&format!("{name}-0"))
                .await
                .ok()
                .and_then(|pod| pod.status)
                .is_some_and(|s| s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "the bot did not start again after the reset");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(Instant::now() >= reset_at, "the pods came back before Discord's reset");
        assert_eq!((sim.identifies(), sim.identifies_left()), (spent + 1, 999));
        p.wait_musicbot(&ns, name, "Running again, hold cleared", |b| {
            let s = b.status.clone().unwrap_or_default();
            s.phase == Some(Phase::Running)
                && s.identify_held_until.is_none()
                && condition(b, "IdentifiesAvailable").is_some_and(|(st, _, _)| st == "True")
        })
        .await;
        let ended = p.events(&ns, name, "IdentifyHoldEnded");
        assert!(ended.contains("Normal"), "no IdentifyHoldEnded Event:\n{ended}");
        p.play_and_hear(&slot, &token, 440).await.unwrap();
    })
}
