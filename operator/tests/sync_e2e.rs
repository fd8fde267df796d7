//! The MongoDB sync against SecantusDB and the real API server: records in, Secrets,
//! MusicBots and StatefulSets out; edits, deactivation and deletion followed; hand-made
//! objects left alone; SecantusDB and operator restarts survived without losing or
//! replaying changes; malformed records skipped while the rest of the fleet syncs.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};
use musicbot_api::crd::MusicBot;
use musicbot_api::labels::CONFIG_HASH_ANNOTATION;
use musicbot_api::labels::{MANAGED_BY_LABEL, SYNC_ERROR, synced_selector as selector};
use musicbot_db::TokenCipher;
use musicbot_operator::config::SyncMode;
use musicbot_operator::controller::BotDefaults;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use testkit::MongoServer;

const OTHER_ID: &str = "223456789012345678";

fn cipher() -> Arc<TokenCipher> {
    Arc::new(TokenCipher::from_key_material(&[42u8; 32]).unwrap())
}

async fn database(server: &MongoServer, prefix: &str) -> Database {
    server.client().await.unwrap().database(&MongoServer::database_name(prefix))
}

fn bots(db: &Database) -> mongodb::Collection<Document> {
    db.collection("MusicBotDB")
}

fn record(name: &str, client_id: &str, stored_token: &str) -> Document {
    doc! {"name": name, "clientId": client_id, "token": stored_token, "isActive": true, "guildCount": 0}
}

async fn musicbot(client: &Client, ns: &str, name: &str) -> Option<MusicBot> {
    Api::<MusicBot>::namespaced(client.clone(), ns).get_opt(name).await.unwrap()
}

async fn secret_token(client: &Client, ns: &str, name: &str) -> Option<String> {
    let s = Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await.unwrap()?;
    Some(String::from_utf8(s.data?.get("token")?.0.clone()).unwrap())
}

async fn pod_hash(client: &Client, ns: &str, pod: &str) -> Option<String> {
    let p = Api::<Pod>::namespaced(client.clone(), ns).get_opt(pod).await.unwrap()?;
    p.metadata.deletion_timestamp.is_none().then(|| p.annotations().get(CONFIG_HASH_ANNOTATION).cloned()).flatten()
}

fn condition(bot: &MusicBot, type_: &str) -> Option<musicbot_api::crd::Condition> {
    bot.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

async fn synced_names(client: &Client, ns: &str) -> BTreeSet<String> {
    let list = Api::<MusicBot>::namespaced(client.clone(), ns)
        .list_metadata(&ListParams::default().labels(&selector()))
        .await
        .unwrap();
    list.items.into_iter().map(|b| b.name_any()).collect()
}

async fn skipped_event_subjects(client: &Client, ns: &str) -> BTreeSet<String> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RecordSkipped"))
        .filter_map(|e| e.regarding?.name)
        .collect()
}

#[tokio::test]
async fn a_record_becomes_a_running_bot_that_follows_its_record() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-life").await.unwrap();
    let db = database(MongoServer::shared().await, "life").await;
    let key = cipher();
    let _op = start_operator(&client, &ns, BotDefaults::default());
    // Hand-made: one unrelated MusicBot, one squatting the name a record would get.
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "radio")).await;
    create_bot(
        &client,
        &ns,
        "radio",
        serde_json::json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}}),
    )
    .await;
    let squatter = format!("bot-{OTHER_ID}");
    create_bot(
        &client,
        &ns,
        &squatter,
        serde_json::json!({"clientId": OTHER_ID, "tokenSecretRef": {"name": "radio-token"}, "displayName": "Hand made"}),
    )
    .await;
    let sync = start_sync(&client, &db, Some(key.clone()), sync_settings(&ns, SyncMode::Auto));
    eventually("the change stream open", || async { (sync.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;

    // Insert → Secret + MusicBot + StatefulSet + pod.
    let first = token_for(CLIENT_ID, "first-secret-part");
    let id = ObjectId::new();
    let mut doc = record("Music Bot #1", CLIENT_ID, &key.encrypt(CLIENT_ID, &first));
    doc.insert("_id", id);
    bots(&db).insert_one(doc).await.unwrap();
    let name = format!("bot-{CLIENT_ID}");
    let secret_name = format!("{name}-token");
    let bot = eventually("the synced MusicBot", || musicbot(&client, &ns, &name)).await;
    assert_eq!(bot.labels()[MANAGED_BY_LABEL], "musicbot-operator-sync");
    assert_eq!(bot.spec.display_name.as_deref(), Some("Music Bot #1"));
    assert!(!bot.spec.suspended);
    assert_eq!(
        secret_token(&client, &ns, &secret_name).await.as_deref(),
        Some(first.as_str()),
        "decrypted into the Secret"
    );
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("the StatefulSet", || async { stsets.get_opt(&name).await.unwrap() }).await;
    let pod = format!("{name}-0");
    let hash = eventually("pod -0", || pod_hash(&client, &ns, &pod)).await;
    let synced = eventually("Synced=True", || async {
        condition(&musicbot(&client, &ns, &name).await?, "Synced").filter(|c| c.status == "True")
    })
    .await;
    assert!(synced.message.contains(&format!("MusicBotDB/{}", id.to_hex())), "{}", synced.message);

    // A new token → the pod rolls.
    let second = token_for(CLIENT_ID, "second-secret-part");
    bots(&db).update_one(doc! {"_id": id}, doc! {"$set": {"token": key.encrypt(CLIENT_ID, &second)}}).await.unwrap();
    eventually("the pod rolled for the new token", || async {
        pod_hash(&client, &ns, &pod).await.filter(|h| *h != hash)
    })
    .await;
    assert_eq!(secret_token(&client, &ns, &secret_name).await.as_deref(), Some(second.as_str()));

    // A presence on the record → the MusicBot's presence; a bad one is an invalid record.
    let presence = doc! {"status": "idle", "activity": {"type": "watching", "name": "the queue"}};
    bots(&db).update_one(doc! {"_id": id}, doc! {"$set": {"presence": presence}}).await.unwrap();
    let p = eventually("the record's presence", || async { musicbot(&client, &ns, &name).await?.spec.presence }).await;
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        serde_json::json!({"status": "idle", "activity": {"type": "watching", "name": "the queue"}})
    );

    // Deactivated → suspended (objects kept, no pod).
    bots(&db).update_one(doc! {"_id": id}, doc! {"$set": {"isActive": false}}).await.unwrap();
    eventually("suspended", || async { musicbot(&client, &ns, &name).await?.spec.suspended.then_some(()) }).await;
    eventually("scaled to zero", || async {
        (stsets.get(&name).await.unwrap().spec?.replicas == Some(0)).then_some(())
    })
    .await;

    // An invalid edit keeps the last good version and says so; fixing it resumes.
    bots(&db).update_one(doc! {"_id": id}, doc! {"$set": {"isActive": "yes"}}).await.unwrap();
    let invalid = eventually("Synced=False RecordInvalid", || async {
        condition(&musicbot(&client, &ns, &name).await?, "Synced").filter(|c| c.reason == "RecordInvalid")
    })
    .await;
    assert!(invalid.message.contains("isActive"), "{}", invalid.message);
    bots(&db).update_one(doc! {"_id": id}, doc! {"$set": {"isActive": true}}).await.unwrap();
    eventually("valid and running again", || async {
        let b = musicbot(&client, &ns, &name).await?;
        (!b.spec.suspended && !b.annotations().contains_key(SYNC_ERROR)).then_some(())
    })
    .await;

    // The squatted name: the hand-made MusicBot is untouched, the record is reported.
    bots(&db)
        .insert_one(record("Squatted", OTHER_ID, &key.encrypt(OTHER_ID, &token_for(OTHER_ID, "x"))))
        .await
        .unwrap();
    eventually("a RecordSkipped Event on the hand-made MusicBot", || async {
        skipped_event_subjects(&client, &ns).await.contains(&squatter).then_some(())
    })
    .await;
    let hand_made = musicbot(&client, &ns, &squatter).await.unwrap();
    assert_eq!(hand_made.spec.display_name.as_deref(), Some("Hand made"));
    assert!(!hand_made.labels().contains_key(MANAGED_BY_LABEL));

    // Deleted → gone, the StatefulSet with it.
    let sts_uid = stsets.get(&name).await.unwrap().uid();
    bots(&db).delete_one(doc! {"_id": id}).await.unwrap();
    eventually("MusicBot gone", || async { musicbot(&client, &ns, &name).await.is_none().then_some(()) }).await;
    eventually("Secret gone", || async { secret_token(&client, &ns, &secret_name).await.is_none().then_some(()) })
        .await;
    eventually("StatefulSet collected", || async {
        stsets.get_opt(&name).await.unwrap().is_none_or(|s| s.uid() != sts_uid).then_some(())
    })
    .await;
    assert!(musicbot(&client, &ns, "radio").await.is_some(), "a hand-made MusicBot was deleted");
    assert!(musicbot(&client, &ns, &squatter).await.is_some(), "a hand-made MusicBot was deleted");
    assert!(sync.metric("musicbot_operator_sync_lag_seconds_count") >= 4.0, "{}", sync.metrics.encode());
    sync.stop().await;
}

#[tokio::test]
async fn restarting_secantusdb_mid_stream_loses_no_change() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-dbrestart").await.unwrap();
    let mut server = MongoServer::start().await.unwrap();
    // The sync's client gives up on an unreachable server after half a second, so the
    // driver's own one-shot resume fails and the sync's reopen-from-the-token path runs.
    let impatient =
        mongodb::Client::with_uri_str(format!("{}&serverSelectionTimeoutMS=500", server.uri())).await.unwrap();
    let sync = start_sync(&client, &impatient.database("restart"), None, sync_settings(&ns, SyncMode::Watch));
    let db = server.client().await.unwrap().database("restart");
    eventually("the change stream open", || async { (sync.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;

    let id = |i: u32| format!("3000000000000{i:05}");
    let docs: Vec<Document> = (0..5).map(|i| record(&format!("before {i}"), &id(i), &token_for(&id(i), "p"))).collect();
    bots(&db).insert_many(docs).await.unwrap();
    // Mid-stream (the sync has seen some, maybe none, of those changes), down long enough
    // that the driver's own one-shot resume gives up and the sync reopens from its token.
    server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart().await.unwrap();
    let db = server.client().await.unwrap().database("restart");
    for i in 5..10 {
        let doc = record(&format!("after {i}"), &id(i), &token_for(&id(i), "p"));
        eventually("an insert after the restart", || {
            let doc = doc.clone();
            let db = db.clone();
            async move { bots(&db).insert_one(doc).await.ok().map(|_| ()) }
        })
        .await;
    }
    let want: BTreeSet<String> = (0..10).map(|i| format!("bot-{}", id(i))).collect();
    eventually("all ten synced", || async { (synced_names(&client, &ns).await == want).then_some(()) }).await;
    // They came through the reopened stream, each once, with no fallback to a full resync.
    eventually("ten stream events", || async {
        (sync.metric("musicbot_operator_sync_stream_events_total") == 10.0).then_some(())
    })
    .await;
    let text = sync.metrics.encode();
    assert_eq!(metric_value(&text, r#"musicbot_operator_sync_resyncs_total{reason="start"}"#), 1.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_sync_resyncs_total{reason="resume_failed"}"#), 0.0, "{text}");
    assert!(metric_value(&text, "musicbot_operator_sync_errors_total") >= 1.0, "the restart went unnoticed?\n{text}");
    sync.stop().await;
}

#[tokio::test]
async fn an_operator_restart_resumes_from_the_stored_token_without_replaying() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-oprestart").await.unwrap();
    let db = database(MongoServer::shared().await, "resume").await;
    let a = "400000000000000001";
    let b = "400000000000000002";

    let first = start_sync(&client, &db, None, sync_settings(&ns, SyncMode::Watch));
    eventually("the change stream open", || async { (first.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;
    let a_id = bots(&db).insert_one(record("A", a, &token_for(a, "p"))).await.unwrap().inserted_id;
    let (bot_a, bot_b) = (format!("bot-{a}"), format!("bot-{b}"));
    eventually("A synced", || musicbot(&client, &ns, &bot_a)).await;
    assert_eq!(first.metric("musicbot_operator_sync_stream_events_total"), 1.0);
    first.stop().await;
    let stored = db.collection::<Document>("MusicBotOperatorSync").find_one(doc! {}).await.unwrap();
    assert!(stored.is_some_and(|d| d.contains_key("resumeToken")), "no resume token stored");

    // While no operator runs: A renamed, B added.
    bots(&db).update_one(doc! {"_id": a_id.clone()}, doc! {"$set": {"name": "A renamed"}}).await.unwrap();
    bots(&db).insert_one(record("B", b, &token_for(b, "p"))).await.unwrap();

    let second = start_sync(&client, &db, None, sync_settings(&ns, SyncMode::Watch));
    eventually("B synced", || musicbot(&client, &ns, &bot_b)).await;
    eventually("A renamed", || async {
        (musicbot(&client, &ns, &bot_a).await?.spec.display_name? == "A renamed").then_some(())
    })
    .await;
    // Exactly the two changes made while it was down come through the stream: A's insert,
    // handled by the first instance, is not replayed.
    eventually("two stream events", || async {
        (second.metric("musicbot_operator_sync_stream_events_total") == 2.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = second.metrics.encode();
    assert_eq!(metric_value(&text, "musicbot_operator_sync_stream_events_total"), 2.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_sync_resyncs_total{reason="resume_failed"}"#), 0.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_sync_writes_total{op="apply"}"#), 2.0, "{text}");
    second.stop().await;
}

/// Ten kinds of bad record; `i` picks one. `good` are client ids of good records.
fn malformed(i: usize, key: &TokenCipher, good: &[String]) -> Document {
    let own = format!("5000000000000{i:05}");
    let t = token_for(&own, "p");
    match i % 10 {
        0 => doc! {"name": "no client id", "token": t},
        1 => doc! {"name": "numeric client id", "clientId": 5_i64, "token": t},
        2 => doc! {"name": "not a snowflake", "clientId": "12ab", "token": t},
        3 => doc! {"name": "no token", "clientId": &own},
        4 => doc! {"name": "empty token", "clientId": &own, "token": "  "},
        5 => doc! {"name": "isActive text", "clientId": &own, "token": t, "isActive": "yes"},
        6 => doc! {"name": "undecryptable", "clientId": &own, "token": "enc:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        7 => {
            let other = TokenCipher::from_key_material(&[9u8; 32]).unwrap();
            doc! {"name": "another key", "clientId": &own, "token": other.encrypt(&own, &t)}
        }
        8 => doc! {"name": "foreign token", "clientId": &own, "token": key.encrypt(&own, &token_for(OTHER_ID, "p"))},
        _ => {
            let dup = &good[i % good.len()];
            doc! {"name": "duplicate", "clientId": dup, "token": key.encrypt(dup, &token_for(dup, "p")), "_id": Bson::ObjectId(ObjectId::new())}
        }
    }
}

#[tokio::test]
async fn malformed_records_are_skipped_and_every_good_one_syncs() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-malformed").await.unwrap();
    let db = database(MongoServer::shared().await, "malformed").await;
    let key = cipher();
    let good: Vec<String> = (0..100).map(|i| format!("6000000000000{i:05}")).collect();
    let good_doc = |i: usize| record(&format!("good {i}"), &good[i], &key.encrypt(&good[i], &token_for(&good[i], "p")));

    // Half before the sync starts (the full resync reads them), mixed; good ones first so
    // each duplicate is the younger record.
    let mut before: Vec<Document> = (0..50).map(good_doc).collect();
    before.extend((0..50).map(|i| malformed(i, &key, &good[..50])));
    bots(&db).insert_many(before).await.unwrap();
    let sync = start_sync(&client, &db, Some(key.clone()), sync_settings(&ns, SyncMode::Auto));
    eventually("the change stream open", || async { (sync.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;
    // The other half through the change stream, interleaved.
    for i in 50..100 {
        bots(&db).insert_one(good_doc(i)).await.unwrap();
        bots(&db).insert_one(malformed(i, &key, &good[50..])).await.unwrap();
    }

    let want: BTreeSet<String> = good.iter().map(|c| format!("bot-{c}")).collect();
    eventually("every good record synced", || async { (synced_names(&client, &ns).await == want).then_some(()) }).await;
    eventually("100 skipped", || async {
        (sync.metric("musicbot_operator_sync_skipped_records_current") == 100.0).then_some(())
    })
    .await;
    let subjects = eventually("an Event per skipped record", || async {
        let s = skipped_event_subjects(&client, &ns).await;
        (s.len() >= 100).then_some(s)
    })
    .await;
    assert_eq!(subjects.len(), 100, "{subjects:?}");
    let text = sync.metrics.encode();
    assert_eq!(metric_value(&text, "musicbot_operator_sync_skipped_records_total"), 100.0, "{text}");
    assert_eq!(
        metric_value(&text, r#"musicbot_operator_sync_skipped_records_current{reason="duplicate_client_id"}"#),
        10.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, r#"musicbot_operator_sync_skipped_records_current{reason="undecryptable_token"}"#),
        20.0,
        "{text}"
    );

    // Fixing a bad record syncs it.
    let fixed = "700000000000000001";
    bots(&db)
        .update_one(
            doc! {"name": "no client id"},
            doc! {"$set": {"clientId": fixed, "token": key.encrypt(fixed, &token_for(fixed, "p"))}},
        )
        .await
        .unwrap();
    let fixed_bot = format!("bot-{fixed}");
    eventually("the fixed record synced", || musicbot(&client, &ns, &fixed_bot)).await;
    eventually("99 skipped", || async {
        (sync.metric("musicbot_operator_sync_skipped_records_current") == 99.0).then_some(())
    })
    .await;
    sync.stop().await;
}

#[tokio::test]
async fn polling_follows_the_records_where_change_streams_are_not_used() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-poll").await.unwrap();
    let db = database(MongoServer::shared().await, "poll").await;
    let sync = start_sync(&client, &db, None, sync_settings(&ns, SyncMode::Poll));
    let c = "800000000000000001";
    let id = bots(&db).insert_one(record("Polled", c, &token_for(c, "p"))).await.unwrap().inserted_id;
    let polled = format!("bot-{c}");
    eventually("synced by polling", || musicbot(&client, &ns, &polled)).await;
    bots(&db).delete_one(doc! {"_id": id}).await.unwrap();
    eventually("deleted by polling", || async { musicbot(&client, &ns, &polled).await.is_none().then_some(()) }).await;
    assert_eq!(sync.metric("musicbot_operator_sync_stream_events_total"), 0.0);
    assert!(sync.metric(r#"musicbot_operator_sync_resyncs_total{reason="poll"}"#) >= 2.0);
    sync.stop().await;
}

async fn held_event_subjects(client: &Client, ns: &str) -> BTreeSet<String> {
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MassDeletionHeld"))
        .filter_map(|e| e.regarding?.name)
        .collect()
}

/// *Hostile*: a collection emptied, or a misnamed one, must not wipe the fleet.
#[tokio::test]
async fn a_wiped_or_misnamed_collection_deletes_nothing_until_allowed() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "sync-wipe").await.unwrap();
    let db = database(MongoServer::shared().await, "wipe").await;
    let ids: Vec<String> = (0..10).map(|i| format!("6000000000000000{i:02}")).collect();
    let all: BTreeSet<String> = ids.iter().map(|c| format!("bot-{c}")).collect();
    let count = |n: usize| {
        let (client, ns) = (client.clone(), ns.clone());
        move || {
            let (client, ns) = (client.clone(), ns.clone());
            async move { (synced_names(&client, &ns).await.len() == n).then_some(()) }
        }
    };

    let sync = start_sync(&client, &db, None, sync_settings(&ns, SyncMode::Watch));
    eventually("the change stream open", || async { (sync.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;
    bots(&db).insert_many(ids.iter().map(|c| record(c, c, &token_for(c, "p")))).await.unwrap();
    eventually("10 synced", count(10)).await;

    // A small deletion (1 of 10) goes through.
    bots(&db).delete_one(doc! {"clientId": &ids[0]}).await.unwrap();
    eventually("1 of 10 deleted", count(9)).await;
    assert_eq!(sync.metric("musicbot_operator_sync_deletions_held"), 0.0);

    // Every record deactivated at once stops the fleet as surely: held the same way. The
    // changes arrive one by one and wait for the burst to settle, so all 9 are held (with
    // the deletion a moment ago, 10 of 10).
    let suspended = || async {
        let list = Api::<MusicBot>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
        list.items.iter().filter(|b| b.spec.suspended).count()
    };
    bots(&db).update_many(doc! {}, doc! {"$set": {"isActive": false}}).await.unwrap();
    eventually("9 held", || async { (sync.metric("musicbot_operator_sync_deletions_held") == 9.0).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(suspended().await, 0, "a mass deactivation stopped part of the fleet");
    // Each held MusicBot says so (the controller makes it their Synced condition).
    let marked_held = || async {
        let list = Api::<MusicBot>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
        list.items.iter().filter(|b| b.annotations().contains_key(musicbot_api::labels::SYNC_HELD)).count()
    };
    eventually("9 marked held", || async { (marked_held().await == 9).then_some(()) }).await;
    // Active again: nothing is held, nothing suspended.
    bots(&db).update_many(doc! {}, doc! {"$set": {"isActive": true}}).await.unwrap();
    eventually("all running again", || async { (suspended().await == 0).then_some(()) }).await;
    eventually("none held", || async { (sync.metric("musicbot_operator_sync_deletions_held") == 0.0).then_some(()) })
        .await;
    eventually("none marked held", || async { (marked_held().await == 0).then_some(()) }).await;
    sync.stop().await;

    // The settings name a collection that does not exist: its resync would delete all 9.
    let mut misnamed = sync_settings(&ns, SyncMode::Watch);
    misnamed.collections.bots = "MusicBotsDB".into();
    let sync = start_sync(&client, &db, None, misnamed);
    eventually("9 held", || async { (sync.metric("musicbot_operator_sync_deletions_held") == 9.0).then_some(()) })
        .await;
    assert_eq!(synced_names(&client, &ns).await.len(), 9, "a misnamed collection deleted bots");
    let kept: BTreeSet<String> = all.iter().skip(1).cloned().collect();
    eventually("an Event on each held MusicBot", || async {
        (held_event_subjects(&client, &ns).await == kept).then_some(())
    })
    .await;
    sync.stop().await;

    // The collection emptied while the sync follows it: the deletes arrive one by one, wait
    // for the burst to settle, and are held together: none goes.
    let sync = start_sync(&client, &db, None, sync_settings(&ns, SyncMode::Watch));
    eventually("the change stream open", || async { (sync.metric("musicbot_operator_sync_up") == 1.0).then_some(()) })
        .await;
    bots(&db).delete_many(doc! {}).await.unwrap();
    eventually("9 held", || async { (sync.metric("musicbot_operator_sync_deletions_held") == 9.0).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(synced_names(&client, &ns).await.len(), 9, "an emptied collection deleted bots");
    assert_eq!(sync.metric("musicbot_operator_sync_deletions_held"), 9.0);
    sync.stop().await;

    // The override: they go.
    let mut allowed = sync_settings(&ns, SyncMode::Watch);
    allowed.allow_mass_delete = true;
    let sync = start_sync(&client, &db, None, allowed);
    eventually("all deleted with the override", count(0)).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns).list_metadata(&ListParams::default()).await.unwrap();
    assert!(secrets.items.iter().all(|s| !s.name_any().starts_with("bot-6")), "their Secrets went too");
    assert_eq!(sync.metric("musicbot_operator_sync_deletions_held"), 0.0);
    sync.stop().await;
}
