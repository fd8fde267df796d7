#!/usr/bin/env bash
# The test node's runtime: containerd, kubelet and kube-proxy, run by testkit's KubeNode as
#   unshare --mount --propagation private -- node-ns.sh NODE_DIR KUBE_BIN_DIR NODE_NAME NODE_IP
# In this private mount namespace every mount they make (container root filesystems, Secret
# and emptyDir tmpfs, /run/netns bind mounts) vanishes with them and never shows on the host.
# On SIGTERM it stops the pods through containerd, then the daemons.
set -euo pipefail
D=$1 BIN=$2 NODE=$3 NODE_IP=$4
cd "$D"
log() { printf '[node-ns] %s\n' "$*"; }

# kubelet rewrites vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops
# and kernel.keys.root_max*; the CNI bridge plugin sets net.ipv4.ip_forward=1. Files with
# the values they want are bind-mounted over /proc/sys in this namespace only: the host keeps
# its own values, and with its ip_forward the host never routes pod traffic anywhere.
mkdir -p "$D/fake-sysctl"
fake() {
  [ -e "/proc/sys/$1" ] || return 0
  local f=$D/fake-sysctl/${1//\//_}
  echo "$2" >"$f"
  mount --bind "$f" "/proc/sys/$1"
}
fake vm/overcommit_memory 1
fake vm/panic_on_oom 0
fake kernel/panic 10
fake kernel/panic_on_oops 1
fake kernel/keys/root_maxkeys 1000000
fake kernel/keys/root_maxbytes 25000000
fake net/ipv4/ip_forward 1
fake net/ipv4/conf/all/route_localnet 0
fake net/netfilter/nf_conntrack_max 131072

SOCK=$D/containerd/containerd.sock
ctr() { command ctr --address "$SOCK" "$@"; }
pids=()
stop_all() {
  trap - TERM INT
  log "stopping"
  for p in kubelet kube-proxy; do [ -s "$D/pids/$p.pid" ] && kill -TERM "$(cat "$D/pids/$p.pid")" 2>/dev/null; done
  for _ in $(seq 1 50); do
    alive=0; for p in kubelet kube-proxy; do kill -0 "$(cat "$D/pids/$p.pid" 2>/dev/null || echo 0)" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  # Every container, then every sandbox: containerd's own API, so the shims exit too.
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  for _ in $(seq 1 30); do
    [ -z "$(ctr -n k8s.io tasks ls -q 2>/dev/null | head -n 1)" ] && break
    for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true; done
    sleep 0.2
  done
  kill -TERM "$(cat "$D/pids/containerd.pid")" 2>/dev/null || true
  wait || true
  exit 0
}
trap stop_all TERM INT

containerd --config "$D/containerd.toml" >"$D/logs/containerd.log" 2>&1 &
echo $! >"$D/pids/containerd.pid"
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
ctr version >/dev/null

# Images: docker-archive tars (scripts/build-images), no registry anywhere.
for tar in "$D"/images/*.tar; do
  ctr -n k8s.io images import "$tar" >>"$D/logs/ctr-import.log" 2>&1
done
ctr -n k8s.io images ls -q >"$D/logs/images.txt"

"$BIN/kubelet" \
  --config="$D/kubelet-config.yaml" \
  --kubeconfig="$D/kubelet.kubeconfig" \
  --root-dir="$D/kubelet" \
  --cert-dir="$D/kubelet/pki" \
  --hostname-override="$NODE" \
  --node-ip="$NODE_IP" \
  --v=1 >"$D/logs/kubelet.log" 2>&1 &
echo $! >"$D/pids/kubelet.pid"

"$BIN/kube-proxy" --config="$D/kube-proxy.yaml" --v=1 >"$D/logs/kube-proxy.log" 2>&1 &
echo $! >"$D/pids/kube-proxy.pid"

echo ready >"$D/pids/node-ns.ready"
log "containerd, kubelet and kube-proxy started"
# `wait` returns when a signal arrives, so the trap runs at once.
while :; do wait || true; sleep 1; done
