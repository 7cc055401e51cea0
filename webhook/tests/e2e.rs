//! End to end through the sandbox API server: the repository's own webhook manifests
//! applied with kubectl, the policy read from a ConfigMap, and writes made the way
//! the relay and a person with kubectl make them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use secret_relay_certs::{Ca, ClientAuth, Validity, server_config};
use secret_relay_policy::{Mode, RelayIdentity};
use secret_relay_sandbox::{Sandbox, SandboxConfig};
use secret_relay_webhook::{AppState, serve, watch_configmap};
use tokio::sync::watch;

const SERVICE: &str = "secret-relay-webhook.secret-relay-system.svc";

const POLICY: &str = "clusters:\n  - name: cluster1\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env=prod\n";
const POLICY_WITH_CLUSTER2: &str = "clusters:\n  - name: cluster1\n    labels: { env: prod }\n  - name: cluster2\n    labels: { env: prod }\nsecretSources:\n  - clusterSelector: env=prod\n";

struct World {
    sandbox: Sandbox,
    state: AppState,
    dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn client_as(sandbox: &Sandbox, impersonate: Option<(&str, &[&str])>) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&sandbox.kubeconfig("admin").unwrap()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    if let Some((user, groups)) = impersonate {
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
    }
    Client::try_from(config).unwrap()
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until the state has seen one more reload attempt than `seen`.
async fn next_reload(state: &AppState, seen: u64) -> u64 {
    let mut rx = state.subscribe_reloads();
    within("a policy reload", rx.wait_for(|n| *n > seen))
        .await
        .map(|n| *n)
        .unwrap()
}

async fn world() -> World {
    let ca = Ca::generate("secret-relay test CA", Validity::ca_default()).unwrap();
    let cert = ca
        .issue_server(
            SERVICE,
            &[SERVICE.to_owned()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Validity::default(),
        )
        .unwrap();
    let tls = server_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &[b"http/1.1"],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_addr = listener.local_addr().unwrap();

    let config = SandboxConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        services: BTreeMap::from([(format!("{SERVICE}:443"), webhook_addr)]),
        ..SandboxConfig::default()
    };
    let sandbox = secret_relay_sandbox::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    sandbox.write_kubeconfigs(dir.path()).unwrap();

    let admin = client_as(&sandbox, None).await;
    for ns in ["secret-relay-system", "argocd"] {
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let obj: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "secret-relay-system");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "secret-relay-policy"},
        "data": {"policy.yaml": POLICY},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let state = AppState::new(RelayIdentity::default(), Mode::ControlPlane);
    let (stop, stop_rx) = watch::channel(false);
    let seen = *state.subscribe_reloads().borrow();
    tokio::spawn(watch_configmap(
        state.clone(),
        admin.clone(),
        "secret-relay-system".to_owned(),
        "secret-relay-policy".to_owned(),
        stopped(&stop_rx),
    ));
    next_reload(&state, seen).await;
    assert!(state.is_ready(), "{:?}", state.last_error());
    tokio::spawn(serve(listener, tls, state.clone(), stopped(&stop_rx)));

    // The repository's own webhook configurations, with this test's CA as caBundle.
    let manifest =
        std::fs::read_to_string(repo_root().join("manifests/control-plane/webhooks.yaml")).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let manifest = manifest.replace("caBundle: Cg==", &format!("caBundle: {bundle}"));
    let path = dir.path().join("webhooks.yaml");
    std::fs::write(&path, manifest).unwrap();
    match kubectl() {
        Some(kubectl) => {
            let out = run_kubectl(
                &kubectl,
                dir.path(),
                &["apply", "-f", path.to_str().unwrap()],
            );
            assert!(
                out.status.success(),
                "kubectl apply: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            eprintln!("!!! no kubectl found: applying the webhook manifests with kube-rs instead");
            apply_with_kube(&admin, &path).await;
        }
    }
    World {
        sandbox,
        state,
        dir,
        stop,
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The kubectl to judge with: the first of `KUBECTL_BINARIES` when the test script set it
/// (it lists only versions the checks support, and may be empty), else `kubectl` on PATH.
fn kubectl() -> Option<String> {
    if let Ok(list) = std::env::var("KUBECTL_BINARIES") {
        return list.split(':').find(|s| !s.is_empty()).map(str::to_owned);
    }
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "kubectl".to_owned())
}

fn run_kubectl(kubectl: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(kubectl)
        .env("HOME", dir)
        .arg("--kubeconfig")
        .arg(dir.join("admin.kubeconfig"))
        .args(args)
        .output()
        .unwrap()
}

async fn apply_with_kube(client: &Client, path: &Path) {
    use kube::api::DynamicObject;
    use kube::discovery::ApiResource;
    let text = std::fs::read_to_string(path).unwrap();
    for doc in text.split("\n---\n") {
        let obj: DynamicObject = serde_yaml::from_str(doc).unwrap();
        let kind = obj.types.as_ref().unwrap().kind.clone();
        let gvk = kube::api::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", &kind);
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let name = obj.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    }
}

fn repo_secret(name: &str) -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "argocd", "labels": {"team": "a"}},
        "stringData": {"url": "https://example.invalid/repo.git"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_write_is_stamped_and_a_kubectl_edit_of_it_is_refused() {
    let w = world().await;
    let cluster1 = client_as(
        &w.sandbox,
        Some(("secret-relay:cluster:cluster1", &["secret-relay:clusters"])),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(cluster1, "argocd");
    let created = secrets
        .create(&PostParams::default(), &repo_secret("repo-creds"))
        .await
        .unwrap();
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("secret-relay.io/owner").map(String::as_str),
        Some("cluster.cluster1")
    );
    let annotations = created.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations["secret-relay.io/digest"].starts_with("sha256:"));

    // A person (system:masters) edits the cluster-owned copy: refused with the webhook's message.
    let admin = client_as(&w.sandbox, None).await;
    let admin_secrets: Api<Secret> = Api::namespaced(admin.clone(), "argocd");
    let err = admin_secrets
        .patch(
            "repo-creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("admission webhook \"validate.secret-relay.io\" denied the request"),
        "{msg}"
    );
    assert!(msg.contains("cluster1"), "{msg}");
    match kubectl() {
        Some(kubectl) => {
            let out = run_kubectl(
                &kubectl,
                w.dir.path(),
                &[
                    "label",
                    "secret",
                    "repo-creds",
                    "-n",
                    "argocd",
                    "edited=true",
                ],
            );
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr
                    .contains("admission webhook \"validate.secret-relay.io\" denied the request")
                    && stderr.contains("owned by cluster cluster1"),
                "{stderr}"
            );
            let out = run_kubectl(
                &kubectl,
                w.dir.path(),
                &["delete", "secret", "repo-creds", "-n", "argocd"],
            );
            assert!(!out.status.success());
            // Nobody sets the owner label by hand, not even an admin.
            let out = run_kubectl(
                &kubectl,
                w.dir.path(),
                &[
                    "label",
                    "secret",
                    "other",
                    "-n",
                    "argocd",
                    "secret-relay.io/owner=cluster.cluster1",
                ],
            );
            assert!(!out.status.success());
        }
        None => eprintln!("!!! no kubectl found: the kubectl edit checks of this test did not run"),
    }
    let still = admin_secrets.get("repo-creds").await.unwrap();
    assert_eq!(still.metadata.labels.unwrap().get("x"), None);

    // Kubernetes' namespace deletion is never blocked, even for cluster-owned copies.
    let namespaces: Api<Namespace> = Api::all(admin);
    namespaces
        .delete("argocd", &Default::default())
        .await
        .unwrap();
    within("the namespace to go", async {
        while admin_secrets
            .get_opt("repo-creds")
            .await
            .ok()
            .flatten()
            .is_some()
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let _ = w.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_configmap_is_hot_reloaded_and_a_bad_one_keeps_the_last_good() {
    let w = world().await;
    let admin = client_as(&w.sandbox, None).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin, "secret-relay-system");
    let cluster2 = client_as(
        &w.sandbox,
        Some(("secret-relay:cluster:cluster2", &["secret-relay:clusters"])),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(cluster2, "argocd");

    let err = secrets
        .create(&PostParams::default(), &repo_secret("from-2"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown-cluster"), "{err}");
    assert_eq!(w.state.generation(), 1);

    let set_policy = |text: &'static str| {
        let cms = cms.clone();
        async move {
            let patch = serde_json::json!({"data": {"policy.yaml": text}});
            cms.patch(
                "secret-relay-policy",
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .unwrap();
        }
    };
    let seen = *w.state.subscribe_reloads().borrow();
    set_policy("clusters: [{name: NOT_VALID}]\n").await;
    let seen = next_reload(&w.state, seen).await;
    assert_eq!(
        w.state.generation(),
        1,
        "a bad policy must not replace the last good one"
    );
    assert!(w.state.last_error().unwrap().contains("clusters[0].name"));
    assert!(w.state.is_ready());

    set_policy(POLICY_WITH_CLUSTER2).await;
    next_reload(&w.state, seen).await;
    assert_eq!(w.state.generation(), 2);
    assert!(w.state.last_error().is_none());
    let created = secrets
        .create(&PostParams::default(), &repo_secret("from-2"))
        .await
        .unwrap();
    assert_eq!(
        created
            .metadata
            .labels
            .unwrap()
            .get("secret-relay.io/owner")
            .map(String::as_str),
        Some("cluster.cluster2")
    );
    let _ = w.stop.send(true);
}
