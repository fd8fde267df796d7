//! Guild assignment against SecantusDB through the operator's HTTP router: the least-loaded
//! active bot not yet in the guild is picked, its entry walks PENDING_INVITE → ACTIVE when
//! the bot joins (as bot-runner reports it, through `GuildTracker::joined`), and an unused
//! invite becomes FAILED after the timeout, freeing the slot. The hostile part: no token,
//! a wrong one, a flood, a slow or oversized request, two replicas racing for one guild.
//! And `POST /fleet/invite`, where the bots of the sync's fleet ask the same with their
//! fleet's key (read from its Secret on a real API server).

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{eventually, metric_value};
use http_body_util::BodyExt;
use mongodb::Database;
use mongodb::bson::{Document, doc, oid::ObjectId};
use musicbot_db::{Assigner, AssignmentStatus, Collections, GuildEntry, GuildTracker};
use musicbot_operator::http::{AppState, Assignments, AssignmentsToken, RateLimit, router_with};
use musicbot_operator::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::MongoServer;
use tower::ServiceExt;

const G: &str = "940000000000000001";
const TOKEN: &str = "assignments-test-token-0123456789";

fn token() -> Option<AssignmentsToken> {
    Some(AssignmentsToken::new(TOKEN).unwrap())
}

/// High enough that only the rate-limit test meets the limit.
const UNLIMITED: RateLimit = RateLimit { per_second: 10_000, burst: 10_000 };

fn base_state(metrics: Arc<Metrics>) -> Arc<AppState> {
    // Assignment never talks to Kubernetes; the client only fills the state.
    let kube = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    Arc::new(AppState { client: kube, metrics, namespace: None, started: Instant::now(), ready: Default::default() })
}

fn app_state(db: &Database, timeout: Duration, metrics: Arc<Metrics>) -> Router {
    let assigner = Assigner::new(db, &Collections::default(), timeout);
    router_with(base_state(metrics), Assignments::new(Some(assigner), token(), UNLIMITED))
}

async fn post(app: &Router, body: &str) -> (StatusCode, serde_json::Value) {
    post_as(app, Some(&format!("Bearer {TOKEN}")), body).await
}

async fn post_as(app: &Router, authorization: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
    post_to(app, "/assignments", authorization, body).await
}

async fn post_to(app: &Router, path: &str, authorization: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
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
    let app = router_with(base_state(Arc::new(Metrics::default())), Assignments::new(None, token(), UNLIMITED));
    let (code, err) = post(&app, &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(err["error"].as_str().unwrap().contains("mongodb-uri"));
}

async fn entries_of(db: &Database) -> u64 {
    db.collection::<Document>("ServerMusicBotDB").count_documents(doc! {}).await.unwrap()
}

/// Hostile: a caller without the token writes nothing, and is told nothing it sent.
#[tokio::test]
async fn without_the_bearer_token_nothing_is_assigned() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("assign_auth"));
    add_bot(&db, "A", "950000000000000011", true).await;
    let body = format!(r#"{{"guildId": "{G}"}}"#);
    let metrics = Arc::new(Metrics::default());
    let assigner = || Some(Assigner::new(&db, &Collections::default(), Duration::from_secs(60)));

    // No token configured: refused, never open.
    let off = router_with(base_state(metrics.clone()), Assignments::new(assigner(), None, UNLIMITED));
    let (code, err) = post(&off, &body).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(err["error"].as_str().unwrap().contains("--assignments-token-file"), "{err}");

    let app = router_with(base_state(metrics.clone()), Assignments::new(assigner(), token(), UNLIMITED));
    let guess = "guessed-token-0123456789-abcdef";
    for authorization in [
        None,
        Some(format!("Bearer {guess}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
        Some("Bearer ".to_string()),
    ] {
        let (code, err) = post_as(&app, authorization.as_deref(), &body).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{authorization:?}: {err}");
        let text = err.to_string();
        assert!(
            !text.contains(guess) && !text.contains("assignments-test"),
            "the answer echoes the credential: {text}"
        );
    }
    assert_eq!(entries_of(&db).await, 0, "a refused request wrote an entry");

    // The scheme is case-insensitive; the token is not.
    let (code, ok) = post_as(&app, Some(&format!("bearer {TOKEN}")), &body).await;
    assert_eq!(code, StatusCode::CREATED, "{ok}");
    assert_eq!(entries_of(&db).await, 1);
    let text = metrics.encode();
    assert_eq!(metric_value(&text, r#"musicbot_operator_assignments_total{result="unauthorized"}"#), 7.0, "{text}");
}

#[test]
fn a_short_or_unprintable_token_is_refused_at_start() {
    assert!(AssignmentsToken::new("short").is_err());
    assert!(AssignmentsToken::new("with a space in the middle").is_err());
    assert!(AssignmentsToken::new(&format!("{TOKEN}\n")).is_ok(), "a trailing newline is not part of it");
    assert_eq!(format!("{:?}", token().unwrap()), "AssignmentsToken(<redacted>)");
}

/// Hostile: a flood is answered 429 beyond the burst, before MongoDB is asked anything.
#[tokio::test]
async fn a_flood_beyond_the_burst_gets_429() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("assign_flood"));
    let assigner = Assigner::new(&db, &Collections::default(), Duration::from_secs(60));
    let limit = RateLimit { per_second: 1, burst: 3 };
    let app = router_with(base_state(Arc::new(Metrics::default())), Assignments::new(Some(assigner), token(), limit));
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(post(&app, r#"{"guildId": "1"}"#).await.0);
    }
    let limited = codes.iter().filter(|c| **c == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(&codes[..3], [StatusCode::BAD_REQUEST; 3], "{codes:?}");
    assert!(limited >= 2, "{codes:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&app, r#"{"guildId": "1"}"#).await.0, StatusCode::BAD_REQUEST, "the limit refills");
}

async fn serve(app: Router, header_timeout: Duration) -> (u16, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(musicbot_operator::http::serve_router_with(
        listener,
        app,
        header_timeout,
        stop.clone().cancelled_owned(),
    ));
    (port, stop)
}

/// Reads until the server closes the connection; how long that took.
async fn time_to_close(stream: &mut tokio::net::TcpStream) -> Duration {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open for 10 s");
    start.elapsed()
}

/// Hostile: a client trickling headers (slowloris) or sitting on an idle connection is cut
/// off at the header-read timeout; a body over the limit gets 413 unread.
#[tokio::test]
async fn slow_headers_idle_connections_and_large_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let app = router_with(base_state(Arc::new(Metrics::default())), Assignments::new(None, token(), UNLIMITED));
    let (port, stop) = serve(app, Duration::from_secs(1)).await;

    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"POST /assignments HTTP/1.1\r\nHost: operator\r\nContent-Ty").await.unwrap();
    let took = time_to_close(&mut slow).await;
    assert!(took < Duration::from_secs(3), "a partial header held the connection {took:?}");

    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: operator\r\n\r\n").await.unwrap();
    let took = time_to_close(&mut idle).await;
    assert!(took < Duration::from_secs(3), "an idle kept-alive connection stayed {took:?}");

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/assignments");
    let big = format!(r#"{{"guildId": "{G}", "pad": "{}"}}"#, "x".repeat(musicbot_operator::http::MAX_BODY_BYTES));
    let resp = http.post(&url).bearer_auth(TOKEN).body(big.clone()).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    // Without a Content-Length (chunked), the limit holds while the body streams in.
    let chunks = futures::stream::iter(
        big.into_bytes().chunks(1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let resp = http.post(&url).bearer_auth(TOKEN).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    // A request within the limit still gets through.
    let resp = http.post(&url).bearer_auth(TOKEN).body(format!(r#"{{"guildId": "{G}"}}"#)).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE, "no MongoDB here");
    stop.cancel();
}

/// Hostile: two operator replicas (each its own server and MongoDB client) asked for the
/// same guild at the same instant record one entry: the unique index on (serverId,
/// musicBotId) refuses the second insert, and that replica answers 409.
#[tokio::test]
async fn two_replicas_claiming_one_guild_at_once_record_one_entry() {
    let server = MongoServer::shared().await;
    let name = MongoServer::database_name("assign_race");
    let mut ports = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..2 {
        let db = server.client().await.unwrap().database(&name);
        let assigner = Assigner::new(&db, &Collections::default(), Duration::from_secs(600));
        assigner.ensure_indexes().await.unwrap();
        assigner.ensure_indexes().await.unwrap(); // idempotent
        let app =
            router_with(base_state(Arc::new(Metrics::default())), Assignments::new(Some(assigner), token(), UNLIMITED));
        let (port, stop) = serve(app, Duration::from_secs(5)).await;
        ports.push(port);
        stops.push(stop);
    }
    let db = server.client().await.unwrap().database(&name);
    let bot = add_bot(&db, "only", "950000000000000021", true).await;
    let http = reqwest::Client::new();
    let ask = |port: u16, guild: String| {
        let http = http.clone();
        async move {
            let resp = http
                .post(format!("http://127.0.0.1:{port}/assignments"))
                .bearer_auth(TOKEN)
                .body(format!(r#"{{"guildId": "{guild}"}}"#))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    for n in 0..8u64 {
        let guild = (960000000000000000u64 + n).to_string();
        let (a, b) = tokio::join!(ask(ports[0], guild.clone()), ask(ports[1], guild.clone()));
        let mut codes = [a, b];
        codes.sort();
        assert_eq!(codes, [201, 409], "guild {guild}");
        let found = entry(&db, &guild, bot).await;
        assert_eq!(found.len(), 1, "guild {guild}: {found:?}");
        assert_eq!(found[0].status, AssignmentStatus::PendingInvite);
    }
    // SecantusDB runs one upsert at a time, so the pair above would stay single there even
    // without the index; MongoDB does not promise that. The index itself refuses a second
    // entry for a pair, whoever writes it.
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    let twice = GuildEntry::new(G, bot, AssignmentStatus::Active);
    guilds.insert_one(twice.clone()).await.unwrap();
    let refused = guilds.insert_one(twice).await;
    // ...with the duplicate-key code (11000) the claim takes for "the pair is taken".
    use mongodb::error::{ErrorKind, WriteFailure};
    match refused.map_err(|e| *e.kind) {
        Err(ErrorKind::Write(WriteFailure::WriteError(w))) => assert_eq!(w.code, 11000, "{w:?}"),
        other => panic!("a second (serverId, musicBotId) entry was not refused as a duplicate key: {other:?}"),
    }
    assert_eq!(entry(&db, G, bot).await.len(), 1);
    for stop in stops {
        stop.cancel();
    }
}

/// FAILED entries are kept a day by default, then the sweeper deletes them.
#[tokio::test]
async fn the_sweeper_deletes_failed_entries_past_their_retention() {
    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("assign_purge"));
    let guilds = db.collection::<GuildEntry>("ServerMusicBotDB");
    let bot = add_bot(&db, "A", "950000000000000031", true).await;
    let days_ago = |d: i64| Some(mongodb::bson::DateTime::from_chrono(chrono::Utc::now() - chrono::Duration::days(d)));
    let entry = |guild: &str, status, failed_at| GuildEntry { failed_at, ..GuildEntry::new(guild, bot, status) };
    guilds
        .insert_many([
            entry("1", AssignmentStatus::Failed, days_ago(2)),
            entry("2", AssignmentStatus::Failed, days_ago(0)),
            entry("3", AssignmentStatus::Active, days_ago(2)),
        ])
        .await
        .unwrap();
    let assigner = Assigner::new(&db, &Collections::default(), Duration::from_secs(60))
        .with_failed_retention(Duration::from_secs(24 * 3600));
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper =
        tokio::spawn(musicbot_operator::assign::expire_invites(assigner, Arc::new(Metrics::default()), stop.clone()));
    eventually("the old FAILED entry deleted", || async { entry_count(&db, "1").await.eq(&0).then_some(()) }).await;
    assert_eq!((entry_count(&db, "2").await, entry_count(&db, "3").await), (1, 1), "only the old FAILED one goes");
    stop.cancel();
    sweeper.await.unwrap();
}

async fn entry_count(db: &Database, guild: &str) -> u64 {
    db.collection::<Document>("ServerMusicBotDB").count_documents(doc! {"serverId": guild}).await.unwrap()
}

/// The chart hands the token over as a file from `assignments.existingSecret`, readable by
/// the operator's group only (never an environment variable); without it the variable is
/// absent and the endpoint stays off.
#[test]
fn the_chart_mounts_the_assignments_token_as_a_file() {
    use common::chart::{find, render, validate};
    use serde_json::{Value, json};
    let operator = |docs: &[Value]| find(docs, "Deployment", "musicbot-operator")["spec"]["template"]["spec"].clone();
    let token_env = |pod: &Value| {
        pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "MUSICBOT_ASSIGNMENTS_TOKEN_FILE")
            .cloned()
    };
    let off = operator(&render("musicbot-operator", "musicbot-system", &[]));
    assert_eq!(token_env(&off), None);

    let docs =
        render("musicbot-operator", "musicbot-system", &["--set", "assignments.existingSecret=musicbot-assignments"]);
    validate(&docs);
    let on = operator(&docs);
    let dir = "/var/run/secrets/musicbot/assignments-token";
    assert_eq!(
        token_env(&on),
        Some(json!({"name": "MUSICBOT_ASSIGNMENTS_TOKEN_FILE", "value": format!("{dir}/token")}))
    );
    let mounts = on["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.contains(&json!({"name": "assignments-token", "mountPath": dir, "readOnly": true})), "{mounts:?}");
    let volumes = on["volumes"].as_array().unwrap();
    let volume = json!({"name": "assignments-token", "secret": {"secretName": "musicbot-assignments",
        "items": [{"key": "token", "path": "token"}], "defaultMode": 288}});
    assert!(volumes.contains(&volume), "{volumes:?}");
    let text = on.to_string();
    assert!(!text.contains("secretKeyRef\":{\"key\":\"token\""), "the token also reaches the environment: {text}");
}

/// The sync fleet's bots ask whom to invite with their fleet's key: the least-loaded active
/// bot, the same one while its invite is pending, one entry for the guild however often
/// they ask. The admin token, another fleet's key or a deleted key get 401 and write nothing.
#[tokio::test]
async fn the_sync_fleets_bots_ask_whom_to_invite_with_their_fleet_key() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, PostParams};
    use musicbot_api::handoff::{INVITE_PATH, Invite};

    let (cluster, client) = common::cluster().await;
    let ns = cluster.namespace(&client, "fleet-invite").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key = "the-sync-fleets-key-0123456789abcdefghijkl";
    let secret = |name: &str, key: &str| -> Secret {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "stringData": {"key": key}})).unwrap()
    };
    secrets.create(&PostParams::default(), &secret("musicbot-fleet-default", key)).await.unwrap();
    let other = "another-fleets-key-0123456789abcdefghijklm";
    secrets.create(&PostParams::default(), &secret("musicbot-fleet-night", other)).await.unwrap();

    let server = MongoServer::shared().await;
    let db = server.client().await.unwrap().database(&MongoServer::database_name("fleet_invite"));
    let a = add_bot(&db, "A", "950000000000000031", true).await;
    let b = add_bot(&db, "B", "950000000000000032", true).await;
    let busy = db.collection::<GuildEntry>("ServerMusicBotDB");
    busy.insert_one(GuildEntry::new("5", b, AssignmentStatus::Active)).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        client: client.clone(),
        metrics: metrics.clone(),
        namespace: None,
        started: Instant::now(),
        ready: Default::default(),
    });
    let assigner = Assigner::new(&db, &Collections::default(), Duration::from_secs(60));
    let app = router_with(state, Assignments::new(Some(assigner), token(), UNLIMITED).with_fleet(ns.clone()));
    let body = format!(r#"{{"guildId": "{G}"}}"#);
    let ask = async |authorization: Option<String>| post_to(&app, INVITE_PATH, authorization.as_deref(), &body).await;

    for authorization in [None, Some(format!("Bearer {TOKEN}")), Some(format!("Bearer {other}")), Some(key.into())] {
        let (code, err) = ask(authorization.clone()).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{authorization:?}: {err}");
        assert!(!err.to_string().contains("fleets-key"), "the answer echoes the credential: {err}");
    }
    assert_eq!(entries_of(&db).await, 1, "a refused request wrote an entry");

    let mut invited = Vec::new();
    for _ in 0..3 {
        let (code, answer) = ask(Some(format!("Bearer {key}"))).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        invited.push(serde_json::from_value::<Invite>(answer).unwrap());
    }
    assert_eq!(invited[0].client_id, "950000000000000031", "A is the least loaded");
    assert_eq!(invited[0].name, "A");
    assert!(invited[0].invite_url.contains("client_id=950000000000000031"), "{:?}", invited[0]);
    assert!(invited[0].invite_url.ends_with(&format!("guild_id={G}&disable_guild_select=true")));
    assert!(invited.iter().all(|i| *i == invited[0]), "asking again gives the same bot: {invited:?}");
    assert_eq!(status_of(&db, G, a).await, AssignmentStatus::PendingInvite);
    assert_eq!(entry_count(&db, G).await, 1, "one pending invite however often the fleet asks");

    // A's record deactivated: its pending invite is no longer offered; B is.
    db.collection::<Document>("MusicBotDB")
        .update_one(doc! {"_id": a}, doc! {"$set": {"isActive": false}})
        .await
        .unwrap();
    let (code, answer) = ask(Some(format!("Bearer {key}"))).await;
    assert_eq!((code, answer["clientId"].as_str()), (StatusCode::OK, Some("950000000000000032")), "{answer}");
    // B invited too: no active bot is left to invite.
    db.collection::<Document>("MusicBotDB")
        .update_one(doc! {"_id": a}, doc! {"$set": {"isActive": true}})
        .await
        .unwrap();
    busy.update_one(doc! {"serverId": G, "musicBotId": a}, doc! {"$set": {"status": "ACTIVE"}}).await.unwrap();
    busy.update_one(doc! {"serverId": G, "musicBotId": b}, doc! {"$set": {"status": "ACTIVE"}}).await.unwrap();
    let (code, answer) = ask(Some(format!("Bearer {key}"))).await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    let (code, answer) = post_to(&app, INVITE_PATH, Some(&format!("Bearer {key}")), r#"{"guildId": "x"}"#).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{answer}");

    // The key's Secret deleted: the old key opens nothing.
    secrets.delete("musicbot-fleet-default", &DeleteParams::default()).await.unwrap();
    let (code, _) = ask(Some(format!("Bearer {key}"))).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    let text = metrics.encode();
    assert_eq!(metric_value(&text, r#"musicbot_operator_fleet_invites_total{result="invited"}"#), 4.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_fleet_invites_total{result="unauthorized"}"#), 5.0, "{text}");
    assert_eq!(metric_value(&text, r#"musicbot_operator_assignments_total{result="assigned"}"#), 0.0, "{text}");
}

#[tokio::test]
async fn fleet_invites_without_mongodb_say_so() {
    let app = router_with(
        base_state(Arc::new(Metrics::default())),
        Assignments::new(None, token(), UNLIMITED).with_fleet("music".into()),
    );
    let (code, err) = post_to(&app, "/fleet/invite", Some("Bearer x"), &format!(r#"{{"guildId": "{G}"}}"#)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert!(err["error"].as_str().unwrap().contains("mongodb-uri"), "{err}");
}
