#!/usr/bin/env bash
# Runs every test of secret-relay on a fresh machine: installs what the tests
# need (kubectl fallback, a Python venv with the oracles), then lints, the Rust
# test suites and the fidelity suite that judges the sandbox with kubectl and
# the official Python client.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

# --- --fresh: the whole run as on a brand-new machine ------------------------------
# Clones the committed HEAD into a temporary directory and runs this script there
# with every cache empty and private to the run: CARGO_HOME (registry, cargo-deny),
# the target directory, Go's module and build caches, the control-plane binaries,
# npm's and pip's caches. Nothing this machine fetched or built before is used;
# the caches of the machine are left as they were. The toolchains themselves
# (rustup's Rust, Go, Python, Node.js) are the machine image's.
if [ "${1:-}" = "--fresh" ]; then
    shift
    fresh=$(mktemp -d -t secret-relay-fresh-XXXXXX)
    echo "fresh run in $fresh (kept on failure; removed on success)"
    git clone -q "$root" "$fresh/src"
    mkdir -p "$fresh/cargo" "$fresh/go" "$fresh/cache" "$fresh/npm"
    start=$(date +%s)
    set +e
    env CARGO_HOME="$fresh/cargo" \
        PATH="$fresh/cargo/bin:$PATH" \
        CARGO_TARGET_DIR="$fresh/src/target" \
        GOPATH="$fresh/go" GOMODCACHE="$fresh/go/pkg/mod" GOCACHE="$fresh/go/cache" \
        XDG_CACHE_HOME="$fresh/cache" \
        SECRET_RELAY_CACHE="$fresh/cache/secret-relay" \
        npm_config_cache="$fresh/npm" \
        PIP_NO_CACHE_DIR=1 \
        "$fresh/src/scripts/test.sh" "$@"
    rc=$?
    set -e
    echo "fresh run: exit $rc after $(( $(date +%s) - start )) s"
    if [ "$rc" = 0 ]; then
        chmod -R u+w "$fresh" 2>/dev/null || true
        rm -rf "$fresh"
    fi
    exit "$rc"
fi
run_start=$(date +%s)
step_start=$run_start

# --- disk: a run needs room, and a full disk fails far from its cause ------------
# A first run on a machine used 16 GiB: the target directory 9.3 GiB, Go's caches
# and the Kubernetes binaries 5.2 GiB, Cargo's home 0.6 GiB (2026-12-07, before the
# oldest Kubernetes's binaries joined, about 1.5 GiB more); each test's etcd
# preallocates 64 MiB of write-ahead log. They share the disk with whatever else
# the machine holds.
target_dir=${CARGO_TARGET_DIR:-$root/target}
need_gib=${SECRET_RELAY_DISK_GIB:-20}
mkdir -p "$target_dir"
for dir in "$target_dir" "${TMPDIR:-/tmp}"; do
    free_gib=$(( $(df -Pk "$dir" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
    echo "disk: ${free_gib} GiB free for $dir"
    if [ "$free_gib" -lt "$need_gib" ]; then
        loud "only ${free_gib} GiB free for $dir; a run needs about ${need_gib} GiB (SECRET_RELAY_DISK_GIB)"
        exit 1
    fi
done
# Each step's wall time, printed in the summary: where a run's time goes.
step_times=()
say() {
    local now
    now=$(date +%s)
    [ -n "${step_name:-}" ] && step_times+=("$(( now - step_start ))s  $step_name")
    step_name="$*"
    step_start=$now
    printf '\n==> %s\n' "$*"
}

loud() { printf '\n!!!!!!!! %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- kubectl: every version we can find, 1.27 and newer ---------------------
candidates=()
for dir in /usr/lib/google-cloud-sdk/bin /usr/share/google-cloud-sdk/bin /opt/google-cloud-sdk/bin; do
    for k in "$dir"/kubectl.1.*; do
        [ -x "$k" ] && candidates+=("$k")
    done
done
if command -v kubectl >/dev/null 2>&1; then
    candidates+=("$(command -v kubectl)")
fi
if [ "${#candidates[@]}" = 0 ]; then
    loud "no kubectl on this machine: installing Debian's kubernetes-client"
    apt_install kubernetes-client || loud "could not install kubernetes-client"
    command -v kubectl >/dev/null 2>&1 && candidates+=("$(command -v kubectl)")
fi

kubectl_ok=()
kubectl_skipped=()
declare -A seen_versions=()
for k in "${candidates[@]}"; do
    v=$("$k" version --client -o json 2>/dev/null | python3 -c 'import json,sys; c=json.load(sys.stdin)["clientVersion"]; print(c["major"]+"."+c["minor"].rstrip("+"))' 2>/dev/null || echo "?")
    minor=${v#*.}
    if [ "$v" = "?" ] || [ "${minor:-0}" -lt 27 ] 2>/dev/null; then
        kubectl_skipped+=("$k ($v)")
        continue
    fi
    [ -n "${seen_versions[$v]:-}" ] && continue
    seen_versions[$v]=1
    kubectl_ok+=("$k")
done
KUBECTL_BINARIES=$(IFS=:; echo "${kubectl_ok[*]:-}")
export KUBECTL_BINARIES

# --- Python oracles ------------------------------------------------------------
say "Python venv with the test oracles"
if ! python3 -m venv --help >/dev/null 2>&1; then
    apt_install python3-venv
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/fidelity/requirements.txt

# --- the real control plane: etcd, kube-apiserver, kube-controller-manager ------
# Built from their Go modules once per machine (cached under ~/.cache/secret-relay).
# A missing or too-old Go fails the run, unless the skip is asked for explicitly.
if [ "${SECRET_RELAY_SKIP_REAL_CONTROL_PLANE:-}" = 1 ]; then
    loud "SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1: the real-control-plane tests are SKIPPED on request"
else
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    say "control plane binaries (first run on a machine builds them from Go modules)"
    ./scripts/control-plane.sh build
fi

# --- the browser test: Debian's chromium driven by playwright-core from npm ------
if [ "${SECRET_RELAY_SKIP_BROWSER:-}" = 1 ]; then
    loud "SECRET_RELAY_SKIP_BROWSER=1: the Secrets page browser test is SKIPPED on request"
else
    say "Chromium and playwright-core for the Secrets page test"
    command -v chromium >/dev/null 2>&1 || apt_install chromium
    dpkg -s fonts-dejavu-core >/dev/null 2>&1 || apt_install fonts-dejavu-core || true
    node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
    if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
        apt_install nodejs npm || true
    fi
    if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
        loud "Node.js 20 or newer is needed for playwright-core (found: $(node --version 2>/dev/null || echo none))"
        exit 1
    fi
    (cd tests/ui-browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Rust ------------------------------------------------------------------------
lint_missing=()
if cargo fmt --version >/dev/null 2>&1; then
    say "cargo fmt --check"
    cargo fmt --all --check
    # The handshake bench is its own package outside the workspace (it builds ring
    # beside aws-lc-rs to compare them): checked by its manifest.
    cargo fmt --manifest-path benches/handshake/Cargo.toml --check
else
    lint_missing+=("cargo fmt")
    loud "cargo fmt is not installed: formatting was NOT checked"
fi

if cargo clippy --version >/dev/null 2>&1; then
    say "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
    # The product as the image builds it: without the sandbox (no demo, no sandbox).
    cargo clippy -p secret-relay --no-default-features -- -D warnings
    cargo clippy --manifest-path benches/handshake/Cargo.toml --locked --all-targets -- -D warnings
else
    lint_missing+=("cargo clippy")
    loud "cargo clippy is not installed: lints were NOT checked"
fi
say "cargo build -p secret-relay --no-default-features (the image's build: no sandbox)"
cargo build -p secret-relay --no-default-features

# Licenses, banned crates and sources (deny.toml). Advisories need the RustSec
# database from GitHub, which these machines cannot reach: see deny.toml.
# Looked for in this run's CARGO_HOME, not on PATH: a --fresh run's PATH still
# holds the machine's ~/.cargo/bin (rustup's cargo lives there), and with it the
# machine's cargo-deny.
if ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny" ]; then
    say "installing cargo-deny (once per machine)"
    cargo install --locked cargo-deny
fi
# `cargo build` fetches only this platform's crates; cargo deny reads the metadata
# of every platform (Windows-only crates included), offline. Fetch them all first;
# a crate that cannot be had fails the run here, by name.
say "cargo fetch --locked (every platform's crates, for cargo deny)"
cargo fetch --locked
say "cargo deny check licenses bans sources"
cargo deny --offline check licenses bans sources

say "cargo test --workspace"
cargo test --workspace

# --- the sync scenarios against outside clusters ---------------------------------
# The suite also runs against clusters made elsewhere, reached only through
# E2E_KUBECONFIG and E2E_CLUSTER{1,2}_KUBECONFIG (in `cargo test --workspace`
# above those variants print that they were skipped). Three control planes
# started here by scripts/control-plane.sh play such clusters.
if [ "${SECRET_RELAY_SKIP_REAL_CONTROL_PLANE:-}" = 1 ]; then
    loud "SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1: the outside-cluster scenarios are SKIPPED on request"
else
    say "sync, lifecycle and managed-webhook scenarios against outside clusters (E2E_KUBECONFIG)"
    outside=$(mktemp -d -t secret-relay-outside-XXXXXX)
    outside_down() {
        for c in hub cluster1 cluster2; do
            [ -d "$outside/$c" ] && ./scripts/control-plane.sh down "$outside/$c" >/dev/null 2>&1
        done
        rm -rf "$outside"
    }
    trap outside_down EXIT
    for c in hub cluster1 cluster2; do
        CONTROL_PLANE_OWNER_PID=$$ ./scripts/control-plane.sh up "$outside/$c"
    done
    # As an API server on another host would, the hub reaches the test process's
    # webhook at this machine's own address when it has one (not loopback).
    webhook_host=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+\.' || true)
    echo "the hub reaches the in-process webhook at ${webhook_host:-127.0.0.1}"
    E2E_WEBHOOK_HOST="${webhook_host:-127.0.0.1}" \
        E2E_KUBECONFIG="$outside/hub/admin.kubeconfig" \
        E2E_CLUSTER1_KUBECONFIG="$outside/cluster1/admin.kubeconfig" \
        E2E_CLUSTER2_KUBECONFIG="$outside/cluster2/admin.kubeconfig" \
        cargo test -p secret-relay --test sync --test lifecycle --test managed_webhook -- outside_clusters 2>&1 | tee "$outside/run.log"
    # A filter that matched nothing would pass: the scenarios must have run.
    if ! grep -qE '^test result: ok\. [1-9][0-9]* passed' "$outside/run.log"; then
        loud "no outside-cluster scenario ran"
        exit 1
    fi
    outside_down
    trap - EXIT
fi

# --- fidelity suite: kubectl and the Python client against the sandbox ------
say "fidelity suite (kubectl: ${KUBECTL_BINARIES:-none})"
cargo build -q -p secret-relay
SECRET_RELAY_BIN="$root/target/debug/secret-relay" .venv/bin/python -m pytest tests/fidelity -q -rs

# --- deployed as it ships: the image and the manifests as pods on a real node ---
# tests/deployed.rs (in `cargo test --workspace` above it skipped, loudly): one
# node on this machine (scripts/node.sh: containerd, kubelet, kube-proxy, the
# bridge CNI), the image built here (scripts/image.sh), the control-plane
# kustomization and the agent as pods, then a user's operations on them. Needs
# root: the node changes host-global state, and `node.sh down` undoes it.
if [ "${SECRET_RELAY_SKIP_REAL_NODE:-}" = 1 ]; then
    loud "SECRET_RELAY_SKIP_REAL_NODE=1: the real-node suite (tests/deployed.rs) is SKIPPED on request"
elif [ "$(id -u)" != 0 ]; then
    loud "the real-node suite needs root (a node changes host-global state); run as root or set SECRET_RELAY_SKIP_REAL_NODE=1"
    exit 1
else
    say "real node: the image and the manifests as pods, and a user's operations (tests/deployed.rs)"
    ./scripts/node.sh packages
    # tests/deployed.rs runs tests/sync.rs' scenarios against the pods, from the
    # binary the workspace tests built (a test cannot run cargo while cargo runs it).
    SECRET_RELAY_SYNC_TESTS=$(cargo test -p secret-relay --test sync --no-run --message-format=json |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sync" and m.get("executable"):
        print(m["executable"])')
    [ -x "$SECRET_RELAY_SYNC_TESTS" ] || { loud "no test binary of tests/sync.rs"; exit 1; }
    export SECRET_RELAY_SYNC_TESTS
    node_log=$(mktemp -t secret-relay-deployed-XXXXXX.log)
    SECRET_RELAY_REAL_NODE=1 cargo test -p secret-relay --test deployed -- --test-threads=1 2>&1 | tee "$node_log"
    if ! grep -qE '^test result: ok\. 2 passed' "$node_log"; then
        loud "the real-node suite did not pass both tests"
        exit 1
    fi
    # The same stack on the oldest Kubernetes the manifests claim (tests/kube-oldest:
    # a first run on a machine builds it, about 10 minutes).
    say "real node on the oldest Kubernetes we support (SECRET_RELAY_KUBE=oldest)"
    SECRET_RELAY_KUBE=oldest ./scripts/node.sh build >/dev/null
    SECRET_RELAY_KUBE=oldest SECRET_RELAY_REAL_NODE=1 cargo test -p secret-relay --test deployed \
        the_control_plane_kustomization_rolls_out_on_a_real_node -- --test-threads=1 2>&1 | tee "$node_log"
    if ! grep -qE '^test result: ok\. 1 passed' "$node_log"; then
        loud "the real-node suite did not pass on the oldest Kubernetes"
        exit 1
    fi
    rm -f "$node_log"
fi

say "summary"
for t in "${step_times[@]:-}"; do
    [ -n "$t" ] && echo "  $t"
done
echo "  total: $(( $(date +%s) - run_start ))s"
echo "  target directory: $(du -sh "$target_dir" 2>/dev/null | cut -f1)"
for l in "${lint_missing[@]:-}"; do
    [ -n "$l" ] && loud "$l was missing: it did NOT run"
done
if [ "${#kubectl_ok[@]}" = 0 ]; then
    loud "NO kubectl >= 1.27 was available: every kubectl fidelity check was SKIPPED"
    if [ "${SECRET_RELAY_ALLOW_NO_KUBECTL:-}" != 1 ]; then
        loud "failing: set SECRET_RELAY_ALLOW_NO_KUBECTL=1 to accept a run without kubectl"
        exit 1
    fi
else
    echo "kubectl checks ran against: ${kubectl_ok[*]}"
fi
for s in "${kubectl_skipped[@]:-}"; do
    [ -n "$s" ] && loud "kubectl $s is older than 1.27: its fidelity checks did NOT run"
done
exit 0
