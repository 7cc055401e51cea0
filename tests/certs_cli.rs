//! `secret-relay certs` as a user runs it: files, modes, SANs, refusals.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;

fn certs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secret-relay"))
        .arg("certs")
        .args(args)
        .env_remove("SECRET_RELAY_CERTS_FORCE")
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn parse(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).unwrap();
    secret_relay_certs::parse_certs_pem(&pem).unwrap()[0].to_vec()
}

#[test]
fn init_server_and_cluster_write_the_pki_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(certs(&["init", "--dir", d]).status.success());
    let out = certs(&[
        "server",
        "--dir",
        d,
        "--name",
        "webhook",
        "--dns",
        "secret-relay-webhook.secret-relay-system.svc",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = certs(&["cluster", "--dir", d, "--name", "cluster1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for key in [
        "ca.key",
        "webhook.key",
        "cluster1.key",
        "cluster1-agent-secret.yaml",
    ] {
        assert_eq!(mode(&dir.path().join(key)), 0o600, "{key}");
    }

    let der = parse(&dir.path().join("webhook.crt"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("secret-relay-webhook.secret-relay-system.svc")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");

    let der = parse(&dir.path().join("cluster1.crt"));
    let identity = secret_relay_certs::peer_identity(&der.into()).unwrap();
    assert_eq!(identity.name, "cluster1");
    assert_eq!(
        identity.source,
        secret_relay_certs::IdentitySource::SpiffeUri
    );

    let manifest: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.path().join("cluster1-agent-secret.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["type"], "kubernetes.io/tls");
    assert_eq!(manifest["metadata"]["namespace"], "akuity");
    let crt = base64::engine::general_purpose::STANDARD
        .decode(manifest["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(crt, std::fs::read(dir.path().join("cluster1.crt")).unwrap());
    for key in ["tls.key", "ca.crt"] {
        assert!(manifest["data"][key].as_str().is_some(), "{key}");
    }
}

#[test]
fn nothing_is_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(certs(&["init", "--dir", d]).status.success());
    let before = std::fs::read(dir.path().join("ca.key")).unwrap();
    let out = certs(&["init", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);

    // The key exists, the certificate does not: refused before anything is written.
    std::fs::write(dir.path().join("cluster1.key"), "keep me").unwrap();
    let out = certs(&["cluster", "--dir", d, "--name", "cluster1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("cluster1.crt").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster1.key")).unwrap(),
        "keep me"
    );

    let out = certs(&["cluster", "--dir", d, "--name", "cluster1", "--force"]);
    assert!(out.status.success());
    assert_eq!(mode(&dir.path().join("cluster1.key")), 0o600);
    assert!(certs(&["init", "--dir", d, "--force"]).status.success());
    assert_ne!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);
}

#[test]
fn ca_bundle_prints_the_base64_ca_and_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = certs(&["ca-bundle", "--dir", d]);
    assert_eq!(out.status.code(), Some(2));
    let out = certs(&["server", "--dir", d, "--name", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certs init"));

    assert!(certs(&["init", "--dir", d]).status.success());
    let out = certs(&["ca-bundle", "--dir", d]);
    assert!(out.status.success());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    assert_eq!(decoded, std::fs::read(dir.path().join("ca.crt")).unwrap());

    let out = certs(&["cluster", "--dir", d, "--name", "Not_A_Cluster"]);
    assert_eq!(out.status.code(), Some(2));
    let out = certs(&["server", "--dir", d, "--name", "../escape"]);
    assert_eq!(out.status.code(), Some(2));
}
