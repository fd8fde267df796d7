//! Music that survives the pod: a MusicBot with `spec.session` keeps its session on a claim
//! per shard (the node's hostPath provisioner makes the volume), so the pod that replaces
//! one rolled by a token rotation, or the container the kubelet restarts after a SIGKILL,
//! plays on from where the music was; and a pod whose voice UDP the server stops taking
//! in rejoins and plays on.

use std::time::{Duration, Instant};

use discord_sim::audio::ramp_around;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::bots::create_token;
use crate::product::{Cut, STORAGE_CLASS, Slot, WAIT, host_pid_of, kill, product};
use crate::run;

const RAMP_HZ: u32 = 300;

fn positions(b: &discord_sim::Bot<'_>, guild: u64, cut: f64) -> (f64, f64) {
    let stats = b.audio(guild);
    ramp_around(&b.audio_samples(guild), stats.audible_seconds, cut, f64::from(RAMP_HZ))
        .expect("audio on both sides of the restart")
}

#[test]
fn a_replaced_or_killed_bot_pod_plays_on_from_where_it_was() {
    run(async {
        let p = product().await;
        p.storage_class();
        let slot = Slot::new(10);
        let name = "sessions";
        let ns = p.namespace("node-sessions").await;
        create_token(p, &ns, name, &slot.token(0));
        let extra = format!(
            "  session: {{storageClassName: {STORAGE_CLASS}}}\n  pod:\n    caBundle: {{configMapName: discord-ca}}\n"
        );
        p.apply(&ns, &p.musicbot_yaml(name, &slot, &extra));
        let pod = p.wait_pod_ready(&ns, name, None).await;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(p.client.clone(), &ns);
        let claim = claims.get(&format!("session-{name}-0")).await.expect("the shard's session claim");
        assert_eq!(claim.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Bound"));
        p.open_claim_to_pods(&claim).await;

        let b = p.sim.bot(&slot.token(0));
        b.wait_ready(WAIT).await.unwrap();
        let play = b.inject_interaction(slot.play(&p.tones.ramp(RAMP_HZ, 45))).unwrap();
        p.sim.wait_reply(play.id, WAIT).await.unwrap();
        let queued = b.inject_interaction(slot.play(&p.tones.wav(880, 20))).unwrap();
        p.sim.wait_reply(queued.id, WAIT).await.unwrap();
        b.wait_for_audio(slot.guild, 6.0, WAIT).await.unwrap();

        // Rotation: the token Secret changes, the pod is replaced (SIGTERM, then a new pod).
        let secrets: Api<Secret> = Api::namespaced(p.client.clone(), &ns);
        let rotated = json!({"stringData": {"token": slot.token(1)}});
        secrets.patch(&format!("{name}-token"), &PatchParams::default(), &Patch::Merge(&rotated)).await.unwrap();
        let next = p.sim.bot(&slot.token(1));
        b.wait_disconnected(WAIT).await.unwrap();
        let cut = Cut::of(&next, slot.guild);
        let pod = p.wait_pod_ready(&ns, name, pod.uid().as_deref()).await;
        let silence = p.heard_again(&next, slot.guild, &cut, 1.5).await;
        let (stopped, resumed) = positions(&next, slot.guild, cut.audible);
        eprintln!(
            "rolling update: stopped at ramp second {stopped:.0}, resumed at {resumed:.0}, silence {silence:.1} s"
        );
        assert!((resumed - stopped).abs() <= 2.0, "stopped at {stopped}, resumed at {resumed}");
        assert!(stopped >= 5.0, "{stopped}");

        // SIGKILL: the kubelet restarts the container; the last second saved is played on.
        next.wait_for_audio(slot.guild, cut.audible + 4.0, WAIT).await.unwrap();
        let cut = Cut::of(&next, slot.guild);
        kill(host_pid_of(&pod, "bot-runner"), "KILL");
        let silence = p.heard_again(&next, slot.guild, &cut, 1.5).await;
        let (stopped, resumed) = positions(&next, slot.guild, cut.audible);
        eprintln!("SIGKILL: stopped at ramp second {stopped:.0}, resumed at {resumed:.0}, silence {silence:.1} s");
        assert!((resumed - stopped).abs() <= 2.0, "stopped at {stopped}, resumed at {resumed}");

        // The voice server stops taking in the pod's UDP (the websocket stays up): the
        // watchdog hears no more reports, rejoins on a new session, and plays on from where
        // the listeners stopped hearing.
        next.wait_for_audio(slot.guild, cut.audible + 4.0, WAIT).await.unwrap();
        let cut = Cut::of(&next, slot.guild);
        let ssrc = next.voice(slot.guild).and_then(|v| v.ssrc);
        assert!(next.voice(slot.guild).is_some_and(|v| v.reports_sent > 0), "{:?}", next.voice(slot.guild));
        assert!(next.blackhole_voice(slot.guild));
        let silence = p.heard_again(&next, slot.guild, &cut, 1.5).await;
        let (stopped, resumed) = positions(&next, slot.guild, cut.audible);
        eprintln!(
            "UDP blackholed: stopped at ramp second {stopped:.0}, resumed at {resumed:.0}, silence {silence:.1} s"
        );
        assert!((resumed - stopped).abs() <= 2.0, "stopped at {stopped}, resumed at {resumed}");
        assert_ne!(next.voice(slot.guild).and_then(|v| v.ssrc), ssrc, "a new voice session");

        // The queue goes on after the ramp.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let samples = next.audio_samples(slot.guild);
            let tail = &samples[samples.len().saturating_sub(24_000)..];
            if discord_sim::audio::dominant_frequency(tail, 48_000).is_some_and(|f| (f - 880.0).abs() < 5.0) {
                break;
            }
            assert!(Instant::now() < deadline, "the queued track never played: {:?}", next.audio(slot.guild));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let said: Vec<String> =
            next.messages().iter().filter_map(|m| m["content"].as_str().map(str::to_string)).collect();
        assert!(said.iter().filter(|m| m.contains("I'm back")).count() >= 2, "{said:?}");
        p.node.kubectl_ok(&["delete", "mbot", name, "-n", &ns, "--wait=true", "--timeout=90s"]).unwrap();
        let deadline = Instant::now() + WAIT;
        while claims.get_opt(&claim.name_any()).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the session claim outlived its MusicBot");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
