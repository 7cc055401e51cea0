#!/usr/bin/env bash
# Instructions and simulated cache misses per admission review, counted by valgrind's
# cachegrind: a measure that does not move with the neighbours on a shared machine, so
# two builds can be compared to the tenth of a percent (CPU time on these machines moves
# by 10 % and more between runs of the same binary; see BENCHMARKING.md).
#
#   benches/webhook-instructions.sh                          # this checkout's release build
#   BINS="old=/tmp/sr-old new=target/release/secret-relay" benches/webhook-instructions.sh
#
# For each binary and endpoint the webhook runs twice under cachegrind, once answering 1
# review and once 1 + N (N=2000 by default) over one TLS keep-alive connection (as
# kube-apiserver calls webhooks); the difference over N is the cost of one review, with
# start-up, the policy load, the handshake and the first requests' warm-up taken out.
# The same review and policy as benches/webhook.sh. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/instructions-setup.sh

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

bin=${BINS%% *}
bin=${bin#*=}
. benches/webhook-fixture.sh

# client.py PORT COUNT PATH: COUNT reviews over one keep-alive connection, each answered 200.
cat > "$work/client.py" <<'PY'
import http.client, ssl, sys
port, count, path, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = open(work + "/review.json", "rb").read()
conn = http.client.HTTPSConnection(
    "localhost", port, context=ssl.create_default_context(cafile=work + "/ca.crt"))
for _ in range(count):
    conn.request("POST", path, body, {"content-type": "application/json"})
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        sys.exit("%s answered %d: %s" % (path, resp.status, answer[:200]))
PY

# counts BIN PATH REVIEWS -> "instructions I1-misses D1-misses" of the whole webhook process
counts() {
    local b=$1 path=$2 reviews=$3 port out
    port=$((20000 + RANDOM % 20000))
    out="$work/cachegrind.log"
    valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
        "$b" webhook --addr "127.0.0.1:$port" \
        --tls-cert "$work/webhook.crt" --tls-key "$work/webhook.key" \
        --policy-file "$work/policy.yaml" --bench-baseline 2>"$out" &
    pid=$!
    local ready=
    for _ in $(seq 1 600); do
        if curl -sf --cacert "$work/ca.crt" "https://localhost:$port/readyz" >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "the webhook under valgrind did not get ready; its log:" >&2; cat "$out" >&2; exit 1; }
    python3 "$work/client.py" "$port" "$reviews" "$path" "$work"
    kill -INT "$pid"
    wait "$pid" || true
    pid=
    python3 - "$out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def total(name):
    return int(re.search(r"==\d+== " + re.escape(name) + r":\s+([\d,]+)", text).group(1).replace(",", ""))
print(total("I   refs"), total("I1  misses"), total("D1  misses"))
PY
}

echo "webhook instructions per review: cachegrind, (1 + $N reviews) - (1 review), over $N"
echo "| binary | endpoint | instructions/review | I1 misses/review | D1 misses/review |"
echo "|---|---|---:|---:|---:|"
for entry in $BINS; do
    label=${entry%%=*}
    b=${entry#*=}
    for path in /baseline /validate /mutate; do
        read -r i1 im1 dm1 < <(counts "$b" "$path" 1)
        read -r i2 im2 dm2 < <(counts "$b" "$path" $((N + 1)))
        printf '| %s | %s | %d | %.1f | %.1f |\n' "$label" "$path" $(((i2 - i1) / N)) \
            "$(python3 -c "print(($im2 - $im1) / $N)")" "$(python3 -c "print(($dm2 - $dm1) / $N)")"
    done
done
