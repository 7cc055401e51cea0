//! client-go through the relay, judged by a Go program: `tests/kube/cmd/relay-client`
//! acts as a managed cluster (cluster1's certificate) with a typed clientset sending
//! protobuf bodies, server-side apply, merge, JSON and strategic merge patches, shared
//! informers (which sync through a streaming list, WatchList, by default in client-go
//! v0.37) and raw watches with `sendInitialEvents`, and holds every answer to what
//! kube-apiserver answers for Secrets (pointed straight at a kube-apiserver, all its
//! checks pass). DESIGN.md, "Trust at the relay": the relay serves any Kubernetes
//! client as kube-apiserver would.
//!
//! The program is built once per test binary with `go build` from the Go module in
//! `tests/kube` (the module the real control plane is built from, so the same module
//! cache serves both). Without Go the test fails, unless
//! `SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1` asks for what needs Go to be skipped.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use secret_relay_testkit::{Flavor, SKIP_REAL_ENV, Stack, StackOptions, on_both, secret};

const POLICY: &str = "\
clusters:
  - name: cluster1
    labels: { env: prod }
secretSources:
  - clusterSelector: env=prod
    labelSelector: argocd.argoproj.io/secret-type in (repo-creds, repository)
";

/// The labels of the Secrets relay-client writes: opted in, and admitted by [`POLICY`].
const OWN_LABELS: &str = "akuity.io/secret-sync=true,argocd.argoproj.io/secret-type=repository";

/// Secrets the control plane targets at cluster1: relay-client's informers see the
/// first, its change and its deletion; watches resume around the second.
const TARGETED: &str = "client-go-targeted";
const STEADY: &str = "client-go-steady";

/// The longest relay-client may run (it has its own, shorter deadline).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

on_both!(client_go_is_served_as_kube_apiserver_would);

async fn client_go_is_served_as_kube_apiserver_would(flavor: Flavor) {
    let Some(binary) = relay_client().await else {
        return;
    };
    let stack = Stack::start(
        flavor,
        StackOptions {
            policy: POLICY.to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let relay = stack.start_relay().await;
    let hub: Api<Secret> = Api::namespaced(stack.cluster.client().await, "argocd");
    for name in [TARGETED, STEADY] {
        hub.create(
            &PostParams::default(),
            &secret(
                name,
                &[],
                &[("akuity.io/managed-secret-allowed-clusters", "cluster1")],
                "initial",
            ),
        )
        .await
        .unwrap();
        relay.wait_cached(name).await;
    }

    let kubeconfig = stack.relay_kubeconfig(&relay, "cluster1");
    let mut command = tokio::process::Command::new(&binary);
    command
        .arg("-kubeconfig")
        .arg(&kubeconfig)
        .arg("-hub-kubeconfig")
        .arg(stack.cluster.kubeconfig())
        .args(["-namespace", "argocd"])
        .args(["-targeted", TARGETED, "-steady", STEADY])
        .args(["-labels", OWN_LABELS, "-prefix", "client-go"])
        .args(["-timeout", "30s", "-deadline", "240s"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let out = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("relay-client did not end within {RUN_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "relay-client on {flavor:?} ({:.1} s, {}):\n{stdout}",
        started.elapsed().as_secs_f64(),
        out.status
    );
    if !out.stderr.is_empty() {
        println!(
            "relay-client's stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        out.status.success(),
        "client-go through the relay on {flavor:?} differs from kube-apiserver ({}):\n{}",
        out.status,
        failed.join("\n")
    );
    relay.stop().await;
}

/// relay-client, built once for this test binary; `None` when Go is missing and the
/// skip is asked for.
async fn relay_client() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    tokio::task::spawn_blocking(|| BUILT.get_or_init(build_relay_client).clone())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_relay_client() -> Result<Option<PathBuf>, String> {
    let skip = std::env::var(SKIP_REAL_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if let Err(e) = Command::new("go").arg("version").output() {
        if skip {
            eprintln!(
                "!!! client-go through the relay SKIPPED: no 'go' on PATH ({e}) and {SKIP_REAL_ENV} is set"
            );
            return Ok(None);
        }
        return Err(format!(
            "no 'go' on PATH ({e}): relay-client is built from tests/kube with Go 1.26 or newer; \
             install Go, or set {SKIP_REAL_ENV}=1 to skip what needs it"
        ));
    }
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("relay-client");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let binary = out_dir.join("relay-client");
    // Built beside it and renamed into place: another test run may be executing it.
    let partial = out_dir.join(format!("relay-client.{}", std::process::id()));
    // As scripts/control-plane.sh builds: go.sum pins every module, nothing is changed.
    let goflags = format!(
        "{} -buildvcs=false -mod=readonly",
        std::env::var("GOFLAGS").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("go")
        .current_dir(&module)
        .env("GOFLAGS", goflags.trim())
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .arg("./cmd/relay-client")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("failed to run go build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "go build ./cmd/relay-client in {} failed ({}):\n{}",
            module.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&partial, &binary).map_err(|e| {
        format!(
            "failed to move {} to {}: {e}",
            partial.display(),
            binary.display()
        )
    })?;
    eprintln!(
        "built relay-client in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        binary.display()
    );
    Ok(Some(binary))
}
