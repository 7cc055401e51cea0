//! The product builds without the sandbox: `secret-relay` built with
//! `--no-default-features` (as the image and the release for clusters are) has no
//! sandbox, devstack or testkit crate in what it compiles, while the default build
//! (`cargo run -- demo`) has the sandbox and the devstack. Read from `cargo tree`, offline and locked: the
//! dependency graph cargo builds from, without building it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::process::Command;

const SANDBOX: &str = "secret-relay-sandbox";
const TESTKIT: &str = "secret-relay-testkit";
const DEVSTACK: &str = "secret-relay-devstack";

/// The packages `cargo build -p secret-relay` compiles with these feature flags:
/// normal and build dependencies (dev-dependencies are only for tests and benches).
fn built_packages(feature_flags: &[&str]) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--manifest-path", manifest, "-p", "secret-relay"])
        .args(feature_flags)
        .args([
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
            "--offline",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "cargo tree {feature_flags:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines are `name vX.Y.Z (path)`, with ` (*)` on repeats.
    let packages: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    // The tree is real: the binary and the crates every build needs are in it.
    for always in ["secret-relay", "secret-relay-proxy", "secret-relay-policy"] {
        assert!(
            packages.contains(always),
            "{always} missing from cargo tree {feature_flags:?}:\n{stdout}"
        );
    }
    packages
}

#[test]
fn a_build_without_default_features_compiles_no_sandbox_devstack_or_testkit_code() {
    let packages = built_packages(&["--no-default-features"]);
    for dev_only in [SANDBOX, DEVSTACK, TESTKIT] {
        assert!(
            !packages.contains(dev_only),
            "{dev_only} is built into secret-relay --no-default-features: {packages:?}"
        );
    }
}

#[test]
fn the_default_build_has_the_sandbox_for_the_demo_and_never_the_testkit() {
    let packages = built_packages(&[]);
    for demo in [SANDBOX, DEVSTACK] {
        assert!(
            packages.contains(demo),
            "the default build has no {demo}: `cargo run -- demo` needs it: {packages:?}"
        );
    }
    assert!(
        !packages.contains(TESTKIT),
        "{TESTKIT} is a normal dependency of secret-relay: {packages:?}"
    );
    let explicit = built_packages(&["--no-default-features", "--features", "sandbox"]);
    assert!(explicit.contains(SANDBOX), "{explicit:?}");
}
