#!/usr/bin/env bash
# A real Kubernetes control plane for the tests, as envtest runs one: etcd,
# kube-apiserver and kube-controller-manager built from their Go modules
# (tests/kube/go.mod pins the version) and started on loopback, on free ports.
#
#   scripts/control-plane.sh build          build (or find cached) binaries, print their dir
#   scripts/control-plane.sh up DIR         start a control plane whose state lives in DIR
#   scripts/control-plane.sh down DIR       stop exactly the processes `up DIR` started
#                                           (and `start` restarted) that are running
#   scripts/control-plane.sh stop DIR COMPONENT     stop one component (etcd,
#                                           kube-apiserver, kube-controller-manager)
#   scripts/control-plane.sh kill DIR COMPONENT     stop one component with SIGKILL,
#                                           as a crash does
#   scripts/control-plane.sh start DIR COMPONENT    start it again with exactly the
#                                           command line `up` recorded (same flags,
#                                           same ports); waits until it is ready
#   scripts/control-plane.sh restart DIR COMPONENT  stop, then start
#
# `up` writes DIR/admin.kubeconfig (cluster-admin by client certificate, group
# system:masters), DIR/env (the ports and paths, shell syntax) and the logs
# DIR/{etcd,kube-apiserver,kube-controller-manager}.log. It returns once
# /readyz answers ok, or fails with the tail of the failing log. Several
# control planes run side by side in different DIRs. Each component's command
# line is recorded in DIR/COMPONENT.cmd (shell-quoted), its pid in DIR/pids;
# `start` appends to the component's log.
#
# Environment:
#   SECRET_RELAY_CACHE    where binaries are cached (default ~/.cache/secret-relay)
#   KCM_SA_CREDENTIALS    "true" (default): kube-controller-manager runs each
#                         controller as its own service account, as kubeadm
#                         does; "false": everything as system:kube-controller-manager
#   CONTROL_PLANE_TIMEOUT seconds to wait for /readyz (default 120)
#   SECRET_RELAY_KUBE     "oldest": kube-apiserver and kube-controller-manager of the
#                         oldest Kubernetes secret-relay supports (tests/kube-oldest
#                         pins it), with tests/kube's etcd
#   CONTROL_PLANE_OWNER_PID  when set, a watchdog runs `down DIR` as soon as
#                         that process exits, so a test process that dies
#                         without cleaning up leaves nothing running
#   CONTROL_PLANE_NODE_ADDRESS  opt-in, for a real node (scripts/node.sh sets
#                         it): the address pods reach the API server at. The
#                         API server then listens on every address, advertises
#                         this one (the `kubernetes` Service's endpoint, kept by
#                         the default endpoint reconciler), has it in its
#                         certificate and a client certificate for kubelets;
#                         the controller manager also runs the controllers
#                         Deployments, Services, PDBs and nodes need. Unset:
#                         none of this, exactly as before.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
module="$root/tests/kube"

die() { printf 'control-plane: %s\n' "$*" >&2; exit 1; }
say() { printf 'control-plane: %s\n' "$*" >&2; }

# Bump when the way the binaries are built changes (flags, ldflags): it is part of the cache key.
build_recipe=1
. "$here/lib/kube-build.sh"

build() {
    kube_build "$(kube_bin_dir kube "$module" "$build_recipe" "$module/go.mod" "$module/go.sum" "$module"/cmd/etcd/*.go)" \
        "$module" ./cmd/etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
}

# kube_bin: where kube-apiserver and kube-controller-manager come from (build's
# directory unless SECRET_RELAY_KUBE asks for the oldest version).
kube_bin() {
    if kube_oldest; then
        kube_oldest_bin
    else
        build
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pki DIR: a CA, the API server's serving certificate, client certificates and
# the service-account signing key pair, with openssl (ECDSA P-256).
pki() {
    local d=$1/pki
    mkdir -p "$d"
    (
        cd "$d"
        umask 077
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -subj "/CN=secret-relay-test-kubernetes-ca" -days 3650 -out ca.crt 2>/dev/null
        leaf() { # name subject extfile-lines
            local name=$1 subj=$2 ext=$3
            openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
            openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
            printf '%b' "$ext" > "$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile "$name.ext" -out "$name.crt" 2>/dev/null
            rm -f "$name.csr" "$name.ext"
        }
        leaf apiserver "/CN=kube-apiserver" \
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,${node_address:+IP:$node_address,}DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        local client="basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        leaf admin "/O=system:masters/CN=admin" "$client"
        leaf kcm "/CN=system:kube-controller-manager" "$client"
        if [ -n "$node_address" ]; then
            # The API server's client certificate for kubelets (logs, exec).
            leaf kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
        fi
        # The API server's own client certificate for calling webhooks is not
        # needed: webhooks authenticate the API server by network policy here.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
        openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    )
}

kubeconfig() { # file user cert key server
    local file=$1 user=$2 cert=$3 key=$4 server=$5 ca=$6
    cat > "$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 < "$ca")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$cert")
    client-key-data: $(base64 -w0 < "$key")
contexts:
- name: $user
  context: { cluster: test, user: $user }
current-context: $user
EOF
    chmod 600 "$file"
}

start() { # name logfile cmd...
    local name=$1 log=$2
    shift 2
    # Recorded so that `start DIR COMPONENT` runs exactly this again.
    printf '%q ' "$@" > "$dir/$name.cmd"
    setsid "$@" >"$log" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid $name" >> "$dir/pids"
    # Until the forked shell has exec'd, the pid's command line is this script's
    # and `running` would call the component exited (seen on a loaded machine):
    # wait for the exec, or for an early exit, which the caller reports with its log.
    local i
    for i in $(seq 1 500); do
        running "$pid" "$name" && return 0
        [ -e "/proc/$pid" ] || return 0
        sleep 0.01
    done
}

fail_with_log() { # message log
    say "$1"
    if [ -f "$2" ]; then
        say "last lines of $2:"
        tail -n 40 "$2" >&2
    else
        say "$2 is missing (was $dir removed?)"
    fi
    stop_all
    exit 1
}

running() { # pid name
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

pid_of() { # name
    awk -v n="$1" '$2 == n { print $1 }' "$dir/pids"
}

# fail_if_exited NAME: fails the start-up, with NAME's log, when the component that
# `start` ran in this shell is no longer running, saying how it ended (its exit status,
# or the signal that killed it).
fail_if_exited() {
    local name=$1 pid s=0 how
    pid=$(pid_of "$name")
    running "$pid" "$name" && return 0
    wait "$(tail -n 1 <<<"$pid")" 2>/dev/null || s=$?
    if [ "$s" -gt 128 ]; then
        how="killed by signal $((s - 128))"
    else
        how="exit status $s"
    fi
    fail_with_log "$name exited ($how)" "$dir/$name.log"
}

# stop_pid pid name [signal]: TERM (or signal), up to 10 s to exit, then KILL.
stop_pid() {
    local pid=$1 name=$2 signal=${3:-TERM}
    if running "$pid" "$name"; then
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            running "$pid" "$name" || break
            sleep 0.1
        done
        running "$pid" "$name" && kill -KILL "$pid" 2>/dev/null || true
    fi
    # The pid is not reaped by us (setsid child of an exited shell): wait until
    # it is gone for good, so its ports are free.
    for _ in $(seq 1 50); do
        running "$pid" "$name" || break
        sleep 0.1
    done
}

stop_all() {
    [ -f "$dir/pids" ] || return 0
    # Stop in reverse order of start: controller manager, API server, etcd.
    local lines pid name
    mapfile -t lines < <(tac "$dir/pids")
    for line in "${lines[@]}"; do
        pid=${line%% *}
        name=${line#* }
        stop_pid "$pid" "$name"
    done
    rm -f "$dir/pids"
}

components="etcd kube-apiserver kube-controller-manager"

component_arg() { # component: checks it is one `up` starts and has a record
    local c=${1:-}
    case " $components " in
        *" $c "*) ;;
        *) die "usage: $0 stop|kill|start|restart DIR COMPONENT (one of: $components)" ;;
    esac
    [ -f "$dir/pids" ] && [ -f "$dir/env" ] || die "$dir has no control plane (run '$0 up $dir' first)"
    [ -f "$dir/$c.cmd" ] || die "$dir has no recorded command line for $c"
}

stop_component() { # component [signal]
    local c=$1 signal=${2:-TERM} pid
    pid=$(pid_of "$c")
    if [ -n "$pid" ]; then
        stop_pid "$pid" "$c" "$signal"
    fi
    say "stopped $c (SIG$signal)"
}

start_component() { # component
    local c=$1 pid
    pid=$(pid_of "$c")
    if [ -n "$pid" ] && running "$pid" "$c"; then
        die "$c is already running (pid $pid)"
    fi
    local -a cmd
    eval "cmd=($(cat "$dir/$c.cmd"))"
    printf '\n--- control-plane.sh: started again at %s ---\n' "$(date -u +%FT%TZ)" >> "$dir/$c.log"
    # 8>&-: the component must not hold the lock of this script.
    setsid "${cmd[@]}" >>"$dir/$c.log" 2>&1 < /dev/null 8>&- &
    local new=$!
    # Same line, new pid: `down` keeps stopping in reverse order of the first start.
    awk -v n="$c" -v p="$new" '$2 == n { $1 = p } { print }' "$dir/pids" > "$dir/pids.tmp"
    mv "$dir/pids.tmp" "$dir/pids"
    wait_component "$c" "$new"
    say "started $c again (pid $new)"
}

# wait_component name pid: until the component answers (etcd /health, the API
# server /readyz, the controller manager /healthz), or fail with its log.
wait_component() {
    local c=$1 pid=$2 timeout=${CONTROL_PLANE_TIMEOUT:-120} waited=0
    local server etcd_port
    server=$(awk -F= '$1 == "SERVER" { print $2 }' "$dir/env")
    etcd_port=$(awk -F= '$1 == "ETCD_PORT" { print $2 }' "$dir/env")
    local p=$dir/pki
    until component_ready "$c" "$server" "$etcd_port" "$p"; do
        running "$pid" "$c" || fail_component "$c exited" "$dir/$c.log"
        [ "$waited" -ge "$((timeout * 10))" ] && fail_component "$c was not ready within ${timeout}s" "$dir/$c.log"
        sleep 0.1
        waited=$((waited + 1))
    done
}

component_ready() { # component server etcd_port pki
    case "$1" in
        etcd) curl -fsS --max-time 2 "http://127.0.0.1:$3/health" 2>/dev/null | grep -q '"health":"true"' ;;
        kube-apiserver)
            curl -fsS --max-time 2 --cacert "$4/ca.crt" --cert "$4/admin.crt" --key "$4/admin.key" \
                "$2/readyz" 2>/dev/null | grep -qx ok ;;
        kube-controller-manager)
            local port
            port=$(grep -o -- "--secure-port=[0-9]*" "$dir/$1.cmd" | cut -d= -f2)
            curl -fsSk --max-time 2 "https://127.0.0.1:$port/healthz" 2>/dev/null | grep -qx ok ;;
    esac
}

fail_component() { # message log: unlike fail_with_log, leaves the rest running for `down`
    say "$1"
    if [ -f "$2" ]; then
        say "last lines of $2:"
        tail -n 40 "$2" >&2
    fi
    exit 1
}

up() {
    [ -n "${dir:-}" ] || die "usage: $0 up DIR"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pids" ]; then
        die "$dir already has a control plane (run '$0 down $dir' first)"
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the control plane's PKI"
    local bin kbin
    bin=$(build)
    kbin=$(kube_bin)
    # Opt-in (see the header): empty unless a real node joins this control plane.
    node_address=${CONTROL_PLANE_NODE_ADDRESS:-}
    local -a api_net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1)
    local -a api_node=(--endpoint-reconciler-type=none)
    local controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller
    if [ -n "$node_address" ]; then
        api_net=(--bind-address=0.0.0.0 --advertise-address="$node_address")
        # kubelets are reached at their InternalIP: the node name resolves nowhere.
        api_node=(--kubelet-client-certificate="$dir/pki/kubelet-client.crt" --kubelet-client-key="$dir/pki/kubelet-client.key"
            --kubelet-preferred-address-types=InternalIP,Hostname)
        controllers=$controllers,deployment-controller,replicaset-controller,endpointslice-controller,endpoints-controller,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,disruption-controller,node-lifecycle-controller,pod-garbage-collector-controller
    fi
    pki "$dir"
    local p=$dir/pki
    local etcd_port etcd_peer api_port
    etcd_port=$(free_port)
    etcd_peer=$(free_port)
    api_port=$(free_port)
    local server="https://127.0.0.1:$api_port"
    kubeconfig "$dir/admin.kubeconfig" admin "$p/admin.crt" "$p/admin.key" "$server" "$p/ca.crt"
    kubeconfig "$dir/kcm.kubeconfig" kcm "$p/kcm.crt" "$p/kcm.key" "$server" "$p/ca.crt"

    start etcd "$dir/etcd.log" "$bin/etcd" \
        --name=test --data-dir="$dir/etcd-data" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" \
        --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
        --initial-cluster="test=http://127.0.0.1:$etcd_peer" \
        --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn

    start kube-apiserver "$dir/kube-apiserver.log" "$kbin/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        "${api_net[@]}" --secure-port="$api_port" \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
        --client-ca-file="$p/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --authorization-mode=RBAC \
        --allow-privileged=true \
        "${api_node[@]}" \
        --cert-dir="$dir/apiserver-certs" \
        --v=1

    # Wait for the API server before the controller manager, so its first
    # discovery does not race the API server's start.
    local timeout=${CONTROL_PLANE_TIMEOUT:-120} waited=0
    until curl -fsS --max-time 2 --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" \
        "$server/readyz" 2>/dev/null | grep -qx ok; do
        fail_if_exited etcd
        fail_if_exited kube-apiserver
        if [ "$waited" -ge "$((timeout * 10))" ]; then
            fail_with_log "kube-apiserver was not ready within ${timeout}s" "$dir/kube-apiserver.log"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    local sa_creds=${KCM_SA_CREDENTIALS:-true}
    start kube-controller-manager "$dir/kube-controller-manager.log" "$kbin/kube-controller-manager" \
        --kubeconfig="$dir/kcm.kubeconfig" \
        --authentication-kubeconfig="$dir/kcm.kubeconfig" \
        --authorization-kubeconfig="$dir/kcm.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$(free_port)" \
        --leader-elect=false \
        --controllers="$controllers" \
        --use-service-account-credentials="$sa_creds" \
        --service-account-private-key-file="$p/sa.key" \
        --root-ca-file="$p/ca.crt" \
        --cert-dir="$dir/kcm-certs" \
        --v=1

    # The controller manager is ready when it has made the default namespace's
    # service account: its controllers are running.
    until kubectl_get_sa "$server" "$p"; do
        fail_if_exited kube-controller-manager
        if [ "$waited" -ge "$((timeout * 10))" ]; then
            fail_with_log "kube-controller-manager made no service account within ${timeout}s" "$dir/kube-controller-manager.log"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    cat > "$dir/env" <<EOF
KUBECONFIG=$dir/admin.kubeconfig
SERVER=$server
API_PORT=$api_port
ETCD_PORT=$etcd_port
CA_CRT=$p/ca.crt
BIN_DIR=$bin
KCM_SA_CREDENTIALS=$sa_creds
EOF
    [ -z "$node_address" ] || echo "NODE_ADDRESS=$node_address" >> "$dir/env"
    local owner=${CONTROL_PLANE_OWNER_PID:-}
    if [ -n "$owner" ]; then
        setsid bash -c 'tail --pid="$1" -f /dev/null; exec "$2" down "$3"' watchdog "$owner" "$here/control-plane.sh" "$dir" \
            >/dev/null 2>&1 < /dev/null &
        echo "$!" > "$dir/watchdog.pid"
    fi
    say "ready: $server (kubeconfig $dir/admin.kubeconfig)"
}

kubectl_get_sa() { # server pki
    curl -fsS --max-time 2 --cacert "$2/ca.crt" --cert "$2/admin.crt" --key "$2/admin.key" \
        "$1/api/v1/namespaces/default/serviceaccounts/default" >/dev/null 2>&1
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
    build) build >/dev/null; kube_bin ;;
    up) up ;;
    down)
        [ -n "$dir" ] || die "usage: $0 down DIR"
        [ -d "$dir" ] || exit 0
        dir=$(cd "$dir" && pwd)
        stop_all
        # The watchdog, unless it is the one calling.
        if [ -f "$dir/watchdog.pid" ]; then
            w=$(cat "$dir/watchdog.pid")
            rm -f "$dir/watchdog.pid"
            [ "$w" != "$PPID" ] && [ "$w" != "$$" ] && kill -TERM "$w" 2>/dev/null || true
        fi
        ;;
    stop|kill|start|restart)
        [ -n "$dir" ] && [ -d "$dir" ] || die "usage: $0 $cmd DIR COMPONENT"
        dir=$(cd "$dir" && pwd)
        component=${3:-}
        component_arg "$component"
        # One change of a control plane at a time.
        exec 8>"$dir/components.lock"
        flock 8
        case "$cmd" in
            stop) stop_component "$component" ;;
            kill) stop_component "$component" KILL ;;
            start) start_component "$component" ;;
            restart) stop_component "$component"; start_component "$component" ;;
        esac
        ;;
    *) die "usage: $0 build | up DIR | down DIR | stop|kill|start|restart DIR COMPONENT" ;;
esac
