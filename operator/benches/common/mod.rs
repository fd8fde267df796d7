//! Set-up the operator's benchmarks share.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use musicbot_api::crd::MusicBot;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A size from the environment, else the default.
pub fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Applies the MusicBot CRD and waits until the API server serves it.
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch("musicbots.musicbot.dev", &PatchParams::apply("bench").force(), &Patch::Apply(MusicBot::crd())).await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, "musicbots.musicbot.dev", conditions::is_crd_established()),
    )
    .await??;
    Ok(())
}

/// A fresh API server (no controller manager: no Pods) with the CRD, and a namespace.
pub async fn cluster(namespace_prefix: &str) -> anyhow::Result<(testkit::KubeCluster, kube::Client, String)> {
    let cluster = testkit::KubeCluster::start(false).await?;
    let client = cluster.client().await?;
    install_crd(&client).await?;
    let ns = cluster.namespace(&client, namespace_prefix).await?;
    Ok((cluster, client, ns))
}

/// The release operator as its own process, as in a cluster, watching `ns`; its JSON log
/// goes to `log_name` in the cluster's log folder.
pub fn spawn_operator(
    cluster: &testkit::KubeCluster,
    ns: &str,
    log_name: &str,
    extra_args: Vec<OsString>,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(cluster.logs_dir().join(log_name))?;
    Ok(Command::new(env!("CARGO_BIN_EXE_musicbot-operator"))
        .args(["--watch-namespace", ns, "--http-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(extra_args)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?)
}

/// Requests the API server has answered so far, by (verb, resource/subresource), from its
/// own `apiserver_request_total`: what a client really cost it, counted where it lands.
pub async fn apiserver_requests(client: &kube::Client) -> anyhow::Result<BTreeMap<(String, String), f64>> {
    let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            labels[start..].split('"').next().map(str::to_string)
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else { continue };
        let resource = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource,
        };
        *counts.entry((verb, resource)).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

/// What was requested between two [`apiserver_requests`] readings, watches left out (they
/// are long-lived and counted when they end).
pub fn requests_between(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    after
        .iter()
        .filter(|((verb, _), _)| verb != "WATCH")
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}
