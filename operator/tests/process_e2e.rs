//! The operator binary as it runs in a cluster: two replicas elect a leader through a
//! Lease, only the leader reconciles, the other takes over when the leader stops, and
//! the HTTP endpoints answer. The token never reaches a log line or an HTTP answer.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use musicbot_api::crd::MusicBot;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
    identity: String,
}

impl Replica {
    fn start(kubeconfig: &std::path::Path, ns: &str, identity: &str, dir: &std::path::Path) -> Self {
        let port = testkit::net::free_port();
        let log = dir.join(format!("{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_musicbot-operator"))
            .args(["--watch-namespace", ns, "--leader-election", "--leader-election-namespace", ns])
            .args(["--lease-seconds", "4", "--identity", identity, "--log-format", "json"])
            .args(["--http-addr", &format!("127.0.0.1:{port}"), "--status-interval-seconds", "2"])
            .env("KUBECONFIG", kubeconfig)
            // Everything, as someone debugging would set it: no level may log a token.
            .env("RUST_LOG", "trace")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port, log, identity: identity.into() }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port)).await.ok()?;
        Some((resp.status().as_u16(), resp.text().await.ok()?))
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").await.expect("/metrics answers");
        text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        for _ in 0..150 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not exit within 15 s of SIGTERM", self.identity);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get_opt("musicbot-operator-leader").await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn two_replicas_one_leader_and_a_takeover() {
    let (cluster, client) = cluster().await;
    let ns = cluster.namespace(&client, "leader").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = vec![
        Replica::start(cluster.kubeconfig_path(), &ns, "replica-a", dir.path()),
        Replica::start(cluster.kubeconfig_path(), &ns, "replica-b", dir.path()),
    ];
    for r in &replicas {
        eventually(&format!("{} /ready", r.identity), || async { (r.get("/ready").await?.0 == 200).then_some(()) })
            .await;
        let (code, body) = r.get("/health").await.unwrap();
        assert_eq!(code, 200);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "ok");
    }
    let leader_id = eventually("a Lease holder", || holder(&client, &ns)).await;
    let (leader, standby) = if leader_id == "replica-a" { (0, 1) } else { (1, 0) };

    let token = token_for(CLIENT_ID, "process-test-secret-part");
    create_secret(&client, &ns, "one-token", "token", &token).await;
    create_bot(&client, &ns, "one", serde_json::json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "one-token"}, "displayName": "Music Bot #1"})).await;
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    eventually("StatefulSet one", || async { stsets.get_opt("one").await.unwrap() }).await;
    assert_eq!(replicas[leader].metric("musicbot_operator_leader").await, 1.0);
    assert_eq!(replicas[standby].metric("musicbot_operator_leader").await, 0.0);
    assert!(replicas[leader].metric("musicbot_operator_reconciles_total").await > 0.0);
    assert_eq!(replicas[standby].metric("musicbot_operator_reconciles_total").await, 0.0, "the standby reconciled");

    // /bots answers like the seed's, from either replica.
    let (code, body) = replicas[standby].get("/bots").await.unwrap();
    assert_eq!(code, 200, "{body}");
    let bots: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bots["bots"][0]["name"], "Music Bot #1");
    assert_eq!(bots["bots"][0]["clientId"], CLIENT_ID);
    assert_eq!(bots["bots"][0]["guilds"], 0);
    assert_eq!(bots["bots"][0]["users"], 0);

    // The leader stops cleanly and hands over.
    let status = replicas[leader].terminate();
    assert!(status.success(), "the leader exited with {status} on SIGTERM");
    let new_leader = eventually("takeover", || async { holder(&client, &ns).await.filter(|h| *h != leader_id) }).await;
    assert_eq!(new_leader, replicas[standby].identity);
    create_secret(&client, &ns, "two-token", "token", &token_for(CLIENT_ID, "two")).await;
    create_bot(
        &client,
        &ns,
        "two",
        serde_json::json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "two-token"}}),
    )
    .await;
    eventually("StatefulSet two, made by the new leader", || async { stsets.get_opt("two").await.unwrap() }).await;
    assert_eq!(replicas[standby].metric("musicbot_operator_leader").await, 1.0);
    // A token of another application: refused, with an Event that must not quote it.
    let other_app = token_for("999999999999999999", "s3cr3t-of-another-app");
    create_secret(&client, &ns, "wrong-token", "token", &other_app).await;
    let wrong = serde_json::json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": "wrong-token"}});
    create_bot(&client, &ns, "wrong", wrong).await;
    let event_api = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    let events = eventually("the Event about the refused token", || async {
        let events = event_api.list(&Default::default()).await.unwrap();
        events.items.iter().any(|e| e.reason.as_deref() == Some("TokenNotResolved")).then_some(events)
    })
    .await;

    // Secrets: nothing any replica logged or served contains the token or its parts.
    let (_, bots_body) = replicas[standby].get("/bots").await.unwrap();
    let (_, metrics_body) = replicas[standby].get("/metrics").await.unwrap();
    replicas[standby].terminate();
    let secret_part = token.rsplit('.').next().unwrap();
    for r in &replicas {
        let log = std::fs::read_to_string(&r.log).unwrap();
        assert!(
            log.contains("reconcil") || log.contains("waiting to become the leader"),
            "{} logged nothing useful:\n{log}",
            r.identity
        );
        assert!(!log.contains(secret_part), "{} logged the token", r.identity);
        // The Secret as the API server sends it: its data in base64.
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &token);
        assert!(!log.contains(&encoded), "{} logged the token Secret's data", r.identity);
    }
    for body in [bots_body, metrics_body] {
        assert!(!body.contains(secret_part), "an HTTP answer contains the token");
    }
    // Nor does anything the operator wrote to the API: MusicBots (status, annotations),
    // StatefulSets (annotations, pod templates) and Events, including the refused token's.
    let bots = Api::<MusicBot>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let workloads = stsets.list(&Default::default()).await.unwrap();
    let written = [
        serde_json::to_string(&bots.items).unwrap(),
        serde_json::to_string(&workloads.items).unwrap(),
        serde_json::to_string(&events.items).unwrap(),
    ];
    let tokens = [token.as_str(), other_app.as_str()];
    for what in written {
        for t in tokens {
            let (secret, encoded) =
                (t.rsplit('.').next().unwrap(), base64::Engine::encode(&base64::engine::general_purpose::STANDARD, t));
            assert!(!what.contains(secret) && !what.contains(&encoded), "a token reached the API: {what}");
        }
    }
    drop(replicas.drain(..));
}
