//! Shared set-up of the operator's tests: the real cluster from testkit, the CRD installed
//! from the Rust types, and the controller running in-process on one namespace.
#![allow(dead_code)] // each test binary uses its own subset

pub mod chart;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt};
use musicbot_api::crd::MusicBot;
use musicbot_operator::controller::{self, BotDefaults, Context};
use musicbot_operator::metrics::Metrics;
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use testkit::KubeCluster;
use tokio::sync::OnceCell;
use tokio_util::sync::{CancellationToken, DropGuard};

pub const CLIENT_ID: &str = "123456789012345678";

/// A token with Discord's shape for `client_id` (the operator checks that shape).
pub fn token_for(client_id: &str, secret_part: &str) -> String {
    format!("{}.Gx1y2z.{secret_part}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client_id))
}

static CRD: OnceCell<()> = OnceCell::const_new();

/// The shared cluster with the MusicBot CRD established, and an admin client.
pub async fn cluster() -> (&'static KubeCluster, Client) {
    let cluster = KubeCluster::shared().await;
    let client = cluster.client().await.expect("admin client");
    CRD.get_or_init(|| install_crd(&client)).await;
    (cluster, client)
}

/// Applies the MusicBot CRD from the Rust types and waits until the API server serves it.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("musicbots.musicbot.dev", &PatchParams::apply("tests").force(), &Patch::Apply(MusicBot::crd()))
        .await
        .expect("applying the CRD");
    within("CRD established", await_condition(crds, "musicbots.musicbot.dev", conditions::is_crd_established()))
        .await
        .unwrap();
}

/// Runs the controller for `ns` until the returned guard is dropped.
pub struct Operator {
    _stop: DropGuard,
    pub metrics: Arc<Metrics>,
}

pub fn start_operator(client: &Client, ns: &str, defaults: BotDefaults) -> Operator {
    // Port 9 (discard) on loopback: nothing answers, as no test here expects Discord.
    start_operator_with(client, ns, defaults, "http://127.0.0.1:9/api/v10")
}

pub fn start_operator_with(client: &Client, ns: &str, defaults: BotDefaults, discord_api_url: &str) -> Operator {
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(
        client.clone(),
        defaults,
        metrics.clone(),
        discord_api_url.into(),
        Duration::from_secs(1),
        Some("test".into()),
    ));
    let stop = CancellationToken::new();
    tokio::spawn(controller::run(ctx, Some(ns.to_string()), stop.clone()));
    Operator { _stop: stop.drop_guard(), metrics }
}

pub async fn create_secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {key: value}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &secret).await.unwrap();
}

/// These clusters have no kubelet (pods that really run are in `node_e2e/`), so a test that
/// needs a bot pod "running" writes the status a kubelet would: Running and Ready at
/// 127.0.0.1, where the test serves the pod's `/status`.
pub async fn mark_ready_at_loopback(pods: &Api<k8s_openapi::api::core::v1::Pod>, name: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let kubelet = json!({"status": {
        "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(kubelet)).await.unwrap();
}

pub async fn create_bot(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> MusicBot {
    let bot: MusicBot = serde_json::from_value(json!({
        "apiVersion": "musicbot.dev/v1alpha1", "kind": "MusicBot",
        "metadata": {"name": name},
        "spec": spec
    }))
    .unwrap();
    Api::<MusicBot>::namespaced(client.clone(), ns).create(&PostParams::default(), &bot).await.unwrap()
}

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after 60 s waiting for {what}"))
}

/// Polls `probe` until it returns Some, or fails the test naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
}

/// The MongoDB sync running in-process for one namespace until stopped or dropped.
pub struct Sync {
    stop: Option<DropGuard>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
}

impl Sync {
    /// Stops the sync as a shutdown would (its resume token is stored) and waits for it.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            within("the sync to stop", task).await.unwrap();
        }
    }

    /// The sum of a metric's samples (all label sets).
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics.encode(), name)
    }
}

/// The sum of the samples of `name` (with any labels) in a metrics exposition. `name` may
/// include a label set, e.g. `foo_total{reason="start"}`.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn sync_settings(ns: &str, mode: musicbot_operator::config::SyncMode) -> musicbot_operator::sync::Settings {
    musicbot_operator::sync::Settings {
        namespace: ns.into(),
        collections: musicbot_db::Collections::default(),
        state_collection: "MusicBotOperatorSync".into(),
        mode,
        poll_interval: Duration::from_secs(1),
        resync_interval: Duration::from_secs(600),
        instance: Some("test".into()),
        max_delete_percent: 50,
        allow_mass_delete: false,
    }
}

pub fn start_sync(
    client: &Client,
    db: &mongodb::Database,
    cipher: Option<Arc<musicbot_db::TokenCipher>>,
    settings: musicbot_operator::sync::Settings,
) -> Sync {
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(musicbot_operator::sync::run(
        client.clone(),
        db.clone(),
        cipher,
        settings,
        metrics.clone(),
        stop.clone(),
    ));
    Sync { stop: Some(stop.drop_guard()), task: Some(task), metrics }
}
