//! Fleet benchmark against a real API server (`cargo bench -p musicbot-operator --bench fleet`):
//! - N MusicBots (default 1,000) applied at once → time until every StatefulSet exists;
//! - 100 spec edits of one bot → time until its StatefulSet carries the new template (p50/p99);
//! - the operator process's peak RSS (VmHWM) over the run.
//!
//! The operator runs as its own release process, as in a cluster. Results go to stdout;
//! docs/benchmarks.md records them.

#[allow(dead_code)] // each bench uses part of it
mod common;

use common::{cluster, env_size, percentile, spawn_operator};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use musicbot_api::crd::MusicBot;
use musicbot_api::labels::CONFIG_HASH_ANNOTATION;
use serde_json::json;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "123456789012345678";

fn token() -> String {
    use base64::Engine;
    format!("{}.Gx1y2z.bench", base64::engine::general_purpose::STANDARD_NO_PAD.encode(CLIENT_ID))
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_size("BENCH_BOTS", 1000);
    let edits = env_size("BENCH_EDITS", 100);
    let (cluster, client, ns) = cluster("bench").await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "token"}, "stringData": {"token": token()}}))?;
    secrets.create(&PostParams::default(), &secret).await?;

    let mut operator = spawn_operator(&cluster, &ns, "operator.log", Vec::new())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline_rss = peak_rss_mib(operator.id());

    // 1. N bots at once.
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let bots = bots.clone();
            async move {
                let bot: MusicBot = serde_json::from_value(json!({
                    "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
                    "metadata": {"name": format!("bot-{i:04}")},
                    "spec": {"clientId": CLIENT_ID, "tokenSecretRef": {"name": "token"}}
                }))?;
                bots.create(&PostParams::default(), &bot).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    let created = started.elapsed();
    loop {
        let count = stsets.list_metadata(&ListParams::default()).await?.items.len();
        if count >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("only {count}/{n} StatefulSets after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_exist = started.elapsed();

    // 2. Edits of one bot, each timed until its StatefulSet carries the change.
    let mut hashes = watcher(stsets.clone(), watcher::Config::default().fields("metadata.name=bot-0000"))
        .applied_objects()
        .map_ok(|s: StatefulSet| {
            s.spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        })
        .boxed();
    let mut last = stsets.get("bot-0000").await?.spec.unwrap().template.metadata.unwrap().annotations.unwrap()
        [CONFIG_HASH_ANNOTATION]
        .clone();
    let mut latencies = Vec::with_capacity(edits);
    for i in 0..edits {
        let volume = 10 + (i % 150) as u32;
        let t = Instant::now();
        bots.patch(
            "bot-0000",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"music": {"defaultVolume": volume}}})),
        )
        .await?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), hashes.next()).await?.expect("watch ended")?;
            if let Some(h) = next.filter(|h| *h != last) {
                last = h;
                break;
            }
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let peak = peak_rss_mib(operator.id());
    let _ = operator.kill();
    let _ = operator.wait();

    println!("| measurement | result |");
    println!("|---|---|");
    println!("| {n} MusicBots created (client side, 64 in flight) | {:.1} s |", created.as_secs_f64());
    println!("| {n} MusicBots → every StatefulSet exists | {:.1} s |", all_exist.as_secs_f64());
    println!("| spec edit → StatefulSet updated, p50 over {edits} | {} ms |", percentile(&latencies, 0.5).as_millis());
    println!("| spec edit → StatefulSet updated, p99 over {edits} | {} ms |", percentile(&latencies, 0.99).as_millis());
    println!("| operator RSS after start-up | {baseline_rss:.1} MiB |");
    println!("| operator peak RSS (VmHWM) | {peak:.1} MiB |");
    Ok(())
}
