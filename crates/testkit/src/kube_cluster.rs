//! etcd + kube-apiserver + kube-controller-manager on loopback, one set per test binary.
//!
//! No kubelet and no scheduler: Pods are created (by the StatefulSet controller) but never
//! run. That is what the operator's tests need: real admission, validation, server-side
//! apply, watches, owner references and garbage collection.

use crate::kube_node::NodeAccess;
use crate::process::Guarded;
use crate::{bins, net};
use anyhow::{Context, Result, bail};
use base64::Engine;
use discord_sim::pki::CertAuthority;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;

// Fields drop in declaration order: the servers stop in reverse order of start, and the
// directory holding their files goes last.
pub struct KubeCluster {
    controller_manager: Option<Guarded>,
    apiserver: Guarded,
    /// Program and arguments of kube-apiserver, to start it again (see `restart_apiserver`).
    apiserver_cmd: (PathBuf, Vec<String>),
    etcd: Guarded,
    api_port: u16,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

static SHARED: OnceCell<KubeCluster> = OnceCell::const_new();

impl KubeCluster {
    /// The cluster shared by every test in this test binary (started on first use).
    /// Tests isolate themselves by namespace: see [`KubeCluster::namespace`].
    pub async fn shared() -> &'static KubeCluster {
        SHARED
            .get_or_try_init(|| Self::start(true))
            .await
            .unwrap_or_else(|e| panic!("could not start the test Kubernetes cluster: {e:#}"))
    }

    /// A fresh cluster owned by the caller; `controller_manager` adds garbage collection and
    /// the workload controllers.
    pub async fn start(controller_manager: bool) -> Result<Self> {
        Ok(Self::start_with(controller_manager, None).await?.0)
    }

    /// With `node`, the API server listens on the node's address (pods reach it there through
    /// the `kubernetes` Service) and accepts kubelets; the CA is returned to sign the node's
    /// certificates.
    pub(crate) async fn start_with(
        controller_manager: bool,
        node: Option<&NodeAccess>,
    ) -> Result<(Self, CertAuthority)> {
        let etcd_bin = bins::etcd()?;
        let apiserver_bin = bins::kube_apiserver()?;
        let kcm_bin = if controller_manager { Some(bins::kube_controller_manager()?) } else { None };

        let dir = tempfile::Builder::new().prefix("musicbot-kube-").tempdir()?;
        let d = dir.path();
        let ca = CertAuthority::new("musicbot-test-ca")?;
        let host = node.map(|n| n.ip.to_string()).unwrap_or_else(|| "127.0.0.1".into());
        let serving = match node {
            None => ca.server("kube-apiserver")?,
            Some(_) => ca.server_for("kube-apiserver", &NodeAccess::apiserver_names(&host))?,
        };
        let admin = ca.client("musicbot-test-admin", Some("system:masters"))?;
        let sa_key = rcgen::KeyPair::generate()?;
        write(d, "ca.crt", &ca.cert_pem)?;
        write(d, "apiserver.crt", &serving.cert_pem)?;
        write(d, "apiserver.key", &serving.key_pem)?;
        write(d, "sa.key", &sa_key.serialize_pem())?;
        write(d, "sa.pub", &sa_key.public_key_pem())?;

        let (etcd_port, peer_port, api_port) = (net::free_port(), net::free_port(), net::free_port());
        let etcd_data = d.join("etcd-data");
        let etcd = Guarded::spawn(
            "etcd",
            &etcd_bin,
            &[
                format!("--data-dir={}", etcd_data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
                "--log-level=warn".into(),
                // Test data is thrown away; fsync only costs time.
                "--unsafe-no-fsync".into(),
            ],
            d,
            &d.join("etcd.log"),
            // etcd stops last: it takes the whole directory (certs, logs) with it, which
            // matters for the shared cluster, whose TempDir is never dropped.
            Some(d),
            &[],
        )?;
        net::wait_for_port(etcd_port, Duration::from_secs(30), || etcd.is_alive())
            .await
            .with_context(|| etcd.log_tail())?;

        let p = |name: &str| d.join(name).display().to_string();
        let (sa_key_file, ca_file) = (p("sa.key"), p("ca.crt"));
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--secure-port={api_port}"),
            format!("--bind-address={host}"),
            format!("--advertise-address={host}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            // Configuration only: nothing routes to these addresses.
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--v=0".into(),
        ];
        let mut apiserver_args = apiserver_args;
        match node {
            None => apiserver_args.push("--authorization-mode=RBAC".into()),
            Some(n) => apiserver_args.extend(n.apiserver_args(&ca, d)?),
        }
        let apiserver = Guarded::spawn(
            "kube-apiserver",
            &apiserver_bin,
            &apiserver_args,
            d,
            &d.join("kube-apiserver.log"),
            None,
            &[],
        )?;

        let kubeconfig = d.join("admin.kubeconfig");
        write(d, "admin.kubeconfig", &kubeconfig_yaml(&host, api_port, &ca.cert_pem, &admin.cert_pem, &admin.key_pem))?;
        let apiserver_cmd = (apiserver_bin, apiserver_args);
        let mut cluster = Self { controller_manager: None, apiserver, apiserver_cmd, etcd, api_port, kubeconfig, dir };
        cluster
            .wait_ready()
            .await
            .with_context(|| format!("{}\n{}", cluster.apiserver.log_tail(), cluster.etcd.log_tail()))?;

        if let Some(kcm_bin) = kcm_bin {
            let d = cluster.dir.path();
            let mut kcm_args = vec![
                format!("--kubeconfig={}", cluster.kubeconfig.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                format!("--service-account-private-key-file={sa_key_file}"),
                format!("--root-ca-file={ca_file}"),
                "--use-service-account-credentials=false".into(),
                "--v=0".into(),
            ];
            if node.is_some() {
                // Dynamic PersistentVolumes on the one node (testing only).
                kcm_args.push("--enable-hostpath-provisioner".into());
            }
            let kcm = Guarded::spawn(
                "kube-controller-manager",
                &kcm_bin,
                &kcm_args,
                d,
                &d.join("kube-controller-manager.log"),
                None,
                &[],
            )?;
            cluster.controller_manager = Some(kcm);
            // The controller manager is up once it has created the default ServiceAccount.
            let client = cluster.client().await?;
            wait_for_default_service_account(&client, "default")
                .await
                .with_context(|| cluster.controller_manager.as_ref().unwrap().log_tail())?;
        }
        Ok((cluster, ca))
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let mut last_error = String::new();
        while tokio::time::Instant::now() < deadline {
            if !self.apiserver.is_alive() {
                bail!("kube-apiserver exited during start-up");
            }
            match self.client().await {
                Ok(client) => {
                    let req = http_get("/readyz");
                    match client.request_text(req).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => last_error = body,
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("kube-apiserver not ready after 90 s: {last_error}")
    }

    /// An admin (`system:masters`) client; build one per test, since a client belongs to
    /// the Tokio runtime it was made on.
    pub async fn client(&self) -> Result<kube::Client> {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&self.kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The admin kubeconfig file, for `helm` and other processes.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager.is_some()
    }

    /// Creates a namespace (name made unique with a random suffix) and, when the controller
    /// manager runs, waits for its default ServiceAccount so Pods can be admitted.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> Result<String> {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        if self.has_controller_manager() {
            wait_for_default_service_account(client, &name).await?;
        }
        Ok(name)
    }

    /// Where the servers' logs are, to print when a test fails.
    pub fn logs_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops kube-apiserver (SIGTERM, as a control-plane upgrade does), keeps it down for
    /// `down`, then starts it again on the same port with the same etcd and certificates, and
    /// waits until it is ready. Clients and kubeconfigs made before stay valid.
    pub async fn restart_apiserver(&mut self, down: Duration) -> Result<()> {
        self.stop_apiserver();
        tokio::time::sleep(down).await;
        self.start_apiserver().await
    }

    /// Stops kube-apiserver until [`KubeCluster::start_apiserver`]; etcd keeps the data.
    pub fn stop_apiserver(&mut self) {
        self.apiserver.stop();
    }

    /// Starts kube-apiserver again after [`KubeCluster::stop_apiserver`] and waits until it is ready.
    pub async fn start_apiserver(&mut self) -> Result<()> {
        let d = self.dir.path();
        let (bin, args) = &self.apiserver_cmd;
        self.apiserver = Guarded::spawn("kube-apiserver", bin, args, d, &d.join("kube-apiserver.log"), None, &[])?;
        self.wait_ready().await.with_context(|| self.apiserver.log_tail())
    }
}

async fn wait_for_default_service_account(client: &kube::Client, ns: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    for _ in 0..300 {
        if api.get_opt("default").await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no default ServiceAccount in namespace {ns} after 30 s: is kube-controller-manager running?")
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).expect("static request")
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    std::fs::write(dir.join(name), contents).with_context(|| format!("writing {name}"))
}

pub(crate) fn kubeconfig_yaml(host: &str, port: u16, ca: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://{host}:{port}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: test
  context: {{cluster: test, user: admin, namespace: default}}
current-context: test
"#,
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key)
    )
}
