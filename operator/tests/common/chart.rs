//! The Helm chart under test: rendering it with the real `helm`, validating the manifests
//! offline against the Kubernetes schemas, and clients that act as the chart's
//! ServiceAccount.

use kube::config::{KubeConfigOptions, Kubeconfig};
use musicbot_operator::controller::{self, BotDefaults, Context};
use musicbot_operator::metrics::Metrics;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use testkit::{Helm, KubeCluster};

/// The test API server's version (`KUBE_VERSION` in scripts/setup): manifests are rendered
/// and validated for it, and the install test checks the server really is that version.
pub const KUBE_VERSION: &str = "1.36.3";

/// `major.minor` of [`KUBE_VERSION`].
pub fn kube_minor() -> &'static str {
    KUBE_VERSION.rsplit_once('.').unwrap().0
}

/// Kinds kubernetes-validate has no schema for (custom resources): their shape is asserted
/// by the tests instead. Any other kind without a schema fails validation.
pub const CUSTOM_KINDS: &[&str] = &["ServiceMonitor", "PodMonitor", "PrometheusRule", "MusicBot"];

pub fn chart_dir() -> PathBuf {
    testkit::workspace_root().join("charts/musicbot-operator")
}

pub fn all_optional_values() -> String {
    chart_dir().join("ci/all-optional-values.yaml").display().to_string()
}

/// `helm template` with the CRDs included; `extra` goes to helm as it is.
pub fn render(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir().display().to_string();
    let mut args = vec!["template", release, chart.as_str(), "--namespace", namespace, "--include-crds"];
    args.extend(["--kube-version", KUBE_VERSION]);
    args.extend(extra);
    let out = Helm::new().unwrap().run(&args).unwrap_or_else(|e| panic!("{e:#}"));
    split_documents(&out)
}

pub fn split_documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("helm printed invalid YAML ({e}):\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind_and_name(doc: &Value) -> String {
    format!("{}/{}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"].as_str().unwrap_or("?"))
}

/// The one document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind}/{name} in {:?}",
        docs.iter().map(kind_and_name).collect::<Vec<_>>()
    );
    found[0]
}

fn kubernetes_validate() -> PathBuf {
    let venv = std::env::var("MUSICBOT_PYTHON_VENV")
        .map(PathBuf::from)
        .or_else(|_| testkit::bins::python_venv())
        .unwrap_or_else(|e| panic!("no Python venv with kubernetes-validate: {e:#}"));
    let bin = venv.join("bin/kubernetes-validate");
    assert!(bin.is_file(), "{} is missing: run `scripts/test` once (scripts/setup installs it)", bin.display());
    bin
}

/// Validates every document (strictly: unknown fields fail) against the Kubernetes schemas
/// of [`KUBE_VERSION`], offline. Custom resources in [`CUSTOM_KINDS`] are skipped and
/// returned for the caller to check; a document of any other kind without a schema fails.
pub fn validate(docs: &[Value]) -> Vec<&Value> {
    let (custom, builtin): (Vec<&Value>, Vec<&Value>) =
        docs.iter().partition(|d| CUSTOM_KINDS.contains(&d["kind"].as_str().unwrap_or("")));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    let yaml: Vec<String> = builtin.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
    std::fs::write(&file, yaml.join("---\n")).unwrap();
    let out = Command::new(kubernetes_validate())
        .args(["--kubernetes-version", KUBE_VERSION, "--strict"])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "manifests do not validate against Kubernetes {KUBE_VERSION}:\n{report}");
    // A warning means a document was not checked (e.g. no schema for its kind).
    assert!(!report.contains("WARN") && !report.contains("ERROR"), "kubernetes-validate complained:\n{report}");
    let minor = kube_minor();
    let passed = stdout.lines().filter(|l| l.contains("passed for resource") && l.ends_with(minor)).count();
    assert_eq!(passed, builtin.len(), "not every manifest was validated against {minor}:\n{report}");
    custom
}

/// An API client that authenticates as the admin but acts as `namespace/name`'s
/// ServiceAccount (with the groups a real token of it carries), so the API server
/// authorizes every request with exactly the RBAC bound to that ServiceAccount.
pub async fn client_as_service_account(cluster: &KubeCluster, namespace: &str, name: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{name}"));
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".into(),
    ]);
    kube::Client::try_from(config).unwrap()
}

/// The operator's controller, in-process, with the given client.
pub struct RunningController {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pub metrics: Arc<Metrics>,
}

impl RunningController {
    pub fn start(client: &kube::Client, namespace: Option<String>, defaults: BotDefaults) -> Self {
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context::new(
            client.clone(),
            defaults,
            metrics.clone(),
            // Port 9 (discard): nothing answers; these tests never need Discord.
            "http://127.0.0.1:9/api/v10".into(),
            Duration::from_secs(1),
            Some("chart-test".into()),
        ));
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(controller::run(ctx, namespace, stop.clone()));
        Self { stop, task, metrics }
    }

    /// Stops the controller and waits until it has, so no other test sees it running.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the controller task panicked");
    }
}
