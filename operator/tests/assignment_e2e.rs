//! Guild assignment against SecantusDB through the operator's HTTP router: the least-loaded
//! active bot not yet in the guild is picked, its entry walks PENDING_INVITE → ACTIVE when
//! the bot joins (as bot-runner reports it, through `GuildTracker::joined`), and an unused
//! invite becomes FAILED after the timeout, freeing the slot.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{eventually, metric_value};
use http_body_util::BodyExt;
use mongodb::Database;
use mongodb::bson::{Document, doc, oid::ObjectId};
use musicbot_db::{Assigner, AssignmentStatus, Collections, GuildEntry, GuildTracker};
use musicbot_operator::http::{AppState, Assignments, router, router_with};
use musicbot_operator::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::MongoServer;
use tower::ServiceExt;

const G: &str = "940000000000000001";

fn base_state(metrics: Arc<Metrics>) -> Arc<AppState> {
    // Assignment never talks to Kubernetes; the client only fills the state.
    let kube = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    Arc::new(AppState { client: kube, metrics, namespace: None, started: Instant::now(), ready: Default::default() })
}

fn app_state(db: &Database, timeout: Duration, metrics: Arc<Metrics>) -> Router {
    router_with(base_state(metrics), Assignments(Some(Assigner::new(db, &Collections::default(), timeout))))
}

async fn post(app: &Router, body: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::post("/assignments")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn add_bot(db: &Database, name: &str, client_id: &str, active: bool) -> ObjectId {
    let d = doc! {"name": name, "clientId": client_id, "token": "enc:v1:x", "isActive": active, "guildCount": 0};
    db.collection::<Document>("MusicBotDB").insert_one(d).await.unwrap().inserted_id.as_object_id().unwrap()
}

async fn entry(db: &Database, guild: &str, bot: ObjectId) -> Vec<GuildEntry> {
    use futures::TryStreamExt;
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    guilds.find(doc! {"serverId": guild, "musicBotId": bot}).await.unwrap().try_collect().await.unwrap()
}

async fn status_of(db: &Database, guild: &str, bot: ObjectId) -> AssignmentStatus {
    let entries = entry(db, guild, bot).await;
    assert_eq!(entries.len(), 1, "one entry per (guild, bot): {entries:?}");
    entries[0].status
}

#[tokio::test]
async fn the_least_loaded_bot_is_invited_and_its_entry_walks_to_active_or_failed() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("assign"));
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    let a = add_bot(&db, "A", "950000000000000001", true).await;
    let _b = add_bot(&db, "B (inactive)", "950000000000000002", false).await;
    let c = add_bot(&db, "C", "950000000000000003", true).await;
    let d = add_bot(&db, "D", "950000000000000004", true).await;
    // Loads: A 2, C 1, D 0 but already in G.
    for (bot, guild) in [(a, "1"), (a, "2"), (c, "3"), (d, G)] {
        guilds.insert_one(GuildEntry::new(guild, bot, AssignmentStatus::Active)).await.unwrap();
    }
    // A REMOVED entry does not hold a slot.
    guilds.insert_one(GuildEntry::new("4", c, AssignmentStatus::Removed)).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let state = app_state(&db, Duration::from_secs(2), metrics.clone());

    let (code, first) = post(&state, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    assert_eq!(first["clientId"], "950000000000000003", "C is the least-loaded active bot not in G");
    assert_eq!(first["name"], "C");
    assert_eq!(
        first["inviteUrl"],
        format!(
            "https://discord.com/oauth2/authorize?client_id=950000000000000003&scope=bot%20applications.commands\
             &permissions=36719616&guild_id={G}&disable_guild_select=true"
        )
    );
    assert!(chrono::DateTime::parse_from_rfc3339(first["expiresAt"].as_str().unwrap()).is_ok(), "{first}");
    let pending = entry(&db, G, c).await;
    assert_eq!(pending[0].status, AssignmentStatus::PendingInvite);
    assert!(pending[0].invited_at.is_some());

    // C's pending invite holds its slot in G: the next bot is A.
    let (code, second) = post(&state, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!((code, second["clientId"].as_str()), (StatusCode::CREATED, Some("950000000000000001")), "{second}");

    // C joins G, as bot-runner reports it on GUILD_CREATE.
    let tracker = GuildTracker::for_client(&db, &Collections::default(), "950000000000000003").await.unwrap().unwrap();
    tracker.joined(G.parse().unwrap()).await.unwrap();
    assert_eq!(status_of(&db, G, c).await, AssignmentStatus::Active);
    let (code, none) = post(&state, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::CONFLICT, "{none}");
    assert!(none["error"].as_str().unwrap().contains(G));

    // A never joins: after the timeout the operator's sweeper fails the invite.
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(musicbot_operator::assign::expire_invites(
        Assigner::new(&db, &Collections::default(), Duration::from_secs(2)),
        metrics.clone(),
        stop.clone(),
    ));
    eventually("A's invite FAILED", || async {
        (status_of(&db, G, a).await == AssignmentStatus::Failed).then_some(())
    })
    .await;
    assert_eq!(status_of(&db, G, c).await, AssignmentStatus::Active, "a joined bot's entry is not expired");
    assert_eq!(metric_value(&metrics.encode(), "musicbot_operator_assignments_expired_total"), 1.0);
    stop.cancel();
    sweeper.await.unwrap();

    // The slot is free again: A is picked once more, reusing its entry.
    let (code, again) = post(&state, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!((code, again["clientId"].as_str()), (StatusCode::CREATED, Some("950000000000000001")), "{again}");
    assert_eq!(status_of(&db, G, a).await, AssignmentStatus::PendingInvite);

    // Bad input, and a fleet with no active bot.
    for body in [r#"{"guildId": "12ab"}"#, r#"{"guild": "1"}"#, "not json"] {
        let (code, err) = post(&state, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(err["error"].is_string());
    }
    let empty = server.client().await.unwrap().database(&MongoServer::database_name("assign_empty"));
    let (code, err) =
        post(&app_state(&empty, Duration::from_secs(2), metrics.clone()), &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{err}");
    let text = metrics.encode();
    assert_eq!(metric_value(&text, r#"musicbot_operator_assignments_total{result="assigned"}"#), 3.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_assignments_total{result="all_in_guild"}"#), 1.0, "{text}");
}

#[tokio::test]
async fn without_mongodb_the_endpoint_says_so() {
    let app = router(base_state(Arc::new(Metrics::default())));
    let (code, err) = post(&app, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(err["error"].as_str().unwrap().contains("mongodb-uri"));
}
