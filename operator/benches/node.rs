//! The product on a real node (`cargo build --release -p bot-runner && cargo bench -p
//! musicbot-operator --bench node`): images of the release binaries, the chart installed with
//! helm, the Discord simulator and SecantusDB where pods reach the host.
//! - `BENCH_NODE_LATENCY` bots (default 20), one after another: `kubectl apply` of a MusicBot
//!   → its pod Ready (kubelet's probe) → `/play` answered and 440 Hz heard (p50/p99);
//! - `BENCH_NODE_RECORDS` MongoDB inserts (default 5): insert → 440 Hz heard;
//! - `BENCH_NODE_FLEET` bots (default 50) running at once, idle: memory of the bot pods from
//!   their cgroups, and the bot-runner processes' RSS and PSS summed (RSS counts the shared
//!   binary once per process; PSS shares it out).

#[path = "../tests/node_e2e/product.rs"]
#[allow(dead_code)]
mod product;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use mongodb::bson::doc;
use product::{Slot, product_with_slots};

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

fn main() -> anyhow::Result<()> {
    let latency_bots = env_size("BENCH_NODE_LATENCY", 20);
    let records = env_size("BENCH_NODE_RECORDS", 5);
    let fleet = env_size("BENCH_NODE_FLEET", 50);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let p = product_with_slots(latency_bots + records + fleet).await;
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
