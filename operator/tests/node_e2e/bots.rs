//! MusicBots applied with kubectl: pods that run, play, report, restart and roll.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use musicbot_api::crd::Phase;
use serde_json::json;

use crate::product::{Product, Slot, WAIT, host_pid_of, kill, product};
use crate::run;

const CA: &str = "  pod:\n    caBundle: {configMapName: discord-ca}\n";

/// A namespace, a token Secret and a MusicBot `name` for `slot` (with the simulator's CA),
/// applied with kubectl; returns the namespace and the pod once Ready.
async fn start_bot(p: &Product, slot: &Slot, name: &str) -> (String, Pod) {
    let ns = p.namespace(&format!("node-{name}")).await;
    create_token(p, &ns, name, &slot.token(0));
    p.apply(&ns, &p.musicbot_yaml(name, slot, CA));
    let pod = p.wait_pod_ready(&ns, name, None).await;
    (ns, pod)
}

/// Creates the token Secret the way the docs tell users to (`kubectl create secret`).
pub fn create_token(p: &Product, ns: &str, name: &str, token: &str) {
    let file = std::env::temp_dir().join(format!("{ns}-{name}.token"));
    std::fs::write(&file, token).unwrap();
    let from = format!("--from-file=token={}", file.display());
    let out = p.node.kubectl_ok(&["create", "secret", "generic", &format!("{name}-token"), "-n", ns, &from]);
    std::fs::remove_file(&file).ok();
    out.unwrap();
}

#[test]
fn a_musicbot_applied_with_kubectl_plays_reports_rolls_on_token_rotation_and_goes_on_delete() {
    run(async {
        let p = product().await;
        let slot = Slot::new(0);
        let ns = p.namespace("node-radio").await;
        create_token(p, &ns, "radio", &slot.token(0));
        let applied = Instant::now();
        p.apply(&ns, &p.musicbot_yaml("radio", &slot, CA));

        let pod = p.wait_pod_ready(&ns, "radio", None).await;
        let ready_after = applied.elapsed();
        // The restricted pod: no service-account token, read-only root, not root.
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        let c = &spec.containers[0];
        assert!(
            c.volume_mounts.iter().flatten().all(|m| !m.mount_path.contains("serviceaccount")),
            "{:?}",
            c.volume_mounts
        );
        assert_eq!(c.security_context.as_ref().and_then(|s| s.read_only_root_filesystem), Some(true));
        p.play_and_hear(&slot, &slot.token(0), 440).await.unwrap();
        // A normal start fails no probe: the startup probe waits for the gateway.
        let unhealthy = p.events(&ns, "radio-0", "Unhealthy");
        assert!(unhealthy.trim().is_empty(), "probe failures on a normal start: {unhealthy}");
        eprintln!(
            "apply → Ready {:.1} s, → 440 Hz heard {:.1} s",
            ready_after.as_secs_f64(),
            applied.elapsed().as_secs_f64()
        );

        // Status read from the real pod's /status by its pod IP, shown by kubectl.
        p.wait_musicbot(&ns, "radio", "Running with 1 guild and 1 voice connection", |b| {
            let s = b.status.clone().unwrap_or_default();
            s.phase == Some(Phase::Running) && s.guilds == Some(1) && s.voice_connections == Some(1)
        })
        .await;
        let table = p.node.kubectl_ok(&["get", "mbot", "radio", "-n", &ns]).unwrap();
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], ["radio", "Running", "1", "1"], "kubectl get mbot:\n{table}");

        // Rotation: the Secret changes → the pod is replaced → the new token plays.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(p.client.clone(), &ns);
        let rotated = json!({"stringData": {"token": slot.token(1)}});
        secrets.patch("radio-token", &PatchParams::default(), &Patch::Merge(&rotated)).await.unwrap();
        let old_uid = pod.uid().unwrap();
        p.wait_pod_ready(&ns, "radio", Some(&old_uid)).await;
        p.play_and_hear(&slot, &slot.token(1), 660).await.unwrap();

        // Delete → the pods go.
        p.node.kubectl_ok(&["delete", "mbot", "radio", "-n", &ns, "--wait=true", "--timeout=90s"]).unwrap();
        let deadline = Instant::now() + WAIT;
        while !p.pods(&ns, "radio").await.is_empty() {
            assert!(Instant::now() < deadline, "the bot's pods are still there after its MusicBot was deleted");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[test]
fn a_frozen_bot_is_restarted_by_its_liveness_probe_and_plays_again() {
    run(async {
        let p = product().await;
        let slot = Slot::new(1);
        let (ns, pod) = start_bot(p, &slot, "frozen").await;
        p.play_and_hear(&slot, &slot.token(0), 440).await.unwrap();

        // Frozen from outside: no code path of the binary is involved.
        kill(host_pid_of(&pod, "bot-runner"), "STOP");
        let pods: Api<Pod> = Api::namespaced(p.client.clone(), &ns);
        let deadline = Instant::now() + WAIT;
        loop {
            let pod = pods.get("frozen-0").await.unwrap();
            let restarts =
                pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map_or(0, |c| c[0].restart_count);
            if restarts >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the kubelet did not restart the frozen bot");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let pod = pods.get("frozen-0").await.unwrap();
            let ready = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c[0].ready);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "the restarted bot never became Ready");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        p.play_and_hear(&slot, &slot.token(0), 660).await.unwrap();
        let events = p.events(&ns, "frozen-0", "Unhealthy");
        assert!(events.contains("Liveness probe failed"), "{events}");
    })
}

#[test]
fn yt_dlp_and_deno_run_in_the_restricted_pod_and_play_a_page() {
    run(async {
        let p = product().await;
        let slot = Slot::new(2);
        let (ns, _) = start_bot(p, &slot, "pages").await;
        for cmd in [["yt-dlp", "--version"], ["deno", "--version"]] {
            let out = p.node.kubectl_ok(&["exec", "-n", &ns, "pages-0", "--", cmd[0], cmd[1]]).unwrap();
            assert!(!out.trim().is_empty(), "{} printed nothing", cmd[0]);
        }
        // An HTML page that links the tone: only yt-dlp's generic extractor finds it.
        let bot = p.sim.bot(&slot.token(0));
        bot.wait_ready(WAIT).await.unwrap();
        let play = bot.inject_interaction(slot.play(&p.tones.page(440, 30))).unwrap();
        let reply = p.sim.wait_reply(play.id, Duration::from_secs(60)).await.unwrap();
        let audio = bot
            .wait_for_audio(slot.guild, 1.0, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}; reply: {}", reply.text()));
        assert!((audio.dominant_hz.unwrap() - 440.0).abs() < 5.0, "{audio:?}");
    })
}
