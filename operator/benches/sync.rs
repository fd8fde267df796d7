//! MongoDB sync benchmark (`cargo bench -p musicbot-operator --bench sync`), against a real
//! API server and SecantusDB, with the operator as its own release process:
//! - cold sync: N records (default 1,000, tokens encrypted) in MongoDB before the operator
//!   starts → time until every MusicBot, then every StatefulSet, exists;
//! - then M inserts (default 200), one at a time: insert → StatefulSet exists, p50/p99.
//!
//! Results go to stdout; docs/benchmarks.md records them.

mod common;

use base64::Engine;
use common::{cluster, env_size, percentile, spawn_operator};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use mongodb::bson::{Document, doc};
use musicbot_api::crd::MusicBot;
use musicbot_db::TokenCipher;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn token(client_id: &str) -> String {
    format!("{}.Gx1y2z.bench", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client_id))
}

fn record(key: &TokenCipher, i: usize) -> (String, Document) {
    let client_id = format!("8{i:017}");
    let doc = doc! {
        "name": format!("Bench bot {i}"),
        "clientId": &client_id,
        "token": key.encrypt(&client_id, &token(&client_id)),
        "isActive": true,
        "guildCount": 0,
    };
    (client_id, doc)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cold = env_size("BENCH_SYNC_COLD", 1000);
    let inserts = env_size("BENCH_SYNC_INSERTS", 200);
    let (cluster, client, ns) = cluster("syncbench").await?;
    let mongo = testkit::MongoServer::start().await?;
    let db = mongo.client().await?.database("bench");
    let records = db.collection::<Document>("MusicBotDB");
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, TokenCipher::generate_key())?;
    let key = TokenCipher::from_key_material(&std::fs::read(&key_file)?)?;

    let docs: Vec<Document> = (0..cold).map(|i| record(&key, i).1).collect();
    let loading = Instant::now();
    for chunk in docs.chunks(100) {
        records.insert_many(chunk.to_vec()).await?;
    }
    let loaded = loading.elapsed();

    let started = Instant::now();
    let sync_args = ["--sync-namespace", &ns, "--mongodb-uri", &mongo.uri(), "--mongodb-database", "bench"];
    let mut extra: Vec<std::ffi::OsString> = sync_args.iter().map(Into::into).collect();
    extra.extend(["--token-key-file".into(), key_file.clone().into_os_string()]);
    let mut operator = spawn_operator(&cluster, &ns, "operator-sync.log", extra)?;

    // 1. Cold sync.
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut all_bots = None;
    loop {
        if all_bots.is_none() && bots.list_metadata(&ListParams::default()).await?.items.len() >= cold {
            all_bots = Some(started.elapsed());
        }
        if all_bots.is_some() && stsets.list_metadata(&ListParams::default()).await?.items.len() >= cold {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("cold sync incomplete after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_stsets = started.elapsed();

    // 2. Inserts one at a time, each until its StatefulSet is seen.
    let mut seen: HashSet<String> = HashSet::new();
    let mut events = watcher(stsets.clone(), watcher::Config::default()).applied_objects().boxed();
    let mut latencies = Vec::with_capacity(inserts);
    for i in cold..cold + inserts {
        let (client_id, doc) = record(&key, i);
        let want = format!("bot-{client_id}");
        let t = Instant::now();
        records.insert_one(doc).await?;
        while !seen.contains(&want) {
            let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await?.expect("watch ended")?;
            seen.insert(next.name_any());
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let _ = operator.kill();
    let _ = operator.wait();

    println!("| measurement | result |");
    println!("|---|---|");
    println!("| {cold} records inserted into SecantusDB (100 per insert_many) | {:.1} s |", loaded.as_secs_f64());
    println!(
        "| cold sync: operator start → {cold} MusicBots exist | {:.1} s |",
        all_bots.unwrap_or_default().as_secs_f64()
    );
    println!("| cold sync: operator start → {cold} StatefulSets exist | {:.1} s |", all_stsets.as_secs_f64());
    println!("| insert → StatefulSet exists, p50 over {inserts} | {} ms |", percentile(&latencies, 0.5).as_millis());
    println!("| insert → StatefulSet exists, p99 over {inserts} | {} ms |", percentile(&latencies, 0.99).as_millis());
    println!("| insert → StatefulSet exists, max | {} ms |", latencies.last().copied().unwrap_or_default().as_millis());
    Ok(())
}
