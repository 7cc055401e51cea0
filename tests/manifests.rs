//! The repository's kustomize bases installed as an operator would, on a fresh real
//! control plane each (etcd, kube-apiserver and kube-controller-manager from
//! `scripts/control-plane.sh`): the PKI and the certificate Secrets from
//! `secret-relay certs`, the caBundle from `secret-relay certs ca-bundle`, then
//! `kubectl apply`. The API server must admit every object (a server-side dry run
//! first), Pod Security must have nothing to warn about, every rendered object must
//! be there afterwards, every Secret a Deployment mounts must exist with the keys
//! its flags name, and a second apply must change nothing.
//!
//! The webhook configurations (failurePolicy: Fail, no webhook running here) are
//! applied last, after every Secret the test writes, so nothing depends on a webhook
//! being up. Deployments get no pods: the test control plane runs no scheduler,
//! kubelet or workload controllers.
//!
//! The webhook configurations select only the namespace they guard (`argocd` on the
//! control plane, `akuity` on a managed cluster); the README's overlays for another
//! namespace render the same objects with that selector.
//!
//! A real control plane that cannot start fails the test; only
//! `SECRET_RELAY_SKIP_REAL_CONTROL_PLANE=1` skips it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use secret_relay_testkit::{Flavor, Options, TestCluster, repo_root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_secret-relay");
/// The managed cluster the test installs.
const CLUSTER: &str = "cluster1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_base_is_admitted_by_a_real_control_plane() {
    if !Flavor::Real.skipped("the_control_plane_base_is_admitted_by_a_real_control_plane") {
        install("control-plane").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_cluster_base_is_admitted_by_a_real_control_plane() {
    if !Flavor::Real.skipped("the_managed_cluster_base_is_admitted_by_a_real_control_plane") {
        install("managed-cluster").await;
    }
}

#[test]
fn the_documented_overlays_select_another_namespace() {
    let kubectl = secret_relay_testkit::kubectl()
        .expect("kubectl is needed to render (kustomize) the manifests");
    let dir = tempfile::tempdir().unwrap();
    for (base, namespace) in [
        ("control-plane", "team-hub"),
        ("managed-cluster", "agents-2"),
    ] {
        let plain = kustomize(&kubectl, &repo_root().join("manifests").join(base));
        let overlay = secret_relay_testkit::namespace_overlay(dir.path(), base, namespace);
        let moved = kustomize(&kubectl, &overlay);
        let names = |objects: &[Value]| -> BTreeSet<(String, String)> {
            objects
                .iter()
                .map(|o| {
                    let name = o["metadata"]["name"].as_str().unwrap().to_owned();
                    (o["kind"].as_str().unwrap().to_owned(), name)
                })
                .collect()
        };
        assert_eq!(names(&moved), names(&plain), "{base}: the same objects");
        let hooks: Vec<&Value> = moved
            .iter()
            .filter(|o| {
                o["kind"]
                    .as_str()
                    .unwrap()
                    .ends_with("WebhookConfiguration")
            })
            .collect();
        assert_eq!(hooks.len(), 2, "{base}");
        for hook in hooks {
            assert_eq!(
                hook["webhooks"][0]["namespaceSelector"],
                selecting(namespace),
                "{base}: {}",
                hook["kind"]
            );
        }
        if base == "control-plane" {
            // What lived in argocd (the clusters' and the relay's RBAC) lives in the new
            // namespace, and nothing is left in argocd.
            let in_namespace = |objects: &[Value], ns: &str| -> BTreeSet<(String, String)> {
                names(
                    &objects
                        .iter()
                        .filter(|o| o["metadata"]["namespace"] == ns)
                        .cloned()
                        .collect::<Vec<_>>(),
                )
            };
            assert!(!in_namespace(&plain, "argocd").is_empty());
            assert_eq!(
                in_namespace(&moved, namespace),
                in_namespace(&plain, "argocd")
            );
            assert!(in_namespace(&moved, "argocd").is_empty());
        }
    }
}

/// The namespace selector of a webhook that guards `namespace` alone.
/// The dev stack (demo, testkit) installs the manifests from its own rendering, so
/// neither needs kubectl: it must render exactly what `kubectl kustomize` renders,
/// for both bases and for the README's overlays to another namespace.
#[test]
fn the_dev_stack_renders_the_manifests_as_kubectl_kustomize_does() {
    use secret_relay_devstack::manifests::{Side, render};
    let kubectl = secret_relay_testkit::kubectl()
        .expect("kubectl is needed to render (kustomize) the manifests");
    let dir = tempfile::tempdir().unwrap();
    let keyed = |objects: Vec<Value>| -> BTreeMap<(String, String, String), Value> {
        objects
            .into_iter()
            .map(|o| {
                let key = (
                    o["kind"].as_str().unwrap().to_owned(),
                    o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                );
                (key, o)
            })
            .collect()
    };
    for (side, base, default, other) in [
        (Side::ControlPlane, "control-plane", "argocd", "team-hub"),
        (
            Side::ManagedCluster,
            "managed-cluster",
            "akuity",
            "agents-2",
        ),
    ] {
        let plain = kustomize(&kubectl, &repo_root().join("manifests").join(base));
        assert_eq!(
            keyed(render(side, default).unwrap()),
            keyed(plain),
            "{base}"
        );
        let overlay = secret_relay_testkit::namespace_overlay(dir.path(), base, other);
        let mut moved = kustomize(&kubectl, &overlay);
        if side == Side::ManagedCluster {
            // The README asks for agent.yaml's namespace to move with the overlay.
            for o in &mut moved {
                if o["metadata"]["namespace"] == default {
                    o["metadata"]["namespace"] = other.into();
                }
            }
        }
        assert_eq!(
            keyed(render(side, other).unwrap()),
            keyed(moved),
            "{base} in {other}"
        );
    }
}

fn selecting(namespace: &str) -> Value {
    serde_json::json!({
        "matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": [namespace],
        }]
    })
}

/// `kubectl kustomize DIR`, one JSON value per object.
fn kustomize(kubectl: &str, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---\n")
        .map(|doc| {
            serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(doc).unwrap()).unwrap()
        })
        .collect()
}

/// One rendered object: its document and where it lives.
struct Object {
    text: String,
    value: Value,
}

impl Object {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap()
    }

    fn id(&self) -> (String, String, String) {
        let meta = &self.value["metadata"];
        (
            self.kind().to_owned(),
            meta["namespace"].as_str().unwrap_or_default().to_owned(),
            meta["name"].as_str().unwrap().to_owned(),
        )
    }
}

async fn install(base: &str) {
    let kubectl = secret_relay_testkit::kubectl()
        .expect("kubectl is needed to render (kustomize) and apply the manifests");
    let cluster = TestCluster::start(Flavor::Real, Options::default()).await;
    let pki = cluster.dir().join("secret-relay-pki");
    let pki_dir = pki.to_str().unwrap();
    certs(&["init", "--dir", pki_dir]);
    let bundle = String::from_utf8(certs(&["ca-bundle", "--dir", pki_dir]).stdout).unwrap();

    let objects = render(&cluster, &kubectl, base, bundle.trim());
    let (hooks, rest): (Vec<&Object>, Vec<&Object>) = objects
        .iter()
        .partition(|o| o.kind().ends_with("WebhookConfiguration"));
    assert_eq!(hooks.len(), 2, "{base}: both webhook configurations");
    // Each guards its one namespace: an outage blocks nothing else.
    let guarded = if base == "control-plane" {
        "argocd"
    } else {
        "akuity"
    };
    for hook in &hooks {
        assert_eq!(
            hook.value["webhooks"][0]["namespaceSelector"],
            selecting(guarded),
            "{base}: {}",
            hook.kind()
        );
    }
    let all = write(&cluster, "all.yaml", objects.iter());

    // The namespaces first: a dry run cannot create them, and the objects in them
    // need them.
    if base == "control-plane" {
        // Argo CD's, where the hub copies and the clusters' RBAC live.
        cluster.create_namespace("argocd").await;
    }
    let namespaces = write(
        &cluster,
        "namespaces.yaml",
        objects.iter().filter(|o| o.kind() == "Namespace"),
    );
    apply(&cluster, &kubectl, &["-f", &namespaces]);

    let dry = apply(&cluster, &kubectl, &["--dry-run=server", "-f", &all]);
    let lines: Vec<&str> = dry.lines().collect();
    assert_eq!(lines.len(), objects.len(), "{base}: dry run:\n{dry}");
    assert!(
        lines.iter().all(|l| l.ends_with("(server dry run)")),
        "{base}: dry run:\n{dry}"
    );

    let secrets = certificate_secrets(&cluster, &kubectl, base, &pki);

    // Everything but the webhook configurations, then those.
    let first = write(&cluster, "objects.yaml", rest.iter().copied());
    apply(&cluster, &kubectl, &["-f", &first]);
    let last = write(&cluster, "webhooks.yaml", hooks.iter().copied());
    apply(&cluster, &kubectl, &["-f", &last]);

    // Every rendered object is there, as rendered.
    let stored = live_objects(&cluster, &kubectl, &all);
    let wanted: BTreeSet<_> = objects.iter().map(Object::id).collect();
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        wanted,
        "{base}"
    );
    for object in &objects {
        let live = &stored[&object.id()];
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "secret-relay",
            "{:?}",
            object.id()
        );
        // The API server kept what matters (it drops fields it does not know).
        match object.kind() {
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                let hook = &live["webhooks"][0];
                assert_eq!(hook["failurePolicy"], "Fail");
                assert_eq!(
                    hook["matchConditions"],
                    object.value["webhooks"][0]["matchConditions"]
                );
                assert_eq!(
                    hook["namespaceSelector"],
                    object.value["webhooks"][0]["namespaceSelector"]
                );
                assert_eq!(
                    hook["clientConfig"]["caBundle"].as_str(),
                    Some(bundle.trim())
                );
            }
            "Service" if object.id().2 == "secret-relay-webhook" => {
                assert_eq!(live["spec"]["publishNotReadyAddresses"], true);
            }
            "Deployment" => mounts_exist(object, &secrets),
            _ => {}
        }
    }

    // Applying again changes nothing: no object is written (kubectl reports a PDB as
    // configured every time, as its selector's patch strategy is replace, but the
    // API server finds nothing to change).
    apply(&cluster, &kubectl, &["-f", &all]);
    let versions = |objects: &BTreeMap<_, Value>| -> Vec<Value> {
        objects
            .values()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect()
    };
    assert_eq!(
        versions(&live_objects(&cluster, &kubectl, &all)),
        versions(&stored),
        "{base}: a second apply wrote objects"
    );
}

/// `kubectl get -f FILE`: every object of the file as stored, by (kind, namespace, name).
fn live_objects(
    cluster: &TestCluster,
    kubectl: &str,
    file: &str,
) -> BTreeMap<(String, String, String), Value> {
    let out = cluster.kubectl(kubectl, &["get", "-f", file, "-o", "json"]);
    assert!(
        out.status.success(),
        "kubectl get -f {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let o = Object {
                text: String::new(),
                value: item.clone(),
            };
            (o.id(), item.clone())
        })
        .collect()
}

/// `secret-relay certs ARGS`, which must succeed.
fn certs(args: &[&str]) -> Output {
    let out = Command::new(BIN).arg("certs").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "secret-relay certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kubectl kustomize manifests/BASE` with the CA as every caBundle, one object each.
fn render(cluster: &TestCluster, kubectl: &str, base: &str, bundle: &str) -> Vec<Object> {
    let dir = repo_root().join("manifests").join(base);
    let out = cluster.kubectl(kubectl, &["kustomize", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "kubectl kustomize {base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("caBundle: Cg=="),
        "{base}: no caBundle placeholder"
    );
    let text = text.replace("caBundle: Cg==", &format!("caBundle: {bundle}"));
    text.split("\n---\n")
        .map(|doc| {
            let yaml: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
            Object {
                text: doc.trim_start_matches("---\n").to_owned(),
                value: serde_json::to_value(yaml).unwrap(),
            }
        })
        .collect()
}

/// Writes the objects as one file in the cluster's directory; returns its path.
fn write<'a>(
    cluster: &TestCluster,
    name: &str,
    objects: impl Iterator<Item = &'a Object>,
) -> String {
    let path = cluster.dir().join(name);
    let docs: Vec<&str> = objects.map(|o| o.text.as_str()).collect();
    std::fs::write(&path, docs.join("\n---\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `kubectl apply ARGS`: it must succeed with no warning (a Pod Security violation in
/// the namespaces' warn mode, a deprecated field); returns its stdout.
fn apply(cluster: &TestCluster, kubectl: &str, args: &[&str]) -> String {
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    let out = cluster.kubectl(kubectl, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubectl {all:?}: {stderr}");
    assert!(
        !stderr.to_lowercase().contains("warning"),
        "kubectl {all:?} warned: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The certificate Secrets an operator creates before applying the base, as the
/// kustomizations and agent.yaml say; returns (namespace, name) -> their keys.
fn certificate_secrets(
    cluster: &TestCluster,
    kubectl: &str,
    base: &str,
    pki: &Path,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let d = pki.to_str().unwrap();
    let file = |name: &str| pki.join(name).to_str().unwrap().to_owned();
    let mut created = vec![("secret-relay-webhook-tls", "secret-relay-webhook")];
    if base == "control-plane" {
        created.push(("secret-relay-tls", "secret-relay"));
    }
    for (secret, name) in created {
        let dns = format!("{name}.secret-relay-system.svc");
        certs(&["server", "--dir", d, "--name", name, "--dns", &dns]);
        let out = cluster.kubectl(
            kubectl,
            &[
                "create",
                "secret",
                "generic",
                secret,
                "-n",
                "secret-relay-system",
                &format!("--from-file=tls.crt={}", file(&format!("{name}.crt"))),
                &format!("--from-file=tls.key={}", file(&format!("{name}.key"))),
                &format!("--from-file=ca.crt={}", file("ca.crt")),
            ],
        );
        assert!(
            out.status.success(),
            "create secret {secret}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if base == "managed-cluster" {
        // The agent's identity exactly as `secret-relay certs cluster` writes it.
        certs(&["cluster", "--dir", d, "--name", CLUSTER]);
        apply(
            cluster,
            kubectl,
            &["-f", &file(&format!("{CLUSTER}-agent-secret.yaml"))],
        );
    }
    let out = cluster.kubectl(kubectl, &["get", "secrets", "-A", "-o", "json"]);
    assert!(out.status.success());
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let meta = &s["metadata"];
            let keys = s["data"]
                .as_object()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            (
                (
                    meta["namespace"].as_str().unwrap().to_owned(),
                    meta["name"].as_str().unwrap().to_owned(),
                ),
                keys,
            )
        })
        .collect()
}

/// Every Secret the Deployment mounts exists in its namespace, and every flag that
/// names a file under such a mount names a key of that Secret.
fn mounts_exist(deployment: &Object, secrets: &BTreeMap<(String, String), BTreeSet<String>>) {
    let (_, namespace, name) = deployment.id();
    let pod = &deployment.value["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mut checked = 0;
    for volume in pod["volumes"].as_array().unwrap() {
        let Some(secret) = volume["secret"]["secretName"].as_str() else {
            continue;
        };
        let keys = secrets
            .get(&(namespace.clone(), secret.to_owned()))
            .unwrap_or_else(|| panic!("{name} mounts Secret {namespace}/{secret}, which the documented steps do not create"));
        for mount in container["volumeMounts"].as_array().unwrap() {
            if mount["name"] != volume["name"] {
                continue;
            }
            let prefix = format!("{}/", mount["mountPath"].as_str().unwrap());
            for arg in container["args"].as_array().unwrap() {
                let arg = arg.as_str().unwrap();
                let file = arg.split_once('=').map(|(_, v)| v);
                if let Some(key) = file.and_then(|v| v.strip_prefix(&prefix)) {
                    assert!(
                        keys.contains(key),
                        "{name}: {arg} but Secret {secret} has {keys:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 2,
        "{name}: no certificate flag names a mounted key"
    );
}
