#!/usr/bin/env bash
# Instructions per policy-checked PUT through the relay, counted by valgrind's
# cachegrind: a measure that does not move with the neighbours on a shared machine, so
# two builds of the write path can be compared closely (CPU time per request moves by
# 10 % and more between runs of the same binary here, and with the load the proxy sees:
# see BENCHMARKS.md, "The relay's write path").
#
#   benches/relay-instructions.sh                        # this checkout's release build
#   BINS="old=/tmp/sr-old new=target/release/secret-relay" benches/relay-instructions.sh
#
# For each binary, benches/relay.sh sets up its world (PKI, sandbox, the fixed-answer
# upstream, 100 clusters, 1,000 hub copies) with the relay under cachegrind, and holds
# it. One client then sends 1 PUT, or 1 + N (N=2000 by default), over one TLS
# keep-alive connection (HTTP/1.1, cluster1's certificate): the difference over N is
# the instructions of one PUT (TLS, HTTP, decode, decision, forward, answer), with
# start-up, the cache fill, the handshake and warm-up taken out. Kernel work is not
# counted: both builds make the same system calls per PUT (strace -c). Needs valgrind,
# and what benches/relay.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/instructions-setup.sh

held=
work=
cleanup() {
    if [ -n "$held" ]; then
        pkill -P "$held" 2>/dev/null || true
        kill "$held" 2>/dev/null || true
        wait "$held" 2>/dev/null || true
    fi
    [ -n "$work" ] && rm -rf "$work"
    held= work=
}
trap cleanup EXIT

# counts BIN PUTS -> the relay process's total instructions after PUTS PUTs
counts() {
    local b=$1 puts=$2 log pid port
    log=$(mktemp)
    KEEP_WORK=1 HOLD=1 FANOUT=0 RELAY_BIN=$b \
        RELAY_WRAP="valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null" \
        benches/relay.sh 2>"$log" >/dev/null &
    held=$!
    for _ in $(seq 1 1200); do grep -q 'relay pid' "$log" && break; sleep 0.2; done
    grep -q 'relay pid' "$log" || { echo "the relay under valgrind did not get ready:" >&2; cat "$log" >&2; exit 1; }
    read -r pid port work < <(awk '/relay pid/ {gsub(";", ""); print $3, $5, $NF}' "$log")
    python3 - "$port" "$puts" "$work" <<'PY'
import http.client, ssl, sys
port, count, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = open(work + "/put.json", "rb").read()
ctx = ssl.create_default_context(cafile=work + "/pki/ca.crt")
ctx.load_cert_chain(work + "/pki/cluster1.crt", work + "/pki/cluster1.key")
conn = http.client.HTTPSConnection("localhost", port, context=ctx)
for _ in range(count):
    conn.request("PUT", "/api/v1/namespaces/argocd/secrets/c1-repo-0", body,
                 {"content-type": "application/json"})
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        sys.exit("PUT answered %d" % resp.status)
PY
    kill -INT "$pid"
    for _ in $(seq 1 600); do grep -q 'I *refs' "$work/relay.log" 2>/dev/null && break; sleep 0.1; done
    python3 - "$work/relay.log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
print(int(re.search(r"==\d+== I\s+refs:\s+([\d,]+)", text).group(1).replace(",", "")))
PY
    rm -f "$log"
    cleanup
}

echo "relay instructions per PUT: cachegrind, (1 + $N PUTs) - (1 PUT), over $N; HTTP/1.1 keep-alive"
echo "| binary | instructions/PUT |"
echo "|---|---:|"
for entry in $BINS; do
    label=${entry%%=*}
    b=${entry#*=}
    one=$(counts "$b" 1)
    many=$(counts "$b" $((N + 1)))
    printf '| %s | %d |\n' "$label" $(((many - one) / N))
done
