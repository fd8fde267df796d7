#!/usr/bin/env bash
# Tears the test node down and undoes what it changed on the host, whatever state it was
# left in (also after a crashed run): testkit's KubeNode runs it when its guard sees the
# test process go, and before starting a node.
#   node-down.sh NODE_DIR BRIDGE
# It stops by PID what the node started (kubelet, kube-proxy, containerd, their shims), kills
# whatever still runs in the kubepods cgroups, removes the bridge, the iptables chains that
# kubelet, kube-proxy and the CNI plugins made, the cgroups, the host directories containerd
# creates at fixed paths, and finally NODE_DIR itself.
set -uo pipefail
D=$1 BRIDGE=$2
[ -d "$D" ] || exit 0
SOCK=$D/containerd/containerd.sock
log() { printf '[node-down] %s\n' "$*"; }
# A zombie still answers kill -0, and PID 1 may reap orphans slowly: look at the state.
alive() { local st; st=$(ps -o stat= -p "${1:-0}" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
for name in node-ns kubelet kube-proxy containerd; do
  pid=$(cat "$D/pids/$name.pid" 2>/dev/null) || continue
  alive "$pid" && kill -KILL "$pid" 2>/dev/null && log "killed $name ($pid)"
done
# Shims outlive containerd by design; ours carry "-address $SOCK" on their command line.
for p in /proc/[0-9]*; do
  { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.*-address $SOCK" || continue
  kill -KILL "${p#/proc/}" 2>/dev/null && log "killed shim ${p#/proc/}"
done
# Containers whose shim died are orphans, still in their cgroups.
for _ in 1 2 3; do
  left=$(cat /sys/fs/cgroup/*/kubepods/cgroup.procs /sys/fs/cgroup/*/kubepods/*/cgroup.procs \
    /sys/fs/cgroup/*/kubepods/*/*/cgroup.procs /sys/fs/cgroup/*/kubepods/*/*/*/cgroup.procs 2>/dev/null | sort -u)
  [ -n "$left" ] || break
  kill -KILL $left 2>/dev/null; sleep 0.3
done
for ctl in /sys/fs/cgroup/*/; do
  [ -d "$ctl/kubepods" ] && find "$ctl/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done
ip link del "$BRIDGE" 2>/dev/null && log "deleted bridge $BRIDGE"
# iptables: flush our chains, drop the jumps into them, then the chains.
for ipt in iptables ip6tables; do
  for table in filter nat mangle; do
    chains=$($ipt -w -t $table -S 2>/dev/null | awk '$1=="-N" && ($2 ~ /^KUBE-/ || $2 ~ /^CNI-/) {print $2}')
    [ -n "$chains" ] || continue
    for chain in $chains; do $ipt -w -t $table -F "$chain" 2>/dev/null; done
    for chain in $chains; do
      $ipt -w -t $table -S 2>/dev/null | awk -v c="$chain" '$1=="-A" && $0 ~ "-j "c"( |$)" {sub("^-A","-D"); print}' |
        while read -r rule; do eval "$ipt -w -t $table $rule" 2>/dev/null; done
    done
    for chain in $chains; do $ipt -w -t $table -X "$chain" 2>/dev/null; done
    log "removed $ipt $table chains: $(echo $chains | tr '\n' ' ')"
  done
done
# Mounts live in the node's private namespace; any seen here would be a leak worth a line.
grep -F "$D" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m" && log "unmounted $m"; done
if [ -f "$D/created-host-dirs" ]; then
  while read -r d; do
    find "$d" -depth \( -type s -o -type f -empty -o -type d -empty \) -delete 2>/dev/null
    [ -e "$d" ] && log "left non-empty: $d" || log "removed $d"
  done <"$D/created-host-dirs"
fi
rm -rf "$D"
