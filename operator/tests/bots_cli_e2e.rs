//! The binary as a user runs it: `bots add|list|encrypt|invite|remove` against SecantusDB,
//! then the operator process syncing those records into the real API server, answering
//! `POST /assignments` and expiring unused invites. No token ever reaches argv, a log line,
//! an Event, an HTTP answer or the CLI's output.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use mongodb::bson::{Document, doc};
use musicbot_api::crd::MusicBot;
use musicbot_db::{AssignmentStatus, TokenCipher};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use testkit::MongoServer;

const FIRST: &str = "910000000000000001";
const SECOND: &str = "910000000000000002";
const GUILD: &str = "930000000000000001";
const ASSIGNMENTS_TOKEN: &str = "cli-assignments-token-0123456789";

struct Env<'a> {
    uri: String,
    database: String,
    key_file: &'a Path,
}

impl Env<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_musicbot-operator"));
        c.args(args)
            .env("MUSICBOT_MONGODB_URI", &self.uri)
            .env("MUSICBOT_MONGODB_DATABASE", &self.database)
            .env("MUSICBOT_TOKEN_KEY_FILE", self.key_file)
            .env_remove("RUST_LOG");
        c
    }

    /// Runs `musicbot-operator <args>` with `stdin` piped in.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Operator {
    child: Child,
    port: u16,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(port: u16, body: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/assignments"))
        .bearer_auth(ASSIGNMENTS_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn get(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn the_bots_cli_and_the_operator_process_with_sync_and_assignment() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "cli").await.unwrap();
    let server = MongoServer::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, TokenCipher::generate_key()).unwrap();
    let key = TokenCipher::from_key_material(&std::fs::read(&key_file).unwrap()).unwrap();
    let env = Env { uri: server.uri(), database: MongoServer::database_name("cli"), key_file: &key_file };
    let db = server.client().await.unwrap().database(&env.database);
    let records = db.collection::<Document>("MusicBotDB");
    let first_token = token_for(FIRST, "first-cli-secret");
    let second_token = token_for(SECOND, "second-cli-secret");
    let mut outputs = String::new();

    // add: validated, stored encrypted, invite URL printed.
    let out = env.run(&["bots", "add", "--client-id", FIRST, "--name", "Music Bot #1"], &format!("{first_token}\n"));
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains(&format!(
            "https://discord.com/oauth2/authorize?client_id={FIRST}&scope=bot%20applications.commands&permissions=36719616"
        )),
        "{printed}"
    );
    outputs += &printed;
    let stored = records.find_one(doc! {"clientId": FIRST}).await.unwrap().unwrap();
    let stored_token = stored.get_str("token").unwrap();
    assert!(stored_token.starts_with("enc:v1:"), "stored in plaintext");
    assert_eq!(key.decrypt(FIRST, stored_token).unwrap(), first_token);
    // Bad input: nothing stored, nothing echoed.
    for (args, stdin) in [
        (vec!["bots", "add", "--client-id", FIRST], first_token.clone()), // duplicate
        (vec!["bots", "add", "--client-id", "12ab"], first_token.clone()),
        (vec!["bots", "add", "--client-id", SECOND], first_token.clone()), // another bot's token
        (vec!["bots", "add", "--client-id", SECOND], "not.a-token".to_string()),
    ] {
        let out = env.run(&args, &stdin);
        assert!(!out.status.success(), "{args:?} was accepted");
        outputs += &text(&out);
    }
    assert_eq!(records.count_documents(doc! {}).await.unwrap(), 1);

    // An existing database's plaintext record: listed as such, then encrypted in place.
    records
        .insert_one(
            doc! {"name": "Legacy", "clientId": SECOND, "token": &second_token, "isActive": true, "guildCount": 0},
        )
        .await
        .unwrap();
    let out = env.run(&["bots", "list"], "");
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&out);
    assert!(listing.contains("Music Bot #1") && listing.contains("Legacy"), "{listing}");
    assert!(listing.contains("encrypted") && listing.contains("plaintext"), "{listing}");
    outputs += &listing;
    let out = env.run(&["bots", "encrypt"], "");
    assert!(text(&out).contains("encrypted 1,"), "{}", text(&out));
    outputs += &text(&out);
    let legacy = records.find_one(doc! {"clientId": SECOND}).await.unwrap().unwrap();
    assert_eq!(key.decrypt(SECOND, legacy.get_str("token").unwrap()).unwrap(), second_token);
    let out = env.run(&["bots", "encrypt"], "");
    assert!(text(&out).contains("encrypted 0, re-encrypted 0, already encrypted 2"), "{}", text(&out));

    // The operator process, with the sync and assignment on.
    let port = testkit::net::free_port();
    let log_path = dir.path().join("operator.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let assignments_token_file = dir.path().join("assignments-token");
    std::fs::write(&assignments_token_file, format!("{ASSIGNMENTS_TOKEN}\n")).unwrap();
    let child = env
        .command(&["--watch-namespace", &ns, "--sync-namespace", &ns, "--log-format", "json"])
        .args(["--http-addr", &format!("127.0.0.1:{port}"), "--invite-timeout-seconds", "6"])
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("MUSICBOT_ASSIGNMENTS_TOKEN_FILE", &assignments_token_file)
        .env("RUST_LOG", "debug,hyper=info,tower=info,rustls=info,h2=info,mongodb=info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let op = Operator { child, port };
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    for c in [FIRST, SECOND] {
        eventually(&format!("StatefulSet bot-{c}"), || async { stsets.get_opt(&format!("bot-{c}")).await.unwrap() })
            .await;
    }

    // Assignment over HTTP: two bots, both free → one each, then none left for that guild.
    let (code, first) = post(op.port, &format!(r#"{{"guildId": "{GUILD}"}}"#)).await;
    assert_eq!(code, 201, "{first}");
    assert!(first["inviteUrl"].as_str().unwrap().contains(&format!("guild_id={GUILD}")), "{first}");
    assert!(first["expiresAt"].is_string(), "{first}");
    let (code, second) = post(op.port, &format!(r#"{{"guildId": "{GUILD}"}}"#)).await;
    assert_eq!(code, 201, "{second}");
    assert_ne!(first["clientId"], second["clientId"], "the least-loaded bot is another one");
    let (code, none) = post(op.port, &format!(r#"{{"guildId": "{GUILD}"}}"#)).await;
    assert_eq!((code, none["error"].is_string()), (409, true), "{none}");
    let (code, bad) = post(op.port, r#"{"guildId": "nope"}"#).await;
    assert_eq!((code, bad["error"].is_string()), (400, true), "{bad}");
    let mut answers = format!("{first}{second}{none}{bad}");

    // The CLI assigns too; the operator's sweeper fails unused invites after 6 s.
    let out = env.run(&["bots", "invite", "--guild", "930000000000000002", "--invite-timeout-seconds", "6"], "");
    assert!(out.status.success() && text(&out).contains("guild_id=930000000000000002"), "{}", text(&out));
    outputs += &text(&out);
    let guilds = db.collection::<Document>("ServerMusicBotDB");
    eventually("unused invites FAILED", || async {
        let pending = guilds.count_documents(doc! {"status": AssignmentStatus::PendingInvite}).await.unwrap();
        let failed = guilds.count_documents(doc! {"status": AssignmentStatus::Failed}).await.unwrap();
        (pending == 0 && failed == 3).then_some(())
    })
    .await;

    // remove: the record goes, the sync deletes the MusicBot.
    let out = env.run(&["bots", "remove", SECOND], "");
    assert!(out.status.success(), "{}", text(&out));
    outputs += &text(&out);
    let bots: Api<MusicBot> = Api::namespaced(client.clone(), &ns);
    eventually("bot-SECOND deleted", || async {
        bots.get_opt(&format!("bot-{SECOND}")).await.unwrap().is_none().then_some(())
    })
    .await;
    let out = env.run(&["bots", "invite", FIRST], "");
    assert!(text(&out).contains(&format!("client_id={FIRST}")), "{}", text(&out));

    answers += &get(op.port, "/bots").await;
    let metrics = get(op.port, "/metrics").await;
    assert_eq!(metric_value(&metrics, "musicbot_operator_sync_records"), 1.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "musicbot_operator_sync_up"), 1.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "musicbot_operator_assignments_expired_total"), 3.0, "{metrics}");
    answers += &metrics;
    drop(op);

    // Never the token: not in logs, Events, HTTP answers or CLI output.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("plaintext") || log.contains("synced"), "the operator logged nothing useful:\n{log}");
    let events = Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    let events = serde_json::to_string(&events.items).unwrap();
    for secret in ["first-cli-secret", "second-cli-secret", ASSIGNMENTS_TOKEN] {
        for (what, haystack) in [("log", &log), ("Events", &events), ("HTTP", &answers), ("CLI", &outputs)] {
            assert!(!haystack.contains(secret), "the token is in the {what}");
        }
    }
}
