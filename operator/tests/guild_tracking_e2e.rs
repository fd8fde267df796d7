//! Guild tracking moved out of the bot pods: the operator, against SecantusDB and the real
//! API server, writes a bot's `ServerMusicBotDB` entries and `guildCount` from the guild
//! ids its pod reports on `/status` (served here from the contract type, at 127.0.0.1, as
//! in `bot_status_e2e.rs`), and the pod it runs holds no MongoDB URI.

mod common;

use axum::Json;
use axum::routing::get;
use common::*;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use mongodb::Database;
use mongodb::bson::{Document, doc, oid::ObjectId};
use musicbot_api::crd::MusicBot;
use musicbot_api::report::{BotReport, ShardInfo, StatusReport};
use musicbot_db::{AssignmentStatus, Collections, GuildEntry};
use musicbot_operator::controller::{self, BotDefaults, Context};
use musicbot_operator::metrics::Metrics;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::MongoServer;
use tokio_util::sync::{CancellationToken, DropGuard};

const INVITED: u64 = 940000000000000001;
const JOINED: u64 = 940000000000000002;
const LEFT_OFFLINE: u64 = 940000000000000003;

/// What the bot's pod answers; the test changes it as the bot joins and leaves guilds.
type Answer = Arc<Mutex<StatusReport>>;

fn report(connected: bool, guilds: &[u64]) -> StatusReport {
    let bot = BotReport {
        name: "radio".into(),
        client_id: CLIENT_ID.into(),
        guilds: guilds.len() as u64,
        gateway_connected: connected,
        commands_deployed: connected,
        guild_ids: guilds.iter().map(u64::to_string).collect(),
        ..Default::default()
    };
    StatusReport::of(ShardInfo::default(), vec![bot])
}

async fn status_server(answer: Answer) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route("/status", get(move || async move { Json(answer.lock().unwrap().clone()) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// The controller for `ns` with MongoDB configured, as `main.rs` wires it on the leader.
fn start_tracking_operator(client: &kube::Client, ns: &str, port: u16, db: &Database) -> DropGuard {
    let ctx = Context::new(
        client.clone(),
        BotDefaults { http_port: port, ..BotDefaults::default() },
        Arc::new(Metrics::default()),
        "http://127.0.0.1:9/api/v10".into(),
        Duration::from_secs(1),
        Some("test".into()),
    )
    .with_guild_tracking(db.clone(), Collections::default());
    let stop = CancellationToken::new();
    tokio::spawn(controller::run(Arc::new(ctx), Some(ns.to_string()), stop.clone()));
    stop.drop_guard()
}

async fn entries(db: &Database, bot: ObjectId) -> Vec<(u64, AssignmentStatus)> {
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    let all: Vec<GuildEntry> = guilds.find(doc! {"musicBotId": bot}).await.unwrap().try_collect().await.unwrap();
    let mut out: Vec<(u64, AssignmentStatus)> =
        all.into_iter().map(|e| (e.server_id.parse().unwrap(), e.status)).collect();
    out.sort_by_key(|(g, _)| *g);
    out
}

async fn guild_count(db: &Database, bot: ObjectId) -> i64 {
    let record = db.collection::<Document>("MusicBotDB").find_one(doc! {"_id": bot}).await.unwrap().unwrap();
    record.get_i64("guildCount").unwrap_or(-1)
}

#[tokio::test]
async fn the_operator_records_the_guilds_a_pod_reports_and_the_pod_holds_no_mongodb_uri() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "guilds").await.unwrap();
    let mongo = MongoServer::shared().await;
    let db = mongo.client().await.unwrap().database(&MongoServer::database_name("guilds"));
    let record = doc! {"name": "radio", "clientId": CLIENT_ID, "token": "enc:v1:x", "isActive": true, "guildCount": 0};
    let bot = db.collection::<Document>("MusicBotDB").insert_one(record).await.unwrap().inserted_id;
    let bot = bot.as_object_id().unwrap();
    // An invite handed out by `POST /assignments`, and a guild left while nobody tracked.
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    guilds.insert_one(GuildEntry::new(INVITED.to_string(), bot, AssignmentStatus::PendingInvite)).await.unwrap();
    guilds.insert_one(GuildEntry::new(LEFT_OFFLINE.to_string(), bot, AssignmentStatus::Active)).await.unwrap();

    // Not READY yet: the empty list means nothing, and nothing may be marked left.
    let answer: Answer = Arc::new(Mutex::new(report(false, &[])));
    let port = status_server(answer.clone()).await;
    let _op = start_tracking_operator(&client, &ns, port, &db);
    create_secret(&client, &ns, "radio-token", "token", &token_for(CLIENT_ID, "gt")).await;
    create_bot(&client, &ns, "radio", json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "radio-token"}})).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("pod radio-0", || async { pods.get_opt("radio-0").await.unwrap() }).await;
    mark_ready_at_loopback(&pods, "radio-0").await;
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    eventually("the operator read the not-READY answer", || async {
        let s = bots.get("radio").await.unwrap().status?;
        s.conditions.iter().any(|c| c.type_ == "GatewayConnected" && c.status == "False").then_some(())
    })
    .await;
    let before = [(INVITED, AssignmentStatus::PendingInvite), (LEFT_OFFLINE, AssignmentStatus::Active)];
    assert_eq!(entries(&db, bot).await, before, "a bot not READY changes nothing");

    // READY in two guilds: the invite is fulfilled, the new guild recorded, the guild
    // absent from the report left.
    *answer.lock().unwrap() = report(true, &[INVITED, JOINED]);
    let want = [
        (INVITED, AssignmentStatus::Active),
        (JOINED, AssignmentStatus::Active),
        (LEFT_OFFLINE, AssignmentStatus::Removed),
    ];
    eventually("join → ACTIVE entries, left → REMOVED", || async {
        (entries(&db, bot).await == want).then_some(())
    })
    .await;
    eventually("guildCount 2", || async { (guild_count(&db, bot).await == 2).then_some(()) }).await;
    let invited = guilds.find_one(doc! {"serverId": INVITED.to_string()}).await.unwrap().unwrap();
    assert!(invited.activated_at.is_some() && invited.created_at.is_none(), "the invite's entry, updated");

    // Kicked from one guild.
    *answer.lock().unwrap() = report(true, &[JOINED]);
    eventually("leave → REMOVED, guildCount 1", || async {
        let e = entries(&db, bot).await;
        (e[0] == (INVITED, AssignmentStatus::Removed) && guild_count(&db, bot).await == 1).then_some(())
    })
    .await;
    let removed = guilds.find_one(doc! {"serverId": INVITED.to_string()}).await.unwrap().unwrap();
    assert!(removed.removed_at.is_some());
    assert_eq!(guilds.count_documents(doc! {"musicBotId": bot}).await.unwrap(), 3, "one entry per guild");

    // Hostile: the pod, run by an operator that holds the MongoDB URI, holds none of it.
    let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns).get("radio").await.unwrap();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let uri = mongo.uri();
    for c in &pod.containers {
        assert!(c.env_from.is_none(), "{}: envFrom", c.name);
        for e in c.env.iter().flatten() {
            assert!(!e.name.contains("MONGO"), "{}: {}", c.name, e.name);
            assert!(e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()).is_none(), "{}: {}", c.name, e.name);
            assert!(!e.value.as_deref().unwrap_or_default().contains(&uri), "{}: {}", c.name, e.name);
        }
    }
}
