#!/usr/bin/env bash
# OCI image archives built here, without a registry and without a base image,
# for `ctr images import` (scripts/node.sh load). Each command prints the
# archive's path on stdout.
#
#   scripts/image.sh secret-relay [TAG]   the product's image, localhost/secret-relay:TAG
#                                         (TAG defaults to "test"): the release binary
#                                         built `--no-default-features` (no sandbox, no
#                                         demo), the shared libraries it links (glibc,
#                                         libgcc_s), /etc/passwd and /etc/group with the
#                                         non-root user 65532, a CA bundle. What the
#                                         Dockerfile's distroless cc image holds for it.
#   scripts/image.sh pause                the pod sandbox image, localhost/pause:secret-relay:
#                                         a static C program that waits for a signal
#                                         and reaps children (cached per machine)
#
# Archives are reproducible: files owned by root (0:0) with mtime 0, sorted.
#
# Environment:
#   CARGO_TARGET_DIR     cargo's target dir (default ./target); archives go in
#                        its images/ directory
#   SECRET_RELAY_CACHE   where the pause archive is cached (default ~/.cache/secret-relay)
#   SECRET_RELAY_IMAGE_BIN  use this binary instead of building the release binary
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

die() { printf 'image: %s\n' "$*" >&2; exit 1; }
say() { printf 'image: %s\n' "$*" >&2; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# oci_archive ROOTFS OUT NAME TAG CONFIG_JSON_OF_IMAGE: one layer from ROOTFS.
oci_archive() {
    local rootfs=$1 out=$2 name=$3 tag=$4 imgconfig=$5
    local work
    work=$(mktemp -d)
    mkdir -p "$work/blobs/sha256"
    # The layer: sorted, root-owned, mtime 0, so the same inputs give the same digest.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$rootfs" -cf "$work/layer.tar" .
    local diff_id
    diff_id=$(sha "$work/layer.tar")
    gzip -n -6 "$work/layer.tar"
    local layer_digest layer_size
    layer_digest=$(sha "$work/layer.tar.gz")
    layer_size=$(size "$work/layer.tar.gz")
    mv "$work/layer.tar.gz" "$work/blobs/sha256/$layer_digest"

    printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/image.sh","comment":"no base image"}]}' \
        "$imgconfig" "$diff_id" > "$work/config.json"
    local config_digest config_size
    config_digest=$(sha "$work/config.json")
    config_size=$(size "$work/config.json")
    mv "$work/config.json" "$work/blobs/sha256/$config_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
    local manifest_digest manifest_size
    manifest_digest=$(sha "$work/manifest.json")
    manifest_size=$(size "$work/manifest.json")
    mv "$work/manifest.json" "$work/blobs/sha256/$manifest_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s:%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest_digest" "$manifest_size" "$name" "$tag" "$tag" > "$work/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"

    mkdir -p "$(dirname "$out")"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.tmp.$$" oci-layout index.json blobs
    mv "$out.tmp.$$" "$out"
    rm -rf "$work"
    say "$name:$tag: layer $(( layer_size / 1024 )) KiB compressed, manifest sha256:$manifest_digest -> $out"
}

passwd_files() { # rootfs
    mkdir -p "$1/etc"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$1/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' > "$1/etc/group"
    chmod 0644 "$1/etc/passwd" "$1/etc/group"
}

pause() {
    local cache=${SECRET_RELAY_CACHE:-$HOME/.cache/secret-relay}
    local src key out
    src=$(cat <<'EOF'
/* The pod sandbox: holds the pod's namespaces, reaps orphans, exits on a signal. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction a = {0};
    a.sa_handler = stop;
    sigaction(SIGINT, &a, 0);
    sigaction(SIGTERM, &a, 0);
    a.sa_handler = reap;
    a.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &a, 0);
    for (;;) pause();
}
EOF
)
    key=$( (printf '%s' "$src"; declare -f oci_archive passwd_files; gcc --version | head -n1) | sha256sum | cut -c1-12)
    out=$cache/images/pause-$key.oci.tar
    if [ -f "$out" ]; then
        printf '%s\n' "$out"
        return
    fi
    command -v gcc >/dev/null 2>&1 || die "gcc is needed to build the pause image"
    local work
    work=$(mktemp -d)
    mkdir -p "$work/rootfs"
    printf '%s\n' "$src" > "$work/pause.c"
    gcc -static -Os -s -o "$work/rootfs/pause" "$work/pause.c" || die "gcc -static failed (is libc6-dev installed?)"
    chmod 0755 "$work/rootfs/pause"
    oci_archive "$work/rootfs" "$out" localhost/pause secret-relay \
        '{"User":"65535:65535","Entrypoint":["/pause"]}'
    rm -rf "$work"
    printf '%s\n' "$out"
}

secret_relay() {
    local tag=${1:-test}
    local target=${CARGO_TARGET_DIR:-$root/target}
    local bin=${SECRET_RELAY_IMAGE_BIN:-}
    if [ -z "$bin" ]; then
        say "cargo build --release --locked -p secret-relay --no-default-features"
        (cd "$root" && cargo build --release --locked -p secret-relay --no-default-features >&2) || die "cargo build failed"
        bin=$target/release/secret-relay
    fi
    [ -x "$bin" ] || die "$bin is not an executable"
    local work
    work=$(mktemp -d)
    local r=$work/rootfs
    mkdir -p "$r"
    install -m 0755 "$bin" "$r/secret-relay"
    # The shared libraries the binary links, at the paths the loader looks in.
    local lib interp
    interp=$(readelf -l "$bin" | sed -nE 's/.*Requesting program interpreter: (.*)]/\1/p')
    [ -n "$interp" ] || die "$bin has no program interpreter (static?): nothing to copy"
    mkdir -p "$r$(dirname "$interp")"
    cp -L "$interp" "$r$interp"
    while IFS= read -r lib; do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done < <(ldd "$bin" | sed -nE 's/.*=> (\/[^ ]+) \(0x.*/\1/p')
    passwd_files "$r"
    local ca=/etc/ssl/certs/ca-certificates.crt
    [ -f "$ca" ] || die "$ca is missing (apt-get install ca-certificates)"
    mkdir -p "$r/etc/ssl/certs"
    install -m 0644 "$ca" "$r/etc/ssl/certs/ca-certificates.crt"
    # Writable only as the volumes the manifests mount; /tmp exists for tools that look.
    mkdir -p "$r/tmp"
    chmod 1777 "$r/tmp"
    local out=$target/images/secret-relay-$tag.oci.tar
    oci_archive "$r" "$out" localhost/secret-relay "$tag" \
        '{"User":"65532:65532","Entrypoint":["/secret-relay"],"Env":["PATH=/usr/local/bin:/usr/bin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"ExposedPorts":{"8443/tcp":{},"9443/tcp":{},"9090/tcp":{}},"Labels":{"org.opencontainers.image.title":"secret-relay","org.opencontainers.image.licenses":"Apache-2.0"}}'
    rm -rf "$work"
    printf '%s\n' "$out"
}

case "${1:-}" in
    pause) pause ;;
    secret-relay) shift; secret_relay "$@" ;;
    *) die "usage: $0 secret-relay [TAG] | pause" ;;
esac
