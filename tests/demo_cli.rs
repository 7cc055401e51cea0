//! `secret-relay demo`: the README's main command, run as a user runs it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_secret-relay")
}

fn scenario(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["demo", "--scenario", "--dir"])
        .arg(dir.path())
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo --scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("12/12 passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for file in [
        "ready",
        "control-plane.kubeconfig",
        "cluster1.kubeconfig",
        "cluster2.kubeconfig",
        "relay-cluster1.kubeconfig",
        "pki/ca.crt",
        "pki/ca.key",
    ] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    // No secret value of the scenario reaches the output.
    for value in [
        "from-cluster1",
        "for-everyone",
        "hub-value",
        "https://example.invalid/repo.git",
    ] {
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "{value} leaked"
        );
    }
}

#[test]
fn the_demo_scenario_passes_on_sandboxes() {
    scenario(&[]);
}

#[test]
fn the_demo_scenario_passes_on_real_kube_apiservers() {
    if std::env::var(secret_relay_testkit::SKIP_REAL_ENV).is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("!!! demo on real kube-apiservers skipped on request");
        return;
    }
    scenario(&["--control-plane", "real"]);
}
