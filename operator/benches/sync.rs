//! MongoDB sync benchmark (`cargo bench -p musicbot-operator --bench sync`), against a real
//! API server and SecantusDB, with the operator as its own release process:
//! - the floor: the same N Secrets, MusicBots and StatefulSets the cold sync makes, created
//!   straight through a kube client, 16 bots in flight (the sync's and the controller's
//!   concurrency), in a namespace of their own; then the same again server-side applied, as
//!   the operator writes them;
//! - cold sync: N records (default 1,000, tokens encrypted) in MongoDB before the operator
//!   starts → time until every MusicBot, then every StatefulSet, exists, and the API
//!   requests it took per bot, as the API server counted them;
//! - then M inserts (default 200), one at a time: insert → StatefulSet exists, p50/p99.
//!
//! Results go to stdout; docs/benchmarks.md records them.

mod common;

use base64::Engine;
use common::{apiserver_requests, cluster, env_size, percentile, requests_between, spawn_operator};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use mongodb::bson::{Document, doc};
use musicbot_api::crd::MusicBot;
use musicbot_api::labels::{MANAGED_BY_LABEL, RECORD_LABEL, SYNC, SYNC_HASH, SYNCED_AT, SYNCED_FROM};
use musicbot_db::TokenCipher;
use musicbot_operator::controller::{BotDefaults, statefulset};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Bots in flight, as in the sync and the controller.
const CONCURRENCY: usize = 16;

fn client_id(i: usize) -> String {
    format!("8{i:017}")
}

fn token(client_id: &str) -> String {
    format!("{}.Gx1y2z.bench", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client_id))
}

fn record(key: &TokenCipher, i: usize) -> (String, Document) {
    let client_id = client_id(i);
    let doc = doc! {
        "name": format!("Bench bot {i}"),
        "clientId": &client_id,
        "token": key.encrypt(&client_id, &token(&client_id)),
        "isActive": true,
        "guildCount": 0,
    };
    (client_id, doc)
}

/// Resolves once `n` distinct objects of `api` have been seen (metadata watch), with the
/// time it took from `from`.
async fn all_exist<K>(api: Api<PartialObjectMeta<K>>, n: usize, from: Instant) -> anyhow::Result<Duration>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let mut seen = HashSet::new();
    let mut events = watcher(api, watcher::Config::default()).applied_objects().boxed();
    while seen.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(600), events.next()).await?.expect("watch ended")?;
        seen.insert(next.name_any());
    }
    Ok(from.elapsed())
}

/// How the floor writes its objects.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    /// POST, as `kubectl create`: the least work for the API server.
    Create,
    /// Server-side apply, as the sync and the controller write.
    Apply,
}

/// Creates or server-side applies `obj` in `api`.
async fn write<K>(api: &Api<K>, how: Write, name: &str, obj: &K) -> kube::Result<K>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match how {
        Write::Create => api.create(&PostParams::default(), obj).await,
        Write::Apply => api.patch(name, &PatchParams::apply("bench").force(), &Patch::Apply(obj)).await,
    }
}

/// The floor: the 3 × `n` objects of a cold sync written straight to the API server.
async fn floor(client: &kube::Client, ns: &str, n: usize, how: Write) -> anyhow::Result<Duration> {
    let (secrets, bots, stsets): (Api<Secret>, Api<MusicBot>, Api<StatefulSet>) =
        (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns));
    let defaults = BotDefaults::default();
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, bots, stsets, defaults) = (&secrets, &bots, &stsets, &defaults);
            async move {
                let client_id = client_id(i);
                let name = format!("bot-{client_id}");
                let secret_name = format!("{name}-token");
                // As the sync writes them: labels, annotations, the token.
                let (record, from) = (format!("r{i}"), format!("MusicBotDB/r{i}"));
                let labels = json!({MANAGED_BY_LABEL: SYNC, RECORD_LABEL: record});
                let secret = json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": secret_name, "labels": labels, "annotations": {SYNCED_FROM: from}},
                    "type": "Opaque",
                    "stringData": {"token": token(&client_id)},
                });
                write(secrets, how, &secret_name, &serde_json::from_value(secret)?).await?;
                let bot = json!({
                    "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
                    "metadata": {"name": name, "labels": labels, "annotations": {
                        SYNCED_FROM: from, SYNCED_AT: "2026-12-01T00:00:00Z", SYNC_HASH: "0123456789abcdef"}},
                    "spec": {"clientId": client_id, "tokenSecretRef": {"name": secret_name, "key": "token"},
                             "displayName": format!("Bench bot {i}"), "suspended": false},
                });
                let bot = write(bots, how, &name, &serde_json::from_value(bot)?).await?;
                write(stsets, how, &name, &statefulset(&bot, defaults, "0123456789abcdef")).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

fn print_requests(title: &str, requests: &BTreeMap<(String, String), f64>, bots: usize) {
    println!("\n| {title}: API requests | total | per bot |");
    println!("|---|---|---|");
    let mut sum = 0.0;
    for ((verb, resource), n) in requests {
        println!("| {verb} {resource} | {n} | {:.2} |", n / bots as f64);
        sum += n;
    }
    println!("| **all but watches** | {sum} | **{:.2}** |", sum / bots as f64);
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

    // 0. The floor, in namespaces the operator does not watch: created, then applied.
    let floor_ns = cluster.namespace(&client, "floor").await?;
    let before = apiserver_requests(&client).await?;
    let floor_took = floor(&client, &floor_ns, cold, Write::Create).await?;
    let floor_requests = requests_between(&before, &apiserver_requests(&client).await?);
    let applied_ns = cluster.namespace(&client, "floor-apply").await?;
    let applied_took = floor(&client, &applied_ns, cold, Write::Apply).await?;

    let docs: Vec<Document> = (0..cold).map(|i| record(&key, i).1).collect();
    let loading = Instant::now();
    for chunk in docs.chunks(100) {
        records.insert_many(chunk.to_vec()).await?;
    }
    let loaded = loading.elapsed();

    // 1. Cold sync.
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let before = apiserver_requests(&client).await?;
    let started = Instant::now();
    let all_bots = tokio::spawn(all_exist::<MusicBot>(Api::namespaced(client.clone(), &ns), cold, started));
    let all_stsets = tokio::spawn(all_exist::<StatefulSet>(Api::namespaced(client.clone(), &ns), cold, started));
    let sync_args = ["--sync-namespace", &ns, "--mongodb-uri", &mongo.uri(), "--mongodb-database", "bench"];
    let mut extra: Vec<std::ffi::OsString> = sync_args.iter().map(Into::into).collect();
    extra.extend(["--token-key-file".into(), key_file.clone().into_os_string()]);
    let mut operator = spawn_operator(&cluster, &ns, "operator-sync.log", extra)?;
    let all_bots = all_bots.await??;
    let all_stsets = all_stsets.await??;
    // The writes a new bot still causes once its StatefulSet exists (its status, the
    // reconciles that follow) belong to its cost: counted after the operator settles.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sync_requests = requests_between(&before, &apiserver_requests(&client).await?);

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

    let floor_s = floor_took.as_secs_f64();
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| {cold} records inserted into SecantusDB (100 per insert_many) | {:.1} s |", loaded.as_secs_f64());
    println!(
        "| floor: {cold} × (Secret, MusicBot, StatefulSet) created, {CONCURRENCY} bots in flight | {floor_s:.1} s |"
    );
    println!("| floor: the same, server-side applied | {:.1} s |", applied_took.as_secs_f64());
    println!("| cold sync: operator start → {cold} MusicBots exist | {:.1} s |", all_bots.as_secs_f64());
    println!(
        "| cold sync: operator start → {cold} StatefulSets exist | {:.1} s ({:.1} × the floor, {:.1} × applied) |",
        all_stsets.as_secs_f64(),
        all_stsets.as_secs_f64() / floor_s,
        all_stsets.as_secs_f64() / applied_took.as_secs_f64()
    );
    println!("| insert → StatefulSet exists, p50 over {inserts} | {} ms |", percentile(&latencies, 0.5).as_millis());
    println!("| insert → StatefulSet exists, p99 over {inserts} | {} ms |", percentile(&latencies, 0.99).as_millis());
    println!("| insert → StatefulSet exists, max | {} ms |", latencies.last().copied().unwrap_or_default().as_millis());
    print_requests("floor", &floor_requests, cold);
    print_requests("cold sync (+5 s to settle)", &sync_requests, cold);
    Ok(())
}
