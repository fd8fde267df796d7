//! The product on a real node (`cargo build --release -p bot-runner && cargo bench -p
//! musicbot-operator --bench node`): images of the release binaries, the chart installed with
//! helm, the Discord simulator and SecantusDB where pods reach the host.
//! - `BENCH_NODE_LATENCY` bots (default 20), one after another: `kubectl apply` of a MusicBot
//!   → its pod Ready (kubelet's probe) → `/play` answered and 440 Hz heard (p50/p99);
//! - `BENCH_NODE_RECORDS` MongoDB inserts (default 5): insert → 440 Hz heard;
//! - `BENCH_NODE_FLEET` bots (default 50) running at once, idle: memory of the bot pods from
//!   their cgroups, and the bot-runner processes' RSS and PSS summed (RSS counts the shared
//!   binary once per process; PSS shares it out);
//! - `BENCH_NODE_SESSIONS` rounds (default 20) with one playing bot with `spec.session`: the
//!   token rotated (a rolling update: the pod replaced), then bot-runner killed with SIGKILL
//!   (the kubelet restarts it): the silence the simulator heard each time, p50/p99.

#[path = "../tests/node_e2e/product.rs"]
#[allow(dead_code)]
mod product;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use mongodb::bson::doc;
use product::{Cut, Product, STORAGE_CLASS, Slot, product_with_slots};

/// The default request of 50m CPU fits about 36 bots on a 2-core node (the operator's pods
/// request some too); idle bots use far less, so the fleet asks for 10m each.
const FLEET_POD: &str = "  pod:\n    caBundle: {configMapName: discord-ca}\n    resources:\n      \
    requests: {cpu: 10m, memory: 32Mi}\n      limits: {memory: 256Mi}\n";

fn env_size(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(what: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap())
    );
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// The silence of `rounds` rolling updates (token rotations) and `rounds` SIGKILLs of one
/// playing bot that keeps its session on a claim.
async fn session_rounds(p: &Product, slot: Slot, rounds: u64) -> anyhow::Result<()> {
    p.storage_class();
    let ns = p.namespace("bench-sessions").await;
    let name = "sessions";
    product::secret(&p.client, &ns, &format!("{name}-token"), "token", &slot.token(0)).await?;
    let extra = format!(
        "  session: {{storageClassName: {STORAGE_CLASS}}}\n  pod:\n    caBundle: {{configMapName: discord-ca}}\n"
    );
    p.apply(&ns, &p.musicbot_yaml(name, &slot, &extra));
    let mut pod = p.wait_pod_ready(&ns, name, None).await;
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(p.client.clone(), &ns);
    p.open_claim_to_pods(&claims.get(&format!("session-{name}-0")).await?).await;
    let b = p.sim.bot(&slot.token(0));
    b.wait_ready(product::WAIT).await?;
    let play = b.inject_interaction(slot.play(&p.tones.wav(440, 3600)))?;
    p.sim.wait_reply(play.id, product::WAIT).await?;
    b.wait_for_audio(slot.guild, 3.0, product::WAIT).await?;
    let secrets: Api<Secret> = Api::namespaced(p.client.clone(), &ns);
    let (mut rolled, mut killed) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Both tokens are one bot user to the simulator: one recording.
        let token = slot.token(((round + 1) % 2) as u32);
        let patch = serde_json::json!({"stringData": {"token": token}});
        let cut = Cut::of(&b, slot.guild);
        secrets.patch(&format!("{name}-token"), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        rolled.push(Duration::from_secs_f64(p.heard_again(&b, slot.guild, &cut, 2.0).await));
        pod = p.wait_pod_ready(&ns, name, pod.uid().as_deref()).await;
        // A fresh pod's first restart has no back-off.
        let cut = Cut::of(&b, slot.guild);
        product::kill(product::host_pid_of(&pod, "bot-runner"), "KILL");
        killed.push(Duration::from_secs_f64(p.heard_again(&b, slot.guild, &cut, 2.0).await));
    }
    summary("rolling update (token rotated) → silence", rolled);
    summary("SIGKILL of bot-runner → silence", killed);
    p.node.kubectl_ok(&["delete", "mbot", name, "-n", &ns, "--wait=false"])?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let latency_bots = env_size("BENCH_NODE_LATENCY", 20);
    let records = env_size("BENCH_NODE_RECORDS", 5);
    let fleet = env_size("BENCH_NODE_FLEET", 50);
    let sessions = env_size("BENCH_NODE_SESSIONS", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let p = product_with_slots(latency_bots + records + fleet + 1).await;
        println!("node, images, simulator, SecantusDB and helm install: {:.1} s", started.elapsed().as_secs_f64());
        let ns = p.namespace("bench-node").await;
        let extra = "  pod:\n    caBundle: {configMapName: discord-ca}\n";

        let (mut ready, mut heard) = (Vec::new(), Vec::new());
        for i in 0..latency_bots {
            let slot = Slot::new(i);
            let name = format!("lat-{i}");
            product::secret(&p.client, &ns, &format!("{name}-token"), "token", &slot.token(0)).await?;
            let t0 = Instant::now();
            p.apply(&ns, &p.musicbot_yaml(&name, &slot, extra));
            p.wait_pod_ready(&ns, &name, None).await;
            ready.push(t0.elapsed());
            p.play_and_hear(&slot, &slot.token(0), 440).await?;
            heard.push(t0.elapsed());
            p.node.kubectl_ok(&["delete", "mbot", &name, "-n", &ns, "--wait=false"])?;
        }
        summary("kubectl apply → pod Ready", ready);
        summary("kubectl apply → 440 Hz heard", heard);

        let db = p.mongo.client().await?.database("musicbot");
        let mut from_insert = Vec::new();
        for i in latency_bots..latency_bots + records {
            let slot = Slot::new(i);
            let t0 = Instant::now();
            db.collection::<mongodb::bson::Document>("MusicBotDB")
                .insert_one(doc! {"name": format!("rec-{i}"), "clientId": slot.client_id(), "token": slot.token(0), "isActive": true, "guildCount": 0})
                .await?;
            p.wait_pod_ready(&p.release_ns, &format!("bot-{}", slot.client_id()), None).await;
            p.play_and_hear(&slot, &slot.token(0), 440).await?;
            from_insert.push(t0.elapsed());
        }
        summary("MongoDB insert → 440 Hz heard", from_insert);

        if sessions > 0 {
            session_rounds(p, Slot::new(latency_bots + records + fleet), sessions).await?;
        }

        let first = latency_bots + records;
        let fleet_ns = p.namespace("bench-fleet").await;
        let t0 = Instant::now();
        for i in first..first + fleet {
            let slot = Slot::new(i);
            let name = format!("idle-{i}");
            product::secret(&p.client, &fleet_ns, &format!("{name}-token"), "token", &slot.token(0)).await?;
            p.apply(&fleet_ns, &p.musicbot_yaml(&name, &slot, FLEET_POD));
        }
        let mut pods: Vec<Pod> = Vec::new();
        for i in first..first + fleet {
            pods.push(p.wait_pod_ready(&fleet_ns, &format!("idle-{i}"), None).await);
        }
        println!("{fleet} bots applied → all Ready: {:.1} s", t0.elapsed().as_secs_f64());
        // Settle: gateway sessions up, start-up allocations done.
        tokio::time::sleep(Duration::from_secs(15)).await;
        let (mut cgroup_ws, mut rss, mut pss) = (0u64, 0u64, 0u64);
        for pod in &pods {
            let qos = pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_default();
            let dir = p.node.pod_memory_cgroup(&pod.uid().unwrap(), &qos);
            let usage: u64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))?.trim().parse()?;
            let stat = std::fs::read_to_string(dir.join("memory.stat"))?;
            // The working set, as the kubelet counts it: usage less inactive file cache.
            let inactive = stat.lines().find_map(|l| l.strip_prefix("total_inactive_file ")).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            cgroup_ws += usage.saturating_sub(inactive);
            // The processes sit in the containers' cgroups below the pod's.
            let mut procs = String::new();
            for entry in std::fs::read_dir(&dir)?.flatten().filter(|e| e.path().is_dir()) {
                procs += &std::fs::read_to_string(entry.path().join("cgroup.procs")).unwrap_or_default();
            }
            for pid in procs.lines() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "bot-runner" {
                    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
                    rss += kib_field(&rollup, "Rss:");
                    pss += kib_field(&rollup, "Pss:");
                }
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{fleet} idle bot pods: cgroup working set {:.1} MiB ({:.1} per pod); bot-runner RSS sum {:.1} MiB, PSS sum {:.1} MiB ({:.2} per bot)",
            cgroup_ws as f64 / 1048576.0,
            cgroup_ws as f64 / 1048576.0 / fleet as f64,
            mib(rss),
            mib(pss),
            mib(pss) / fleet as f64
        );
        anyhow::Ok(())
    })
}
