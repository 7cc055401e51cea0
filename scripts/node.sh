#!/usr/bin/env bash
# A real Kubernetes node for the tests: a control plane from
# scripts/control-plane.sh (with its CONTROL_PLANE_NODE_ADDRESS opt-in) plus
# kube-scheduler, containerd (Debian's), runc, the bridge CNI, kubelet and
# kube-proxy (iptables mode) on this machine. kubelet, kube-proxy and
# kube-scheduler are built from the same k8s.io/kubernetes version as the
# control plane (tests/kube-node pins it; `build` checks it matches tests/kube)
# and cached beside the control plane's binaries.
#
#   scripts/node.sh build          build (or find cached) kubelet, kube-proxy and
#                                  kube-scheduler, print their dir
#   scripts/node.sh packages       install the Debian packages a node needs, if missing
#   scripts/node.sh up DIR         start a control plane in DIR and the node in DIR/node;
#                                  returns once the node is Ready and the `kubernetes`
#                                  Service answers at its ClusterIP
#   scripts/node.sh load DIR ARCHIVE...   import OCI image archives (scripts/image.sh)
#                                  into the node's containerd
#   scripts/node.sh down DIR       delete the pods, stop everything `up` started (by pid),
#                                  and undo what the node did to the machine: mounts,
#                                  the bridge, iptables chains, cgroups, sysctls, the
#                                  host paths kubelet and containerd create
#
# ONE NODE PER MACHINE: kubelet's port and some of its paths, the bridge, the pod
# range, iptables and sysctls are global. `up` takes /run/secret-relay-node/owner
# and refuses while another node is up; tests that need the node share one `up`
# and run one after the other (see tests/deployed.rs).
#
# `up` writes DIR/node/env (shell syntax): KUBECONFIG, NODE_NAME, NODE_ADDRESS,
# POD_CIDR, CONTAINERD_SOCK; logs are DIR/node/*.log.
#
# Environment:
#   SECRET_RELAY_CACHE       where binaries are cached (default ~/.cache/secret-relay)
#   CONTROL_PLANE_OWNER_PID  when set, a watchdog runs `down DIR` once that process exits
#   NODE_TIMEOUT             seconds to wait for each step of `up` (default 120)
#   SECRET_RELAY_KUBE        "oldest": the node and its control plane run the oldest
#                            Kubernetes secret-relay supports (tests/kube-oldest)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
module="$root/tests/kube-node"
cp_module="$root/tests/kube"

die() { printf 'node: %s\n' "$*" >&2; exit 1; }
say() { printf 'node: %s\n' "$*" >&2; }
loud() { printf '\nnode: !!! %s\n\n' "$*" >&2; }

# Fixed, since there is one node per machine.
node_name=secret-relay-node
bridge=srnode0
pod_cidr=10.244.0.0/24
gateway=10.244.0.1     # the bridge's address: the node's address and the API server's for pods
run=/run/secret-relay-node
sock=$run/containerd.sock
# Where the API server's advertised address and the node's address meet.
node_address=$gateway
# Bump when the way the binaries are built changes: part of the cache key.
build_recipe=1
packages="containerd runc containernetworking-plugins iptables nftables conntrack"
cni_bin=/usr/lib/cni
# Host paths kubelet, containerd and CNI create whatever their configuration
# says; `down` removes those that did not exist before `up`.
host_paths="/var/lib/kubelet /var/lib/cni /run/containerd /run/netns /var/run/netns /var/log/pods /var/log/containers /etc/cni /opt/cni /opt/containerd"
# Sysctls kubelet and kube-proxy (or we) change; `down` restores them.
sysctls="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
net.netfilter.nf_conntrack_tcp_timeout_close_wait"

. "$here/lib/kube-build.sh"

build() {
    if kube_oldest; then
        kube_oldest_bin
        return
    fi
    local v cpv
    v=$(kube_version "$module/go.mod")
    cpv=$(kube_version "$cp_module/go.mod")
    [ "$v" = "$cpv" ] || die "tests/kube-node pins k8s.io/kubernetes $v but the control plane (tests/kube) runs $cpv: make them agree"
    kube_build "$(kube_bin_dir kube-node "$module" "$build_recipe" "$module/go.mod" "$module/go.sum" "$module/tools.go")" \
        "$module" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler
}

ensure_packages() {
    local missing=()
    for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}) and not root to install them"
    loud "INSTALLING Debian packages for the node: ${missing[*]} (apt-get install --no-install-recommends; services are not started)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || die "apt-get install ${missing[*]} failed"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# leaf NAME SUBJECT: a client certificate from the control plane's CA.
leaf() {
    local name=$1 subj=$2 p=$dir/pki
    (
        cd "$nd/pki"
        umask 077
        openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
        openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$name.ext"
        openssl x509 -req -in "$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
            -extfile "$name.ext" -out "$name.crt" 2>/dev/null
        rm -f "$name.csr" "$name.ext"
    )
}

kubeconfig() { # file name
    local file=$1 name=$2
    cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $server
    certificate-authority: $dir/pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $nd/pki/$name.crt
    client-key: $nd/pki/$name.key
contexts:
- name: $name
  context: { cluster: test, user: $name }
current-context: $name
EOF
    chmod 600 "$file"
}

running() { # pid name
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

start() { # name cmd...
    local name=$1
    shift
    printf '%q ' "$@" > "$nd/$name.cmd"
    # 7>&-: the component must not hold this script's lock.
    setsid "$@" >"$nd/$name.log" 2>&1 < /dev/null 7>&- &
    echo "$! $name" >> "$nd/pids"
}

stop_pid() { # pid name
    local pid=$1 name=$2
    running "$pid" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do running "$pid" "$name" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do running "$pid" "$name" || return 0; sleep 0.1; done
}

pid_of() { awk -v n="$1" '$2 == n { print $1 }' "$nd/pids" 2>/dev/null; }

# wait_for WHAT COMPONENT CMD...: until CMD succeeds, or fail with the log of COMPONENT.
wait_for() {
    local what=$1 c=$2 timeout=${NODE_TIMEOUT:-120} start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        local pid
        pid=$(pid_of "$c")
        if [ -n "$pid" ] && ! running "$pid" "$c"; then
            say "$c exited while waiting for $what; last lines of $nd/$c.log:"
            tail -n 40 "$nd/$c.log" >&2
            exit 1
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            say "no $what within ${timeout}s; last lines of $nd/$c.log:"
            tail -n 40 "$nd/$c.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

kc() { kubectl --kubeconfig "$dir/admin.kubeconfig" "$@"; }
ctr_() { ctr --address "$sock" -n k8s.io "$@"; }

snapshot() { # record what `down` must restore
    : > "$nd/sysctls.before"
    for s in $sysctls; do
        local f=/proc/sys/${s//.//}
        [ -r "$f" ] && printf '%s %s\n' "$s" "$(cat "$f")" >> "$nd/sysctls.before"
    done
    : > "$nd/paths.before"
    for p in $host_paths; do [ -e "$p" ] && echo "$p" >> "$nd/paths.before"; done
    find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort > "$nd/cgroups.before"
    nft list tables 2>/dev/null | sort > "$nd/nft-tables.before" || : > "$nd/nft-tables.before"
}

write_configs() {
    mkdir -p "$nd/cni/net.d" "$nd/cni/ipam" "$nd/containerd/root" "$nd/containerd/state" "$nd/kubelet" "$nd/pod-logs" "$nd/pki"
    cat > "$nd/containerd/config.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
# No /opt/containerd, and no snapshotters this machine lacks.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:secret-relay"
  # The VM's capability bounding set lacks CAP_SYS_RESOURCE: no process may lower
  # oom_score_adj, and CRI asks runc for -998 on every sandbox (docs/real-node.md).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$nd/cni/net.d"
EOF
    cat > "$nd/cni/net.d/10-secret-relay.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "secret-relay-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$nd/cni/ipam",
        "ranges": [[{ "subnet": "$pod_cidr", "gateway": "$gateway" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
    cat > "$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid), deprecated in kubelet.
failCgroupV1: false
cgroupDriver: cgroupfs
# Pods' cgroups in a subtree of their own, which \`down\` removes.
cgroupRoot: /secret-relay-node
containerRuntimeEndpoint: unix://$sock
address: $node_address
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
podLogsDir: $nd/pod-logs
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $dir/pki/ca.crt }
authorization:
  mode: Webhook
failSwapOn: false
# The disk is shared with other work: evict only when it is really full, and
# never collect the images imported by hand (there is no registry to pull from).
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
EOF
    cat > "$nd/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $node_name
clientConnection:
  kubeconfig: $nd/kube-proxy.kubeconfig
clusterCIDR: $pod_cidr
healthzBindAddress: 127.0.0.1:$proxy_healthz
metricsBindAddress: 127.0.0.1:$proxy_metrics
# Leave the conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  # Pod to Service to a pod on the same bridge: the reply must come back
  # through the host to be un-NATed.
  masqueradeAll: true
EOF
}

service_answers() {
    # The `kubernetes` Service has the node address as its endpoint, and
    # kube-proxy has the rules: the API server answers at the ClusterIP (from
    # the host; pods take the same rules through PREROUTING).
    curl -ksS --max-time 2 -o /dev/null -w '%{http_code}' https://10.0.0.1/readyz | grep -qE '^(200|401|403)$'
}

node_ready() {
    kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

no_not_ready_taint() {
    ! kc get node "$node_name" -o jsonpath='{.spec.taints[*].key}' | grep -q 'node.kubernetes.io/not-ready'
}

up() {
    [ -n "${dir:-}" ] || die "usage: $0 up DIR"
    [ "$(id -u)" = 0 ] || die "a node needs root"
    ensure_packages
    command -v kubectl >/dev/null 2>&1 || die "kubectl is needed"
    mkdir -p "$run"
    exec 7>"$run/lock"
    flock -n 7 || die "another node.sh up or down is running"
    if [ -f "$run/owner" ]; then
        die "a node is already up on this machine for $(cat "$run/owner") (one node per machine: run '$0 down $(cat "$run/owner")' first)"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    nd=$dir/node
    [ -e "$nd/pids" ] && die "$nd already has a node"
    mkdir -p "$nd"
    echo "$dir" > "$run/owner"
    local t0=$SECONDS
    local bin pause
    bin=$(build)
    pause=$("$here/image.sh" pause)
    snapshot

    # The bridge first, so the API server's advertised address exists.
    ip link add "$bridge" type bridge
    ip addr add "$gateway/24" dev "$bridge"
    ip link set "$bridge" up
    sysctl -qw net.ipv4.ip_forward=1

    # Our own watchdog (below) tears the control plane down after the pods, not its.
    env -u CONTROL_PLANE_OWNER_PID CONTROL_PLANE_NODE_ADDRESS="$node_address" "$here/control-plane.sh" up "$dir" 7>&- \
        || { say "the control plane failed to start"; exit 1; }
    server=$(awk -F= '$1 == "SERVER" { print $2 }' "$dir/env")
    say "control plane up after $((SECONDS - t0))s"

    kubelet_healthz=$(free_port)
    proxy_healthz=$(free_port)
    proxy_metrics=$(free_port)
    write_configs
    # kubelet's cgroupRoot must exist in every hierarchy; `down` removes it.
    local h
    for h in /sys/fs/cgroup/*/; do
        [ "$h" = /sys/fs/cgroup/unified/ ] && continue
        [ -d "$h/secret-relay-node" ] && continue
        mkdir "$h/secret-relay-node"
        if [ -f "$h/cpuset.cpus" ]; then
            cat "$h/cpuset.cpus" > "$h/secret-relay-node/cpuset.cpus"
            cat "$h/cpuset.mems" > "$h/secret-relay-node/cpuset.mems"
        fi
    done
    leaf kubelet "/O=system:nodes/CN=system:node:$node_name"
    leaf kube-proxy "/CN=system:kube-proxy"
    leaf kube-scheduler "/CN=system:kube-scheduler"
    kubeconfig "$nd/kubelet.kubeconfig" kubelet
    kubeconfig "$nd/kube-proxy.kubeconfig" kube-proxy
    kubeconfig "$nd/kube-scheduler.kubeconfig" kube-scheduler
    # RBAC without the Node authorizer: the node's user gets the system:node role.
    kc create clusterrolebinding secret-relay-node --clusterrole=system:node --user="system:node:$node_name" >/dev/null

    start containerd env PATH=/usr/sbin:/usr/bin:/sbin:/bin containerd --config "$nd/containerd/config.toml"
    wait_for "containerd" containerd ctr_ version
    ctr_ images import --no-unpack=false "$pause" >/dev/null
    say "containerd up, pause image imported after $((SECONDS - t0))s"

    start kube-scheduler "$bin/kube-scheduler" \
        --kubeconfig="$nd/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$nd/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$nd/kube-scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$(free_port)" --leader-elect=false --v=1
    start kubelet env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$bin/kubelet" \
        --config="$nd/kubelet.yaml" --kubeconfig="$nd/kubelet.kubeconfig" \
        --root-dir="$nd/kubelet" --cert-dir="$nd/kubelet/pki" \
        --hostname-override="$node_name" --node-ip="$node_address" --v=1
    start kube-proxy "$bin/kube-proxy" --config="$nd/kube-proxy.yaml" --v=1

    cat > "$nd/env" <<EOF
KUBECONFIG=$dir/admin.kubeconfig
NODE_NAME=$node_name
NODE_ADDRESS=$node_address
POD_CIDR=$pod_cidr
CONTAINERD_SOCK=$sock
EOF
    local owner=${CONTROL_PLANE_OWNER_PID:-}
    if [ -n "$owner" ]; then
        setsid bash -c 'tail --pid="$1" -f /dev/null; exec "$2" down "$3"' watchdog "$owner" "$here/node.sh" "$dir" \
            >/dev/null 2>&1 < /dev/null 7>&- &
        echo "$!" > "$nd/watchdog.pid"
    fi

    wait_for "Ready node" kubelet node_ready
    say "node Ready after $((SECONDS - t0))s"
    wait_for "not-ready taint removed (node lifecycle controller)" kubelet no_not_ready_taint
    wait_for "kubernetes Service through kube-proxy" kube-proxy service_answers
    say "ready after $((SECONDS - t0))s: kubeconfig $dir/admin.kubeconfig, node $node_name"
}

load() {
    [ -f "$run/owner" ] || die "no node is up"
    [ "$#" -gt 0 ] || die "usage: $0 load DIR ARCHIVE..."
    for a in "$@"; do
        ctr_ images import "$a" >&2 || die "failed to import $a"
    done
}

# --- teardown ------------------------------------------------------------

# Remove every rule that jumps to, and every chain named, KUBE-* or CNI-*.
clean_iptables() {
    local cmd save table line
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null 2>&1 || continue
        save=$cmd-save
        for table in filter nat mangle raw; do
            "$save" -t "$table" >/dev/null 2>&1 || continue
            while IFS= read -r line; do
                eval "$cmd -w -t $table -D ${line#-A }" 2>/dev/null || true
            done < <("$save" -t "$table" | grep -E '^-A [A-Z]+ .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-')
            while IFS= read -r line; do
                "$cmd" -w -t "$table" -F "$line" 2>/dev/null || true
            done < <("$save" -t "$table" | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p')
            while IFS= read -r line; do
                "$cmd" -w -t "$table" -X "$line" 2>/dev/null || true
            done < <("$save" -t "$table" | sed -nE 's/^:((KUBE|CNI)-[^ ]*) .*/\1/p')
        done
    done
    # Tables that iptables-nft made for the node and that are empty again.
    if command -v nft >/dev/null 2>&1 && [ -f "$nd/nft-tables.before" ]; then
        local t
        while IFS= read -r t; do
            grep -qxF "$t" "$nd/nft-tables.before" && continue
            if ! nft list "$t" 2>/dev/null | grep -qE '^\s+(ip|ip6|tcp|udp|meta|ct|counter|jump|goto|mark|fib|iifname|oifname|accept|drop|return|masquerade|dnat|snat)'; then
                nft delete "${t#table }" 2>/dev/null || nft delete table ${t#table } 2>/dev/null || true
            fi
        done < <(nft list tables 2>/dev/null)
    fi
}

down() {
    [ -n "$dir" ] || die "usage: $0 down DIR"
    [ -d "$dir" ] || exit 0
    dir=$(cd "$dir" && pwd)
    nd=$dir/node
    mkdir -p "$run"
    exec 7>"$run/lock"
    flock 7
    local t0=$SECONDS
    if [ -f "$nd/pids" ]; then
        # Pods first, while kubelet and containerd run, so CNI DEL runs for each.
        local sched
        sched=$(pid_of kube-scheduler)
        [ -n "$sched" ] && stop_pid "$sched" kube-scheduler
        if [ -f "$dir/admin.kubeconfig" ] && running "$(pid_of kubelet)" kubelet; then
            kc delete pods --all -A --force --grace-period=0 --wait=false >/dev/null 2>&1 || true
            for _ in $(seq 1 150); do
                [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && [ -z "$(ls -A "$nd/cni/ipam/secret-relay-node" 2>/dev/null | grep -v -e lock -e last_reserved)" ] && break
                sleep 0.2
            done
        fi
        local lines line pid name
        mapfile -t lines < <(tac "$nd/pids")
        for line in "${lines[@]}"; do
            pid=${line%% *}
            name=${line#* }
            # Any task left: kill it while containerd still runs, so no shim outlives it.
            if [ "$name" = containerd ] && running "$pid" containerd; then
                local c
                for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
                sleep 0.5
                for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$c" >/dev/null 2>&1 || true; done
            fi
            stop_pid "$pid" "$name"
        done
        rm -f "$nd/pids"
        # Shims of this containerd (by its socket in their command line), if any remain.
        local shim
        for shim in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io .*-address $sock" 2>/dev/null || true); do
            kill -KILL "$shim" 2>/dev/null || true
        done
        if [ -f "$nd/kube-proxy.yaml" ]; then
            local bin
            bin=$(awk '{ print $1 }' "$nd/kube-proxy.cmd" 2>/dev/null || true)
            [ -x "$bin" ] && "$bin" --cleanup --config="$nd/kube-proxy.yaml" >/dev/null 2>&1 || true
        fi
    fi
    if [ -f "$nd/watchdog.pid" ]; then
        local w
        w=$(cat "$nd/watchdog.pid")
        rm -f "$nd/watchdog.pid"
        [ "$w" != "$PPID" ] && [ "$w" != "$$" ] && kill -TERM "$w" 2>/dev/null || true
    fi
    "$here/control-plane.sh" down "$dir" 7>&- || true
    if [ -f "$nd/paths.before" ]; then
        # Mounts: kubelet's volumes, containerd's snapshots and sandboxes' netns.
        local m
        for _ in 1 2 3; do
            while IFS= read -r m; do
                umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
            done < <(findmnt -rn -o TARGET | grep -E "^($nd/|$run/|/run/netns/cni-|/var/run/netns/cni-|/run/containerd/|/var/lib/kubelet/)" | sort -r)
        done
        ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
        clean_iptables
        # Cgroups: the node's subtrees in every hierarchy (kubelet's cgroupRoot,
        # and kubepods should anything put it at the top), deepest first.
        local cg
        while IFS= read -r cg; do
            grep -qxF "$cg" "$nd/cgroups.before" && continue
            case "${cg##*/}" in
                secret-relay-node|kubepods|kubepods.slice) find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true ;;
            esac
        done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort)
        local s v
        while read -r s v; do
            sysctl -qw "$s=$v" 2>/dev/null || true
        done < "$nd/sysctls.before"
        local p
        for p in $host_paths; do
            [ -e "$p" ] && ! grep -qxF "$p" "$nd/paths.before" && [ ! -L "$p" ] && rm -rf "$p"
        done
        rm -f "$nd/paths.before"
    fi
    if [ -f "$run/owner" ] && [ "$(cat "$run/owner")" = "$dir" ]; then
        rm -rf "$run"
    fi
    say "down in $((SECONDS - t0))s"
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
    build) build ;;
    packages) ensure_packages ;;
    up) up ;;
    load)
        [ -n "$dir" ] && [ -d "$dir" ] || die "usage: $0 load DIR ARCHIVE..."
        shift 2
        load "$@"
        ;;
    down) down ;;
    *) die "usage: $0 build | packages | up DIR | load DIR ARCHIVE... | down DIR" ;;
esac
