//! Set-up the operator's benchmarks share.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use musicbot_operator::crd::MusicBot;
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
