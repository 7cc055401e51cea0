# syntax=docker/dockerfile:1
# The secret-relay image: one binary for every subcommand (`webhook`, `relay`,
# `agent`, `certs`, `explain`, ...), built without the `sandbox` feature (no
# `demo`, no `sandbox`: no in-memory API server in a cluster), on a distroless runtime with no shell and
# no package manager, run as the numeric non-root user 65532 that the manifests'
# securityContext (runAsUser: 65532, runAsNonRoot) expects.
#
#   docker build -t secret-relay:0.1.0 .
#
# The build context is the whole workspace (see .dockerignore): cargo needs
# every member crate (the sandbox's and the testkit's manifests too, though
# none of their code is built) and the declared benches.

ARG RUST_VERSION=1.95

# --- build: the release binary, exactly the locked dependency graph ----------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binary is copied
# out of the target cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p secret-relay --no-default-features \
    && install -D -m 0755 target/release/secret-relay /out/secret-relay

# --- runtime: glibc and libgcc (what the binary links), nothing else ---------
# distroless cc-debian12 matches the builder's Debian 12 (bookworm) glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="secret-relay" \
      org.opencontainers.image.description="Sync Kubernetes Secrets between an Argo CD control plane and its managed clusters" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/secret-relay /secret-relay
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# webhook HTTPS, relay mTLS, admin (/healthz, /readyz, /metrics)
EXPOSE 8443 9443 9090
ENTRYPOINT ["/secret-relay"]
