#!/usr/bin/env bash
# The relay beside Debian's nginx as a plain mTLS reverse proxy, in one run:
# throughput of relayed reads (GET of one Secret, LIST) and writes (PUT of a hub copy
# the cluster owns, allowed by policy) over HTTP/1.1 keep-alive, HTTP/2 and a new
# connection per request; latency at a fixed rate; proxy CPU per request; then the
# fan-out and memory bench (benches/relay_fanout.rs).
#
#   benches/relay.sh      # ROUNDS=3 SECONDS_PER_RUN=10 RATE=5000 CONNECTIONS=32 FANOUT=1
#                         # CASES="list-h1 put-h1" FIXED_RATE=0 RELAY_BIN=path: a subset
#
# Layout (2 cores): the proxy under test (`secret-relay relay`, or nginx with one
# worker) runs alone on core 0; the load generator oha, the upstream and the sandbox
# run on core 1 (taskset).
#
# The upstream is one nginx worker on plain HTTP/1.1 that answers every request the
# proxies send with a fixed body (`return 200`): the GET and LIST bodies are the bytes
# the relay itself serves for them, and a write gets the 2 KB Secret with its fields in
# kube-apiserver's order (metadata before data, as the API server answers). It listens on two
# ports: the baseline nginx proxies everything to one; the relay's client uses the
# other, where its own GETs (the list and watch that fill its cache) go on to the
# sandbox (`secret-relay sandbox`, in-memory API server) and its writes get the fixed
# answer. So both proxies forward writes to the same trivial upstream; the relay
# serves reads from its watch cache and nginx forwards them.
#
# oha is installed with `cargo install oha --locked --root target/bench-tools` when it
# is not on PATH; nginx comes from Debian (apt-get install nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-32}
H2_CONNECTIONS=${H2_CONNECTIONS:-4}
H2_STREAMS=${H2_STREAMS:-16}
RATE=${RATE:-5000}
FANOUT=${FANOUT:-1}
CLUSTERS=${CLUSTERS:-100}
HUB_COPIES_PER_CLUSTER=${HUB_COPIES_PER_CLUSTER:-5}

OHA_ROOT=${OHA_ROOT:-$PWD/target/bench-tools}
if ! command -v oha >/dev/null 2>&1; then
    [ -x "$OHA_ROOT/bin/oha" ] || cargo install oha --locked --root "$OHA_ROOT"
    PATH="$OHA_ROOT/bin:$PATH"
fi
for tool in taskset nginx openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required (nginx: apt-get install nginx-light)" >&2; exit 1; }
done
# RELAY_BIN: a secret-relay binary built elsewhere (default: build this checkout).
if [ -n "${RELAY_BIN:-}" ]; then
    bin=$RELAY_BIN
else
    cargo build --release -q -p secret-relay
    bin=$PWD/target/release/secret-relay
fi

work=$(mktemp -d)
pids=()
keep=${KEEP_WORK:-}
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "$keep" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

base=$((20000 + RANDOM % 20000))
sandbox_port=$base upstream_relay_port=$((base + 1)) upstream_nginx_port=$((base + 2))
relay_port=$((base + 3)) relay_admin_port=$((base + 4)) nginx_port=$((base + 5))

# --- PKI: one CA; the relay's serving certificate (nginx serves the same one); cluster1.
pki=$work/pki
"$bin" certs init --dir "$pki" 2>/dev/null
"$bin" certs server --dir "$pki" --name relay --dns localhost --ip 127.0.0.1 2>/dev/null
"$bin" certs cluster --dir "$pki" --name cluster1 2>/dev/null

# --- The policy: CLUSTERS clusters, one Secret Source.
python3 - "$work/policy.yaml" "$CLUSTERS" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
lines = ["controlPlaneNamespace: argocd", "clusters:"]
for i in range(1, n + 1):
    lines.append(f"  - name: cluster{i}")
    lines.append(f"    labels: {{ env: prod, region: r{i % 4} }}")
lines += ["secretSources:", "  - clusterSelector: env=prod", "    labelSelector: team"]
open(path, "w").write("\n".join(lines) + "\n")
PY

# --- The sandbox (core 1), and its hub copies.
mkdir -p "$work/sandbox"
taskset -c 1 "$bin" sandbox --addr "127.0.0.1:$sandbox_port" --dir "$work/sandbox" 2>"$work/sandbox.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/sandbox/admin.kubeconfig" ] && break; sleep 0.1; done
python3 - "$work" "$CLUSTERS" "$HUB_COPIES_PER_CLUSTER" <<'PY'
# Every cluster owns HUB_COPIES_PER_CLUSTER hub copies (repository credentials, ~2 KB
# each), and the control plane owns as many per cluster, each sent down to that
# cluster and the next: cluster1 sees 3 x HUB_COPIES_PER_CLUSTER hub copies.
import base64, http.client, json, re, ssl, sys
work, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kc = open(f"{work}/sandbox/admin.kubeconfig").read()
field = lambda k: base64.b64decode(re.search(k + r": (\S+)", kc).group(1))
open(f"{work}/sandbox/ca.crt", "wb").write(field("certificate-authority-data"))
open(f"{work}/sandbox/admin.crt", "wb").write(field("client-certificate-data"))
open(f"{work}/sandbox/admin.key", "wb").write(field("client-key-data"))
server = re.search(r"server: https://(\S+)", kc).group(1)
ctx = ssl.create_default_context(cafile=f"{work}/sandbox/ca.crt")
ctx.load_cert_chain(f"{work}/sandbox/admin.crt", f"{work}/sandbox/admin.key")
host, port = server.rsplit(":", 1)
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
def post(path, obj):
    conn.request("POST", path, json.dumps(obj), {"content-type": "application/json"})
    r = conn.getresponse(); body = r.read()
    if r.status not in (200, 201, 409):
        sys.exit(f"POST {path}: {r.status} {body[:300]!r}")
post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
def data(seed):
    return {k: base64.b64encode(v.encode()).decode() for k, v in {
        "url": f"https://git.example.com/platform/deployments-{seed}.git",
        "username": "deploy-bot", "password": "x" * 40, "sshPrivateKey": "k" * 1100}.items()}
def secret(name, labels, annotations, seed):
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": "argocd", "labels": labels, "annotations": annotations},
            "data": data(seed)}
for i in range(1, n + 1):
    for j in range(per):
        name = f"c{i}-repo-{j}"
        post("/api/v1/namespaces/argocd/secrets", secret(name,
            {"team": "platform", "akuity.io/secret-sync": "true", "secret-relay.io/owner": f"cluster.cluster{i}"},
            {"note": "0" * 71}, name))
        window = f"cluster{i},cluster{i % n + 1}"
        name = f"cp-{i}-{j}"
        post("/api/v1/namespaces/argocd/secrets", secret(name, {"team": "platform"},
            {"akuity.io/managed-secret-allowed-clusters": window}, name))
# The body of the writes: cluster1's own Secret, as its agent PUTs it over its hub copy.
body = secret("c1-repo-0", {"team": "platform", "akuity.io/secret-sync": "true"}, {}, "c1-repo-0-v2")
open(f"{work}/put.json", "w").write(json.dumps(body))
PY

# --- The upstream (core 1): nginx, one worker, plain HTTP/1.1. Bodies are filled in
# once the relay is up (they are the relay's own answers), then nginx reloads.
write_upstream_conf() {
    python3 - "$work" "$sandbox_port" "$upstream_relay_port" "$upstream_nginx_port" <<'PY'
import os, sys
work, sandbox, up_relay, up_nginx = sys.argv[1:5]
# nginx takes a string of at most 4 KB: the GET body is inlined, the LIST body is a file.
p = f"{work}/get.json"
text = open(p).read() if os.path.exists(p) else "{}"
assert "'" not in text and "\\" not in text and "$" not in text and len(text) < 4000
get = "'" + text + "'"
# A write's answer: the same Secret with its fields in kube-apiserver's order (kind,
# apiVersion, metadata, then the rest), as the API server encodes what it stored.
import json
obj = json.loads(text)
order = ["kind", "apiVersion", "metadata"]
put = "'" + json.dumps({**{k: obj[k] for k in order if k in obj},
                        **{k: v for k, v in obj.items() if k not in order}},
                       separators=(",", ":")) + "'"
assert "\\" not in put and "$" not in put
open(f"{work}/upstream/nginx.conf", "w").write(f"""
worker_processes 1;
pid {work}/upstream/nginx.pid;
error_log {work}/upstream/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/upstream/tmp;
    proxy_temp_path {work}/upstream/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/json;
    sendfile on;
    open_file_cache max=16 inactive=1h;
    upstream sandbox {{ server 127.0.0.1:{sandbox}; keepalive 8; }}
    # The baseline nginx's upstream.
    server {{
        listen 127.0.0.1:{up_nginx} reuseport;
        location = /api/v1/namespaces/argocd/secrets {{ root {work}/bodies; try_files /list.json =404; }}
        location / {{
            if ($request_method != GET) {{ return 200 {put}; }}
            return 200 {get};
        }}
    }}
    # The relay's upstream: its writes get the fixed answer, its own reads (the
    # cache's list and watch) go on to the sandbox.
    server {{
        listen 127.0.0.1:{up_relay} reuseport;
        location / {{
            if ($request_method != GET) {{ return 200 {put}; }}
            proxy_pass https://sandbox;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {work}/sandbox/admin.crt;
            proxy_ssl_certificate_key {work}/sandbox/admin.key;
            proxy_ssl_verify off;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
""")
PY
}
# nginx workers run as an unprivileged user: they read the bodies and use the temp dirs.
mkdir -p "$work/upstream/tmp" "$work/proxy/tmp" "$work/bodies"
chmod 711 "$work"
chmod 755 "$work/bodies"
chmod 777 "$work/upstream/tmp" "$work/proxy/tmp"
write_upstream_conf
nginx -t -q -p "$work/upstream" -c "$work/upstream/nginx.conf" -e "$work/upstream/error.log"
taskset -c 1 nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" -e "$work/upstream/error.log" &
upstream_pid=$!
pids+=($upstream_pid)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$upstream_relay_port/" && break; sleep 0.1; done

# --- The relay (core 0), talking to the upstream as its control plane.
cat >"$work/relay.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: upstream
  cluster: { server: "http://127.0.0.1:$upstream_relay_port" }
users:
- name: relay
  user: {}
contexts:
- name: relay
  context: { cluster: upstream, user: relay }
current-context: relay
KC
# RELAY_WRAP: a command the relay runs under (benches/relay-instructions.sh: cachegrind).
read -r -a relay_wrap <<<"${RELAY_WRAP:-}"
taskset -c 0 "${relay_wrap[@]}" "$bin" relay --addr "127.0.0.1:$relay_port" --admin-addr "127.0.0.1:$relay_admin_port" \
    --tls-cert "$pki/relay.crt" --tls-key "$pki/relay.key" --client-ca "$pki/ca.crt" \
    --kubeconfig "$work/relay.kubeconfig" --policy-file "$work/policy.yaml" \
    --cluster-rate 1000000000 --cluster-burst 1000000000 --cluster-watches 100000 \
    2>"$work/relay.log" &
relay_pid=$!
pids+=($relay_pid)
for _ in $(seq 1 1200); do
    curl -sf "http://127.0.0.1:$relay_admin_port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$relay_admin_port/readyz" >/dev/null || { cat "$work/relay.log" >&2; exit 1; }

secrets=/api/v1/namespaces/argocd/secrets
as_cluster() { curl -sf --cacert "$pki/ca.crt" --cert "$pki/cluster1.crt" --key "$pki/cluster1.key" "$@"; }
as_cluster "https://localhost:$relay_port$secrets/c1-repo-0" -o "$work/get.json"
as_cluster "https://localhost:$relay_port$secrets" -o "$work/bodies/list.json"
chmod 644 "$work/bodies/list.json"
write_upstream_conf
kill -HUP "$upstream_pid"
sleep 0.5

# --- nginx as a plain mTLS reverse proxy (core 0): one worker, the same CA and
# ECDSA P-256 certificate, TLS 1.3 with X25519 (OpenSSL 3.0 has no
# X25519MLKEM768; the relay, on aws-lc-rs, negotiates that hybrid with oha,
# whose rustls offers it first: BENCHMARKS.md, "TLS providers"), ALPN h2 and
# http/1.1, a pooled upstream. TLS session
# resumption is on, as it is in the relay (rustls' default session cache and
# TLS 1.3 tickets), so a new connection per request resumes on both.
cat >"$work/proxy/nginx.conf" <<CONF
worker_processes 1;
pid $work/proxy/nginx.pid;
error_log $work/proxy/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/proxy/tmp;
    proxy_temp_path $work/proxy/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream api { server 127.0.0.1:$upstream_nginx_port; keepalive 128; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
        ssl_certificate $pki/relay.crt;
        ssl_certificate_key $pki/relay.key;
        ssl_client_certificate $pki/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
taskset -c 0 nginx -p "$work/proxy" -c "$work/proxy/nginx.conf" -e "$work/proxy/error.log" &
nginx_pid=$!
pids+=($nginx_pid)
sleep 0.5
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)

# The same bytes from both proxies.
for path in "$secrets/c1-repo-0" "$secrets"; do
    a=$(as_cluster "https://localhost:$relay_port$path" | sha256sum)
    b=$(as_cluster "https://localhost:$nginx_port$path" | sha256sum)
    [ "$a" = "$b" ] || { echo "the proxies answer $path differently" >&2; exit 1; }
done
put_code() { as_cluster -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    --data-binary "@$work/put.json" "https://localhost:$1$secrets/c1-repo-0"; }
[ "$(put_code "$relay_port")" = 200 ] && [ "$(put_code "$nginx_port")" = 200 ] \
    || { echo "a PUT was not answered 200" >&2; exit 1; }

# The TLS group each side negotiates with a classical client (openssl s_client offers
# X25519 and P-256, as OpenSSL 3.0 does). oha's rustls offers X25519MLKEM768 first,
# which the relay (aws-lc-rs) takes and nginx (OpenSSL 3.0) does not have.
group() {
    openssl s_client -connect "127.0.0.1:$1" -servername localhost -CAfile "$pki/ca.crt" \
        -cert "$pki/cluster1.crt" -key "$pki/cluster1.key" -groups X25519:P-256 </dev/null 2>/dev/null \
        | awk -F': ' '/Server Temp Key|Negotiated TLS1.3 group/ {print $2; exit}'
}
relay_group=$(group "$relay_port")
nginx_group=$(group "$nginx_port")
echo "TLS key exchange: relay $relay_group, nginx $nginx_group" >&2

if [ -n "${HOLD:-}" ]; then
    # For profiling by hand: everything is up; stop with Ctrl-C.
    echo "relay pid $relay_pid port $relay_port; nginx worker $nginx_worker port $nginx_port; work $work" >&2
    sleep infinity
fi

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run PID PORT PATH [oha args...] -> "rps p50_ms p99_ms cpu_us_per_ok ok errors"
run() {
    local pid=$1 port=$2 path=$3; shift 3
    local before after out
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 1 oha --no-tui --output-format json -z "${SECONDS_PER_RUN}s" \
        --cacert "$pki/ca.crt" --cert "$pki/cluster1.crt" --key "$pki/cluster1.key" \
        "$@" "https://localhost:$port$path")
    after=$(cpu_ticks "$pid")
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
codes = r.get("statusCodeDistribution", {}); ok = codes.get("200", 0)
# Requests still in flight when the run ends are "aborted due to deadline": not errors.
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
rps = ok / r["summary"]["total"]; p = r["latencyPercentiles"]
print("%.0f %.3f %.3f %.1f %d %d" % (rps, p["p50"] * 1000, p["p99"] * 1000, ticks / hz / max(ok, 1) * 1e6, ok, bad))
' "$out" "$((after - before))" "$hz"
}

h1=(-c "$CONNECTIONS")
h2=(--http2 -c "$H2_CONNECTIONS" -p "$H2_STREAMS")
fresh=(--disable-keepalive -c "$CONNECTIONS")
put=(-m PUT -H 'content-type: application/json' -D "$work/put.json")
declare -A col
record() { col[$1]+="$2 "; }

# CASES: a subset of the rows (say "list-h1 put-h1" to compare two commits' hot
# paths); FIXED_RATE=0 skips the latency rows at a fixed rate.
read -r -a cases <<<"${CASES:-get-h1 list-h1 put-h1 get-h2 list-h2 put-h2 get-new list-new put-new}"
for round in $(seq 1 "$ROUNDS"); do
    for case in "${cases[@]}"; do
        op=${case%-*} mode=${case#*-}
        case $op in get) path=$secrets/c1-repo-0 extra=() ;; list) path=$secrets extra=() ;; put) path=$secrets/c1-repo-0 extra=("${put[@]}") ;; esac
        case $mode in h1) conn=("${h1[@]}") ;; h2) conn=("${h2[@]}") ;; new) conn=("${fresh[@]}") ;; esac
        for side in relay nginx; do
            if [ $side = relay ]; then pid=$relay_pid port=$relay_port; else pid=$nginx_worker port=$nginx_port; fi
            read -r rps p50 p99 cpu ok bad < <(run "$pid" "$port" "$path" "${conn[@]}" "${extra[@]}")
            echo "round $round $case $side: $rps req/s, $cpu us CPU/req, p50 $p50 ms, p99 $p99 ms ($ok OK, $bad other)" >&2
            record "$case.$side.rps" "$rps"; record "$case.$side.cpu" "$cpu"; record "$case.$side.bad" "$bad"
        done
    done
    [ "${FIXED_RATE:-1}" = 1 ] || continue
    for op in get list put; do
        case $op in get) path=$secrets/c1-repo-0 extra=() ;; list) path=$secrets extra=() ;; put) path=$secrets/c1-repo-0 extra=("${put[@]}") ;; esac
        for side in relay nginx; do
            if [ $side = relay ]; then pid=$relay_pid port=$relay_port; else pid=$nginx_worker port=$nginx_port; fi
            read -r rps p50 p99 cpu ok bad < <(run "$pid" "$port" "$path" "${h1[@]}" -q "$RATE" --latency-correction "${extra[@]}")
            echo "round $round $op at $RATE req/s $side: p50 $p50 ms, p99 $p99 ms, $cpu us CPU/req ($ok OK, $bad other)" >&2
            record "$op-rate.$side.p50" "$p50"; record "$op-rate.$side.p99" "$p99"; record "$op-rate.$side.cpu" "$cpu"
            record "$op-rate.$side.bad" "$bad"
        done
    done
done
relay_rss=$(awk '/VmHWM/ {print $2}' "/proc/$relay_pid/status")
nginx_rss=$(awk '/VmHWM/ {print $2}' "/proc/$nginx_worker/status")
get_bytes=$(wc -c <"$work/get.json") list_bytes=$(wc -c <"$work/bodies/list.json") put_bytes=$(wc -c <"$work/put.json")
list_items=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$work/bodies/list.json")
hub_copies=$((CLUSTERS * HUB_COPIES_PER_CLUSTER * 2))

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m() { median <<<"${col[$1]}"; }
sum() { tr ' ' '\n' | grep -v '^$' | awk '{s+=$1} END {print s+0}'; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo
echo "relay bench: $ROUNDS x ${SECONDS_PER_RUN}s; proxy on core 0; oha, upstream and sandbox on core 1; medians"
echo "$hub_copies hub copies, $CLUSTERS clusters; GET $get_bytes B, LIST $list_items items $list_bytes B, PUT body $put_bytes B"
echo "h1: $CONNECTIONS connections; h2: $H2_CONNECTIONS connections x $H2_STREAMS streams; new: a new connection per request, $CONNECTIONS at a time"
echo "TLS 1.3 key exchange: relay $relay_group, nginx $nginx_group"
echo
echo "| request | mode | relay req/s | nginx req/s | relay / nginx | relay CPU µs/req | nginx CPU µs/req | nginx / relay CPU |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for case in "${cases[@]}"; do
    op=${case%-*} mode=${case#*-}
    case $op in get) req="GET one Secret" ;; list) req="LIST ($list_items items)" ;; put) req="PUT (policy-checked write)" ;; esac
    case $mode in h1) label="HTTP/1.1 keep-alive" ;; h2) label="HTTP/2" ;; new) label="new connection each" ;; esac
    rr=$(m "$case.relay.rps") nr=$(m "$case.nginx.rps") rc=$(m "$case.relay.cpu") nc=$(m "$case.nginx.cpu")
    echo "| $req | $label | $rr | $nr | $(ratio "$rr" "$nr") | $rc | $nc | $(ratio "$nc" "$rc") |"
done
if [ "${FIXED_RATE:-1}" = 1 ]; then
echo
echo "At a fixed $RATE req/s (HTTP/1.1 keep-alive, $CONNECTIONS connections, oha --latency-correction):"
echo
echo "| request | relay p50 ms | nginx p50 ms | relay p99 ms | nginx p99 ms | relay CPU µs/req | nginx CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for op in get list put; do
    echo "| $op | $(m "$op-rate.relay.p50") | $(m "$op-rate.nginx.p50") | $(m "$op-rate.relay.p99") | $(m "$op-rate.nginx.p99") | $(m "$op-rate.relay.cpu") | $(m "$op-rate.nginx.cpu") |"
done
fi
bad=0
for k in "${!col[@]}"; do
    case $k in *.bad) bad=$((bad + $(sum <<<"${col[$k]}"))) ;; esac
done
echo
echo "non-200 answers or errors over the whole run: $bad"
echo "peak RSS over the run: relay $((relay_rss / 1024)) MiB, nginx worker $((nginx_rss / 1024)) MiB"

# Stop everything before the fan-out bench, which starts its own sandbox and relay.
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
if [ "$FANOUT" = 1 ]; then
    echo
    RELAY_BIN=$bin cargo bench -q --bench relay_fanout
fi
