#!/usr/bin/env bash
# Admission webhook throughput, latency at half load and memory, beside a baseline
# served by the same binary and TLS stack that does no admission work (POST /baseline).
#
#   benches/webhook.sh            # 3 rounds of 10 s each (ROUNDS, SECONDS_PER_RUN, CONNECTIONS)
#
# The webhook runs on core 0 and the load generator, oha, on core 1 (taskset), over
# TLS keep-alive (HTTP/1.1, as kube-apiserver calls webhooks). oha is installed with
# `cargo install oha --locked --root target/bench-tools` when it is not on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-32}

# oha comes from PATH, or is installed once into a local root (OHA_ROOT).
OHA_ROOT=${OHA_ROOT:-$PWD/target/bench-tools}
if ! command -v oha >/dev/null 2>&1; then
    [ -x "$OHA_ROOT/bin/oha" ] || cargo install oha --locked --root "$OHA_ROOT"
    PATH="$OHA_ROOT/bin:$PATH"
fi
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is required" >&2; exit 1; }
# WEBHOOK_BIN: a secret-relay binary built elsewhere (default: build this checkout),
# to measure two commits side by side.
if [ -n "${WEBHOOK_BIN:-}" ]; then
    bin=$WEBHOOK_BIN
else
    cargo build --release -q -p secret-relay
    bin=target/release/secret-relay
fi

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

. benches/webhook-fixture.sh

port=$((20000 + RANDOM % 20000))
taskset -c 0 "$bin" webhook --addr "127.0.0.1:$port" \
    --tls-cert "$work/webhook.crt" --tls-key "$work/webhook.key" \
    --policy-file "$work/policy.yaml" --bench-baseline 2>"$work/webhook.log" &
pid=$!
for _ in $(seq 1 100); do
    curl -sf --cacert "$work/ca.crt" "https://localhost:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf --cacert "$work/ca.crt" "https://localhost:$port/readyz" >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

# run PATH [extra oha args...] -> prints "rps p50_ms p99_ms cpu_us_per_req"
run() {
    local path=$1; shift
    local before after out
    before=$(cpu_ticks)
    out=$(taskset -c 1 oha --no-tui --output-format json -z "${SECONDS_PER_RUN}s" -c "$CONNECTIONS" \
        -m POST -H 'content-type: application/json' -D "$work/review.json" \
        --cacert "$work/ca.crt" "$@" "https://localhost:$port$path")
    after=$(cpu_ticks)
    python3 -c '
import json, sys, os
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = os.sysconf("SC_CLK_TCK")
rps = r["summary"]["requestsPerSec"]; p = r["latencyPercentiles"]
ok = r.get("statusCodeDistribution", {}).get("200", 0)
cpu = ticks / hz / max(ok, 1) * 1e6
print("%.0f %.3f %.3f %.1f %d" % (rps, p["p50"] * 1000, p["p99"] * 1000, cpu, ok))
' "$out" "$((after - before))"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A col
for path in /baseline /validate /mutate; do
    for round in $(seq 1 "$ROUNDS"); do
        read -r rps p50 p99 cpu ok < <(run "$path")
        echo "full load $path round $round: $rps req/s, p50 $p50 ms, p99 $p99 ms, $cpu us CPU/req ($ok OK)" >&2
        col[$path.rps]+="$rps "; col[$path.cpu]+="$cpu "
        half=$((rps / 2))
        read -r _ hp50 hp99 _ _ < <(run "$path" -q "$half")
        echo "  at $half req/s: p50 $hp50 ms, p99 $hp99 ms" >&2
        col[$path.p50]+="$hp50 "; col[$path.p99]+="$hp99 "; col[$path.half]+="$half "
    done
done
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

m() { tr ' ' '\n' <<<"${col[$1]}" | grep -v '^$' | median; }
base=$(m /baseline.rps)
echo
echo "webhook bench: $ROUNDS x ${SECONDS_PER_RUN}s, $CONNECTIONS connections, webhook on core 0, oha on core 1; medians"
echo "| endpoint | reviews/s | vs baseline | CPU µs/review | p50 at half load (ms) | p99 at half load (ms) |"
echo "|---|---:|---:|---:|---:|---:|"
for path in /baseline /validate /mutate; do
    rps=$(m $path.rps)
    printf '| %s | %s | %.2f | %s | %s | %s |\n' "$path" "$rps" "$(python3 -c "print($rps/$base)")" \
        "$(m $path.cpu)" "$(m $path.p50)" "$(m $path.p99)"
done
echo "peak RSS of the webhook over the whole run: $((rss_kb / 1024)) MiB"
