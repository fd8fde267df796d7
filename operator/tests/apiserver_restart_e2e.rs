//! The operator binary across API server outages, each test on a cluster of its own (the
//! API server is stopped under it): it waits for an API server that is not up yet instead
//! of exiting, and after the API server restarts (as in a control-plane upgrade) it acts on
//! new MusicBots within seconds.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::KubeCluster;

/// How long a new MusicBot may wait for its StatefulSet once the API server answers again.
/// Generous for a loaded 2-core machine; before the fix it took 30–130 s.
const AFTER_RESTART: Duration = Duration::from_secs(15);

struct OperatorProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path, ns: &str, dir: &Path) -> Self {
        let port = testkit::net::free_port();
        let log = dir.join("operator.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(operator_binary())
            .args(["--watch-namespace", ns, "--leader-election", "--leader-election-namespace", ns])
            .args(["--identity", "restart-test", "--log-format", "json"])
            .args(["--http-addr", &format!("127.0.0.1:{port}"), "--status-interval-seconds", "2"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "debug,hyper=info,hyper_util=info,tower=info,rustls=info,h2=info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    async fn status(&self, path: &str) -> Option<u16> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let resp = client.get(format!("http://127.0.0.1:{}{path}", self.port)).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await.unwrap().text().await.unwrap();
        metric_value(&text, name)
    }

    /// Panics, with the operator's log, if the process has exited.
    fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the operator exited ({status}) {when}:\n{}", self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The log's directory goes with the test: keep the whole log of a failed run.
        if std::thread::panicking() {
            let kept = std::env::temp_dir().join(format!("musicbot-operator-{}.log", self.child.id()));
            if std::fs::copy(&self.log, &kept).is_ok() {
                eprintln!("the operator's log: {}", kept.display());
            }
        }
    }
}

/// The operator built with this test, or `MUSICBOT_OPERATOR_BIN` (another build, e.g. one
/// without a fix, to watch this test fail).
fn operator_binary() -> PathBuf {
    std::env::var_os("MUSICBOT_OPERATOR_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_musicbot-operator").into(), PathBuf::from)
}

/// A cluster of this test's own, with the MusicBot CRD established and a namespace.
async fn own_cluster(prefix: &str) -> (KubeCluster, Client, String) {
    let cluster = KubeCluster::start(false).await.expect("starting a test cluster");
    let client = cluster.client().await.unwrap();
    install_crd(&client).await;
    let ns = cluster.namespace(&client, prefix).await.unwrap();
    (cluster, client, ns)
}

async fn apply_bot(client: &Client, ns: &str, name: &str) {
    let secret = format!("{name}-token");
    create_secret(client, ns, &secret, "token", &token_for(CLIENT_ID, name)).await;
    create_bot(client, ns, name, serde_json::json!({"clientId": CLIENT_ID, "tokenSecretRef": {"name": secret}})).await;
}

/// Polls for StatefulSet `name` for at most `limit`; returns how long it took.
async fn statefulset_within(client: &Client, ns: &str, name: &str, limit: Duration) -> Result<Duration, String> {
    let stsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let mut last_error = String::new();
    while start.elapsed() < limit {
        match stsets.get_opt(name).await {
            Ok(Some(_)) => return Ok(start.elapsed()),
            Ok(None) => {}
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("no StatefulSet {name} after {limit:?} (last error: {last_error:?})"))
}

#[tokio::test]
async fn waits_for_an_api_server_that_is_not_up_yet() {
    let (mut cluster, _, ns) = own_cluster("late-api").await;
    cluster.stop_apiserver();
    let dir = tempfile::tempdir().unwrap();
    let mut operator = OperatorProcess::start(cluster.kubeconfig_path(), &ns, dir.path());

    // While the API server is down the operator stays up: alive, not ready. The loop is
    // the outage itself (10 s), checked twice a second.
    let outage = Instant::now();
    let mut answered_health = false;
    while outage.elapsed() < Duration::from_secs(10) {
        operator.assert_alive("while the API server was not up yet");
        if let Some(code) = operator.status("/health").await {
            answered_health = true;
            assert_eq!(code, 200, "/health while waiting for the API server");
            assert_eq!(operator.status("/ready").await, Some(503), "/ready while the API server is down");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answered_health, "/health never answered while waiting:\n{}", operator.log_tail());
    let log = std::fs::read_to_string(&operator.log).unwrap();
    let retries = log.matches("the Kubernetes API server is not answering").count();
    assert!(retries >= 2, "expected logged retries while the API server was down, got {retries}:\n{log}");
    assert!(retries <= 40, "{retries} retries in 10 s: that is busy-looping, not backing off");

    cluster.start_apiserver().await.unwrap();
    let client = cluster.client().await.unwrap();
    eventually("/ready once the API server is up", || async {
        (operator.status("/ready").await? == 200).then_some(())
    })
    .await;
    apply_bot(&client, &ns, "late").await;
    let took = statefulset_within(&client, &ns, "late", Duration::from_secs(60)).await;
    operator.assert_alive("after the API server came up");
    took.unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));
}

#[tokio::test]
async fn acts_within_seconds_after_the_api_server_restarts() {
    let (mut cluster, client, ns) = own_cluster("restart-api").await;
    let dir = tempfile::tempdir().unwrap();
    let mut operator = OperatorProcess::start(cluster.kubeconfig_path(), &ns, dir.path());
    eventually("/ready", || async { (operator.status("/ready").await? == 200).then_some(()) }).await;
    apply_bot(&client, &ns, "before").await;
    statefulset_within(&client, &ns, "before", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail()));

    // Down for 30 s: longer than the Lease (15 s) and long enough for any backoff to grow.
    cluster.restart_apiserver(Duration::from_secs(30)).await.unwrap();
    operator.assert_alive("while the API server was restarting");

    // A fresh client: the old one's pooled connections died with the server.
    let client = cluster.client().await.unwrap();
    apply_bot(&client, &ns, "newcomer").await;
    let took = statefulset_within(&client, &ns, "newcomer", AFTER_RESTART).await;
    operator.assert_alive("after the API server restarted");
    let took = took.unwrap_or_else(|e| panic!("{e} of the API server answering again\n{}", operator.log_tail()));
    eprintln!("StatefulSet after the restart in {took:?}");

    // Still the leader: the Lease expired during the outage, but no one else took it.
    assert_eq!(operator.metric("musicbot_operator_leader").await, 1.0, "{}", operator.log_tail());
}
