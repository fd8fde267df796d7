//! A one-node Kubernetes whose pods really run: the control plane of [`KubeCluster`] on the
//! node's address, plus kube-scheduler, and containerd + runc + kubelet + kube-proxy in a
//! private mount namespace (`crates/testkit/node/node-ns.sh`). Images come from
//! `scripts/build-images` (the repository's Dockerfiles, the test build's binaries) and are
//! imported into containerd: nothing is pulled.
//!
//! The node uses fixed host resources (a bridge, its address, kubelet's ports), so there is
//! one per machine at a time: a file lock serialises test binaries. It is always torn down
//! (`crates/testkit/node/node-down.sh`): by a guard process when the test binary exits however it
//! exits, and at the next start if even the guard was killed. The host keeps its sysctls,
//! iptables and mounts as they were.

use crate::kube_cluster::{KubeCluster, kubeconfig_yaml};
use crate::process::Guarded;
use crate::{bins, workspace_root};
use anyhow::{Context, Result, bail};
use discord_sim::pki::CertAuthority;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The node's name, its address on the pod bridge (pods reach host services only there),
/// the bridge and the pod network.
pub const NODE_NAME: &str = "musicbot-node";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const BRIDGE: &str = "mb-cni0";
const POD_CIDR: &str = "10.244.0.0/24";
/// Tag of the images the node gets from `scripts/build-images`.
pub const IMAGE_TAG: &str = "e2e";

/// What the API server needs to accept a kubelet (see [`KubeCluster::start_with`]).
pub(crate) struct NodeAccess {
    pub ip: Ipv4Addr,
}

impl NodeAccess {
    /// Names in the API server's certificate: the node address and the `kubernetes` Service,
    /// so in-cluster clients verify it as on any cluster.
    pub fn apiserver_names(host: &str) -> Vec<String> {
        let mut names = vec![host.to_string(), "10.96.0.1".to_string(), "kubernetes".to_string()];
        names.extend(["default", "default.svc", "default.svc.cluster.local"].map(|s| format!("kubernetes.{s}")));
        names
    }

    pub fn apiserver_args(&self, ca: &CertAuthority, dir: &Path) -> Result<Vec<String>> {
        let client = ca.client("kube-apiserver-kubelet-client", Some("system:masters"))?;
        write(dir, "apiserver-kubelet-client.crt", &client.cert_pem)?;
        write(dir, "apiserver-kubelet-client.key", &client.key_pem)?;
        let p = |name: &str| dir.join(name).display().to_string();
        Ok(vec![
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!("--kubelet-client-certificate={}", p("apiserver-kubelet-client.crt")),
            format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
            format!("--kubelet-certificate-authority={}", p("ca.crt")),
            // The node's name is not in any DNS: reach the kubelet by its address.
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
        ])
    }
}

/// The images built for the node, by the names pods use.
#[derive(Clone, Debug)]
pub struct NodeImages {
    pub operator: String,
    pub bot_runner: String,
}

// Fields drop in declaration order: the node goes first (its guard tears everything down),
// then the scheduler, then the control plane.
pub struct KubeNode {
    node: Guarded,
    scheduler: Guarded,
    cluster: KubeCluster,
    dir: PathBuf,
    images: NodeImages,
    /// Held for the node's whole life (set once it is up).
    _lock: Option<std::fs::File>,
}

static SHARED: OnceCell<KubeNode> = OnceCell::const_new();

impl KubeNode {
    /// The node shared by every test of this test binary (started on first use); tests
    /// isolate themselves by namespace.
    pub async fn shared() -> &'static KubeNode {
        SHARED.get_or_try_init(Self::start).await.unwrap_or_else(|e| panic!("could not start the test node: {e:#}"))
    }

    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let kube_bin = bins::kube_bin_dir()?;
        for b in ["kubelet", "kube-scheduler", "kube-proxy", "kubectl"] {
            if !kube_bin.join(b).is_file() {
                bail!("{} is missing: run scripts/setup (it builds the node's binaries)", kube_bin.join(b).display());
            }
        }
        let dir = node_dir();
        let lock = lock_node(&dir).await?;
        // A node left by a run that died with its guard (SIGKILL of the whole group).
        teardown(&dir)?;
        match Self::bring_up(&dir, &kube_bin).await {
            Ok(mut node) => {
                node._lock = Some(lock);
                tracing::info!("test node ready in {:.1} s", started.elapsed().as_secs_f64());
                Ok(node)
            }
            // Whatever got as far as the host (the bridge, directories) goes now, while
            // this process still holds the lock.
            Err(e) => {
                if let Err(down) = teardown(&dir) {
                    tracing::warn!("tearing down a node that failed to start: {down:#}");
                }
                Err(e)
            }
        }
    }

    async fn bring_up(dir: &Path, kube_bin: &Path) -> Result<Self> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir)?;
        for sub in ["pids", "logs", "images", "pod-logs", "kubelet", "cni/net.d", "cni/ipam", "containerd"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // containerd 1.6 makes these at fixed paths whatever its configuration says; only
        // what this run created is removed at the end.
        let created: Vec<&str> =
            ["/run/netns", "/run/containerd"].into_iter().filter(|d| !Path::new(d).exists()).collect();
        std::fs::write(dir.join("created-host-dirs"), created.iter().map(|d| format!("{d}\n")).collect::<String>())?;

        build_images(&dir.join("images"))?;
        // The bridge exists before anything binds its address: kubelet refuses a loopback
        // node IP, and the API server listens there for pods.
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;

        let (cluster, ca) = KubeCluster::start_with(true, Some(&NodeAccess { ip: NODE_IP })).await?;
        let api_port = cluster.api_port();
        write_node_config(&dir, &ca, api_port)?;

        let scheduler = Guarded::spawn(
            "kube-scheduler",
            &kube_bin.join("kube-scheduler"),
            &[
                format!("--kubeconfig={}", dir.join("kube-scheduler.kubeconfig").display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
            &dir,
            &dir.join("logs/kube-scheduler.log"),
            None,
            &[],
        )?;
        let ns_script = workspace_root().join("crates/testkit/node/node-ns.sh");
        let down = workspace_root().join("crates/testkit/node/node-down.sh");
        let after = format!("{} {} {BRIDGE}", down.display(), dir.display());
        let node = Guarded::spawn(
            "node",
            Path::new("unshare"),
            &[
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "--".into(),
                ns_script.display().to_string(),
                dir.display().to_string(),
                kube_bin.display().to_string(),
                NODE_NAME.into(),
                NODE_IP.to_string(),
            ],
            &dir,
            &dir.join("logs/node-ns.log"),
            None,
            &[("GUARD_AFTER", after.as_str())],
        )?;
        let this = Self {
            node,
            scheduler,
            cluster,
            dir,
            images: NodeImages {
                operator: format!("localhost/musicbot-operator:{IMAGE_TAG}"),
                bot_runner: format!("localhost/bot-runner:{IMAGE_TAG}"),
            },
            _lock: None,
        };
        this.wait_node_ready().await.with_context(|| this.log_tails())?;
        Ok(this)
    }

    async fn wait_node_ready(&self) -> Result<()> {
        let client = self.cluster.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if !self.node.is_alive() {
                bail!("the node's containerd/kubelet exited during start-up");
            }
            if let Some(node) = nodes.get_opt(NODE_NAME).await.ok().flatten() {
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if ready {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("node {NODE_NAME} not Ready after 120 s")
    }

    pub fn cluster(&self) -> &KubeCluster {
        &self.cluster
    }

    /// The images `scripts/build-images` made from this build's binaries.
    pub fn images(&self) -> &NodeImages {
        &self.images
    }

    /// The real `kubectl` with the admin kubeconfig; its cache stays in the node directory.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(bins::kube_bin_dir().expect("checked at start").join("kubectl"));
        cmd.env("KUBECONFIG", self.cluster.kubeconfig_path()).env("KUBECACHEDIR", self.dir.join("kube-cache"));
        cmd
    }

    /// Runs kubectl with `args` and returns its standard output; fails with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl().args(args).output().context("running kubectl")?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The last lines of the node's logs, for a failing test's message.
    pub fn log_tails(&self) -> String {
        let mut out = vec![self.node.log_tail(), self.scheduler.log_tail()];
        for name in ["kubelet", "containerd", "kube-proxy"] {
            let text = std::fs::read_to_string(self.dir.join(format!("logs/{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push(format!("--- last lines of {name} ---\n{}", lines[lines.len().saturating_sub(25)..].join("\n")));
        }
        out.join("\n")
    }

    /// The memory cgroup directory of a pod (cgroupfs driver), for memory figures.
    pub fn pod_memory_cgroup(&self, pod_uid: &str, qos: &str) -> PathBuf {
        let mut p = PathBuf::from("/sys/fs/cgroup/memory/kubepods");
        if qos != "Guaranteed" {
            p.push(qos.to_lowercase());
        }
        p.join(format!("pod{pod_uid}"))
    }
}

fn node_dir() -> PathBuf {
    std::env::var_os("MUSICBOT_NODE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/musicbot-node"))
}

/// One node per machine: waits (bounded) for another test binary's node to go.
async fn lock_node(dir: &Path) -> Result<std::fs::File> {
    let path = dir.with_extension("lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => bail!("could not lock {} (another test node runs here?): {e}", path.display()),
        }
    }
}

fn teardown(dir: &Path) -> Result<()> {
    let down = workspace_root().join("crates/testkit/node/node-down.sh");
    let status = Command::new(&down).arg(dir).arg(BRIDGE).status().context("running node-down.sh")?;
    if !status.success() {
        bail!("node-down.sh failed for {}", dir.display());
    }
    Ok(())
}

/// The test build's binaries (next to this test binary) into images, as docker archives.
fn build_images(out: &Path) -> Result<()> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test binary> → target/<profile>
    let bin_dir = exe.parent().and_then(Path::parent).context("test binary outside a cargo target dir")?;
    for b in ["musicbot-operator", "bot-runner"] {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
                bin_dir.join(b).display()
            );
        }
    }
    let script = workspace_root().join("scripts/build-images");
    let output = Command::new(&script)
        .args(["--bin-dir", &bin_dir.display().to_string(), "--tag", IMAGE_TAG, "--out", &out.display().to_string()])
        .output()
        .context("running scripts/build-images")?;
    if !output.status.success() {
        bail!(
            "scripts/build-images failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<()> {
    std::fs::write(dir.join(name), contents).with_context(|| format!("writing {name}"))
}

/// Certificates, kubeconfigs and the configuration of containerd, CNI, kubelet and kube-proxy.
fn write_node_config(dir: &Path, ca: &CertAuthority, api_port: u16) -> Result<()> {
    let host = NODE_IP.to_string();
    let d = dir.display();
    write(dir, "ca.crt", &ca.cert_pem)?;
    for (file, user, group) in [
        ("kubelet", format!("system:node:{NODE_NAME}"), Some("system:nodes")),
        ("kube-scheduler", "system:kube-scheduler".to_string(), None),
        ("kube-proxy", "system:kube-proxy".to_string(), None),
    ] {
        let cert = ca.client(&user, group)?;
        write(
            dir,
            &format!("{file}.kubeconfig"),
            &kubeconfig_yaml(&host, api_port, &ca.cert_pem, &cert.cert_pem, &cert.key_pem),
        )?;
    }
    let serving = ca.server_for(NODE_NAME, &[host.clone(), NODE_NAME.to_string()])?;
    write(dir, "kubelet-serving.crt", &serving.cert_pem)?;
    write(dir, "kubelet-serving.key", &serving.key_pem)?;
    write(dir, "resolv.conf", "nameserver 127.0.0.1\n")?;
    write(
        dir,
        "containerd.toml",
        &format!(
            r#"# containerd 1.6 (Debian bookworm), CRI for one kubelet; every path in the node directory.
version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd/containerd.sock"
[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Imported before kubelet starts (no registry): CRI pulls it only when missing.
  sandbox_image = "localhost/musicbot-pause:1"
  # Root may lack CAP_SYS_RESOURCE: never ask runc for an oom_score_adj below containerd's.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc: crun refuses hybrid cgroup v1 hosts. cgroupfs: there is no systemd as PID 1.
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    # Not /etc/cni/net.d, where podman's package put a configuration of its own.
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
"#
        ),
    )?;
    write(
        dir,
        "cni/net.d/10-musicbot.conflist",
        &format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "musicbot-node",
  "plugins": [
    {{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "isDefaultGateway": true,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {{"type": "host-local", "dataDir": "{d}/cni/ipam",
        "ranges": [[{{"subnet": "{POD_CIDR}", "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250", "gateway": "{host}"}}]]}}}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#
        ),
    )?;
    write(
        dir,
        "kubelet-config.yaml",
        &format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host has cgroup v1 (hybrid): kubelet >= 1.35 refuses it unless this is false.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{d}/containerd/containerd.sock
failSwapOn: false
address: {host}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {d}/kubelet-serving.crt
tlsPrivateKeyFile: {d}/kubelet-serving.key
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {d}/ca.crt}}
authorization:
  mode: AlwaysAllow
# Pods' only nameserver is their own loopback: no DNS query leaves a pod.
resolvConf: {d}/resolv.conf
clusterDomain: cluster.local
clusterDNS: ["127.0.0.1"]
# Otherwise kubelet adds KUBE-FIREWALL, which drops pod traffic to 127.0.0.0/8 sources, and
# re-creates it every minute.
makeIPTablesUtilChains: false
podLogsDir: {d}/pod-logs
maxPods: 110
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 10s
# No eviction or image garbage collection on a shared CI disk.
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"#
        ),
    )?;
    write(
        dir,
        "kube-proxy.yaml",
        &format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {d}/kube-proxy.kubeconfig
hostnameOverride: {NODE_NAME}
bindAddress: {host}
clusterCIDR: {POD_CIDR}
mode: iptables
# Leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
nodePortAddresses: ["{host}/32"]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
"#
        ),
    )?;
    Ok(())
}
