# Sourced by scripts/control-plane.sh and scripts/node.sh: Kubernetes binaries built
# from a pinned Go module, once per machine, and cached. The caller defines `say` and
# `die` (its own log prefix).

# The Go the modules need (go.mod's `go` line of tests/kube and tests/kube-node).
min_go_minor=26

require_go() {
    command -v go >/dev/null 2>&1 || die "no 'go' on PATH: the test Kubernetes binaries are built from Go modules; install Go 1.$min_go_minor or newer"
    local v
    v=$(go env GOVERSION 2>/dev/null || true)
    v=${v#go}
    local major=${v%%.*} rest=${v#*.}
    local minor=${rest%%.*}
    if [ "${major:-0}" -lt 1 ] || { [ "$major" = 1 ] && [ "${minor:-0}" -lt "$min_go_minor" ]; }; then
        die "go $v is too old: the test Kubernetes binaries need Go 1.$min_go_minor or newer"
    fi
}

# kube_version GO_MOD: the k8s.io/kubernetes version a module pins.
kube_version() {
    awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 } $1 == "k8s.io/kubernetes" { print $2 }' "$1" | head -n1
}

# kube_bin_dir NAME MODULE RECIPE KEY_FILE...: the cache directory of NAME's binaries.
# The key is the module's Kubernetes version plus a hash of KEY_FILE... and RECIPE (bump
# RECIPE when the way the binaries are built changes), so a change of any pinned
# module rebuilds.
kube_bin_dir() {
    local name=$1 module=$2 recipe=$3
    shift 3
    local cache=${SECRET_RELAY_CACHE:-$HOME/.cache/secret-relay} sum
    sum=$( (cat "$@"; echo "$recipe") | sha256sum | cut -c1-12)
    printf '%s/%s-%s-%s/bin' "$cache" "$name" "$(kube_version "$module/go.mod")" "$sum"
}

# kube_build BIN_DIR MODULE PACKAGE...: builds PACKAGE... of MODULE into BIN_DIR unless
# every one is there, and prints BIN_DIR. One build per machine even when several
# callers start at once (a lock beside BIN_DIR); the binaries carry the version stamps
# of a release build (hack/lib/version.sh), so /version and kubelet say which
# Kubernetes they are.
kube_build() {
    local bin=$1 module=$2
    shift 2
    local pkgs=("$@") names=()
    local p
    for p in "${pkgs[@]}"; do names+=("$(basename "$p")"); done
    have_all() { local b; for b in "${names[@]}"; do [ -x "$bin/$b" ] || return 1; done; }
    if have_all; then
        printf '%s\n' "$bin"
        return
    fi
    require_go
    mkdir -p "$(dirname "$bin")"
    exec 9>"$(dirname "$bin").lock"
    flock 9
    if ! have_all; then
        local v
        v=$(kube_version "$module/go.mod")
        say "building ${names[*]} $v (first run on this machine: several minutes)"
        local start=$SECONDS tmp="$bin.tmp.$$" ldflags="" minor=${v#v1.}
        minor=${minor%%.*}
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldflags="$ldflags -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        done
        mkdir -p "$tmp"
        (cd "$module" && GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly" go build -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}") \
            || die "go build failed (see above)"
        rm -rf "$bin"
        mv "$tmp" "$bin"
        say "built in $((SECONDS - start))s into $bin"
    fi
    flock -u 9
    exec 9>&-
    printf '%s\n' "$bin"
}

# SECRET_RELAY_KUBE=oldest: the oldest Kubernetes secret-relay claims (tests/kube-oldest
# pins it) instead of tests/kube and tests/kube-node's. Both scripts build all five
# commands of that module at once, into one cache directory; etcd stays tests/kube's.
oldest_module="$root/tests/kube-oldest"
oldest_recipe=1

# kube_oldest_bin: builds (once per machine) and prints the oldest version's binaries.
kube_oldest_bin() {
    local m=$oldest_module
    kube_build "$(kube_bin_dir kube-oldest "$m" "$oldest_recipe" "$m/go.mod" "$m/go.sum" "$m/tools.go")" \
        "$m" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

# kube_oldest: whether SECRET_RELAY_KUBE asks for the oldest version (anything else
# but unset or empty is refused).
kube_oldest() {
    case "${SECRET_RELAY_KUBE:-}" in
        "") return 1 ;;
        oldest) return 0 ;;
        *) die "SECRET_RELAY_KUBE=$SECRET_RELAY_KUBE: only 'oldest' (tests/kube-oldest) is known" ;;
    esac
}
