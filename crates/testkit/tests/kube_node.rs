//! The test node itself: pods run with the images built here, reach the API server through
//! the `kubernetes` Service as on any cluster, and the host is left as it was afterwards.
//! (Its own test binary: the node is one per machine, and this test starts and stops one.)

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use testkit::KubeNode;

/// What the node may change on the host and must put back.
fn host_state() -> String {
    let run = |cmd: &str, args: &[&str]| {
        let out = std::process::Command::new(cmd).args(args).output().expect("running a host command");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sysctls = [
        "net/ipv4/ip_forward",
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "net/ipv4/conf/all/route_localnet",
    ]
    .map(|k| format!("{k}={}", std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default().trim()))
    .join("\n");
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| !m.starts_with("/proc/") && !m.starts_with("/sys/fs/cgroup"))
        .collect();
    let links: Vec<String> =
        run("ip", &["-o", "link"]).lines().filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_string())).collect();
    format!(
        "sysctls:\n{sysctls}\nmounts: {mounts:?}\nlinks: {links:?}\niptables:\n{}{}{}",
        run("iptables", &["-w", "-S"]),
        run("iptables", &["-w", "-t", "nat", "-S"]),
        run("iptables", &["-w", "-t", "mangle", "-S"]),
    )
}

fn node_processes() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if ["kubelet", "containerd", "kube-proxy", "kube-scheduler"].contains(&comm)
            || comm.starts_with("containerd-shim")
        {
            found.push(format!("{} {comm}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  automountServiceAccountToken: true
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: probe
    image: IMAGE
    imagePullPolicy: Never
    command: ["/usr/bin/python3", "-c"]
    args:
    - |
      import os, socket, ssl
      host, port = os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"])
      ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
      with socket.create_connection((host, port), timeout=5) as s:
          with ctx.wrap_socket(s, server_hostname="kubernetes.default.svc") as t:
              t.sendall(b"GET /version HTTP/1.0\r\nHost: kubernetes\r\n\r\n")
              print("apiserver says", t.recv(200).split(b"\r\n")[0].decode())
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_reach_the_api_server_service_and_the_host_is_left_as_it_was() -> Result<()> {
    let before = host_state();
    let node = KubeNode::start().await?;
    let client = node.cluster().client().await?;
    let ns = node.cluster().namespace(&client, "node-smoke").await?;
    let manifest = POD.replace("IMAGE", &node.images().bot_runner);
    let path = std::env::temp_dir().join(format!("{ns}-pod.yaml"));
    std::fs::write(&path, manifest)?;
    node.kubectl_ok(&["apply", "-n", &ns, "-f", &path.display().to_string()])?;
    std::fs::remove_file(&path)?;

    // The pod connects to 10.96.0.1:443 (kube-proxy's rules), verifies the API server's
    // certificate with the mounted CA, and exits 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let phase = loop {
        let phase = node.kubectl_ok(&["get", "pod", "probe", "-n", &ns, "-o", "jsonpath={.status.phase}"])?;
        if phase == "Succeeded" || phase == "Failed" || Instant::now() > deadline {
            break phase;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let logs = node.kubectl_ok(&["logs", "probe", "-n", &ns]).unwrap_or_else(|e| e.to_string());
    if phase != "Succeeded" {
        bail!("probe pod ended {phase:?}: {logs}\n{}", node.log_tails());
    }
    assert!(logs.contains("apiserver says HTTP/1.0 ") || logs.contains("apiserver says HTTP/1.1 "), "{logs}");

    drop(node);
    let left = node_processes();
    assert!(left.is_empty(), "node processes left running: {left:?}");
    assert!(!std::path::Path::new("/tmp/musicbot-node").exists(), "the node directory is left behind");
    assert_eq!(before, host_state(), "the host's state changed");
    Ok(())
}
